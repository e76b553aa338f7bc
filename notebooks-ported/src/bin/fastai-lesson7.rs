//! fastai lesson 7 notes: a language model from scratch, in Rust.
//!
//! The course's notes on fastai lesson 7 (the fastai book's chapter 12, "A
//! Language Model from Scratch", with the SGDR, BatchNorm and ActivationStats
//! notes that go with it), on makemore's names instead of the book's "human
//! numbers": a stateful character-level RNN language model built from the
//! hand-written `GRUCell` and `LSTMCell` of `crates/cells`, trained with
//! truncated back-propagation through time (and what happens when the hidden
//! state is not detached), cosine annealing with warm restarts, then
//! BatchNorm's effect on a small tanh MLP and a hook-style report of its
//! activation statistics.
//!
//! Run: `make notebook NB=fastai-lesson7` (full: minutes; timings in
//! `notebooks-ported/README.md`) or `QUICK=1 target/release/fastai-lesson7`
//! (seconds).
//! Outputs: `results/notebooks/fastai-lesson7/` (`output.md` and the figures).
//!
//! What a learner should see in a full run (the transcript prints the
//! numbers):
//! - the second `backward()` through a hidden state that was not detached
//!   fails with libtorch's "Trying to backward through the graph a second
//!   time"; with `retain_graph` instead, each backward takes longer than the
//!   last, because it runs through every chunk seen so far;
//! - the learning rate jumps back to its base at every SGDR restart (cycles of
//!   1, 2 and 4 epochs); the validation loss falls from ln 27 = 3.30 at
//!   initialisation to about 2 nats per character by the third cycle's end;
//! - sampled names that look like names;
//! - at SGD's learning rate 1.0, the plain tanh MLP saturates most of its tanh
//!   units and its validation loss ends worse than a uniform guess, while the
//!   same net with BatchNorm trains normally.
//!
//! Every training loop here is rnnlab's training engine (`train::fit`): the
//! language models and the MLPs are `Task`s, so their losses, learning rates
//! and checkpoints land in `runs/<name>/` as for `rnnlab train`.
//!
//! Quick mode trains on a few thousand names for a few hundred steps: its
//! numbers only show that everything runs, not how well it learns.

use anyhow::{bail, ensure, Context, Result};
use cells::{CellState, GRUCell, LSTMCell, RecurrentCell};
use figures::{row_average, LineChart, Series};
use models::makemore::data::PyRandom;
use models::makemore::{
    build_dataset, load_words, split_words, BatchNorm1d, BatchNorm1dConfig, Embedding,
    FlattenConsecutive, Linear, LinearConfig, Sequential, Tanh, Vocab,
};
use models::torch_linear;
use notebooks::{first_line, parameter_count, say, Notebook};
use std::path::Path;
use std::time::Instant;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};
use train::schedule::CosineAnnealingWarmRestarts;
use train::{Eval, Goal, NoScores, Optim, RunDir, Schedule, Settings, Task};

/// The LMDataLoader layout: `.` + every word followed by `.`, as one stream
/// cut into `bs` equal parts laid side by side: `[bs, len / bs]`. Row `i` of
/// one chunk of columns continues in row `i` of the next.
fn lm_stream(words: &[String], vocab: &Vocab, bs: i64, device: Device) -> Result<Tensor> {
    let mut ids = vec![0i64];
    for w in words {
        for c in w.chars() {
            ids.push(vocab.index(c).with_context(|| format!("{c:?} is not in the vocabulary"))?);
        }
        ids.push(0);
    }
    let per_row = ids.len() as i64 / bs;
    ensure!(per_row > 1, "{} characters cannot fill {bs} streams", ids.len());
    ids.truncate((per_row * bs) as usize);
    Ok(Tensor::from_slice(&ids).reshape([bs, per_row]).to_device(device)) // [bs, L/bs]
}

/// Chunks of `bptt` columns with their targets one character on:
/// `(x [bs, bptt], y [bs, bptt])` (a last partial chunk is dropped).
fn chunks(stream: &Tensor, bptt: i64) -> Vec<(Tensor, Tensor)> {
    let n = (stream.size()[1] - 1) / bptt;
    (0..n)
        .map(|k| (stream.narrow(1, k * bptt, bptt), stream.narrow(1, k * bptt + 1, bptt)))
        .collect()
}

/// Decodes a row of character ids.
fn decode(ids: &Tensor, vocab: &Vocab) -> String {
    Vec::<i64>::try_from(ids.to_device(Device::Cpu))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| vocab.char(i))
        .collect()
}

/// The book's `LMModel`: embedding, one recurrent cell, a linear head that
/// predicts the next character at every position.
struct CharLM<C> {
    i_h: Embedding,
    cell: C,
    h_o: nn::Linear,
}

impl<C: RecurrentCell> CharLM<C> {
    /// `make_cell(path, input, hidden)` builds the cell (`GRUCell::new`, ...).
    fn new(
        vs: &nn::VarStore,
        vocab: i64,
        n_embd: i64,
        n_hidden: i64,
        make_cell: impl Fn(nn::Path, i64, i64) -> C,
    ) -> Self {
        let root = vs.root();
        Self {
            i_h: Embedding::new(&root / "i_h", vocab, n_embd),
            cell: make_cell(&root / "rnn", n_embd, n_hidden),
            h_o: torch_linear(&(&root / "h_o"), n_hidden, vocab),
        }
    }

