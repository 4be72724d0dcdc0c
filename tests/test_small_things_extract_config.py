"""`checkpoint_tool.py extract-config` gives back the exact YAML a run was trained with, byte for byte
(comments, key order, CRLF line endings and included files kept), `--resolved` the resolved form, and an
older checkpoint without the embedded text says so (exit 2) while still loading and extracting `--resolved`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import DEFAULT_CONFIG, REPO_ROOT, CliResult, _cli_env, assert_one_line_error

#: The default town with a comment, an odd key order and CRLF line endings: a text the resolved form cannot give back.
HEAD = b"# tuned by hand: keep these comments\r\n"


def tool(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
    argv = [sys.executable, str(REPO_ROOT / "tools/checkpoint_tool.py"), *(str(a) for a in args)]
    return subprocess.run(argv, cwd=cwd, env=_cli_env(), capture_output=True, timeout=120, check=False)


def result(proc: subprocess.CompletedProcess[bytes]) -> CliResult:
    return CliResult([str(a) for a in proc.args], proc.returncode, proc.stdout.decode(), proc.stderr.decode())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A one-epoch PPO run on `town.yaml` (the variant above, including two files): its folder."""
    work = tmp_path_factory.mktemp("extract")
    for sub in ("configs/affordances", "configs/perturbations"):
        shutil.copytree(REPO_ROOT / sub, work / sub)
    text = DEFAULT_CONFIG.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    (work / "town.yaml").write_bytes(HEAD + text)
    argv = [sys.executable, "-m", "townlet", "train", "town.yaml", "--mode", "rollout", "--epochs", "1",
            "--num-envs", "1", "--rollout-ticks", "20", "--checkpoint", "ck.safetensors",
            "--ppo-log", "run.jsonl"]  # fmt: skip
    proc = subprocess.run(argv, cwd=work, env=_cli_env(), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    return work


def test_extract_config_gives_the_exact_yaml_back(trained: Path) -> None:
    source = (trained / "town.yaml").read_bytes()
    proc = tool(trained, "extract-config", "--path", "ck.safetensors", "--output", "restored.yaml")
    assert proc.returncode == 0, result(proc)
    assert (trained / "restored.yaml").read_bytes() == source
    assert b"exact YAML of town.yaml" in proc.stdout and b"--include" in proc.stdout
    # Without --output: the same bytes on standard output.
    proc = tool(trained, "extract-config", "-p", "ck.json")
    assert proc.returncode == 0 and proc.stdout == source, result(proc)
    # Included files, by key.
    proc = tool(trained, "extract-config", "-p", "ck.safetensors", "--include", "affordances")
    assert proc.stdout == (REPO_ROOT / "configs/affordances/core.yaml").read_bytes(), result(proc)
    # `info` names the embedded file.
    proc = tool(trained, "info", "ck.safetensors", "--json", "--registry", "none.json")
    assert json.loads(proc.stdout)["config_yaml"]["path"] == "town.yaml", result(proc)
    # The best-known checkpoint embeds it too.
    proc = tool(trained, "extract-config", "-p", "ck_best.safetensors")
    assert proc.stdout == source, result(proc)


def test_resolved_form_still_available(trained: Path) -> None:
    header = json.loads((trained / "ck.json").read_text(encoding="utf-8"))
    proc = tool(trained, "extract-config", "-p", "ck.safetensors", "--resolved")
    assert proc.returncode == 0, result(proc)
    assert yaml.safe_load(proc.stdout) == header["config"]
    proc = tool(trained, "extract-config", "-p", "ck.safetensors", "-o", "resolved.json")
    assert proc.returncode == 0 and b"resolved config as JSON" in proc.stdout, result(proc)
    assert json.loads((trained / "resolved.json").read_text(encoding="utf-8")) == header["config"]


def test_checkpoint_before_raw_text_embedding(trained: Path, tmp_path: Path) -> None:
    for name in ("ck.safetensors", "ck.json"):
        shutil.copy2(trained / name, tmp_path / name)
    sidecar = tmp_path / "ck.json"
    header = json.loads(sidecar.read_text(encoding="utf-8"))
    del header["config_yaml"]
    sidecar.write_text(json.dumps(header, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    res = result(tool(tmp_path, "extract-config", "-p", "ck.safetensors", "-o", "x.yaml"))
    assert_one_line_error(res, "predates raw-text embedding", "--resolved")
    assert not (tmp_path / "x.yaml").exists()
    # Still a valid checkpoint: it verifies, loads, and gives its resolved config.
    assert tool(tmp_path, "verify", "ck.safetensors").returncode == 0
    proc = tool(tmp_path, "info", "ck.safetensors", "--registry", "none.json")
    assert b"config yaml:    \xe2\x80\x94 (predates raw-text embedding" in proc.stdout, result(proc)
    from townlet.artifacts.checkpoint import load_checkpoint

    assert "config_yaml" not in load_checkpoint(tmp_path / "ck.safetensors").header
    proc = tool(tmp_path, "extract-config", "-p", "ck.safetensors", "--resolved", "-o", "x.yaml")
    assert proc.returncode == 0, result(proc)
    assert yaml.safe_load((tmp_path / "x.yaml").read_text(encoding="utf-8")) == header["config"]


def test_tampered_text_and_bad_options(trained: Path, tmp_path: Path) -> None:
    for name in ("ck.safetensors", "ck.json"):
        shutil.copy2(trained / name, tmp_path / name)
    res = result(tool(tmp_path, "extract-config", "-p", "ck.safetensors", "--include", "rewards"))
    assert_one_line_error(res, "'rewards'", "affordances, perturbations")
    res = result(tool(tmp_path, "extract-config", "-p", "ck.safetensors", "--include", "affordances", "--resolved"))
    assert_one_line_error(res, "--include")
    sidecar = tmp_path / "ck.json"
    header = json.loads(sidecar.read_text(encoding="utf-8"))
    header["config_yaml"]["text"] += "# edited\n"
    sidecar.write_text(json.dumps(header, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    res = result(tool(tmp_path, "extract-config", "-p", "ck.safetensors"))
    assert_one_line_error(res, "config_yaml text does not match its sha256", exit_code=1)
    res = result(tool(tmp_path, "verify", "ck.safetensors"))
    assert res.returncode == 1 and "config_yaml text does not match" in res.stderr, str(res)
