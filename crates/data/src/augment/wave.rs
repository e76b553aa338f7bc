//! Waveform augmentations of mono clips: room reverberation, background noise at a chosen
//! SNR, speed and pitch perturbation, time shift, gain and a telephone-band copy.
//!
//! Every function is deterministic given its arguments; the random ones take the generator
//! explicitly. [`augment_rng`] derives it from `(seed, epoch, index)` with splitmix64 (as the
//! data loader derives its shuffles), so a training run that augments on the fly draws the
//! same copies after `--resume` as without an interruption, and synthesis writes the same
//! files for the same seed.
//!
//! - Reverberation: [`synthetic_rir`] is Gaussian noise under an exponential envelope that
//!   falls 60 dB in `rt60` seconds, plus a direct path holding as much energy as the tail;
//!   [`reverberate`] convolves with it (FFT) and keeps the input's length.
//! - Noise: [`white_noise`], [`pink_noise`] (1/f power, shaped in the frequency domain) and
//!   [`babble`] (other clips summed) are scaled by [`mix_at_snr`] so that the power of the
//!   clip over the power of the added noise is the requested SNR.
//! - Speed: [`speed`] resamples, as playing a tape faster: duration / factor, pitch and
//!   formants x factor.
//! - Pitch: [`pitch_shift`] is [`speed`] followed by [`time_stretch`] (WSOLA) back to the
//!   original length: pitch and formants move by the factor, the duration stays.
//! - [`shift`] moves the clip in time (zeros fill), [`gain_db`] scales it.
//! - [`telephone`] keeps 300-3400 Hz (the telephone band): nothing above 4 kHz remains, as
//!   in a recording made at 8 kHz.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use realfft::RealFftPlanner;
use serde::{Deserialize, Serialize};

use crate::audio::resample;
use crate::loader::{epoch_seed, splitmix64};

/// The generator of augmentation `index` (a clip, or a clip's k-th copy) in `epoch` of a run
/// seeded `seed`: ChaCha8 seeded with `splitmix64(epoch_seed(seed, epoch) + index)`.
pub fn augment_rng(seed: u64, epoch: u64, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(splitmix64(epoch_seed(seed, epoch).wrapping_add(index)))
}

