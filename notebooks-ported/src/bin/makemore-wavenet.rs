//! # makemore part 5: building a WaveNet
//!
//! Andrej Karpathy's lecture notebook "makemore part 5: building a WaveNet"
//! (Neural Networks: Zero to Hero), in Rust, in the lecture's order. A
//! character-level language model reads the previous characters of a name and
//! predicts the next one. The lecture starts from part 3's MLP (a context of
//! 3 characters crushed into one hidden layer), fixes the loss plot, turns the
//! code into torch.nn-like layers and containers, widens the context to 8,
//! then fuses the context two characters at a time in a tree (the WaveNet
//! idea), finds and fixes a BatchNorm1d bug on the way, and scales the model
//! up to 76,579 parameters.
//!
//! The layers (`Embedding`, `FlattenConsecutive`, `Linear`, `BatchNorm1d`,
//! `Tanh`, `Sequential`), the names data with the lecture's seeded split and
//! the final `WaveNet` are the library's (`models::makemore`); only the
//! lecture's *buggy* BatchNorm1d is written here, to show the bug.
//!
//! Run: `make notebook NB=makemore-wavenet` (full) or with `QUICK=1` (10-15
//! seconds: 400 steps per model, 800 for the last, losses on the first 5,000
//! examples of each split). Outputs in `results/notebooks/makemore-wavenet/`:
//! `output.md`, `loss-raw.png` (the loss of every step), `loss-fixed.png`
//! (the same, averaged over rows of steps) and `stages.png` (every model's
//! averaged training loss).
//!
//! Training is the lecture's: SGD, lr 0.1 then 0.01 for the last quarter,
//! batches of 32. The lecture trains every model for 200,000 steps; full mode
//! gives the four smaller models 50,000 steps each and only the final,
//! scaled-up model the lecture's 200,000. A full run on this 2-core machine,
//! one thread, with other jobs sharing it, took 21 minutes: 0.9-1.7 ms a step
//! for the flat MLPs, 1.9 ms for the hierarchical one (3.6 ms with the
//! lecture's buggy BatchNorm1d, ten elementwise ops instead of one fused
//! kernel) and 4.2 ms for the scaled-up one; the lecture's plan, 200,000 steps
//! for all five, would take about 41 minutes. The performance log prints the
//! estimate from the speeds of the run itself.
//!
//! What a learner should see, measured in that full run beside the lecture's
//! validation losses: context 3, flat 2.1397 (lecture 2.105); context 8, flat
//! 2.0614 (2.027); hierarchical 2.0616 (2.029); BatchNorm fixed 2.0516
//! (2.022; the fix lowered the loss by 0.010 against the lecture's 0.007);
//! scaled up 1.9927 (1.993) after the full 200,000 steps. The four smaller
//! models, with a quarter of the lecture's steps, land 0.03 above it; the
//! last matches it. Then names such as "jermair", "daniah", "enoxia". Quick
//! mode only checks that everything runs: its losses (about 2.3-2.5) are far
//! above the lecture's.

use anyhow::Context;
use figures::{row_average, LineChart, LossCurve, Series};
use models::makemore::{
    build_dataset, load_words, split_words, BatchNorm1d, BatchNorm1dConfig, Embedding,
    FlattenConsecutive, Linear, LinearConfig, Sequential, Tanh, Vocab, WaveNet, WaveNetConfig,
};
use notebooks::{parameter_count, say, Notebook};
use std::path::Path;
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};
use train::recipes::MAKEMORE_LECTURE;
use train::{Eval, Goal, NoScores, Optim, RunDir, Schedule, Task};

/// The vocabulary: `.` and `a`-`z`.
const VOCAB: i64 = 27;
/// The lecture's `batch_size`.
const BATCH: i64 = MAKEMORE_LECTURE.batch_size;
/// The lecture's `random.seed(42)` before shuffling the words.
const SPLIT_SEED: u32 = 42;
/// The lecture's `torch.manual_seed(42)` before building each model.
const SEED: i64 = 42;
/// Hidden layers: `Linear(.., bias=False)`, BatchNorm1d supplies the shift.
const HIDDEN: LinearConfig = LinearConfig { bias: false, gain: 1.0 };
/// The output layer: the lecture's `layers[-1].weight *= 0.1`.
const LAST: LinearConfig = LinearConfig { bias: true, gain: 0.1 };
/// Steps of every model in the lecture.
const LECTURE_STEPS: usize = MAKEMORE_LECTURE.steps;
/// Steps of the four smaller models in full mode.
const FULL_STEPS: usize = 50_000;
/// Steps of the scaled-up model in full mode: the lecture's.
const FULL_STEPS_LAST: usize = LECTURE_STEPS;
/// Examples per split used for the losses in quick mode.
const QUICK_EVAL: i64 = 5_000;

