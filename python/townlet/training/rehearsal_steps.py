"""The steps of seed 001's rehearsal (`training.rehearsal`): each runs the seed's commands, reads
what they left, and sets its verdict (raising `StepFailed` when it cannot go on)."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from townlet.jsonio import atomic_write_text, write_json
from townlet.sim.config import load_config
from townlet.training.rehearsal import (
    ACCEPTANCE,
    ANNEAL_DIR,
    BASE_CONFIG,
    BC_THRESHOLD,
    BUNDLE,
    DRILL_DIR,
    DRILL_OVERLAY,
    DRILL_THRESHOLD,
    INTEGRITY_SETS,
    OVERLAY,
    OVERRIDES,
    PINNED_SET,
    PPO_LOG,
    SUMMARY,
    Rehearsal,
    Runner,
    Step,
    StepFailed,
    last_json,
    overlay_text,
    read_json_file,
    sha256_of,
    tail,
)

#: Where the seed's `python - <<'PY'` snippets are printed (and read from, so they run as printed).
INTEGRITY_DOC, INTEGRITY_MARK = Path("docs/datasets.md"), "<!-- integrity-check -->"
BC_DOC, BC_MARK = Path("docs/rehearsal.md"), "<!-- bc-verification -->"


def doc_snippet(r: Runner, doc: Path, mark: str) -> str:
    """The Python block printed right after `mark` in `doc` (of the working folder)."""
    text = r.path(doc).read_text(encoding="utf-8")
    head = f"{mark}\n```python\n"
    if head not in text:
        raise StepFailed("ERROR", f"{doc}: no {mark} Python block to run")
    return text.split(head, 1)[1].split("```", 1)[0]


def step_overlay(r: Runner, step: Step, ctx: dict[str, Any]) -> None:
    base = r.path(BASE_CONFIG).read_text(encoding="utf-8")
    r.path(OVERLAY).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(r.path(OVERLAY), overlay_text(base))
    ran = r.run(step, ["-m", "townlet", "validate", str(OVERLAY)], shown=f"python -m townlet validate {OVERLAY}")
    if ran.returncode != 0:
        raise StepFailed("FAIL", tail(ran))
    raw, source = yaml.safe_load(r.path(OVERLAY).read_text(encoding="utf-8")), yaml.safe_load(base)
    differs = sorted(k for k in set(raw) | set(source) if k not in OVERRIDES and raw.get(k) != source.get(k))
    if differs:
        raise StepFailed("FAIL", f"{OVERLAY} is not derived from {BASE_CONFIG}: {', '.join(differs)} differ")
    config = load_config(r.path(OVERLAY))
    ctx["config_id"] = config.config_id
    ctx["checkpoints"] = {
        "bc": config.sections.bc.warm_start.save_path,
        "ppo": config.sections.ppo.warm_start.save_path,
    }
    step.facts = {"overlay": str(OVERLAY), "derived_from": str(BASE_CONFIG), "config_id": config.config_id,
                  "overrides": sorted(OVERRIDES), "bc_manifest": config.sections.bc.manifest}  # fmt: skip
    step.artefacts = [str(OVERLAY)]
    step.verdict = "PASS"


def step_integrity(r: Runner, step: Step, ctx: dict[str, Any]) -> None:
    ran = r.run(step, ["tools/audit_bc_datasets.py", "--exit-on-failure", "--json"])
    try:
        report = json.loads(ran.stdout)
    except ValueError:
        raise StepFailed("FAIL", f"audit_bc_datasets.py printed no report: {tail(ran)}") from None
    write_json(r.path(ACCEPTANCE / "audit_bc_datasets.json"), report)
    step.facts["audit_status"] = report.get("status")
    step.facts["datasets"] = {d.get("name"): d.get("status") for d in report.get("datasets", [])}
    checked = []
    snippet = doc_snippet(r, INTEGRITY_DOC, INTEGRITY_MARK)  # written for idle_v1; the same for the pinned set
    for name in INTEGRITY_SETS:
        got = r.run(step, ["-"], stdin=snippet.replace("idle_v1", name),
                    shown=f"python - <<'PY' (recompute sha256 of {name}'s accepted samples) PY")  # fmt: skip
        if got.returncode != 0:
            raise StepFailed("FAIL", f"{name}: {tail(got)}")
        checked.append(got.stdout.strip())
    step.facts["checksums"] = checked
    step.artefacts = [str(ACCEPTANCE / "audit_bc_datasets.json")]
    if ran.returncode != 0 or report.get("status") not in ("PASS", "WARN"):
        raise StepFailed("FAIL", f"audit status {report.get('status')} (exit {ran.returncode})")
    step.verdict = "PASS"


def step_bc(r: Runner, step: Step, ctx: dict[str, Any]) -> None:
    ran = r.run(step, ["-"], stdin=doc_snippet(r, BC_DOC, BC_MARK),
                shown=f"python - <<'PY' TrainingHarness(load_config('{OVERLAY}')).run_bc_training() PY")  # fmt: skip
    if ran.returncode != 0:
        raise StepFailed("ERROR", tail(ran))
    result = last_json(ran.stdout)
    checkpoint = str(result.get("checkpoint") or "")
    step.facts = {**result, "checkpoint_sha256": sha256_of(r.path(checkpoint)) if checkpoint else None}
    step.artefacts = [checkpoint] if checkpoint else []
    accuracy = result.get("accuracy")
    good = isinstance(accuracy, int | float) and accuracy >= BC_THRESHOLD and result.get("passed") is True
    step.verdict = "PASS" if good else "FAIL"
    if not good:
        step.notes.append(f"accuracy {accuracy} (threshold {BC_THRESHOLD}); {result.get('reason')}")


def step_smoke(r: Runner, step: Step, ctx: dict[str, Any]) -> None:
    ran = r.run(
        step, ["tools/run_training.py", str(OVERLAY), "--mode", "mixed", "--epochs", "1", "--ppo-log", str(PPO_LOG)]
    )
    if ran.returncode != 0:
        raise StepFailed("FAIL", tail(ran))
    valid = r.run(step, ["tools/validate_ppo_telemetry.py", str(PPO_LOG)])
    records = [json.loads(line) for line in r.path(PPO_LOG).read_text(encoding="utf-8").splitlines() if line.strip()]
    inherited = next((ln for ln in ran.stderr.splitlines() if "inherited from the bc phase" in ln), None)
    last = records[-1] if records else {}
    step.facts = {"records": len(records), "inherited": inherited, "validated": valid.returncode == 0,
                  **{k: last.get(k) for k in ("data_mode", "loss_total", "kl_divergence", "queue_conflict_events",
                                              "anneal_ratio")}}  # fmt: skip
    step.artefacts = [str(PPO_LOG)]
    if valid.returncode != 0 or len(records) != 1:
        raise StepFailed("FAIL", f"telemetry: {len(records)} records; {tail(valid)}")
    if inherited is None:
        step.notes.append("PPO did not start from the overlay's BC checkpoint")
        raise StepFailed("FAIL", "PPO did not inherit the BC checkpoint of the overlay's config id")
    step.verdict = "PASS"


def _stages(results: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("mode", "passed", "accuracy", "threshold", "loss_total", "kl", "rolled_back", "reasons")
    return [{k: s.get(k) for k in keys if k in s} for s in results.get("stages", []) if isinstance(s, dict)]


def _anneal(r: Runner, step: Step, overlay: Path, log_dir: Path) -> tuple[int, dict[str, Any]]:
    ran = r.run(step, ["tools/run_training.py", str(overlay), "--mode", "anneal", "--anneal-log-dir", str(log_dir)])
    found = r.path(log_dir / "anneal_results.json")
    if not found.is_file():
        raise StepFailed("ERROR", f"no {log_dir / 'anneal_results.json'}: {tail(ran)}")
    results = read_json_file(found)
    step.facts.update({"exit": ran.returncode, "status": results.get("status"),
                       "rolled_back": results.get("rolled_back"), "reasons": results.get("reasons"),
                       "stages": _stages(results)})  # fmt: skip
    step.artefacts.append(str(log_dir / "anneal_results.json"))
    promo = r.path("tools/promotion_evaluate.py")
    if promo.is_file():
        got = r.run(step, ["tools/promotion_evaluate.py", "--input", str(log_dir / "anneal_results.json"),
                           "--format", "json"])  # fmt: skip
        try:
            step.facts["promotion"] = json.loads(got.stdout).get("decision")
        except (ValueError, AttributeError):
            step.facts["promotion"] = f"unreadable (exit {got.returncode})"
    return ran.returncode, results


EXIT_OF = {"PASS": 0, "HOLD": 3, "FAIL": 4}


def step_anneal(r: Runner, step: Step, ctx: dict[str, Any]) -> None:
    code, results = _anneal(r, step, OVERLAY, ANNEAL_DIR)
    status = results.get("status")
    ctx["anneal_results"] = results
    stages = _stages(results)
    bc_ok = any(s.get("mode") == "bc" and s.get("passed") is True for s in stages)
    ppo_ok = any(s.get("mode") == "ppo" and isinstance(s.get("loss_total"), int | float) for s in stages)
    telemetry = results.get("telemetry")
    if telemetry and r.path(telemetry).is_file():  # seed 000 step 7's watcher on the anneal records
        watch = r.run(step, ["tools/telemetry_watch.py", str(telemetry), "--anneal-bc-min", "0.9",
                             "--anneal-loss-max", "0.1"])  # fmt: skip
        step.facts["watch"] = f"exit {watch.returncode}: {tail(watch)}"
    if EXIT_OF.get(str(status)) != code:
        raise StepFailed("ERROR", f"status {status} but exit {code}")
    if status == "PASS" and not (bc_ok and ppo_ok):
        raise StepFailed("INCOMPLETE", "anneal_results.json lacks a passed bc stage or a ppo stage with loss_total")
    step.verdict = str(status)


def _checkpoints(r: Runner, config_id: str) -> dict[str, str | None]:
    """SHA-256 of every checkpoint file under the config's folder (what a rollback must leave as it was)."""
    root = r.path(Path("logs") / config_id)
    return {str(p.relative_to(r.workdir)): sha256_of(p) for p in sorted(root.rglob("*.json"))} if root.is_dir() else {}


