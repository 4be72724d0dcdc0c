"""The PPO trainer: determinism, checkpoints (round trip, tampering, use by sim and capture), action
masking, truncation bootstrap, a non-Townlet PettingZoo env, telemetry thinning and rotation, and
the `make run` command."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, CliResult, _cli_env, assert_one_line_error
from townlet.artifacts.checkpoint import FORMAT_VERSION, fingerprint, load_checkpoint, save_checkpoint
from townlet.cli.train import run_training
from townlet.errors import UsageError
from townlet.jsonio import canonical_json
from townlet.sim.config import load_config
from townlet.sim.env import VecTown
from townlet.sim.settings import PPOConfig
from townlet.telemetry.records import check_record
from townlet.training.envs import GymAsParallel, ParallelTrainEnv, TownTrainEnv
from townlet.training.network import ConflictAwarePolicy, MLPPolicy, pick
from townlet.training.optim import adam
from townlet.training.policy import CheckpointPolicy
from townlet.training.ppo import Dataset, RolloutCollector, ppo_update
from townlet.training.trainer import Trainer, make_policy

POC = "configs/examples/poc_hybrid.yaml"
QUEUE_CONFLICT = "configs/scenarios/queue_conflict.yaml"
#: Telemetry fields that measure wall time (the only ones allowed to differ between equal runs).
TIMING_FIELDS = {"epoch_duration_sec", "sps", "time_env_sec", "time_policy_sec", "time_learn_sec"}
TIMING_FIELDS |= {"time_inference_sec", "time_other_sec"}  # the rest of the epoch time split
#: make run's PPO settings, small: the CLI runs get them as flags (`SMOKE_ARGS`), the in-process run as they are.
SMOKE_PPO: dict[str, Any] = {
    "num_envs": 2,
    "rollout_ticks": 32,
    "overlap": True,
    "learning_rate": 6e-4,
    "kickstart_coef": 1.0,
    "kickstart_on": "shift",
}


def as_flags(fields: dict[str, Any]) -> tuple[str, ...]:
    """PPO settings as `townlet train` flags: `--key-name VALUE`, or the bare flag for `True`."""
    flags = ((f"--{k.replace('_', '-')}", v) for k, v in fields.items())
    return tuple(a for flag, v in flags for a in ((flag,) if v is True else (flag, str(v))))


SMOKE_ARGS = ("--epochs", "2", *as_flags(SMOKE_PPO))


def run(*args: str | Path, tool: str | None = None, env: dict[str, str] | None = None) -> CliResult:
    """`python -m townlet ARGS`, or `python tools/TOOL ARGS`, in the test's scratch working directory."""
    head = [sys.executable, f"tools/{tool}"] if tool else [sys.executable, "-m", "townlet"]
    argv = [*head, *(str(a) for a in args)]
    proc = subprocess.run(
        argv,
        env={**_cli_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def read_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def untimed(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in TIMING_FIELDS} for r in records]


# -- `make run` smoke, and determinism across processes ----------------------------------------------


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[CliResult, Path, Path]]:
    """The `make run` command, small, twice (same config, same seed): (result, checkpoint, log)."""
    out = []
    for k in range(2):
        d = tmp_path_factory.mktemp(f"smoke{k}")
        ckpt, log = d / "checkpoints" / "ppo_latest.safetensors", d / "run.jsonl"
        res = run("train", POC, *SMOKE_ARGS, "--checkpoint", ckpt, "--ppo-log", log, "--json",
                  env={"SOURCE_DATE_EPOCH": "1700000000"})  # fmt: skip
        out.append((res, ckpt, log))
    return out


@pytest.fixture(scope="module")
def trained_ckpt(smoke_runs: list[tuple[CliResult, Path, Path]]) -> Path:
    """A checkpoint trained on the default town."""
    res, ckpt, _ = smoke_runs[0]
    assert res.returncode == 0, str(res)
    return ckpt


