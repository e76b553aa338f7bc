//! # PyTorch's "Deep Learning with PyTorch: A 60 Minute Blitz", questions (a)-(i)
//!
//! The coursework opens with the blitz and nine short questions about it. This
//! program answers each with a few lines of Rust on `tch` (the binding of the
//! same libtorch PyTorch runs on) and prints what they give, so every answer is
//! checked by running it. The blitz's own example, a small CNN classifier, is
//! trained at the end on images this program draws itself (bars, boxes and
//! crosses), because CIFAR-10 cannot be downloaded here.
//!
//! Run: `make notebook NB=pytorch-blitz` (add `QUICK=1` for a fast pass).
//! Outputs: `results/notebooks/pytorch-blitz/output.md` and `cnn.png`.
//!
//! What you should see: gradients that match the calculus by hand; gradients
//! that double when `zero_grad` is forgotten, and a training run that goes
//! wrong because of it; an optimiser step that is exactly `p - lr * grad`;
//! and the blitz CNN classifying the four shapes far above the 25% of
//! guessing (close to 100% in a full run).

use anyhow::Context;
use data::loader::epoch_seed;
use figures::{LineChart, Series};
use notebooks::{first_line, parameter_count, say, Notebook};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Instant;
use tch::nn::{self, Module, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};
use train::{Eval, Goal, Optim, RunDir, Schedule, Settings, Task};

fn main() -> anyhow::Result<()> {
    let mut nb = Notebook::start("pytorch-blitz", "PyTorch 60-minute blitz, questions (a)-(i)")?;
    tch::manual_seed(0);
    tensors_and_arrays(&mut nb)?;
    let device = nb.device();
    let vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root());
    the_module(&mut nb, &vs);
    forward(&mut nb, &net)?;
    flattening(&mut nb, &net);
    backward(&mut nb)?;
    zero_grad(&mut nb)?;
    optimiser_step(&mut nb)?;
    let (train, test) = shapes_dataset(&nb);
    data_loader(&mut nb, &train);
    using_a_gpu(&mut nb)?;
    train_the_cnn(&mut nb, &train, &test)
}

// ## (a) What is the difference between a tensor and a NumPy array?
//
// Both are n-dimensional arrays of one element type with a shape and strides.
// A tensor adds two things an array lacks: it can live on a GPU, and it can
// record the operations applied to it so that gradients can be computed
// (autograd). In Rust the "array" side is a plain `Vec` or slice: building a
// tensor from one copies the data (`torch.from_numpy` shares memory instead),
// while views of a tensor (`view`, `narrow`, `transpose`) share its storage,
// as NumPy views do.
fn tensors_and_arrays(nb: &mut Notebook) -> anyhow::Result<()> {
    nb.section("(a) Tensors and arrays");
    let data = vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let t = Tensor::from_slice(&data).view([2, 3]); // [2, 3]
    say!(nb, "tensor {:?} {:?} on {:?}, strides {:?}", t.size(), t.kind(), t.device(), t.stride());
    let row = t.narrow(0, 1, 1); // a view of the second row
    let _ = row.shallow_clone().fill_(0.0);
    let back = Vec::<f32>::try_from(&t.flatten(0, -1))?;
    say!(nb, "after zeroing a view of row 1, the tensor holds {back:?}");
    say!(nb, "the Vec it was built from still holds {data:?} (from_slice copied it)");
    let x = Tensor::from_slice(&[3.0f64]).set_requires_grad(true);
    let y = &x * &x;
    say!(nb, "y = x*x with x requiring grad: y.requires_grad() = {}", y.requires_grad());
    Ok(())
}

/// The blitz's network: conv(5) -> pool -> conv(5) -> pool -> three linear
/// layers. Its images here have one channel and there are four classes.
#[derive(Debug)]
struct Net {
    conv1: nn::Conv2D,
    conv2: nn::Conv2D,
    fc1: nn::Linear,
    fc2: nn::Linear,
    fc3: nn::Linear,
}