fn main() -> anyhow::Result<()> {
    let mut nb = Notebook::start("makemore-wavenet", "makemore part 5: building a WaveNet")?;
    // The lecture trains every model for 200,000 steps. At 1-3 ms a step on
    // one CPU thread that is close to half an hour for the five, so full mode
    // gives the four intermediate models 50,000 steps each and only the final,
    // scaled-up model the lecture's 200,000 (the performance log prints the
    // time the lecture's plan would take at the measured speeds).
    let steps = nb.pick(FULL_STEPS, 400);
    let data = starter_data(&mut nb)?;
    let mut stages = Vec::new();
    let starter = starter_code(&mut nb, &data, steps)?;
    fix_the_loss_plot(&mut nb, &starter.stage)?;
    layers_and_containers(&mut nb, &data, &starter)?;
    stages.push(starter.stage);
    let (context8, flat8) = context_of_8(&mut nb, &data, steps)?;
    stages.push(flat8);
    let buggy = hierarchical_model(&mut nb, &context8, steps)?;
    let fixed = batchnorm_bug(&mut nb, &context8, &buggy, steps)?;
    stages.extend([buggy.stage, fixed]);
    let scaled_steps = nb.pick(FULL_STEPS_LAST, 800);
    let (wavenet, scaled) = scaling_up(&mut nb, &context8, scaled_steps)?;
    stages.push(scaled);
    performance_log(&mut nb, &stages)?;
    sample_names(&mut nb, &wavenet, &data.vocab);
    Ok(())
}

// ## Starter code
//
// The lecture starts from part 3's code. The data are 32,033 names, one a
// line; the vocabulary is the 26 letters plus `.`, which marks both the start
// and the end of a name (27 characters). `random.seed(42);
// random.shuffle(words)` then splits the *words* 80/10/10 into training,
// validation and test sets; the library's `split_words` is CPython's Mersenne
// Twister, so the three sets are the lecture's word for word.
//
// `build_dataset` turns every name into examples: the `block_size` previous
// characters (padded with `.` at the start) and the next character, for every
// character of the name and its closing `.`. So "emma" with a context of 3
// gives `... -> e`, `..e -> m`, `.em -> m`, `emm -> a`, `mma -> .`.
struct Data {
    vocab: Vocab,
    words: models::makemore::Split,
}

fn starter_data(nb: &mut Notebook) -> anyhow::Result<Data> {
    nb.section("Starter code");
    let path = Path::new(notebooks::NAMES);
    let words = load_words(path)
        .with_context(|| format!("reading makemore's names from {}", path.display()))?;
    say!(nb, "{} words, e.g. {:?}", words.len(), &words[..8]);
    let vocab = Vocab::from_words(&words);
    let itos: String = vocab.chars().iter().collect();
    say!(nb, "vocabulary of {} characters: {itos}", vocab.len());
    anyhow::ensure!(vocab.len() as i64 == VOCAB, "{}: expected 27 characters", path.display());
    let words = split_words(&words, SPLIT_SEED);
    say!(
        nb,
        "split (random.seed(42); random.shuffle): {} / {} / {} words",
        words.train.len(),
        words.val.len(),
        words.test.len()
    );
    Ok(Data { vocab, words })
}

/// A split as tensors: `X [N, block_size]` contexts and `Y [N]` next characters.
struct Examples {
    x: Tensor,
    y: Tensor,
}

/// The training and validation examples.
type Sets = (Examples, Examples);

/// The train and validation examples with a context of `block_size`.
fn datasets(nb: &mut Notebook, data: &Data, block_size: usize) -> anyhow::Result<Sets> {
    let device = nb.device();
    let (x, y) = build_dataset(&data.words.train, &data.vocab, block_size, device)?;
    let train = Examples { x, y };
    let (x, y) = build_dataset(&data.words.val, &data.vocab, block_size, device)?;
    let val = Examples { x, y };
    let (x, y) = build_dataset(&data.words.test, &data.vocab, block_size, device)?;
    say!(nb, "Xtr {:?}  Ytr {:?}", train.x.size(), train.y.size());
    say!(nb, "Xdev {:?}  Ydev {:?}", val.x.size(), val.y.size());
    say!(nb, "Xte {:?}  Yte {:?}", x.size(), y.size());
    Ok((train, val))
}

/// One trained model of the lecture's performance log: what it measured here
/// beside what the lecture measured.
struct Stage {
    name: &'static str,
    params: i64,
    /// The loss of every training step (the lecture's `lossi`, before log10).
    lossi: Vec<f64>,
    train: f64,
    val: f64,
    ms_per_step: f64,
    /// The lecture's (train, val) after 200,000 steps.
    lecture: (f64, f64),
}

// The training loop is the lecture's: a minibatch of 32 examples drawn with
// replacement, forward, cross-entropy, backward, and plain SGD `p -= lr * grad`
// with a step decay of the learning rate, 0.1 then 0.01 for the last quarter
// (`lr = 0.1 if i < 150000 else 0.01`). It runs on the `train` engine that
// `rnnlab train` uses (the recipe `train::recipes::MAKEMORE_LECTURE`): the
// loss of every step goes to `metrics.csv` in the stage's folder, read back
// here, and the validation loss is taken once, after the last step.
struct LectureTask<'a, F> {
    vs: &'a nn::VarStore,
    forward: F,
    train: &'a Examples,
    val: &'a Examples,
    steps: u64,
    /// Validation examples scored (all of them, or the first `QUICK_EVAL`).
    val_examples: i64,
}

