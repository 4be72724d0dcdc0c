"""The warm-start tools (`tools/checkpoint_tool.py`, `config_registry.py`, `validate_registry.py`,
`log_tool.py`, `archive_tool.py`) and their Make targets, run as a user runs them on a checkpoint and
log written by the real trainer: round trips, tampered checkpoints and archives, a writer killed
mid-write, the registry's canonical form and prefix lookup, strict Make booleans, and `PATH=` as a
Make variable.

Subprocesses cover every command and Make target once; the many negative cases run the same CLI
in-process (typer's runner), which spares a torch import per case.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from conftest import DEFAULT_CONFIG, REPO_ROOT, CliResult, _cli_env, default_config_data
from townlet.artifacts.registry import config_sha256
from townlet.cli import app
from townlet.jsonio import canonical_json

CONFIG = REPO_ROOT / "configs/scenarios/queue_conflict.yaml"
OTHER_CONFIG = REPO_ROOT / "configs/scenarios/kitchen_breakfast.yaml"
EPOCH = "1700000000"
MAKE = shutil.which("make") or "/usr/bin/make"


# -- helpers -------------------------------------------------------------------------------------------------------


def _env(**extra: str) -> dict[str, str]:
    env = _cli_env()
    env.pop("SOURCE_DATE_EPOCH", None)
    env.update(extra)
    return env


def tool(name: str, *args: str | Path, env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
    """`python tools/NAME.py ARGS` in the test's scratch working directory."""
    argv = [sys.executable, f"tools/{name}.py", *(str(a) for a in args)]
    proc = subprocess.run(argv, env=env or _env(), capture_output=True, text=True, timeout=timeout, check=False)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def make(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
    """`make -s -C REPO TARGET VAR=...` from another directory, as a user types it."""
    argv = [MAKE, "-s", "-C", str(REPO_ROOT), *args]
    proc = subprocess.run(
        argv, cwd="/", env=env or _env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def dry_run(*args: str, env: dict[str, str] | None = None) -> tuple[CliResult, str]:
    """`make -n ARGS` and the recipe as one line (continuations joined)."""
    res = make("-n", *args, env=env)
    return res, " ".join(res.stdout.replace("\\\n", " ").split())


def cli(*args: str | Path) -> CliResult:
    """The same CLI in-process (for the many negative cases)."""
    argv = [str(a) for a in args]
    res = CliRunner().invoke(app, argv)
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return CliResult(["townlet", *argv], res.exit_code, res.stdout, res.stderr)


def assert_problem(res: CliResult, *texts: str) -> None:
    """Exit 1 with an `error:` line containing each text, and no traceback."""
    assert res.returncode == 1, str(res)
    assert "Traceback" not in res.stderr, str(res)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    for text in texts:
        assert any(text in ln for ln in errors), f"{text!r} not in the error lines of\n{res}"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class Run:
    dir: Path
    ckpt: Path  # ck.safetensors (+ ck.json sidecar)
    ckpt_json: Path  # ckj.json (weights inline)
    log: Path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A two-epoch PPO run of the real trainer, plus the same policy saved as a .json checkpoint."""
    d = tmp_path_factory.mktemp("warm")
    res = tool(
        "run_training",
        CONFIG,
        "--mode",
        "rollout",
        "--epochs",
        "2",
        "--num-envs",
        "1",
        "--rollout-ticks",
        "20",
        "--checkpoint",
        d / "ck.safetensors",
        "--ppo-log",
        d / "log.jsonl",
        "-q",
        "--fresh",
    )
    assert res.returncode == 0, str(res)
    from townlet.artifacts.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(d / "ck.safetensors")
    h = ck.header
    save_checkpoint(
        d / "ckj.json",
        ck.policy(),
        obs_meta=h["observation"],
        config=h["config"],
        seed=h["seed"],
        counters=h["counters"],
        metadata=h["metadata"],
    )
    return Run(d, d / "ck.safetensors", d / "ckj.json", d / "log.jsonl")


@pytest.fixture
def ckdir(run: Run, tmp_path: Path) -> Path:
    """A private copy of the run's checkpoints (for tests that damage them)."""
    out = tmp_path / "ck"
    out.mkdir()
    for name in ("ck.safetensors", "ck.json", "ckj.json"):
        shutil.copy2(run.dir / name, out / name)
    return out


# -- checkpoint tool -----------------------------------------------------------------------------------------------


def test_checkpoint_make_targets_list_info_copy(run: Run, tmp_path: Path) -> None:
    reg = tmp_path / "registry.json"
    res = make("checkpoint-list", f"DIR={run.dir}", f"REGISTRY={reg}")
    assert res.returncode == 0, str(res)
    rows = {ln.split()[0]: ln.split() for ln in res.stdout.splitlines()[1:] if ln.strip()}
    # The run also kept its best-known agent beside its checkpoint.
    assert set(rows) == {"ck.safetensors", "ck_best.safetensors", "ckj.json"}, str(res)
    assert rows["ck.safetensors"][1] == "safetensors" and rows["ckj.json"][1] == "json"
    header = json.loads((run.dir / "ck.json").read_text())
    # file, format, created, config id, phase, config (label or hash prefix), steps
    assert rows["ck.safetensors"][3] == header["metadata"]["config_id"], str(res)
    assert rows["ck.safetensors"][5] == header["config_sha256"][:12]
    assert rows["ck.safetensors"][6] == f"{header['counters']['steps']:,}"

    res = make("checkpoint-info", f"CHECKPOINT={run.ckpt}", f"REGISTRY={reg}")
    assert res.returncode == 0, str(res)
    assert "verified:       yes" in res.stdout and header["policy_class"] in res.stdout, str(res)
    assert header["config_sha256"] in res.stdout and header["fingerprint"] in res.stdout

    dest = tmp_path / "copies" / "best.safetensors"
    res = make("checkpoint-copy", f"SRC={run.ckpt}", f"DEST={dest}")
    assert res.returncode == 0 and "verified" in res.stdout, str(res)
    assert dest.read_bytes() == run.ckpt.read_bytes()
    copied = json.loads(dest.with_suffix(".json").read_text())
    assert copied["weights_file"] == "best.safetensors"  # the sidecar names the renamed weights
    assert {k: v for k, v in copied.items() if k != "weights_file"} == {
        k: v for k, v in header.items() if k != "weights_file"
    }

    # Refused without OVERWRITE (in-process: same code), replaced with OVERWRITE=1.
    other = tmp_path / "other.safetensors"
    _perturbed_checkpoint(run.ckpt, other)
    before = dest.read_bytes()
    res = cli("checkpoint", "copy", other, dest)
    assert res.returncode == 2 and "--overwrite" in res.stderr, str(res)
    assert dest.read_bytes() == before
    res = make("checkpoint-copy", f"SRC={other}", f"DEST={dest}", "OVERWRITE=1")
    assert res.returncode == 0, str(res)
    assert dest.read_bytes() == other.read_bytes()
    assert cli("checkpoint", "verify", dest).returncode == 0


def _perturbed_checkpoint(src: Path, dest: Path) -> None:
    """Another valid checkpoint: the same header with different weights."""
    from townlet.artifacts.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(src)
    net = ck.policy()
    with __import__("torch").no_grad():
        for p in net.parameters():
            p.add_(0.5)
    h = ck.header
    save_checkpoint(dest, net, obs_meta=h["observation"], config=h["config"], seed=h["seed"], counters=h["counters"])


def test_checkpoint_tool_verify_info_extract_config(run: Run, tmp_path: Path) -> None:
    res = tool("checkpoint_tool", "verify", run.ckpt)
    assert res.returncode == 0 and res.stdout.startswith(f"ok: {run.ckpt}: safetensors checkpoint"), str(res)
    out = tmp_path / "restored.yaml"
    # ckj.json embeds no raw YAML (saved by hand): its resolved config, with --resolved.
    res = tool("checkpoint_tool", "extract-config", "--path", run.ckpt_json, "--output", out, "--resolved")
    assert res.returncode == 0, str(res)
    header = json.loads(run.ckpt_json.read_text())
    assert yaml.safe_load(out.read_text()) == header["config"]
    # JSON output, refusing to overwrite, then --overwrite.
    res = cli("checkpoint", "extract-config", "--path", run.ckpt, "--output", out)
    assert res.returncode == 2 and "--overwrite" in res.stderr, str(res)
    out_json = tmp_path / "restored.json"
    assert cli("checkpoint", "extract-config", "-p", run.ckpt, "-o", out_json).returncode == 0
    assert config_sha256(json.loads(out_json.read_text())) == header["config_sha256"]
    assert cli("checkpoint", "extract-config", "-p", run.ckpt, "-o", out, "--overwrite").returncode == 0
    assert out.read_bytes() == CONFIG.read_bytes()  # the trainer's checkpoint: the exact YAML used
    # info --json for both formats.
    for path, kind in ((run.ckpt, "safetensors"), (run.ckpt_json, "json")):
        res = cli("checkpoint", "info", path, "--json", "--registry", tmp_path / "none.json")
        assert res.returncode == 0, str(res)
        info = json.loads(res.stdout)
        assert info["format"] == kind and info["verified"] is True and info["problems"] == []
        assert info["parameters"] > 0 and info["config_sha256"] == header["config_sha256"]


def test_checkpoint_copy_of_a_json_checkpoint_into_a_folder(run: Run, tmp_path: Path) -> None:
    res = cli("checkpoint", "copy", run.ckpt_json, f"{tmp_path}/into/")
    assert res.returncode == 0, str(res)
    assert (tmp_path / "into" / "ckj.json").read_bytes() == run.ckpt_json.read_bytes()
    res = cli("checkpoint", "copy", run.ckpt_json, tmp_path / "x.safetensors")
    assert res.returncode == 2 and "must end in .json" in res.stderr, str(res)
    res = cli("checkpoint", "copy", run.ckpt_json, run.ckpt_json, "--overwrite")
    assert res.returncode == 2 and "same checkpoint" in res.stderr, str(res)


def _edit_header(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    header = json.loads(path.read_text())
    edit(header)
    path.write_text(json.dumps(header))


def test_checkpoint_verify_names_every_problem(ckdir: Path) -> None:
    st, sidecar, js = ckdir / "ck.safetensors", ckdir / "ck.json", ckdir / "ckj.json"
    assert cli("checkpoint", "verify", st).returncode == 0
    assert cli("checkpoint", "verify", js).returncode == 0

    blob = bytearray(st.read_bytes())
    blob[-3] ^= 0xFF  # flip a byte of the last weight
    st.write_bytes(bytes(blob))

    def wrong_config_hash(h: dict[str, Any]) -> None:
        h["config_sha256"] = "0" * 64
        h["parameters"]["value_head.bias"] = [2]

    _edit_header(sidecar, wrong_config_hash)
    res = cli("checkpoint", "verify", st)
    assert_problem(
        res, "weights sha256", "config_sha256 " + "0" * 64 + " does not match the embedded config", "value_head.bias"
    )
    assert "architecture" in res.stderr and "4 problems" in res.stderr  # shapes disagree with weights and network

    # A sidecar cut short, and a sidecar whose weights_file tries to leave its folder.
    sidecar.write_bytes(sidecar.read_bytes()[:200])
    assert_problem(cli("checkpoint", "verify", st), "invalid JSON")
    assert cli("checkpoint", "info", st).returncode == 2
    _edit_header(js, lambda h: h.pop("weights"))
    js_header = json.loads(js.read_text())
    js_header["weights_file"] = "../ck.safetensors"
    js.write_text(json.dumps(js_header))
    assert_problem(cli("checkpoint", "verify", js), "weights_file must be a file name")
    # A missing file is a usage error, not a verification failure.
    res = cli("checkpoint", "verify", ckdir / "nope.safetensors")
    assert res.returncode == 2 and "not found" in res.stderr, str(res)


def test_checkpoint_verify_checks_the_training_state(run: Run, tmp_path: Path) -> None:
    """The optimizer tensors a resume restores are verified like the weights, in both encodings."""
    from townlet.artifacts.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(run.ckpt)
    assert ck.training is not None and ck.training.tensors, "a *_latest checkpoint carries training state"
    h = ck.header
    js = tmp_path / "train.json"
    save_checkpoint(js, ck.policy(), obs_meta=h["observation"], config=h["config"], seed=h["seed"],
                    counters=h["counters"], training=ck.training)  # fmt: skip
    assert cli("checkpoint", "verify", js).returncode == 0
    again = load_checkpoint(js)
    assert again.training is not None and again.training.data == ck.training.data
    assert all(again.training.tensors[k].equal(v) for k, v in ck.training.tensors.items())
    first = sorted(ck.training.tensors)[0]

    def damage(h: dict[str, Any]) -> None:
        h["training_weights"].pop(first)
        second = sorted(h["training"]["tensors"])[1]
        h["training"]["tensors"][second] = [1, 2, 3]
        h["training_weights"]["optim/99/exp_avg"] = [0.5]

    _edit_header(js, damage)
    res = cli("checkpoint", "verify", js)
    assert_problem(res, f"training tensor {first!r} is missing", "header says [1, 2, 3]", "'optim/99/exp_avg'")
    res = cli("train", "configs/scenarios/queue_conflict.yaml", "--epochs", "9", "--warm-start-load", js)
    assert res.returncode == 2 and "training tensors do not match the header" in res.stderr, str(res)

    # In a safetensors pair the training tensors live in the weights file; an unlisted one is named.
    side = tmp_path / "pair.json"
    shutil.copy2(run.ckpt, tmp_path / "pair.safetensors")
    shutil.copy2(run.ckpt.with_suffix(".json"), side)
    _edit_header(side, lambda h: h["training"]["tensors"].pop(first))
    _edit_header(side, lambda h: h.__setitem__("weights_file", "pair.safetensors"))
    assert_problem(cli("checkpoint", "verify", tmp_path / "pair.safetensors"), f"training tensor {first!r}")


def test_checkpoint_list_shows_registry_labels(ckdir: Path, tmp_path: Path) -> None:
    """A checkpoint embedding the resolved config carries the registry's hash, so list shows its label."""
    from townlet.artifacts.checkpoint import load_checkpoint, save_checkpoint
    from townlet.artifacts.registry import resolved_config
    from townlet.sim.config import load_config

    reg = tmp_path / "r.json"
    assert cli("registry", "register", CONFIG, "--label", "qc-label", "--registry", reg).returncode == 0
    ck = load_checkpoint(ckdir / "ck.safetensors")
    h = ck.header
    config = resolved_config(load_config(CONFIG))
    save_checkpoint(
        ckdir / "resolved.safetensors", ck.policy(), obs_meta=h["observation"], config=config, seed=1, counters={}
    )
    res = cli("checkpoint", "list", ckdir, "--json", "--registry", reg)
    rows = {r["file"]: r for r in json.loads(res.stdout)}
    assert rows["resolved.safetensors"]["config_label"] == "qc-label", str(res)
    assert rows["ck.safetensors"]["config_label"] is None
    res = cli("checkpoint", "list", ckdir, "--registry", reg)
    assert "qc-label" in res.stdout, str(res)


def test_checkpoint_list_marks_broken_and_skips_foreign_files(ckdir: Path) -> None:
    (ckdir / "notes.json").write_text('{"hello": 1}')
    (ckdir / "half.json").write_text('{"format": "townlet.checkpoint", "format_')
    (ckdir / "lonely.safetensors").write_bytes(b"x")
    res = cli("checkpoint", "list", ckdir, "--json", "--registry", ckdir / "none.json")
    assert res.returncode == 0, str(res)
    rows = {r["file"]: r for r in json.loads(res.stdout)}
    assert set(rows) == {"ck.safetensors", "ckj.json", "half.json", "lonely.safetensors"}
    assert rows["half.json"]["format"] == "invalid" and "invalid JSON" in rows["half.json"]["problem"]
    assert rows["lonely.safetensors"]["format"] == "invalid"
    res = cli("checkpoint", "list", ckdir / "missing")
    assert res.returncode == 2 and "directory not found" in res.stderr


# -- config registry -----------------------------------------------------------------------------------------------


def test_registry_make_targets_round_trip(tmp_path: Path) -> None:
    reg = tmp_path / "configs" / "registry.json"
    env = _env(SOURCE_DATE_EPOCH=EPOCH)
    res = make("config-register", f"CONFIG={CONFIG}", "LABEL=queue conflict, v1", f"REGISTRY={reg}", env=env)
    assert res.returncode == 0 and res.stdout.startswith("registered:"), str(res)
    raw = reg.read_bytes()
    doc = json.loads(raw)
    assert raw == canonical_json(doc).encode()  # the writer writes what the validator wants
    (sha_, entry), *_ = doc["entries"].items()
    assert entry["label"] == "queue conflict, v1" and entry["registered_utc"] == "2023-11-14T22:13:20Z"
    assert entry["path"] == "configs/scenarios/queue_conflict.yaml"  # repository-relative
    assert config_sha256(entry["config"]) == sha_

    res = make("registry-validate", f"REGISTRY={reg}")
    assert res.returncode == 0 and "canonical, 1 entries" in res.stdout, str(res)
    res = make("config-lookup", f"HASH={sha_[:8]}", f"REGISTRY={reg}")
    assert res.returncode == 0 and sha_ in res.stdout and "queue conflict, v1" in res.stdout, str(res)
    res = make("config-diff", f"A={CONFIG}", f"B={sha_[:10]}", f"REGISTRY={reg}")
    assert res.returncode == 0 and res.stdout.startswith("equal:"), str(res)
    res = make("config-diff", f"A={sha_[:10]}", f"B={OTHER_CONFIG}", f"REGISTRY={reg}")
    assert res.returncode == 2, str(res)  # make's status for a recipe that exits 1
    lines = res.stdout.splitlines()
    assert lines[0].startswith("--- registry entry 'queue conflict, v1'") and lines[-1].endswith("differences")
    assert "~ world.objects[0].id: " in res.stdout and "~ config_id: " in res.stdout

    res = tool("config_registry", "list", "--json", "--registry", reg)
    assert res.returncode == 0 and [e["sha256"] for e in json.loads(res.stdout)] == [sha_], str(res)
    res = make("registry-fmt", f"REGISTRY={reg}")
    assert res.returncode == 0 and res.stdout.startswith("already canonical"), str(res)


def test_registry_register_is_idempotent_and_relabels_explicitly(tmp_path: Path) -> None:
    reg = tmp_path / "r.json"
    assert cli("registry", "register", CONFIG, "--label", "a", "--registry", reg).returncode == 0
    res = cli("registry", "register", CONFIG, "--label", "a", "--registry", reg)
    assert res.returncode == 0 and res.stdout.startswith("already registered"), str(res)
    res = cli("registry", "register", CONFIG, "--label", "b", "--registry", reg)
    assert res.returncode == 2 and "--relabel" in res.stderr, str(res)
    assert cli("registry", "register", CONFIG, "--label", "b", "--relabel", "--registry", reg).returncode == 0
    entry = next(iter(json.loads(reg.read_text())["entries"].values()))
    assert entry["label"] == "b" and [p["label"] for p in entry["previous_labels"]] == ["a"]
    assert cli("registry", "validate", "--registry", reg).returncode == 0
    # A config the loader rejects is not registered.
    bad = tmp_path / "bad.yaml"
    bad.write_text("config_id: x\nbogus_section: 1\n")
    res = cli("registry", "register", bad, "--label", "bad", "--registry", reg)
    assert res.returncode == 2 and "bogus_section" in res.stderr, str(res)


def test_registry_validate_and_fmt(tmp_path: Path) -> None:
    reg = tmp_path / "r.json"
    assert cli("registry", "register", CONFIG, "--label", "qc", "--registry", reg).returncode == 0
    doc = json.loads(reg.read_text())
    # Unsorted, 4-space indent, no final newline: valid content, not canonical.
    reg.write_text(json.dumps({"format_version": 1, **doc}, indent=4))
    assert_problem(cli("registry", "validate", "--registry", reg), "not in canonical form")
    res = cli("registry", "fmt", "--registry", reg)
    assert res.returncode == 0 and res.stdout.startswith("reformatted"), str(res)
    assert reg.read_bytes() == canonical_json(doc).encode()
    assert cli("registry", "validate", "--registry", reg).returncode == 0
    # A hand-edited stored config no longer matches its hash.
    key = next(iter(doc["entries"]))
    doc["entries"][key]["config"]["seed"] = 12345
    reg.write_text(canonical_json(doc))
    assert_problem(cli("registry", "validate", "--registry", reg), f"entries.{key}.config: hashes to")
    # Not JSON at all: one problem, and fmt refuses to touch it.
    reg.write_text("{oops")
    assert_problem(cli("registry", "validate", "--registry", reg), "invalid JSON")
    assert cli("registry", "fmt", "--registry", reg).returncode == 2
    assert reg.read_text() == "{oops"


def test_registry_prefix_lookup_unique_ambiguous_missing(tmp_path: Path) -> None:
    # Two stored configs whose hashes share their first four hex digits.
    seen: dict[str, dict[str, Any]] = {}
    pair: list[dict[str, Any]] = []
    for i in range(20000):
        cfg = {"config_id": f"c{i}"}
        h = config_sha256(cfg)
        if h[:4] in seen:
            pair = [seen[h[:4]], cfg]
            break
        seen[h[:4]] = cfg
    assert pair
    entries = {}
    for n, cfg in enumerate(pair):
        h = config_sha256(cfg)
        entries[h] = {
            "config": cfg,
            "label": f"L{n}",
            "notes": "",
            "path": f"c{n}.yaml",
            "registered_utc": "2024-01-01T00:00:00Z",
            "sha256": h,
        }
    reg = tmp_path / "r.json"
    reg.write_text(canonical_json({"entries": entries, "format": "townlet.config_registry", "format_version": 1}))
    assert cli("registry", "validate", "--registry", reg).returncode == 0
    a, b = sorted(entries)
    prefix = a[:4]
    res = cli("registry", "lookup", prefix, "--registry", reg)
    assert res.returncode == 2 and "ambiguous" in res.stderr and a[:16] in res.stderr and b[:16] in res.stderr
    unique = next(a[:n] for n in range(5, 65) if not b.startswith(a[:n]))
    res = cli("registry", "lookup", unique, "--json", "--registry", reg)
    assert res.returncode == 0 and json.loads(res.stdout)["sha256"] == a, str(res)
    res = cli("registry", "lookup", "f" * 64 if not a.startswith("f") else "0" * 64, "--registry", reg)
    assert res.returncode == 1 and "no config registered" in res.stderr, str(res)
    res = cli("registry", "lookup", "xyz!", "--registry", reg)
    assert res.returncode == 2 and "not a SHA-256" in res.stderr


def test_registry_diff_is_a_key_path_diff_of_loaded_configs(tmp_path: Path) -> None:
    # The default config with its includes made absolute, keys reversed and a comment: equal.
    data = default_config_data()
    a = tmp_path / "a.yaml"
    a.write_text("# a comment\n" + yaml.safe_dump(dict(reversed(list(data.items()))), sort_keys=False))
    res = cli("registry", "diff", DEFAULT_CONFIG, a)
    assert res.returncode == 0 and res.stdout.startswith("equal:"), str(res)
    # Inlining an included file changes nothing either: the diff compares resolved configs.
    inlined = dict(data, affordances=yaml.safe_load(Path(data["affordances"]).read_text()))
    a.write_text(yaml.safe_dump(inlined))
    assert cli("registry", "diff", a, DEFAULT_CONFIG).returncode == 0
    data["seed"] += 1
    data["ppo"] = {"learning_rate": 0.001}
    b = tmp_path / "b.yaml"
    b.write_text(yaml.safe_dump(data))
    res = cli("registry", "diff", DEFAULT_CONFIG, b)
    assert res.returncode == 1, str(res)
    changes = [ln for ln in res.stdout.splitlines() if ln[:2] in ("~ ", "+ ", "- ")]
    assert changes == ["~ ppo.learning_rate: 0.0003 -> 0.001", f"~ seed: {data['seed'] - 1} -> {data['seed']}"]
    res = cli("registry", "diff", DEFAULT_CONFIG, tmp_path / "missing.yaml", "--registry", tmp_path / "r.json")
    assert res.returncode == 2 and "neither a config file nor a registered sha256" in res.stderr, str(res)


# -- log tool ------------------------------------------------------------------------------------------------------


def test_log_make_targets_with_path_as_a_make_variable(run: Run, tmp_path: Path) -> None:
    lines = run.log.read_text().splitlines()
    res = make("log-tail", f"PATH={run.log}", "LINES=1")
    assert res.returncode == 0 and res.stdout.splitlines() == lines[-1:], str(res)
    res = make("log-validate", f"PATH={run.log}")
    assert res.returncode == 0 and "2 records valid (2 telemetry, 0 bc, 0 episode)" in res.stdout, str(res)
    # LOG= works as well; an environment PATH alone does not name a log.
    res = make("log-validate", f"LOG={run.log}")
    assert res.returncode == 0, str(res)
    res = make("log-validate")
    assert res.returncode == 2 and "set PATH=FILE" in res.stderr, str(res)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(lines[0] + "\n" + '{"episode": 1, "return": NaN}\n')
    res = make("log-validate", f"PATH={bad}")
    assert res.returncode == 2 and f"{bad}:2: malformed JSON (NaN" in res.stderr, str(res)


def test_log_validate_episode_records(tmp_path: Path) -> None:
    good = [
        {"episode": 0, "run_id": "r1", "phase": "ppo", "return": 1.5, "length": 10, "env_steps": 10},
        {"episode": 1, "run_id": "r1", "phase": "ppo", "return": -0.5, "length": 12, "metrics": {"x": [1, 2.5]}},
        {"episode": 0, "run_id": "r2", "phase": "ppo", "return": 0.0},
    ]
    log = tmp_path / "ep.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in good))
    res = cli("log", "validate", log)
    assert res.returncode == 0 and "3 records valid (0 telemetry, 0 bc, 3 episode)" in res.stdout, str(res)
    bad_lines = [
        '{"episode": 2, "run_id": "r1", "return": 1e999}',  # overflows to infinity
        '{"episode": true}',
        '{"episode": -1}',
        '{"episode": 3, "length": 2.5}',
        '{"episode": 4, "metrics": {"kl": Infinity}}',
        "[1, 2]",
        '{"no_kind": 1}',
        '{"episode": 5, "run_id": "r1", "phase": "ppo"}',
        '{"episode": 5, "run_id": "r1", "phase": "ppo"}',  # a duplicate
        "{broken",
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in good) + "\n".join(bad_lines) + "\n" + '{"episode": 9, "ret')
    res = cli("log", "validate", log)
    assert_problem(
        res,
        f"{log}:4: field 'return' must be a finite number",
        f"{log}:5: field 'episode' must be an integer >= 0, got True",
        f"{log}:6: field 'episode' must be an integer >= 0, got -1",
        f"{log}:7: field 'length' must be an integer >= 0",
        f"{log}:8: malformed JSON (Infinity",
        f"{log}:9: expected a JSON object",
        f"{log}:10: neither a telemetry record",
        f"{log}:12: episode 5 after episode 5 at line 11",
        f"{log}:13: malformed JSON",
    )
    assert "incomplete final line" in res.stderr and f"{log}:14" in res.stderr  # a warning, not a problem
    res = cli("log", "validate", log, "--json")
    report = json.loads(res.stdout)
    assert res.returncode == 1 and len(report["problems"]) == 9 and len(report["warnings"]) == 1


def test_log_validate_telemetry_schema_problems(run: Run, tmp_path: Path) -> None:
    rec = json.loads(run.log.read_text().splitlines()[0])
    del rec["loss_total"]
    rec["grad_norm"] = True
    log = tmp_path / "t.jsonl"
    log.write_text(json.dumps(rec) + "\n")
    assert_problem(cli("log", "validate", log), "missing field 'loss_total'", "'grad_norm' must be a finite number")
    res = cli("log", "validate", tmp_path / "nope.jsonl")
    assert res.returncode == 2 and "log not found" in res.stderr


def test_log_tail_follow_is_bounded_and_follows_truncation_and_rotation(tmp_path: Path) -> None:
    log = tmp_path / "live.jsonl"
    log.write_text("".join(json.dumps({"episode": i}) + "\n" for i in range(5)))
    res = cli("log", "tail", log, "-n", "2")
    assert res.stdout.splitlines() == ['{"episode": 3}', '{"episode": 4}'], str(res)

    argv = [sys.executable, "tools/log_tool.py", "tail", str(log), "-n", "1", "--follow"]
    proc = subprocess.Popen(
        [*argv, "--interval", "0.05", "--max-wait", "1.5"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        # Each step waits for the line the previous one must produce: no timing assumptions.
        assert proc.stdout.readline() == '{"episode": 4}\n'
        with open(log, "a") as fh:
            fh.write('{"episode": 5}\n{"episode": 6, "par')  # a line still being written
        assert proc.stdout.readline() == '{"episode": 5}\n'
        with open(log, "a") as fh:
            fh.write('t": 1}\n')
        assert proc.stdout.readline() == '{"episode": 6, "part": 1}\n'
        log.write_text('{"episode": 100}\n')  # truncated and rewritten in place
        assert proc.stdout.readline() == '{"episode": 100}\n'
        os.replace(log, tmp_path / "live.jsonl.1")  # rotated: a new file under the name
        log.write_text('{"episode": 200}\n')
        assert proc.stdout.readline() == '{"episode": 200}\n'
        rest, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and rest == "", (rest, err)
    assert "truncated" in err and "rotated" in err and "no new lines for 1.5s" in err, err


# -- archives ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    path: Path
    registry: Path


@pytest.fixture(scope="module")
def bundle(run: Run, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """`make archive-artifacts` on the run, with its config registered under a label."""
    d = tmp_path_factory.mktemp("bundle")
    reg = d / "registry.json"
    assert cli("registry", "register", CONFIG, "--label", "queue-conflict", "--registry", reg).returncode == 0
    out = d / "run.tar.gz"
    res = make(
        "archive-artifacts",
        f"CHECKPOINT={run.ckpt}",
        f"LOG={run.log}",
        f"CONFIG={CONFIG}",
        f"OUTPUT={out}",
        f"REGISTRY={reg}",
        env=_env(SOURCE_DATE_EPOCH=EPOCH),
    )
    assert res.returncode == 0 and f"archive: {out}" in res.stdout, str(res)
    assert "note:" in res.stderr  # the trainer embeds its run config, not the file's resolved form
    return Bundle(out, reg)


def members_of(path: Path) -> dict[str, bytes]:
    with tarfile.open(path, "r:gz") as tar:
        out = {}
        for m in tar.getmembers():
            fh = tar.extractfile(m)
            assert fh is not None
            out[m.name] = fh.read()
        return out


def test_archive_contents_are_deterministic(run: Run, bundle: Bundle, tmp_path: Path, monkeypatch: Any) -> None:
    with tarfile.open(bundle.path, "r:gz") as tar:
        infos = tar.getmembers()
    names = [m.name for m in infos]
    assert (
        names
        == sorted(names)
        == [
            "checkpoint/ck.json",
            "checkpoint/ck.safetensors",
            "checkpoint_config.json",
            "config/queue_conflict.yaml",
            "config_resolved.json",
            "log/log.jsonl",
            "metadata.json",
        ]
    )
    for m in infos:
        assert m.isreg() and m.mtime == int(EPOCH) and (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
        assert m.mode == 0o644
    raw = bundle.path.read_bytes()
    assert raw[:3] == b"\x1f\x8b\x08" and raw[3] & 0x08 == 0 and raw[4:8] == b"\0\0\0\0"  # no name, mtime 0
    files = members_of(bundle.path)
    meta = json.loads(files["metadata.json"])
    for name, data in files.items():
        if name != "metadata.json":
            assert meta["members"][name] == {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert files["checkpoint/ck.safetensors"] == run.ckpt.read_bytes()
    assert files["log/log.jsonl"] == run.log.read_bytes() and files["config/queue_conflict.yaml"] == CONFIG.read_bytes()
    header = json.loads(files["checkpoint/ck.json"])
    assert json.loads(files["checkpoint_config.json"]) == header["config"]
    assert meta["label"] == "queue-conflict" == meta["config"]["registry_label"]
    assert meta["provenance"]["git"] == header["git"] and meta["created_utc"] == "2023-11-14T22:13:20Z"
    # Again, in another process state: the same bytes.
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    again = tmp_path / "again.tar.gz"
    res = cli(
        "archive", "create", "--checkpoint", run.ckpt, "--log", run.log, "--config", CONFIG, "-o", again,
        "--registry", bundle.registry,
    )  # fmt: skip
    assert res.returncode == 0, str(res)
    assert again.read_bytes() == raw
    res = cli("archive", "create", "--checkpoint", run.ckpt, "--config", CONFIG, "-o", again)
    assert res.returncode == 2 and "--overwrite" in res.stderr


def test_archive_verify_diff_summary(bundle: Bundle, tmp_path: Path) -> None:
    res = make("archive-verify", f"ARCHIVE={bundle.path}")
    assert res.returncode == 0 and res.stdout.startswith(f"ok: {bundle.path}: 7 members"), str(res)
    res = tool("archive_tool", "diff", "--archive", bundle.path, "--config", CONFIG)
    assert res.returncode == 0 and res.stdout.startswith("equal:"), str(res)
    res = cli("archive", "diff", "--archive", bundle.path, "--config", OTHER_CONFIG)
    assert res.returncode == 1 and "~ config_id: " in res.stdout and "differences" in res.stdout, str(res)

    notes = tmp_path / "release.md"
    res = make("archive-summary", f"ARCHIVE={bundle.path}", f"MARKDOWN_PATH={notes}")
    assert res.returncode == 0, str(res)
    text = notes.read_text()
    assert res.stdout == text and "| label | queue-conflict |" in text
    assert "| `checkpoint/ck.safetensors` |" in text
    res = cli("archive", "summary", "--archive", bundle.path, "--check-markdown", "--markdown-path", notes)
    assert res.returncode == 0 and res.stdout.startswith("ok:"), str(res)
    notes.write_text(text.replace("queue-conflict", "something else"))
    assert_problem(
        cli("archive", "summary", "--archive", bundle.path, "--check-markdown", "--markdown-path", notes),
        f"{notes}:5: differs",
    )
    res = cli("archive", "summary", "--archive", bundle.path)
    assert res.returncode == 0 and json.loads(res.stdout)["format"] == "townlet.archive"
    res = cli("archive", "summary", "--archive", bundle.path, "--check-markdown")
    assert res.returncode == 2 and "--markdown-path" in res.stderr


class _Extra:
    """Collects raw tar entries a tamper case adds (symlinks, links, unsafe names)."""

    def __init__(self) -> None:
        self.entries: list[tuple[tarfile.TarInfo, bytes | None]] = []

    def addfile(self, info: tarfile.TarInfo, fileobj: io.BytesIO | None = None) -> None:
        self.entries.append((info, fileobj.read() if fileobj is not None else None))


def _rewrite(src: Path, dest: Path, edit: Callable[[_Extra, dict[str, bytes]], Any]) -> Path:
    """Rebuild the archive after `edit(extra, members)` changed its members or added raw entries."""
    files, extra = members_of(src), _Extra()
    edit(extra, files)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info, raw in extra.entries:
            tar.addfile(info, io.BytesIO(raw) if raw is not None else None)
    dest.write_bytes(buf.getvalue())
    return dest


def _remanifest(files: dict[str, bytes], *names: str) -> None:
    """Record the current bytes of `names` in metadata.json (a tamperer who also edits the manifest)."""
    meta = json.loads(files["metadata.json"])
    for name in names:
        meta["members"][name] = {"sha256": hashlib.sha256(files[name]).hexdigest(), "size": len(files[name])}
    files["metadata.json"] = canonical_json(meta).encode()


def _flip(files: dict[str, bytes]) -> None:
    data = bytearray(files["checkpoint/ck.safetensors"])
    data[-5] ^= 0x01
    files["checkpoint/ck.safetensors"] = bytes(data)


def _truncate_sidecar(files: dict[str, bytes]) -> None:
    files["checkpoint/ck.json"] = files["checkpoint/ck.json"][:100]
    _remanifest(files, "checkpoint/ck.json")


def _wrong_config_hash(files: dict[str, bytes]) -> None:
    header = json.loads(files["checkpoint/ck.json"])
    header["config_sha256"] = hashlib.sha256(b"another config").hexdigest()
    files["checkpoint/ck.json"] = canonical_json(header).encode()
    _remanifest(files, "checkpoint/ck.json")


def _alter_embedded_config(files: dict[str, bytes]) -> None:
    cfg = json.loads(files["checkpoint_config.json"])
    cfg["seed"] = 1
    files["checkpoint_config.json"] = canonical_json(cfg).encode()
    _remanifest(files, "checkpoint_config.json")


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", data: bytes = b"") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info


TAMPER: dict[str, tuple[Callable[[_Extra, dict[str, bytes]], Any], list[str]]] = {
    "flipped byte": (lambda t, f: _flip(f), ["member 'checkpoint/ck.safetensors' was altered", "weights sha256"]),
    "added member": (lambda t, f: f.__setitem__("notes.txt", b"hi"), ["extra member 'notes.txt'"]),
    "missing member": (lambda t, f: f.pop("log/log.jsonl"), ["member 'log/log.jsonl' listed in metadata.json"]),
    "dotdot member": (
        lambda t, f: t.addfile(_entry("../evil.txt", data=b"x"), io.BytesIO(b"x")),
        ["'../evil.txt' is a path that leaves the archive", "extra member '../evil.txt'"],
    ),
    "absolute member": (
        lambda t, f: t.addfile(_entry("/tmp/evil.txt", data=b"x"), io.BytesIO(b"x")),
        ["'/tmp/evil.txt' is an absolute path"],
    ),
    "symlink member": (
        lambda t, f: (f.pop("log/log.jsonl"), t.addfile(_entry("log/log.jsonl", tarfile.SYMTYPE, "/etc/passwd"))),
        ["'log/log.jsonl' is a symlink -> /etc/passwd", "'log/log.jsonl' listed in metadata.json is missing"],
    ),
    "hardlink member": (
        lambda t, f: t.addfile(_entry("link", tarfile.LNKTYPE, "metadata.json")),
        ["'link' is a hard link -> metadata.json"],
    ),
    "truncated sidecar": (lambda t, f: _truncate_sidecar(f), ["checkpoint/ck.json: not a checkpoint (invalid JSON"]),
    "wrong config hash": (
        lambda t, f: _wrong_config_hash(f),
        ["does not match the embedded config", "does not match the bundled config checkpoint_config.json"],
    ),
    "altered embedded config": (
        lambda t, f: _alter_embedded_config(f),
        ["does not match the bundled config checkpoint_config.json"],
    ),
    "no manifest": (lambda t, f: f.pop("metadata.json"), ["metadata.json is missing"]),
}


@pytest.mark.parametrize("case", list(TAMPER))
def test_archive_verify_catches_tampering(bundle: Bundle, tmp_path: Path, case: str) -> None:
    edit, expected = TAMPER[case]
    bad = _rewrite(bundle.path, tmp_path / "bad.tar.gz", edit)
    before = set(os.listdir(tmp_path))
    res = cli("archive", "verify", bad)
    assert_problem(res, *expected)
    assert set(os.listdir(tmp_path)) == before and not Path("/tmp/evil.txt").exists()  # nothing extracted
    assert not (tmp_path.parent / "evil.txt").exists()


def test_archive_diff_and_summary_refuse_a_damaged_archive(bundle: Bundle, tmp_path: Path) -> None:
    bad = _rewrite(bundle.path, tmp_path / "bad.tar.gz", lambda t, f: _flip(f))
    for args in (("summary", "--archive", bad, "--markdown"), ("diff", "--archive", bad, "--config", CONFIG)):
        res = cli("archive", *args)
        assert res.returncode == 1 and "was altered" in res.stderr and "run `archive verify`" in res.stderr, str(res)


def test_archive_verify_rejects_truncated_and_foreign_files(bundle: Bundle, tmp_path: Path) -> None:
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(bundle.path.read_bytes()[:-200])
    assert_problem(cli("archive", "verify", cut), "not a readable .tar.gz archive")
    plain = tmp_path / "plain.tar.gz"
    plain.write_bytes(gzip.compress(b"not a tar"))
    assert cli("archive", "verify", plain).returncode == 1
    res = cli("archive", "verify", tmp_path / "none.tar.gz")
    assert res.returncode == 2 and "archive not found" in res.stderr


def test_archive_create_refuses_broken_inputs(run: Run, ckdir: Path, tmp_path: Path) -> None:
    _edit_header(ckdir / "ck.json", lambda h: h.__setitem__("config_sha256", "1" * 64))
    res = cli("archive", "create", "--checkpoint", ckdir / "ck.safetensors", "--config", CONFIG, "-o", tmp_path / "a")
    assert_problem(res, "refusing to archive a checkpoint that fails verification")
    bad_log = tmp_path / "bad.jsonl"
    bad_log.write_text('{"episode": -3}\n')
    res = cli("archive", "create", "--checkpoint", run.ckpt, "--config", CONFIG, "--log", bad_log, "-o", tmp_path / "a")
    assert_problem(res, "refusing to archive a log that fails validation")
    assert not (tmp_path / "a").exists()


# -- a writer killed mid-write ---------------------------------------------------------------------------------------

CHILD = """
import os, sys, time
from townlet.cli import app

real_fdopen, calls, target = os.fdopen, [0], int(sys.argv[1])

class Stalled:
    def __init__(self, fh): self.fh = fh
    def __enter__(self): return self
    def __exit__(self, *exc): return self.fh.__exit__(*exc)
    def __getattr__(self, name): return getattr(self.fh, name)
    def write(self, data):
        self.fh.write(data[: len(data) // 2]); self.fh.flush()
        print("HALF", flush=True)
        time.sleep(120)

def fdopen(fd, mode="r", *args, **kwargs):
    fh = real_fdopen(fd, mode, *args, **kwargs)
    if "w" in mode:
        calls[0] += 1
        if calls[0] == target:
            return Stalled(fh)
    return fh

os.fdopen = fdopen
app(sys.argv[2:])
"""


def _kill_mid_write(tmp_path: Path, nth_write: int, *args: str | Path) -> None:
    """Run the CLI with its `nth_write` atomic write stalled half-way, and SIGKILL it there."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    argv = [sys.executable, str(script), str(nth_write), *(str(a) for a in args)]
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == "HALF", (line, proc.stderr.read() if proc.stderr else "")
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_killed_archive_write_leaves_no_archive(run: Run, tmp_path: Path) -> None:
    out = tmp_path / "out" / "run.tar.gz"
    _kill_mid_write(tmp_path, 1, "archive", "create", "--checkpoint", run.ckpt, "--config", CONFIG, "-o", out)
    assert not out.exists()
    leftovers = list(out.parent.glob(".run.tar.gz.*.tmp"))
    assert len(leftovers) == 1 and leftovers[0].stat().st_size > 0  # the half-written temporary file
    res = cli("archive", "verify", out)
    assert res.returncode == 2 and "archive not found" in res.stderr


def test_killed_checkpoint_copy_never_shows_a_partial_file(run: Run, tmp_path: Path) -> None:
    dest = tmp_path / "dest.safetensors"
    _perturbed_checkpoint(run.ckpt, dest)
    old_header = dest.with_suffix(".json").read_bytes()
    # Stall the second write (the header); the weights are already in place.
    _kill_mid_write(tmp_path, 2, "checkpoint", "copy", run.ckpt, dest, "--overwrite")
    assert dest.read_bytes() == run.ckpt.read_bytes()  # whole new weights
    assert dest.with_suffix(".json").read_bytes() == old_header  # whole old header, not a part of the new one
    assert list(tmp_path.glob(".dest.json.*.tmp"))
    # The pair is inconsistent, and says so: the header's weights hash does not match.
    assert_problem(cli("checkpoint", "verify", dest), "does not match")
    # Re-running the copy repairs it.
    assert cli("checkpoint", "copy", run.ckpt, dest, "--overwrite").returncode == 0
    assert cli("checkpoint", "verify", dest).returncode == 0


# -- Make: strict booleans, quoting, PATH ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "on"),
    [("1", True), ("true", True), ("yes", True), ("0", False), ("false", False), ("no", False), ("", False)],
)
def test_make_booleans_are_strict(value: str, on: bool) -> None:
    res, cmd = dry_run("checkpoint-copy", "SRC=a b.safetensors", "DEST=it's.safetensors", f"OVERWRITE={value}")
    assert res.returncode == 0, str(res)
    expected = ".venv/bin/python tools/checkpoint_tool.py copy 'a b.safetensors' 'it'\\''s.safetensors'"
    assert cmd == expected + (" --overwrite" if on else ""), cmd


@pytest.mark.parametrize("value", ["maybe", "TRUE", "2", "on off"])
def test_make_rejects_other_boolean_values(value: str) -> None:
    res = make("-n", "checkpoint-copy", "SRC=a.safetensors", "DEST=b.safetensors", f"OVERWRITE={value}")
    assert res.returncode == 2 and f"OVERWRITE={value} is not a boolean" in res.stderr, str(res)
    res = make("-n", "log-tail", "PATH=x.jsonl", f"FOLLOW={value}")
    assert res.returncode == 2 and "is not a boolean" in res.stderr, str(res)


def test_make_recipes_do_not_need_the_search_path() -> None:
    res, cmd = dry_run("log-tail", "PATH=/logs/run 1.jsonl", "FOLLOW=1", "MAX_WAIT=5")
    assert res.returncode == 0, str(res)
    assert cmd == ".venv/bin/python tools/log_tool.py tail '/logs/run 1.jsonl' -n '20' --follow --max-wait '5'", cmd
    # A LINES exported by the shell (terminal height) is not a request.
    res = make("-n", "log-tail", "PATH=x.jsonl", env=_env(LINES="57"))
    assert "-n '20'" in res.stdout, str(res)
    res = make("-n", "log-tail", "PATH=x.jsonl", "LINES=3")
    assert "-n '3'" in res.stdout, str(res)
    for target, var in (("checkpoint-info", "CHECKPOINT"), ("archive-verify", "ARCHIVE"), ("config-lookup", "HASH")):
        res = make(target)
        assert res.returncode == 2 and f"set {var}=" in res.stderr, str(res)
    res = make("archive-artifacts", "CHECKPOINT=x.json")
    assert res.returncode == 2 and "set CONFIG=FILE" in res.stderr, str(res)


def test_repository_registry_is_canonical() -> None:
    res = make("registry-validate")
    assert res.returncode == 0 and res.stdout.startswith("ok:"), str(res)


def test_flake_has_the_registry_check() -> None:
    text = (REPO_ROOT / "flake.nix").read_text()
    # the sandboxed check and its Make-driven twin both run `make registry-validate` (docs/nix.md)
    assert 'registry = sourceCheck "registry" [ runPython pkgs.gnumake ] (makeTarget "registry-validate");' in text
    assert 'registry = "registry-validate";' in text
    nix = shutil.which("nix-instantiate")
    if nix is None:
        pytest.skip("nix-instantiate not installed")
    proc = subprocess.run([nix, "--parse", str(REPO_ROOT / "flake.nix")], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