def test_make_run_smoke(smoke_runs: list[tuple[CliResult, Path, Path]]) -> None:
    res, ckpt, log = smoke_runs[0]
    assert res.returncode == 0, str(res)
    summary = res.json()  # exactly one JSON object on stdout
    assert summary["mode"] == "rollout" and summary["epochs"] == 2
    assert summary["config_id"] == "poc_hybrid_v1"
    # 2 towns x 9 agents x 32 ticks per epoch, every agent alive.
    assert summary["steps"] == 2 * 2 * 9 * 32
    assert summary["checkpoint"] == str(ckpt) and summary["telemetry"] == str(log)
    assert ckpt.is_file() and ckpt.with_suffix(".json").is_file()
    records = read_log(log)
    assert [r["epoch"] for r in records] == [1, 2]
    assert all(check_record(r, where=f"{log}:{i}") == [] for i, r in enumerate(records, 1))
    assert records[-1]["steps"] == summary["steps"]
    assert summary["last"]["loss_total"] == records[-1]["loss_total"]
    header = load_checkpoint(ckpt).header
    assert header["counters"] == {"epochs": 2, "steps": summary["steps"]}
    assert header["metadata"] == {
        "mode": "rollout",
        "phase": "ppo",
        "config_id": "poc_hybrid_v1",
        "config_path": "configs/examples/poc_hybrid.yaml",
    }
    # The embedded config is the resolved config the registry hashes, with this run's PPO values.
    assert header["config"]["config_id"] == "poc_hybrid_v1" and header["config"]["ppo"]["num_envs"] == 2
    assert header["config"]["ppo"]["kickstart_on"] == "shift" and header["config"]["ppo"]["kickstart_coef"] == 1.0
    # Kickstarted: the imitation term is logged, and its weight has fallen linearly from 1.0 (epoch 1 of 2).
    assert [r["kickstart_coef"] for r in records] == [1.0, 0.5] and "loss_imitation" in records[-1]


def test_determinism_across_processes_and_in_process(
    smoke_runs: list[tuple[CliResult, Path, Path]], tmp_path: Path
) -> None:
    (a, ckpt_a, log_a), (b, ckpt_b, log_b) = smoke_runs
    assert a.returncode == 0 and b.returncode == 0, f"{a}\n{b}"
    records_a, records_b = read_log(log_a), read_log(log_b)
    assert untimed(records_a) == untimed(records_b)
    assert ckpt_a.read_bytes() == ckpt_b.read_bytes()  # identical weights, byte for byte
    header_a, header_b = (json.loads(p.with_suffix(".json").read_text(encoding="utf-8")) for p in (ckpt_a, ckpt_b))
    header_a.pop("git")
    header_b.pop("git")
    assert header_a == header_b
    # The same training in this process gives the same records and weights.
    cfg = load_config(REPO_ROOT / POC)
    ppo = cfg.sections.ppo.model_copy(update=SMOKE_PPO)
    ckpt_c = tmp_path / "c.safetensors"
    out = run_training(
        cfg, ppo=ppo, mode="rollout", epochs=2, seed=cfg.seed, replay=None, telemetry=None, checkpoint=ckpt_c
    )
    assert [{k: v for k, v in r.items() if k != "log_stream_offset"} for r in untimed(records_a)] == untimed(
        out.result.records
    )
    assert ckpt_c.read_bytes() == ckpt_a.read_bytes()


def small_trainer(seed: int, scenario: str = QUEUE_CONFLICT, **ppo_fields: Any) -> Trainer:
    cfg = load_config(REPO_ROOT / scenario)
    ppo = PPOConfig(num_envs=2, rollout_ticks=24, hidden=32, **ppo_fields)
    return Trainer(TownTrainEnv(cfg, ppo.num_envs, seed, None), ppo, seed=seed)


