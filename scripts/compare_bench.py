"""Prints `rnnlab bench rnn` against `scripts/bench_pytorch.py`, measured in one run
(each file holds one JSON object per line, one line per call, as `make bench-rnn`
writes them): one row per (batch, hidden, mode), milliseconds per training step,
and the ratios `nn/custom` (above 1: the hand-written kernels are faster than
PyTorch's `nn.LSTM` / `nn.GRU`) and `notebook/custom` where the notebook was timed.

Each figure is the median step in wall-clock time; with `--cpu`, in CPU time of
the process, which other processes on shared cores do not stretch (with one
thread it is the work itself). When a configuration was timed in several rounds
(`make bench-rnn BENCH_ROUNDS=N`), the figure is the median of the rounds'.

    python3 scripts/compare_bench.py [--cpu] results/bench/rust.jsonl results/bench/pytorch.jsonl
"""
import json
import statistics
import sys

args = sys.argv[1:]
cpu = "--cpu" in args
args = [a for a in args if a != "--cpu"]
key = "cpu_seconds_per_step" if cpu else "seconds_per_step"


def load(path):
    runs = [json.loads(line) for line in open(path) if line.strip()]
    if not runs:
        sys.exit(f"{path}: no benchmark results")
    return runs[0], [r for run in runs for r in run["results"]]


rust, rust_rows = load(args[0])
py, py_rows = load(args[1])


def medians(rows, fields):
    """The median of `key` over every row (round) of each configuration."""
    by = {}
    for r in rows:
        by.setdefault(tuple(r[f] for f in fields), []).append(r[key])
    return {k: statistics.median(v) for k, v in by.items()}


ref = medians(py_rows, ["batch_size", "hidden", "mode", "implementation"])
ours = medians(rust_rows, ["batch_size", "hidden", "mode", "bidirectional", "engine"])
rounds = max(len([r for r in rust_rows if (r["batch_size"], r["hidden"], r["mode"], r["bidirectional"], r["engine"]) == k])
             for k in ours)

clock = "process CPU time" if cpu else "wall-clock time"
print(f"device {rust['device']}, rnnlab threads {rust['threads']}, torch {py['torch']} threads {py['threads']}")
print(f"ms per training step (median, {clock}, {rounds} round{'s' if rounds > 1 else ''}); "
      "nn/custom > 1 means the custom kernels are faster")
print()
head = ["batch", "hidden", "mode", "dir", "custom", "fused", "nn", "nn/custom", "notebook", "notebook/custom"]
print("| " + " | ".join(head) + " |")
print("|" + "---|" * len(head))
slower = []
for (b, h, mode, bidir, engine), s in sorted(ours.items()):
    if engine != "custom":
        continue
    fused = ours.get((b, h, mode, bidir, "fused"))
    nn = None if bidir else ref.get((b, h, mode, "nn"))
    nb = None if bidir else ref.get((b, h, mode, "notebook"))
    cell = lambda v: f"{v * 1e3:.2f}" if v else "-"
    ratio = lambda v: f"{v / s:.2f}x" if v else "-"
    print(f"| {b} | {h} | {mode} | {'bi' if bidir else 'uni'} | {cell(s)} | {cell(fused)} | {cell(nn)} "
          f"| {ratio(nn)} | {cell(nb)} | {ratio(nb)} |")
    if nn and nn < s:
        slower.append(f"B {b} H {h} {mode} ({nn / s:.2f}x)")
print()
print("custom slower than nn at: " + (", ".join(slower) if slower else "none"))
