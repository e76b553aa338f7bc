//! Utterances of any length in one padded batch: each utterance gives the
//! same logits (or embedding) and the same gradients, with respect to its
//! input and to every parameter, as when it runs alone, unpadded; on both
//! engines, for the word classifier (uni and bidirectional, LSTM and GRU) and
//! the speaker BiLSTM. The fused engine is also checked against libtorch's
//! own packed-sequence kernels (`lstm_data`, `gru_data`: what `nn.LSTM` and
//! `nn.GRU` run on a `PackedSequence`).

use models::speaker::{Pooling, ProxyLoss, SpeakerConfig, SpeakerHead, SpeakerModel};
use models::{BidirRecurrentModel, Engine, Mode, RNNModel, RnnConfig, SequenceClassifier};
use tch::nn;
use tch::{Device, Kind, Tensor};

const F64: (Kind, Device) = (Kind::Double, Device::Cpu);
/// Valid frames of each row; the batch has `T = 9` steps.
const LENGTHS: [i64; 4] = [9, 5, 7, 3];
const STEPS: i64 = 9;
const INPUT: i64 = 6;

fn store() -> nn::VarStore {
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    vs
}

/// Four utterances, padded to 9 steps with noise (not zeros), so that any
/// read of the padding shows.
fn batch() -> (Vec<Tensor>, Tensor, Tensor) {
    let utts: Vec<Tensor> = LENGTHS.iter().map(|&l| Tensor::randn([l, INPUT], F64)).collect();
    let padded = Tensor::randn([4, STEPS, INPUT], F64);
    for (b, u) in utts.iter().enumerate() {
        padded.get(b as i64).narrow(0, 0, u.size()[0]).copy_(u);
    }
    (utts, padded, Tensor::from_slice(&LENGTHS))
}

