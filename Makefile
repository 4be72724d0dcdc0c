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

.PHONY: train help setup build test test-rust test-py check fmt lint stubtest bench bench-rust run sim dashboard clean capture golden-check golden-merge warm-start-check

help: ## list targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): requirements-dev.txt
	@test -x $(PY) || $(PY_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --retries 10 --upgrade pip
	@# torch's CUDA wheels are large: resume broken downloads, and retry the whole install twice more (pip's cache
	@# keeps what already arrived).
	@for attempt in 1 2 3; do \
	  $(PY) -m pip install --quiet --retries 10 --resume-retries 20 --timeout 60 -r requirements-dev.txt && break; \
	  if [ $$attempt = 3 ]; then echo "pip install -r requirements-dev.txt failed 3 times" >&2; exit 1; fi; \
	  echo "pip install failed (attempt $$attempt of 3); retrying" >&2; sleep 15; \
	done
	@touch $@

$(EXT_STAMP): $(STAMP) $(RUST_SRC)
	VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH maturin develop --release --quiet
	@touch $@

setup: $(EXT_STAMP) ## create .venv, install pinned dependencies, build the extension

build: $(EXT_STAMP) ## build the Rust extension into .venv

test-rust: ## Rust unit tests
	cargo test --workspace --exclude townlet-py --quiet

# Test workers (pytest-xdist): one per core by default; PYTEST_WORKERS=0 runs in one process.
PYTEST_WORKERS ?= auto
PYTEST_ARGS = -n $(PYTEST_WORKERS) --durations=15

test-py: $(EXT_STAMP) ## Python tests (in parallel, slowest 15 listed)
	$(PY) -m pytest $(PYTEST_ARGS)

test: test-rust test-py golden-check ## Rust and Python tests, and the golden drift check

warm-start-check: $(EXT_STAMP) ## the warm-start round trips: tools, Make targets, tamper tests, bc -> ppo -> resume
	$(PY) -m pytest $(PYTEST_ARGS) tests/test_warm_start_tools.py tests/test_warm_start.py tests/test_phases.py

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

# `make bench` runs every bench script (bench/README.md) and prints one table: figure, value, goal, met?.
# The full run takes about an hour on 2 cores (vs_sb3 trains 2 x 5 minutes, learn_town 3 seeds x (10 + 5)
# minutes). BENCH_MINUTES=M sets those training budgets; BENCH_QUICK=1 runs everything short (a few
# minutes: a check that the benches run, not figures to quote); BENCH_ONLY=tick,capture picks benches.
BENCH_MINUTES ?=
BENCH_ONLY ?=
bench: $(EXT_STAMP) ## every bench, one table of figures and goals [BENCH_QUICK=1] [BENCH_MINUTES=M] [BENCH_ONLY=a,b]
	$(PY) bench/run_all.py $(if $(call bool_on,BENCH_QUICK),--quick) \
		$(if $(BENCH_MINUTES),--minutes $(call q,$(BENCH_MINUTES))) $(if $(BENCH_ONLY),--only $(call q,$(BENCH_ONLY)))

BENCH_TOWN := target/bench/poc_hybrid.json

bench-rust: $(EXT_STAMP) ## the core's criterion benches (tick, observations, GAE) on the default town (not in make bench)
	@mkdir -p $(dir $(BENCH_TOWN))
	$(PY) -c "from townlet.sim.config import load_config; print(load_config('$(CONFIG)').world_json())" > $(BENCH_TOWN)
	TOWNLET_BENCH_CONFIG=$(abspath $(BENCH_TOWN)) cargo bench -p townlet-core --bench tick --bench observations --bench gae

PHASE ?= ppo
RUN_DIR ?= logs/$(PHASE)
# make run's training budget: about 5 minutes on 2 cores with the evaluation (docs/training.md, "Evaluation"),
# collecting each epoch while the last one is learned (--overlap: ppo.overlap), at twice the default learning rate,
# which learns the shifts within the budget (greedy on-time 0.93 against 0.57 at 3e-4; README).
# Kickstarted on the shift: a pull of weight RUN_KICKSTART towards the scripted expert's action where it sets off for
# work, queues there or works, held to the run's end, with the entropy bonus fading to 0 (ppo.kickstart_*,
# ppo.ent_coef_final; docs/training.md, "Session 16", "Session 17" and "Session 22": weight 1.0 since session 17,
# held since session 22, as bench/learn_town.py from scratch); RUN_KICKSTART=0 trains plain PPO.
EPOCHS ?= 2200
RUN_LR ?= 6e-4
RUN_KICKSTART ?= 1.0
RUN_CKPT = $(RUN_DIR)/checkpoints/ppo_latest.safetensors

run: $(EXT_STAMP) ## the main job: train PPO on the default town, evaluate it against the expert and random, report.md
	$(PY) -m townlet train $(CONFIG) --mode rollout --epochs $(EPOCHS) --overlap --learning-rate $(RUN_LR) \
		--kickstart-coef $(RUN_KICKSTART) --kickstart-final $(RUN_KICKSTART) --kickstart-on shift --ent-coef-final 0 \
		--ppo-log $(RUN_DIR)/run.jsonl --checkpoint $(RUN_CKPT)
	$(PY) -m townlet telemetry summary $(RUN_DIR)/run.jsonl --format markdown --plot $(RUN_DIR)/run.png \
		> $(RUN_DIR)/summary.md.tmp && mv $(RUN_DIR)/summary.md.tmp $(RUN_DIR)/summary.md
	$(PY) -m townlet eval $(CONFIG) --policy $(RUN_CKPT) --against expert,random \
		--telemetry $(RUN_DIR)/run.jsonl --report $(dir $(RUN_CKPT))
	@echo "checkpoint: $(RUN_CKPT) (+ .json header)"
	@echo "telemetry:  $(RUN_DIR)/run.jsonl (summary $(RUN_DIR)/summary.md, plot $(RUN_DIR)/run.png)"

TRAIN_LOG ?= $(RUN_DIR)/train.jsonl

train: $(EXT_STAMP) ## train a phase: make train PHASE=bc|ppo|memory [ARCH=lstm|gru|attention (memory; bc: a memory policy)] CONFIG=... [EPOCHS=] [WARM_LOAD=] [WARM_SAVE=] [ALLOW_MISMATCH=1] [DRY_RUN=1] [CAPTURE_DIR=|BC_MANIFEST=] [BACKEND=local|ray SHARDS=N RAY_ADDRESS=host:port (ppo rollout shards)]
	$(if $(filter bc ppo memory,$(PHASE)),,$(error PHASE=$(PHASE): the phases are bc, ppo and memory))
	ALLOW_MISMATCH=$(if $(call bool_on,ALLOW_MISMATCH),1,0) $(PY) -m townlet train $(call q,$(CONFIG)) \
		$(if $(filter bc,$(PHASE)),$(if $(ARCH),--mode bc_memory --arch $(call q,$(ARCH)),--mode bc) --bc-log,$(if $(filter memory,$(PHASE)),--mode memory \
		$(if $(ARCH),--arch $(call q,$(ARCH))) ,)--ppo-log) $(call q,$(TRAIN_LOG)) \
		$(if $(filter command line environment,$(origin EPOCHS)),--epochs $(EPOCHS)) \
		$(if $(CAPTURE_DIR),--capture-dir $(call q,$(CAPTURE_DIR))) \
		$(if $(BC_MANIFEST),--bc-manifest $(call q,$(BC_MANIFEST))) \
		$(if $(WARM_LOAD),--warm-start-load $(call q,$(WARM_LOAD))) \
		$(if $(WARM_SAVE),--warm-start-save $(call q,$(WARM_SAVE))) \
		$(if $(BACKEND),--backend $(call q,$(BACKEND))) $(if $(SHARDS),--shards $(call q,$(SHARDS))) \
		$(if $(RAY_ADDRESS),--ray-address $(call q,$(RAY_ADDRESS))) \
		$(if $(call bool_on,FRESH),--fresh) \
		$(if $(call bool_on,DRY_RUN),--dry-run)

sim: $(EXT_STAMP) ## run the simulation: make sim CONFIG=... TICKS=...
	$(PY) -m townlet sim run --config $(CONFIG) --tick-limit $(TICKS)

DASHBOARD_LISTEN ?= 127.0.0.1:8765
DASHBOARD_RATE ?= 10
dashboard: $(EXT_STAMP) ## a live shard with the web dashboard at its URL (anyone may watch; TOKENS=FILE for admin actions)
	@echo "dashboard: http://$(DASHBOARD_LISTEN)/ (open it once the shard says it is serving; Ctrl-C stops)"
	$(PY) -m townlet sim serve --config $(CONFIG) --serve $(DASHBOARD_LISTEN) --allow-anonymous-viewer \
		--tick-rate $(DASHBOARD_RATE) $(if $(TOKENS),--tokens $(call q,$(TOKENS)))

# Captures are dated with the real UTC time unless SOURCE_DATE_EPOCH pins it (docs/capture.md, Determinism).
# The golden targets pin it to the last commit's time, or 0 outside a git checkout (fixed, so a source
# tarball captures the same bytes twice), unless the environment sets it already.
COMMIT_EPOCH = $(or $(shell test -e .git && git log -1 --format=%ct 2>/dev/null),0)
capture golden-check golden-merge: export SOURCE_DATE_EPOCH ?= $(COMMIT_EPOCH)

# BACKEND=ray spreads the scenarios over Ray shard actors (SHARDS=N, RAY_ADDRESS=host:port): the same bytes.
CAPTURE_BACKEND = $(if $(filter ray,$(BACKEND)),--backend ray$(if $(SHARDS), --shards $(call q,$(SHARDS)))$(if \
	$(RAY_ADDRESS), --ray-address $(call q,$(RAY_ADDRESS))),$(if $(BACKEND),--backend $(call q,$(BACKEND))))

capture: $(EXT_STAMP) ## capture the golden scenarios into tmp/rollout_refresh [BACKEND=ray SHARDS=N RAY_ADDRESS=]
	$(PY) tools/capture_rollout_suite.py $(GOLDEN_SCENARIOS) --output-root tmp/rollout_refresh --compress $(CAPTURE_BACKEND)

golden-check: $(EXT_STAMP) ## capture the golden scenarios afresh and fail on drift from the golden
	rm -rf tmp/golden_check
	$(PY) tools/capture_rollout_suite.py $(GOLDEN_SCENARIOS) --output-root tmp/golden_check
	$(PY) tools/check_rollout_drift.py tmp/golden_check --golden $(GOLDEN)

golden-merge: capture ## merge tmp/rollout_refresh into the golden metrics
	$(PY) tools/merge_rollout_metrics.py tmp/rollout_refresh --golden $(GOLDEN)

.PHONY: rehearsal
rehearsal: $(EXT_STAMP) ## seed 001's ops rehearsal end to end in tmp/rehearsal: each step's verdict, the acceptance report
	$(PY) tools/ops_rehearsal.py --workdir tmp/rehearsal

.PHONY: promotion-drill
promotion-drill: $(EXT_STAMP) ## seed 003's promotion playbook on a live shard in tmp/promotion_drill (docs/promotion.md)
	$(PY) tools/promotion_drill.py --out tmp/promotion_drill

# --- Warm-start tools (docs/warm_start.md): checkpoints, config registry, logs, archives ----------
# Values reach the tools as single quoted words, so paths may hold spaces and quotes. Booleans are
# strict: 1/true/yes is on, 0/false/no/empty is off, anything else stops make with an error.
# The tools need the extension built, not rebuilt: a stale Rust source does not trigger a release
# build before a checkpoint listing (`make build` does that).
TOOL_DEPS := $(if $(wildcard $(EXT_STAMP)),,$(EXT_STAMP))
REGISTRY ?= configs/config_registry.json
q = '$(subst ','\'',$(1))'
_bool_1 := on
_bool_true := on
_bool_yes := on
_bool_0 := off
_bool_false := off
_bool_no := off
_bool_ := off
bool_on = $(filter on,$(or $(_bool_$(strip $($(1)))),$(error $(1)=$($(1)) is not a boolean: use 1, true or yes (on), or 0, false, no or empty (off))))
need = $(if $(strip $($(1))),,$(error set $(1)=$(2)))
# CONFIG has a default for `make run`; these targets want it named on the command line or in the environment.
need_config = $(if $(filter file undefined,$(origin CONFIG)),$(error set CONFIG=FILE (the config file)))
# `make log-tail PATH=run.jsonl` (seed 004's spelling): a command-line PATH names the log; the
# environment's PATH is the search path and is ignored here. LOG=FILE works too. A command-line
# PATH also becomes the recipe's search path, so these recipes call every program by its path.
LOG_FILE = $(if $(filter command line,$(origin PATH)),$(PATH),$(LOG))
need_log = $(if $(strip $(LOG_FILE)),,$(error set PATH=FILE (or LOG=FILE): the JSONL log))
# LINES is often exported by shells (the terminal height): only a command-line LINES counts.
TAIL_LINES = $(if $(filter command line,$(origin LINES)),$(LINES),20)
MAX_WAIT ?= 300

