"""PyTorch reference timings for `make bench-rnn`.

Times one training step (forward, backward, Adam; the median step) of the
coursework's model -- 32 steps of 20 MFCCs, 2 layers, 3 classes -- over a grid
of batch and hidden sizes, for
  * PyTorch's fused `nn.LSTM` / `nn.GRU` with a linear head, at every size, and
  * the notebook's own Python: hand-written cells whose gates are separate
    methods (`input_gate`, `forget_gate`, ... / `reset_gate`, `update_gate`,
    `update_component`), stacked by `RNNModel`'s time-major loop, at the
    coursework's size (batch 100, hidden 32) unless `--notebook-everywhere`,
and prints one line of JSON in the shape `rnnlab bench rnn` prints.

    .venv/bin/python scripts/bench_pytorch.py --batch-size 32,100,256 --hidden 32,128,256,512
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
from torch import nn

T, I, L, C = 32, 20, 2, 3
COURSEWORK = (100, 32)  # batch, hidden


class LSTMCell(nn.Module):
    """The coursework's LSTM cell: one method per gate."""

    def __init__(self, input_size, hidden_size, bias=True):
        super().__init__()
        self.hidden_size = hidden_size
        self.x2h = nn.Linear(input_size, 4 * hidden_size, bias=bias)
        self.h2h = nn.Linear(hidden_size, 4 * hidden_size, bias=bias)
        self.reset_parameters()

    def reset_parameters(self):
        std = 1.0 / math.sqrt(self.hidden_size)
        for w in self.parameters():
            w.data.uniform_(-std, std)

    def _gate(self, k, x, h):
        H = self.hidden_size
        wx, wh = self.x2h.weight[k * H:(k + 1) * H], self.h2h.weight[k * H:(k + 1) * H]
        bx = None if self.x2h.bias is None else self.x2h.bias[k * H:(k + 1) * H]
        bh = None if self.h2h.bias is None else self.h2h.bias[k * H:(k + 1) * H]
        return nn.functional.linear(x, wx, bx) + nn.functional.linear(h, wh, bh)

    def input_gate(self, x, h):
        return torch.sigmoid(self._gate(0, x, h))

    def forget_gate(self, x, h):
        return torch.sigmoid(self._gate(1, x, h))

    def cell_memory_gate(self, x, h):
        return torch.tanh(self._gate(2, x, h))

    def out_gate(self, x, h):
        return torch.sigmoid(self._gate(3, x, h))

    def forward(self, input, hx=None):
        if hx is None:
            z = input.new_zeros(input.size(0), self.hidden_size)
            hx = (z, z)
        h, c = hx
        i = self.input_gate(input, h)
        f = self.forget_gate(input, h)
        g = self.cell_memory_gate(input, h)
        o = self.out_gate(input, h)
        c = f * c + i * g
        return (o * torch.tanh(c), c)


class GRUCell(LSTMCell):
    """The coursework's GRU cell: reset_gate, update_gate, update_component."""

    def __init__(self, input_size, hidden_size, bias=True):
        nn.Module.__init__(self)
        self.hidden_size = hidden_size
        self.x2h = nn.Linear(input_size, 3 * hidden_size, bias=bias)
        self.h2h = nn.Linear(hidden_size, 3 * hidden_size, bias=bias)
        self.reset_parameters()

    def reset_gate(self, x, h):
        return torch.sigmoid(self._gate(0, x, h))

    def update_gate(self, x, h):
        return torch.sigmoid(self._gate(1, x, h))

    def update_component(self, x, h, r):
        H = self.hidden_size
        xn = nn.functional.linear(x, self.x2h.weight[2 * H:], self.x2h.bias[2 * H:])
        hn = nn.functional.linear(h, self.h2h.weight[2 * H:], self.h2h.bias[2 * H:])
        return torch.tanh(xn + r * hn)

    def forward(self, input, hx=None):
        if hx is None:
            hx = input.new_zeros(input.size(0), self.hidden_size)
        r = self.reset_gate(input, hx)
        z = self.update_gate(input, hx)
        n = self.update_component(input, hx, r)
        return (1 - z) * n + z * hx