def test_determinism_in_process() -> None:
    runs = [small_trainer(seed) for seed in (5, 5, 6)]
    results = [t.run(2) for t in runs]
    assert untimed(results[0].records) == untimed(results[1].records)
    state0, state1, state2 = (t.policy.state_dict() for t in runs)
    assert all(torch.equal(state0[k], state1[k]) for k in state0)
    # A different seed is a different run (so the equality above is not vacuous).
    assert untimed(results[0].records) != untimed(results[2].records)
    assert not all(torch.equal(state0[k], state2[k]) for k in state0)


def test_the_schedules_follow_the_share_spent() -> None:
    """`Trainer.run(..., spent=)` (a wall-clock budget's share, bench/learn_town.py --minutes) drives the learning
    rate and the entropy coefficient exactly as the share of the epochs does: the same shares train the same bytes,
    and other shares another run."""
    by_epochs, by_share, other = small_trainer(5), small_trainer(5), small_trainer(5)
    for t in (by_epochs, by_share, other):
        t.cfg = t.cfg.model_copy(update={"ent_coef_final": 0.0})
    a = by_epochs.run(4)
    b = by_share.run(2, spent=lambda epoch: PPOConfig.spent(epoch, 4))
    b2 = by_share.run(4, spent=lambda epoch: PPOConfig.spent(epoch, 4))
    assert [r["lr"] for r in a.records] == pytest.approx([3e-4, 2.25e-4, 1.5e-4, 0.75e-4])
    assert untimed(a.records) == untimed(b.records + b2.records)
    c = other.run(4, spent=lambda epoch: 0.9)
    assert [r["lr"] for r in c.records] == pytest.approx([3e-5] * 4)
    assert untimed(a.records)[1:] != untimed(c.records)[1:]


def expert_agreement(trainer: Trainer, seed: int, start: int = 380, ticks: int = 120) -> float:
    """How often the trainer's greedy policy takes the scripted expert's action on the expert's own morning in the
    default town (6:20 to 8:20: waking, meals, showers, the walk to work), where no one action is always right."""
    env = TownTrainEnv(load_config(REPO_ROOT / POC), 2, seed, None)
    obs, masks, _ = env.reset(seed)
    same, seen = 0, []
    with torch.no_grad():
        for tick in range(start + ticks):
            expert = env.expert_actions().copy()
            if tick >= start:
                greedy, _, _ = trainer.policy.act(torch.from_numpy(obs), torch.from_numpy(masks), deterministic=True)
                same += int((greedy.numpy() == expert).sum())
                seen.extend(expert.tolist())
            b = env.step(expert)
            obs, masks = b.obs, b.masks
    assert np.bincount(seen).max() < 0.7 * len(seen), "the expert's morning is one action: nothing to agree on"
    return same / len(seen)


def expert_likelihood(trainer: Trainer, seed: int, start: int = 380, ticks: int = 120) -> float:
    """The mean log-probability the trainer's policy gives the scripted expert's action on the expert's own morning
    in the default town (`expert_agreement`'s ticks)."""
    env = TownTrainEnv(load_config(REPO_ROOT / POC), 2, seed, None)
    obs, masks, _ = env.reset(seed)
    total, rows = 0.0, 0
    with torch.no_grad():
        for tick in range(start + ticks):
            expert = env.expert_actions().copy()
            if tick >= start:
                logp, _ = trainer.policy.log_softmax(torch.from_numpy(obs), torch.from_numpy(masks))
                total += float(pick(logp, torch.from_numpy(expert).long()).sum())
                rows += len(expert)
            b = env.step(expert)
            obs, masks = b.obs, b.masks
    return total / rows


