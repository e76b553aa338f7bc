//! `rnnlab mfcc FILE.wav`: the clip's MFCCs as CSV (written by the `csv` crate), one frame
//! a line, `n_mfcc` values, no header; librosa's `mfcc(sr=16000, n_mfcc=20, n_fft=2048, hop_length=512).T` of the clip
//! padded or cut to one second (as the coursework does).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use data::audio::{fit_to_length, read_wav, ONE_SECOND};
use data::mfcc::{Mfcc, MfccConfig};

#[derive(Args, Debug)]
pub struct MfccArgs {
    /// WAV file (any integer PCM or 32-bit float, any channels and rate).
    pub file: PathBuf,
    /// Factor on the samples first: 32768 for the coursework's raw int16 scale.
    #[arg(long, default_value_t = 1.0)]
    pub scale: f32,
    /// Keep the whole clip instead of padding or cutting it to one second.
    #[arg(long)]
    pub full: bool,
}

pub fn run(args: &MfccArgs) -> anyhow::Result<()> {
    let samples = read_wav(&args.file).context("reading the clip")?;
    let samples = if args.full { samples } else { fit_to_length(&samples, ONE_SECOND) };
    let f = Mfcc::new(MfccConfig { scale: args.scale, ..MfccConfig::default() }).compute(&samples);
    let mut out =
        csv::WriterBuilder::new().has_headers(false).from_writer(std::io::stdout().lock());
    for t in 0..f.frames {
        out.serialize(f.frame(t))?;
    }
    out.flush()?;
    Ok(())
}