/// A standard normal draw (Box-Muller on two uniforms).
pub fn gaussian(rng: &mut impl Rng) -> f64 {
    let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Mean square of `x` (0 for an empty slice).
pub fn power(x: &[f32]) -> f64 {
    x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len().max(1) as f64
}

fn normalise_power(mut x: Vec<f32>) -> Vec<f32> {
    let p = power(&x);
    if p > 0.0 {
        let k = (1.0 / p.sqrt()) as f32;
        x.iter_mut().for_each(|v| *v *= k);
    }
    x
}

/// `n` samples of white Gaussian noise of unit power.
pub fn white_noise(n: usize, rng: &mut impl Rng) -> Vec<f32> {
    (0..n).map(|_| gaussian(rng) as f32).collect()
}

/// `n` samples of pink noise (power spectral density proportional to 1/f, no DC), unit power.
pub fn pink_noise(n: usize, rng: &mut impl Rng) -> Vec<f32> {
    if n < 2 {
        return vec![0.0; n];
    }
    let mut planner = RealFftPlanner::<f64>::new();
    let inv = planner.plan_fft_inverse(n);
    let mut spec = inv.make_input_vec();
    let last = spec.len() - 1;
    for (k, c) in spec.iter_mut().enumerate().skip(1) {
        let amp = 1.0 / (k as f64).sqrt();
        let im = if k == last && n.is_multiple_of(2) { 0.0 } else { gaussian(rng) };
        *c = realfft::num_complex::Complex::new(gaussian(rng) * amp, im * amp);
    }
    let mut out = inv.make_output_vec();
    inv.process(&mut spec, &mut out).expect("sizes come from the plan");
    normalise_power(out.into_iter().map(|v| v as f32).collect())
}

/// `n` samples of babble: `talkers` clips drawn from `pool`, each brought to unit power and
/// started at a random point (repeated to fill `n`), summed, then brought to unit power.
/// Empty when the pool holds no sound.
pub fn babble(pool: &[&[f32]], talkers: usize, n: usize, rng: &mut impl Rng) -> Vec<f32> {
    let mut out = vec![0f32; n];
    let usable: Vec<&[f32]> = pool.iter().copied().filter(|c| power(c) > 0.0).collect();
    if usable.is_empty() || n == 0 {
        return Vec::new();
    }
    for _ in 0..talkers.max(1) {
        let clip = usable[rng.gen_range(0..usable.len())];
        let k = (1.0 / power(clip).sqrt()) as f32;
        let start = rng.gen_range(0..clip.len());
        for (i, o) in out.iter_mut().enumerate() {
            *o += clip[(start + i) % clip.len()] * k;
        }
    }
    normalise_power(out)
}

/// `x` plus `noise` (repeated or cut to `x`'s length) scaled so that
/// `10 log10(power(x) / power(added)) = snr_db`, powers taken over the whole clip.
/// A silent `x` or `noise` is returned unchanged.
pub fn mix_at_snr(x: &[f32], noise: &[f32], snr_db: f64) -> Vec<f32> {
    if noise.is_empty() || x.is_empty() {
        return x.to_vec();
    }
    let fitted: Vec<f32> = (0..x.len()).map(|i| noise[i % noise.len()]).collect();
    let (px, pn) = (power(x), power(&fitted));
    if px == 0.0 || pn == 0.0 {
        return x.to_vec();
    }
    let k = (px / (pn * 10f64.powf(snr_db / 10.0))).sqrt() as f32;
    x.iter().zip(&fitted).map(|(s, n)| s + k * n).collect()
}

/// A room impulse response at `sample_rate`: a direct path, then Gaussian noise under
/// `exp(-3 ln(10) t / rt60)` (its energy falls 60 dB in `rt60` seconds) for `rt60` seconds.
/// The direct path holds as much energy as the tail; the whole response has unit energy.
pub fn synthetic_rir(rt60: f64, sample_rate: u32, rng: &mut impl Rng) -> Vec<f32> {
    let n = ((rt60 * sample_rate as f64).round() as usize).max(2);
    let decay = 3.0 * std::f64::consts::LN_10 / (rt60 * sample_rate as f64);
    let mut h: Vec<f64> = (0..n).map(|i| gaussian(rng) * (-decay * i as f64).exp()).collect();
    let tail: f64 = h[1..].iter().map(|v| v * v).sum();
    h[0] = tail.sqrt();
    let total = (2.0 * tail).sqrt();
    h.into_iter().map(|v| (v / total) as f32).collect()
}

/// The full linear convolution of `x` and `h` (length `x.len() + h.len() - 1`), by FFT.
pub fn convolve(x: &[f32], h: &[f32]) -> Vec<f32> {
    if x.is_empty() || h.is_empty() {
        return Vec::new();
    }
    let n = x.len() + h.len() - 1;
    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let spectrum = |s: &[f32]| {
        let mut buf = fwd.make_input_vec();
        buf.iter_mut().zip(s).for_each(|(b, &v)| *b = v as f64);
        let mut out = fwd.make_output_vec();
        fwd.process(&mut buf, &mut out).expect("sizes come from the plan");
        out
    };
    let (a, b) = (spectrum(x), spectrum(h));
    let mut prod: Vec<_> = a.iter().zip(&b).map(|(p, q)| p * q / n as f64).collect();
    // The DC and (for even n) Nyquist bins of a real signal's spectrum are real.
    prod[0].im = 0.0;
    if n.is_multiple_of(2) {
        prod.last_mut().expect("n >= 1").im = 0.0;
    }
    let mut out = inv.make_output_vec();
    inv.process(&mut prod, &mut out).expect("sizes come from the plan");
    out.into_iter().map(|v| v as f32).collect()
}

/// `x` convolved with the impulse response `h`, cut to `x`'s length (the tail that rings
/// past the end of the clip is dropped).
pub fn reverberate(x: &[f32], h: &[f32]) -> Vec<f32> {
    let mut y = convolve(x, h);
    y.truncate(x.len());
    y
}

/// `x` resampled as if played `factor` times faster: about `x.len() / factor` samples,
/// every frequency multiplied by `factor`.
pub fn speed(x: &[f32], factor: f64, sample_rate: u32) -> Vec<f32> {
    let from = (sample_rate as f64 * factor).round() as u32;
    resample(x, from, sample_rate).expect("positive integer rates resample")
}

/// `Ok` when every factor of `factors` is in `[0.5, 2]`, is not 1 (the clip
/// itself) and appears once; otherwise an error naming `flag`.
pub fn check_speeds(factors: &[f64], flag: &str) -> Result<(), String> {
    for (i, f) in factors.iter().enumerate() {
        if !(0.5..=2.0).contains(f) || *f == 1.0 {
            return Err(format!("{flag}: speed {f} is not in [0.5, 2] or is 1 (the clip itself)"));
        }
        if factors[..i].contains(f) {
            return Err(format!("{flag}: speed {f} is given twice"));
        }
    }
    Ok(())
}

/// `x` stretched or squeezed to `len` samples with its pitch kept (WSOLA: Hann frames of
/// 20 ms at half-frame hops, each taken within a quarter frame of its nominal input place
/// where it best continues the previous frame).
pub fn time_stretch(x: &[f32], len: usize, sample_rate: u32) -> Vec<f32> {
    if x.is_empty() || len == 0 {
        return vec![0.0; len];
    }
    let frame = ((sample_rate as usize / 50).max(16)) & !1;
    let hop = frame / 2;
    let tol = (hop / 2) as isize;
    let ratio = x.len() as f64 / len as f64;
    let win: Vec<f32> = (0..frame)
        .map(|i| (0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / frame as f64).cos()) as f32)
        .collect();
    let get = |i: isize| if i >= 0 && (i as usize) < x.len() { x[i as usize] } else { 0.0 };
    let mut out = vec![0f32; len + frame];
    let mut norm = vec![0f32; len + frame];
    let mut prev: isize = 0;
    let mut k = 0usize;
    while k * hop < len {
        let pos = k * hop;
        let nominal = (pos as f64 * ratio).round() as isize;
        let start = if k == 0 {
            0
        } else {
            let natural = prev + hop as isize;
            (-tol..=tol)
                .map(|d| {
                    let c: f32 =
                        (0..hop as isize).map(|i| get(nominal + d + i) * get(natural + i)).sum();
                    (d, c)
                })
                .fold((0, f32::MIN), |best, cand| if cand.1 > best.1 { cand } else { best })
                .0
                + nominal
        };
        for i in 0..frame {
            out[pos + i] += win[i] * get(start + i as isize);
            norm[pos + i] += win[i];
        }
        prev = start;
        k += 1;
    }
    out.truncate(len);
    out.iter_mut().zip(&norm).for_each(|(o, &w)| {
        if w > 1e-3 {
            *o /= w
        }
    });
    out
}

