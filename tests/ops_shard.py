"""A real shard process for the operator tests: `run_simulation.py --serve 127.0.0.1:0` in a scratch folder, waited
on by its listening line (no sleeps), stopped with a signal and checked to exit cleanly."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from conftest import DEFAULT_CONFIG, REPO_ROOT, _cli_env

VIEWER = "viewer-token-0001"
ADMIN = "admin-token-0002"
TOKENS = [
    {"token": VIEWER, "role": "viewer", "label": "vera"},
    {"token": ADMIN, "role": "admin", "label": "ada"},
]
URL_LINE = re.compile(r"serving (\S+) on (http://\S+)")


@dataclass
class Served:
    url: str
    proc: subprocess.Popen[str]
    cwd: Path
    banner: str
    stderr_lines: list[str] = field(default_factory=list)

    @property
    def audit_path(self) -> Path:
        return self.cwd / "logs/console/commands.jsonl"

    def audit(self) -> list[dict[str, Any]]:
        text = self.audit_path.read_text(encoding="utf-8") if self.audit_path.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def post(self, body: Any, token: str | None = ADMIN, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if isinstance(body, (bytes, str)):
            return httpx.post(f"{self.url}/v1/commands", content=body, headers=headers, timeout=60, **kw)
        return httpx.post(f"{self.url}/v1/commands", json=body, headers=headers, timeout=60, **kw)

    def snapshot(self, token: str | None = VIEWER) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.get(f"{self.url}/v1/snapshot", headers=headers, timeout=60)

    def tick(self) -> int:
        return int(httpx.get(f"{self.url}/v1/health", timeout=60).json()["tick"])

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"{self.url}/metrics", timeout=60).text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.split()
                out[name] = float(value)
        return out

    def wait_for(self, what: str, check: Callable[[], bool], timeout: float = 90) -> None:
        """Poll `check` until it holds (an event to wait on, not a sleep); fail after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not check():
            assert self.proc.poll() is None, f"the shard exited while waiting for {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)

    def wait_ticks(self, n: int) -> int:
        """Wait until the shard has ticked `n` more times; the new tick."""
        start = self.tick()
        now = [start]

        def moved() -> bool:
            now[0] = self.tick()
            return now[0] >= start + n

        self.wait_for(f"{n} ticks", moved)
        return now[0]

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Stop the shard with `sig`; (exit status, the rest of stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
            raise AssertionError("the shard did not stop within 60 s of a signal") from None
        return self.proc.returncode, err


def start_shard(cwd: Path, *extra: str, tick_rate: float | None = 50, timeout: float = 120) -> Served:
    """Start `run_simulation.py --serve 127.0.0.1:0` in `cwd` and wait for its listening line."""
    tokens = cwd / "tokens.json"
    tokens.write_text(json.dumps(TOKENS), encoding="utf-8")
    argv = [
        sys.executable,
        str(REPO_ROOT / "tools/run_simulation.py"),
        "--config",
        str(DEFAULT_CONFIG),
        "--serve",
        "127.0.0.1:0",
        "--tokens",
        str(tokens),
        *(["--tick-rate", str(tick_rate)] if tick_rate else []),
        *extra,
    ]
    env = _cli_env()
    env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(proc.stdout.readline() if proc.stdout else ""), daemon=True)
    reader.start()
    reader.join(timeout)
    line = got[0] if got else ""
    match = URL_LINE.search(line)
    if match is None:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"no listening line from the shard: {line!r}\n{err}")
    return Served(url=match.group(2), proc=proc, cwd=cwd, banner=line.strip())


def no_proxy() -> None:
    """httpx honours proxy variables: loopback requests must never go through one."""
    os.environ["NO_PROXY"] = "127.0.0.1,localhost"