/// Classes of the drawn images.
const CLASSES: [&str; 4] = ["horizontal bar", "vertical bar", "box", "cross"];
/// Side of a drawn image, as CIFAR's 32 so the blitz's 16 * 5 * 5 holds.
const SIDE: i64 = 32;

impl Net {
    fn new(vs: &nn::Path) -> Self {
        let c = Default::default();
        Self {
            conv1: nn::conv2d(vs / "conv1", 1, 6, 5, c),
            conv2: nn::conv2d(vs / "conv2", 6, 16, 5, c),
            fc1: nn::linear(vs / "fc1", 16 * 5 * 5, 120, Default::default()),
            fc2: nn::linear(vs / "fc2", 120, 84, Default::default()),
            fc3: nn::linear(vs / "fc3", 84, CLASSES.len() as i64, Default::default()),
        }
    }

    /// The convolutional half, up to the flattening: [B, 1, 32, 32] -> [B, 16, 5, 5].
    fn features(&self, x: &Tensor) -> Tensor {
        let x = x.apply(&self.conv1).relu().max_pool2d_default(2); // [B, 6, 14, 14]
        x.apply(&self.conv2).relu().max_pool2d_default(2) // [B, 16, 5, 5]
    }
}

impl Module for Net {
    fn forward(&self, x: &Tensor) -> Tensor {
        let x = self.features(x).flatten(1, -1); // [B, 400]
        x.apply(&self.fc1).relu().apply(&self.fc2).relu().apply(&self.fc3) // [B, 4]
    }
}

// ## (b) What is `nn.Module`?
//
// In PyTorch a Module is a class that owns parameters (and sub-modules) and
// defines `forward`. `tch` splits those two jobs: a `VarStore` owns every
// parameter under a path name (`conv1.weight`, as PyTorch's state dict names
// them), and any type implementing the `Module` trait (or `ModuleT`, when it
// behaves differently in training and evaluation, as dropout and BatchNorm do)
// is a layer. The blitz's `Net` is a struct of layers built on paths of one
// VarStore; `vs.variables()` is its `state_dict()`.
fn the_module(nb: &mut Notebook, vs: &nn::VarStore) {
    nb.section("(b) The Module trait and its parameters");
    let mut names: Vec<_> = vs.variables().into_iter().map(|(k, t)| (k, t.size())).collect();
    names.sort();
    for (name, size) in &names {
        say!(nb, "  {name:<14} {size:?}");
    }
    let total: i64 = parameter_count(vs);
    say!(nb, "{} tensors, {total} trainable parameters", names.len());
}

// ## (c) What does `forward` do, and who calls it?
//
// `forward` maps inputs to outputs; in PyTorch you call `net(x)`, whose
// `__call__` runs hooks and then `forward`. In `tch` there are no hooks:
// `net.forward(&x)` or `x.apply(&net)` is the whole call, and autograd records
// what it does. One random image in, one score per class out.
fn forward(nb: &mut Notebook, net: &Net) -> anyhow::Result<()> {
    nb.section("(c) forward");
    let x = Tensor::randn([1, 1, SIDE, SIDE], (Kind::Float, nb.device())); // [1, 1, 32, 32]
    let out = x.apply(net); // [1, 4]
    say!(nb, "input {:?} -> output {:?}: {:?}", x.size(), out.size(), to_vec(&out)?);
    say!(nb, "the output records its history: requires_grad = {}", out.requires_grad());
    Ok(())
}

