"""Rollout capture end to end, through the tools a user runs (seed 000, SPEC §6).

Every capture here goes through `python tools/capture_rollout.py` (or the suite / merge / drift tools)
as a subprocess from a checkout-like working directory, exactly as the checklist tells users to run them. The five
golden scenarios are captured once per session and shared; tests that need a different capture make
their own under tmp_path.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import REPO_ROOT, CliResult, assert_one_line_error, load_yaml
from townlet.capture import goldens
from townlet.capture.rollout import TRAINING_ARRAYS
from townlet.jsonio import canonical_json

SCENARIOS = ("kitchen_breakfast", "queue_conflict", "employment_punctuality", "rivalry_decay", "observation_baseline")
PREFIX = "rollout_sample"
GOLDEN = REPO_ROOT / "docs/samples/rollout_scenario_stats.json"
CAPTURE = "tools/capture_rollout.py"
SUITE = "tools/capture_rollout_suite.py"
MERGE = "tools/merge_rollout_metrics.py"
DRIFT = "tools/check_rollout_drift.py"
METADATA_KEYS = {"config_id", "scenario_name", "timestamp", "seed", "manifest_checksum"}
EPOCH_ZERO = "1970-01-01T00:00:00Z"
DTYPES = {
    "map": np.float32,
    "features": np.float32,
    "actions": np.int64,
    "old_log_probs": np.float32,
    "value_preds": np.float32,
    "rewards": np.float32,
    "dones": np.bool_,
    "truncations": np.bool_,
    "action_masks": np.bool_,
    "alive": np.bool_,
}


def scenario_config(name: str) -> str:
    return f"configs/scenarios/{name}.yaml"


def scenario_yaml(name: str) -> dict[str, Any]:
    data = load_yaml(REPO_ROOT / scenario_config(name))
    assert isinstance(data, dict)
    return data


def tool_env(**extra: str) -> dict[str, str]:
    """The caller's environment, minus anything that changes output: no colour, SOURCE_DATE_EPOCH pinned to 0
    (captures are compared byte for byte; unset, the timestamp is the clock's), and no COLUMNS (so Rich uses
    its narrow non-terminal default and must not wrap messages)."""
    env = dict(os.environ)
    for key in (
        "FORCE_COLOR",
        "CLICOLOR_FORCE",
        "TTY_COMPATIBLE",
        "TTY_INTERACTIVE",
        "PYTHONWARNINGS",
        "SOURCE_DATE_EPOCH",
        "COLUMNS",
    ):
        env.pop(key, None)
    env["NO_COLOR"] = "1"
    env["TERM"] = "dumb"
    env["SOURCE_DATE_EPOCH"] = "0"
    env.update(extra)
    return env


def run_tool(script: str, *args: str | Path, env: dict[str, str] | None = None) -> CliResult:
    argv = [sys.executable, script, *(str(a) for a in args)]
    proc = subprocess.run(argv, env=env or tool_env(), capture_output=True, text=True, timeout=120, check=False)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def capture(scenario: str, output: Path, *extra: str, env: dict[str, str] | None = None) -> CliResult:
    res = run_tool(CAPTURE, scenario_config(scenario), "--output", output, *extra, env=env)
    assert res.returncode == 0, str(res)
    return res


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def file_bytes(folder: Path) -> dict[str, bytes]:
    """Every entry of a capture folder by name (a sub-folder shows up as b"<dir>")."""
    return {p.name: p.read_bytes() if p.is_file() else b"<dir>" for p in sorted(folder.iterdir())}


def expected_stems(scenario: str) -> list[str]:
    agents = [a["id"] for a in scenario_yaml(scenario)["agents"]]
    return [f"{PREFIX}_{agent}_{slot + 1:03d}" for slot, agent in enumerate(agents)]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def captured(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """scenario -> its capture folder, made with `tools/capture_rollout.py` on first use."""
    root = tmp_path_factory.mktemp("captures")
    done: dict[str, Path] = {}

    def get(scenario: str) -> Path:
        if scenario not in done:
            res = capture(scenario, root / scenario)
            assert f"into {root / scenario}" in res.stdout, str(res)
            done[scenario] = root / scenario
        return done[scenario]

    return get


@pytest.fixture(scope="session")
def suite_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """All five scenarios captured by `tools/capture_rollout_suite.py` into one output root."""
    root = tmp_path_factory.mktemp("suite") / "rollout_refresh"
    res = run_tool(SUITE, *(scenario_config(s) for s in SCENARIOS), "--output-root", root)
    assert res.returncode == 0, str(res)
    for s in SCENARIOS:
        assert f"{s}: {len(expected_stems(s))} samples -> {root / s}" in res.stdout, str(res)
    return root


@pytest.fixture(scope="session")
def golden() -> dict[str, Any]:
    data = read_json(GOLDEN)
    assert isinstance(data, dict)
    return data


# -- one capture per scenario: files, arrays, checksums, metrics -------------------------------------


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_capture_writes_samples_manifest_and_metrics(scenario: str, captured: Callable[[str], Path]) -> None:
    folder = captured(scenario)
    stems = expected_stems(scenario)
    expected = {f"{s}{ext}" for s in stems for ext in (".npz", ".json")}
    expected |= {f"{PREFIX}_manifest.json", f"{PREFIX}_metrics.json"}
    # Exactly these files: no staging folder or temp file is left behind.
    assert {p.name for p in folder.iterdir()} == expected

    cfg = scenario_yaml(scenario)
    manifest = read_json(folder / f"{PREFIX}_manifest.json")
    meta = manifest["metadata"]
    assert set(meta) >= METADATA_KEYS, sorted(meta)
    assert meta["config_id"] == cfg["config_id"]
    assert meta["scenario_name"] == cfg["scenario"]["name"] == scenario
    assert meta["seed"] == cfg["seed"]
    assert meta["ticks"] == cfg["scenario"]["ticks"]
    assert meta["timestamp"] == EPOCH_ZERO
    assert meta["policy"] == "scripted"
    assert len(meta["manifest_checksum"]) == 64
    int(meta["manifest_checksum"], 16)

    # One manifest dialect: the same metadata block in the metrics file and every sidecar.
    metrics = read_json(folder / f"{PREFIX}_metrics.json")
    assert metrics["metadata"] == meta
    assert [e["sample"] for e in manifest["samples"]] == [f"{s}.npz" for s in stems]
    assert sorted(metrics["samples"]) == sorted(f"{s}.npz" for s in stems)
    for entry, stem in zip(manifest["samples"], stems, strict=True):
        assert entry["meta"] == f"{stem}.json"
        assert entry["agent_id"] == stem.split("_")[-2]
        assert entry["frame_count"] == meta["ticks"]
        # The checksums are those of the files on disk.
        assert entry["sha256"] == sha256(folder / entry["sample"])
        assert entry["meta_sha256"] == sha256(folder / entry["meta"])
        sidecar = read_json(folder / entry["meta"])
        assert sidecar["capture_metadata"] == meta
        assert sidecar["agent_id"] == entry["agent_id"]
        assert sidecar["metrics"] == metrics["samples"][entry["sample"]]
    # Canonical JSON: re-serialising gives the same bytes.
    for name in (f"{PREFIX}_manifest.json", f"{PREFIX}_metrics.json", f"{stems[0]}.json"):
        text = (folder / name).read_text(encoding="utf-8")
        assert text == canonical_json(json.loads(text)), name


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_capture_arrays_shapes_dtypes_and_masks(scenario: str, captured: Callable[[str], Path]) -> None:
    folder = captured(scenario)
    ticks = scenario_yaml(scenario)["scenario"]["ticks"]
    for stem in expected_stems(scenario):
        arrays = npz(folder / f"{stem}.npz")
        side = read_json(folder / f"{stem}.json")
        assert set(arrays) == set(TRAINING_ARRAYS) == set(side["training_arrays"])
        for name, dtype in DTYPES.items():
            assert arrays[name].dtype == dtype, (stem, name, arrays[name].dtype)
        t, f, a = ticks, len(side["feature_names"]), len(side["action_names"])
        c, h, w = side["map_shape"]
        assert len(side["map_channels"]) == c
        assert arrays["map"].shape == (t, c, h, w)
        assert arrays["features"].shape == (t, f)
        assert arrays["action_masks"].shape == (t, a)
        assert arrays["value_preds"].shape == (t + 1,)
        for name in ("actions", "old_log_probs", "rewards", "dones", "truncations", "alive"):
            assert arrays[name].shape == (t,), (stem, name)
        assert side["timesteps"] == t and side["value_pred_steps"] == t + 1 and side["action_dim"] == a

        # Observations are finite and inside the declared Box(-1, 1); the map is not blank.
        for name in ("map", "features", "rewards", "value_preds", "old_log_probs"):
            assert np.isfinite(arrays[name]).all(), (stem, name)
        assert arrays["features"].min() >= -1.0 and arrays["features"].max() <= 1.0
        assert arrays["map"].min() >= 0.0 and arrays["map"].max() <= 1.0 and arrays["map"].any()

        # Every recorded action is in range; wait is always allowed (masks: see the tests below).
        assert arrays["alive"].all(), f"{stem}: every golden agent lives through its scenario"
        actions = arrays["actions"]
        assert ((actions >= 0) & (actions < a)).all()
        assert arrays["action_masks"][:, side["action_names"].index("wait")].all()

        # The capture ends by truncation (no autoreset inside it); dones = terminated | truncated.
        assert arrays["truncations"].tolist() == [False] * (t - 1) + [True]
        assert arrays["dones"][-1] and not arrays["dones"][:-1].any()

        # The scripted expert is deterministic with no value function.
        assert not arrays["old_log_probs"].any()
        assert not arrays["value_preds"].any()


def script_lengths(scenario: str) -> dict[str, float]:
    """agent -> the number of leading ticks its `script` decides (inf with script_loop)."""
    out: dict[str, float] = {}
    for agent in scenario_yaml(scenario)["agents"]:
        script = agent.get("script") or []
        out[agent["id"]] = float("inf") if script and agent.get("script_loop") else float(len(script))
    return out


def masked_rows(folder: Path, stem: str) -> np.ndarray:
    """Ticks at which the recorded action is not allowed by the recorded mask (alive ticks only)."""
    arrays = npz(folder / f"{stem}.npz")
    t = len(arrays["actions"])
    allowed = arrays["action_masks"][np.arange(t), arrays["actions"]]
    return np.nonzero(~allowed & arrays["alive"])[0]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_expert_chosen_actions_are_valid_under_their_masks(scenario: str, captured: Callable[[str], Path]) -> None:
    """Every tick the scripted expert decides (after an agent's `script`) records an allowed action."""
    folder = captured(scenario)
    lengths = script_lengths(scenario)
    expert_ticks = 0
    for stem in expected_stems(scenario):
        agent = stem.split("_")[-2]
        ticks = len(npz(folder / f"{stem}.npz")["actions"])
        expert_ticks += max(0, ticks - int(min(lengths[agent], ticks)))
        bad = masked_rows(folder, stem)
        assert (bad < lengths[agent]).all(), f"{stem}: the expert chose masked actions at ticks {bad.tolist()}"
    assert expert_ticks > 0


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_recorded_action_is_valid_under_its_mask(scenario: str, captured: Callable[[str], Path]) -> None:
    """Training data must not hold actions a masked policy gives probability 0 (log-prob -inf)."""
    folder = captured(scenario)
    bad = {stem: masked_rows(folder, stem).tolist() for stem in expected_stems(scenario)}
    assert not any(bad.values()), f"masked actions recorded: {bad}"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_capture_metrics_match_the_golden(
    scenario: str, captured: Callable[[str], Path], golden: dict[str, Any]
) -> None:
    folder = captured(scenario)
    entry = goldens.read_capture_metrics(folder)
    drifts = goldens.compare(golden[scenario], entry, scenario)
    assert drifts == [], "\n".join(map(str, drifts))

    # The metrics describe the arrays written beside them.
    for stem in expected_stems(scenario):
        arrays = npz(folder / f"{stem}.npz")
        side = read_json(folder / f"{stem}.json")
        m = entry["samples"][f"{stem}.npz"]
        assert m["timesteps"] == len(arrays["rewards"])
        assert m["alive_ticks"] == arrays["alive"].sum()
        assert m["reward_sum"] == pytest.approx(float(arrays["rewards"].sum(dtype=np.float64)), abs=1e-9)
        assert m["done_count"] == arrays["dones"].sum()
        counts = np.bincount(arrays["actions"], minlength=len(side["action_names"]))
        for name, count in zip(side["action_names"], counts, strict=True):
            assert m[f"action_{name}_count"] == count, name
        col = side["feature_names"].index("rivalry_max")
        assert m["rivalry_max_max"] == pytest.approx(float(arrays["features"][:, col].max()))


def sample_metrics(folder: Path) -> dict[str, dict[str, float]]:
    data = read_json(folder / f"{PREFIX}_metrics.json")["samples"]
    return {name.split("_")[-2]: m for name, m in data.items()}


def events(folder: Path) -> dict[str, float]:
    result = read_json(folder / f"{PREFIX}_metrics.json")["events"]
    assert isinstance(result, dict)
    return result


def test_queue_conflict_metrics_show_conflicts_and_rivalry(captured: Callable[[str], Path]) -> None:
    folder = captured("queue_conflict")
    ev = events(folder)
    assert ev["queue_conflict_events"] > 0
    assert ev["queue_conflict_intensity_sum"] > 0
    assert ev["shower_complete_events"] > 0
    threshold = scenario_yaml("queue_conflict")["conflict"]["avoid_threshold"]
    samples = sample_metrics(folder)
    assert max(m["rivalry_max_max"] for m in samples.values()) > threshold


def test_employment_metrics_show_lateness_and_late_help(captured: Callable[[str], Path]) -> None:
    folder = captured("employment_punctuality")
    assert events(folder)["late_help_events"] >= 1
    samples = sample_metrics(folder)
    assert samples["erin"]["lateness_mean"] > 0
    assert samples["dawn"]["lateness_mean"] == 0


def test_kitchen_breakfast_metrics_show_a_shared_meal(captured: Callable[[str], Path]) -> None:
    ev = events(captured("kitchen_breakfast"))
    assert ev["shared_meal_events"] >= 1
    assert ev["chat_success_events"] >= 1


def test_observation_baseline_is_quiet(captured: Callable[[str], Path]) -> None:
    """The control scenario: nothing happens, so every event counter stays at zero."""
    assert all(v == 0 for v in events(captured("observation_baseline")).values())


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_rewards_are_not_pinned(scenario: str, captured: Callable[[str], Path]) -> None:
    folder = captured(scenario)
    clip = float((scenario_yaml(scenario).get("rewards") or {}).get("clip_per_tick", 4.0))
    per_agent = []
    for stem in expected_stems(scenario):
        rewards = npz(folder / f"{stem}.npz")["rewards"]
        # Nowhere near the per-tick clip but on one tick at most: an on-time arrival, whose punctuality bonus
        # (4.0 by default, paid once per shift; every scenario is shorter than a day) nears it. Not zero throughout.
        assert int((np.abs(rewards) >= clip / 2).sum()) <= 1, stem
        assert np.abs(rewards).max() > 0, stem
        if scenario != "observation_baseline":  # the idle control agent earns a constant reward
            assert np.ptp(rewards) > 1e-6, f"{stem}: every reward identical"
        per_agent.append(rewards)
    if len(per_agent) > 1:
        assert any(not np.array_equal(per_agent[0], r) for r in per_agent[1:]), "all agents got the same rewards"


# -- determinism ------------------------------------------------------------------------------------


@pytest.mark.parametrize("compress", [False, True], ids=["stored", "compressed"])
def test_same_config_and_seed_capture_byte_identical(
    compress: bool, tmp_path: Path, captured: Callable[[str], Path]
) -> None:
    flag = ("--compress",) if compress else ()
    first, second = tmp_path / "first", tmp_path / "second"
    capture("kitchen_breakfast", first, *flag)
    capture("kitchen_breakfast", second, *flag)
    a, b = file_bytes(first), file_bytes(second)
    assert list(a) == list(b)
    for name in a:
        assert a[name] == b[name], f"{name} differs between two captures of the same config and seed"

    stored = captured("kitchen_breakfast")
    for stem in expected_stems("kitchen_breakfast"):
        path = first / f"{stem}.npz"
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
        expected_method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        assert {i.compress_type for i in infos} == {expected_method}
        # No wall-clock date inside the archive.
        assert {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
        # Compressed or not, the arrays are the same.
        plain, packed = npz(stored / f"{stem}.npz"), npz(path)
        assert all(np.array_equal(plain[k], packed[k]) for k in TRAINING_ARRAYS)
        if compress:
            assert path.stat().st_size < (stored / f"{stem}.npz").stat().st_size
        else:
            assert path.read_bytes() == (stored / f"{stem}.npz").read_bytes()
        # The sidecar does not depend on --compress.
        assert (first / f"{stem}.json").read_bytes() == (stored / f"{stem}.json").read_bytes()


def _strip_timestamps(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_timestamps(v) for k, v in obj.items() if k != "timestamp"}
    if isinstance(obj, list):
        return [_strip_timestamps(v) for v in obj]
    return obj


def test_source_date_epoch_sets_timestamp_and_nothing_else(tmp_path: Path, captured: Callable[[str], Path]) -> None:
    base = captured("queue_conflict")
    out = tmp_path / "dated"
    capture("queue_conflict", out, env=tool_env(SOURCE_DATE_EPOCH="1700000000"))
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in base.iterdir())
    for path in sorted(out.iterdir()):
        if path.suffix == ".npz":
            assert path.read_bytes() == (base / path.name).read_bytes(), path.name
            continue
        dated, plain = read_json(path), read_json(base / path.name)
        meta = dated.get("metadata") or dated.get("capture_metadata")
        assert meta["timestamp"] == "2023-11-14T22:13:20Z", path.name
        if path.name != f"{PREFIX}_manifest.json":  # the manifest also holds the sidecars' checksums
            assert _strip_timestamps(dated) == _strip_timestamps(plain), path.name
    manifest, plain_manifest = read_json(out / f"{PREFIX}_manifest.json"), read_json(base / f"{PREFIX}_manifest.json")
    assert [s["sha256"] for s in manifest["samples"]] == [s["sha256"] for s in plain_manifest["samples"]]


def test_bad_source_date_epoch_is_a_usage_error(tmp_path: Path) -> None:
    for value in ("yesterday", "99999999999999999"):
        out = tmp_path / f"out_{value}"
        res = run_tool(
            CAPTURE, scenario_config("observation_baseline"), "--output", out, env=tool_env(SOURCE_DATE_EPOCH=value)
        )
        assert_one_line_error(res, "SOURCE_DATE_EPOCH")
        assert not out.exists()


# -- options ----------------------------------------------------------------------------------------


def test_agent_id_captures_only_that_agent(tmp_path: Path, captured: Callable[[str], Path]) -> None:
    out = tmp_path / "ben"
    capture("queue_conflict", out, "--agent-id", "ben")
    stem = f"{PREFIX}_ben_002"
    assert {p.name for p in out.iterdir()} == {
        f"{stem}.npz",
        f"{stem}.json",
        f"{PREFIX}_manifest.json",
        f"{PREFIX}_metrics.json",
    }
    manifest = read_json(out / f"{PREFIX}_manifest.json")
    assert [(s["agent_id"], s["sample"]) for s in manifest["samples"]] == [("ben", f"{stem}.npz")]
    assert list(read_json(out / f"{PREFIX}_metrics.json")["samples"]) == [f"{stem}.npz"]
    # The town still runs with everyone: ben's sample equals his sample from the full capture.
    full = captured("queue_conflict")
    assert (out / f"{stem}.npz").read_bytes() == (full / f"{stem}.npz").read_bytes()
    assert events(out) == events(full)


def test_unknown_agent_id_is_a_usage_error(tmp_path: Path) -> None:
    out = tmp_path / "zed"
    res = run_tool(CAPTURE, scenario_config("queue_conflict"), "--output", out, "--agent-id", "zed")
    line = assert_one_line_error(res, "zed")
    assert "anna" in line  # names the agents there are
    assert not out.exists()


def test_auto_seed_agents_puts_scripted_agents_under_the_expert(
    tmp_path: Path, captured: Callable[[str], Path]
) -> None:
    out = tmp_path / "auto"
    capture("employment_punctuality", out, "--auto-seed-agents")
    scripted = captured("employment_punctuality")
    side = read_json(scripted / f"{PREFIX}_erin_002.json")
    late_col = side["feature_names"].index("shift_late")
    on_time_col = side["feature_names"].index("shift_on_time")
    lateness_col = side["feature_names"].index("lateness")
    wait = side["action_names"].index("wait")

    before = npz(scripted / f"{PREFIX}_erin_002.npz")
    after = npz(out / f"{PREFIX}_erin_002.npz")
    # Scripted: erin dawdles for 20 ticks, is late and gets help.
    assert (before["actions"][:20] == wait).all()
    assert before["features"][:, late_col].max() == 1.0
    # Under the expert she heads to work at once and arrives on time.
    assert not (after["actions"][:20] == wait).all()
    assert after["features"][:, late_col].max() == 0.0
    assert after["features"][:, on_time_col].max() == 1.0
    assert not after["features"][:, lateness_col].any()
    # With no script left, every recorded action is one the mask allows.
    for stem in expected_stems("employment_punctuality"):
        assert masked_rows(out, stem).size == 0, stem
    assert sample_metrics(out)["erin"]["lateness_mean"] == 0
    assert events(out)["late_help_events"] == 0


# -- suite, merge, drift ----------------------------------------------------------------------------


def test_suite_makes_one_folder_per_scenario(suite_root: Path, captured: Callable[[str], Path]) -> None:
    assert sorted(p.name for p in suite_root.iterdir()) == sorted(SCENARIOS)
    for scenario in SCENARIOS:
        # The suite writes exactly what a single capture of that config writes.
        assert file_bytes(suite_root / scenario) == file_bytes(captured(scenario)), scenario


def test_suite_compressed_twice_is_byte_identical(tmp_path: Path) -> None:
    roots = [tmp_path / "a", tmp_path / "b"]
    for root in roots:
        res = run_tool(SUITE, *(scenario_config(s) for s in SCENARIOS), "--output-root", root, "--compress")
        assert res.returncode == 0, str(res)
    for scenario in SCENARIOS:
        a, b = file_bytes(roots[0] / scenario), file_bytes(roots[1] / scenario)
        assert len(a) == 2 * len(expected_stems(scenario)) + 2
        assert a == b, scenario


def test_merge_dry_run_prints_changes_and_leaves_golden(
    tmp_path: Path, suite_root: Path, golden: dict[str, Any]
) -> None:
    altered = json.loads(json.dumps(golden))
    altered["queue_conflict"]["events"]["queue_conflict_events"] = 99.0
    altered["legacy_scenario"] = {"events": {}, "samples": {}}
    path = tmp_path / "golden.json"
    path.write_text(json.dumps(altered), encoding="utf-8")
    before = path.read_bytes()

    res = run_tool(MERGE, suite_root, "--dry-run", "--golden", path)
    assert res.returncode == 0, str(res)
    assert "~ queue_conflict.events.queue_conflict_events: 99.0 -> 11.0" in res.stdout, str(res)
    assert "dry run: 1 changes" in res.stdout and "not written" in res.stdout, str(res)
    assert path.read_bytes() == before

    res = run_tool(MERGE, suite_root, "--golden", path)
    assert res.returncode == 0, str(res)
    assert "merged 5 scenarios" in res.stdout, str(res)
    text = path.read_text(encoding="utf-8")
    merged = json.loads(text)
    assert text == canonical_json(merged)
    assert merged["queue_conflict"]["events"]["queue_conflict_events"] == 11.0
    # Scenarios not captured are kept; captured ones are replaced by exactly what was captured.
    assert merged["legacy_scenario"] == {"events": {}, "samples": {}}
    for scenario in SCENARIOS:
        assert merged[scenario] == goldens.read_capture_metrics(suite_root / scenario)

    # Merging again changes nothing.
    res = run_tool(MERGE, suite_root, "--dry-run", "--golden", path)
    assert "dry run: 0 changes" in res.stdout, str(res)


def test_merge_into_a_new_golden_and_the_repo_golden_is_current(tmp_path: Path, suite_root: Path) -> None:
    path = tmp_path / "sub" / "new_golden.json"
    res = run_tool(MERGE, suite_root, "--golden", path)
    assert res.returncode == 0, str(res)
    for scenario in SCENARIOS:
        assert f"+ {scenario} (new scenario, {len(expected_stems(scenario))} samples)" in res.stdout
    new = read_json(path)
    assert sorted(new) == sorted(SCENARIOS)
    # The committed golden matches a fresh capture to within the drift rule.
    drifts = goldens.compare(read_json(GOLDEN), new)
    assert drifts == [], "\n".join(map(str, drifts))


def test_drift_check_passes_on_the_golden(suite_root: Path) -> None:
    res = run_tool(DRIFT, suite_root, "--golden", GOLDEN)
    assert res.returncode == 0, str(res)
    assert f"no drift: {len(SCENARIOS)} scenarios match" in res.stdout


def test_drift_check_names_every_drifting_key(tmp_path: Path, suite_root: Path, golden: dict[str, Any]) -> None:
    altered = json.loads(json.dumps(golden))
    qc = altered["queue_conflict"]
    anna = qc["samples"][f"{PREFIX}_anna_001.npz"]
    ben = qc["samples"][f"{PREFIX}_ben_002.npz"]
    # Beyond 2 %: an event count +9 %, a timestep count +2.5 %, a small value off by 0.03 absolute
    # (|golden| < 1, so the 2 % is of 1), and a key the capture does not produce.
    qc["events"]["queue_conflict_events"] *= 1.09
    anna["timesteps"] = 82.0
    assert abs(ben["reward_mean"]) < 1
    ben["reward_mean"] += 0.03
    altered["kitchen_breakfast"]["events"]["made_up_metric"] = 1.0
    # Within 2 %: these must not be reported.
    altered["rivalry_decay"]["samples"][f"{PREFIX}_finn_001.npz"]["timesteps"] = 101.0
    altered["employment_punctuality"]["samples"][f"{PREFIX}_dawn_001.npz"]["reward_sum"] *= 1.01
    path = tmp_path / "golden.json"
    path.write_text(json.dumps(altered), encoding="utf-8")

    res = run_tool(DRIFT, suite_root, "--golden", path)
    assert res.returncode == 1, str(res)
    assert "Traceback" not in res.stderr
    drift_lines = [ln for ln in res.stderr.splitlines() if ln.startswith("drift: ")]
    # One whole line per drift, however narrow the terminal (no wrapping inside a message).
    assert all(ln.endswith(")") and "(golden " in ln and ", captured " in ln for ln in drift_lines), res.stderr
    keys = {ln.removeprefix("drift: ").split(": ")[0] for ln in drift_lines}
    assert keys == {
        "queue_conflict.events.queue_conflict_events",
        f"queue_conflict.samples.{PREFIX}_anna_001.npz.timesteps",
        f"queue_conflict.samples.{PREFIX}_ben_002.npz.reward_mean",
        "kitchen_breakfast.events.made_up_metric",
    }, res.stderr
    assert "4 metrics drifted" in res.stderr


def test_drift_check_tolerates_changes_under_two_percent(
    tmp_path: Path, suite_root: Path, golden: dict[str, Any]
) -> None:
    altered = json.loads(json.dumps(golden))
    for entry in altered.values():
        for metrics in [entry["events"], *entry["samples"].values()]:
            for key, value in metrics.items():
                metrics[key] = value * 1.015 if abs(value) >= 1 else value + 0.015
    path = tmp_path / "golden.json"
    path.write_text(json.dumps(altered), encoding="utf-8")
    res = run_tool(DRIFT, suite_root, "--golden", path)
    assert res.returncode == 0, str(res)
    assert "no drift" in res.stdout


# -- bad input --------------------------------------------------------------------------------------


def test_missing_config_is_one_error_line(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = run_tool(CAPTURE, "configs/scenarios/no_such_scenario.yaml", "--output", out)
    assert_one_line_error(res, "configs/scenarios/no_such_scenario.yaml")
    res = run_tool(SUITE, scenario_config("queue_conflict"), "configs/scenarios/nope.yaml", "--output-root", out)
    assert_one_line_error(res, "configs/scenarios/nope.yaml")
    assert not out.exists()


def test_output_that_is_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "not_a_folder"
    target.write_text("keep me\n", encoding="utf-8")
    res = run_tool(CAPTURE, scenario_config("observation_baseline"), "--output", target)
    line = assert_one_line_error(res, str(target))
    assert "not a directory" in line
    assert target.read_text(encoding="utf-8") == "keep me\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["not_a_folder"]

    res = run_tool(SUITE, scenario_config("observation_baseline"), "--output-root", target)
    assert res.returncode == 2 and "Traceback" not in res.stderr, str(res)
    assert target.read_text(encoding="utf-8") == "keep me\n"


@pytest.fixture
def golden_copy(tmp_path: Path) -> Path:
    path = tmp_path / "golden.json"
    shutil.copyfile(GOLDEN, path)
    return path


@pytest.mark.parametrize("tool", [MERGE, DRIFT], ids=["merge", "drift"])
def test_truncated_metrics_name_file_and_line(tmp_path: Path, suite_root: Path, golden_copy: Path, tool: str) -> None:
    root = tmp_path / "root"
    shutil.copytree(suite_root, root)
    metrics = root / "queue_conflict" / f"{PREFIX}_metrics.json"
    text = metrics.read_text(encoding="utf-8")
    metrics.write_text(text[: len(text) // 2], encoding="utf-8")
    before = golden_copy.read_bytes()
    res = run_tool(tool, root, "--golden", golden_copy)
    line = assert_one_line_error(res, str(metrics))
    assert f"{metrics}:" in line and "invalid JSON" in line
    lineno = int(line.split(f"{metrics}:")[1].split(":")[0])
    assert 1 < lineno <= text[: len(text) // 2].count("\n") + 1
    assert golden_copy.read_bytes() == before


@pytest.mark.parametrize("tool", [MERGE, DRIFT], ids=["merge", "drift"])
def test_metrics_of_the_wrong_shape_are_refused(tmp_path: Path, suite_root: Path, golden_copy: Path, tool: str) -> None:
    root = tmp_path / "root"
    shutil.copytree(suite_root, root)
    metrics = root / "rivalry_decay" / f"{PREFIX}_metrics.json"
    metrics.write_text('{"samples": {"x.npz": {"reward_sum": "lots"}}, "events": {}}\n', encoding="utf-8")
    before = golden_copy.read_bytes()
    res = run_tool(tool, root, "--golden", golden_copy)
    assert_one_line_error(res, str(metrics), "x.npz")
    assert golden_copy.read_bytes() == before


@pytest.mark.parametrize("tool", [MERGE, DRIFT], ids=["merge", "drift"])
def test_folder_without_metrics_is_refused(tmp_path: Path, golden_copy: Path, tool: str) -> None:
    empty = tmp_path / "empty"
    (empty / "queue_conflict").mkdir(parents=True)
    before = golden_copy.read_bytes()
    res = run_tool(tool, empty, "--golden", golden_copy)
    assert_one_line_error(res, str(empty), f"{PREFIX}_metrics.json")
    res = run_tool(tool, tmp_path / "missing", "--golden", golden_copy)
    assert_one_line_error(res, str(tmp_path / "missing"))
    assert golden_copy.read_bytes() == before
