//! `RNNModel` and `BidirRecurrentModel`: shapes, parameter names, the two
//! engines against each other (libtorch's fused kernels are the reference for
//! the hand-written cells), and the coursework's time-major loop.

use cells::{GRUCell, LSTMCell, RecurrentCell};
use models::{BidirRecurrentModel, Engine, Mode, RNNModel, RnnConfig};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

const MODES: [Mode; 4] = [Mode::Lstm, Mode::Gru, Mode::RnnTanh, Mode::RnnRelu];

fn config(mode: Mode, num_layers: i64, bias: bool) -> RnnConfig {
    RnnConfig { mode, input_size: 20, hidden_size: 8, num_layers, bias, output_size: 3 }
}

fn store(kind: Kind) -> nn::VarStore {
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(kind);
    vs
}

#[test]
fn output_shapes_for_every_mode_depth_and_direction() {
    let x = Tensor::randn([4, 7, 20], (Kind::Float, Device::Cpu));
    for mode in MODES {
        for layers in [1, 2, 3] {
            for bias in [true, false] {
                let vs = store(Kind::Float);
                let uni = RNNModel::new(&vs.root(), config(mode, layers, bias));
                assert_eq!(uni.forward_t(&x, false).size(), [4, 3], "{mode} {layers}");
                let vs = store(Kind::Float);
                let bi = BidirRecurrentModel::new(&vs.root(), config(mode, layers, bias));
                assert_eq!(bi.forward_t(&x, false).size(), [4, 3], "{mode} {layers} bidir");
            }
        }
    }
}

fn names(vs: &nn::VarStore) -> Vec<String> {
    let mut v: Vec<_> = vs.variables().into_keys().collect();
    v.sort();
    v
}

#[test]
fn parameter_names_and_counts_follow_pytorch() {
    let vs = store(Kind::Float);
    let _m = RNNModel::new(&vs.root(), config(Mode::Gru, 2, true));
    let expected = [
        "fc.bias",
        "fc.weight",
        "rnn_cell_list.0.bias_hh",
        "rnn_cell_list.0.bias_ih",
        "rnn_cell_list.0.weight_hh",
        "rnn_cell_list.0.weight_ih",
        "rnn_cell_list.1.bias_hh",
        "rnn_cell_list.1.bias_ih",
        "rnn_cell_list.1.weight_hh",
        "rnn_cell_list.1.weight_ih",
    ];
    assert_eq!(names(&vs), expected);
    // GRU, H = 8, I = 20: layer 0: 24*20 + 24*8 + 2*24; layer 1: 24*8 + 24*8 + 48; fc 8*3 + 3.
    let count: i64 = vs.trainable_variables().iter().map(Tensor::numel).map(|n| n as i64).sum();
    assert_eq!(count, (480 + 192 + 48) + (192 + 192 + 48) + 27);

    let vs = store(Kind::Float);
    let _b = BidirRecurrentModel::new(&vs.root(), config(Mode::Lstm, 1, false));
    assert_eq!(
        names(&vs),
        [
            "fc.bias",
            "fc.weight",
            "rnn_cell_list.0.weight_hh",
            "rnn_cell_list.0.weight_ih",
            "rnn_cell_list_rev.0.weight_hh",
            "rnn_cell_list_rev.0.weight_ih",
        ]
    );
    assert_eq!(vs.variables()["fc.weight"].size(), [3, 16]);
}

/// Logits and every parameter's gradient from one engine.
fn run(model: &dyn ModuleT, vs: &nn::VarStore, x: &Tensor) -> (Tensor, Vec<(String, Tensor)>) {
    let mut vars: Vec<_> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    for (_, v) in vars.iter_mut() {
        v.zero_grad();
    }
    let logits = model.forward_t(x, true);
    let target = Tensor::from_slice(&[0i64, 2, 1, 2]);
    logits.cross_entropy_for_logits(&target).backward();
    let grads = vars.iter().map(|(n, v)| (n.clone(), v.grad().copy())).collect();
    (logits.detach(), grads)
}

