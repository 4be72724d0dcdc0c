"""`ppo.ent_coef_final`: the entropy coefficient annealed linearly from `ent_coef` to it over the run's epochs (the
final policy near-deterministic, so its greedy actions do what its sampled ones do: docs/training.md). Unset, the
coefficient stays `ent_coef` and a run is byte for byte what it was; a bad value is one `error:` line naming the
file, the line and the key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from conftest import RunCli, assert_one_line_error
from townlet.sim.settings import PPOConfig

QUEUE = Path("configs/scenarios/queue_conflict.yaml")
EPOCHS = 3
ARGS = ("--epochs", str(EPOCHS), "--num-envs", "2", "--rollout-ticks", "16", "--seed", "5")


def _config(name: str, ppo: str) -> Path:
    """The queue-conflict scenario with `ppo` (YAML lines under `ppo:`) appended, next to it (its includes resolve)."""
    path = QUEUE.with_name(f"{name}.yaml")
    path.write_text(QUEUE.read_text(encoding="utf-8") + ("\nppo:\n" + ppo if ppo else ""), encoding="utf-8")
    return path


def _train(cli: RunCli, config: Path, out: Path) -> tuple[list[dict[str, Any]], bytes]:
    """Train `config` briefly: its telemetry records and its checkpoint's bytes."""
    ckpt, log = out / "c.safetensors", out / "run.jsonl"
    res = cli("train", config, *ARGS, "--checkpoint", ckpt, "--ppo-log", log, "--no-shadow", timeout=240)
    assert res.returncode == 0, str(res)
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()], ckpt.read_bytes()


def test_the_coefficient_moves_linearly_from_ent_coef_to_ent_coef_final() -> None:
    cfg = PPOConfig(ent_coef=0.01, ent_coef_final=0.002)
    spent = [PPOConfig.spent(e, 4) for e in (1, 2, 3, 4)]
    assert spent == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert [cfg.ent_coef_at(s) for s in spent] == pytest.approx([0.01, 0.008, 0.006, 0.004])
    assert cfg.ent_coef_at(PPOConfig.spent(9, 4)) == pytest.approx(0.002)  # past the last epoch: the final value
    assert PPOConfig(ent_coef=0.02).ent_coef_at(0.5) == 0.02  # unset: constant
    assert PPOConfig().ent_coef_final is None


def test_kickstarting_falls_to_zero_by_kickstart_until_and_stays_there() -> None:
    whole, half = PPOConfig(kickstart_coef=0.8), PPOConfig(kickstart_coef=0.8, kickstart_until=0.5)
    shares = [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [whole.kickstart_at(s) for s in shares] == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0])
    assert [half.kickstart_at(s) for s in shares] == pytest.approx([0.8, 0.4, 0.0, 0.0, 0.0])
    with pytest.raises(ValidationError):
        PPOConfig(kickstart_until=0)