// ## (d) Why flatten between the convolutional and the linear layers?
//
// A convolution keeps the image layout [B, C, H, W]; a linear layer takes one
// vector per example, [B, features]. The blitz flattens with
// `torch.flatten(x, 1)`: everything but the batch dimension becomes one
// dimension, 16 channels x 5 x 5 = 400 features, which is why `fc1` takes
// 16 * 5 * 5 inputs. Forgetting it (or flattening the batch dimension too) is
// a shape error at the first linear layer.
fn flattening(nb: &mut Notebook, net: &Net) {
    nb.section("(d) Flattening between conv and linear layers");
    let x = Tensor::randn([8, 1, SIDE, SIDE], (Kind::Float, nb.device())); // [8, 1, 32, 32]
    let f = net.features(&x); // [8, 16, 5, 5]
    let flat = f.flatten(1, -1); // [8, 400]
    say!(
        nb,
        "conv features {:?} -> flatten(1) {:?} -> fc1 takes 16 * 5 * 5 = {}",
        f.size(),
        flat.size(),
        16 * 5 * 5
    );
    let wrong = f.flatten(0, -1); // [3200]: the batch is gone
    match wrong.f_unsqueeze(0).and_then(|w| w.f_linear(&net.fc1.ws, net.fc1.bs.as_ref())) {
        Ok(t) => say!(nb, "flattening the batch too gave {:?}", t.size()),
        Err(e) => say!(nb, "flattening the batch too fails: {}", first_line(&e)),
    }
}

// ## (e) What does `backward` compute?
//
// `loss.backward()` fills `.grad` of every leaf tensor that requires a
// gradient with d loss / d leaf, by the chain rule through the recorded graph.
// For y = sum(x^2 + 3x) the calculus gives dy/dx = 2x + 3: autograd must agree.
fn backward(nb: &mut Notebook) -> anyhow::Result<()> {
    nb.section("(e) backward");
    let x = Tensor::from_slice(&[-1.0f64, 0.5, 2.0]).set_requires_grad(true);
    let y = (&x * &x + &x * 3.0).sum(Kind::Double);
    y.backward();
    let by_hand = &x.detach() * 2.0 + 3.0;
    say!(nb, "x = {:?}", to_vec(&x)?);
    say!(nb, "autograd dy/dx = {:?}", to_vec(&x.grad())?);
    say!(nb, "by hand 2x + 3 = {:?}", to_vec(&by_hand)?);
    let diff = (x.grad() - by_hand).abs().max().double_value(&[]);
    say!(nb, "max difference {diff:.1e}");
    Ok(())
}

// ## (f) Why `optimizer.zero_grad()`, and what goes wrong without it?
//
// `backward` *adds* into `.grad`; it never overwrites. That is deliberate (it
// lets you accumulate gradients over several small batches), but in a normal
// loop the previous step's gradient must be cleared first. Below: the same
// backward twice doubles the gradient; then the same model trained twice from
// the same start, once clearing and once not. Without clearing, step k moves
// along the sum of all k gradients so far: the steps grow and training goes
// wrong.
fn zero_grad(nb: &mut Notebook) -> anyhow::Result<()> {
    nb.section("(f) zero_grad, and training without it");
    let w = Tensor::from_slice(&[1.5f64]).set_requires_grad(true);
    for call in 1..=2 {
        (&w * &w).sum(Kind::Double).backward();
        say!(nb, "after backward call {call}: w.grad = {:?}", to_vec(&w.grad())?);
    }
    // a least-squares line fit: y = 2x - 1 with noise
    let x = Tensor::randn([256, 1], (Kind::Float, Device::Cpu));
    let y = &x * 2.0 - 1.0 + Tensor::randn([256, 1], (Kind::Float, Device::Cpu)) * 0.1;
    let steps = 40;
    let mut finals = Vec::new();
    for clear in [true, false] {
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let fit = nn::linear(vs.root(), 1, 1, Default::default());
        let mut opt = nn::Sgd::default().build(&vs, 0.1)?;
        let mut losses = Vec::new();
        for _ in 0..steps {
            if clear {
                opt.zero_grad();
            }
            let loss = x.apply(&fit).mse_loss(&y, tch::Reduction::Mean);
            loss.backward();
            opt.step();
            losses.push(loss.double_value(&[]));
        }
        let label = if clear { "with zero_grad   " } else { "without zero_grad" };
        let show: Vec<String> = losses.iter().step_by(8).map(|l| format!("{l:.3e}")).collect();
        say!(nb, "{label}: loss every 8 steps {}", show.join(", "));
        finals.push(*losses.last().context("no steps")?);
    }
    say!(nb, "final loss with zero_grad {:.3e}, without {:.3e}", finals[0], finals[1]);
    Ok(())
}