    /// `x [B, T]` from `state` -> logits `[B, T, V]` and the state after the
    /// last step.
    fn forward(&self, x: &Tensor, state: C::State) -> (Tensor, C::State) {
        let emb = self.i_h.forward_t(x, false); // [B, T, E]
        let (out, state) = self.cell.seq(&emb, Some(state)); // [B, T, H]
        (out.apply(&self.h_o), state) // [B, T, V]
    }

    /// Mean cross-entropy of a chunk: logits `[B, T, V]`, targets `[B, T]`.
    fn loss(logits: &Tensor, y: &Tensor) -> Tensor {
        let v = logits.size()[2];
        logits.reshape([-1, v]).cross_entropy_for_logits(&y.reshape([-1]))
    }

    /// Mean loss over every chunk of `stream`, statefully, without gradients.
    fn evaluate(&self, stream: &Tensor, bptt: i64) -> f64 {
        let _guard = tch::no_grad_guard();
        let mut state = self.cell.zero_state(stream.size()[0]);
        let mut total = 0.0;
        let parts = chunks(stream, bptt);
        for (x, y) in &parts {
            let (logits, next) = self.forward(x, state);
            total += Self::loss(&logits, y).double_value(&[]);
            state = next;
        }
        total / parts.len() as f64
    }

    /// Samples `n` names as one stream: starts from `.`, draws each next
    /// character from the softmax and feeds it back, carrying the hidden
    /// state, also across the `.` that ends a name. A name is cut at 30.
    fn sample(&self, vocab: &Vocab, n: usize, device: Device) -> Vec<String> {
        let _guard = tch::no_grad_guard();
        let mut state = self.cell.zero_state(1);
        let mut x = Tensor::zeros([1], (Kind::Int64, device)); // [1], the '.'
        let mut names = Vec::new();
        let mut name = String::new();
        while names.len() < n {
            let emb = self.i_h.forward_t(&x, false); // [1, E]
            state = self.cell.step(&emb, &state);
            let logits = state.output().apply(&self.h_o); // [1, V]
            x = logits.softmax(-1, Kind::Float).multinomial(1, true).reshape([1]); // [1]
            let ix = x.int64_value(&[0]);
            if ix == 0 || name.len() >= 30 {
                names.push(std::mem::take(&mut name));
            } else {
                name.extend(vocab.char(ix));
            }
        }
        names
    }
}

/// Sizes and steps of the language-model runs.
struct LmConfig {
    bs: i64,
    bptt: i64,
    n_embd: i64,
    n_hidden: i64,
}

/// One model's training record.
struct LmRun {
    /// (step, training loss) and (step, learning rate), one per step.
    losses: Vec<(f64, f64)>,
    lrs: Vec<(f64, f64)>,
    /// Per SGDR cycle: (first step, last step, validation loss at its end).
    cycles: Vec<(usize, usize, f64)>,
}

/// The language model as a training-engine task: each epoch reshuffles the
/// names and lays them out as one stream again (fastai's `LMDataLoader`),
/// the hidden state is reset at an epoch's start, carried from chunk to
/// chunk and detached after each (truncated BPTT).
struct LmTask<'a, C: RecurrentCell> {
    model: &'a CharLM<C>,
    vs: &'a nn::VarStore,
    words: &'a [String],
    vocab: &'a Vocab,
    cfg: &'a LmConfig,
    val_stream: &'a Tensor,
    parts: Vec<(Tensor, Tensor)>,
    state: Option<C::State>,
    /// `(step, validation loss)` of every evaluation (one per epoch).
    vals: Vec<(u64, f64)>,
    step: u64,
}

impl<'a, C: RecurrentCell> LmTask<'a, C> {
    /// The chunks of `epoch`'s stream: the names shuffled once per epoch so
    /// far (fastai shuffles the same list in place every epoch), so the
    /// order is a function of the epoch and a resumed run sees the same.
    fn epoch_chunks(&self, epoch: u64) -> Result<Vec<(Tensor, Tensor)>> {
        let mut words = self.words.to_vec();
        for e in 0..=epoch {
            PyRandom::new(e as u32).shuffle(&mut words);
        }
        let stream = lm_stream(&words, self.vocab, self.cfg.bs, self.vs.device())?; // [bs, L/bs]
        Ok(chunks(&stream, self.cfg.bptt))
    }
}

impl<C: RecurrentCell> Task for LmTask<'_, C> {
    type Scores = NoScores;

    fn var_store(&self) -> &nn::VarStore {
        self.vs
    }

    fn steps_per_epoch(&self) -> u64 {
        self.parts.len() as u64 // every epoch lays out the same names: the same length
    }

    fn begin_epoch(&mut self, epoch: u64) {
        self.parts = self.epoch_chunks(epoch).expect("the names make a stream");
        self.state = None; // reset at the start of an epoch
    }

    fn train_loss(&mut self, step: u64, batch: u64) -> Tensor {
        self.step = step;
        let (x, y) = &self.parts[batch as usize];
        let state = self.state.take().unwrap_or_else(|| self.model.cell.zero_state(self.cfg.bs));
        let (logits, next) = self.model.forward(x, state); // [bs, bptt, V]
        self.state = Some(next.detach()); // truncated BPTT: gradients stop here
        CharLM::<C>::loss(&logits, y)
    }

    fn evaluate(&mut self) -> Result<Eval<NoScores>> {
        let loss = self.model.evaluate(self.val_stream, self.cfg.bptt);
        self.vals.push((self.step, loss));
        Ok(Eval { loss, scores: NoScores {} })
    }

    fn monitor(&self, eval: &Eval<NoScores>) -> (f64, Goal) {
        (eval.loss, Goal::Minimize)
    }
}

