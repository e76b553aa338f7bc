# rnnlab: the two commands a fresh clone needs are `make run` and `make test`.
# Every target sets up first (idempotent): .venv with torch 2.11.0 unless LIBTORCH
# is set; TORCH_INDEX_URL names another pip index (e.g. a CPU-only wheel).

CARGO ?= cargo
PROFILE := --release
RNNLAB := target/release/rnnlab
DEVICE ?= auto

.PHONY: setup build run info test lint

setup:
	@./scripts/setup.sh

build: setup
	$(CARGO) build $(PROFILE) -p runner

## The main job.
run: info

info: build
	$(RNNLAB) --device $(DEVICE) info

lint: setup
	$(CARGO) fmt --all --check
	$(CARGO) clippy $(PROFILE) --workspace --all-targets -- -D warnings

## Every test: formatting, clippy, then the whole workspace.
test: lint
	$(CARGO) test $(PROFILE) --workspace