def test_kickstarting_falls_to_its_floor_and_keeps_it() -> None:
    whole = PPOConfig(kickstart_coef=0.8, kickstart_final=0.2)
    half = PPOConfig(kickstart_coef=0.8, kickstart_final=0.2, kickstart_until=0.5)
    shares = [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [whole.kickstart_at(s) for s in shares] == pytest.approx([0.8, 0.65, 0.5, 0.35, 0.2])
    assert [half.kickstart_at(s) for s in shares] == pytest.approx([0.8, 0.5, 0.2, 0.2, 0.2])
    with pytest.raises(ValidationError):
        PPOConfig(kickstart_final=-0.1)


def test_the_schedule_drives_the_update_and_unset_changes_nothing(cli: RunCli, tmp_path: Path) -> None:
    """Unset and set equal to ent_coef train the same bytes; a schedule trains the first epoch as the constant
    coefficient does (its coefficient is ent_coef), then differs, and each record's loss_total counts the epoch's
    coefficient."""
    runs = {}
    for name, ppo in (("plain", ""), ("equal", "  ent_coef: 0.01\n  ent_coef_final: 0.01\n"),
                      ("annealed", "  ent_coef: 0.01\n  ent_coef_final: 2.0\n")):  # fmt: skip
        (tmp_path / name).mkdir()
        runs[name] = _train(cli, _config(f"ent_{name}", ppo), tmp_path / name)
    untimed = [{k: r[k] for k in ("loss_policy", "loss_value", "loss_entropy", "loss_total")} for r in runs["plain"][0]]
    assert untimed == [{k: r[k] for k in untimed[0]} for r in runs["equal"][0]]
    assert runs["plain"][1] == runs["equal"][1]
    annealed, ckpt = runs["annealed"]
    assert ckpt != runs["plain"][1]
    assert annealed[0]["loss_policy"] == runs["plain"][0][0]["loss_policy"]
    assert annealed[-1]["loss_entropy"] != runs["plain"][0][-1]["loss_entropy"]
    cfg = PPOConfig(ent_coef=0.01, ent_coef_final=2.0)
    for rec in annealed:
        coef = cfg.ent_coef_at(PPOConfig.spent(rec["epoch"], EPOCHS))
        expected = rec["loss_policy"] + 0.5 * rec["loss_value"] - coef * rec["loss_entropy"]
        assert rec["loss_total"] == pytest.approx(expected, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    ("value", "says"),
    [("-0.1", "greater than or equal to 0"), ('"lots"', "valid number"), (".nan", "finite")],
)
def test_a_bad_value_is_one_line_naming_file_line_and_key(cli: RunCli, tmp_path: Path, value: str, says: str) -> None:
    config = _config("ent_bad", f"  ent_coef_final: {value}\n")
    line = len(config.read_text(encoding="utf-8").splitlines())
    res = cli("train", config, *ARGS, "--checkpoint", tmp_path / "c.safetensors", "--no-shadow")
    assert_one_line_error(res, f"{config}:{line}: ppo.ent_coef_final", says)
    assert not (tmp_path / "c.safetensors").exists()
    assert_one_line_error(cli("validate", config), "ppo.ent_coef_final", says)


def test_every_ppo_key_is_in_the_docs_table() -> None:
    doc = Path("docs/training.md").read_text(encoding="utf-8")
    table = doc[doc.index("`ppo:` (`PPOConfig`)") : doc.index("`bc:` (`BCConfig`)")]
    assert [k for k in PPOConfig.model_fields if f"| `{k}` |" not in table] == []


def test_the_trainer_pulls_with_the_floor_to_the_end(cli: RunCli, tmp_path: Path) -> None:
    """A run of 3 epochs with the pull fading over half of it, to a floor of 0.4: each record's weight is the schedule's
    (1.0, then 0.6, then the floor), and the imitation term counts in every epoch's loss."""
    ppo = "  kickstart_coef: 1.0\n  kickstart_final: 0.4\n  kickstart_until: 0.5\n"
    records, _ = _train(cli, _config("kick_floor", ppo), tmp_path)
    assert [r["kickstart_coef"] for r in records] == pytest.approx([1.0, 0.6, 0.4])
    assert all(r["loss_imitation"] > 0 for r in records)


def test_the_flags_set_the_floor_and_the_entropy_fade(cli: RunCli, tmp_path: Path) -> None:
    """`--kickstart-final` and `--ent-coef-final` (as `make run` passes them) are the `ppo:` keys: the pull falls to its
    floor (1.0, 0.6, 0.4 over 3 epochs fading by half the run) and the entropy coefficient moves linearly towards 0."""
    ckpt, log = tmp_path / "c.safetensors", tmp_path / "run.jsonl"
    flags = ("--kickstart-coef", "1.0", "--kickstart-until", "0.5", "--kickstart-final", "0.4", "--ent-coef-final", "0")
    res = cli("train", QUEUE, *ARGS, *flags, "--checkpoint", ckpt, "--ppo-log", log, "--no-shadow", timeout=240)
    assert res.returncode == 0, str(res)
    records = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [r["kickstart_coef"] for r in records] == pytest.approx([1.0, 0.6, 0.4])
    for rec, ent in zip(records, [0.01 * (1 - k / 3) for k in range(3)], strict=True):
        expected = (
            rec["loss_policy"]
            + 0.5 * rec["loss_value"]
            - ent * rec["loss_entropy"]
            + rec["kickstart_coef"] * rec["loss_imitation"]
        )
        assert rec["loss_total"] == pytest.approx(expected, rel=1e-6, abs=1e-9)