/// `x` with every frequency multiplied by `factor` and its length kept: [`speed`], then
/// [`time_stretch`] back to `x.len()`.
pub fn pitch_shift(x: &[f32], factor: f64, sample_rate: u32) -> Vec<f32> {
    time_stretch(&speed(x, factor, sample_rate), x.len(), sample_rate)
}

/// `x` moved by `samples` (later when positive), zeros filling the gap, same length.
pub fn shift(x: &[f32], samples: isize) -> Vec<f32> {
    let n = x.len() as isize;
    (0..n)
        .map(|i| if (0..n).contains(&(i - samples)) { x[(i - samples) as usize] } else { 0.0 })
        .collect()
}

/// `x` scaled by `db` decibels.
pub fn gain_db(x: &[f32], db: f64) -> Vec<f32> {
    let k = 10f64.powf(db / 20.0) as f32;
    x.iter().map(|v| v * k).collect()
}

/// The telephone band of `x`: every frequency below 300 Hz or above 3400 Hz removed (zeroed
/// in the clip's spectrum). Nothing above 4 kHz is left, as in a recording made at 8 kHz.
pub fn telephone(x: &[f32], sample_rate: u32) -> Vec<f32> {
    band_pass(x, sample_rate, 300.0, 3400.0)
}

/// `x` with the spectrum outside `[low, high]` Hz zeroed (one FFT over the whole clip).
pub fn band_pass(x: &[f32], sample_rate: u32, low: f64, high: f64) -> Vec<f32> {
    let n = x.len();
    if n < 2 {
        return x.to_vec();
    }
    let mut planner = RealFftPlanner::<f64>::new();
    let fwd = planner.plan_fft_forward(n);
    let inv = planner.plan_fft_inverse(n);
    let mut buf: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    let mut spec = fwd.make_output_vec();
    fwd.process(&mut buf, &mut spec).expect("sizes come from the plan");
    let hz = sample_rate as f64 / n as f64;
    for (k, c) in spec.iter_mut().enumerate() {
        let f = k as f64 * hz;
        if f < low || f > high {
            *c = realfft::num_complex::Complex::new(0.0, 0.0);
        } else {
            *c /= n as f64;
        }
    }
    if n.is_multiple_of(2) {
        spec.last_mut().expect("n >= 2").im = 0.0;
    }
    let mut out = inv.make_output_vec();
    inv.process(&mut spec, &mut out).expect("sizes come from the plan");
    out.into_iter().map(|v| v as f32).collect()
}