.PHONY: checkpoint-list checkpoint-info checkpoint-copy config-register config-lookup config-diff \
	registry-validate registry-fmt log-tail log-validate archive-artifacts archive-verify archive-summary

checkpoint-list: $(TOOL_DEPS) ## list checkpoints: make checkpoint-list DIR=logs/ppo/checkpoints
	$(call need,DIR,FOLDER)$(PY) tools/checkpoint_tool.py list $(call q,$(DIR)) --registry $(call q,$(REGISTRY))

checkpoint-info: $(TOOL_DEPS) ## show a checkpoint's header: make checkpoint-info CHECKPOINT=...
	$(call need,CHECKPOINT,FILE)$(PY) tools/checkpoint_tool.py info $(call q,$(CHECKPOINT)) --registry $(call q,$(REGISTRY))

checkpoint-copy: $(TOOL_DEPS) ## copy and verify a checkpoint: make checkpoint-copy SRC=... DEST=... [OVERWRITE=1]
	$(call need,SRC,FILE)$(call need,DEST,FILE)$(PY) tools/checkpoint_tool.py copy $(call q,$(SRC)) \
		$(call q,$(DEST)) $(if $(call bool_on,OVERWRITE),--overwrite)

config-register: $(TOOL_DEPS) ## label a config in the registry: make config-register CONFIG=... LABEL=... [NOTES=...]
	$(need_config)$(call need,LABEL,NAME)$(PY) tools/config_registry.py register $(call q,$(CONFIG)) \
		--label $(call q,$(LABEL)) $(if $(NOTES),--notes $(call q,$(NOTES))) --registry $(call q,$(REGISTRY))

