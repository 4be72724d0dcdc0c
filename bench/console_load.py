#!/usr/bin/env python3
"""Load on a live shard's command bus: `python bench/console_load.py [--clients 4] [--commands 1000] [--tick-rate 50]`

Starts a real shard (`tools/run_simulation.py --serve 127.0.0.1:0`, the default town, ticking at `--tick-rate`) in a
scratch folder, then `--clients` threads each send `--commands` admin `setneed` commands over HTTP, each with its own
cmd_id, while the town ticks; every `--retry-every`-th command is sent a second time with the same cmd_id (a retry).
Then it checks the shard's audit log and metrics: every command applied exactly once (none lost, none applied twice;
the retries answered from the stored result), and prints the client-side latency (p50, p95, p99, max) and the
throughput. Commands wait for the tick that applies them, so latency is bounded below by the tick period.

`--json`: one JSON object (the bench convention: goals lost == 0, applied_twice == 0, failed == 0).
A shared, loaded machine moves the latency figures; the counts must hold regardless.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs/examples/poc_hybrid.yaml"
ADMIN = "bench-admin-token-1"
AGENTS = ("alice", "bob", "cara", "dan", "eve", "finn", "gina", "hugo", "iris")


def start_shard(folder: Path, tick_rate: float) -> tuple[subprocess.Popen[str], str]:
    tokens = folder / "tokens.json"
    tokens.write_text(json.dumps([{"token": ADMIN, "role": "admin", "label": "bench"}]), encoding="utf-8")
    argv = [sys.executable, str(REPO / "tools/run_simulation.py"), "--config", str(CONFIG), "--serve", "127.0.0.1:0"]
    argv += ["--tokens", str(tokens), "--tick-rate", str(tick_rate)]
    env = dict(os.environ, PYTHONUNBUFFERED="1", NO_COLOR="1")
    proc = subprocess.Popen(argv, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"on (http://\S+)", line)
    if match is None:
        proc.kill()
        raise SystemExit(f"the shard did not start: {line!r} {proc.communicate()[1]}")
    return proc, match.group(1)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def client(url: str, index: int, commands: int, retry_every: int, out: dict[str, Any]) -> None:
    latencies: list[float] = []
    failed: list[str] = []
    retry_mismatch = 0
    headers = {"Authorization": f"Bearer {ADMIN}"}
    with httpx.Client(base_url=url, headers=headers, timeout=60, trust_env=False) as http:
        for k in range(commands):
            cmd_id = f"load-{index}-{k}"
            value = round(0.2 + 0.6 * ((index * commands + k) % 97) / 96, 4)
            env = {"name": "setneed", "cmd_id": cmd_id, "args": [AGENTS[(index + k) % len(AGENTS)], "hunger", value]}
            t0 = time.perf_counter()
            res = http.post("/v1/commands", json=env)
            latencies.append((time.perf_counter() - t0) * 1000)
            body = res.json()
            if res.status_code != 200 or body.get("status") != "ok":
                failed.append(f"{cmd_id}: HTTP {res.status_code} {body.get('error')}")
                continue
            if retry_every and k % retry_every == 0:
                again = http.post("/v1/commands", json=env).json()
                if again.get("status") != "ok" or again.get("tick") != body.get("tick"):
                    retry_mismatch += 1
    out[str(index)] = {"latencies": latencies, "failed": failed, "retry_mismatch": retry_mismatch}


def metric(url: str, name: str) -> float:
    for line in httpx.get(f"{url}/metrics", timeout=60, trust_env=False).text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise SystemExit(f"/metrics has no {name}")


def run(clients: int, commands: int, tick_rate: float, retry_every: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="console_load_") as tmp:
        folder = Path(tmp)
        proc, url = start_shard(folder, tick_rate)
        try:
            applied_before = metric(url, "townlet_commands_applied")
            tick_before = metric(url, "townlet_tick")
            results: dict[str, Any] = {}
            threads = [
                threading.Thread(target=client, args=(url, i, commands, retry_every, results)) for i in range(clients)
            ]
            t0 = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            wall = time.perf_counter() - t0
            applied = metric(url, "townlet_commands_applied") - applied_before
            ticks = metric(url, "townlet_tick") - tick_before
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        if proc.returncode != 0:
            raise SystemExit(f"the shard exited {proc.returncode}: {err}")
        audit = [json.loads(x) for x in (folder / "logs/console/commands.jsonl").read_text().splitlines() if x]
    runs = Counter(
        r["cmd_id"] for r in audit if r["name"] == "setneed" and r["status"] == "ok" and not r.get("replayed")
    )
    replays = sum(1 for r in audit if r["name"] == "setneed" and r.get("replayed"))
    expected = {f"load-{i}-{k}" for i in range(clients) for k in range(commands)}
    latencies = [x for r in results.values() for x in r["latencies"]]
    failed = [x for r in results.values() for x in r["failed"]]
    return {
        "benchmark": "console_load",
        "clients": clients,
        "commands_per_client": commands,
        "tick_rate": tick_rate,
        "sent": len(latencies),
        "retries": replays,
        "failed": len(failed),
        "failures": failed[:5],
        "lost": len(expected - set(runs)),
        "applied_twice": sum(1 for n in runs.values() if n > 1),
        "applied_per_metrics": int(applied),
        "retry_mismatch": sum(r["retry_mismatch"] for r in results.values()),
        "ticks_during": int(ticks),
        "wall_s": round(wall, 2),
        "commands_per_sec": round(len(latencies) / wall, 1),
        "latency_ms": {
            "p50": round(percentile(latencies, 50), 2),
            "p95": round(percentile(latencies, 95), 2),
            "p99": round(percentile(latencies, 99), 2),
            "max": round(max(latencies), 2),
        },
        "goals": {
            "lost": {"value": 0, "op": "=="},
            "applied_twice": {"value": 0, "op": "=="},
            "failed": {"value": 0, "op": "=="},
            "retry_mismatch": {"value": 0, "op": "=="},
        },
        "figures": ["latency_ms.p50", "latency_ms.p99", "commands_per_sec"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--commands", type=int, default=1000)
    parser.add_argument("--tick-rate", type=float, default=50.0)
    parser.add_argument("--retry-every", type=int, default=10, help="resend every Nth command (0: never)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = run(args.clients, args.commands, args.tick_rate, args.retry_every)
    if args.json:
        print(json.dumps(out))
        return
    lat = out["latency_ms"]
    print(
        f"{out['clients']} clients x {out['commands_per_client']} setneed commands, "
        f"town at {out['tick_rate']:g} ticks/s"
    )
    print(f"sent {out['sent']} (+{out['retries']} retries) in {out['wall_s']} s: {out['commands_per_sec']} commands/s")
    print(
        f"applied once each: lost {out['lost']}, applied twice {out['applied_twice']}, failed {out['failed']}, "
        f"retries answered differently {out['retry_mismatch']} (metrics: {out['applied_per_metrics']} applied)"
    )
    print(
        f"latency ms: p50 {lat['p50']}, p95 {lat['p95']}, p99 {lat['p99']}, max {lat['max']} "
        f"({out['ticks_during']} ticks during the run)"
    )
    ok = out["lost"] == out["applied_twice"] == out["failed"] == out["retry_mismatch"] == 0
    print("goals (none lost, none applied twice, no failures): " + ("met" if ok else "NOT met"))
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
