"""BC datasets end to end through the tools: capture_scripted -> curate_trajectories -> audit_bc_datasets, the
audit's verdicts (PASS, WARN, FAIL) and exit codes, curation thresholds, bad input, and the shipped catalogue."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT, CliResult, assert_one_line_error, run_cli
from townlet.capture.npz import load_npz
from townlet.data.verify import verify_set
from townlet.errors import UsageError

IDLE = "configs/datasets/idle.yaml"
BC = Path("data/bc_datasets")
VERSIONS = BC / "versions.json"


def tool(name: str, *args: str | Path, cwd: Path | None = None) -> CliResult:
    """`python tools/NAME.py ARGS` from the repository's tools, in `cwd` (default: the test's scratch folder)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "CLICOLOR_FORCE")}
    env.update(NO_COLOR="1", COLUMNS="200", TERM="dumb")
    argv = [sys.executable, str(REPO_ROOT / "tools" / f"{name}.py"), *(str(a) for a in args)]
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def ok(res: CliResult) -> CliResult:
    assert res.returncode == 0, str(res)
    return res


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository-like folder with one curated set `idle_s`: a 30-tick and a 60-tick capture of the idle config."""
    root = tmp_path_factory.mktemp("repo")
    shutil.copytree(REPO_ROOT / "configs", root / "configs")
    captures = BC / "captures/idle_s"
    ok(tool("capture_scripted", IDLE, "--output", captures, "--ticks", "30", "--prefix", "short", cwd=root))
    ok(tool("capture_scripted", IDLE, "--output", captures, "--ticks", "60", "--prefix", "long", cwd=root))
    ok(tool("curate_trajectories", captures, "--dataset", "idle_s_prod", "--tag", "idle", cwd=root))
    return root


@pytest.fixture
def repo(built: Path, scratch_cwd: Path) -> Path:
    """A fresh copy of the built set in the test's scratch folder (tests may damage it)."""
    shutil.copytree(built / "data", scratch_cwd / "data")
    return scratch_cwd


def audit(*args: str | Path) -> CliResult:
    return tool("audit_bc_datasets", "--versions", VERSIONS, *args)


def test_capture_curate_register_and_audit_pass(repo: Path) -> None:
    manifest = read(BC / "manifests/idle_s.json")
    assert manifest["dataset"] == "idle_s" and manifest["captures_dir"] == "data/bc_datasets/captures/idle_s"
    assert [s["accepted"] for s in manifest["samples"]] == [True] * 4
    assert {s["metrics"]["timesteps"] for s in manifest["samples"]} == {30, 60}
    sheet = read(BC / "checksums/idle_s.json")
    on_disk = sorted(p.name for p in (BC / "captures/idle_s").iterdir())
    assert sorted(sheet["files"]) == on_disk  # every npz and json: 4 samples, 4 sidecars, 2 manifests, 2 metrics
    assert len(on_disk) == 12
    entry = read(VERSIONS)["datasets"]["idle_s_prod"]
    assert entry["samples"] == 4 and entry["status"] == "active" and entry["tags"] == ["idle"]
    assert entry["manifest"] == "data/bc_datasets/manifests/idle_s.json"
    assert entry["action_distribution"] == {"wait": 1.0} and "wait 100.0%" in entry["notes"]

    res = ok(audit("--exit-on-failure"))
    assert "PASS  idle_s_prod (active): 4 of 4 samples accepted" in res.stdout
    assert res.stdout.splitlines()[-1] == "audit: PASS (1 datasets, 0 findings)"
    report = ok(audit("--json")).json()
    assert report["status"] == "PASS" and report["findings"] == []
    assert report["datasets"][0]["files_checked"] == 12


def test_curate_thresholds_filter(repo: Path) -> None:
    captures = BC / "captures/idle_s"
    res = ok(tool("curate_trajectories", captures, "--min-timesteps", "45", "--json"))
    summary = res.json()
    assert (summary["samples"], summary["accepted"]) == (4, 2)
    assert all(name.startswith("short_") for name in summary["rejected"])
    assert all("timesteps 30 < min_timesteps 45" in why[0] for why in summary["rejected"].values())

    rewards = {s["sample"]: s["metrics"]["reward_sum"] for s in read(BC / "manifests/idle_s.json")["samples"]}
    short = max(r for n, r in rewards.items() if n.startswith("short_"))
    long = min(r for n, r in rewards.items() if n.startswith("long_"))
    assert short < long
    mid = f"{(short + long) / 2:.6f}"
    summary = ok(tool("curate_trajectories", captures, "--min-timesteps", "0", "--min-reward", mid, "--json")).json()
    assert summary["accepted"] == 2 and all(n.startswith("short_") for n in summary["rejected"])
    assert read(VERSIONS)["datasets"]["idle_s"]["samples"] == 2  # registered under the set's own name
    assert read(BC / "manifests/idle_s.json")["criteria"] == {"min_reward": float(mid), "min_timesteps": 0}
    # The first entry still names this manifest with its old count: the audit calls it stale ...
    res = audit("--exit-on-failure")
    assert res.returncode == 1 and "idle_s.json: 2 accepted samples, the catalogue says 4" in res.stdout, str(res)
    # ... until curation updates that entry too.
    ok(tool("curate_trajectories", captures, "--min-timesteps", "0", "--min-reward", mid, "--dataset", "idle_s_prod"))
    ok(audit("--exit-on-failure"))


