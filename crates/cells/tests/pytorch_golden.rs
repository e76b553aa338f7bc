//! PyTorch's own `nn.LSTMCell`, `nn.GRUCell` and `nn.RNNCell` state dicts load
//! unchanged into the hand-written cells, which then reproduce PyTorch's
//! states step by step. Fixture from `scripts/cells_golden.py` (torch 2.11.0).

use cells::{BasicRNNCell, CellState, GRUCell, LSTMCell, LstmState, Nonlinearity, RecurrentCell};
use std::collections::HashMap;
use tch::{nn, Device, Kind, Tensor};

const FIXTURE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pytorch_cells.safetensors");

fn fixture() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(FIXTURE).expect("fixture").into_iter().collect()
}

/// A variable store in f64 whose variables are filled from the fixture's
/// `<prefix>.<name>` tensors; fails when a name is missing on either side.
fn load(vs: &nn::VarStore, golden: &HashMap<String, Tensor>, prefix: &str) {
    let vars = vs.variables();
    let in_file: Vec<_> = golden
        .keys()
        .filter_map(|k| k.strip_prefix(&format!("{prefix}.")))
        .filter(|k| k.starts_with("weight") || k.starts_with("bias"))
        .collect();
    assert_eq!(vars.len(), in_file.len(), "{prefix}: {:?} vs {in_file:?}", vars.keys());
    for (name, var) in vars {
        let src = &golden[&format!("{prefix}.{name}")];
        assert_eq!(var.size(), src.size(), "{prefix}.{name} shape");
        tch::no_grad(|| var.shallow_clone().copy_(src));
    }
}

fn new_store() -> nn::VarStore {
    let mut vs = nn::VarStore::new(Device::Cpu);
    vs.set_kind(Kind::Double);
    vs
}

fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    let d = (a - b).abs().max().double_value(&[]);
    assert!(d < 1e-12, "{what}: differs from PyTorch by {d:e}");
}

fn check<C: RecurrentCell>(cell: &C, g: &HashMap<String, Tensor>, p: &str, s0: C::State)
where
    C::State: CellState,
{
    let (out, _) = tch::no_grad(|| cell.seq(&g[&format!("{p}.input")], Some(s0)));
    assert_close(&out, &g[&format!("{p}.h")], p);
}

#[test]
fn lstm_loads_pytorch_state_dict() {
    let g = fixture();
    let vs = new_store();
    let cell = LSTMCell::new(vs.root(), 3, 5, true);
    load(&vs, &g, "lstm");
    let s0 = LstmState { h: g["lstm.h0"].shallow_clone(), c: g["lstm.c0"].shallow_clone() };
    check(&cell, &g, "lstm", s0);
    // The cell memory too, step by step.
    let x = &g["lstm.input"];
    let mut s = LstmState { h: g["lstm.h0"].shallow_clone(), c: g["lstm.c0"].shallow_clone() };
    for t in 0..x.size()[1] {
        s = tch::no_grad(|| cell.step(&x.select(1, t), &s));
        assert_close(&s.c, &g["lstm.c"].select(1, t), "lstm c");
    }
}

#[test]
fn gru_loads_pytorch_state_dict() {
    let g = fixture();
    let vs = new_store();
    let cell = GRUCell::new(vs.root(), 3, 5, true);
    load(&vs, &g, "gru");
    check(&cell, &g, "gru", g["gru.h0"].shallow_clone());
}

#[test]
fn rnn_cells_load_pytorch_state_dict() {
    let g = fixture();
    for (p, nl) in [("rnn_tanh", Nonlinearity::Tanh), ("rnn_relu", Nonlinearity::Relu)] {
        let vs = new_store();
        let cell = BasicRNNCell::new(vs.root(), 3, 5, true, nl);
        load(&vs, &g, p);
        check(&cell, &g, p, g[&format!("{p}.h0")].shallow_clone());
    }
}
