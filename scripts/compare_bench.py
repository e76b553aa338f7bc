"""Prints `rnnlab bench rnn` against `scripts/bench_pytorch.py`, measured in one run.

    python3 scripts/compare_bench.py results/bench/rust.json results/bench/pytorch.json
"""
import json
import sys

rust = json.load(open(sys.argv[1]))
py = json.load(open(sys.argv[2]))
ref = {(r["mode"], r["implementation"]): r["seconds_per_step"] for r in py["results"]}
print(f"device {rust['device']}, rust threads {rust['threads']}, torch threads {py['threads']}")
print(f"{'mode':<9}{'dir':<6}{'engine':<8}{'ms/step':>9}{'notebook/rust':>15}{'nn/rust':>9}")
for r in rust["results"]:
    ms = r["seconds_per_step"] * 1e3
    nb, nn = ref.get((r["mode"], "notebook")), ref.get((r["mode"], "nn"))
    direction = "bi" if r["bidirectional"] else "uni"
    ratio = lambda v: f"{v / r['seconds_per_step']:.2f}x" if v and not r["bidirectional"] else "-"
    print(f"{r['mode']:<9}{direction:<6}{r['engine']:<8}{ms:>9.2f}{ratio(nb):>15}{ratio(nn):>9}")
for (mode, impl), s in sorted(ref.items()):
    print(f"pytorch {impl:<9}{mode:<5}{s * 1e3:>9.2f} ms/step")