def step_drill(r: Runner, step: Step, ctx: dict[str, Any]) -> None:
    raw = yaml.safe_load(r.path(OVERLAY).read_text(encoding="utf-8"))
    raw["training"]["anneal_accuracy_threshold"] = DRILL_THRESHOLD
    raw["training"]["anneal"]["log_dir"] = str(DRILL_DIR)
    head = f"# The rollback drill: {OVERLAY} with the anneal's BC threshold raised to {DRILL_THRESHOLD}.\n"
    atomic_write_text(r.path(DRILL_OVERLAY), head + yaml.safe_dump(raw, sort_keys=False))
    step.artefacts.append(str(DRILL_OVERLAY))
    config_id = str(ctx.get("config_id") or OVERRIDES["config_id"])
    kept = _checkpoints(r, config_id)
    code, results = _anneal(r, step, DRILL_OVERLAY, DRILL_DIR)
    after = _checkpoints(r, config_id)
    changed = sorted(p for p, sha in kept.items() if after.get(p) != sha)
    stages = _stages(results)
    step.facts.update({"threshold": DRILL_THRESHOLD, "checkpoints_kept": len(kept), "checkpoints_changed": changed,
                       "stages_run": [s.get("mode") for s in stages]})  # fmt: skip
    problems = []
    if results.get("status") != "FAIL" or code != EXIT_OF["FAIL"]:
        problems.append(f"status {results.get('status')}, exit {code} (want FAIL, exit 4)")
    if results.get("rolled_back") is not True:
        problems.append("rolled_back is not true")
    if [s.get("mode") for s in stages] != ["bc"] or stages[0].get("passed") is not False:
        problems.append(f"did not stop after a failed BC stage (stages {[s.get('mode') for s in stages]})")
    if not kept:
        problems.append("no checkpoint existed before the drill: nothing to roll back to")
    if changed:
        problems.append(f"not restored byte for byte: {', '.join(changed)}")
    step.notes.extend(problems)
    step.verdict = "ROLLED BACK" if not problems else "NOT ROLLED BACK"