/// Which background noise [`WaveAugment::apply`] mixed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseKind {
    White,
    Pink,
    Babble,
}

/// One step [`WaveAugment::apply`] took, in order, as recorded in a corpus manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum AugmentOp {
    Speed { factor: f64 },
    Pitch { semitones: f64 },
    Reverb { rt60: f64 },
    Noise { kind: NoiseKind, snr_db: f64 },
    Shift { samples: isize },
    Gain { db: f64 },
    Telephone,
}

/// A random chain of waveform augmentations: each step happens with its probability and
/// draws its amount uniformly from its range. Order: speed, pitch, reverberation, noise,
/// shift, gain; the result is scaled down if its peak would clip.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaveAugment {
    pub speed_prob: f64,
    pub speed: (f64, f64),
    pub pitch_prob: f64,
    /// Pitch shift range in semitones (factor `2^(s/12)`).
    pub pitch_semitones: (f64, f64),
    pub reverb_prob: f64,
    /// Reverberation time range, seconds.
    pub rt60: (f64, f64),
    pub noise_prob: f64,
    pub snr_db: (f64, f64),
    /// Talkers in a babble noise.
    pub babble_talkers: usize,
    /// Largest time shift either way, seconds.
    pub max_shift: f64,
    pub gain_db: (f64, f64),
}

impl Default for WaveAugment {
    fn default() -> Self {
        WaveAugment {
            speed_prob: 0.5,
            speed: (0.9, 1.1),
            pitch_prob: 0.5,
            pitch_semitones: (-2.0, 2.0),
            reverb_prob: 0.5,
            rt60: (0.15, 0.8),
            noise_prob: 0.8,
            snr_db: (5.0, 25.0),
            babble_talkers: 4,
            max_shift: 0.1,
            gain_db: (-6.0, 6.0),
        }
    }
}

