"""Torch threads (training/threads.py): the bfloat16 trainer computes the same bytes on 1, 2 and 3
threads where the machine's bfloat16 products do (`bf16_is_thread_invariant`), and under `auto` (which may
switch thread counts between phases and epochs) everywhere: where they do not, `auto` is one thread, as it is
in float32, whose convolution gradients depend on the thread count; `ThreadChooser`
keeps the faster count and tries the other again; importing townlet makes OpenMP wait passively
unless the user chose otherwise. (Speed: `bench/train.py --vs-threads`, never asserted here.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
from pydantic import ValidationError

from conftest import REPO_ROOT, RunCli, WriteConfig, assert_one_line_error
from townlet.sim.settings import MemoryConfig, PPOConfig
from townlet.training.threads import ThreadChooser, Threads

#: Trains the default town briefly under each thread setting, in one fresh process, and prints per
#: setting a digest of the weights' and optimizer state's bytes and the counts each phase last used.
TRAIN = """
import hashlib, json, sys
import townlet  # first: its OpenMP wait policy must be set before torch loads
import torch
from townlet import load_config
from townlet.sim.settings import PPOConfig
from townlet.training.envs import TownTrainEnv
from townlet.training.trainer import Trainer

cfg = load_config(sys.argv[1])
out = {}
for setting in sys.argv[3].split(","):
    threads = setting if setting == "auto" else int(setting)
    ppo = PPOConfig(num_envs=4, rollout_ticks=32, torch_threads=threads, precision=sys.argv[2])
    trainer = Trainer(TownTrainEnv(cfg, ppo.num_envs, 3, None), ppo, seed=3)
    used = []
    trainer.run(3, on_epoch=lambda rec: used.append(dict(trainer.threads.last)))
    digest = hashlib.sha256()
    for tensor in trainer.policy.state_dict().values():
        digest.update(tensor.numpy().tobytes())
    for state in trainer.optimizer.state_dict()["state"].values():
        for value in state.values():
            digest.update(value.numpy().tobytes())
    out[setting] = {"digest": digest.hexdigest(), "used": used}
