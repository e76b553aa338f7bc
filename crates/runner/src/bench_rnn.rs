//! `rnnlab bench rnn`: seconds per training step (forward, backward, Adam; the median step) of
//! the coursework configuration, for every mode, engine and direction.
//!
//! The configuration is the notebook's: batch 100, 32 steps of 20 MFCCs,
//! hidden 32, 2 layers, 3 classes. Inputs are random (speed does not depend on
//! the values). `scripts/bench_pytorch.py` times the notebook's Python cells
//! and `nn.LSTM` / `nn.GRU` on the same configuration; `make bench-rnn` runs
//! both and prints the ratios.

use clap::Args;
use models::{classifier, Adam, Engine, Mode, RnnConfig};
use std::time::Instant;
use tch::nn;
use tch::{Device, Kind, Tensor};

#[derive(Args, Debug)]
pub struct RnnBenchArgs {
    /// Timed training steps per configuration.
    #[arg(long, default_value_t = 50)]
    pub steps: usize,
    /// Untimed steps first.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Batch size.
    #[arg(long, default_value_t = 100)]
    pub batch_size: i64,
    /// Hidden size.
    #[arg(long, default_value_t = 32)]
    pub hidden: i64,
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

fn seconds_per_step(
    args: &RnnBenchArgs,
    config: RnnConfig,
    bidir: bool,
    engine: Engine,
    device: Device,
) -> f64 {
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let model = classifier(&vs.root(), config, bidir, engine, None);
    let mut opt = Adam::new(&vs, 0.01);
    let x = Tensor::randn([args.batch_size, 32, 20], (Kind::Float, device));
    let y = Tensor::randint(3, [args.batch_size], (Kind::Int64, device));
    let mut step = || {
        let loss = model.forward_t(&x, true).cross_entropy_for_logits(&y);
        opt.backward_step(&loss);
    };
    for _ in 0..args.warmup {
        step();
    }
    // The median step: bursts from other machines on shared cores lengthen a
    // few steps, not the middle one (`scripts/bench_pytorch.py` does the same).
    let mut times: Vec<f64> = (0..args.steps.max(1))
        .map(|_| {
            sync(device);
            let start = Instant::now();
            step();
            sync(device);
            start.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

pub fn run(args: &RnnBenchArgs, device: Device) -> anyhow::Result<()> {
    tch::set_num_threads(args.threads);
    let mut rows = Vec::new();
    for mode in [Mode::Lstm, Mode::Gru, Mode::RnnTanh, Mode::RnnRelu] {
        for bidir in [false, true] {
            for engine in [Engine::Custom, Engine::Fused] {
                let config = RnnConfig {
                    mode,
                    input_size: 20,
                    hidden_size: args.hidden,
                    num_layers: args.layers,
                    bias: true,
                    output_size: 3,
                };
                let s = seconds_per_step(args, config, bidir, engine, device);
                eprintln!(
                    "{mode:<8} {:<6} {engine:?}: {:.2} ms/step",
                    if bidir { "bidir" } else { "uni" },
                    s * 1e3
                );
                rows.push(serde_json::json!({
                    "mode": mode,
                    "bidirectional": bidir,
                    "engine": engine,
                    "seconds_per_step": s,
                }));
            }
        }
    }
    let out = serde_json::json!({
        "device": format!("{device:?}"),
        "threads": tch::get_num_threads(),
        "batch_size": args.batch_size,
        "hidden": args.hidden,
        "layers": args.layers,
        "steps": args.steps,
        "results": rows,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