impl<F: Fn(&Tensor, bool) -> Tensor> Task for LectureTask<'_, F> {
    type Scores = NoScores;

    fn var_store(&self) -> &nn::VarStore {
        self.vs
    }

    fn steps_per_epoch(&self) -> u64 {
        self.steps
    }

    fn train_loss(&mut self, _step: u64, _batch: u64) -> Tensor {
        // minibatch construct
        let (x, y) = (&self.train.x, &self.train.y);
        let ix = Tensor::randint(x.size()[0], [BATCH], (Kind::Int64, x.device())); // [B]
        let xb = x.index_select(0, &ix); // [B, T]
        let yb = y.index_select(0, &ix); // [B]
        let logits = (self.forward)(&xb, true); // [B, 27]
        logits.cross_entropy_for_logits(&yb) // []
    }

    fn evaluate(&mut self) -> anyhow::Result<Eval<NoScores>> {
        let n = self.val_examples;
        let (x, y) = (self.val.x.narrow(0, 0, n), self.val.y.narrow(0, 0, n));
        let loss = models::makemore::split_loss(|x| (self.forward)(x, false), &x, &y);
        Ok(Eval { loss, scores: NoScores {} })
    }

    fn monitor(&self, eval: &Eval<NoScores>) -> (f64, Goal) {
        (eval.loss, Goal::Minimize)
    }
}

/// The columns of `metrics.csv` the notebook reads back.
#[derive(serde::Deserialize)]
struct LossRow {
    loss: f64,
}

/// Trains one stage's model; returns the loss of every step, the validation
/// loss after the last step and the milliseconds per step.
fn train(
    nb: &mut Notebook,
    name: &str,
    vs: &nn::VarStore,
    forward: impl Fn(&Tensor, bool) -> Tensor,
    (train_set, val_set): &Sets,
    steps: usize,
) -> anyhow::Result<(Vec<f64>, f64, f64)> {
    let settings = train::Settings {
        seed: SEED as u64,
        steps: steps as u64,
        valid_every: steps as u64,
        optimizer: Optim::Sgd,
        schedule: Schedule::step(MAKEMORE_LECTURE.lr, (steps * 3 / 4).max(1), 0.1),
        clip_grad_norm: None,
        patience: None,
        log_every: 1000,
        validate_at_start: false,
    };
    let dir = nb.path(&format!("runs/{}", name.replace(' ', "-")));
    let _ = std::fs::remove_dir_all(&dir);
    let run = RunDir::create(Some(&dir), name)?;
    let n = val_set.x.size()[0];
    let mut task = LectureTask {
        vs,
        forward,
        train: train_set,
        val: val_set,
        steps: steps as u64,
        val_examples: if nb.quick() { n.min(QUICK_EVAL) } else { n },
    };
    let state = train::fit(&mut task, &run, &settings, false)?;
    let rows: Vec<LossRow> = train::metrics::read_rows(&run.file("metrics.csv"))?;
    let lossi: Vec<f64> = rows.iter().map(|r| r.loss).collect();
    for i in (0..steps).step_by((steps / 5).max(1)) {
        say!(nb, "{i:7}/{steps:7}: {:.4}", lossi[i]);
    }
    let val = state.last.as_ref().map_or(f64::NAN, |(_, e)| e.loss);
    Ok((lossi, val, 1e3 * state.train_seconds / steps as f64))
}

// `split_loss`: the mean cross-entropy over a whole split, in evaluation mode
// (BatchNorm uses its running statistics) and without gradients. Quick mode
// scores the first 5,000 examples only.
fn split_loss(nb: &Notebook, forward: impl Fn(&Tensor, bool) -> Tensor, data: &Examples) -> f64 {
    let n = data.x.size()[0];
    let n = if nb.quick() { n.min(QUICK_EVAL) } else { n };
    models::makemore::split_loss(
        |x| forward(x, false),
        &data.x.narrow(0, 0, n),
        &data.y.narrow(0, 0, n),
    )
}

/// Trains, scores and reports one model of the performance log.
fn run_stage(
    nb: &mut Notebook,
    name: &'static str,
    vs: &nn::VarStore,
    forward: impl Fn(&Tensor, bool) -> Tensor + Copy,
    sets: &Sets,
    steps: usize,
    lecture: (f64, f64),
) -> anyhow::Result<Stage> {
    let params = parameter_count(vs);
    say!(nb, "parameters counted in the VarStore: {params}");
    let (lossi, val, ms_per_step) = train(nb, name, vs, forward, sets, steps)?;
    let train = split_loss(nb, forward, &sets.0);
    say!(
        nb,
        "loss at step 1: {:.4} (a uniform guess over 27 characters: ln 27 = 3.2958)",
        lossi[0]
    );
    say!(
        nb,
        "measured: train {train:.4}  val {val:.4}  after {steps} steps, {ms_per_step:.2} ms/step"
    );
    say!(nb, "lecture:  train {:.3}   val {:.3}   after 200000 steps", lecture.0, lecture.1);
    Ok(Stage { name, params, lossi, train, val, ms_per_step, lecture })
}