def test_kickstarting_pulls_the_policy_towards_the_expert() -> None:
    """`ppo.kickstart_coef`: a cross-entropy term to the scripted expert's action in every visited state, annealed
    to 0 over the run and logged. Three epochs of 480 ticks live through the town's first morning; afterwards the
    kicked policy gives the expert's morning actions more probability than before and than the same run without
    the term, and agrees with the expert more often than before."""

    def trainer(**fields: Any) -> Trainer:
        ppo = PPOConfig(num_envs=2, rollout_ticks=480, hidden=32, learning_rate=1e-3, **fields)
        return Trainer(TownTrainEnv(load_config(REPO_ROOT / POC), 2, 5, None), ppo, seed=5)

    plain, kicked = trainer(), trainer(kickstart_coef=2.0)
    before, agreed = expert_likelihood(plain, 77), expert_agreement(plain, 77)
    a, b = plain.run(3), kicked.run(3)
    assert all("loss_imitation" not in r for r in a.records)
    assert [r["kickstart_coef"] for r in b.records] == pytest.approx([2.0 * (1 - k / 3) for k in range(3)])
    # (the telemetry writer adds log_stream_offset)
    assert all(check_record({**r, "log_stream_offset": 0}, where=f"epoch {r['epoch']}") == [] for r in b.records)
    assert b.records[-1]["loss_imitation"] < b.records[0]["loss_imitation"]
    after_plain, after_kicked = expert_likelihood(plain, 77), expert_likelihood(kicked, 77)
    assert after_kicked > before + 0.03 and after_kicked > after_plain + 0.03, (before, after_plain, after_kicked)
    assert expert_agreement(kicked, 77) > agreed + 0.1


def test_kickstarting_on_labels_only_the_states_it_names() -> None:
    """`ppo.kickstart_on`: under `duties` a row whose expert action is leisure (a chat, or going home with nothing
    due) carries no label (-1), under `shift` every row but the shift's (setting off, queueing, working); a labelled
    row carries the label `all` gives it, and an unlabelled one adds nothing to the update."""

    def trainer(on: str) -> Trainer:
        # Through the default town's first morning: its night is all sleep (a duty); the morning has all three.
        ppo = PPOConfig(num_envs=2, rollout_ticks=480, hidden=32, kickstart_coef=1.0, kickstart_on=on)
        return Trainer(TownTrainEnv(load_config(REPO_ROOT / POC), 2, 5, None), ppo, seed=5)

    every, duties, shift = trainer("all"), trainer("duties"), trainer("shift")
    data = []
    for t in (every, duties, shift):
        assert t.collector is not None
        rows, _ = t.collector.collect()
        assert rows.expert_actions is not None
        data.append(rows)
    a, b, c = data
    assert a.expert_actions is not None and b.expert_actions is not None and c.expert_actions is not None
    np.testing.assert_array_equal(a.actions, b.actions)  # the same rollout; only the labels differ
    np.testing.assert_array_equal(a.actions, c.actions)
    assert (a.expert_actions >= 0).all()
    leisure, off_shift = b.expert_actions == -1, c.expert_actions == -1
    assert 0.01 * len(b) < leisure.sum() < 0.5 * len(b)
    assert 0.02 * len(c) < (~off_shift).sum() < 0.5 * len(c)
    assert not (leisure & ~off_shift).any()  # leisure is never the shift
    np.testing.assert_array_equal(a.expert_actions[~leisure], b.expert_actions[~leisure])
    np.testing.assert_array_equal(a.expert_actions[~off_shift], c.expert_actions[~off_shift])

    def update(rows: Dataset) -> tuple[dict[str, torch.Tensor], list[float]]:
        policy = copy.deepcopy(duties.policy)
        optimizer = adam(policy.parameters(), 1e-3, eps=1e-5)
        st = ppo_update(policy, optimizer, rows, duties.cfg, np.random.default_rng(0))
        return policy.state_dict(), st.imitation_losses

    # Unlabelled rows only: the update is the one without kickstarting; with the labels, another.
    unlabelled, unlabelled_losses = update(dataclasses.replace(b, expert_actions=np.full(len(b), -1)))
    off, off_losses = update(dataclasses.replace(b, expert_actions=None))
    labelled, labelled_losses = update(b)
    assert all(torch.equal(unlabelled[k], off[k]) for k in off)
    assert unlabelled_losses and all(x == 0.0 for x in unlabelled_losses) and off_losses == []
    assert min(labelled_losses) > 0 and not all(torch.equal(labelled[k], off[k]) for k in off)