// ## (g) What does `optimizer.step()` do?
//
// It reads each parameter's `.grad` and updates the parameter in place, under
// no-grad. For plain SGD that is `p <- p - lr * p.grad`; momentum, Adam and the
// rest keep extra state per parameter. Checked on one linear layer.
fn optimiser_step(nb: &mut Notebook) -> anyhow::Result<()> {
    nb.section("(g) Optimiser steps");
    let vs = nn::VarStore::new(Device::Cpu);
    let layer = nn::linear(vs.root(), 3, 1, Default::default());
    let lr = 0.05;
    let mut opt = nn::Sgd::default().build(&vs, lr)?;
    let x = Tensor::randn([4, 3], (Kind::Float, Device::Cpu));
    opt.zero_grad();
    x.apply(&layer).pow_tensor_scalar(2).mean(Kind::Float).backward();
    let before = layer.ws.detach().copy();
    let expected = &before - layer.ws.grad() * lr;
    opt.step();
    say!(nb, "weight before   {:?}", to_vec(&before)?);
    say!(nb, "gradient        {:?}", to_vec(&layer.ws.grad())?);
    say!(nb, "weight after    {:?}", to_vec(&layer.ws)?);
    let diff = (&layer.ws - expected).abs().max().double_value(&[]);
    say!(nb, "max |after - (before - lr * grad)| = {diff:.1e}");
    Ok(())
}

/// Images of [`CLASSES`]: a thick line or outline at a random place and size,
/// random brightness, Gaussian noise. Returns `(images [N, 1, 32, 32], labels [N])`.
fn draw_shapes(n: usize, rng: &mut ChaCha8Rng) -> (Tensor, Tensor) {
    let side = SIDE as usize;
    let mut pixels = vec![0f32; n * side * side];
    let mut labels = Vec::with_capacity(n);
    for (i, img) in pixels.chunks_exact_mut(side * side).enumerate() {
        let class = i % CLASSES.len();
        let (size, x0, y0) = (rng.gen_range(10..22), rng.gen_range(2..10), rng.gen_range(2..10));
        let ink = rng.gen_range(0.6f32..1.0);
        let mut put = |r: usize, c: usize| img[r * side + c] = ink;
        let mid = size / 2;
        for k in 0..size {
            for t in 0..2 {
                match class {
                    0 => put(y0 + mid + t, x0 + k),
                    1 => put(y0 + k, x0 + mid + t),
                    2 => {
                        put(y0 + t, x0 + k);
                        put(y0 + size - 1 - t, x0 + k);
                        put(y0 + k, x0 + t);
                        put(y0 + k, x0 + size - 1 - t);
                    }
                    _ => {
                        put(y0 + k, (x0 + k + t).min(side - 1));
                        put(y0 + k, (x0 + size - 1 - k + t).min(side - 1));
                    }
                }
            }
        }
        for p in img.iter_mut() {
            *p += 0.25 * (rng.gen::<f32>() - 0.5);
        }
        labels.push(class as i64);
    }
    let images = Tensor::from_slice(&pixels).view([n as i64, 1, SIDE, SIDE]);
    (images, Tensor::from_slice(&labels))
}