// The starter model is part 3's: an embedding table `C` of 10 numbers per
// character; the 3 context vectors are concatenated (`emb.view(B, -1)`) and go
// through `Linear(30, 200, bias=False)`, `BatchNorm1d(200)`, `Tanh` and
// `Linear(200, 27)`. Those three layer classes are the lecture's own (the
// library's versions: same initialisation, `randn(fan_in, fan_out) /
// fan_in**0.5`, the unbiased batch variance of the lecture's BatchNorm1d).
// The output layer's weights start 10x smaller so that the first loss is
// close to ln 27, a uniform guess, rather than confidently wrong.
// The layers are kept under the names a `Sequential` will give them
// (`layers.2`, `layers.3`, `layers.5`; `layers.0` will be the embedding and
// `layers.1` the flattening) so the next sections can reuse them.
struct Starter {
    vs: nn::VarStore,
    stage: Stage,
    val_set: Examples,
}

fn starter_code(nb: &mut Notebook, data: &Data, steps: usize) -> anyhow::Result<Starter> {
    let block_size = 3; // context length: how many characters do we take to predict the next one?
    let sets = datasets(nb, data, block_size)?;
    let (n_embd, n_hidden) = (10, 200);
    tch::manual_seed(SEED);
    let vs = nn::VarStore::new(nb.device());
    let layers_at = |i: usize| vs.root() / "layers" / i;
    let c = vs.root().randn_standard("C", &[VOCAB, n_embd]); // [27, 10]
    let layers: Vec<Box<dyn ModuleT>> = vec![
        Box::new(Linear::new(layers_at(2), n_embd * block_size as i64, n_hidden, HIDDEN)),
        Box::new(BatchNorm1d::new(layers_at(3), n_hidden, BatchNorm1dConfig::default())),
        Box::new(Tanh),
        Box::new(Linear::new(layers_at(5), n_hidden, VOCAB, LAST)),
    ];
    let forward = |x: &Tensor, train: bool| {
        let emb = c.index(&[Some(x)]); // [B, 3, 10]: embed the characters into vectors
        let h = emb.view([x.size()[0], -1]); // [B, 30]: concatenate the vectors
        layers.iter().fold(h, |h, layer| layer.forward_t(&h, train)) // [B, 27]
    };
    let stage = run_stage(nb, "context 3, flat (12k)", &vs, forward, &sets, steps, (2.058, 2.105))?;
    Ok(Starter { vs, stage, val_set: sets.1 })
}

// ## Fixing the learning-rate plot
//
// `plt.plot(lossi)` draws one point per step, and with a batch of 32 the
// loss of a single step is very noisy: the plot is a thick band (the lecture
// calls it a hockey stick) in which the learning-rate decay can hardly be
// seen. The fix: view the steps as rows of 1,000 and average each row,
// `torch.tensor(lossi).view(-1, 1000).mean(1)`: one point per 1,000 steps
// (200 for the lecture's run, 50 for full mode's), each the mean of 1,000
// losses, and the drop at the learning-rate decay becomes a clear step.
// The lecture plots log10 of the loss. (Quick mode has far fewer steps, so
// its rows are a twentieth of the run.)
fn fix_the_loss_plot(nb: &mut Notebook, stage: &Stage) -> anyhow::Result<()> {
    nb.section("Fixing the learning-rate plot");
    let k = row_length(nb, stage.lossi.len());
    let log10 = log10_points(&stage.lossi);
    let rows = row_average(&log10, k);
    let spread = |p: &[(f64, f64)]| {
        let lo = p.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
        let hi = p.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
        (lo, hi)
    };
    let (lo, hi) = spread(&log10[log10.len() / 2..]);
    say!(nb, "second half of training, log10 loss of single steps: {lo:.3} to {hi:.3}");
    let (lo, hi) = spread(&rows[rows.len() / 2..]);
    say!(nb, "second half of training, means of rows of {k} steps: {lo:.3} to {hi:.3}");

    let mut raw = LineChart::new(
        "plt.plot(lossi): log10 loss of every step (starter MLP)",
        "step",
        "log10(loss)",
    );
    raw.series.push(Series { width: 1, ..Series::new("every step", log10.clone(), 0) });
    raw.draw(&nb.path("loss-raw.png"))?;
    nb.figure("loss-raw.png", "the loss of every step: too noisy to read");
    LossCurve {
        title: &format!("view(-1, {k}).mean(1): log10 loss, means of {k} steps (starter MLP)"),
        y_label: "log10(loss)",
        raw: &log10,
        k,
        extra: Vec::new(),
    }
    .draw(&nb.path("loss-fixed.png"))?;
    nb.figure("loss-fixed.png", "the same losses averaged over rows of steps");
    Ok(())
}

/// The lecture's row of 1,000 steps, or a twentieth of a shorter run.
fn row_length(nb: &Notebook, steps: usize) -> usize {
    nb.pick(1000, (steps / 20).max(1))
}