impl WaveAugment {
    /// One augmented copy of `x` (at `sample_rate`) and the steps taken. Babble is one of
    /// the noise kinds only when `babble_pool` holds a clip.
    pub fn apply(
        &self,
        x: &[f32],
        sample_rate: u32,
        babble_pool: &[&[f32]],
        rng: &mut impl Rng,
    ) -> (Vec<f32>, Vec<AugmentOp>) {
        let mut y = x.to_vec();
        let mut ops = Vec::new();
        let draw =
            |rng: &mut _, (a, b): (f64, f64)| if b > a { Rng::gen_range(rng, a..=b) } else { a };
        if rng.gen_bool(self.speed_prob) {
            let factor = draw(rng, self.speed);
            y = speed(&y, factor, sample_rate);
            ops.push(AugmentOp::Speed { factor });
        }
        if rng.gen_bool(self.pitch_prob) {
            let semitones = draw(rng, self.pitch_semitones);
            y = pitch_shift(&y, 2f64.powf(semitones / 12.0), sample_rate);
            ops.push(AugmentOp::Pitch { semitones });
        }
        if rng.gen_bool(self.reverb_prob) {
            let rt60 = draw(rng, self.rt60);
            let h = synthetic_rir(rt60, sample_rate, rng);
            let before = power(&y);
            y = reverberate(&y, &h);
            // keep the loudness: the response spreads the energy, some of it past the end
            let after = power(&y);
            if after > 0.0 {
                y = gain_db(&y, 10.0 * (before / after).log10());
            }
            ops.push(AugmentOp::Reverb { rt60 });
        }
        if rng.gen_bool(self.noise_prob) {
            let kinds: &[NoiseKind] = if babble_pool.is_empty() {
                &[NoiseKind::White, NoiseKind::Pink]
            } else {
                &[NoiseKind::White, NoiseKind::Pink, NoiseKind::Babble]
            };
            let kind = kinds[rng.gen_range(0..kinds.len())];
            let snr_db = draw(rng, self.snr_db);
            let noise = match kind {
                NoiseKind::White => white_noise(y.len(), rng),
                NoiseKind::Pink => pink_noise(y.len(), rng),
                NoiseKind::Babble => babble(babble_pool, self.babble_talkers, y.len(), rng),
            };
            y = mix_at_snr(&y, &noise, snr_db);
            ops.push(AugmentOp::Noise { kind, snr_db });
        }
        let max = (self.max_shift * sample_rate as f64).round() as isize;
        if max > 0 {
            let samples = rng.gen_range(-max..=max);
            y = shift(&y, samples);
            ops.push(AugmentOp::Shift { samples });
        }
        let db = draw(rng, self.gain_db);
        y = gain_db(&y, db);
        ops.push(AugmentOp::Gain { db });
        let peak = y.iter().fold(0f32, |m, v| m.max(v.abs()));
        if peak > 0.99 {
            y.iter_mut().for_each(|v| *v *= 0.99 / peak);
        }
        (y, ops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SR: u32 = 16_000;

    fn sine(hz: f64, n: usize) -> Vec<f32> {
        (0..n).map(|i| (std::f64::consts::TAU * hz * i as f64 / SR as f64).sin() as f32).collect()
    }

    /// Power spectrum by a route independent of the code under test: a direct Hann-windowed
    /// DFT of each 512-sample frame at 256-sample hops, summed (Welch), bins of 31.25 Hz.
    fn welch(x: &[f32]) -> Vec<f64> {
        let n = 512;
        let mut acc = vec![0f64; n / 2 + 1];
        let win: Vec<f64> = (0..n)
            .map(|i| 0.5 - 0.5 * (std::f64::consts::TAU * i as f64 / n as f64).cos())
            .collect();
        let mut start = 0;
        while start + n <= x.len() {
            for (k, a) in acc.iter_mut().enumerate() {
                let (mut re, mut im) = (0f64, 0f64);
                for i in 0..n {
                    let ang = std::f64::consts::TAU * (k * i) as f64 / n as f64;
                    let v = x[start + i] as f64 * win[i];
                    re += v * ang.cos();
                    im -= v * ang.sin();
                }
                *a += re * re + im * im;
            }
            start += n / 2;
        }
        acc
    }

    fn peak_hz(x: &[f32]) -> f64 {
        let spec = welch(x);
        let k = (1..spec.len()).max_by(|&a, &b| spec[a].total_cmp(&spec[b])).unwrap();
        // parabolic interpolation on the log spectrum
        let (a, b, c) = (spec[k - 1].ln(), spec[k].ln(), spec[k + 1].ln());
        let delta = 0.5 * (a - c) / (a - 2.0 * b + c);
        (k as f64 + delta) * SR as f64 / 512.0
    }

    #[test]
    fn mixed_noise_has_the_requested_snr() {
        let x = sine(440.0, 16_000);
        let mut rng = augment_rng(1, 0, 0);
        let clips = [sine(200.0, 5000), sine(900.0, 7000)];
        let pool: Vec<&[f32]> = clips.iter().map(|c| c.as_slice()).collect();
        for (snr, noise) in [
            (5.0, white_noise(3000, &mut rng)),
            (12.5, pink_noise(16_000, &mut rng)),
            (30.0, babble(&pool, 3, 16_000, &mut rng)),
        ] {
            let y = mix_at_snr(&x, &noise, snr);
            let added: Vec<f32> = y.iter().zip(&x).map(|(a, b)| a - b).collect();
            let measured = 10.0 * (power(&x) / power(&added)).log10();
            assert!((measured - snr).abs() < 1e-3, "asked {snr} dB, measured {measured}");
        }
    }

    #[test]
    fn pink_noise_falls_3_db_per_octave() {
        let mut rng = augment_rng(2, 0, 0);
        let spec = welch(&pink_noise(64_000, &mut rng));
        let band = |lo: f64, hi: f64| {
            let (a, b) = ((lo / 31.25) as usize, (hi / 31.25) as usize);
            spec[a..b].iter().sum::<f64>() / (b - a) as f64
        };
        // density at 500 Hz over density at 4 kHz: three octaves, 9 dB
        let ratio = 10.0 * (band(400.0, 600.0) / band(3200.0, 4800.0)).log10();
        assert!((ratio - 9.0).abs() < 1.5, "{ratio} dB");
    }

    #[test]
    fn telephone_copy_has_no_energy_above_4_khz() {
        let mut rng = augment_rng(3, 0, 0);
        let x: Vec<f32> = white_noise(16_000, &mut rng);
        let y = telephone(&x, SR);
        let spec = welch(&y);
        let total: f64 = spec.iter().sum();
        let above: f64 = spec[(4000.0 / 31.25) as usize..].iter().sum();
        let below: f64 = spec[..(200.0 / 31.25) as usize].iter().sum();
        assert!(above / total < 1e-4, "above 4 kHz: {}", above / total);
        assert!(below / total < 1e-3, "below 200 Hz: {}", below / total);
        // an in-band tone passes unchanged
        let t = sine(1000.0, 16_000);
        let err = telephone(&t, SR).iter().zip(&t).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(err < 1e-4, "{err}");
    }

    #[test]
    fn speed_changes_duration_by_the_factor_and_pitch_keeps_it() {
        let x = sine(440.0, 16_000);
        for factor in [0.8, 1.1, 1.25] {
            let y = speed(&x, factor, SR);
            let want = 16_000.0 / factor;
            assert!((y.len() as f64 - want).abs() <= 2.0, "{factor}: {} samples", y.len());
            let f = peak_hz(&y[1000..y.len() - 1000]);
            assert!((f - 440.0 * factor).abs() < 3.0, "{factor}: {f} Hz");
        }
        let up = 2f64.powf(3.0 / 12.0);
        let y = pitch_shift(&x, up, SR);
        assert_eq!(y.len(), x.len());
        let f = peak_hz(&y[1000..15_000]);
        assert!((f - 440.0 * up).abs() < 4.0, "{f} Hz, want {}", 440.0 * up);
        let y = time_stretch(&x, 24_000, SR);
        assert_eq!(y.len(), 24_000);
        let f = peak_hz(&y[1000..23_000]);
        assert!((f - 440.0).abs() < 3.0, "stretched: {f} Hz");
    }

    #[test]
    fn reverb_with_a_delta_is_identity_and_convolution_matches_direct() {
        let mut rng = augment_rng(4, 0, 0);
        let x = white_noise(1000, &mut rng);
        let y = reverberate(&x, &[1.0]);
        let err = y.iter().zip(&x).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(err < 1e-5, "{err}");
        let h = [0.5f32, -0.25, 0.125];
        let full = convolve(&x[..10], &h);
        for (n, v) in full.iter().enumerate() {
            let want: f32 = (0..3).filter(|&k| n >= k && n - k < 10).map(|k| h[k] * x[n - k]).sum();
            assert!((v - want).abs() < 1e-5, "{n}: {v} vs {want}");
        }
    }

    #[test]
    fn generated_rir_decays_60_db_in_rt60() {
        for rt60 in [0.3, 0.6] {
            let h = synthetic_rir(rt60, SR, &mut augment_rng(5, 0, 0));
            assert!((h.iter().map(|&v| v as f64 * v as f64).sum::<f64>() - 1.0).abs() < 1e-4);
            // Schroeder's energy decay curve; T20 from -5 to -25 dB, times 3
            let mut edc = vec![0f64; h.len() + 1];
            for i in (0..h.len()).rev() {
                edc[i] = edc[i + 1] + h[i] as f64 * h[i] as f64;
            }
            let db = |i: usize| 10.0 * (edc[i] / edc[0]).log10();
            let t5 = (0..h.len()).find(|&i| db(i) <= -5.0).unwrap();
            let t25 = (0..h.len()).find(|&i| db(i) <= -25.0).unwrap();
            let measured = 3.0 * (t25 - t5) as f64 / SR as f64;
            assert!((measured - rt60).abs() < 0.1 * rt60, "asked {rt60}, measured {measured}");
        }
    }

    #[test]
    fn same_seed_same_copy_and_shift_gain_are_exact() {
        let x = sine(300.0, 8000);
        let clips = [sine(500.0, 4000)];
        let pool: Vec<&[f32]> = clips.iter().map(|c| c.as_slice()).collect();
        let aug = WaveAugment { noise_prob: 1.0, reverb_prob: 1.0, ..WaveAugment::default() };
        let a = aug.apply(&x, SR, &pool, &mut augment_rng(9, 2, 17));
        let b = aug.apply(&x, SR, &pool, &mut augment_rng(9, 2, 17));
        let c = aug.apply(&x, SR, &pool, &mut augment_rng(9, 2, 18));
        assert_eq!(a, b);
        assert_ne!(a.0, c.0);
        assert!(a.1.iter().any(|o| matches!(o, AugmentOp::Reverb { .. })));
        assert_eq!(shift(&[1.0, 2.0, 3.0], 1), [0.0, 1.0, 2.0]);
        assert_eq!(shift(&[1.0, 2.0, 3.0], -2), [3.0, 0.0, 0.0]);
        let g = gain_db(&[1.0, -0.5], 20.0 * 2f64.log10());
        assert!((g[0] - 2.0).abs() < 1e-6 && (g[1] + 1.0).abs() < 1e-6);
    }
}
