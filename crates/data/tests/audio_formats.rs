//! WAV reading: every supported encoding decodes to the exact libsndfile scaling, channels
//! are averaged, other rates are resampled to 16 kHz, and every broken file gives an error
//! that names the file and the reason (no panic).

use std::path::{Path, PathBuf};

use data::audio::{decode_wav, read_wav};
use data::DataError;

fn write(dir: &Path, name: &str, spec: hound::WavSpec, frames: &[Vec<f64>]) -> PathBuf {
    let path = dir.join(name);
    let mut w = hound::WavWriter::create(&path, spec).unwrap();
    for frame in frames {
        for &x in frame {
            match spec.sample_format {
                hound::SampleFormat::Float => w.write_sample(x as f32).unwrap(),
                hound::SampleFormat::Int => {
                    let full = (1i64 << (spec.bits_per_sample - 1)) as f64;
                    let v = (x * full).round().clamp(-full, full - 1.0) as i32;
                    w.write_sample(v).unwrap()
                }
            }
        }
    }
    w.finalize().unwrap();
    path
}

fn spec(channels: u16, rate: u32, bits: u16, float: bool) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float { hound::SampleFormat::Float } else { hound::SampleFormat::Int },
    }
}

/// A ramp of values that every bit depth represents exactly.
fn ramp(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| (i as f64 / n as f64) * 1.5 - 0.75)
        .map(|x| (x * 128.0).round() / 128.0)
        .collect()
}

#[test]
fn every_integer_depth_and_float_decodes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let x = ramp(1000);
    let frames: Vec<Vec<f64>> = x.iter().map(|&v| vec![v]).collect();
    for (bits, float) in [(8, false), (16, false), (24, false), (32, false), (32, true)] {
        let p = write(
            dir.path(),
            &format!("b{bits}{float}.wav"),
            spec(1, 16_000, bits, float),
            &frames,
        );
        let y = read_wav(&p).unwrap();
        assert_eq!(y.len(), x.len(), "{bits}-bit");
        for (a, b) in y.iter().zip(&x) {
            assert_eq!(*a as f64, *b, "{bits}-bit float={float}");
        }
    }
}

#[test]
fn sixteen_bit_is_divided_by_32768() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("extremes.wav");
    let mut w = hound::WavWriter::create(&p, spec(1, 16_000, 16, false)).unwrap();
    for v in [i16::MIN, -1, 0, 1, i16::MAX] {
        w.write_sample(v).unwrap();
    }
    w.finalize().unwrap();
    let y = read_wav(&p).unwrap();
    assert_eq!(y, vec![-1.0, -1.0 / 32768.0, 0.0, 1.0 / 32768.0, 32767.0 / 32768.0]);
}

#[test]
fn channels_are_averaged_to_mono() {
    let dir = tempfile::tempdir().unwrap();
    let frames: Vec<Vec<f64>> = (0..100).map(|i| vec![0.5, -0.25, (i % 2) as f64 * 0.25]).collect();
    let p = write(dir.path(), "three.wav", spec(3, 16_000, 16, false), &frames);
    let y = read_wav(&p).unwrap();
    assert_eq!(y.len(), 100);
    assert_eq!(y[0], 0.25 / 3.0);
    assert_eq!(y[1], 0.5 / 3.0);
    let stereo: Vec<Vec<f64>> = (0..10).map(|_| vec![0.5, -0.5]).collect();
    let p = write(dir.path(), "stereo.wav", spec(2, 16_000, 24, false), &stereo);
    assert!(read_wav(&p).unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn other_rates_are_resampled_to_16k() {
    let dir = tempfile::tempdir().unwrap();
    for rate in [8_000u32, 22_050, 44_100, 48_000] {
        // One second of 300 Hz at `rate`, stereo.
        let frames: Vec<Vec<f64>> = (0..rate)
            .map(|n| {
                let v = 0.5 * (2.0 * std::f64::consts::PI * 300.0 * n as f64 / rate as f64).sin();
                vec![v, v]
            })
            .collect();
        let p = write(dir.path(), &format!("r{rate}.wav"), spec(2, rate, 16, false), &frames);
        let y = read_wav(&p).unwrap();
        assert!((y.len() as i64 - 16_000).abs() <= 2, "{rate}: {} samples", y.len());
        // The analytic tone at 16 kHz, up to rubato's constant sub-sample lag (< 0.5 sample).
        let err = |shift: f64| {
            (1000..15_000)
                .map(|n| {
                    let t = (n as f64 + shift) / 16_000.0;
                    (y[n] as f64 - 0.5 * (2.0 * std::f64::consts::PI * 300.0 * t).sin()).abs()
                })
                .fold(0.0, f64::max)
        };
        let best = (-10..=10).map(|i| err(i as f64 * 0.05)).fold(f64::MAX, f64::min);
        assert!(best < 5e-3, "{rate} Hz: max error {best}");
    }
}

fn assert_wav_error(path: &Path, reason_part: &str) {
    let err = read_wav(path).expect_err("broken file must fail");
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "no file name in: {msg}");
    assert!(msg.to_lowercase().contains(reason_part), "no '{reason_part}' in: {msg}");
}

/// A canonical 44-byte header for `format` (1 PCM, 3 float, 6 A-law) and `bits`.
fn header(format: u16, bits: u16, data_len: u32) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(36 + data_len).to_le_bytes());
    h.extend_from_slice(b"WAVEfmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&format.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&16_000u32.to_le_bytes());
    h.extend_from_slice(&(16_000 * bits as u32 / 8).to_le_bytes());
    h.extend_from_slice(&(bits / 8).to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

#[test]
fn broken_files_name_the_file_and_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let empty = d.join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    assert_wav_error(&empty, "empty");

    let text = d.join("notes.wav");
    std::fs::write(&text, b"this is not audio at all, just some text in a file").unwrap();
    assert_wav_error(&text, "not a wav");

    // A header announcing 2000 bytes of data followed by only 100.
    let truncated = d.join("truncated.wav");
    let mut bytes = header(1, 16, 2000);
    bytes.extend(std::iter::repeat_n(0u8, 100));
    std::fs::write(&truncated, &bytes).unwrap();
    assert_wav_error(&truncated, "truncated");

    // Cut inside the header.
    let cut = d.join("cut_header.wav");
    std::fs::write(&cut, &header(1, 16, 2000)[..20]).unwrap();
    assert_wav_error(&cut, "truncated");

    // A-law (format 6) and 64-bit float: valid WAVs in encodings we do not read.
    let alaw = d.join("alaw.wav");
    let mut bytes = header(6, 8, 100);
    bytes.extend(std::iter::repeat_n(0xd5u8, 100));
    std::fs::write(&alaw, &bytes).unwrap();
    assert_wav_error(&alaw, "unsupported");
    let f64_wav = d.join("float64.wav");
    let mut bytes = header(3, 64, 80);
    bytes.extend(std::iter::repeat_n(0u8, 80));
    std::fs::write(&f64_wav, &bytes).unwrap();
    assert_wav_error(&f64_wav, "unsupported");

    let missing = d.join("missing.wav");
    let err = read_wav(&missing).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }));
    assert!(err.to_string().contains("missing.wav"));
}

#[test]
fn decoding_from_memory_reports_the_given_name() {
    let err = decode_wav(std::io::Cursor::new(b"RIFF"), Path::new("speech/clip.wav")).unwrap_err();
    assert!(err.to_string().contains("speech/clip.wav"), "{err}");
}
