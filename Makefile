# rnnlab: the two commands a fresh clone needs are `make train` and `make test`.
# Every target sets up first (idempotent): .venv with torch 2.11.0 unless LIBTORCH
# is set (TORCH_INDEX_URL names another pip index, e.g. a CPU-only wheel), espeak-ng
# when missing; `build`, which the targets that run rnnlab depend on, then builds it.

CARGO ?= cargo
PROFILE := --release
RNNLAB := target/release/rnnlab
DEVICE ?= auto

.PHONY: setup build run train bench-rnn info test lint data

setup:
	@./scripts/setup.sh

build: setup
	$(CARGO) build $(PROFILE) -p runner

## The main job: train MODEL (gru, lstm, rnn_tanh, rnn_relu, bigru, bilstm) on the
## synthetic set (made on first use) or DATA_DIR; ARGS adds any `rnnlab train` flag.
## On a small DATA_DIR the GRU and LSTM are first pretrained on synthetic voices
## (made once under data/pretrain/; ARGS="--pretrain none" trains from scratch).
MODEL ?= gru
ENGINE ?= custom
ARGS ?=
TRAIN_MODEL = $(patsubst bi%,%,$(MODEL))
TRAIN_BIDIR = $(if $(filter bi%,$(MODEL)),--bidir,)
run: train

train: build
	$(RNNLAB) --device $(DEVICE) train --model $(TRAIN_MODEL) $(TRAIN_BIDIR) --engine $(ENGINE) \
		$(if $(DATA_DIR),--data-dir $(DATA_DIR),) $(ARGS)

## Speed of a training step over a grid of batch and hidden sizes: the custom
## kernels and libtorch's fused engine against nn.LSTM/nn.GRU (and the notebook's
## Python cells at the coursework size). Rust and PyTorch take turns, one size at
## a time, so that other load hits both alike; the ratios at the end, in wall-clock
## and in process CPU time (JSON lines and the tables in results/bench/).
BENCH_STEPS ?= 20
BENCH_THREADS ?= 1
BENCH_BATCH ?= 32,100,256
BENCH_HIDDEN ?= 32,128,256,512
## Timing stops after BENCH_SECONDS per configuration (3 steps at least); the grid
## runs BENCH_ROUNDS times and the tables take the median of the rounds.
BENCH_SECONDS ?= 3
BENCH_ROUNDS ?= 1
comma := ,
bench-rnn: build
	mkdir -p results/bench
	rm -f results/bench/rust.jsonl results/bench/pytorch.jsonl
	for r in $$(seq $(BENCH_ROUNDS)); do \
	for b in $(subst $(comma), ,$(BENCH_BATCH)); do for h in $(subst $(comma), ,$(BENCH_HIDDEN)); do \
		$(RNNLAB) --device $(DEVICE) bench rnn --steps $(BENCH_STEPS) --max-seconds $(BENCH_SECONDS) \
			--threads $(BENCH_THREADS) --batch-size $$b --hidden $$h >> results/bench/rust.jsonl || exit 1; \
		$(PYTHON) scripts/bench_pytorch.py --steps $(BENCH_STEPS) --max-seconds $(BENCH_SECONDS) \
			--threads $(BENCH_THREADS) --batch-size $$b --hidden $$h >> results/bench/pytorch.jsonl || exit 1; \
	done; done; done
	{ python3 scripts/compare_bench.py results/bench/rust.jsonl results/bench/pytorch.jsonl; echo; \
		python3 scripts/compare_bench.py --cpu results/bench/rust.jsonl results/bench/pytorch.jsonl; } \
		| tee results/bench/table.md

info: build
	$(RNNLAB) --device $(DEVICE) info

lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy $(PROFILE) --workspace --all-targets -- -D warnings

## The synthetic Speech Commands (espeak-ng) under data/speech_commands; SEED and
## PER_CLASS change it (the same seed writes the same files).
SEED ?= 0
PER_CLASS ?= 1250
data: build
	$(RNNLAB) data synth --out data/speech_commands --seed $(SEED) --per-class $(PER_CLASS)

## Every test: formatting, clippy, then the whole workspace.
test: lint
	$(CARGO) test $(PROFILE) --workspace

## makemore part 5: the WaveNet-style hierarchical MLP on names (docs/makemore.md).
## `wavenet` trains the lecture's recipe (200,000 steps), `wavenet-tuned` the tuned one.
WAVENET_BENCH_STEPS ?= 5000
WAVENET_THREADS ?= 1
PYTHON ?= .venv/bin/python
.PHONY: wavenet wavenet-tuned bench-wavenet plots
wavenet: build
	$(RNNLAB) --device $(DEVICE) train --model wavenet

wavenet-tuned: build
	$(RNNLAB) --device $(DEVICE) train --model wavenet --recipe tuned

## Time per step, the lecture's Python on PyTorch against rnnlab, both on the CPU with
## WAVENET_THREADS threads, measured in one run; prints both and the ratio.
bench-wavenet: build
	$(PYTHON) scripts/wavenet_reference.py --bench $(WAVENET_BENCH_STEPS) --rust $(RNNLAB) \
		--threads $(WAVENET_THREADS) --rust-threads $(WAVENET_THREADS)

## The figures of every run under results/ (PNG beside each run's metrics.csv).
plots: build
	$(RNNLAB) plots

## The speaker-clustering lab (docs/speaker.md): the espeak-ng corpus under
## data/speakers (made once), training with HOLDOUT unseen speakers, then the figures.
HOLDOUT ?= 4
.PHONY: speakers-data speaker
speakers-data: build
	@test -f data/speakers/synth.json || $(RNNLAB) data synth-speakers --out data/speakers

speaker: speakers-data
	$(RNNLAB) --device $(DEVICE) train --model speaker --holdout-speakers $(HOLDOUT) $(ARGS)
	$(RNNLAB) plots

## The coursework notebooks as narrated Rust programs (notebooks-ported/README.md):
## `make notebooks` runs all five, `make notebook NB=<name>` one; QUICK=1 shrinks data
## and steps. Text and PNG outputs go to results/notebooks/<name>/.
NOTEBOOKS := rnn-coursework makemore-wavenet speaker-lab pytorch-blitz fastai-lesson7
QUICK ?= 0
NB ?=
.PHONY: notebooks notebook notebooks-build
notebooks-build: setup
	$(CARGO) build $(PROFILE) -p notebooks

notebooks: notebooks-build
	@for nb in $(NOTEBOOKS); do \
		echo "== notebook $$nb"; \
		QUICK=$(QUICK) DEVICE=$(DEVICE) target/release/$$nb || exit 1; \
	done

notebook: notebooks-build
	@if [ -z "$(filter $(NB),$(NOTEBOOKS))" ] || [ -z "$(NB)" ]; then \
		echo "NB=$(NB): name one notebook of: $(NOTEBOOKS)"; exit 2; fi
	QUICK=$(QUICK) DEVICE=$(DEVICE) target/release/$(NB)

## Sweeps (docs/sweeps.md): `make test-slurm` starts a one-node Slurm cluster on
## this machine (root, `./scripts/setup.sh --slurm`), runs a 4-run sweep as a job
## array through it, checks `sweep status` and `sweep report`, and stops the cluster.
.PHONY: test-slurm
test-slurm: build
	@./scripts/setup.sh --slurm >/dev/null
	./scripts/test_slurm.sh
