//! `rnnlab`: train, evaluate, sample, plot and benchmark the coursework models.
//!
//! One `run()` per command, each in its own module; `--device` is parsed once
//! here for every command.

mod bench;
mod bench_rnn;
mod config;
mod data_cmd;
mod device;
mod embed;
mod info;
mod mfcc_cmd;
mod plots;
mod predict;
mod pretrain;
mod speaker;
mod sweep;
mod train;
mod train_rnn;
mod wavenet;

use clap::{Parser, Subcommand};
use device::DeviceArg;

#[derive(Parser, Debug)]
#[command(name = "rnnlab", version, about = "The RNN coursework, ported to Rust on libtorch")]
struct Cli {
    /// Where tensors live: `auto` takes CUDA when present, `cuda` fails without it.
    #[arg(long, global = true, value_enum, default_value_t = DeviceArg::Auto)]
    device: DeviceArg,

    #[command(subcommand)]
    command: Command,
}

// `train`'s flags make its variant the large one; a command is parsed once.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Versions, the libtorch in use, CUDA and cuDNN availability, threads.
    Info,
    /// Train a model; writes metrics.csv, config.json, summary.json, checkpoints.
    Train(Box<train::TrainArgs>),
    /// Re-score a recurrent classifier's checkpoint on a split, or on another corpus.
    Eval(train_rnn::EvalArgs),
    /// Classify WAV files (or folders of them) with a trained word classifier.
    Predict(predict::PredictArgs),
    /// Sample new names from a trained wavenet run (evaluation-mode BatchNorm).
    Sample(wavenet::SampleArgs),
    /// Draw the figures of every run under results/ (PNG files in each run folder).
    Plots(plots::PlotsArgs),
    /// MFCCs of a WAV file as CSV (librosa's settings; one frame a line, no header).
    Mfcc(mfcc_cmd::MfccArgs),
    /// Get Speech Commands: download the real archive or synthesise one with espeak-ng.
    Data(data_cmd::DataArgs),
    /// Speed measurements: `bench mfcc`.
    Bench(bench::BenchArgs),
    /// Grids of training runs over seeds, locally or as a Slurm job array, and their report.
    Sweep(sweep::SweepArgs),
    /// Embed every WAV under a folder with a trained speaker run (CSV: file, e0, e1, ...).
    Embed(embed::EmbedArgs),
    /// Group the WAVs under a folder by speaker with a trained speaker run
    /// (k-means; CSV: file, cluster, and a scatter plot).
    Cluster(embed::ClusterArgs),
}

/// Restores the default action of SIGPIPE, which Rust's runtime ignores: when
/// the reader of rnnlab's output goes away (`rnnlab predict --csv DIR | head`),
/// rnnlab ends quietly, as other command-line tools do, instead of printing a
/// "Broken pipe" error or panicking in `println!`.
fn default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any thread exists; SIG_DFL is a
    // valid disposition for SIGPIPE.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn main() -> anyhow::Result<()> {
    default_sigpipe();
    let cli = Cli::parse();
    if let Command::Sweep(args) = &cli.command {
        // the runs resolve the device themselves; the sweep only passes it on
        return sweep::dispatch(args, cli.device);
    }
    let device = cli.device.resolve()?;
    match cli.command {
        Command::Info => info::run(device),
        Command::Train(args) => train::run(&args, device),
        Command::Eval(args) => train_rnn::eval(&args, device),
        Command::Predict(args) => predict::run(&args, device),
        Command::Sample(args) => wavenet::sample(&args, device),
        Command::Plots(args) => plots::run(&args),
        Command::Mfcc(args) => mfcc_cmd::run(&args),
        Command::Data(args) => data_cmd::run(&args),
        Command::Bench(args) => bench::run(&args, device),
        Command::Sweep(_) => unreachable!("handled above"),
        Command::Embed(args) => embed::embed(&args),
        Command::Cluster(args) => embed::cluster(&args),
    }
}