def test_audit_warns_on_extra_files(repo: Path) -> None:
    captures = BC / "captures/idle_s"
    shutil.copy(next(captures.glob("*.npz")), captures / "stray.npz")
    shutil.copy(BC / "manifests/idle_s.json", BC / "manifests/old.json")
    res = ok(audit("--exit-on-failure"))  # WARN still exits 0
    assert "WARN: idle_s_prod: data/bc_datasets/captures/idle_s/stray.npz: extra file" in res.stdout
    assert "WARN: -: data/bc_datasets/manifests/old.json: extra entry" in res.stdout
    assert res.stdout.splitlines()[-1].startswith("audit: WARN")


def test_audit_fails_on_a_tampered_sample(repo: Path) -> None:
    npz = sorted((BC / "captures/idle_s").glob("long_*.npz"))[0]
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    res = audit("--exit-on-failure")
    assert res.returncode == 1, str(res)
    assert f"FAIL: idle_s_prod: {npz.as_posix()}: checksum mismatch" in res.stdout
    assert res.stdout.splitlines()[-1].startswith("audit: FAIL")
    assert audit().returncode == 0  # without --exit-on-failure the verdict is reported, not the exit status
    report = audit("--json", "--report", "audit.json")
    assert report.json()["status"] == "FAIL" and read(Path("audit.json"))["status"] == "FAIL"


def test_audit_fails_on_a_missing_file_and_a_stale_entry(repo: Path) -> None:
    sidecar = sorted((BC / "captures/idle_s").glob("short_*.json"))[0]
    sidecar.unlink()
    res = audit("--exit-on-failure", "--json")
    assert res.returncode == 1, str(res)
    messages = {(f["path"], f["message"].split(":")[0]) for f in res.json()["findings"]}
    assert (sidecar.as_posix(), "missing file (listed in the checksum sheet)") in messages
    assert (sidecar.as_posix(), "stale manifest entry") in messages


def test_audit_fails_when_the_manifest_or_catalogue_disagree(repo: Path) -> None:
    path = BC / "manifests/idle_s.json"
    manifest = read(path)
    manifest["samples"][0]["accepted"] = False
    path.write_text(json.dumps(manifest), encoding="utf-8")
    findings = [f["message"] for f in audit("--json").json()["findings"]]
    assert any(m.startswith("checksum mismatch: the manifest changed") for m in findings)
    assert "3 accepted samples, the catalogue says 4" in findings


def test_audit_downgrades_a_deprecated_dataset_to_warn(repo: Path) -> None:
    catalogue = read(VERSIONS)
    catalogue["datasets"]["idle_s_prod"]["status"] = "deprecated"
    VERSIONS.write_text(json.dumps(catalogue), encoding="utf-8")
    shutil.rmtree(BC / "checksums")
    res = ok(audit("--exit-on-failure", "--json"))
    assert res.json()["status"] == "WARN"
    assert "BC checksum sheet not found" in {f["message"] for f in res.json()["findings"]}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{"datasets": {"x": {"status": "gone"}}}', "datasets.x.manifest"),
        ('{"format": "townlet.bc_datasets", "format_version": 1, "datasets": []}', "datasets"),
        ('{"datasets": {}, "datasets": {}}', "duplicate key 'datasets'"),
        (
            json.dumps(
                {
                    "datasets": {
                        "x": {
                            "manifest": "/etc/passwd",
                            "checksums": "c.json",
                            "captures_dir": "c",
                            "created": "",
                            "tags": [],
                            "samples": 0,
                            "notes": "",
                            "status": "active",
                        }
                    }
                }
            ),
            "datasets.x.manifest: Value error, '/etc/passwd' is an absolute path",
        ),
    ],
)
def test_a_bad_catalogue_is_one_line_exit_2(repo: Path, text: str, key: str) -> None:
    VERSIONS.write_text(text, encoding="utf-8")
    assert_one_line_error(audit(), str(VERSIONS), key)
    captures = BC / "captures/idle_s"
    assert_one_line_error(tool("curate_trajectories", captures), str(VERSIONS), key)