/// `(step, log10 loss)` of every step, 1-based.
fn log10_points(lossi: &[f64]) -> Vec<(f64, f64)> {
    lossi.iter().enumerate().map(|(i, l)| ((i + 1) as f64, l.log10())).collect()
}

// ## Layers and containers: Embedding, FlattenConsecutive, Sequential
//
// The lecture now "PyTorch-ifies" the code. The lookup `C[Xb]` becomes a
// layer, `Embedding(num_embeddings, embedding_dim)`; the concatenation
// `emb.view(B, -1)` becomes a layer too (`Flatten`; here `FlattenConsecutive`
// with a group of the whole context, which the lecture writes next and which
// does the same); and the list of layers becomes a container, `Sequential`,
// that calls them in order. Then the model is one object, `model(x)`, its
// parameters are collected in one place, and it reads like torch.nn.
//
// Copying the trained starter weights into the Sequential (`C` becomes
// `layers.0.weight`) must give exactly the same losses: it is the same
// function, only better organised.
fn layers_and_containers(nb: &mut Notebook, data: &Data, starter: &Starter) -> anyhow::Result<()> {
    nb.section("Layers and containers: Embedding, FlattenConsecutive, Sequential");
    let (vs, model) = starter_as_sequential(nb, &starter.vs)?;
    let xb = build_dataset(&data.words.train[..2], &data.vocab, 3, nb.device())?.0;
    let xb = xb.narrow(0, 0, 4); // [4, 3]: the first 4 contexts
    say!(nb, "the layers and their outputs for a batch of 4 contexts {:?}:", xb.size());
    print_shapes(nb, &model, &xb);
    say!(nb, "parameters counted in the Sequential's VarStore: {}", parameter_count(&vs));
    let forward = |x: &Tensor, train: bool| model.forward_t(x, train);
    let val = split_loss(nb, forward, &starter.val_set);
    let diff = (val - starter.stage.val).abs();
    say!(
        nb,
        "val loss of the starter code: {:.4}; of the Sequential: {val:.4} (difference {diff:.1e})",
        starter.stage.val
    );
    anyhow::ensure!(diff < 1e-6, "the Sequential is not the starter model");

    // One of the lecture's "fun bugs": BatchNorm1d behaves differently in
    // training and in evaluation, and the model must be told which. Sampling
    // feeds one context at a time. In training mode BatchNorm1d would
    // normalise that single example with the statistics of a batch of one:
    // `x - mean` is 0 for every unit, so the hidden layer outputs β whatever
    // the input, and every context gets the same prediction (the lecture's
    // formula even gives NaN: the unbiased variance of one number is 0/0;
    // libtorch's kernel gives 0). In evaluation mode it uses its running
    // statistics and the prediction depends on the context. (Shown on a
    // throw-away copy: a training-mode pass also moves the running statistics.)
    let (_copy_vs, copy) = starter_as_sequential(nb, &starter.vs)?;
    let (first, fourth) = (xb.narrow(0, 0, 1), xb.narrow(0, 3, 1)); // [1, 3] each
    let gap = |train: bool| {
        let _no_grad = tch::no_grad_guard();
        let (a, b) = (copy.forward_t(&first, train), copy.forward_t(&fourth, train)); // [1, 27]
        (a - b).abs().max().double_value(&[])
    };
    let (eval_gap, train_gap) = (gap(false), gap(true));
    say!(nb, "two contexts fed one at a time; largest difference of their logits:");
    say!(nb, "    evaluation mode: {eval_gap:.4}");
    say!(nb, "    training mode:   {train_gap:.4} (the input no longer matters)");
    Ok(())
}

/// The lecture's flat MLP as a `Sequential`: the whole context of
/// `block_size` characters embedded, concatenated, one hidden layer.
fn flat_mlp(path: &nn::Path, block_size: i64, n_embd: i64, n_hidden: i64) -> Sequential {
    let at = |i: usize| path / "layers" / i;
    let mut model = Sequential::new();
    model.push(Embedding::new(at(0), VOCAB, n_embd)); // [B, T] -> [B, T, n_embd]
    model.push(FlattenConsecutive::new(block_size)); // -> [B, T * n_embd]
    model.push(Linear::new(at(2), n_embd * block_size, n_hidden, HIDDEN)); // -> [B, n_hidden]
    model.push(BatchNorm1d::new(at(3), n_hidden, BatchNorm1dConfig::default()));
    model.push(Tanh);
    model.push(Linear::new(at(5), n_hidden, VOCAB, LAST)); // -> [B, 27]
    model
}

/// The starter model rebuilt as a `Sequential` holding a copy of its weights.
fn starter_as_sequential(
    nb: &Notebook,
    starter: &nn::VarStore,
) -> anyhow::Result<(nn::VarStore, Sequential)> {
    let vs = nn::VarStore::new(nb.device());
    let model = flat_mlp(&vs.root(), 3, 10, 200);
    let source = starter.variables();
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            let from = if name == "layers.0.weight" { "C" } else { name.as_str() };
            let src = source.get(from).with_context(|| format!("no {from} in the starter"))?;
            var.copy_(src);
        }
        anyhow::Ok(())
    })?;
    Ok((vs, model))
}

