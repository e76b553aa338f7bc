"""Golden values for `crates/cells/tests/pytorch_golden.rs`.

Saves, for each of PyTorch's own `nn.LSTMCell`, `nn.GRUCell` and `nn.RNNCell`
(tanh and relu), its state dict under `<cell>.` plus an input sequence, an
initial state and the states PyTorch computes at every step, so the Rust test
checks that a PyTorch state dict loads unchanged and gives PyTorch's numbers.

    .venv/bin/pip install safetensors && .venv/bin/python scripts/cells_golden.py
"""
import torch
from safetensors.torch import save_file

torch.manual_seed(0)
B, T, I, H = 2, 4, 3, 5
out = {}
cells = {
    "lstm": torch.nn.LSTMCell(I, H),
    "gru": torch.nn.GRUCell(I, H),
    "rnn_tanh": torch.nn.RNNCell(I, H, nonlinearity="tanh"),
    "rnn_relu": torch.nn.RNNCell(I, H, nonlinearity="relu"),
}
for name, cell in cells.items():
    cell = cell.double()
    for k, v in cell.state_dict().items():
        out[f"{name}.{k}"] = v.clone()
    x = torch.randn(B, T, I, dtype=torch.float64)
    h = torch.randn(B, H, dtype=torch.float64)
    out[f"{name}.input"] = x
    out[f"{name}.h0"] = h.clone()
    state = (h, torch.randn(B, H, dtype=torch.float64)) if name == "lstm" else h
    if name == "lstm":
        out[f"{name}.c0"] = state[1].clone()
    hs, cs = [], []
    with torch.no_grad():
        for t in range(T):
            state = cell(x[:, t], state)
            if name == "lstm":
                hs.append(state[0]); cs.append(state[1])
            else:
                hs.append(state)
    out[f"{name}.h"] = torch.stack(hs, 1).contiguous()
    if cs:
        out[f"{name}.c"] = torch.stack(cs, 1).contiguous()

save_file(out, "crates/cells/tests/fixtures/pytorch_cells.safetensors")
print(f"wrote {len(out)} tensors, torch {torch.__version__}")
