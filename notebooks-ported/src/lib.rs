//! What every ported notebook shares: where its outputs go, whether it runs
//! in quick mode, which device it uses, and a transcript of what it printed.
//!
//! A notebook is a program in `src/bin/` that reads top to bottom like the
//! original: `nb.section("...")` opens a notebook section, [`say!`] prints a
//! cell's output. Everything printed also goes to
//! `results/notebooks/<name>/output.md` (flushed line by line, so a crash
//! keeps what ran), beside the PNG figures the notebook draws.
//!
//! Notebooks run from the repository root (paths such as [`NAMES`] are
//! relative to it). The environment sets three things, as `make notebook NB=<name>` does:
//! - `QUICK=1` shrinks data and steps so every notebook finishes in a minute
//!   or so (CI runs them this way); the narration's figures are for full runs;
//! - `DEVICE=auto|cpu|cuda` (default `auto`: CUDA when libtorch sees it);
//! - `NOTEBOOKS_OUT` moves the output root (default `results/notebooks`).

use anyhow::{bail, Context};
use std::fmt::Display;
use std::fs::{self, File};
use std::io::Write;
use std::path::PathBuf;
use tch::{Cuda, Device};

/// makemore's names, relative to the repository root, where every notebook
/// runs (`make notebook`, and the tests).
pub const NAMES: &str = "data/names.txt";

/// Prints a line of a notebook cell's output and appends it to the transcript:
/// `say!(nb, "loss {loss:.4}")`.
#[macro_export]
macro_rules! say {
    ($nb:expr) => { $nb.say("") };
    ($nb:expr, $($arg:tt)*) => { $nb.say(format!($($arg)*)) };
}

/// One running notebook: its output folder, mode, device and transcript.
pub struct Notebook {
    out: PathBuf,
    quick: bool,
    device: Device,
    transcript: File,
}

impl Notebook {
    /// Starts notebook `name` (its folder under the output root) titled
    /// `title`: creates the folder, opens `output.md`, resolves the device.
    pub fn start(name: &str, title: &str) -> anyhow::Result<Self> {
        let root = std::env::var_os("NOTEBOOKS_OUT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("results/notebooks"));
        let out = root.join(name);
        fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let path = out.join("output.md");
        let transcript =
            File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let quick = flag("QUICK")?;
        let device = device_from_env()?;
        // one intra-op thread unless told otherwise: small models on a shared,
        // 2-core machine run fastest that way (see the README's speed notes)
        let threads = match std::env::var("THREADS") {
            Ok(v) => v.parse().with_context(|| format!("THREADS={v:?} is not a number"))?,
            Err(_) => 1,
        };
        tch::set_num_threads(threads);
        let mut nb = Self { out, quick, device, transcript };
        nb.say(format!("# {title}"));
        nb.say(format!(
            "\n_{} mode on {:?}, {threads} thread(s); outputs in {}_",
            if quick { "QUICK" } else { "full" },
            device,
            nb.out.display()
        ));
        Ok(nb)
    }

    /// Whether `QUICK=1`: small data and few steps.
    pub fn quick(&self) -> bool {
        self.quick
    }

    /// `full` normally, `quick` under `QUICK=1`.
    pub fn pick<T>(&self, full: T, quick: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }

    /// The device every tensor of the notebook lives on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// A file in the output folder.
    pub fn path(&self, file: &str) -> PathBuf {
        self.out.join(file)
    }

    /// Opens a section, as a markdown heading in the notebook.
    pub fn section(&mut self, title: &str) {
        self.say(format!("\n## {title}\n"));
    }

    /// Prints `text` and appends it to `output.md`. A transcript that can no
    /// longer be written is reported once on stderr; printing goes on.
    pub fn say(&mut self, text: impl Display) {
        let text = text.to_string();
        println!("{text}");
        if let Err(e) = writeln!(self.transcript, "{text}").and_then(|_| self.transcript.flush()) {
            eprintln!("warning: {}: {e}", self.out.join("output.md").display());
        }
    }

    /// Records a figure the notebook wrote, as a markdown image link.
    pub fn figure(&mut self, file: &str, caption: &str) {
        self.say(format!("\n![{caption}]({file})\n"));
    }
}

/// A boolean environment variable: unset, empty or `0` is false, `1` true.
fn flag(name: &str) -> anyhow::Result<bool> {
    match std::env::var(name).as_deref() {
        Err(_) | Ok("") | Ok("0") => Ok(false),
        Ok("1") => Ok(true),
        Ok(other) => bail!("{name}={other:?}: expected 1 or 0"),
    }
}

/// `DEVICE=auto|cpu|cuda`, as `rnnlab --device`: `cuda` without a GPU is an error.
fn device_from_env() -> anyhow::Result<Device> {
    match std::env::var("DEVICE").as_deref() {
        Err(_) | Ok("") | Ok("auto") => Ok(Device::cuda_if_available()),
        Ok("cpu") => Ok(Device::Cpu),
        Ok("cuda") if Cuda::is_available() => Ok(Device::Cuda(0)),
        Ok("cuda") => bail!("DEVICE=cuda: libtorch sees no CUDA device; use DEVICE=cpu"),
        Ok(other) => bail!("DEVICE={other:?}: expected auto, cpu or cuda"),
    }
}

/// Trainable parameters of a VarStore, as PyTorch's
/// `sum(p.numel() for p in model.parameters())`.
pub fn parameter_count(vs: &tch::nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

/// The first line of an error: libtorch appends a C++ backtrace.
pub fn first_line(error: &impl Display) -> String {
    error.to_string().lines().next().unwrap_or_default().to_owned()
}
