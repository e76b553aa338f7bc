//! `rnnlab bench <target>`: speed measurements (not timed tests). `mfcc` reports the
//! per-clip MFCC time on one thread and the whole-dataset extraction time (rayon).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::{Args, Subcommand};
use data::audio::{fit_to_length, read_wav, ONE_SECOND};
use data::cache::FeatureCache;
use data::mfcc::{Mfcc, MfccConfig};
use data::speech_commands::{SpeechCommands, Split, DEFAULT_CLASSES, DEFAULT_ROOT};

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub target: BenchTarget,
}

/// What to benchmark.
#[derive(Subcommand, Debug)]
pub enum BenchTarget {
    /// MFCC extraction: one clip on one thread, then a whole dataset in parallel.
    Mfcc(MfccBenchArgs),
    /// Training steps of the coursework's RNN models: every mode, engine, direction.
    Rnn(crate::bench_rnn::RnnBenchArgs),
}

#[derive(Args, Debug)]
pub struct MfccBenchArgs {
    /// Clips timed on one thread.
    #[arg(long, default_value_t = 2000)]
    pub iters: usize,
    /// Dataset for the whole-set timing (skipped when absent).
    #[arg(long, default_value = DEFAULT_ROOT)]
    pub root: PathBuf,
}

pub fn run(args: &BenchArgs, device: tch::Device) -> anyhow::Result<()> {
    match &args.target {
        BenchTarget::Mfcc(a) => mfcc(a),
        BenchTarget::Rnn(a) => crate::bench_rnn::run(a, device),
    }
}

/// Time this thread has spent on a CPU (Linux `/proc/thread-self/schedstat`), which stays
/// meaningful on a machine shared with other jobs; `None` elsewhere.
fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(text.split_whitespace().next()?.parse::<f64>().ok()? * 1e-9)
}

fn mfcc(args: &MfccBenchArgs) -> anyhow::Result<()> {
    let mfcc = Mfcc::new(MfccConfig::default());
    // A deterministic one-second clip: a chirp plus pseudo-random noise.
    let mut state = 1u32;
    let clip: Vec<f32> = (0..ONE_SECOND)
        .map(|n| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let t = n as f32 / 16_000.0;
            0.5 * (2.0 * std::f32::consts::PI * (200.0 * t + 1500.0 * t * t)).sin()
                + 0.05 * (state as f32 / u32::MAX as f32 - 0.5)
        })
        .collect();
    let mut sink = 0f32;
    for _ in 0..50 {
        sink += mfcc.compute(&clip).values[0];
    }
    let iters = args.iters.max(1);
    let (start, cpu0) = (Instant::now(), thread_cpu_seconds());
    for _ in 0..iters {
        sink += mfcc.compute(&clip).values[0];
    }
    let per_clip = start.elapsed().as_secs_f64() / iters as f64;
    let cpu = match (cpu0, thread_cpu_seconds()) {
        (Some(a), Some(b)) => format!(", {:.1} us of CPU time", (b - a) / iters as f64 * 1e6),
        _ => String::new(),
    };
    println!("mfcc one clip, one thread: {:.1} us/clip wall{cpu} ({iters} clips)", per_clip * 1e6);

    // Listing only: the timed extraction below bypasses every cache.
    let uncached = Arc::new(FeatureCache::uncached(MfccConfig::default(), Some(ONE_SECOND)));
    let Ok(splits) = Split::ALL
        .iter()
        .map(|&s| SpeechCommands::with_cache(&args.root, s, &DEFAULT_CLASSES, uncached.clone()))
        .collect::<Result<Vec<_>, _>>()
    else {
        println!("no dataset under {} (make data): whole-set timing skipped", args.root.display());
        std::hint::black_box(sink);
        return Ok(());
    };
    let paths: Vec<PathBuf> =
        splits.iter().flat_map(|s| s.items().iter().map(|(p, _)| p.clone())).collect();
    // Read + resample + MFCC per file on one thread (files warm in the page cache).
    let n1 = paths.len().min(500);
    let start = Instant::now();
    for p in &paths[..n1] {
        let y = read_wav(p).with_context(|| p.display().to_string())?;
        sink += mfcc.compute(&fit_to_length(&y, ONE_SECOND)).values[0];
    }
    let per_file = start.elapsed().as_secs_f64() / n1.max(1) as f64;
    println!("read + mfcc, one thread: {:.1} us/file ({n1} files)", per_file * 1e6);
    let start = Instant::now();
    let feats = uncached.features_many(&paths)?;
    let whole = start.elapsed().as_secs_f64();
    println!(
        "whole dataset ({} files, {} threads, no cache): {:.2} s, {:.0} files/s",
        feats.len(),
        std::thread::available_parallelism().map_or(1, |n| n.get()),
        whole,
        feats.len() as f64 / whole
    );
    std::hint::black_box(sink);
    Ok(())
}