def test_curate_refuses_bad_input(repo: Path, tmp_path: Path) -> None:
    missing = tool("audit_bc_datasets", "--versions", "nope.json")
    assert_one_line_error(missing, "nope.json: BC dataset catalogue not found")
    empty = BC / "captures/empty"
    empty.mkdir()
    assert_one_line_error(tool("curate_trajectories", empty), str(empty), "no capture manifest")
    outside = tmp_path / "loose"
    outside.mkdir()
    assert_one_line_error(tool("curate_trajectories", outside), "not inside a 'captures' folder")
    npz = sorted((BC / "captures/idle_s").glob("long_*.npz"))[0]
    npz.write_bytes(npz.read_bytes()[:-10])
    assert_one_line_error(tool("curate_trajectories", npz.parent), str(npz), "damaged capture")


def test_the_shipped_catalogue_audits_pass() -> None:
    versions = REPO_ROOT / VERSIONS
    res = tool("audit_bc_datasets", "--versions", versions, "--exit-on-failure", "--json")
    assert res.returncode == 0, str(res)
    report = res.json()
    assert report["status"] == "PASS", report["findings"]
    by_name = {d["name"]: d for d in report["datasets"]}
    assert by_name["idle_v1_production"]["accepted"] == 2
    assert by_name["idle_v1_production"]["catalogue_status"] == "active"
    assert by_name["preflight_idle_v0"]["catalogue_status"] == "deprecated"
    expert = read(versions)["datasets"]["poc_hybrid_expert_v1"]
    assert expert["samples"] >= 27 and "actions: " in expert["notes"]
    assert max(expert["action_distribution"].values()) < 0.5  # worth cloning: no action is always right
    manifest = read(REPO_ROOT / expert["manifest"])
    assert {c["policy"] for c in manifest["captures"].values()} == {"scripted@temperature=0.2"}
    arrays = load_npz(REPO_ROOT / expert["captures_dir"] / manifest["samples"][0]["sample"])
    assert arrays["old_log_probs"].min() < -1.0  # real behaviour log-probabilities, not all 0
    size = sum(p.stat().st_size for p in (REPO_ROOT / BC).rglob("*") if p.is_file())
    assert size < 5_000_000


def test_verify_refuses_a_tampered_dataset_naming_the_sample(repo: Path) -> None:
    manifest = BC / "manifests/idle_s.json"
    verified = verify_set(manifest)
    assert len(verified.samples) == 4 and all(npz.is_file() for _, npz, _ in verified.samples)
    res = run_cli_verify("idle_s_prod")
    assert res.stdout.startswith("verified 4 accepted samples (180 ticks)"), str(res)
    npz = verified.samples[-1][1]
    npz.write_bytes(npz.read_bytes() + b"x")
    with pytest.raises(UsageError, match=f"{npz}: checksum mismatch"):
        verify_set(manifest)
    assert_one_line_error(run_cli_verify(str(manifest)), str(npz), "checksum mismatch")
    assert_one_line_error(run_cli_verify("nope"), "datasets.nope: no such dataset")


def run_cli_verify(dataset: str) -> CliResult:
    return run_cli("data", "verify", dataset, "--versions", VERSIONS)


def test_capture_refuses_a_bad_temperature(tmp_path: Path) -> None:
    res = tool("capture_scripted", IDLE, "--output", tmp_path / "c", "--temperature", "nan")
    assert_one_line_error(res, "--temperature must be a finite number >= 0")
    assert not (tmp_path / "c").exists()


def test_curate_names_the_bad_key_of_a_capture_manifest(repo: Path) -> None:
    captures = BC / "captures/idle_s"
    path = captures / "short_manifest.json"
    doc = read(path)
    del doc["samples"][1]["sha256"]
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert_one_line_error(tool("curate_trajectories", captures), str(path), "samples.1.sha256: Field required")


def test_the_docs_integrity_check_runs_as_printed() -> None:
    text = (REPO_ROOT / "docs/datasets.md").read_text(encoding="utf-8")
    code = text.split("<!-- integrity-check -->\n```python\n")[1].split("```")[0]
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "idle_v1: 2 accepted samples, checksums match\n"


def test_bc_trains_from_a_curated_set_by_its_catalogue_name(repo: Path) -> None:
    """The set the tools just made trains by name: verified, four trajectories (two captures x two agents), one held
    out whole; every tick is `wait`, so the gate fails however right the clone is, and says why."""
    res = run_cli("train", IDLE, "--mode", "bc", "--bc-manifest", "idle_s_prod", "--epochs", "1", "--json")
    assert res.returncode == 0, str(res)
    gate = res.json()["gate"]
    assert (gate["train_trajectories"], gate["heldout_trajectories"]) == (3, 1)
    assert gate["holdout_baseline_accuracy"] == 1.0 and gate["gate_passed"] is False
    assert "one action is always right" in gate["gate_reason"]