print(json.dumps(out))
"""


def train(precision: str, settings: str) -> dict[str, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-c", TRAIN, str(REPO_ROOT / "configs/examples/poc_hybrid.yaml"), precision, settings],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, dict[str, Any]] = json.loads(proc.stdout)
    return result


INVARIANT = """
import json, sys
import townlet
from townlet.training.threads import auto_threads, bf16_is_thread_invariant
invariant = [bf16_is_thread_invariant(2), bf16_is_thread_invariant(3)]
print(json.dumps({"invariant": invariant, "auto": auto_threads("bf16")}))
"""


def test_bf16_bytes_follow_the_machines_thread_invariance_and_auto_never_changes_them() -> None:
    """Where this machine's bfloat16 products give the same bytes on any thread count (the probe), training does
    too, on 1, 2 and 3 threads; where they do not, the fixed counts' runs differ and `auto` stays on one thread.
    Either way `auto` trains the bytes of one thread."""
    probe = subprocess.run([sys.executable, "-c", INVARIANT], capture_output=True, text=True, timeout=120, check=True)
    machine = json.loads(probe.stdout)
    got = train("bf16", "1,2,3,auto")
    assert [run["used"][-1] for run in (got["2"], got["3"])] == [{"collect": 2, "learn": 2}, {"collect": 3, "learn": 3}]
    if all(machine["invariant"]):
        assert got["2"]["digest"] == got["1"]["digest"]
        assert got["3"]["digest"] == got["1"]["digest"]
    else:
        assert machine["auto"] == 1
        assert got["auto"]["used"] == [{"collect": 1, "learn": 1}] * 3
    assert got["auto"]["digest"] == got["1"]["digest"]


def test_fp32_auto_is_one_thread() -> None:
    got = train("fp32", "1,auto")
    assert got["auto"]["used"] == [{"collect": 1, "learn": 1}] * 3
    assert got["auto"]["digest"] == got["1"]["digest"]


def test_the_chooser_keeps_the_faster_count_and_probes_the_other() -> None:
    chooser = ThreadChooser(2, probe_every=4)
    seconds = {1: 1.0, 2: 3.0}  # one thread is faster

    def turns(n: int) -> list[int]:
        picks = []
        for _ in range(n):
            threads = chooser.pick()
            picks.append(threads)
            chooser.record(threads, seconds[threads], rows=10)
        return picks

    # warm-up on 2 (not timed), the counts in turn until each has two timings, then the faster; the
    # other 4 turns after the last try (turn 9), and as it lost, 8 turns later
    assert turns(9) == [2, 1, 2, 1, 2, 1, 1, 1, 2]
    assert (chooser.cost(1), chooser.cost(2), chooser.interval) == (0.1, 0.3, 8)
    seconds[1] = 10.0  # one slow turn (other work on the machine) does not make it switch
    assert turns(1) == [1]
    seconds[1] = 1.0
    seconds[2] = 0.5  # the box went quiet: the probe on turn 17 finds 2 faster, and 2 stays
    assert turns(8) == [1, 1, 1, 1, 1, 1, 2, 2]
    assert chooser.interval == 4
    # Busy again: 2 is dropped once its window holds no fast turn (turn 23), and each probe that
    # loses doubles the wait for the next (turns 29, 45, 77)
    seconds[2] = 30.0
    got = dict(zip(range(19, 79), turns(60), strict=True))
    assert [turn for turn, threads in got.items() if threads == 2] == [19, 20, 22, 29, 45, 77]
    assert chooser.interval == 64
    assert ThreadChooser(1).candidates == (1,)


def test_fixed_counts_and_auto_in_the_config() -> None:
    assert PPOConfig().torch_threads == 1  # auto measured 0.95x of one thread on the quiet 2-core box
    assert Threads(3, "fp32").fixed == 3  # a fixed count is honoured in either precision
    assert Threads("auto", "fp32").choosers["learn"].candidates == (1,)
    for bad in (0, "all", 1.5):
        with pytest.raises(ValidationError):
            PPOConfig.model_validate({"torch_threads": bad})
    assert PPOConfig.model_validate({"torch_threads": 2}).torch_threads == 2
    # The recurrent trainer keeps a fixed count: `auto` from `ppo:` is one thread there.
    assert MemoryConfig.model_validate(PPOConfig().model_dump(exclude={"warm_start"})).torch_threads == 1


@pytest.mark.parametrize(
    ("preset", "expect"),
    [({}, "PASSIVE"), ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"), ({"GOMP_SPINCOUNT": "1000"}, "")],
)
def test_importing_townlet_makes_openmp_wait_passively(preset: dict[str, str], expect: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    code = "import sys, townlet, os; assert 'torch' not in sys.modules; print(os.environ.get('OMP_WAIT_POLICY', ''))"
    proc = subprocess.run(
        [sys.executable, "-c", code], env={**env, **preset}, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expect


@pytest.mark.parametrize(("value", "shown"), [(0, "got 0"), ("many", 'got "many"')])
def test_a_bad_thread_count_is_one_line(cli: RunCli, write_config: WriteConfig, value: object, shown: str) -> None:
    config = write_config(lambda data: data.setdefault("ppo", {}).update(torch_threads=value))
    assert_one_line_error(cli("validate", config), "ppo.torch_threads", "a count (>= 1) or auto", shown)


@pytest.mark.parametrize("overlap", [False, True])
def test_bench_train_vs_threads_compares_two_thread_settings(overlap: bool) -> None:
    argv = [sys.executable, str(REPO_ROOT / "bench/train.py"), "--json", "--torch-threads", "2", "--vs-threads", "1"]
    argv += ["--pairs", "1", "--epochs", "1", "--num-envs", "1", "--rollout-ticks", "4"]
    proc = subprocess.run(argv + ["--overlap"] * overlap, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ref"] == "--torch-threads 1" and len(out["pairs"]) == 1
    assert out["median_ratio"] == out["pairs"][0]["ratio_agent_steps_per_sec"] > 0
    # Only the count differs: with --overlap both sides collect ahead (before session 28 the reference did not).
    sides = out["pairs"][0]
    assert (sides["this"]["torch_threads"], sides["ref"]["torch_threads"]) == (2, 1)
    assert sides["this"]["overlap"] is sides["ref"]["overlap"] is overlap
    bad = subprocess.run([*argv[:4], "none"], capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and bad.stdout == "" and "auto" in bad.stderr
