//! WAV in: decode any integer PCM (8/16/24/32-bit) or 32-bit float WAV with `hound`, mix
//! down to mono, resample to 16 kHz with `rubato`, optionally trim leading and trailing
//! silence (`librosa.effects.trim`'s rule), and zero-pad or cut to one second.
//!
//! Integer samples are scaled as libsndfile (and so `librosa.load`) does: divided by
//! 2^(bits-1), so 16-bit `x` becomes `x / 32768` in [-1, 1). Channels are averaged like
//! `librosa.to_mono`. Float files are passed through unchanged.

use std::io::Read;
use std::path::Path;

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};

/// The sample rate every clip is brought to.
pub const SAMPLE_RATE: u32 = 16_000;
/// One second at [`SAMPLE_RATE`]: the coursework's clip length.
pub const ONE_SECOND: usize = SAMPLE_RATE as usize;

/// Reads `path` as mono f32 samples at 16 kHz, full length.
///
/// Errors name the file and say why: missing, empty, truncated, not a WAV, or an encoding
/// other than integer PCM of 8/16/24/32 bits or 32-bit float.
pub fn read_wav(path: &Path) -> Result<Vec<f32>> {
    let file = std::fs::File::open(path).map_err(|e| DataError::io(path, e))?;
    let empty = file.metadata().map_err(|e| DataError::io(path, e))?.len() == 0;
    if empty {
        return Err(DataError::Wav { path: path.into(), reason: "empty file (0 bytes)".into() });
    }
    let (mono, rate) = decode_wav(std::io::BufReader::new(file), path)?;
    resample(&mono, rate, SAMPLE_RATE)
        .map_err(|reason| DataError::Wav { path: path.into(), reason })
}

/// A WAV file's sample rate and length in seconds, from its header alone.
pub fn wav_info(path: &Path) -> Result<(u32, f64)> {
    let reader = hound::WavReader::open(path)
        .map_err(|e| DataError::Wav { path: path.into(), reason: describe(e) })?;
    let rate = reader.spec().sample_rate;
    if rate == 0 {
        let reason = "the header declares a sample rate of 0 Hz".into();
        return Err(DataError::Wav { path: path.into(), reason });
    }
    Ok((rate, reader.duration() as f64 / rate as f64))
}

/// Decodes a WAV stream into mono f32 samples at the file's own rate; `path` only names
/// the source in errors. Returns `(samples, sample_rate)`.
pub fn decode_wav<R: Read>(reader: R, path: &Path) -> Result<(Vec<f32>, u32)> {
    let wav_err = |reason: String| DataError::Wav { path: path.into(), reason };
    let mut reader = hound::WavReader::new(reader).map_err(|e| wav_err(describe(e)))?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    if channels == 0 {
        return Err(wav_err("the header declares 0 channels".into()));
    }
    if spec.sample_rate == 0 {
        return Err(wav_err("the header declares a sample rate of 0 Hz".into()));
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ (8 | 16 | 24 | 32)) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            reader
                .samples::<i32>()
                .map(|s| s.map(|v| (v as f64 * scale) as f32))
                .collect::<Result<_, _>>()
                .map_err(|e| wav_err(describe(e)))?
        }
        (hound::SampleFormat::Float, 32) => {
            reader.samples::<f32>().collect::<Result<_, _>>().map_err(|e| wav_err(describe(e)))?
        }
        (format, bits) => {
            return Err(wav_err(format!(
                "unsupported encoding: {bits}-bit {format:?} (supported: integer PCM of 8, 16, \
                 24 or 32 bits, 32-bit float)"
            )))
        }
    };
    if !interleaved.len().is_multiple_of(channels) {
        return Err(wav_err(format!(
            "truncated: {} samples is not a whole number of {channels}-channel frames",
            interleaved.len()
        )));
    }
    let mono = if channels == 1 {
        interleaved
    } else {
        let inv = 1.0 / channels as f32;
        interleaved.chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() * inv).collect()
    };
    Ok((mono, spec.sample_rate))
}

fn describe(e: hound::Error) -> String {
    match e {
        hound::Error::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "truncated or empty: the file ends before its header or data say it should".into()
        }
        hound::Error::IoError(io) if io.to_string().contains("enough bytes") => {
            "truncated: the file ends before its header or data say it should".into()
        }
        hound::Error::IoError(io) => io.to_string(),
        hound::Error::FormatError(what) if what.contains("bits per sample") => {
            format!("unsupported encoding ({what}): supported are integer PCM of 8, 16, 24 or 32 bits and 32-bit float")
        }
        hound::Error::FormatError(what) => format!("not a WAV file or a damaged header: {what}"),
        hound::Error::TooWide => "sample wider than 32 bits".into(),
        hound::Error::UnfinishedSample => "truncated: the data ends inside a sample".into(),
        hound::Error::Unsupported => "unsupported encoding (compressed or unusual format)".into(),
        hound::Error::InvalidSampleFormat => "unsupported or inconsistent sample format".into(),
    }
}

/// Resamples mono `samples` from `from` Hz to `to` Hz with rubato's FFT resampler (the
/// whole clip at once, start-up delay trimmed). Equal rates return a copy.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, String> {
    if from == to || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let mut resampler = Fft::<f32>::new(from as usize, to as usize, 1024, 1, FixedSync::Input)
        .map_err(|e| format!("cannot resample {from} Hz to {to} Hz: {e}"))?;
    let input = InterleavedSlice::new(samples, 1, samples.len()).map_err(|e| e.to_string())?;
    let out = resampler
        .process_all(&input, samples.len(), None)
        .map_err(|e| format!("resampling {from} Hz to {to} Hz failed: {e}"))?;
    Ok(out.take_data())
}

