"""The rehearsal's artefacts in words: `summary_idle_v1.json` (the steps, their facts and verdicts)
and the acceptance report seed 000 step 5 asks for (`docs/certificates/M5_BC_ANNEAL_ACCEPTANCE.md`),
written from the summary, the anneal results and the bundle, not by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from townlet.clock import utc_stamp
from townlet.errors import UsageError
from townlet.training.rehearsal import (
    ANNEAL_DIR,
    BUNDLE,
    DRILL_DIR,
    OVERLAY,
    PPO_LOG,
    SUMMARY,
    Step,
    sha256_of,
)

FORMAT = "townlet.rehearsal_summary"


def summary(steps: list[Step], workdir: Path) -> dict[str, Any]:
    """The rehearsal so far, as `summary_idle_v1.json` holds it."""
    return {
        "format": FORMAT,
        "format_version": 1,
        "seed": "001 (M5 Phase 5.4 ops rehearsal)",
        "created_utc": utc_stamp(),
        "config": str(OVERLAY),
        "steps": [s.record() for s in steps],
        "ok": bool(steps) and all(s.ok for s in steps),
    }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list | dict):
        return json.dumps(value, sort_keys=True)
    return "—" if value is None else str(value)


def _cell(value: Any) -> str:
    return _fmt(value).replace("|", "\\|").replace("\n", " ")


def _verify_bundle(workdir: Path) -> tuple[bool, str]:
    """`archive_tool.py verify` on the bundle, now: whether it passed, and its last line."""
    bundle = workdir / BUNDLE
    if not bundle.is_file():
        return False, f"{BUNDLE}: missing"
    proc = subprocess.run([sys.executable, "tools/archive_tool.py", "verify", str(BUNDLE)], cwd=workdir,
                          capture_output=True, text=True, check=False)  # fmt: skip
    said = (proc.stdout or proc.stderr).strip()
    return proc.returncode == 0, said.splitlines()[-1] if said else f"exit {proc.returncode}"


def bundle_record(workdir: Path) -> dict[str, Any]:
    """The bundle step as the artefacts show it (the summary inside the bundle predates it): verified now."""
    from townlet.training.rehearsal_steps import STEPS

    title = next(title for name, title, *_ in STEPS if name == "bundle")
    ok, said = _verify_bundle(workdir)
    return {"name": "bundle", "title": title, "expected": "PASS", "verdict": "PASS" if ok else "FAIL", "ok": ok,
            "facts": {"bundle": str(BUNDLE), "bundle_sha256": sha256_of(workdir / BUNDLE), "verify": said},
            "notes": [], "commands": [{"command": f"python tools/archive_tool.py verify {BUNDLE}",
                                       "exit": 0 if ok else 1, "seconds": 0.0}],
            "artefacts": [str(BUNDLE), str(SUMMARY)], "seconds": 0.0}  # fmt: skip


def markdown(workdir: Path, steps: list[dict[str, Any]]) -> str:
    """The acceptance report: decision, every step's verdict against the expected one, its facts and
    commands, and the artefacts with their SHA-256."""
    ok = bool(steps) and all(s.get("ok") for s in steps)
    lines = [
        "# M5 BC & anneal acceptance (seed 001 rehearsal)",
        "",
        "Written by `python tools/ops_rehearsal.py` from the rehearsal's artefacts "
        f"(`{SUMMARY}`, `{ANNEAL_DIR}/anneal_results.json`, `{DRILL_DIR}/anneal_results.json`, `{BUNDLE}`).",
        "",
        f"**Decision: {'GO' if ok else 'NO-GO'}** — "
        + ("every step gave the verdict it should." if ok else "a step did not give the verdict it should."),
        "",
        "| # | step | expected | verdict | ok | seconds |",
        "|---|---|---|---|---|---:|",
    ]
    for i, s in enumerate(steps, 1):
        lines.append(
            f"| {i} | {_cell(s.get('title'))} | {_cell(s.get('expected'))} | {_cell(s.get('verdict'))} | "
            f"{'yes' if s.get('ok') else 'NO'} | {float(s.get('seconds') or 0):.1f} |"
        )
    for i, s in enumerate(steps, 1):
        lines += ["", f"## {i}. {s.get('title')}: {s.get('verdict')}", ""]
        for cmd in s.get("commands", []):
            lines.append(f"- `{cmd['command']}` -> exit {cmd['exit']} ({cmd['seconds']} s)")
        facts = s.get("facts") or {}
        if facts:
            lines += ["", "| fact | value |", "|---|---|"]
            lines += [f"| {k} | {_cell(v)} |" for k, v in sorted(facts.items())]
        for note in s.get("notes", []):
            lines.append(f"\n> {note}")
    lines += ["", "## Artefacts", "", "| file | sha256 |", "|---|---|"]
    listed = sorted({a for s in steps for a in s.get("artefacts", [])} | {str(OVERLAY), str(PPO_LOG), str(SUMMARY)})
    for rel in listed:
        lines.append(f"| `{rel}` | `{sha256_of(workdir / rel) or 'missing'}` |")
    lines += ["", f"Bundle check: {_verify_bundle(workdir)[1]}", ""]
    return "\n".join(lines)


def report_from_artefacts(workdir: Path, steps: list[dict[str, Any]] | None = None) -> str:
    """The report from the given step records, else from `summary_idle_v1.json` (the steps before the bundle)
    and the bundle as it verifies now."""
    if steps is None:
        path = workdir / SUMMARY
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"{path}: no rehearsal summary (run the rehearsal first)") from None
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: cannot read the rehearsal summary ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise UsageError(f"{path}: not a rehearsal summary (format {FORMAT!r})")
        steps = [*doc.get("steps", []), bundle_record(workdir)]
    return markdown(workdir, steps)