/// The columns of `metrics.csv` the notebook reads back.
#[derive(Debug, serde::Deserialize)]
struct MetricsRow {
    step: u64,
    loss: f64,
    lr: f64,
}

/// Trains `model` on the engine for the epochs of `cycle_ends` (epochs at
/// which an SGDR cycle ends) with Adam, the learning rate set every step
/// from SGDR at the fractional epoch, validating after every epoch; the run
/// (`metrics.csv`, checkpoints) goes to `dir`.
#[allow(clippy::too_many_arguments)]
fn train_lm<C: RecurrentCell>(
    model: &CharLM<C>,
    vs: &nn::VarStore,
    train_words: &[String],
    val_stream: &Tensor,
    vocab: &Vocab,
    cfg: &LmConfig,
    sgdr: &CosineAnnealingWarmRestarts,
    cycle_ends: &[usize],
    dir: &Path,
) -> Result<LmRun> {
    let mut task = LmTask {
        model,
        vs,
        words: train_words,
        vocab,
        cfg,
        val_stream,
        parts: Vec::new(),
        state: None,
        vals: Vec::new(),
        step: 0,
    };
    task.parts = task.epoch_chunks(0)?;
    let per_epoch = task.steps_per_epoch();
    let epochs = *cycle_ends.last().context("no SGDR cycle")? as u64;
    let settings = Settings {
        seed: SEED,
        steps: epochs * per_epoch,
        valid_every: per_epoch,
        optimizer: Optim::adam(),
        schedule: Schedule::Sgdr { sgdr: *sgdr, steps_per_epoch: per_epoch as usize },
        clip_grad_norm: None,
        patience: None,
        log_every: per_epoch,
        validate_at_start: false,
    };
    let _ = std::fs::remove_dir_all(dir);
    let run_dir = RunDir::create(Some(dir), "lm")?;
    train::fit(&mut task, &run_dir, &settings, false)?;
    let rows: Vec<MetricsRow> = train::metrics::read_rows(&run_dir.file("metrics.csv"))?;
    let mut run = LmRun {
        losses: rows.iter().map(|r| ((r.step - 1) as f64, r.loss)).collect(),
        lrs: rows.iter().map(|r| ((r.step - 1) as f64, r.lr)).collect(),
        cycles: Vec::new(),
    };
    let mut cycle_start = 0;
    for &end in cycle_ends {
        let last = end * per_epoch as usize; // the step that ends the cycle (1-based)
        let &(_, val) = task
            .vals
            .iter()
            .find(|(s, _)| *s as usize == last)
            .context("no validation at the end of an SGDR cycle")?;
        run.cycles.push((cycle_start, last - 1, val));
        cycle_start = last;
    }
    Ok(run)
}

/// The epochs at which SGDR cycles end, for `n` cycles of `t_0`, `t_0·t_mult`, ...
fn cycle_ends(t_0: usize, t_mult: usize, n: usize) -> Vec<usize> {
    let (mut end, mut len) = (0, t_0);
    (0..n)
        .map(|_| {
            end += len;
            len *= t_mult;
            end
        })
        .collect()
}

/// The small tanh MLP of makemore part 3 (`Embedding`, `FlattenConsecutive`,
/// then `Linear` [+ `BatchNorm1d`] + `Tanh` per hidden layer, and an output
/// `Linear`), hidden weights drawn with `gain`.
fn mlp(vs: &nn::VarStore, block: i64, layers: i64, gain: f64, batchnorm: bool) -> Sequential {
    let (n_embd, n_hidden) = (10, 100);
    let root = vs.root() / "layers";
    let mut net = Sequential::new();
    let mut i = 0;
    let mut next = || {
        i += 1;
        &root / (i - 1)
    };
    net.push(Embedding::new(next(), 27, n_embd));
    net.push(FlattenConsecutive::new(block));
    let mut fan_in = n_embd * block;
    // a Linear before BatchNorm needs no bias: BatchNorm subtracts the mean
    let hidden = LinearConfig { bias: !batchnorm, gain };
    for _ in 0..layers {
        net.push(Linear::new(next(), fan_in, n_hidden, hidden));
        if batchnorm {
            net.push(BatchNorm1d::new(next(), n_hidden, BatchNorm1dConfig::default()));
        }
        net.push(Tanh);
        fan_in = n_hidden;
    }
    // the lecture's last layer: small weights, so the first predictions are
    // nearly uniform
    net.push(Linear::new(next(), fan_in, 27, LinearConfig { bias: true, gain: 0.1 }));
    net
}

/// One layer's activation statistics at one step (what fastai's
/// `ActivationStats` hook records).
#[derive(Clone, Copy)]
struct ActStats {
    mean: f64,
    std: f64,
    /// Fraction of units with |x| > 0.97 (saturated, for a tanh).
    saturated: f64,
}

/// Runs `net`'s layers one by one (what a forward hook sees) and records each
/// layer's output statistics when `record` is given.
fn forward_with_stats(
    net: &Sequential,
    x: &Tensor,
    train: bool,
    record: Option<&mut Vec<Vec<ActStats>>>,
) -> Tensor {
    let mut h = x.shallow_clone();
    let mut row = Vec::new();
    for layer in &net.layers {
        h = layer.forward_t(&h, train);
        if record.is_some() {
            let a = h.detach().to_kind(Kind::Float);
            let saturated = a.abs().gt(0.97).to_kind(Kind::Float).mean(Kind::Float);
            row.push(ActStats {
                mean: a.mean(Kind::Float).double_value(&[]),
                std: a.std(true).double_value(&[]),
                saturated: saturated.double_value(&[]),
            });
        }
    }
    if let Some(stats) = record {
        stats.push(row);
    }
    h
}