/// Prints each layer's class and output shape, as the lecture's
/// `for layer in model.layers: print(layer.__class__.__name__, ':', tuple(layer.out.shape))`
/// (evaluation mode, so no running statistic moves).
fn print_shapes(nb: &mut Notebook, model: &Sequential, x: &Tensor) {
    let _no_grad = tch::no_grad_guard();
    let mut h = x.shallow_clone();
    for layer in &model.layers {
        h = layer.forward_t(&h, false);
        let class: String =
            format!("{layer:?}").chars().take_while(|c| c.is_alphanumeric()).collect();
        say!(nb, "    {class:<20} : {:?}", h.size());
    }
}

// ## Context of 8: the flat MLP
//
// The first improvement is more context: 8 characters instead of 3. The
// model stays the same flat MLP, so all 8 embeddings are concatenated into
// one vector of 80 numbers and squashed through one hidden layer at once:
// 22,097 parameters instead of 12,097, almost all of the growth in the first
// Linear. The lecture's validation loss went from 2.105 to 2.027 with this
// alone. (The examples are the same 182,625 training cases; only their
// contexts are longer.)
fn context_of_8(nb: &mut Notebook, data: &Data, steps: usize) -> anyhow::Result<(Sets, Stage)> {
    nb.section("Context of 8: the flat MLP");
    let sets = datasets(nb, data, 8)?;
    tch::manual_seed(SEED);
    let vs = nn::VarStore::new(nb.device());
    let model = flat_mlp(&vs.root(), 8, 10, 200);
    let forward = |x: &Tensor, train: bool| model.forward_t(x, train);
    let stage = run_stage(nb, "context 8, flat (22k)", &vs, forward, &sets, steps, (1.918, 2.027))?;
    Ok((sets, stage))
}

// ## The hierarchical model (WaveNet)
//
// Crushing 8 characters into one layer at the very first step is abrupt.
// WaveNet (van den Oord et al., 2016) instead fuses its inputs in a tree:
// pairs of neighbouring characters first, then pairs of pairs, then the two
// halves, so information is mixed slowly, level by level. Without the
// dilated convolutions of the paper, the same tree is an MLP applied to
// groups: `FlattenConsecutive(2)` turns `[B, 8, C]` into `[B, 4, 2C]`
// (neighbours side by side), and a `Linear` on `[B, 4, 2C]` acts on the last
// dimension only, applying the same weights to each of the 4 groups (a
// matrix product broadcasts over the leading dimensions). Three levels,
// 8 -> 4 -> 2 -> 1, then the output layer.
//
// To compare fairly with the flat model, the lecture keeps about the same
// number of parameters: n_embd 10, n_hidden 68 gives 22,397.
//
// This first pass uses the lecture's BatchNorm1d as it was written in part 3,
// for 2-D inputs `[B, C]`: it computes its statistics over dim 0. Here the
// hidden activations are 3-D, `[B, T, C]`, and nothing complains...
struct Hierarchical {
    vs: nn::VarStore,
    stage: Stage,
}

/// The lecture's hierarchical model, layer by layer, with `batchnorm(path,
/// dim)` as its BatchNorm1d (the lecture's buggy one or the library's).
fn hierarchical<B: ModuleT + 'static>(
    path: &nn::Path,
    n_embd: i64,
    n_hidden: i64,
    batchnorm: impl Fn(nn::Path, i64) -> B,
) -> Sequential {
    let at = |i: usize| path / "layers" / i;
    let mut model = Sequential::new();
    model.push(Embedding::new(at(0), VOCAB, n_embd)); // [B, 8] -> [B, 8, n_embd]
    model.push(FlattenConsecutive::new(2)); // -> [B, 4, 2 n_embd]
    model.push(Linear::new(at(2), n_embd * 2, n_hidden, HIDDEN)); // -> [B, 4, n_hidden]
    model.push(batchnorm(at(3), n_hidden));
    model.push(Tanh);
    model.push(FlattenConsecutive::new(2)); // -> [B, 2, 2 n_hidden]
    model.push(Linear::new(at(6), n_hidden * 2, n_hidden, HIDDEN)); // -> [B, 2, n_hidden]
    model.push(batchnorm(at(7), n_hidden));
    model.push(Tanh);
    model.push(FlattenConsecutive::new(2)); // -> [B, 2 n_hidden]
    model.push(Linear::new(at(10), n_hidden * 2, n_hidden, HIDDEN)); // -> [B, n_hidden]
    model.push(batchnorm(at(11), n_hidden));
    model.push(Tanh);
    model.push(Linear::new(at(13), n_hidden, VOCAB, LAST)); // -> [B, 27]
    model
}