/// One drawn image as text, for the transcript.
fn ascii(image: &Tensor) -> anyhow::Result<Vec<String>> {
    let v = Vec::<f32>::try_from(&image.flatten(0, -1))?;
    Ok(v.chunks(SIDE as usize)
        .step_by(2)
        .map(|row| row.iter().map(|&p| if p > 0.4 { '#' } else { '.' }).collect())
        .collect())
}

/// The blitz's data set, drawn: `(train, test)` as `(images, labels)`.
fn shapes_dataset(nb: &Notebook) -> ((Tensor, Tensor), (Tensor, Tensor)) {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let (n_train, n_test) = nb.pick((4000, 1000), (800, 400));
    (draw_shapes(n_train, &mut rng), draw_shapes(n_test, &mut rng))
}

// ## (h) What does the DataLoader do?
//
// It turns a dataset into shuffled mini-batches, each epoch in a new order,
// and (with `pin_memory`, workers) feeds them fast. Its `tch` counterpart for
// tensors in memory is `tch::data::Iter2`: `shuffle()` draws a new order,
// `to_device` moves each batch, and the last, smaller batch is dropped unless
// asked for. (rnnlab's `data::loader::DataLoader` does the same for speech
// features.) The data set here is the blitz's stand-in for CIFAR-10: 32x32
// images of four shapes, drawn by this program; one of each is shown.
fn data_loader(nb: &mut Notebook, train: &(Tensor, Tensor)) {
    nb.section("(h) The DataLoader");
    let (images, labels) = train;
    let batch = 64;
    let mut iter = tch::data::Iter2::new(images, labels, batch);
    let batches = iter.shuffle().count();
    say!(
        nb,
        "{} training images, batch size {batch}: {batches} full batches an epoch",
        labels.size()[0]
    );
    for epoch in 1..=2 {
        // a fresh iterator each epoch, as `for x, y in loader` starts one
        let mut epoch_iter = tch::data::Iter2::new(images, labels, batch);
        if let Some((xs, ys)) = epoch_iter.shuffle().next() {
            let head = Vec::<i64>::try_from(&ys.narrow(0, 0, 8)).unwrap_or_default();
            say!(nb, "epoch {epoch}: first batch {:?}, its first labels {head:?}", xs.size());
        }
    }
    for (class, name) in CLASSES.iter().enumerate() {
        let art = ascii(&images.get(class as i64)).unwrap_or_default();
        say!(nb, "\n{name} (label {class}):\n```\n{}\n```", art.join("\n"));
    }
}

// ## (i) How do you use a GPU?
//
// Move the model's parameters (build the VarStore on the device, or
// `vs.set_device`) and every input batch (`.to_device`) to the same device;
// an op between tensors on different devices is an error. `make notebook
// DEVICE=cuda` runs this whole program on the GPU; here one matrix product is
// timed on each device present.
fn using_a_gpu(nb: &mut Notebook) -> anyhow::Result<()> {
    nb.section("(i) Using a GPU");
    say!(
        nb,
        "CUDA available: {}, devices: {}",
        tch::Cuda::is_available(),
        tch::Cuda::device_count()
    );
    let mut devices = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        devices.push(Device::Cuda(0));
    } else {
        say!(nb, "no GPU here: only the CPU is timed");
    }
    let n = nb.pick(1024, 512);
    for device in devices {
        let a = Tensor::randn([n, n], (Kind::Float, device));
        let _ = a.matmul(&a); // warm-up (CUDA context, kernels)
        let reps = 5;
        let start = Instant::now();
        for _ in 0..reps {
            let _ = a.matmul(&a);
        }
        if let Device::Cuda(_) = device {
            tch::Cuda::synchronize(0); // kernels run asynchronously: wait before reading the clock
        }
        let ms = start.elapsed().as_secs_f64() * 1e3 / reps as f64;
        say!(nb, "{n}x{n} matmul on {device:?}: {ms:.2} ms");
    }
    let cpu = Tensor::ones([2], (Kind::Float, Device::Cpu));
    if tch::Cuda::is_available() {
        let gpu = Tensor::ones([2], (Kind::Float, Device::Cuda(0)));
        match cpu.f_add(&gpu) {
            Ok(_) => say!(nb, "adding a CPU and a GPU tensor worked"),
            Err(e) => {
                say!(nb, "adding a CPU and a GPU tensor fails: {}", first_line(&e))
            }
        }
    }
    Ok(())
}