/// A layer's kind, from its `Debug` name (`Linear`, `Tanh`, ...).
fn layer_kind(layer: &dyn ModuleT) -> String {
    let name = format!("{layer:?}");
    name.split([' ', '(', '{']).next().unwrap_or_default().to_owned()
}

/// One MLP run: per-step training loss, validation loss, and activation
/// statistics every `every` steps.
struct MlpRun {
    losses: Vec<(f64, f64)>,
    val: f64,
    stats_steps: Vec<f64>,
    stats: Vec<Vec<ActStats>>,
}

/// The MLP as a training-engine task: minibatches of 32 drawn with
/// replacement (libtorch's generator, which the engine seeds), each layer's
/// output statistics recorded every `every` steps and at the last.
struct MlpTask<'a> {
    net: &'a Sequential,
    vs: &'a nn::VarStore,
    train: (&'a Tensor, &'a Tensor),
    valid: (&'a Tensor, &'a Tensor),
    steps: u64,
    every: u64,
    stats_steps: Vec<f64>,
    stats: Vec<Vec<ActStats>>,
}

impl Task for MlpTask<'_> {
    type Scores = NoScores;

    fn var_store(&self) -> &nn::VarStore {
        self.vs
    }

    fn steps_per_epoch(&self) -> u64 {
        self.steps // batches are drawn, not walked: the run is one "epoch"
    }

    fn train_loss(&mut self, step: u64, _batch: u64) -> Tensor {
        let (x, y) = self.train;
        let ix = Tensor::randint(x.size()[0], [32], (Kind::Int64, x.device())); // [32]
        let record = ((step - 1).is_multiple_of(self.every) || step == self.steps)
            .then_some(&mut self.stats);
        if record.is_some() {
            self.stats_steps.push((step - 1) as f64);
        }
        let logits = forward_with_stats(self.net, &x.index_select(0, &ix), true, record); // [32, 27]
        logits.cross_entropy_for_logits(&y.index_select(0, &ix))
    }

    fn evaluate(&mut self) -> Result<Eval<NoScores>> {
        let _guard = tch::no_grad_guard();
        let (xv, yv) = self.valid;
        let loss = forward_with_stats(self.net, xv, false, None)
            .cross_entropy_for_logits(yv)
            .double_value(&[]);
        Ok(Eval { loss, scores: NoScores {} })
    }

    fn monitor(&self, eval: &Eval<NoScores>) -> (f64, Goal) {
        (eval.loss, Goal::Minimize)
    }
}

/// Trains `net` on the engine with SGD at `lr` on minibatches of 32 from
/// `train`, then measures the loss on `valid`; the run goes to `dir`.
fn train_mlp(
    net: &Sequential,
    vs: &nn::VarStore,
    train: (&Tensor, &Tensor),
    valid: (&Tensor, &Tensor),
    (steps, lr, every): (usize, f64, usize),
    dir: &Path,
) -> Result<MlpRun> {
    let (steps, every) = (steps as u64, every as u64);
    let mut task =
        MlpTask { net, vs, train, valid, steps, every, stats_steps: Vec::new(), stats: Vec::new() };
    let settings = Settings {
        seed: SEED,
        steps,
        valid_every: steps,
        optimizer: Optim::Sgd,
        schedule: Schedule::constant(lr),
        clip_grad_norm: None,
        patience: None,
        log_every: every,
        validate_at_start: false,
    };
    let _ = std::fs::remove_dir_all(dir);
    let run_dir = RunDir::create(Some(dir), "mlp")?;
    let state = train::fit(&mut task, &run_dir, &settings, false)?;
    let rows: Vec<MetricsRow> = train::metrics::read_rows(&run_dir.file("metrics.csv"))?;
    Ok(MlpRun {
        losses: rows.iter().map(|r| ((r.step - 1) as f64, r.loss)).collect(),
        val: state.last.map(|(_, e)| e.loss).context("the run was not evaluated")?,
        stats_steps: task.stats_steps,
        stats: task.stats,
    })
}

/// Seeds the runs' initialisation, data order and draws.
const SEED: u64 = 42;