config-lookup: $(TOOL_DEPS) ## find a registered config: make config-lookup HASH=sha256-or-prefix
	$(call need,HASH,SHA256 (or a unique prefix))$(PY) tools/config_registry.py lookup $(call q,$(HASH)) \
		--registry $(call q,$(REGISTRY))

config-diff: $(TOOL_DEPS) ## key-path diff of two configs (files or registry hashes): make config-diff A=... B=...
	$(call need,A,FILE-or-HASH)$(call need,B,FILE-or-HASH)$(PY) tools/config_registry.py diff $(call q,$(A)) \
		$(call q,$(B)) --registry $(call q,$(REGISTRY))

registry-validate: $(TOOL_DEPS) ## check the config registry is canonical and every hash matches its config
	$(PY) tools/validate_registry.py --registry $(call q,$(REGISTRY))

registry-fmt: $(TOOL_DEPS) ## rewrite the config registry in canonical form
	$(PY) tools/config_registry.py fmt --registry $(call q,$(REGISTRY))

log-tail: $(TOOL_DEPS) ## last lines of a JSONL log: make log-tail PATH=run.jsonl [LINES=20] [FOLLOW=1] [MAX_WAIT=300]
	$(need_log)$(PY) tools/log_tool.py tail $(call q,$(LOG_FILE)) -n $(call q,$(TAIL_LINES)) \
		$(if $(call bool_on,FOLLOW),--follow --max-wait $(call q,$(MAX_WAIT)))