#[test]
fn custom_and_fused_engines_agree_in_values_and_gradients() {
    for mode in MODES {
        for bidir in [false, true] {
            for bias in [true, false] {
                tch::manual_seed(3);
                let c = config(mode, 2, bias);
                let x = Tensor::randn([4, 9, 20], (Kind::Double, Device::Cpu));
                // Two stores with equal values, one model on each engine.
                let (vs_c, vs_f) = (store(Kind::Double), store(Kind::Double));
                let (custom, fused): (Box<dyn ModuleT>, Box<dyn ModuleT>) = if bidir {
                    (
                        Box::new(BidirRecurrentModel::new(&vs_c.root(), c)),
                        Box::new(
                            BidirRecurrentModel::new(&vs_f.root(), c).with_engine(Engine::Fused),
                        ),
                    )
                } else {
                    (
                        Box::new(RNNModel::new(&vs_c.root(), c)),
                        Box::new(RNNModel::new(&vs_f.root(), c).with_engine(Engine::Fused)),
                    )
                };
                copy_values(&vs_c, &vs_f);
                let (l1, g1) = run(custom.as_ref(), &vs_c, &x);
                let (l2, g2) = run(fused.as_ref(), &vs_f, &x);
                let what = format!("{mode} bidir={bidir} bias={bias}");
                let d = (&l1 - &l2).abs().max().double_value(&[]);
                assert!(d < 1e-10, "{what}: logits differ by {d:e}");
                assert_eq!(g1.len(), g2.len());
                for ((name, a), (name2, b)) in g1.iter().zip(&g2) {
                    assert_eq!(name, name2);
                    let d = (a - b).abs().max().double_value(&[]);
                    assert!(d < 1e-10, "{what}: gradient of {name} differs by {d:e}");
                    assert!(
                        b.abs().max().double_value(&[]) > 0.0,
                        "{what}: {name} has no gradient"
                    );
                }
            }
        }
    }
}

/// Copies every variable of `from` into the same-named variable of `to`.
fn copy_values(from: &nn::VarStore, to: &nn::VarStore) {
    let src = from.variables();
    let dst = to.variables();
    assert_eq!(src.len(), dst.len());
    for (name, mut v) in dst {
        tch::no_grad(|| v.copy_(&src[&name]));
    }
}

/// The coursework's own loop: time steps outside, layers inside, each cell
/// called with the coursework's `forward(input, hx)`.
#[test]
fn layer_major_stack_equals_the_coursework_time_major_loop() {
    let vs = store(Kind::Double);
    let c = RnnConfig {
        mode: Mode::Lstm,
        input_size: 5,
        hidden_size: 4,
        num_layers: 3,
        bias: true,
        output_size: 2,
    };
    let model = RNNModel::new(&vs.root(), c);
    let x = Tensor::randn([2, 6, 5], (Kind::Double, Device::Cpu));
    let logits = tch::no_grad(|| model.forward_t(&x, false));

    // Rebuild the same cells over the same variables, then loop as the notebook does.
    let other = store(Kind::Double);
    let cells: Vec<LSTMCell> = (0..3)
        .map(|k| {
            LSTMCell::new(other.root() / "rnn_cell_list" / k, if k == 0 { 5 } else { 4 }, 4, true)
        })
        .collect();
    let fc = models::torch_linear(&(other.root() / "fc"), 4, 2);
    copy_values(&vs, &other);
    let mut hidden: Vec<_> = cells.iter().map(|c| c.zero_state(2)).collect();
    let mut top = None;
    tch::no_grad(|| {
        for t in 0..6 {
            for layer in 0..3 {
                let input =
                    if layer == 0 { x.select(1, t) } else { hidden[layer - 1].h.shallow_clone() };
                hidden[layer] = cells[layer].forward(&input, Some(&hidden[layer]));
            }
            top = Some(hidden[2].h.shallow_clone());
        }
    });
    let expected = tch::no_grad(|| top.unwrap().apply(&fc));
    let d = (&logits - &expected).abs().max().double_value(&[]);
    assert!(d < 1e-12, "differs from the time-major loop by {d:e}");
}