fn main() -> Result<()> {
    let mut nb =
        Notebook::start("fastai-lesson7", "fastai lesson 7: a language model from scratch")?;
    let device = nb.device();
    tch::manual_seed(42);

    // ---------------------------------------------------------------------
    // The data.
    //
    // The book starts from a data set simple enough to see what a language
    // model has to learn ("human numbers"); here it is makemore's 32,033
    // names. A language model predicts the next token from the ones before;
    // for that we concatenate every text into one long stream (the names,
    // each followed by a '.' separator, so the model learns where a name
    // ends) and train on consecutive pieces of it.
    //
    // The book's LMDataLoader does not cut the stream into consecutive
    // chunks one after the other (a batch would then hold 64 unrelated
    // pieces, and the next batch would not continue any of them). It cuts
    // the stream into `bs` equal parts laid side by side, one per batch
    // row, and walks along them `bptt` characters at a time: row i of every
    // batch continues exactly where row i of the previous batch stopped. A
    // model that keeps its hidden state from one batch to the next then
    // keeps reading the same text, which is what makes it "stateful".
    // ---------------------------------------------------------------------
    nb.section("The data: one stream of names in bs parallel streams");
    let path = Path::new(notebooks::NAMES);
    let words =
        load_words(path).with_context(|| format!("loading the names ({})", path.display()))?;
    let vocab = Vocab::from_words(&words);
    let split = split_words(&words, 42);
    let (n_train, n_val) = nb.pick((split.train.len(), split.val.len()), (4000, 600));
    let (train_words, val_words) = (&split.train[..n_train], &split.val[..n_val]);
    say!(
        nb,
        "{} names from {}; vocabulary of {}: {:?}",
        words.len(),
        path.display(),
        vocab.len(),
        vocab.chars().iter().collect::<String>()
    );
    say!(
        nb,
        "training on {} names, validating on {} (the lecture's seeded 80/10 split)",
        train_words.len(),
        val_words.len()
    );
    let cfg = LmConfig { bs: 64, bptt: nb.pick(32, 16), n_embd: 32, n_hidden: nb.pick(256, 64) };
    let stream = lm_stream(train_words, &vocab, cfg.bs, device)?; // [bs, L/bs]
    let parts = chunks(&stream, cfg.bptt);
    say!(
        nb,
        "stream laid out as {:?} = [bs, characters per row]: {} chunks of bptt = {} per epoch",
        stream.size(),
        parts.len(),
        cfg.bptt
    );
    say!(nb, "row 0 of chunk 0: {:?}", decode(&parts[0].0.get(0), &vocab));
    say!(nb, "row 0 of chunk 1: {:?}  (continues it)", decode(&parts[1].0.get(0), &vocab));
    say!(
        nb,
        "row 1 of chunk 0: {:?}  (another part of the stream)",
        decode(&parts[0].0.get(1), &vocab)
    );
    say!(
        nb,
        "targets of row 0, chunk 0: {:?}  (the same text one character on)",
        decode(&parts[0].1.get(0), &vocab)
    );
    let val_stream = lm_stream(val_words, &vocab, cfg.bs, device)?; // [bs, L_val/bs]

    // ---------------------------------------------------------------------
    // A stateful character-level language model.
    //
    // The book's LMModel: an embedding of the input character, a recurrent
    // layer that folds it into the hidden state, and a linear layer from the
    // hidden state to a score for every possible next character, at every
    // position of the chunk (not only the last: every position is a
    // prediction, and each gives a gradient). The recurrent layer is our own
    // GRUCell (and, later, LSTMCell), run over the chunk with
    // `RecurrentCell::seq`, which returns the outputs of every step and the
    // final state. The model is stateful: the final state of one chunk is the
    // initial state of the next, so it can use what came before the chunk
    // (the beginning of a name cut by the chunk boundary). Before training,
    // the loss is about ln 27 = 3.30: a uniform guess over 27 characters.
    // ---------------------------------------------------------------------
    nb.section("A stateful character-level language model");
    let vs_demo = nn::VarStore::new(device);
    let demo = CharLM::new(&vs_demo, vocab.len() as i64, cfg.n_embd, cfg.n_hidden, |p, i, h| {
        GRUCell::new(p, i, h, true)
    });
    let (x0, y0) = &parts[0];
    let (logits, state) = tch::no_grad(|| demo.forward(x0, demo.cell.zero_state(cfg.bs)));
    say!(
        nb,
        "x {:?} -> embedding [bs, bptt, {}] -> GRU outputs [bs, bptt, {}] -> logits {:?}",
        x0.size(),
        cfg.n_embd,
        cfg.n_hidden,
        logits.size()
    );
    say!(nb, "state carried to the next chunk: h {:?}", state.size());
    let loss0 = CharLM::<GRUCell>::loss(&logits, y0).double_value(&[]);
    say!(nb, "loss before training {loss0:.4} (ln 27 = {:.4})", (vocab.len() as f64).ln());
    let n_params: i64 = parameter_count(&vs_demo);
    say!(
        nb,
        "{n_params} parameters: i_h (embedding), rnn (GRUCell: weight_ih, weight_hh, \
         bias_ih, bias_hh), h_o (head)"
    );

    // ---------------------------------------------------------------------
    // Truncated back-propagation through time.
    //
    // The state carried into chunk k was computed by every chunk before it:
    // left alone, the graph behind it grows with every batch, and a backward
    // pass from chunk 1000 would have to run through all 1000 chunks. The
    // book's fix is `self.h = self.h.detach()` after each batch: the values
    // of the state are kept, but its history is dropped, so gradients flow
    // back at most one chunk (`bptt` steps). That is truncated BPTT.
    //
    // Forget the detach and PyTorch stops you at the second batch:
    // `backward()` frees the graph it ran through, and chunk 1's graph
    // reaches into chunk 0's, already freed: "Trying to backward through the
    // graph a second time". tch's `f_backward()` returns libtorch's error
    // instead of panicking, so we can print it. The tempting fix,
    // `retain_graph=True`, makes the error go away and the problem worse:
    // every backward now runs through every chunk so far, so each step takes
    // longer than the one before (and memory grows the same way). We time
    // the backward pass of each chunk both ways, with retain_graph in both
    // so that the detach is the only difference.
    // ---------------------------------------------------------------------
    nb.section("Truncated BPTT: detaching the hidden state");
    let (x1, y1) = &parts[1];
    let (logits, state) = demo.forward(x0, demo.cell.zero_state(cfg.bs));
    CharLM::<GRUCell>::loss(&logits, y0).f_backward()?;
    say!(nb, "chunk 0: backward ok");
    let (logits, _) = demo.forward(x1, state.shallow_clone()); // state NOT detached
    match CharLM::<GRUCell>::loss(&logits, y1).f_backward() {
        Ok(()) => bail!("backward through an undetached state unexpectedly succeeded"),
        Err(e) => say!(nb, "chunk 1 without detach: backward failed: {}", first_line(&e)),
    }
    let (logits, _) = demo.forward(x1, state.detach());
    CharLM::<GRUCell>::loss(&logits, y1).f_backward()?;
    say!(nb, "chunk 1 with the state detached: backward ok");

    let n_chunks = 12.min(parts.len());
    let params = vs_demo.trainable_variables();
    let mut timings = Vec::new(); // (chunk, ms detached, ms not detached)
    let mut kept = demo.cell.zero_state(cfg.bs);
    let mut cut = demo.cell.zero_state(cfg.bs);
    for (k, (x, y)) in parts.iter().take(n_chunks).enumerate() {
        // the fastest of 3 backward passes (retain_graph, so it can rerun),
        // which keeps other processes on shared cores out of the timing
        let time_backward = |state: Tensor| -> Result<(f64, Tensor)> {
            let (logits, next) = demo.forward(x, state);
            let loss = CharLM::<GRUCell>::loss(&logits, y);
            let mut best = f64::INFINITY;
            for _ in 0..3 {
                let t = Instant::now();
                Tensor::f_run_backward(&[&loss], &params, true, false)?;
                best = best.min(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok((best, next))
        };
        let (ms_cut, next) = time_backward(cut.detach())?;
        cut = next;
        let (ms_kept, next) = time_backward(kept)?;
        kept = next;
        timings.push((k as f64, ms_cut, ms_kept));
    }
    say!(
        nb,
        "backward time per chunk (ms, fastest of 3), state detached vs. not detached \
         (both with retain_graph):"
    );
    say!(nb, "| chunk | detached | not detached |");
    say!(nb, "|---:|---:|---:|");
    for &(k, a, b) in &timings {
        say!(nb, "| {k} | {a:.1} | {b:.1} |");
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let kept_ms: Vec<f64> = timings.iter().map(|t| t.2).collect();
    let growth = mean(&kept_ms[kept_ms.len() - 3..]) / mean(&kept_ms[..3]);
    say!(
        nb,
        "not detached: the last 3 backwards took {growth:.1}x the first 3 \
         (each runs through every chunk so far)"
    );
    let mut chart = LineChart::new("Backward time per chunk", "chunk index", "backward (ms)");
    chart.y_range = Some((0.0, 1.05 * kept_ms.iter().copied().fold(0.0, f64::max)));
    chart.series.push(Series::new(
        "state detached (truncated BPTT)",
        timings.iter().map(|t| (t.0, t.1)).collect(),
        0,
    ));
    chart.series.push(Series::new(
        "not detached, retain_graph",
        timings.iter().map(|t| (t.0, t.2)).collect(),
        3,
    ));
    chart.draw(&nb.path("bptt_backward_time.png"))?;
    nb.figure(
        "bptt_backward_time.png",
        "Backward time per chunk: constant with truncated BPTT, growing without",
    );
    drop(kept);

    // ---------------------------------------------------------------------
    // Training with SGDR: the GRU and the LSTM.
    //
    // Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017):
    // within a cycle the learning rate follows half a cosine from its base
    // down to eta_min, then jumps back to the base and the next cycle starts
    // (here each cycle twice as long as the last, T_mult = 2). The low rates
    // at the end of a cycle settle the weights into a minimum; the restart
    // kicks them out again, towards (one hopes) a wider, better one, and the
    // end of every cycle is a good model to keep. The rate is set every
    // batch, at the fractional epoch, as PyTorch's
    // `scheduler.step(epoch + i / iters)`.
    //
    // Both models are the same LMModel with a different cell: the GRU's
    // single hidden state against the LSTM's hidden state and cell memory,
    // whose gates let a gradient pass many steps almost unchanged. We
    // validate at the end of each cycle, statefully over the validation
    // stream, and then sample names one character at a time, feeding each
    // sampled character back in and carrying the hidden state, the way the
    // model read its training stream.
    // ---------------------------------------------------------------------
    nb.section("Training the GRU and the LSTM with SGDR");
    let sgdr = CosineAnnealingWarmRestarts::new(5e-3, 1, 2, 1e-4);
    let ends = cycle_ends(sgdr.t_0, sgdr.t_mult, 3);
    say!(
        nb,
        "SGDR: base lr {:.1e}, eta_min {:.1e}, T_0 = {} epoch, T_mult = {}: \
         cycles end after epochs {ends:?}",
        sgdr.base_lr,
        sgdr.eta_min,
        sgdr.t_0,
        sgdr.t_mult
    );
    say!(
        nb,
        "models: embedding {}, hidden {}, bs {}, bptt {}; Adam",
        cfg.n_embd,
        cfg.n_hidden,
        cfg.bs,
        cfg.bptt
    );
    let (vocab_n, start) = (vocab.len() as i64, Instant::now());
    let vs_gru = nn::VarStore::new(device);
    let gru = CharLM::new(&vs_gru, vocab_n, cfg.n_embd, cfg.n_hidden, |p, i, h| {
        GRUCell::new(p, i, h, true)
    });
    let dir = nb.path("runs/gru-lm");
    let gru_run =
        train_lm(&gru, &vs_gru, train_words, &val_stream, &vocab, &cfg, &sgdr, &ends, &dir)?;
    say!(nb, "GRU trained in {:.1} s", start.elapsed().as_secs_f64());
    let start = Instant::now();
    let vs_lstm = nn::VarStore::new(device);
    let lstm = CharLM::new(&vs_lstm, vocab_n, cfg.n_embd, cfg.n_hidden, |p, i, h| {
        LSTMCell::new(p, i, h, true)
    });
    let dir = nb.path("runs/lstm-lm");
    let lstm_run =
        train_lm(&lstm, &vs_lstm, train_words, &val_stream, &vocab, &cfg, &sgdr, &ends, &dir)?;
    say!(nb, "LSTM trained in {:.1} s", start.elapsed().as_secs_f64());

    say!(
        nb,
        "\n| cycle | steps | lr at first step | lr at last step | GRU val loss | LSTM val loss |"
    );
    say!(nb, "|---:|---:|---:|---:|---:|---:|");
    for (c, (g, l)) in gru_run.cycles.iter().zip(&lstm_run.cycles).enumerate() {
        let (first, last) = (g.0, g.1);
        say!(
            nb,
            "| {} | {first}-{last} | {:.3e} | {:.3e} | {:.4} | {:.4} |",
            c + 1,
            gru_run.lrs[first].1,
            gru_run.lrs[last].1,
            g.2,
            l.2
        );
    }
    let mut chart =
        LineChart::new("SGDR: cosine annealing with warm restarts", "step", "learning rate");
    chart.series.push(Series::new("", gru_run.lrs.clone(), 0));
    chart.draw(&nb.path("sgdr_lr.png"))?;
    nb.figure(
        "sgdr_lr.png",
        "The learning rate per step: a cosine down, then back to the base at each restart",
    );
    let k = (gru_run.losses.len() / 60).max(1);
    let mut chart = LineChart::new(
        "Training loss (stateful LM, truncated BPTT, SGDR)",
        "step",
        "cross-entropy (nats / char)",
    );
    for (run, name, colour) in [(&gru_run, "GRU", 0), (&lstm_run, "LSTM", 1)] {
        chart.series.push(Series {
            opacity: 0.25,
            width: 1,
            ..Series::new("", run.losses.clone(), colour)
        });
        chart.series.push(Series::new(
            format!("{name} (mean of {k} steps)"),
            row_average(&run.losses, k),
            colour,
        ));
        let val: Vec<(f64, f64)> = run.cycles.iter().map(|c| (c.1 as f64, c.2)).collect();
        chart.series.push(Series {
            width: 3,
            ..Series::new(format!("{name} validation, end of each cycle"), val, colour + 2)
        });
    }
    chart.draw(&nb.path("lm_loss.png"))?;
    nb.figure(
        "lm_loss.png",
        "Training loss of the GRU and LSTM language models, validation at each cycle's end",
    );
    tch::manual_seed(7);
    for (name, names) in
        [("GRU", gru.sample(&vocab, 12, device)), ("LSTM", lstm.sample(&vocab, 12, device))]
    {
        say!(nb, "names sampled from the {name}: {}", names.join(", "));
    }

    // ---------------------------------------------------------------------
    // BatchNorm's effect on a small net.
    //
    // Batch normalisation (Ioffe & Szegedy 2015) normalises each unit's
    // pre-activation over the batch to mean 0 and standard deviation 1, then
    // lets the net rescale it with a learned gamma and beta. Whatever the
    // weights have become, the tanh after it sees inputs of a sensible size;
    // the paper's and the book's headline is that this lets a net train at
    // learning rates that would wreck it otherwise. We show it on makemore
    // part 3's MLP (3 characters of context, hidden layers of 100 tanh
    // units, weights drawn with tanh's gain 5/3), trained twice with
    // everything equal except the BatchNorm layers (and the biases of the
    // Linears before them, which BatchNorm's mean subtraction would cancel),
    // at a deliberately high learning rate: SGD at 1.0, ten times the
    // lecture's 0.1. Without BatchNorm the large updates grow the weights,
    // the pre-activations grow with them, the tanh units saturate at ±1,
    // where their gradient is nearly zero, and the loss climbs back above
    // the ln 27 of a uniform guess; with BatchNorm the same updates are
    // normalised away and the net trains normally.
    // ---------------------------------------------------------------------
    nb.section("BatchNorm's effect on a small net");
    let (block, layers, gain, lr) = (3, 4, 5.0 / 3.0, 1.0);
    let steps = nb.pick(20_000, 1_000);
    let every = nb.pick(200, 50);
    let (x, y) = build_dataset(train_words, &vocab, block as usize, device)?; // [N, 3], [N]
    let (xv, yv) = build_dataset(val_words, &vocab, block as usize, device)?;
    say!(
        nb,
        "{} training examples of {block} characters -> next; {layers} hidden tanh layers \
         of 100, gain {gain:.3}, SGD lr {lr}, batch 32, {steps} steps",
        x.size()[0]
    );
    let mut runs = Vec::new();
    for batchnorm in [false, true] {
        train::init(SEED, tch::get_num_threads(), device);
        let vs = nn::VarStore::new(device);
        let net = mlp(&vs, block, layers, gain, batchnorm);
        let dir = nb.path(if batchnorm { "runs/mlp-batchnorm" } else { "runs/mlp" });
        let run = train_mlp(&net, &vs, (&x, &y), (&xv, &yv), (steps, lr, every), &dir)?;
        let kinds: Vec<String> = net.layers.iter().map(|l| layer_kind(l.as_ref())).collect();
        runs.push((if batchnorm { "with BatchNorm" } else { "without BatchNorm" }, kinds, run));
    }
    let k = (steps / 10).max(1);
    for (name, _, run) in &runs {
        let tail: Vec<f64> = run.losses[run.losses.len() - k..].iter().map(|p| p.1).collect();
        say!(
            nb,
            "{name}: training loss (mean of the last {k} steps) {:.4}, validation loss {:.4}",
            mean(&tail),
            run.val
        );
    }
    let (plain, bn) = (&runs[0].2, &runs[1].2);
    let verdict = if bn.val < plain.val {
        "BatchNorm trains better at this learning rate"
    } else {
        "BatchNorm did NOT help in this run"
    };
    say!(nb, "{verdict}: validation loss {:.4} with, {:.4} without", bn.val, plain.val);
    let k = (steps / 50).max(1);
    let mut chart = LineChart::new(
        format!("Same MLP, SGD at lr {lr}: with and without BatchNorm"),
        "step",
        "training loss",
    );
    for (c, (name, _, run)) in runs.iter().enumerate() {
        chart.series.push(Series::new(
            format!("{name} (mean of {k} steps)"),
            row_average(&run.losses, k),
            c,
        ));
    }
    chart.draw(&nb.path("batchnorm_loss.png"))?;
    nb.figure("batchnorm_loss.png", "Training loss of the MLP with and without BatchNorm");

    // ---------------------------------------------------------------------
    // Activation statistics, forward-hook style.
    //
    // fastai's ActivationStats callback registers a forward hook on every
    // layer and records the mean and standard deviation of its output (and
    // a histogram) at every batch, so you can see a net going wrong: means
    // drifting, standard deviations collapsing to 0 or blowing up, units
    // dead or saturated. tch has no hooks, but a Sequential is a list of
    // layers, so the training above ran them one at a time and recorded each
    // layer's output every few steps: mean, std, and (makemore part 3's
    // diagnostic) the fraction of units with |x| > 0.97, which for a tanh
    // means saturated, passing almost no gradient. Reading the tables: at
    // the first step the two nets look alike, tanh outputs with a std near
    // 0.6-0.8 and few saturated units (the BatchNorm net a little calmer).
    // By the last step, without BatchNorm the weights have grown and the
    // Linear outputs with them (in our full run to a standard deviation in
    // the thousands in the first layer), and most tanh units are saturated
    // (95% in the full run): the net has all but stopped learning. With
    // BatchNorm the Linear outputs have grown too, but each BatchNorm layer
    // brings them back to the scale its learned gamma sets (a std between
    // 0.3 and 2 in the full run) and most tanh units still respond.
    // ---------------------------------------------------------------------
    nb.section("Activation statistics, forward-hook style");
    for (name, kinds, run) in &runs {
        for (at, label) in [(0, "first step"), (run.stats.len() - 1, "last step")] {
            say!(nb, "\n{name}, {label} (step {}):\n", run.stats_steps[at]);
            say!(nb, "| layer | kind | mean | std | saturated (abs > 0.97) |");
            say!(nb, "|---:|---|---:|---:|---:|");
            for (i, (kind, s)) in kinds.iter().zip(&run.stats[at]).enumerate() {
                let sat = if kind == "Tanh" {
                    format!("{:.1}%", 100.0 * s.saturated)
                } else {
                    "-".to_owned()
                };
                say!(nb, "| {i} | {kind} | {:.3} | {:.3} | {sat} |", s.mean, s.std);
            }
        }
    }
    say!(nb);
    for (name, kinds, run) in &runs {
        let saturation = |row: &Vec<ActStats>| {
            let tanh: Vec<f64> = kinds
                .iter()
                .zip(row)
                .filter(|(k, _)| *k == "Tanh")
                .map(|(_, s)| s.saturated)
                .collect();
            100.0 * mean(&tanh)
        };
        let (first, last) = (&run.stats[0], &run.stats[run.stats.len() - 1]);
        say!(
            nb,
            "{name}: saturated tanh units {:.1}% at the first step, {:.1}% at the last",
            saturation(first),
            saturation(last)
        );
    }
    for (file, what, pick) in [
        (
            "act_std.png",
            "std of each tanh layer's output",
            (|s: &ActStats| s.std) as fn(&ActStats) -> f64,
        ),
        ("act_saturated.png", "fraction of saturated tanh units", |s: &ActStats| s.saturated),
    ] {
        let mut chart = LineChart::new(format!("Activation statistics: {what}"), "step", what);
        chart.y_range = Some((0.0, 1.3)); // room for the legend above 1
        for (c, (name, kinds, run)) in runs.iter().enumerate() {
            let tanhs = kinds.iter().enumerate().filter(|(_, k)| *k == "Tanh").map(|(i, _)| i);
            for (j, i) in tanhs.enumerate() {
                let points = run
                    .stats_steps
                    .iter()
                    .zip(&run.stats)
                    .map(|(&s, row)| (s, pick(&row[i])))
                    .collect();
                let label = if j == 0 {
                    format!("{name}, tanh layers 1-{layers} (thicker: deeper)")
                } else {
                    String::new()
                };
                chart
                    .series
                    .push(Series { width: 1 + j as u32, ..Series::new(label, points, c * 3) });
            }
        }
        chart.draw(&nb.path(file))?;
        nb.figure(file, &format!("Activation statistics per tanh layer over training: {what}"));
    }
    Ok(())
}
