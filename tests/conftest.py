"""Shared fixtures: repository paths, the CLI as a subprocess, and modified copies of the default config.

Every test runs in its own scratch working directory (`scratch_cwd`), a stand-in for a checkout: copies of
`configs/`, `docs/` and `pyproject.toml`, and `tools/` linked. Relative paths a user would type from the repository
root work, and whatever a command writes by default (`logs/...`) lands in the scratch folder, so neither the
directory pytest was started from nor checkpoints a developer left under `logs/` can change a result.
"""

from __future__ import annotations

import copy
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG_REL = "configs/examples/poc_hybrid.yaml"
DEFAULT_CONFIG = REPO_ROOT / DEFAULT_CONFIG_REL
CORE_MANIFEST = REPO_ROOT / "configs/affordances/core.yaml"
DEFAULT_PERTURBATIONS = REPO_ROOT / "configs/perturbations/default.yaml"

#: Keys whose string value names another YAML file, resolved relative to the including file.
INCLUDE_KEYS = ("affordances", "perturbations")


@dataclass(frozen=True)
class CliResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def json(self) -> dict[str, Any]:
        """The one JSON object printed on stdout (fails if stdout holds anything else)."""
        obj = json.loads(self.stdout)
        assert isinstance(obj, dict), f"expected one JSON object, got {type(obj).__name__}"
        return obj

    def __str__(self) -> str:  # shown in assertion messages
        return f"$ {' '.join(self.args)}\n[rc={self.returncode}]\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def _cli_env() -> dict[str, str]:
    env = dict(os.environ)
    # Plain, uncoloured, unwrapped output regardless of the caller's terminal settings.
    for key in ("FORCE_COLOR", "CLICOLOR_FORCE", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "PYTHONWARNINGS"):
        env.pop(key, None)
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "200"
    env["TERM"] = "dumb"
    return env


RunCli = Callable[..., CliResult]


def run_cli(*args: str | Path, tool: bool = False, timeout: float = 120) -> CliResult:
    """Run `python -m townlet ARGS` (or `python tools/run_simulation.py ARGS` with tool=True) in the test's scratch
    working directory."""
    head = [sys.executable, "tools/run_simulation.py"] if tool else [sys.executable, "-m", "townlet"]
    argv = [*head, *(str(a) for a in args)]
    proc = subprocess.run(argv, env=_cli_env(), capture_output=True, text=True, timeout=timeout, check=False)
    return CliResult(argv, proc.returncode, proc.stdout, proc.stderr)


def assert_one_line_error(res: CliResult, *must_contain: str, exit_code: int = 2) -> str:
    """A user error: the given exit status, exactly one stderr line starting `error:`, no traceback."""
    assert res.returncode == exit_code, str(res)
    assert "Traceback" not in res.stderr, str(res)
    lines = res.stderr_lines
    assert len(lines) == 1, str(res)
    line = lines[0]
    assert line.startswith("error:"), str(res)
    for text in must_contain:
        assert text in line, f"{text!r} not in {line!r}"
    return line


def default_config_data() -> dict[str, Any]:
    """The default config as a dict, with includes turned into absolute paths (usable from any directory)."""
    data = yaml.safe_load(DEFAULT_CONFIG.read_text(encoding="utf-8"))
    for key in INCLUDE_KEYS:
        value = data.get(key)
        if isinstance(value, str):
            data[key] = str((REPO_ROOT / value).resolve())
    return data


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def dump_yaml(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


Mutator = Callable[[dict[str, Any]], Any]
WriteConfig = Callable[..., Path]


#: What a scratch working directory copies from the repository (small: the inputs tests name by relative path).
SCRATCH_COPIES = ("configs", "docs", "pyproject.toml")


@pytest.fixture(autouse=True)
def scratch_cwd(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the test in a fresh working directory laid out like the repository root (see the module docstring)."""
    work = tmp_path_factory.mktemp("cwd")
    for name in SCRATCH_COPIES:
        src = REPO_ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name)
        else:
            shutil.copy2(src, work / name)
    (work / "tools").symlink_to(REPO_ROOT / "tools", target_is_directory=True)
    monkeypatch.chdir(work)
    return work


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def default_config_path() -> Path:
    return DEFAULT_CONFIG


@pytest.fixture(scope="session")
def cli() -> RunCli:
    return run_cli


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write a (modified) copy of the default config into tmp_path and return its path.

    `mutate(data)` edits the dict in place; `inline=True` inlines the included files instead of naming them
    by absolute path; `text=...` writes the given text verbatim.
    """

    def _write(
        mutate: Mutator | None = None,
        *,
        text: str | None = None,
        name: str = "config.yaml",
        inline: bool = False,
    ) -> Path:
        path = tmp_path / name
        if text is None:
            data = default_config_data()
            if inline:
                for key in INCLUDE_KEYS:
                    if isinstance(data.get(key), str):
                        data[key] = load_yaml(Path(data[key]))
            data = copy.deepcopy(data)
            if mutate is not None:
                mutate(data)
            text = dump_yaml(data)
        path.write_text(text, encoding="utf-8")
        return path

    return _write


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """A Ray cluster on 127.0.0.1 for the session: a head and a second node (`ray start`, one CPU each, dashboard
    off), started on first use and stopped (process groups ended, temp folder removed) at the end. Yields the
    `townlet.training.ray_cluster.LocalCluster`; `.address` is what `--ray-address` takes."""
    from townlet.training.ray_cluster import LocalCluster

    with LocalCluster(nodes=2, cpus_per_node=1) as cluster:
        yield cluster


def wait_exited(pid: int, timeout: float, kill: bool = False) -> bool:
    """Wait on the exit of process `pid`, a child or not, through a pidfd (readable once the process has exited,
    reaped or not): the event, not a poll. With `kill`, SIGKILL it first through the same pidfd, so a reused pid is
    never hit. True once it is gone; False if it still runs after `timeout` seconds."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True  # already gone
    try:
        if kill:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        ready, _, _ = select.select([fd], [], [], timeout)
        return bool(ready)
    except ProcessLookupError:
        return True  # exited and reaped since the pidfd was opened
    finally:
        os.close(fd)


def kill_once_saved(proc: subprocess.Popen[str], header: Path, epochs: int) -> int:
    """SIGKILL a training run (no clean-up) once its checkpoint `header` records at least `epochs` epochs
    (polling the file: the event the test waits on); returns the epochs of the checkpoint it left."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if json.loads(header.read_bytes())["counters"]["epochs"] >= epochs:
                break
        except (FileNotFoundError, ValueError):
            pass
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    return int(json.loads(header.read_bytes())["counters"]["epochs"])


def assert_same_checkpoint(done: Any, again: Any) -> None:
    """A resumed run's checkpoint `again` is the uninterrupted run's `done`: counters, weights, and the training
    state's data (towns, RNG streams, counters, best so far) and tensors (optimizer moments and the like)."""
    assert again.header["counters"] == done.header["counters"]
    for name, tensor in done.state.items():
        assert again.state[name].equal(tensor), name
    assert done.training is not None and again.training is not None
    assert again.training.data == done.training.data
    assert again.training.tensors.keys() == done.training.tensors.keys()
    for name, tensor in done.training.tensors.items():
        assert again.training.tensors[name].equal(tensor), name