log-validate: $(TOOL_DEPS) ## check a telemetry or per-episode JSONL log: make log-validate PATH=run.jsonl
	$(need_log)$(PY) tools/log_tool.py validate $(call q,$(LOG_FILE))

archive-artifacts: $(TOOL_DEPS) ## bundle a run: make archive-artifacts CHECKPOINT=... CONFIG=... [LOG=...] [OUTPUT=...] [LABEL=...]
	$(call need,CHECKPOINT,FILE)$(need_config)$(PY) tools/archive_tool.py create --checkpoint $(call q,$(CHECKPOINT)) \
		--config $(call q,$(CONFIG)) $(if $(LOG),--log $(call q,$(LOG))) $(if $(OUTPUT),--output $(call q,$(OUTPUT))) \
		$(if $(LABEL),--label $(call q,$(LABEL))) $(if $(call bool_on,OVERWRITE),--overwrite) --registry $(call q,$(REGISTRY))

archive-verify: $(TOOL_DEPS) ## check an archive against its metadata.json: make archive-verify ARCHIVE=...
	$(call need,ARCHIVE,FILE.tar.gz)$(PY) tools/archive_tool.py verify $(call q,$(ARCHIVE))

archive-summary: $(TOOL_DEPS) ## Markdown summary of an archive: make archive-summary ARCHIVE=... [MARKDOWN_PATH=...]
	$(call need,ARCHIVE,FILE.tar.gz)$(PY) tools/archive_tool.py summary --archive $(call q,$(ARCHIVE)) --markdown \
		$(if $(MARKDOWN_PATH),--markdown-path $(call q,$(MARKDOWN_PATH)))

clean: ## remove build outputs
	rm -rf target $(VENV) .mypy_cache .ruff_cache .pytest_cache
