# Townlet: every workflow is a Make target. Each target bootstraps what it needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PY_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-stamp
EXT_STAMP := $(VENV)/.ext-stamp
RUST_SRC := $(shell find rust -name '*.rs' -o -name Cargo.toml 2>/dev/null) Cargo.toml pyproject.toml
CONFIG ?= configs/examples/poc_hybrid.yaml
GOLDEN_SCENARIOS := configs/scenarios/kitchen_breakfast.yaml configs/scenarios/queue_conflict.yaml \
	configs/scenarios/employment_punctuality.yaml configs/scenarios/rivalry_decay.yaml \
	configs/scenarios/observation_baseline.yaml
GOLDEN := docs/samples/rollout_scenario_stats.json
TICKS ?= 4320

# Note: `make train` gains PHASE/WARM_LOAD/WARM_SAVE with the warm-start tools.
.PHONY: train help setup build test test-rust test-py check fmt lint stubtest bench run sim clean capture golden-check golden-merge

help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt
	@test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	@touch $@

$(EXT_STAMP): $(STAMP) $(RUST_SRC)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH maturin develop --release --quiet
	@touch $@

setup: $(EXT_STAMP) ## create .venv, install pinned dependencies, build the extension

build: $(EXT_STAMP) ## build the Rust extension into .venv

test-rust: ## Rust unit tests
	cargo test --workspace --exclude townlet-py --quiet

test-py: $(EXT_STAMP) ## Python tests
	$(PY) -m pytest

test: test-rust test-py golden-check ## Rust and Python tests, and the golden drift check

fmt: $(STAMP) ## format Rust and Python
	cargo fmt --all
	$(PY) -m ruff format python tests tools bench
	$(PY) -m ruff check --fix python tests tools bench

lint: $(STAMP) ## rustfmt, clippy -D warnings, ruff, mypy strict
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	$(PY) -m ruff check python tests tools bench
	$(PY) -m ruff format --check python tests tools bench
	$(PY) -m mypy

stubtest: $(EXT_STAMP) ## check python/townlet/_core.pyi against the built module
	$(PY) -m mypy.stubtest townlet._core --allowlist .stubtest-allowlist

check: lint stubtest test ## everything CI should be able to run

bench: $(EXT_STAMP) ## benchmarks (print figures)
	$(PY) bench/tick.py
	$(PY) bench/vec_step.py

RUN_DIR ?= logs/ppo
EPOCHS ?= 30

run: $(EXT_STAMP) ## the main job: train PPO on the default town, save checkpoint, telemetry, summary and plot
	$(PY) -m townlet train $(CONFIG) --mode rollout --epochs $(EPOCHS) \
		--ppo-log $(RUN_DIR)/run.jsonl --checkpoint $(RUN_DIR)/checkpoints/ppo_latest.safetensors
	$(PY) -m townlet telemetry summary $(RUN_DIR)/run.jsonl --format markdown --plot $(RUN_DIR)/run.png \
		> $(RUN_DIR)/summary.md.tmp && mv $(RUN_DIR)/summary.md.tmp $(RUN_DIR)/summary.md
	@echo "checkpoint: $(RUN_DIR)/checkpoints/ppo_latest.safetensors (+ .json header)"
	@echo "telemetry:  $(RUN_DIR)/run.jsonl"
	@echo "summary:    $(RUN_DIR)/summary.md"
	@echo "plot:       $(RUN_DIR)/run.png"

train: $(EXT_STAMP) ## train PPO: make train CONFIG=... [EPOCHS=...]
	$(PY) -m townlet train $(CONFIG) --epochs $(EPOCHS) --ppo-log $(RUN_DIR)/train.jsonl \
		--checkpoint $(RUN_DIR)/checkpoints/ppo_latest.safetensors

sim: $(EXT_STAMP) ## run the simulation: make sim CONFIG=... TICKS=...
	$(PY) -m townlet sim run --config $(CONFIG) --tick-limit $(TICKS)

capture: $(EXT_STAMP) ## capture the golden scenarios into tmp/rollout_refresh
	$(PY) tools/capture_rollout_suite.py $(GOLDEN_SCENARIOS) --output-root tmp/rollout_refresh --compress

golden-check: $(EXT_STAMP) ## capture the golden scenarios afresh and fail on drift from the golden
	rm -rf tmp/golden_check
	$(PY) tools/capture_rollout_suite.py $(GOLDEN_SCENARIOS) --output-root tmp/golden_check
	$(PY) tools/check_rollout_drift.py tmp/golden_check --golden $(GOLDEN)

golden-merge: capture ## merge tmp/rollout_refresh into the golden metrics
	$(PY) tools/merge_rollout_metrics.py tmp/rollout_refresh --golden $(GOLDEN)

clean: ## remove build outputs
	rm -rf target $(VENV) .mypy_cache .ruff_cache .pytest_cache
