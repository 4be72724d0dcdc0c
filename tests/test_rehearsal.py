"""Seed 001's ops rehearsal (`tools/ops_rehearsal.py`, `make rehearsal`): every step run as an operator types it in a
scratch folder, each verdict printed next to the one it should give, exit 0 only when all match; the drill really
rolls back; the acceptance report and the bundle come from the artefacts."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import REPO_ROOT, CliResult, _cli_env

STEPS = [
    ("Config overlay derived from poc_hybrid.yaml", "PASS", "PASS"),
    ("Dataset integrity check", "PASS", "PASS"),
    ("BC trainer verification (accuracy >= 0.8)", "PASS", "PASS"),
    ("Anneal smoke (--mode mixed --epochs 1)", "PASS", "PASS"),
    ("Anneal (--mode anneal, logs/anneal_results.json)", "PASS", "PASS"),
    ("Rollback drill (threshold 0.95)", "ROLLED BACK", "ROLLED BACK"),
    ("Ops artefact bundle (archive_tool create + verify)", "PASS", "PASS"),
]


def tool(name: str, *args: str | Path, timeout: float = 900) -> CliResult:
    argv = [sys.executable, f"tools/{name}", *map(str, args)]
    proc = subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=timeout, check=False)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def verdicts(stdout: str) -> list[tuple[str, str, str]]:
    """(title, verdict, expected) of each `[i/n] title: VERDICT (expected X) ok|UNEXPECTED` line."""
    out = []
    for line in stdout.splitlines():
        if line.startswith("[") and "(expected " in line:
            head, rest = line.split("] ", 1)[1].rsplit(": ", 1)
            verdict, expected = rest.split(" (expected ")
            out.append((head, verdict, expected.split(")")[0]))
    return out


@pytest.mark.slow  # the whole rehearsal: BC twice, two anneals, a PPO smoke, an archive (about 100 s on 2 cores)
def test_the_rehearsal_passes_end_to_end_and_the_drill_rolls_back() -> None:
    Path("data").symlink_to(REPO_ROOT / "data", target_is_directory=True)
    res = tool("ops_rehearsal.py")
    assert res.returncode == 0, str(res)
    assert verdicts(res.stdout) == STEPS, str(res)
    assert "rehearsal PASS: 7/7 steps gave the expected verdict" in res.stdout
    work = Path("tmp/rehearsal")
    acceptance = work / "artifacts/m5/acceptance"

    summary = json.loads((acceptance / "summary_idle_v1.json").read_text(encoding="utf-8"))
    steps = {s["name"]: s for s in summary["steps"]}
    assert summary["format"] == "townlet.rehearsal_summary" and summary["ok"] is True
    bc = steps["bc"]["facts"]
    assert bc["accuracy"] >= 0.8 and bc["accuracy"] > bc["baseline_accuracy"] and bc["passed"] is True
    assert bc["checkpoint"] == "logs/poc_hybrid_acceptance_idle_v1/bc/checkpoints/bc_latest.json"
    assert steps["anneal_smoke"]["facts"]["inherited"].startswith("ppo: inherited from the bc phase")
    # The anneal: a passed bc stage and a ppo stage with its loss, in the file the seed names.
    results = json.loads((acceptance / "logs/anneal_results.json").read_text(encoding="utf-8"))
    assert results["status"] == "PASS" and results["rolled_back"] is False
    modes = [(s["mode"], s["passed"]) for s in results["stages"]]
    assert modes == [("bc", True), ("ppo", True)] and isinstance(results["stages"][1]["loss_total"], float)
    # The drill: FAIL after the BC stage alone, rolled back, and every checkpoint byte for byte what it was.
    drill = json.loads((acceptance / "drill/anneal_results.json").read_text(encoding="utf-8"))
    assert drill["status"] == "FAIL" and drill["rolled_back"] is True
    assert [s["mode"] for s in drill["stages"]] == ["bc"] and drill["stages"][0]["threshold"] == 0.95
    facts = steps["drill"]["facts"]
    assert facts["exit"] == 4 and facts["checkpoints_kept"] >= 2 and facts["checkpoints_changed"] == []

    # The bundle holds the config, the anneal results and the summary, and verifies.
    bundle = acceptance / "bundle_idle_v1.tar.gz"
    with tarfile.open(bundle) as tar:
        names = set(tar.getnames())
    assert {"config/config_idle_v1.yaml", "attached/anneal_results.json", "attached/summary_idle_v1.json"} <= names
    ok = tool("archive_tool.py", "verify", bundle)
    assert ok.returncode == 0, str(ok)
    # An attached member changed after packing is caught.
    tampered = Path("tampered.tar.gz")
    _rewrite(bundle, tampered, "attached/summary_idle_v1.json", b'{"ok": true}')
    bad = tool("archive_tool.py", "verify", tampered)
    assert bad.returncode == 1 and "member 'attached/summary_idle_v1.json' was altered" in bad.stderr, str(bad)

    # The acceptance report (seed 000 step 5), from the artefacts: rewritten from them alone, it says the same.
    report = work / "docs/certificates/M5_BC_ANNEAL_ACCEPTANCE.md"
    text = report.read_text(encoding="utf-8")
    assert (
        "**Decision: GO**" in text and "| Rollback drill (threshold 0.95) | ROLLED BACK | ROLLED BACK | yes |" in text
    )
    again = tool("ops_rehearsal.py", "--workdir", work, "--report-only", "--report", "again.md")
    assert again.returncode == 0, str(again)
    redone = Path("again.md").read_text(encoding="utf-8")

    def steps_1_to_6(md: str) -> str:
        return md[md.index("## 1.") : md.index("## 7.")]

    assert steps_1_to_6(redone) == steps_1_to_6(text)  # from the summary, exactly
    assert "**Decision: GO**" in redone and "## 7. Ops artefact bundle (archive_tool create + verify): PASS" in redone


def _rewrite(src: Path, dest: Path, member: str, data: bytes) -> None:
    """`src` with one member's bytes replaced (its metadata.json entry left as it was)."""
    out = io.BytesIO()
    with tarfile.open(src) as tin, tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tout:
        for info in tin.getmembers():
            body = tin.extractfile(info)
            assert body is not None
            raw = data if info.name == member else body.read()
            info.size = len(raw)
            tout.addfile(info, io.BytesIO(raw))
    dest.write_bytes(gzip.compress(out.getvalue()))


