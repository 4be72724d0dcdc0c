"""`townlet sim run` and `tools/run_simulation.py` as a user runs them: JSON summary, determinism, snapshots,
clear one-line errors, the human KPI table, and the acceptance KPIs of the default town."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import DEFAULT_CONFIG_REL, CliResult, RunCli, WriteConfig, assert_one_line_error
from townlet import SNAPSHOT_VERSION, Simulation, load_config

CONFIG = DEFAULT_CONFIG_REL
KPI_KEYS = ("self_sufficiency", "on_time_rate", "relationship_coverage")


def sim_json(cli: RunCli, *args: str | Path, tool: bool = False) -> dict:
    """`townlet sim run ARGS --json` (or `tools/run_simulation.py ARGS --json`): the parsed summary."""
    res = cli(*([] if tool else ["sim", "run"]), *args, "--json", tool=tool)
    assert res.returncode == 0, str(res)
    assert res.stderr.strip() == "", str(res)
    return res.json()


def no_stray_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


# -- the JSON summary ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", [False, True], ids=["python-m-townlet", "tools-run_simulation"])
def test_json_summary_is_one_object_with_kpis(cli: RunCli, tool: bool) -> None:
    res = cli(*([] if tool else ["sim", "run"]), "--config", CONFIG, "--tick-limit", "120", "--json", tool=tool)
    assert res.returncode == 0, str(res)
    # Exactly one JSON object on stdout, nothing else.
    assert len(res.stdout.strip().splitlines()) == 1, str(res)
    out = res.json()
    assert out["ticks"] == 120
    assert out["final_tick"] == 120
    assert out["agents"] == 9
    assert len(out["agent_ids"]) == 9
    assert isinstance(out["world_hash"], str)
    assert len(out["world_hash"]) >= 16
    int(out["world_hash"], 16)  # hex
    for key in KPI_KEYS:
        value = out["kpis"][key]
        assert isinstance(value, float)
        assert 0.0 <= value <= 1.0, (key, value)
    assert out["agent_steps"] == 9 * 120
    assert out["agent_steps_per_sec"] > 0


def test_tool_and_subcommand_agree(cli: RunCli) -> None:
    a = sim_json(cli, "--config", CONFIG, "--tick-limit", "300")
    b = sim_json(cli, "--config", CONFIG, "--tick-limit", "300", tool=True)
    assert a["world_hash"] == b["world_hash"]
    assert a["kpis"] == b["kpis"]
    assert a["seed"] == b["seed"]


def test_same_seed_same_hash_and_seed_override_changes_it(cli: RunCli) -> None:
    first = sim_json(cli, "--config", CONFIG, "--tick-limit", "400")
    second = sim_json(cli, "--config", CONFIG, "--tick-limit", "400")
    assert first["world_hash"] == second["world_hash"]
    assert first["kpis"] == second["kpis"]

    other = sim_json(cli, "--config", CONFIG, "--tick-limit", "400", "--seed", "7")
    assert other["seed"] == 7
    assert other["seed"] != first["seed"]
    assert other["world_hash"] != first["world_hash"]


def test_tick_limit_zero_is_the_initial_state(cli: RunCli) -> None:
    out = sim_json(cli, "--config", CONFIG, "--tick-limit", "0")
    assert out["final_tick"] == 0
    assert out["agent_steps"] == 0
    assert out["ticks"] == 0


# -- snapshots ------------------------------------------------------------------------------------------


def test_snapshot_continuation_equals_straight_run(cli: RunCli, tmp_path: Path) -> None:
    n = 700  # crosses the first shift start and the delivery tick
    snap = tmp_path / "snap.json"
    half = sim_json(cli, "--config", CONFIG, "--tick-limit", str(n), "--save-snapshot", snap)
    assert snap.is_file()
    assert half["snapshot"] == str(snap)
    json.loads(snap.read_text(encoding="utf-8"))  # a complete JSON document
    assert no_stray_files(tmp_path) == ["snap.json"]  # no temp files left behind

    resumed = sim_json(cli, "--config", CONFIG, "--load-snapshot", snap, "--tick-limit", str(n))
    straight = sim_json(cli, "--config", CONFIG, "--tick-limit", str(2 * n))
    assert resumed["start_tick"] == n
    assert resumed["final_tick"] == 2 * n
    assert straight["final_tick"] == 2 * n
    assert resumed["world_hash"] == straight["world_hash"]
    assert resumed["world_hash"] != half["world_hash"]


def test_snapshot_into_unwritable_location_is_a_clear_error(cli: RunCli, tmp_path: Path) -> None:
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a regular file\n", encoding="utf-8")
    target = blocker / "sub" / "snap.json"  # its parent can never be created
    res = cli("sim", "run", "--config", CONFIG, "--tick-limit", "10", "--save-snapshot", target, "--json")
    assert_one_line_error(res, str(target), "snapshot")
    assert res.stdout.strip() == ""  # no summary claiming a snapshot was written
    assert not target.exists()
    assert no_stray_files(tmp_path) == ["not_a_dir"]
    assert blocker.read_text(encoding="utf-8") == "a regular file\n"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_snapshot_into_read_only_directory_is_a_clear_error(cli: RunCli, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        target = ro / "snap.json"
        res = cli("sim", "run", "--config", CONFIG, "--tick-limit", "10", "--save-snapshot", target)
        assert_one_line_error(res, str(target))
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_snapshot_with_missing_parent_directory_is_written_whole(cli: RunCli, tmp_path: Path) -> None:
    # Current contract: the atomic writer creates missing parent directories (see report); the result must be a
    # complete, loadable snapshot and nothing else.
    target = tmp_path / "new" / "dir" / "snap.json"
    sim_json(cli, "--config", CONFIG, "--tick-limit", "50", "--save-snapshot", target)
    assert no_stray_files(target.parent) == ["snap.json"]
    resumed = sim_json(cli, "--config", CONFIG, "--load-snapshot", target, "--tick-limit", "0")
    assert resumed["final_tick"] == 50


def test_loading_snapshot_with_another_config_is_a_clear_error(
    cli: RunCli, tmp_path: Path, write_config: WriteConfig
) -> None:
    snap = tmp_path / "snap.json"
    sim_json(cli, "--config", CONFIG, "--tick-limit", "30", "--save-snapshot", snap)

    # A different config file (one price changed).
    other = write_config(lambda d: d["economy"]["prices"].__setitem__("meal_cost", 0.31), name="other.yaml")
    res = cli("sim", "run", "--config", other, "--load-snapshot", snap, "--tick-limit", "5", "--json")
    line = assert_one_line_error(res, str(snap))
    assert "config" in line
    assert res.stdout.strip() == ""

    # The same file with another seed is another config too.
    res = cli("sim", "run", "--config", CONFIG, "--seed", "3", "--load-snapshot", snap, "--tick-limit", "5")
    assert_one_line_error(res, str(snap), "config")


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "cannot read snapshot"),  # missing file
        ("this is not json\n", "JSON"),
        ('{"version": 1}\n', ""),
    ],
    ids=["missing", "not-json", "incomplete"],
)
def test_bad_snapshot_files_are_clear_errors(cli: RunCli, tmp_path: Path, content: str | None, fragment: str) -> None:
    snap = tmp_path / "snap.json"
    if content is not None:
        snap.write_text(content, encoding="utf-8")
    res = cli("sim", "run", "--config", CONFIG, "--load-snapshot", snap, "--tick-limit", "5")
    assert_one_line_error(res, str(snap), fragment)


def test_snapshot_from_another_format_version_is_a_clear_error(
    cli: RunCli, tmp_path: Path, default_config_path: Path
) -> None:
    sim = Simulation(load_config(default_config_path))
    sim.run(20)
    data = json.loads(sim.town.snapshot())
    assert data["version"] == SNAPSHOT_VERSION
    data["version"] = SNAPSHOT_VERSION + 98
    snap = tmp_path / "future.json"
    snap.write_text(json.dumps(data), encoding="utf-8")
    res = cli("sim", "run", "--config", CONFIG, "--load-snapshot", snap, "--tick-limit", "5")
    assert_one_line_error(res, str(snap), f"version {SNAPSHOT_VERSION + 98}")


# -- bad input ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("tool", [False, True], ids=["python-m-townlet", "tools-run_simulation"])
def test_missing_config_file(cli: RunCli, tmp_path: Path, tool: bool) -> None:
    missing = tmp_path / "nope.yaml"
    res = cli(*([] if tool else ["sim", "run"]), "--config", missing, "--tick-limit", "5", "--json", tool=tool)
    assert_one_line_error(res, str(missing), "not found")
    assert res.stdout.strip() == ""


def test_error_text_is_printed_literally(cli: RunCli, tmp_path: Path) -> None:
    # Brackets in paths and messages are text, not console markup.
    missing = tmp_path / "[draft] town [v2].yaml"
    res = cli("sim", "run", "--config", missing, "--tick-limit", "5")
    line = assert_one_line_error(res, "not found")
    assert line == f"error: {missing}: file not found"


@pytest.mark.parametrize("tool", [False, True], ids=["python-m-townlet", "tools-run_simulation"])
def test_malformed_yaml(cli: RunCli, write_config: WriteConfig, tool: bool) -> None:
    bad = write_config(text="config_id: broken\nworld:\n  layout: [\n  objects: : nope\n")
    res = cli(*([] if tool else ["sim", "run"]), "--config", bad, "--tick-limit", "5", tool=tool)
    assert_one_line_error(res, f"{bad}:4:", "invalid YAML")


@pytest.mark.parametrize("tool", [False, True], ids=["python-m-townlet", "tools-run_simulation"])
def test_invalid_value(cli: RunCli, write_config: WriteConfig, tool: bool) -> None:
    bad = write_config(lambda d: d["queue_fairness"].__setitem__("cooldown_ticks", "ten"))
    res = cli(*([] if tool else ["sim", "run"]), "--config", bad, "--tick-limit", "5", "--json", tool=tool)
    line = assert_one_line_error(res, str(bad), 'queue_fairness.cooldown_ticks: expected integer >= 0, got "ten"')
    # The line number points at the offending key.
    lineno = int(line.split(f"{bad}:", 1)[1].split(":", 1)[0])
    assert "cooldown_ticks" in bad.read_text(encoding="utf-8").splitlines()[lineno - 1]
    assert res.stdout.strip() == ""


def test_negative_tick_limit_is_a_usage_error(cli: RunCli) -> None:
    res = cli("sim", "run", "--config", CONFIG, "--tick-limit", "-1")
    assert res.returncode == 2, str(res)
    assert "Traceback" not in res.stderr
    assert "--tick-limit" in res.stderr


# -- human output ---------------------------------------------------------------------------------------


def test_human_output_has_kpi_table(cli: RunCli) -> None:
    res: CliResult = cli("sim", "run", "--config", CONFIG, "--tick-limit", "200")
    assert res.returncode == 0, str(res)
    out = res.stdout
    for label in ("KPI", "self-sufficiency", "on-time rate", "relationship coverage", "agent steps / s"):
        assert label in out, label
    assert "poc_hybrid_v1" in out
    assert "world hash" in out
    assert "at tick 200" in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)
    # The hash shown is the prefix of the JSON one.
    full = sim_json(cli, "--config", CONFIG, "--tick-limit", "200")["world_hash"]
    assert full[:16] in out


# -- acceptance KPIs --------------------------------------------------------------------------------------


def test_default_town_meets_acceptance_kpis_over_three_days(cli: RunCli) -> None:
    out = sim_json(cli, "--config", CONFIG, "--tick-limit", "4320")
    assert out["final_tick"] == 4320
    kpis = out["kpis"]
    assert kpis["self_sufficiency"] >= 0.70, kpis
    assert kpis["on_time_rate"] >= 0.85, kpis
    assert kpis["relationship_coverage"] >= 0.60, kpis
    assert kpis["shifts_scheduled"] > 0, kpis  # the on-time rate is over real shifts