def test_kickstarting_needs_the_towns_expert() -> None:
    env = ParallelTrainEnv(lambda: GymAsParallel("CartPole-v1"), num_envs=2)
    with pytest.raises(ValueError, match=r"kickstart_coef.*no scripted expert"):
        Trainer(env, PPOConfig(num_envs=2, rollout_ticks=8, kickstart_coef=1.0), seed=0)

    class ExpertWithoutMotives(ParallelTrainEnv):
        def expert_actions(self) -> np.ndarray[Any, np.dtype[np.int64]]:
            return np.zeros(self.num_agents, np.int64)

    env = ExpertWithoutMotives(lambda: GymAsParallel("CartPole-v1"), num_envs=2)
    ppo = PPOConfig(num_envs=2, rollout_ticks=8, kickstart_coef=1.0, kickstart_on="shift")
    with pytest.raises(ValueError, match=r"^ppo.kickstart_on: ExpertWithoutMotives does not say why its expert acts"):
        Trainer(env, ppo, seed=0)


# -- checkpoints ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def poc_meta() -> dict[str, Any]:
    meta: dict[str, Any] = VecTown(load_config(REPO_ROOT / POC), 1, num_threads=1).observation_metadata()
    return meta


def conflict_policy(meta: dict[str, Any]) -> ConflictAwarePolicy:
    torch.manual_seed(11)
    return ConflictAwarePolicy(tuple(meta["map_shape"]), meta["n_features"], len(meta["action_names"]), 32)