/// Zero-pads or cuts `samples` to exactly `len` (the coursework keeps the start of a clip).
pub fn fit_to_length(samples: &[f32], len: usize) -> Vec<f32> {
    let mut out = samples[..samples.len().min(len)].to_vec();
    out.resize(len, 0.0);
    out
}

/// `librosa.effects.trim`'s parameters: a frame is silent when its RMS is `top_db`
/// decibels or more below the loudest frame's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrimConfig {
    /// Threshold below the loudest frame, in dB (librosa: 60).
    pub top_db: f64,
    /// Samples per RMS frame (librosa: 2048).
    pub frame_length: usize,
    /// Samples between frame starts (librosa: 512).
    pub hop_length: usize,
}

impl Default for TrimConfig {
    fn default() -> Self {
        TrimConfig { top_db: 60.0, frame_length: 2048, hop_length: 512 }
    }
}

/// The `(start, end)` sample range `librosa.effects.trim` keeps of mono `samples`.
///
/// As librosa: the RMS of centred frames (`frame_length / 2` zeros each side, frame `t`
/// centred on sample `t * hop`), in dB against the loudest frame with a floor of
/// amplitude 1e-5 (`amplitude_to_db(rms, ref=np.max)`); frames above `-top_db` are
/// non-silent; the range runs from the first non-silent frame's start `t * hop` to the
/// last one's end `(t + 1) * hop` (at most the clip's length). With no frame above the
/// threshold, `(0, 0)`. An all-zero clip is all "non-silent" (every frame is at 0 dB
/// against a loudest frame of zero), and is kept whole, as librosa does.
pub fn trim_bounds(samples: &[f32], cfg: &TrimConfig) -> (usize, usize) {
    let (n, hop, half) = (samples.len(), cfg.hop_length.max(1), cfg.frame_length / 2);
    let frames = 1 + (n + 2 * half).saturating_sub(cfg.frame_length) / hop;
    let power: Vec<f64> = (0..frames)
        .map(|t| {
            let lo = (t * hop).saturating_sub(half);
            let hi = (t * hop + cfg.frame_length - half).min(n);
            let sum: f64 = samples[lo.min(hi)..hi].iter().map(|&x| (x as f64) * (x as f64)).sum();
            sum / cfg.frame_length as f64
        })
        .collect();
    // 10 log10(max(amin², p)) - 10 log10(max(amin², ref²)), amin = 1e-5.
    let db = |p: f64| 10.0 * p.max(1e-10).log10();
    let reference = db(power.iter().copied().fold(0.0, f64::max));
    let loud: Vec<usize> =
        (0..frames).filter(|&t| db(power[t]) - reference > -cfg.top_db).collect();
    match (loud.first(), loud.last()) {
        (Some(&first), Some(&last)) => ((first * hop).min(n), ((last + 1) * hop).min(n)),
        _ => (0, 0),
    }
}

/// `samples` with leading and trailing silence removed ([`trim_bounds`]).
pub fn trim_silence<'a>(samples: &'a [f32], cfg: &TrimConfig) -> &'a [f32] {
    let (start, end) = trim_bounds(samples, cfg);
    &samples[start..end.max(start)]
}

/// Writes mono f32 samples as 16-bit PCM (rounded, clipped to the int16 range).
pub fn write_wav_i16(path: &Path, samples: &[f32], sample_rate: u32) -> Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let err = |e: hound::Error| DataError::Wav { path: path.into(), reason: e.to_string() };
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    for &s in samples {
        w.write_sample((s * 32768.0).round().clamp(-32768.0, 32767.0) as i16).map_err(err)?;
    }
    w.finalize().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_pads_and_cuts() {
        assert_eq!(fit_to_length(&[1.0, 2.0], 4), vec![1.0, 2.0, 0.0, 0.0]);
        assert_eq!(fit_to_length(&[1.0, 2.0, 3.0], 2), vec![1.0, 2.0]);
    }

    #[test]
    fn resample_keeps_a_sine() {
        // 440 Hz at 44.1 kHz, one second, resampled to 16 kHz: the same tone, 16000 samples.
        let x: Vec<f32> = (0..44_100)
            .map(|n| (2.0 * std::f64::consts::PI * 440.0 * n as f64 / 44_100.0).sin() as f32)
            .collect();
        let y = resample(&x, 44_100, 16_000).unwrap();
        assert_eq!(y.len(), 16_000);
        // Away from the edges the output is the analytic sine at the new rate, up to the
        // FFT resampler's constant sub-sample lag (under half a sample, 31 us).
        let err = |shift: f64| {
            (2000..14_000)
                .map(|n| {
                    let t = (n as f64 + shift) / 16_000.0;
                    (y[n] as f64 - (2.0 * std::f64::consts::PI * 440.0 * t).sin()).abs()
                })
                .fold(0.0, f64::max)
        };
        let best = (-10..=10).map(|i| err(i as f64 * 0.05)).fold(f64::MAX, f64::min);
        assert!(best < 5e-3, "max error {best}");
    }
}
