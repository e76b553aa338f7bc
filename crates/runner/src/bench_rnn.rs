//! `rnnlab bench rnn`: seconds per training step (forward, backward, Adam; the
//! median step) over a grid of batch and hidden sizes, for each mode, engine
//! and direction asked for.
//!
//! Each configuration reports the median step in wall-clock time and in CPU
//! time of the process. With one thread, CPU time is the work itself: other
//! processes on shared cores stretch wall-clock time, not CPU time, so it is
//! the steadier figure to compare when the machine is not idle.
//!
//! Every configuration is the notebook's model at another size: 32 steps of
//! 20 MFCCs, `--layers` stacked layers, 3 classes. Inputs are random (speed
//! does not depend on the values). `scripts/bench_pytorch.py` times
//! `nn.LSTM` / `nn.GRU` on the same grid and the notebook's Python cells at
//! the coursework size; `make bench-rnn` runs both and prints the ratios.

use crate::train_rnn::EngineArg;
use clap::Args;
use models::{classifier, Adam, Engine, Mode, RnnConfig};
use std::time::Instant;
use tch::nn;
use tch::{Device, Kind, Tensor};

#[derive(Args, Debug)]
pub struct RnnBenchArgs {
    /// Most timed training steps per configuration.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Stop timing a configuration after this many seconds (at least 3 steps).
    #[arg(long, default_value_t = 3.0)]
    pub max_seconds: f64,
    /// Untimed steps first.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Batch sizes of the grid.
    #[arg(long, value_delimiter = ',', default_values_t = [32, 100, 256])]
    pub batch_size: Vec<i64>,
    /// Hidden sizes of the grid.
    #[arg(long, value_delimiter = ',', default_values_t = [32, 128, 256, 512])]
    pub hidden: Vec<i64>,
    /// Recurrent modes, the notebook's names: LSTM, GRU, RNN_TANH, RNN_RELU.
    #[arg(long, value_delimiter = ',', default_values_t = [Mode::Lstm, Mode::Gru])]
    pub modes: Vec<Mode>,
    /// Engines to time: custom (the hand-written cells) and fused (libtorch's RNN ops).
    #[arg(long, value_delimiter = ',', value_enum,
          default_values_t = [EngineArg::Custom, EngineArg::Fused])]
    pub engines: Vec<EngineArg>,
    /// Also time the bidirectional models.
    #[arg(long)]
    pub bidir: bool,
    /// Stacked layers.
    #[arg(long, default_value_t = 2)]
    pub layers: i64,
    /// Intra-op CPU threads (`scripts/bench_pytorch.py --threads` to match).
    #[arg(long, default_value_t = 1)]
    pub threads: i32,
}

/// Waits for queued GPU work, so a timer sees it finish.
fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// CPU time of the whole process (every thread), in seconds.
fn process_cpu_seconds() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_PROCESS_CPUTIME_ID) failed");
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The median of `v` (sorted in place).
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median wall-clock and CPU seconds per step, and the number of steps timed.
fn seconds_per_step(
    args: &RnnBenchArgs,
    (batch, config): (i64, RnnConfig),
    bidir: bool,
    engine: Engine,
    device: Device,
) -> (f64, f64, usize) {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = classifier(&vs.root(), config, bidir, engine, None);
    let mut opt = Adam::new(&vs, 0.01);
    let x = Tensor::randn([batch, 32, config.input_size], (Kind::Float, device));
    let y = Tensor::randint(config.output_size, [batch], (Kind::Int64, device));
    let mut step = || {
        let loss = model.forward_t(&x, true).cross_entropy_for_logits(&y);
        opt.backward_step(&loss);
    };
    for _ in 0..args.warmup {
        step();
    }
    // The median step: bursts from other processes on shared cores lengthen a
    // few steps, not the middle one (`scripts/bench_pytorch.py` does the same).
    let start = Instant::now();
    let (mut wall, mut cpu) = (Vec::new(), Vec::new());
    while wall.len() < args.steps.max(1)
        && (wall.len() < 3 || start.elapsed().as_secs_f64() < args.max_seconds)
    {
        sync(device);
        let (t0, c0) = (Instant::now(), process_cpu_seconds());
        step();
        sync(device);
        wall.push(t0.elapsed().as_secs_f64());
        cpu.push(process_cpu_seconds() - c0);
    }
    let n = wall.len();
    (median(&mut wall), median(&mut cpu), n)
}

pub fn run(args: &RnnBenchArgs, device: Device) -> anyhow::Result<()> {
    anyhow::ensure!(args.threads >= 1, "--threads {}: give 1 or more", args.threads);
    tch::set_num_threads(args.threads);
    let mut rows = Vec::new();
    for &batch in &args.batch_size {
        anyhow::ensure!(batch >= 1, "--batch-size {batch}: give sizes of 1 or more");
        for &hidden in &args.hidden {
            anyhow::ensure!(hidden >= 1, "--hidden {hidden}: give sizes of 1 or more");
            for &mode in &args.modes {
                for bidir in if args.bidir { vec![false, true] } else { vec![false] } {
                    for engine in args.engines.iter().map(|&e| Engine::from(e)) {
                        let config = RnnConfig {
                            mode,
                            input_size: 20,
                            hidden_size: hidden,
                            num_layers: args.layers,
                            bias: true,
                            output_size: 3,
                        };
                        let (s, cpu, n) =
                            seconds_per_step(args, (batch, config), bidir, engine, device);
                        eprintln!(
                            "B {batch:<4} H {hidden:<4} {mode:<8} {:<5} {engine:?}: {:.2} ms/step, \
                             {:.2} ms CPU ({n} steps)",
                            if bidir { "bidir" } else { "uni" },
                            s * 1e3,
                            cpu * 1e3
                        );
                        rows.push(serde_json::json!({
                            "batch_size": batch,
                            "hidden": hidden,
                            "mode": mode,
                            "bidirectional": bidir,
                            "engine": engine,
                            "seconds_per_step": s,
                            "cpu_seconds_per_step": cpu,
                            "steps": n,
                        }));
                    }
                }
            }
        }
    }
    let out = serde_json::json!({
        "device": format!("{device:?}"),
        "threads": tch::get_num_threads(),
        "layers": args.layers,
        "results": rows,
    });
    // one line, so that `make bench-rnn` can append one call per size
    println!("{}", serde_json::to_string(&out)?);
    Ok(())
}
