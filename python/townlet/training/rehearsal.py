"""Seed 001's ops rehearsal, end to end, as an operator would type it (`tools/ops_rehearsal.py`,
`make rehearsal`).

Every step runs the seed's commands (`python tools/X.py ...`, `python - <<'PY'` snippets) as
subprocesses in a working folder laid out like the repository (a scratch folder by default), reads
the artefacts they leave, and gives a verdict next to the verdict it should give. The rehearsal
passes only when every step gave its expected verdict; the rollback drill is expected to roll back.
`rehearsal_report` turns the artefacts into `summary_idle_v1.json` and the acceptance report.

Steps: the overlay (`artifacts/m5/acceptance/config_idle_v1.yaml`, derived from
`configs/examples/poc_hybrid.yaml`), the dataset integrity check, BC verification through
`TrainingHarness`, the anneal smoke (`--mode mixed --epochs 1`), the anneal (`--mode anneal`,
`logs/anneal_results.json`), the rollback drill (threshold 0.95), and the bundle (config, anneal
results, summary) packed and verified with `tools/archive_tool.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from townlet.errors import UsageError

ACCEPTANCE = Path("artifacts/m5/acceptance")
OVERLAY = ACCEPTANCE / "config_idle_v1.yaml"
DRILL_OVERLAY = ACCEPTANCE / "config_idle_v1_drill.yaml"
BASE_CONFIG = Path("configs/examples/poc_hybrid.yaml")
PPO_LOG = ACCEPTANCE / "ppo_idle_v1.jsonl"
ANNEAL_DIR = ACCEPTANCE / "logs"
DRILL_DIR = ACCEPTANCE / "drill"
SUMMARY = ACCEPTANCE / "summary_idle_v1.json"
BUNDLE = ACCEPTANCE / "bundle_idle_v1.tar.gz"
REPORT = Path("docs/certificates/M5_BC_ANNEAL_ACCEPTANCE.md")
#: The dataset the overlay pins: the default town's expert days. `idle_v1` (seed 001's name) is captured
#: from configs/datasets/idle.yaml, whose observations and actions differ from the default town's, and its
#: one action is always right, so no honest gate can pass on it; the integrity step still checks it.
PINNED_SET = "poc_hybrid_expert_v1"
PINNED_MANIFEST = f"data/bc_datasets/manifests/{PINNED_SET}.json"
INTEGRITY_SETS = ("idle_v1", PINNED_SET)
BC_THRESHOLD = 0.8
DRILL_THRESHOLD = 0.95
#: What the overlay changes in the default town (everything else is poc_hybrid.yaml's).
OVERRIDES: dict[str, Any] = {
    "config_id": "poc_hybrid_acceptance_idle_v1",
    # One epoch reaches about 0.91 on held-out trajectories: clear of the gate (0.8) and of the drill's 0.95.
    "bc": {"manifest": PINNED_MANIFEST, "epochs": 1, "batch_size": 256},
    "ppo": {"num_envs": 2, "rollout_ticks": 64},
    "training": {
        "epochs": 1,
        "replay_manifest": PINNED_MANIFEST,
        "anneal_accuracy_threshold": BC_THRESHOLD,
        "anneal_ratio": 0.5,
        "anneal": {
            "log_dir": str(ANNEAL_DIR),
            "schedule": [{"mode": "bc"}, {"mode": "ppo", "epochs": 1, "data_mode": "mixed"}],
        },
    },
}
#: What a working folder needs from the repository (copied; `data` and `tools` are linked, read only).
COPIES = ("configs", "docs", "pyproject.toml")
LINKS = ("data", "tools")


@dataclass
class Ran:
    """One command as the seed writes it, and what it did."""

    shown: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float


@dataclass
class Step:
    name: str
    title: str
    expected: str
    verdict: str = "NOT RUN"
    facts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    commands: list[Ran] = field(default_factory=list)
    artefacts: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.verdict == self.expected

    def record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "expected": self.expected,
            "verdict": self.verdict,
            "ok": self.ok,
            "facts": self.facts,
            "notes": self.notes,
            "commands": [
                {"command": c.shown, "exit": c.returncode, "seconds": round(c.seconds, 1)} for c in self.commands
            ],
            "artefacts": self.artefacts,
            "seconds": round(self.seconds, 1),
        }


class StepFailed(Exception):
    """A step cannot go on (its verdict and why)."""

    def __init__(self, verdict: str, why: str) -> None:
        super().__init__(why)
        self.verdict = verdict


@dataclass
class Rehearsal:
    workdir: Path
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)


class Runner:
    """Runs commands in the working folder, with the interpreter running this one."""

    def __init__(self, workdir: Path, python: str = sys.executable, timeout: float = 900) -> None:
        self.workdir, self.python, self.timeout = workdir, python, timeout

    def run(self, step: Step, args: list[str], *, stdin: str | None = None, shown: str | None = None) -> Ran:
        argv = [self.python, *args]
        env = {**os.environ, "NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "200"}
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(argv, cwd=self.workdir, input=stdin, capture_output=True, text=True,
                                  timeout=self.timeout, env=env, check=False)  # fmt: skip
            out = Ran(shown or " ".join(["python", *args]), proc.returncode, proc.stdout, proc.stderr,
                      time.perf_counter() - t0)  # fmt: skip
        except subprocess.TimeoutExpired:
            out = Ran(shown or " ".join(["python", *args]), 124, "", f"timed out after {self.timeout:.0f}s",
                      time.perf_counter() - t0)  # fmt: skip
        step.commands.append(out)
        return out

    def path(self, rel: Path | str) -> Path:
        return self.workdir / rel


def prepare_workdir(workdir: Path, repo: Path) -> None:
    """A fresh working folder laid out like the repository (copies of configs, docs, pyproject.toml;
    data and tools linked). Refuses a folder that exists and is not empty."""
    if workdir.exists() and any(workdir.iterdir()):
        raise UsageError(f"{workdir}: the scratch folder exists and is not empty (remove it, or pick another)")
    workdir.mkdir(parents=True, exist_ok=True)
    for name in COPIES:
        src = repo / name
        if src.is_dir():
            shutil.copytree(src, workdir / name)
        elif src.is_file():
            shutil.copy2(src, workdir / name)
    for name in LINKS:
        (workdir / name).symlink_to((repo / name).resolve(), target_is_directory=True)


def sha256_of(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def read_json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StepFailed("FAIL", f"{path}: cannot read ({exc})") from None


def last_json(text: str) -> Any:
    """The last line of `text` that parses as JSON (a snippet's result)."""
    for line in reversed(text.strip().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    raise StepFailed("FAIL", "no JSON result printed")


def tail(ran: Ran) -> str:
    lines = [ln for ln in (ran.stderr or ran.stdout).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit {ran.returncode}"


def overlay_text(base_text: str) -> str:
    """The overlay: the default town's YAML with `OVERRIDES` applied (the sections it names replaced)."""
    raw = yaml.safe_load(base_text)
    raw.update(json.loads(json.dumps(OVERRIDES)))
    head = (
        f"# Seed 001's acceptance overlay, derived from {BASE_CONFIG} by tools/ops_rehearsal.py: the same town,\n"
        f"# with BC pinned to {PINNED_MANIFEST} (gate {BC_THRESHOLD}), a short mixed PPO smoke\n"
        "# and a bc -> ppo anneal.\n"
    )
    return head + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