// ## Training the blitz's classifier
//
// The blitz's loop: for each epoch, for each shuffled mini-batch, zero the
// gradients, forward, cross-entropy loss, backward, optimiser step (SGD with
// momentum 0.9, as the blitz); then the accuracy on images the network never
// saw, in evaluation mode with no gradients recorded. Here the loop is
// rnnlab's training engine (`train::fit`, the one every model trains on): the
// task below supplies the batches and the loss, the engine zeroes, steps,
// logs `metrics.csv` and evaluates after every epoch. Two settings differ from
// the blitz's, because there are far fewer images than CIFAR's 50,000: batches
// of 32 instead of 4 and a learning rate of 0.01 instead of 0.001. The shapes
// are easier than CIFAR's photographs, so the accuracy climbs close to 100%
// within a few epochs.

/// The blitz CNN as an engine task: shuffled batches of 32 drawn images.
struct CnnTask<'a> {
    vs: nn::VarStore,
    net: Net,
    train: &'a (Tensor, Tensor),
    valid: (Tensor, Tensor),
    test: (Tensor, Tensor),
    order: Vec<i64>,
    /// `(step, test accuracy)` of every evaluation.
    accs: Vec<(f64, f64)>,
    step: u64,
}

/// Images in a training batch.
const BATCH: i64 = 32;
const SEED: u64 = 0;

/// Validation and test accuracy, the `metrics.csv` columns besides the losses.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Accuracy {
    valid_acc: f64,
    test_acc: f64,
}

impl train::Scores for Accuracy {
    const COLUMNS: &'static [&'static str] = &["valid_acc", "test_acc"];
}

impl Task for CnnTask<'_> {
    type Scores = Accuracy;

    fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    fn steps_per_epoch(&self) -> u64 {
        (self.train.1.size()[0] / BATCH) as u64 // the last, smaller batch is dropped
    }

    fn begin_epoch(&mut self, epoch: u64) {
        // a new order every epoch, a function of (seed, epoch) so a resumed
        // run draws the same batches
        self.order = (0..self.train.1.size()[0]).collect();
        self.order.shuffle(&mut ChaCha8Rng::seed_from_u64(epoch_seed(SEED, epoch)));
    }

    fn train_loss(&mut self, step: u64, batch: u64) -> Tensor {
        self.step = step;
        let start = batch as usize * BATCH as usize;
        let idx = Tensor::from_slice(&self.order[start..start + BATCH as usize]);
        let device = self.vs.device();
        let x = self.train.0.index_select(0, &idx).to_device(device); // [32, 1, 32, 32]
        let y = self.train.1.index_select(0, &idx).to_device(device); // [32]
        self.net.forward_t(&x, true).cross_entropy_for_logits(&y)
    }

    /// The validation loss and accuracy (which pick the best checkpoint) and
    /// the test accuracy (reported only).
    fn evaluate(&mut self) -> anyhow::Result<Eval<Accuracy>> {
        let _guard = tch::no_grad_guard();
        let logits = self.net.forward_t(&self.valid.0, false);
        let loss = logits.cross_entropy_for_logits(&self.valid.1).double_value(&[]);
        let valid_acc = logits.accuracy_for_logits(&self.valid.1).double_value(&[]);
        let logits = self.net.forward_t(&self.test.0, false);
        let test_acc = logits.accuracy_for_logits(&self.test.1).double_value(&[]);
        self.accs.push((self.step as f64, test_acc));
        Ok(Eval { loss, scores: Accuracy { valid_acc, test_acc } })
    }

    fn monitor(&self, eval: &Eval<Accuracy>) -> (f64, Goal) {
        (eval.scores.valid_acc, Goal::Maximize)
    }
}