def test_a_tampered_dataset_fails_the_integrity_step_and_the_rehearsal() -> None:
    shutil.copytree(REPO_ROOT / "data", "data")
    victim = Path("data/bc_datasets/captures/idle_v1/idle_s4242_bob_002.npz")
    raw = bytearray(victim.read_bytes())
    raw[-1] ^= 0xFF
    victim.write_bytes(bytes(raw))
    res = tool("ops_rehearsal.py", "--workdir", "rh", "--only", "overlay,integrity")
    assert res.returncode == 1, str(res)
    assert verdicts(res.stdout) == [STEPS[0], ("Dataset integrity check", "FAIL", "PASS")], str(res)
    assert "[2/2] Dataset integrity check: FAIL (expected PASS) UNEXPECTED" in res.stdout
    assert "rehearsal FAIL: 1/2 steps gave the expected verdict" in res.stdout
    report = Path("rh/docs/certificates/M5_BC_ANNEAL_ACCEPTANCE.md").read_text(encoding="utf-8")
    assert "**Decision: NO-GO**" in report


def test_unknown_steps_and_a_foreign_scratch_folder_are_refused(tmp_path: Path) -> None:
    res = tool("ops_rehearsal.py", "--only", "overlay,nope")
    assert res.returncode == 2 and "--only: unknown step 'nope'" in res.stderr, str(res)
    (tmp_path / "mine.txt").write_text("not a rehearsal folder")
    res = tool("ops_rehearsal.py", "--workdir", tmp_path)
    assert res.returncode == 2 and "exists and is not empty" in res.stderr, str(res)
    assert (tmp_path / "mine.txt").is_file()