class RNNModel(nn.Module):
    """The notebook's RNNModel: time steps outside, layers inside."""

    def __init__(self, mode, input_size, hidden_size, num_layers, bias, output_size):
        super().__init__()
        cell = {"LSTM": LSTMCell, "GRU": GRUCell}[mode]
        self.mode, self.num_layers, self.hidden_size = mode, num_layers, hidden_size
        self.rnn_cell_list = nn.ModuleList(
            [cell(input_size if k == 0 else hidden_size, hidden_size, bias) for k in range(num_layers)])
        self.fc = nn.Linear(hidden_size, output_size)

    def forward(self, input):
        z = input.new_zeros(input.size(0), self.hidden_size)
        hidden = [(z, z) if self.mode == "LSTM" else z for _ in range(self.num_layers)]
        for t in range(input.size(1)):
            for layer in range(self.num_layers):
                below = input[:, t, :] if layer == 0 else (
                    hidden[layer - 1][0] if self.mode == "LSTM" else hidden[layer - 1])
                hidden[layer] = self.rnn_cell_list[layer](below, hidden[layer])
            out = hidden[-1][0] if self.mode == "LSTM" else hidden[-1]
        return self.fc(out)


class Fused(nn.Module):
    """`nn.LSTM` / `nn.GRU` (batch_first) and a linear head on the last step."""

    def __init__(self, mode, hidden):
        super().__init__()
        self.rnn = {"LSTM": nn.LSTM, "GRU": nn.GRU}[mode](I, hidden, L, batch_first=True)
        self.fc = nn.Linear(hidden, C)

    def forward(self, x):
        return self.fc(self.rnn(x)[0][:, -1])


def seconds_per_step(model, batch, a):
    torch.manual_seed(0)
    x, y = torch.randn(batch, T, I), torch.randint(0, C, (batch,))
    opt = torch.optim.Adam(model.parameters(), lr=0.01)

    def step():
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    # the median step in wall-clock and process CPU time, as `rnnlab bench rnn`
    # reports them: other processes' bursts
    # on shared cores lengthen a few steps, not the middle one; at most
    # --steps steps, and no more after --max-seconds once 3 are done
    times, cpu, start = [], [], time.perf_counter()
    while len(times) < max(a.steps, 1) and (len(times) < 3 or time.perf_counter() - start < a.max_seconds):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(times), statistics.median(cpu), len(times)


def sizes(text):
    return [int(v) for v in text.split(",")]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20, help="most timed steps per configuration")
    ap.add_argument("--max-seconds", type=float, default=3.0)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--batch-size", type=sizes, default=[32, 100, 256])
    ap.add_argument("--hidden", type=sizes, default=[32, 128, 256, 512])
    ap.add_argument("--notebook-everywhere", action="store_true",
                    help="time the notebook's cells at every size, not only batch 100, hidden 32")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--modes", type=lambda t: t.split(","), default=["LSTM", "GRU"],
                    help="recurrent modes, as rnnlab bench rnn --modes: LSTM, GRU")
    a = ap.parse_args()
    for mode in a.modes:
        if mode not in ("LSTM", "GRU"):
            ap.error(f"--modes: {mode!r} is not LSTM or GRU")
    torch.set_num_threads(a.threads)
    rows = []
    for batch in a.batch_size:
        for hidden in a.hidden:
            for mode in a.modes:
                impls = [("nn", lambda: Fused(mode, hidden))]
                if a.notebook_everywhere or (batch, hidden) == COURSEWORK:
                    impls.append(("notebook", lambda: RNNModel(mode, I, hidden, L, True, C)))
                for name, make in impls:
                    torch.manual_seed(0)
                    s, cpu, n = seconds_per_step(make(), batch, a)
                    print(f"pytorch B {batch:<4} H {hidden:<4} {name:<8} {mode}: {s * 1e3:.2f} ms/step, "
                          f"{cpu * 1e3:.2f} ms CPU ({n} steps)", flush=True, file=sys.stderr)
                    rows.append({"batch_size": batch, "hidden": hidden, "mode": mode, "implementation": name,
                                 "seconds_per_step": s, "cpu_seconds_per_step": cpu, "steps": n})
    # one line, so that `make bench-rnn` can append one call per size
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(), "results": rows}))


if __name__ == "__main__":
    main()