/// The columns of `metrics.csv` the notebook reads back.
#[derive(Debug, serde::Deserialize)]
struct MetricsRow {
    step: u64,
    epoch: u64,
    loss: f64,
}

fn train_the_cnn(
    nb: &mut Notebook,
    train: &(Tensor, Tensor),
    test: &(Tensor, Tensor),
) -> anyhow::Result<()> {
    nb.section("Training the CNN classifier");
    let device = nb.device();
    train::init(SEED, tch::get_num_threads(), device);
    let vs = nn::VarStore::new(device);
    let net = Net::new(&vs.root());
    // a validation set drawn apart from the test images picks the best checkpoint
    let valid = draw_shapes(nb.pick(500, 200), &mut ChaCha8Rng::seed_from_u64(1));
    let valid = (valid.0.to_device(device), valid.1.to_device(device));
    let test = (test.0.to_device(device), test.1.to_device(device));
    let mut task =
        CnnTask { vs, net, train, valid, test, order: Vec::new(), accs: Vec::new(), step: 0 };
    let epochs = nb.pick(8, 4);
    let per_epoch = task.steps_per_epoch();
    let settings = Settings {
        seed: SEED,
        steps: epochs * per_epoch,
        valid_every: per_epoch,
        optimizer: Optim::SgdMomentum { momentum: 0.9 },
        schedule: Schedule::constant(0.01),
        clip_grad_norm: None,
        patience: None,
        log_every: per_epoch,
        validate_at_start: false,
    };
    let dir = nb.path("runs/cnn");
    let _ = std::fs::remove_dir_all(&dir);
    let run_dir = RunDir::create(Some(&dir), "cnn")?;
    let start = Instant::now();
    let state = train::fit(&mut task, &run_dir, &settings, false).context("training the CNN")?;
    let rows: Vec<MetricsRow> = train::metrics::read_rows(&run_dir.file("metrics.csv"))?;
    let losses: Vec<(f64, f64)> = rows.iter().map(|r| (r.step as f64, r.loss)).collect();
    for (epoch, &(step, acc)) in task.accs.iter().enumerate() {
        let in_epoch: Vec<f64> =
            rows.iter().filter(|r| r.epoch == epoch as u64).map(|r| r.loss).collect();
        say!(
            nb,
            "epoch {}: mean training loss {:.4}, test accuracy {:.1}% (step {step})",
            epoch + 1,
            in_epoch.iter().sum::<f64>() / in_epoch.len().max(1) as f64,
            100.0 * acc
        );
    }
    say!(nb, "{} steps in {:.1} s", state.step, start.elapsed().as_secs_f64());
    let final_acc = task.accs.last().map(|a| a.1).unwrap_or(0.0);
    say!(
        nb,
        "final test accuracy {:.1}% on {} images (guessing: 25%)",
        100.0 * final_acc,
        task.test.1.size()[0]
    );

    let mut chart = LineChart::new("The blitz CNN on drawn shapes", "step", "loss / accuracy");
    chart.series.push(Series { opacity: 0.5, width: 1, ..Series::new("training loss", losses, 0) });
    chart.series.push(Series { width: 3, ..Series::new("test accuracy", task.accs.clone(), 1) });
    chart.draw(&nb.path("cnn.png"))?;
    nb.figure("cnn.png", "training loss per step and test accuracy per epoch");
    Ok(())
}

fn to_vec(t: &Tensor) -> anyhow::Result<Vec<f64>> {
    let v = Vec::<f64>::try_from(
        &t.detach().to_kind(Kind::Double).to_device(Device::Cpu).flatten(0, -1),
    )?;
    Ok(v.into_iter().map(|x| (x * 1e4).round() / 1e4).collect())
}