CONFIG = {"world": {"seed": 1}, "ppo": {"gamma": 0.99}}


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_checkpoint_round_trip(suffix: str, poc_meta: dict[str, Any], tmp_path: Path) -> None:
    policy = conflict_policy(poc_meta)
    path = tmp_path / f"ckpt{suffix}"
    header_path = save_checkpoint(
        path, policy, obs_meta=poc_meta, config=CONFIG, seed=42, counters={"epochs": 3, "steps": 99}
    )
    assert header_path == path.with_suffix(".json") and header_path.is_file()
    loaded = load_checkpoint(path)
    state = policy.state_dict()
    assert set(loaded.state) == set(state)
    assert all(torch.equal(loaded.state[k], state[k]) for k in state)
    h = loaded.header
    assert h["format"] == "townlet.checkpoint" and h["format_version"] == FORMAT_VERSION == 1
    assert h["architecture"] == policy.spec()
    assert h["architecture"]["architecture"] == "conflict_aware"
    assert h["parameters"] == {k: list(v.shape) for k, v in state.items()}
    assert h["fingerprint"] == fingerprint(policy.spec(), poc_meta)
    assert h["config"] == CONFIG
    assert h["config_sha256"] == hashlib.sha256(canonical_json(CONFIG, indent=None).encode()).hexdigest()
    assert h["seed"] == 42 and h["counters"] == {"epochs": 3, "steps": 99}
    if suffix == ".safetensors":
        assert h["weights_file"] == path.name
        assert h["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() == loaded.sha256
    # The rebuilt module computes what the original does.
    rebuilt = loaded.policy()
    obs = torch.rand(5, poc_meta["obs_dim"])
    mask = torch.ones(5, len(poc_meta["action_names"]), dtype=torch.bool)
    with torch.no_grad():
        for x, y in zip(policy(obs, mask), rebuilt(obs, mask), strict=True):
            assert torch.equal(x, y)


def test_checkpoint_round_trip_mlp(tmp_path: Path) -> None:
    torch.manual_seed(3)
    policy = MLPPolicy(4, 2, 16)
    meta = {"obs_dim": 4, "action_names": ["0", "1"]}
    save_checkpoint(tmp_path / "m.json", policy, obs_meta=meta, config=None, seed=0, counters={})
    loaded = load_checkpoint(tmp_path / "m.json")
    assert loaded.header["architecture"] == {"architecture": "mlp", "obs_dim": 4, "n_actions": 2, "hidden": 16}
    assert loaded.header["config_sha256"] is None
    assert all(torch.equal(loaded.state[k], v) for k, v in policy.state_dict().items())


def _flip_weight_byte(path: Path) -> Path:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # inside the last tensor's data
    path.write_bytes(bytes(data))
    return path


def _edit_header(path: Path, edit: Any) -> Path:
    header_path = path.with_suffix(".json")
    header = json.loads(header_path.read_text(encoding="utf-8"))
    edit(header)
    header_path.write_text(json.dumps(header), encoding="utf-8")
    return header_path


def _wrong_shape(h: dict[str, Any]) -> None:
    h["parameters"]["policy_head.weight"] = [3, 3]


def _truncate(path: Path) -> Path:
    header_path = path.with_suffix(".json")
    text = header_path.read_bytes()
    header_path.write_bytes(text[: len(text) // 2])
    return header_path


TAMPERING = {
    "flipped_weight_byte": (".safetensors", _flip_weight_byte, "do not match the SHA-256"),
    "wrong_shape_sidecar": (".safetensors", lambda p: _edit_header(p, _wrong_shape), "'policy_head.weight' has shape"),
    "wrong_shape_json": (".json", lambda p: _edit_header(p, _wrong_shape), "'policy_head.weight' has shape"),
    "unknown_format_version": (
        ".safetensors",
        lambda p: _edit_header(p, lambda h: h.update(format_version=99)),
        "format_version 99 is not supported",
    ),
    "truncated_json": (".json", _truncate, "invalid JSON"),
    "truncated_sidecar": (".safetensors", _truncate, "invalid JSON"),
}


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_checkpoint_tampering(case: str, poc_meta: dict[str, Any], tmp_path: Path) -> None:
    suffix, damage, message = TAMPERING[case]
    path = tmp_path / f"ckpt{suffix}"
    save_checkpoint(path, conflict_policy(poc_meta), obs_meta=poc_meta, config=CONFIG, seed=1, counters={})
    load_checkpoint(path)  # intact: loads
    named = damage(path)
    with pytest.raises(UsageError) as info:
        load_checkpoint(path)
    text = str(info.value)
    assert str(named) in text, text
    assert message in text, text
    assert "\n" not in text


def test_sim_run_with_checkpoint(trained_ckpt: Path) -> None:
    res = run("sim", "run", "--config", POC, "--policy", trained_ckpt, "--tick-limit", "30", "--json")
    assert res.returncode == 0, str(res)
    summary = res.json()
    assert summary["ticks"] == 30 and summary["final_tick"] == 30
    assert summary["agent_steps"] == 30 * summary["agents"] > 0


def test_sim_run_refuses_mismatched_checkpoint(trained_ckpt: Path) -> None:
    res = run("sim", "run", "--config", QUEUE_CONFLICT, "--policy", trained_ckpt, "--tick-limit", "5", "--json")
    line = assert_one_line_error(res, str(trained_ckpt.with_suffix(".json")), "different observation/action spec")
    assert "feature_names" in line and "action_names" in line
    assert res.stdout == ""


def test_capture_with_checkpoint_policy(trained_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "captured"
    res = run(POC, "--policy", trained_ckpt, "--output", out, "--ticks", "20", tool="capture_rollout.py")
    assert res.returncode == 0, str(res)
    manifest = json.loads((out / "rollout_sample_manifest.json").read_text(encoding="utf-8"))
    assert manifest["metadata"]["policy"].startswith(f"checkpoint:{trained_ckpt.name}:")
    assert len(manifest["samples"]) == 9
    with np.load(out / manifest["samples"][0]["sample"]) as sample:
        masks, actions = sample["action_masks"], sample["actions"]
        assert masks[np.arange(len(actions)), actions].all()
        # A learned policy: stochastic log-probs and a value function (the scripted expert has neither).
        assert (sample["old_log_probs"] < 0).any() and np.all(sample["old_log_probs"] <= 0)
        assert np.abs(sample["value_preds"]).sum() > 0 and sample["value_preds"].shape == (21,)
    res = run(QUEUE_CONFLICT, "--policy", trained_ckpt, "--output", tmp_path / "x", tool="capture_rollout.py")
    assert_one_line_error(res, str(trained_ckpt.with_suffix(".json")), "different observation/action spec")
    assert not (tmp_path / "x" / "rollout_sample_manifest.json").exists()


# -- action masking, truncation bootstrap --------------------------------------------------------


def test_policy_never_picks_masked_action(trained_ckpt: Path) -> None:
    """The trained policy, and the same policy pushed hard towards an action that is usually
    masked, sample only valid actions."""
    vec = VecTown(load_config(REPO_ROOT / POC), 2, 9, num_threads=1)
    policy = CheckpointPolicy(trained_ckpt, seed=9)
    policy.check(vec.observation_metadata())
    release = vec.observation_metadata()["action_names"].index("release")
    biased = CheckpointPolicy(trained_ckpt, seed=9)
    with torch.no_grad():
        biased.net.policy_head.bias[release] += 50.0
    obs, _ = vec.reset(9)
    masked_seen = release_available = release_taken = 0
    for _ in range(100):
        masks = vec.action_masks()
        masked_seen += int((~masks).sum())
        for pol in (policy, biased):
            actions, logp, _ = pol(obs, masks)
            assert masks[np.arange(len(actions)), actions].all()
            assert np.isfinite(logp).all()
        actions, _, _ = biased(obs, masks)
        release_available += int(masks[:, release].sum())
        release_taken += int((actions == release).sum())
        obs, *_ = vec.step(policy(obs, masks)[0])
    assert masked_seen > 0
    # The bias works: where release is valid it is taken; where masked, never.
    assert release_available > 0 and release_taken == release_available


def test_collector_bootstraps_truncated_rows() -> None:
    cfg = load_config(REPO_ROOT / POC)
    env = TownTrainEnv(cfg, 2, 3, episode_ticks=5)
    ppo = PPOConfig(num_envs=2, rollout_ticks=12, hidden=32, gamma=0.9, gae_lambda=0.8)
    torch.manual_seed(0)
    policy = make_policy(env.metadata(), env.obs_dim, env.n_actions, ppo.hidden)
    finals: list[np.ndarray] = []
    step = env.step

    def recording_step(actions: np.ndarray) -> Any:
        batch = step(actions)
        finals.append(batch.final_obs.copy())
        return batch

    env.step = recording_step  # type: ignore[method-assign]
    collector = RolloutCollector(env, policy, ppo, seed=3)
    data, _ = collector.collect()
    buf = collector.buffer
    trunc, boot = np.asarray(buf.truncated), np.asarray(buf.bootstrap)
    assert [int(t) for t in np.flatnonzero(trunc.any(axis=1))] == [4, 9]  # every 5th tick, every agent
    assert trunc[[4, 9]].all() and not np.asarray(buf.terminated).any()
    assert np.array_equal(boot != 0, trunc)  # a bootstrap value exactly on truncated rows
    values, rewards, adv = np.asarray(buf.values), np.asarray(buf.rewards), np.asarray(buf.advantages)
    with torch.no_grad(), policy.computing_in(ppo.precision):  # the critic as the collector evaluates it
        for t in (4, 9):
            expected = policy.value(torch.from_numpy(finals[t])).numpy()
            np.testing.assert_allclose(boot[t], expected, rtol=1e-5, atol=1e-6)
            # The value of the final observation, not of the reset town's first one.
            after_reset = policy.value(torch.from_numpy(np.asarray(buf.obs)[t + 1])).numpy()
            assert not np.allclose(boot[t], after_reset)
            # GAE stops at the episode boundary and bootstraps from it.
            np.testing.assert_allclose(adv[t], rewards[t] + ppo.gamma * boot[t] - values[t], rtol=1e-4, atol=1e-5)
    assert len(data) == 12 * env.num_agents
    assert data.masks[np.arange(len(data)), data.actions].all()


# -- a non-Townlet PettingZoo env ----------------------------------------------------------------


def test_trainer_learns_cartpole_parallel_env() -> None:
    ppo = PPOConfig(learning_rate=2.5e-3, num_envs=2, rollout_ticks=128, hidden=32, update_epochs=4)
    env = ParallelTrainEnv(lambda: GymAsParallel("CartPole-v1"), num_envs=2)
    assert (env.num_agents, env.obs_dim, env.n_actions) == (2, 4, 2)
    torch.manual_seed(1)
    trainer = Trainer(env, ppo, seed=1, policy=MLPPolicy(env.obs_dim, env.n_actions, 32))
    result = trainer.run(25)
    returns = result.episode_returns
    assert len(returns) >= 30
    first, last = float(np.mean(returns[:10])), float(np.mean(returns[-10:]))
    assert first < 40  # a random policy balances ~20 steps
    assert last > 3 * first and last > 80, (first, last)
    assert all(r["data_mode"] == "rollout" for r in result.records)
    assert result.steps == 25 * 2 * 128


# -- telemetry thinning and rotation through the CLI ---------------------------------------------


def train_queue_conflict(log: Path, *extra: str) -> CliResult:
    return run(
        QUEUE_CONFLICT, "--mode", "rollout", "--epochs", "5", "--num-envs", "1", "--rollout-ticks", "20",
        "--ppo-log", log, "--checkpoint", log.with_suffix(".safetensors"), *extra, tool="run_training.py",
    )  # fmt: skip


def test_telemetry_thinning(tmp_path: Path) -> None:
    log = tmp_path / "thin.jsonl"
    res = train_queue_conflict(log, "--ppo-log-frequency", "2")
    assert res.returncode == 0, str(res)
    records = read_log(log)
    assert [r["epoch"] for r in records] == [2, 4, 5]  # every 2nd epoch, and the last
    assert [r["log_stream_offset"] for r in records] == [0, 1, 2]
    assert [r["steps"] for r in records] == [2 * 60, 4 * 60, 5 * 60]
    assert not Path(f"{log}.1").exists()


def test_telemetry_rotation(tmp_path: Path) -> None:
    log = tmp_path / "rot.jsonl"
    for k in (1, 2, 3):  # an earlier, longer run's rotated files must not survive or mix in
        Path(f"{log}.{k}").write_text('{"stale": true}\n', encoding="utf-8")
    res = train_queue_conflict(log, "--ppo-log-max-entries", "2")
    assert res.returncode == 0, str(res)
    files = [Path(f"{log}.2"), Path(f"{log}.1"), log]  # oldest first
    chunks = [read_log(p) for p in files]
    assert [[r["epoch"] for r in c] for c in chunks] == [[1, 2], [3, 4], [5]]
    offsets = [r["log_stream_offset"] for c in chunks for r in c]
    assert offsets == [0, 1, 2, 3, 4]
    assert not Path(f"{log}.3").exists()
    assert all(check_record(r, where=str(log)) == [] for c in chunks for r in c)


@pytest.mark.parametrize(
    ("flag", "value", "says"),
    [
        ("--max-grad-norm", "0", "greater than 0"),
        ("--learning-rate", "0", "greater than 0"),
        ("--kickstart-until", "0", "greater than 0"),
        ("--kickstart-until", "1.5", "less than or equal to 1"),
        ("--kickstart-on", "leisure", "'all', 'duties' or 'shift'"),
    ],
)
def test_train_flags_keep_the_ppo_bounds(flag: str, value: str, says: str, tmp_path: Path) -> None:
    """A flag overriding `ppo:` is held to the section's bounds and choices."""
    res = run("train", QUEUE_CONFLICT, "--epochs", "1", flag, value, "--checkpoint", tmp_path / "c.safetensors")
    assert_one_line_error(res, flag, says)
    assert not (tmp_path / "c.safetensors").exists()