def step_bundle(r: Runner, step: Step, ctx: dict[str, Any]) -> None:
    from townlet.training.rehearsal_report import summary  # the summary reads the steps so far

    copied = []
    for name in dict.fromkeys((PINNED_SET, *INTEGRITY_SETS)):
        for kind in ("manifests", "checksums"):
            src = r.path(Path("data/bc_datasets") / kind / f"{name}.json")
            dest = ACCEPTANCE / "dataset" / kind / f"{name}.json"
            r.path(dest).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, r.path(dest))
            copied.append(str(dest))
    write_json(r.path(SUMMARY), summary([s for s in ctx["steps"] if s is not step], r.workdir))  # the steps before
    results = ctx.get("anneal_results") or {}
    # The anneal's last checkpoint and its PPO telemetry (else the smoke's), the results and the summary attached.
    made_by = [s.get("checkpoint") for s in results.get("stages", []) if isinstance(s, dict) and s.get("checkpoint")]
    checkpoint = made_by[-1] if made_by else ctx.get("checkpoints", {}).get("ppo")
    if not checkpoint or not r.path(checkpoint).is_file():
        raise StepFailed("FAIL", f"no checkpoint to bundle ({checkpoint})")
    telemetry = results.get("telemetry")
    log, attach = (Path(telemetry), [PPO_LOG]) if telemetry and r.path(telemetry).is_file() else (PPO_LOG, [])
    anneal = ANNEAL_DIR / "anneal_results.json"
    extra = [arg for path in (anneal, SUMMARY, *attach) for arg in ("--attach", str(path))]
    made = r.run(step, ["tools/archive_tool.py", "create", "--checkpoint", str(checkpoint), "--config", str(OVERLAY),
                        "--log", str(log), *extra, "--output", str(BUNDLE), "--overwrite"])  # fmt: skip
    if made.returncode != 0:
        raise StepFailed("FAIL", tail(made))
    verified = r.run(step, ["tools/archive_tool.py", "verify", str(BUNDLE)])
    step.facts = {"bundle": str(BUNDLE), "bundle_sha256": sha256_of(r.path(BUNDLE)), "checkpoint": str(checkpoint),
                  "log": str(log), "attached": [str(p) for p in (anneal, SUMMARY, *attach)],
                  "verify": verified.stdout.strip() or tail(verified)}  # fmt: skip
    step.artefacts = [str(BUNDLE), str(SUMMARY), *copied]
    step.verdict = "PASS" if verified.returncode == 0 else "FAIL"


