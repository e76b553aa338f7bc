"""Prints `rnnlab bench rnn` against `scripts/bench_pytorch.py`, measured in one run
(each file holds one JSON object per line, one line per call, as `make bench-rnn`
writes them):
one row per (batch, hidden, mode), milliseconds per training step, and the
ratios `nn/custom` (above 1: the hand-written kernels are faster than PyTorch's
`nn.LSTM` / `nn.GRU`) and `notebook/custom` where the notebook was timed.

    python3 scripts/compare_bench.py results/bench/rust.jsonl results/bench/pytorch.jsonl
"""
import json
import sys


def load(path):
    runs = [json.loads(line) for line in open(path) if line.strip()]
    if not runs:
        sys.exit(f"{path}: no benchmark results")
    return runs[0], [r for run in runs for r in run["results"]]


rust, rust_rows = load(sys.argv[1])
py, py_rows = load(sys.argv[2])
ref = {(r["batch_size"], r["hidden"], r["mode"], r["implementation"]): r["seconds_per_step"] for r in py_rows}
ours = {(r["batch_size"], r["hidden"], r["mode"], r["bidirectional"], r["engine"]): r["seconds_per_step"]
        for r in rust_rows}

print(f"device {rust['device']}, rnnlab threads {rust['threads']}, torch {py['torch']} threads {py['threads']}")
print("ms per training step (median); nn/custom > 1 means the custom kernels are faster")
head = ["batch", "hidden", "mode", "dir", "custom", "fused", "nn", "nn/custom", "notebook", "notebook/custom"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
slower = []
for (b, h, mode, bidir, engine), s in sorted(ours.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2], kv[0][3])):
    if engine != "Custom":
        continue
    fused = ours.get((b, h, mode, bidir, "Fused"))
    nn = None if bidir else ref.get((b, h, mode, "nn"))
    nb = None if bidir else ref.get((b, h, mode, "notebook"))
    cell = lambda v: f"{v * 1e3:.2f}" if v else "-"
    ratio = lambda v: f"{v / s:.2f}x" if v else "-"
    print(f"| {b} | {h} | {mode} | {'bi' if bidir else 'uni'} | {cell(s)} | {cell(fused)} | {cell(nn)} "
          f"| {ratio(nn)} | {cell(nb)} | {ratio(nb)} |")
    if nn and nn < s:
        slower.append(f"B {b} H {h} {mode}")
print("custom slower than nn at: " + (", ".join(slower) if slower else "none"))
