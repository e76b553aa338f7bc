#!/usr/bin/env bash
# `make test-slurm`: a real Slurm run of `rnnlab sweep`. Starts a one-node
# cluster on this machine (scripts/slurm_local.sh), checks the job-array script
# with `sbatch --test-only`, submits a 4-run sweep of tiny GRU runs, waits for
# it, checks `sweep status` and `sweep report`, and stops the cluster on exit.
# Needs root and `./scripts/setup.sh --slurm`; RNNLAB names the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
rnnlab=${RNNLAB:-$root/target/release/rnnlab}
[ -x "$rnnlab" ] || { echo "test-slurm: no $rnnlab; build it first (make build)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/rnnlab-slurm.XXXXXX")
cleanup() {
    "$root/scripts/slurm_local.sh" stop "$work/cluster" || true
    rm -rf "$work"
}
trap cleanup EXIT

eval "$(scripts/slurm_local.sh start "$work/cluster")"
export SLURM_CONF
echo "test-slurm: cluster up ($(sinfo -h -o '%P %D node(s) %c CPUs %T'))"

cd "$work"
"$rnnlab" data synth --out speech --per-class 30 --seed 1 >/dev/null
flags=(--model gru --data-dir speech --hidden 8 --batch-size 16 --epochs 1 --valid-every 2)

# the script alone, checked by Slurm itself
"$rnnlab" --device cpu sweep run --name s --grid lr=0.01,0.02 --seeds 0-1 --slurm --no-submit -- "${flags[@]}"
sbatch --test-only results/sweeps/s/sweep.sbatch 2>&1 | tee sbatch-test.txt
grep -q "to start at" sbatch-test.txt

# submitted: 4 array tasks; the job id lands in sweep.json
"$rnnlab" --device cpu sweep run --name s --grid lr=0.01,0.02 --seeds 0-1 --slurm -- "${flags[@]}"
job=$(python3 -c 'import json; print(json.load(open("results/sweeps/s/sweep.json"))["slurm"]["job_ids"][-1])')
echo "test-slurm: job $job submitted"
"$rnnlab" sweep status results/sweeps/s
for _ in $(seq 600); do
    [ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && break
    sleep 1
done
if [ -n "$(squeue -h -j "$job" 2>/dev/null)" ]; then
    echo "test-slurm: job $job still queued after 10 minutes" >&2
    squeue >&2; exit 1
fi
"$rnnlab" sweep status results/sweeps/s | tee status.txt
grep -q "done 4, running 0, failed 0, pending 0" status.txt || {
    echo "test-slurm: not every run finished; Slurm's output:" >&2
    tail -n 20 results/sweeps/s/slurm/*.out >&2; exit 1; }
"$rnnlab" sweep report results/sweeps/s > report.txt
grep -q "Best on validation" results/sweeps/s/report.md
test "$(grep -c '^[0-9]*,lr-0.0[12],best_valid_accuracy,validation,2,' results/sweeps/s/report.csv)" = 2
for f in report-score.png report-valid.png report-loss.png; do test -s "results/sweeps/s/$f"; done
# a second submission skips the finished runs
"$rnnlab" --device cpu sweep run --name s --grid lr=0.01,0.02 --seeds 0-1 --slurm -- "${flags[@]}"
job2=$(python3 -c 'import json; print(json.load(open("results/sweeps/s/sweep.json"))["slurm"]["job_ids"][-1])')
for _ in $(seq 120); do [ -z "$(squeue -h -j "$job2" 2>/dev/null)" ] && break; sleep 1; done
test "$(grep -l 'skipped' results/sweeps/s/slurm/"${job2}"_*.out | wc -l)" = 4
echo "test-slurm: passed (job arrays $job and $job2, 4 runs, report written)"