/// The lecture's first BatchNorm1d, bug included (part 3's layer, written for
/// `[B, C]`): batch statistics over dim 0 only, `x.mean(0, keepdim=True)`.
/// On `[B, T, C]` that is one mean and variance per position and channel,
/// `[1, T, C]`, each from only B numbers, and the running statistics
/// (`running_mean = 0.9 * running_mean + 0.1 * xmean`) silently broadcast from
/// `[C]` to `[1, T, C]`. Kept only to show the bug; the library's
/// `BatchNorm1d` is the fixed layer.
struct LectureBatchNorm1d {
    gamma: Tensor,
    beta: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
}

impl std::fmt::Debug for LectureBatchNorm1d {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BatchNorm1d (the lecture's first, over dim 0 only)")
    }
}

impl LectureBatchNorm1d {
    fn new(path: nn::Path, dim: i64) -> Self {
        Self {
            gamma: path.ones("weight", &[dim]),
            beta: path.zeros("bias", &[dim]),
            running_mean: path.zeros_no_train("running_mean", &[dim]),
            running_var: path.ones_no_train("running_var", &[dim]),
        }
    }
}

impl ModuleT for LectureBatchNorm1d {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let (momentum, eps) = (0.1, 1e-5);
        let (xmean, xvar) = if train {
            let xmean = x.mean_dim(0, true, Kind::Float); // [1, T, C]: batch mean (over dim 0 only)
            let xvar = x.var_dim(0, true, true); // [1, T, C]: batch variance
            (xmean, xvar)
        } else {
            (self.running_mean.shallow_clone(), self.running_var.shallow_clone())
        };
        let xhat = (x - &xmean) / (&xvar + eps).sqrt(); // [B, T, C]: normalise to unit variance
        let out = &self.gamma * xhat + &self.beta; // [B, T, C]
        if train {
            tch::no_grad(|| {
                // the buffers take the shape of the broadcast: [C] -> [1, T, C]
                let mean = &self.running_mean * (1.0 - momentum) + xmean * momentum;
                let var = &self.running_var * (1.0 - momentum) + xvar * momentum;
                self.running_mean.shallow_clone().set_data(&mean);
                self.running_var.shallow_clone().set_data(&var);
            });
        }
        out
    }
}

fn hierarchical_model(
    nb: &mut Notebook,
    sets: &Sets,
    steps: usize,
) -> anyhow::Result<Hierarchical> {
    nb.section("The hierarchical model (WaveNet)");
    tch::manual_seed(SEED);
    let vs = nn::VarStore::new(nb.device());
    let model = hierarchical(&vs.root(), 10, 68, LectureBatchNorm1d::new);
    let xb = sets.0.x.narrow(0, 0, 4); // [4, 8]
    say!(nb, "the layers and their outputs for a batch of 4 contexts {:?}:", xb.size());
    print_shapes(nb, &model, &xb);
    let library = WaveNetConfig { n_embd: 10, n_hidden: 68, ..WaveNetConfig::default() };
    say!(
        nb,
        "the library's WaveNet of the same sizes: WaveNetConfig::num_parameters() = {}",
        library.num_parameters()
    );
    let forward = |x: &Tensor, train: bool| model.forward_t(x, train);
    let stage = run_stage(nb, "hierarchical (22k)", &vs, forward, sets, steps, (1.941, 2.029))?;
    Ok(Hierarchical { vs, stage })
}

// ## Fixing the BatchNorm1d bug
//
// After training, look at the first BatchNorm1d's running mean: it should
// hold one number per channel, 68, but it has shape [1, 4, 68]. The layer
// took its statistics over dim 0 only, so it kept a separate mean and
// variance for each of the 4 positions, each estimated from 32 numbers, and
// it normalised each position separately. The 4 positions are 4 pairs of
// characters going through the same weights: they should share their
// statistics, estimated from 32 x 4 = 128 numbers. The fix is to reduce over
// dims (0, 1) when the input is 3-D. (The lecture's fixed layer still keeps
// its buffers as [1, 1, 68] with keepdim; the library's BatchNorm1d keeps
// them as [68], as PyTorch's nn.BatchNorm1d.)
//
// The lecture's numbers: validation 2.029 with the bug, 2.022 with the fix,
// a small gain, as the bug did not break the model, it only made its
// statistics noisier. Same model, same seed, same batches, only the layer
// differs:
fn batchnorm_bug(
    nb: &mut Notebook,
    sets: &Sets,
    buggy: &Hierarchical,
    steps: usize,
) -> anyhow::Result<Stage> {
    nb.section("Fixing the BatchNorm1d bug");
    let buggy_vars = buggy.vs.variables();
    for i in [3, 7, 11] {
        let name = format!("layers.{i}.running_mean");
        let shape = buggy_vars.get(&name).with_context(|| format!("no {name}"))?.size();
        say!(nb, "buggy BatchNorm1d {name}: {shape:?}");
    }
    tch::manual_seed(SEED);
    let vs = nn::VarStore::new(nb.device());
    let fixed_bn = |path: nn::Path, dim| BatchNorm1d::new(path, dim, BatchNorm1dConfig::default());
    let model = hierarchical(&vs.root(), 10, 68, fixed_bn);
    let forward = |x: &Tensor, train: bool| model.forward_t(x, train);
    let stage = run_stage(nb, "hierarchical, BN fixed", &vs, forward, sets, steps, (1.912, 2.022))?;
    let fixed_vars = vs.variables();
    for i in [3, 7, 11] {
        let name = format!("layers.{i}.running_mean");
        let shape = fixed_vars.get(&name).with_context(|| format!("no {name}"))?.size();
        say!(nb, "fixed BatchNorm1d {name}: {shape:?}");
    }
    let gain = stage.val - buggy.stage.val;
    let verdict = match (nb.quick(), gain < 0.0) {
        (true, _) => "; a quick run is too short to tell the two apart",
        (false, true) => "; the fix lowered the validation loss here too",
        (false, false) => "; no gain in this run",
    };
    say!(
        nb,
        "validation loss, fixed minus buggy: {gain:+.4} (lecture: {:+.3}){verdict}",
        2.022 - 2.029
    );
    Ok(stage)
}