#: (name, title, expected verdict, function), in the seed's order.
STEPS = (
    ("overlay", "Config overlay derived from poc_hybrid.yaml", "PASS", step_overlay),
    ("integrity", "Dataset integrity check", "PASS", step_integrity),
    ("bc", f"BC trainer verification (accuracy >= {BC_THRESHOLD})", "PASS", step_bc),
    ("anneal_smoke", "Anneal smoke (--mode mixed --epochs 1)", "PASS", step_smoke),
    ("anneal", "Anneal (--mode anneal, logs/anneal_results.json)", "PASS", step_anneal),
    ("drill", f"Rollback drill (threshold {DRILL_THRESHOLD})", "ROLLED BACK", step_drill),
    ("bundle", "Ops artefact bundle (archive_tool create + verify)", "PASS", step_bundle),
)


def run_rehearsal(
    workdir: Path, *, only: tuple[str, ...] | None = None, on_step: Callable[[Step], None] | None = None
) -> Rehearsal:
    """Run the steps in order in `workdir` (prepared already); a step that cannot go on gets its
    verdict and the rehearsal goes on (later steps may still say something useful)."""
    runner = Runner(workdir)
    out = Rehearsal(workdir)
    ctx: dict[str, Any] = {"steps": out.steps}
    for name, title, expected, fn in STEPS:
        if only is not None and name not in only:
            continue
        step = Step(name, title, expected)
        out.steps.append(step)
        t0 = time.perf_counter()
        try:
            fn(runner, step, ctx)
        except StepFailed as exc:
            step.verdict = exc.verdict
            step.notes.append(str(exc))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            step.verdict = "ERROR"
            step.notes.append(f"{type(exc).__name__}: {exc}")
        step.seconds = time.perf_counter() - t0
        if on_step is not None:
            on_step(step)
    return out
