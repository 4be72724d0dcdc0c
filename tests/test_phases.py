"""The phase chain bc -> ppo -> resume, run as a user would (subprocesses in a scratch working
directory, the default `logs/<config_id>/<phase>/checkpoints/<phase>_latest.json` paths):

* behaviour cloning on an expert capture, accuracy measured on held-out ticks, best kept apart;
* PPO inherits the bc checkpoint of the same config id by default (lineage names it), or starts fresh when
  told; another config's bc checkpoint is never inherited;
* a PPO run killed mid-way and resumed from its checkpoint ends with the same weights, optimizer
  state, towns and telemetry as the run that was never interrupted, across episode ends;
* a BC run interrupted in-process resumes identically too, and refuses other data.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import REPO_ROOT, CliResult, _cli_env, assert_one_line_error, assert_same_checkpoint, kill_once_saved
from townlet.artifacts.checkpoint import load_checkpoint

TOWN = REPO_ROOT / "configs/examples/poc_hybrid.yaml"
#: The default bc checkpoints of the default town's config id (town.yaml keeps it).
BC_DIR = "logs/poc_hybrid_v1/bc/checkpoints"
#: Fields of a telemetry record that measure time, not training.
TIMING = {"epoch_duration_sec", "sps", "time_env_sec", "time_learn_sec", "time_policy_sec"}
TIMING |= {"time_inference_sec", "time_other_sec"}  # the rest of the epoch time split


def townlet(cwd: Path, *args: str | Path, tool: str | None = None) -> CliResult:
    argv = [sys.executable, *((str(REPO_ROOT / "tools" / tool),) if tool else ("-m", "townlet")), *map(str, args)]
    proc = subprocess.run(argv, cwd=cwd, env=_cli_env(), capture_output=True, text=True, timeout=600)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch working directory with a short-episode copy of the default town and a one-day
    expert capture of it."""
    root = tmp_path_factory.mktemp("phases")
    raw = yaml.safe_load(TOWN.read_text())
    for key in ("affordances", "perturbations"):
        raw[key] = str(REPO_ROOT / raw[key])
    # Episodes of 48 ticks: six PPO epochs of 32 ticks cross four episode ends.
    raw["ppo"] = {"episode_ticks": 48, "num_envs": 2, "rollout_ticks": 32}
    raw["training"] = {"checkpoint_every": 1}
    raw["bc"] = {"epochs": 3, "batch_size": 256}
    (root / "town.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    res = townlet(root, "town.yaml", "--output", "capture", "--ticks", "1440", tool="capture_rollout.py")
    assert res.returncode == 0, str(res)
    return root


def records(path: Path) -> list[dict[str, Any]]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def bc_trained(work: Path) -> CliResult:
    """The bc phase trained once in `work` (its checkpoint is what the ppo tests inherit); tests that need it ask
    for it, so they hold under any test order or distribution over workers."""
    return townlet(
        work, "train", "town.yaml", "--mode", "bc", "--capture-dir", "capture", "--bc-log", "logs/bc/x.jsonl"
    )


def test_bc_learns_the_expert_on_held_out_ticks_and_keeps_the_best(work: Path, bc_trained: CliResult) -> None:
    res = bc_trained
    assert res.returncode == 0, str(res)
    latest, best = work / BC_DIR / "bc_latest.json", work / BC_DIR / "bc_best.json"
    ck = load_checkpoint(latest)
    assert ck.header["metadata"]["phase"] == "bc" and ck.header["counters"]["epochs"] == 3
    assert ck.training is not None and ck.training.data["phase"] == "bc"
    recs = records(work / "logs/bc/x.jsonl")
    assert [r["epoch"] for r in recs] == [1, 2, 3]
    last = recs[-1]
    # The expert is stochastic and the held-out ticks are the day's last fifth, unseen in training:
    # accuracy there is real and below the training accuracy, but far above chance.
    assert 0.5 < last["holdout_accuracy"] < 1.0 and last["rows_holdout"] > 0
    assert last["train_accuracy"] > 0.9 and recs[0]["loss_policy"] > last["loss_policy"]
    chosen = json.loads(load_checkpoint(best).header["metadata"]["best"])
    assert chosen["metric"] == "holdout_accuracy"
    assert chosen["value"] == max(r["holdout_accuracy"] for r in recs)
    assert load_checkpoint(best).training is None  # the best-known agent is weights only
    # The bc log is a log the log tool knows.
    res = townlet(work, "log", "validate", "logs/bc/x.jsonl")
    assert res.returncode == 0 and "3 records valid (0 telemetry, 3 bc, 0 episode)" in res.stdout, str(res)
    bad = work / "logs/bc/bad.jsonl"
    lines = (work / "logs/bc/x.jsonl").read_text().splitlines()
    rec = json.loads(lines[1])
    rec.pop("loss_value")
    rec["holdout_accuracy"] = 1.5
    bad.write_text("\n".join([lines[0], json.dumps(rec)]) + "\n")
    res = townlet(work, "log", "validate", bad)
    assert res.returncode == 1 and f"{bad}:2: missing field 'loss_value'" in res.stderr, str(res)
    assert "'holdout_accuracy' must lie in [0, 1]" in res.stderr


def ppo(work: Path, out: str, *extra: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "townlet", "train", "town.yaml", "--epochs", "6", "-q",
            "--warm-start-save", f"{out}/ppo_latest.json", "--ppo-log", f"{out}/train.jsonl", *extra]  # fmt: skip
    return subprocess.Popen(argv, cwd=work, env=_cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ppo_inherits_bc_and_a_killed_run_resumes_identically(work: Path, bc_trained: CliResult) -> None:
    assert bc_trained.returncode == 0, str(bc_trained)
    bc = work / BC_DIR / "bc_latest.json"
    bc_sha = load_checkpoint(bc).sha256
    dry = townlet(work, "train", "town.yaml", "--dry-run", "--warm-start-save", "dry/ppo.json")
    assert dry.returncode == 0, str(dry)
    assert "ppo: inherited from the bc phase" in dry.stdout and "dry run: nothing trained" in dry.stdout
    assert not (work / "dry").exists()
    full = ppo(work, "full")
    out, err = full.communicate(timeout=600)
    assert full.returncode == 0, err
    assert f"ppo: inherited from the bc phase: weights from {Path(BC_DIR, 'bc_latest.json')}" in err
    assert [line for line in err.splitlines() if line.startswith(("ppo:", "bc:"))] == [
        f"ppo: inherited from the bc phase: weights from {BC_DIR}/bc_latest.json (bc checkpoint)"
    ]
    done = load_checkpoint(work / "full/ppo_latest.json")
    assert done.header["lineage"]["parent_sha256"] == bc_sha

    # The same run, killed (SIGKILL: no clean-up) once a checkpoint after epoch 2 exists.
    part = ppo(work, "part")
    header = work / "part/ppo_latest.json"
    killed_at = kill_once_saved(part, header, 2)
    assert 2 <= killed_at < 6, "the run finished before it could be interrupted"

    resumed = ppo(work, "part", "--warm-start-load", "part/ppo_latest.json")
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert f"resuming part/ppo_latest.json at epoch {killed_at}" in err
    assert f"resumed after epoch {killed_at}" in out
    again = load_checkpoint(header)
    assert_same_checkpoint(done, again)
    assert records(work / "part/train.jsonl") == records(work / "full/train.jsonl")
    assert again.header["lineage"]["parent_sha256"] == bc_sha
    assert again.header["lineage"]["resumed_from_sha256"] not in (None, bc_sha)
    # The best-known checkpoint is the same agent either way, picked by the rollout score.
    best_full, best_part = load_checkpoint(work / "full/ppo_best.json"), load_checkpoint(work / "part/ppo_best.json")
    assert best_full.header["metadata"]["best"] == best_part.header["metadata"]["best"]
    assert all(best_part.state[k].equal(v) for k, v in best_full.state.items())
    chosen = json.loads(best_full.header["metadata"]["best"])
    assert chosen["value"] == max(r["reward_mean"] for r in records(work / "full/train.jsonl"))

    # A damaged training state is one clear line, and nothing is written.
    for damage, says in (
        (lambda d: d["collector"]["env"]["towns"]["towns"][0].__setitem__("tick", "x"), "malformed town state"),
        (lambda d: d["collector"]["env"]["towns"].__setitem__("version", 7), "town state version 7"),
        (lambda d: d.pop("numpy_rng"), "lacks 'numpy_rng'"),
    ):
        header = json.loads((work / "full/ppo_latest.json").read_text())
        damage(header["training"]["data"])
        (work / "bad.json").write_text(json.dumps(header))
        res = townlet(work, "train", "town.yaml", "--epochs", "9", "--warm-start-load", "bad.json",
                      "--warm-start-save", "bad_out.json")  # fmt: skip
        assert_one_line_error(res, "bad.json: cannot resume", says)
        assert not (work / "bad_out.json").exists()

    # --fresh ignores the bc checkpoint.
    res = townlet(work, "train", "town.yaml", "--epochs", "1", "-q", "--fresh", "--warm-start-save", "fresh.json")
    assert res.returncode == 0 and "inherited" not in res.stderr, str(res)
    assert load_checkpoint(work / "fresh.json").header["lineage"]["parent_sha256"] is None


def test_bc_resume_is_identical_and_refuses_other_data(
    work: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from townlet.cli.train import run_bc
    from townlet.sim.config import load_config
    from townlet.training.data import load_replay

    cfg = load_config(work / "town.yaml")
    data = load_replay(None, work / "capture")

    def bc_cfg(save: Path, load: Path | None = None) -> Any:
        warm = cfg.sections.bc.warm_start.model_copy(
            update={"save_path": str(save), "load_path": str(load) if load else None}
        )
        return cfg.sections.bc.model_copy(update={"warm_start": warm})

    full = tmp_path / "full.json"
    run_bc(cfg, bc=bc_cfg(full), epochs=3, seed=cfg.seed, data=data, telemetry=None, checkpoint=full,
           checkpoint_every=1)  # fmt: skip

    class Interrupted(Exception):
        pass

    def stop_at_2(rec: dict[str, Any]) -> None:
        if rec["epoch"] == 2:
            raise Interrupted

    part = tmp_path / "part.json"
    with pytest.raises(Interrupted):
        run_bc(cfg, bc=bc_cfg(part), epochs=3, seed=cfg.seed, data=data, telemetry=None, checkpoint=part,
               checkpoint_every=1, on_epoch=stop_at_2)  # fmt: skip
    assert load_checkpoint(part).header["counters"]["epochs"] == 1
    recs, outs = run_bc(cfg, bc=bc_cfg(part, part), epochs=3, seed=cfg.seed, data=data, telemetry=None,
                        checkpoint=part, checkpoint_every=1)  # fmt: skip
    assert outs.start_epoch == 1 and [r["epoch"] for r in recs] == [2, 3]
    assert f"bc: resuming {part} at epoch 1" in capsys.readouterr().err
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert all(b.state[k].equal(v) for k, v in a.state.items())
    assert a.training is not None and b.training is not None and a.training.data == b.training.data

    # Resuming on other data is refused (the manifest's SHA-256 names the data).
    other = work / "other"
    res = townlet(work, "town.yaml", "--output", other, "--ticks", "200", tool="capture_rollout.py")
    assert res.returncode == 0, str(res)
    res = townlet(work, "train", "town.yaml", "--mode", "bc", "--capture-dir", other, "--epochs", "4",
                  "--warm-start-load", part, "--warm-start-save", tmp_path / "x.json")  # fmt: skip
    assert_one_line_error(res, str(part), "cannot resume", "ALLOW_MISMATCH=1")
    assert not (tmp_path / "x.json").exists()


def test_bc_bad_input_is_one_clear_line(work: Path, tmp_path: Path) -> None:
    res = townlet(work, "train", "town.yaml", "--mode", "bc")
    assert_one_line_error(res, "--capture-dir", "--bc-manifest")
    res = townlet(work, "train", "town.yaml", "--mode", "bc", "--capture-dir", tmp_path)
    assert_one_line_error(res, str(tmp_path), "no *_manifest.json")
    res = townlet(work, "train", "town.yaml", "--mode", "bc", "--capture-dir", "capture", "--clip-coef", "0.1")
    assert_one_line_error(res, "--clip-coef", "not used by --mode bc")
    # A sample swapped for another (a valid .npz, but not the one captured) fails its checksum.
    bad = tmp_path / "capture"
    bad.mkdir()
    for f in (work / "capture").iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    first, second = sorted(bad.glob("*.npz"))[:2]
    first.write_bytes(second.read_bytes())
    res = townlet(work, "train", "town.yaml", "--mode", "bc", "--capture-dir", bad, "--warm-start-save",
                  tmp_path / "y.json")  # fmt: skip
    assert_one_line_error(res, first.name, "do not match the SHA-256")
    assert not (tmp_path / "y.json").exists()


def test_first_weights_do_not_depend_on_the_thread_count() -> None:
    import torch

    from townlet.training.trainer import make_policy

    meta = {"map_shape": [4, 11, 11], "n_features": 94}
    before = torch.get_num_threads()
    states = []
    try:
        for threads in (1, 2, 4):
            torch.set_num_threads(threads)
            torch.manual_seed(3)
            states.append(make_policy(meta, 578, 20, 128).state_dict())
            assert torch.get_num_threads() == threads  # restored afterwards
    finally:
        torch.set_num_threads(before)
    for other in states[1:]:
        assert all(other[k].equal(v) for k, v in states[0].items())


@pytest.mark.parametrize("mode", ["replay", "mixed"])
def test_replay_and_mixed_runs_resume_identically(mode: str, tmp_path: Path) -> None:
    """Replayed rows get their values from the current critic every epoch, so an interrupted replay
    (or mixed) run resumed from its checkpoint ends where the uninterrupted one does."""
    from townlet.capture.rollout import capture_rollout
    from townlet.cli.train import run_training
    from townlet.sim.config import load_config
    from townlet.training.data import load_replay

    cfg = load_config(REPO_ROOT / "configs/scenarios/queue_conflict.yaml")
    capture_rollout(cfg, tmp_path / "cap", ticks=40)
    replay = load_replay(None, tmp_path / "cap")
    base = cfg.sections.ppo.model_copy(update={"num_envs": 1, "rollout_ticks": 16})

    def ppo_cfg(save: Path, load: Path | None = None) -> Any:
        warm = base.warm_start.model_copy(
            update={"save_path": str(save), "load_path": str(load) if load else None, "inherit": None}
        )
        return base.model_copy(update={"warm_start": warm})

    def train(save: Path, load: Path | None = None, on_epoch: Any = None) -> Any:
        return run_training(cfg, ppo=ppo_cfg(save, load), mode=mode, epochs=4, seed=cfg.seed, replay=replay,
                            telemetry=None, checkpoint=save, checkpoint_every=1, on_epoch=on_epoch)  # fmt: skip

    class Interrupted(Exception):
        pass

    def stop_at_3(rec: dict[str, Any]) -> None:
        if rec["epoch"] == 3:
            raise Interrupted

    full, part = tmp_path / "full.json", tmp_path / "part.json"
    train(full)
    with pytest.raises(Interrupted):
        train(part, on_epoch=stop_at_3)
    assert load_checkpoint(part).header["counters"]["epochs"] == 2
    out = train(part, part)
    assert out.start_epoch == 2 and [r["epoch"] for r in out.result.records] == [3, 4]
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert all(b.state[k].equal(v) for k, v in a.state.items())
    assert a.training is not None and b.training is not None and a.training.data == b.training.data


def test_another_configs_bc_checkpoint_is_never_inherited(work: Path, bc_trained: CliResult) -> None:
    """Issue 13: phases do not leak across configs. Another town in the same working directory has its own
    default paths, so the default town's bc checkpoint is not even looked at; a bc save path shared by two
    configs on purpose is not inherited either; a bc checkpoint of the same config id that no longer fits
    (its town changed) is still a one-line error that says how to start fresh."""
    assert bc_trained.returncode == 0, str(bc_trained)
    queue = REPO_ROOT / "configs/scenarios/queue_conflict.yaml"
    res = townlet(work, "train", queue, "--epochs", "1", "--rollout-ticks", "8", "--warm-start-save", "q.json", "-q")
    assert res.returncode == 0 and "inherited" not in res.stderr, str(res)
    assert load_checkpoint(work / "q.json").header["lineage"]["parent_sha256"] is None

    raw = yaml.safe_load(queue.read_text())
    for key in ("affordances", "perturbations"):
        if isinstance(raw.get(key), str):
            raw[key] = str(REPO_ROOT / "configs/scenarios" / raw[key])
    raw["bc"] = {"warm_start": {"save_path": f"{BC_DIR}/bc_latest.json"}}  # the default town's bc checkpoint
    (work / "shared.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    res = townlet(work, "train", "shared.yaml", "--epochs", "1", "--rollout-ticks", "8", "--warm-start-save", "s.json")
    assert res.returncode == 0, str(res)
    assert (
        f"ppo: fresh start (not inheriting {BC_DIR}/bc_latest.json: that bc checkpoint was trained on config "
        "poc_hybrid_v1, not scenario_queue_conflict)" in res.stderr
    ), str(res)
    assert load_checkpoint(work / "s.json").header["lineage"]["parent_sha256"] is None

    town = yaml.safe_load((work / "town.yaml").read_text())
    town["observations"] = {**(town.get("observations") or {}), "variant": "compact"}
    (work / "changed.yaml").write_text(yaml.safe_dump(town, sort_keys=False))
    res = townlet(work, "train", "changed.yaml", "--epochs", "1", "--warm-start-save", "c.json")
    assert_one_line_error(res, "observation/action spec differs", "inherited from the bc phase", "--fresh")
    assert not (work / "c.json").exists()
    res = townlet(work, "train", "changed.yaml", "--epochs", "1", "--fresh", "--warm-start-save", "c.json", "-q")
    assert res.returncode == 0, str(res)


def test_a_best_path_that_would_overwrite_the_checkpoint_is_refused(work: Path) -> None:
    raw = yaml.safe_load((work / "town.yaml").read_text())
    raw["ppo"]["warm_start"] = {"save_path": "w/a.safetensors", "best_path": "w/a.json"}
    (work / "clash.yaml").write_text(yaml.safe_dump(raw))
    res = townlet(work, "train", "clash.yaml", "--epochs", "1", "--fresh")
    assert_one_line_error(res, "clash.yaml: ppo.warm_start: best_path w/a.json would overwrite w/a.json")
    assert not (work / "w").exists()