/// Gradients of `out · w` with respect to `x` and every variable of `vs`
/// (sorted by name), then zeroed.
fn grads(out: &Tensor, w: &Tensor, x: &Tensor, vs: &nn::VarStore) -> (Tensor, Vec<Tensor>) {
    let mut vars: Vec<_> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut inputs: Vec<&Tensor> = vec![x];
    inputs.extend(vars.iter().map(|(_, v)| v));
    let loss = (out * w).sum(Kind::Double);
    let g = Tensor::run_backward(&[&loss], &inputs, false, false);
    // A variable the output does not use (the speaker's proxies) gets none.
    let mut g: Vec<Tensor> = g
        .into_iter()
        .zip(&inputs)
        .map(|(g, v)| if g.defined() { g } else { v.zeros_like() })
        .collect();
    let gx = g.remove(0);
    (gx, g)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

/// For every row of the batch: the row's output equals the utterance's
/// alone, and for row 1 (5 of 9 frames) the gradients match too: the input's
/// on the valid frames, zero on the padding, every parameter's.
fn alone_equals_padded(
    what: &str,
    vs: &nn::VarStore,
    f: &dyn Fn(&Tensor, Option<&Tensor>) -> Tensor,
) {
    let (utts, padded, lengths) = batch();
    let padded = padded.set_requires_grad(true);
    let out = f(&padded, Some(&lengths));
    let width = out.size()[1];
    for (b, u) in utts.iter().enumerate() {
        let alone = f(&u.unsqueeze(0), None);
        let d = max_diff(&alone.get(0), &out.get(b as i64));
        assert!(d < 1e-12, "{what}: row {b} differs from its utterance alone by {d:e}");
    }
    let w = Tensor::randn([width], F64);
    let row = 1;
    let l = LENGTHS[row];
    let u = utts[row].unsqueeze(0).set_requires_grad(true);
    let (gu, gp_alone) = grads(&f(&u, None).get(0), &w, &u, vs);
    let (gx, gp_batch) = grads(&f(&padded, Some(&lengths)).get(row as i64), &w, &padded, vs);
    let gx_row = gx.get(row as i64);
    let d = max_diff(&gx_row.narrow(0, 0, l), &gu.get(0));
    assert!(d < 1e-12, "{what}: input gradient differs by {d:e}");
    let pad = gx_row.narrow(0, l, STEPS - l).abs().max().double_value(&[]);
    assert_eq!(pad, 0.0, "{what}: gradient reaches the padding");
    assert!(gu.abs().max().double_value(&[]) > 0.0, "{what}: no input gradient");
    for (a, b) in gp_alone.iter().zip(&gp_batch) {
        let d = max_diff(a, b);
        assert!(d < 1e-12, "{what}: a parameter gradient differs by {d:e}");
    }
    assert!(gp_alone.iter().any(|g| g.abs().max().double_value(&[]) > 0.0), "{what}: no gradient");
}

fn config(mode: Mode) -> RnnConfig {
    RnnConfig { mode, input_size: INPUT, hidden_size: 5, num_layers: 2, bias: true, output_size: 3 }
}

#[test]
fn word_classifier_alone_equals_padded() {
    tch::manual_seed(11);
    for mode in [Mode::Lstm, Mode::Gru] {
        for bidir in [false, true] {
            for engine in [Engine::Custom, Engine::Fused] {
                let vs = store();
                let model: Box<dyn SequenceClassifier> = if bidir {
                    Box::new(BidirRecurrentModel::new(&vs.root(), config(mode)).with_engine(engine))
                } else {
                    Box::new(RNNModel::new(&vs.root(), config(mode)).with_engine(engine))
                };
                let what = format!("{mode} bidir={bidir} {engine:?}");
                alone_equals_padded(&what, &vs, &|x, l| model.forward_lengths(x, l, true));
            }
        }
    }
}

#[test]
fn speaker_embedding_alone_equals_padded() {
    tch::manual_seed(12);
    // the lab's head (last states and mean) and the statistics-pooling head
    // with its projection (dropout off: the comparison needs the same draw)
    let stats = SpeakerHead {
        pooling: Pooling::Stats,
        loss: ProxyLoss::Cosine { scale: 30.0, margin: 0.2 },
        projection: Some(5),
        dropout: 0.0,
    };
    for head in [SpeakerHead::LAB, stats] {
        let c = SpeakerConfig {
            input_size: INPUT,
            hidden_size: 4,
            num_layers: 2,
            num_speakers: 3,
            head,
        };
        for engine in [Engine::Custom, Engine::Fused] {
            let vs = store();
            let model = SpeakerModel::new(vs.root(), c).with_engine(engine);
            let what = format!("speaker {:?} {engine:?}", head.pooling);
            alone_equals_padded(&what, &vs, &|x, l| model.embed_lengths(x, l, true));
        }
    }
}

/// Without lengths the classifier reads the last step of the padded batch
/// (the notebook's behaviour, kept by `--coursework`): not the same as the
/// last valid step.
#[test]
fn without_lengths_the_last_padded_step_is_read() {
    tch::manual_seed(13);
    let vs = store();
    let model = RNNModel::new(&vs.root(), config(Mode::Gru));
    let (_, padded, lengths) = batch();
    let plain = model.forward_lengths(&padded, None, false);
    let full = Tensor::full([4], STEPS, (Kind::Int64, Device::Cpu));
    assert!(plain.equal(&model.forward_lengths(&padded, Some(&full), false)));
    let short = model.forward_lengths(&padded, Some(&lengths), false);
    assert!(plain.get(0).equal(&short.get(0)), "row 0 is full length");
    assert!(max_diff(&plain.get(1), &short.get(1)) > 1e-6, "row 1 must differ");
}

/// Variables of `vs` under the given names, in that order.
fn params(vs: &nn::VarStore, names: &[String]) -> Vec<Tensor> {
    let vars = vs.variables();
    names.iter().map(|n| vars[n].shallow_clone()).collect()
}

/// libtorch's packed-sequence kernels on the batch sorted by length (as
/// `pack_padded_sequence(enforce_sorted=True)` needs).
fn sorted_batch() -> (Tensor, Tensor) {
    let (_, padded, lengths) = batch();
    let order = lengths.argsort(0, true);
    (padded.index_select(0, &order), lengths.index_select(0, &order))
}

#[test]
fn fused_classifier_matches_libtorch_packed_sequences() {
    tch::manual_seed(14);
    for mode in [Mode::Lstm, Mode::Gru] {
        for engine in [Engine::Fused, Engine::Custom] {
            let c = config(mode);
            let vs = store();
            let model = RNNModel::new(&vs.root(), c).with_engine(engine);
            let (x, lengths) = sorted_batch();
            let names: Vec<String> = (0..c.num_layers)
                .flat_map(|k| {
                    ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
                        .map(|w| format!("rnn_cell_list.{k}.{w}"))
                })
                .collect();
            let p = params(&vs, &names);
            let (data, batch_sizes) = x.internal_pack_padded_sequence(&lengths, true);
            let h0 = Tensor::zeros([c.num_layers, 4, c.hidden_size], F64);
            let h_n = match mode {
                Mode::Lstm => {
                    let hx = [h0.shallow_clone(), h0];
                    Tensor::lstm_data(&data, &batch_sizes, &hx, &p, true, 2, 0.0, false, false).1
                }
                _ => Tensor::gru_data(&data, &batch_sizes, &h0, &p, true, 2, 0.0, false, false).1,
            };
            let vars = vs.variables();
            let want = h_n.select(0, -1).linear(&vars["fc.weight"], Some(&vars["fc.bias"]));
            let got = model.forward_lengths(&x, Some(&lengths), false);
            let d = max_diff(&got, &want);
            assert!(d < 1e-12, "{mode} {engine:?}: logits differ from libtorch's by {d:e}");
        }
    }
}

#[test]
fn speaker_bilstm_matches_libtorch_packed_bidirectional_lstm() {
    tch::manual_seed(15);
    let c = SpeakerConfig {
        input_size: INPUT,
        hidden_size: 4,
        num_layers: 2,
        num_speakers: 3,
        head: SpeakerHead::LAB,
    };
    let vs = store();
    let model = SpeakerModel::new(vs.root(), c);
    let (x, lengths) = sorted_batch();
    let names: Vec<String> = (0..2)
        .flat_map(|k| {
            ["", "_reverse"].into_iter().flat_map(move |dir| {
                ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
                    .map(|w| format!("lstm.{w}_l{k}{dir}"))
            })
        })
        .collect();
    let p = params(&vs, &names);
    let (data, batch_sizes) = x.internal_pack_padded_sequence(&lengths, true);
    let h0 = Tensor::zeros([4, 4, 4], F64); // [layers * directions, B, H]
    let hx = [h0.shallow_clone(), h0];
    let out = Tensor::lstm_data(&data, &batch_sizes, &hx, &p, true, 2, 0.0, false, true).0;
    let (want, _) = Tensor::internal_pad_packed_sequence(&out, &batch_sizes, true, 0.0, STEPS);
    let custom = model.lstm().forward_lengths(&x, Some(&lengths));
    let fused = model.lstm().forward_fused(&x, Some(&lengths), false);
    let sorted: Vec<i64> = lengths.try_into().unwrap();
    for (b, &l) in sorted.iter().enumerate() {
        let w = want.get(b as i64).narrow(0, 0, l);
        for (name, got) in [("custom", &custom), ("fused", &fused)] {
            let d = max_diff(&got.get(b as i64).narrow(0, 0, l), &w);
            assert!(d < 1e-12, "{name}: row {b} differs from nn.LSTM's packed output by {d:e}");
        }
    }
}