// ## Scaling up
//
// With the bug fixed, the network is made bigger: 24 numbers per character
// and 128 hidden units per level. This is the library's `WaveNet` (the same
// 14 layers as above, built by `WaveNet::new`; the `rnnlab train --model
// wavenet` model), 76,579 parameters. The lecture's validation loss: 1.993,
// crossing 2.0 for the first time, but its training took much longer and it
// stopped here: without an experimental harness (many runs, hyperparameter
// search) it could not tell which change mattered.
fn scaling_up(nb: &mut Notebook, sets: &Sets, steps: usize) -> anyhow::Result<(WaveNet, Stage)> {
    nb.section("Scaling up");
    tch::manual_seed(SEED);
    let vs = nn::VarStore::new(nb.device());
    let config = WaveNetConfig { n_embd: 24, n_hidden: 128, ..WaveNetConfig::default() };
    let model = WaveNet::new(&vs.root(), config)?;
    say!(nb, "WaveNetConfig::num_parameters() = {} (the formula)", config.num_parameters());
    let forward = |x: &Tensor, train: bool| model.forward_t(x, train);
    let stage = run_stage(nb, "scaled up (76k)", &vs, forward, sets, steps, (1.769, 1.993))?;
    Ok((model, stage))
}

// ## Performance log
//
// The lecture's summary, with this run's numbers beside it, and the training
// curves of every model, each averaged over rows of steps. The lecture's
// numbers come from 200,000 steps per model; a quick run's from a few
// hundred, so only a full run compares.
fn performance_log(nb: &mut Notebook, stages: &[Stage]) -> anyhow::Result<()> {
    nb.section("Performance log");
    say!(
        nb,
        "| model | parameters | steps | ms/step | train | val | lecture train | lecture val |"
    );
    say!(nb, "|---|---|---|---|---|---|---|---|");
    for s in stages {
        say!(
            nb,
            "| {} | {} | {} | {:.2} | {:.4} | {:.4} | {:.3} | {:.3} |",
            s.name,
            s.params,
            s.lossi.len(),
            s.ms_per_step,
            s.train,
            s.val,
            s.lecture.0,
            s.lecture.1
        );
    }
    let minutes = |steps: &dyn Fn(usize, &Stage) -> usize| {
        let ms: f64 =
            stages.iter().enumerate().map(|(i, s)| s.ms_per_step * steps(i, s) as f64).sum();
        ms / 60e3
    };
    say!(
        nb,
        "\ntraining took {:.1} minutes in all; at the same speeds, full mode (50,000 steps for \
         the four smaller models, 200,000 for the last) takes about {:.0} minutes, the \
         lecture's 200,000 steps for every model about {:.0} minutes",
        minutes(&|_, s| s.lossi.len()),
        minutes(&|i, _| if i + 1 == stages.len() { FULL_STEPS_LAST } else { FULL_STEPS }),
        minutes(&|_, _| LECTURE_STEPS)
    );

    let mut chart = LineChart::new(
        "Training loss of each model, log10, means of rows of steps",
        "step",
        "log10(loss)",
    );
    // one row length for every curve: that of the shortest run
    let k = row_length(nb, stages.iter().map(|s| s.lossi.len()).min().unwrap_or(1));
    for (i, s) in stages.iter().enumerate() {
        chart.series.push(Series::new(s.name, row_average(&log10_points(&s.lossi), k), i));
    }
    chart.draw(&nb.path("stages.png"))?;
    nb.figure("stages.png", "row-averaged training loss of each model");
    Ok(())
}

// ## Sampling names
//
// Finally the scaled-up model makes up names: start from a context of 8 `.`,
// draw the next character from the softmax of the logits, shift it into the
// context, until `.` comes out. BatchNorm1d runs in evaluation mode (its
// running statistics), since a batch of one has no statistics of its own.
fn sample_names(nb: &mut Notebook, model: &WaveNet, vocab: &Vocab) {
    nb.section("Sampling names");
    tch::manual_seed(SEED);
    let names = model.sample(vocab, 20, 50);
    say!(nb, "20 names from the scaled-up model:");
    for name in names {
        say!(nb, "    {name}");
    }
}