/// The reverse stack reads the sequence backwards: reversing the input of a
/// bidirectional model swaps what its two stacks see.
#[test]
fn reverse_stack_reads_time_backwards() {
    let vs = store(Kind::Double);
    let c = RnnConfig {
        mode: Mode::Gru,
        input_size: 3,
        hidden_size: 4,
        num_layers: 2,
        bias: true,
        output_size: 2,
    };
    let model = BidirRecurrentModel::new(&vs.root(), c);
    let x = Tensor::randn([2, 5, 3], (Kind::Double, Device::Cpu));
    // Reverse stack alone: a GRU stack over flipped input, last step.
    let other = store(Kind::Double);
    let cells: Vec<GRUCell> = (0..2)
        .map(|k| {
            GRUCell::new(
                other.root() / "rnn_cell_list_rev" / k,
                if k == 0 { 3 } else { 4 },
                4,
                true,
            )
        })
        .collect();
    let fwd: Vec<GRUCell> = (0..2)
        .map(|k| {
            GRUCell::new(other.root() / "rnn_cell_list" / k, if k == 0 { 3 } else { 4 }, 4, true)
        })
        .collect();
    let fc = models::torch_linear(&(other.root() / "fc"), 8, 2);
    copy_values(&vs, &other);
    let run = |cells: &[GRUCell], x: &Tensor| {
        let mut x = x.shallow_clone();
        for c in cells {
            x = c.seq(&x, None).0;
        }
        x.select(1, -1)
    };
    let expected =
        tch::no_grad(|| Tensor::cat(&[run(&fwd, &x), run(&cells, &x.flip([1]))], 1).apply(&fc));
    let got = tch::no_grad(|| model.forward_t(&x, false));
    let d = (&got - &expected).abs().max().double_value(&[]);
    assert!(d < 1e-12, "{d:e}");
}

#[test]
fn unknown_mode_is_an_error() {
    let err = "LSTMX".parse::<Mode>().unwrap_err();
    assert!(err.to_string().contains("LSTMX"), "{err}");
    for m in MODES {
        assert_eq!(m.to_string().parse::<Mode>().unwrap(), m);
    }
}

/// `with_forget_bias` reaches every layer of both stacks, read back through
/// the PyTorch names a state dict would carry (that the other gates' biases
/// are untouched is checked on the cell, in `cells/tests/parity.rs`).
#[test]
fn forget_bias_reaches_every_lstm_layer_and_direction() {
    let h = 8;
    for bidir in [false, true] {
        let vs = store(Kind::Float);
        let _m = models::classifier(
            &vs.root(),
            config(Mode::Lstm, 3, true),
            bidir,
            Engine::Custom,
            Some(1.0),
        );
        let vars = vs.variables();
        let layers = if bidir { 6 } else { 3 };
        let biases: Vec<_> = vars.iter().filter(|(n, _)| n.contains("bias_ih")).collect();
        assert_eq!(biases.len(), layers, "{:?}", vars.keys());
        for (name, t) in &vars {
            let forget = |v: f64| t.narrow(0, h, h).eq(v).all().int64_value(&[]) == 1;
            if name.ends_with("bias_ih") {
                assert!(forget(1.0), "{name}: forget chunk not 1");
            } else if name.ends_with("bias_hh") {
                assert!(forget(0.0), "{name}: forget chunk not 0");
            }
        }
    }
}

#[test]
#[should_panic(expected = "only an LSTM has a forget gate")]
fn forget_bias_on_a_gru_is_refused() {
    let vs = store(Kind::Float);
    let _ = RNNModel::new(&vs.root(), config(Mode::Gru, 1, true)).with_forget_bias(1.0);
}
