"""A Ray cluster on this machine's loopback, and connecting to one (`--backend ray`, its tests and benches).

`LocalCluster` starts a head and `nodes - 1` more nodes with `ray start --block`, each in its own process
group, on 127.0.0.1, with the dashboard and usage statistics off, its own free ports and its own temp
folder; `stop()` ends those process groups and removes the folder (never `ray stop`, which would end every
Ray cluster of this user on the machine). `connect(address)` joins a cluster as the driver, or, with no
address, starts a private one in this process (loopback, no dashboard). Ray is an optional extra
(`pip install 'townlet[ray]'`): `require_ray` says so in one line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from townlet.errors import TownletError, UsageError

#: Set before Ray is imported (unless the environment sets them): no usage statistics sent anywhere; a head
#: started by `ray.init` or `ray start --head` advertises 127.0.0.1 (Ray treats the machine as a one-node
#: cluster) instead of the address of the default route; no token file written to the home folder (the
#: cluster listens on loopback only).
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}

#: How long a node may take to start on a loaded machine before the cluster is given up.
START_TIMEOUT_S = 180.0
#: How long the nodes get to exit after SIGTERM before their process groups are killed.
STOP_GRACE_S = 5.0


class RayClusterError(TownletError):
    """A Ray cluster could not be started or joined."""


def require_ray() -> ModuleType:
    """The `ray` module, imported with `RAY_ENV` set; a usage error when the extra is not installed."""
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError:
        raise UsageError("--backend ray needs Ray: pip install 'townlet[ray]'") from None
    return ray


def connect(address: str | None, *, num_cpus: int | None = None) -> ModuleType:
    """Join the cluster at `address` ("127.0.0.1:PORT") as the driver, or start a private one in this
    process (`num_cpus`, loopback, no dashboard); a no-op when already connected."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    options: dict[str, Any] = {"log_to_driver": False, "configure_logging": False}
    if address:
        check_address(address)  # Ray itself would retry for minutes
    try:
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayClusterError(f"--ray-address {address}: cannot join the Ray cluster ({exc})") from None
    return ray


def check_address(address: str) -> None:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray-address {address}: expected HOST:PORT (the head's GCS address)")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise RayClusterError(
            f"--ray-address {address}: no Ray cluster answers there ({exc.strerror or exc})"
        ) from None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


#: `ray start` for a node that joins 127.0.0.1: Ray on Linux replaces a loopback address by the machine's
#: outward one (for real multi-node clusters); on one machine the node must stay on loopback like its head.
_NODE_CLI = (
    "import sys, ray._private.services as s; s.get_node_ip_address = lambda address=None: '127.0.0.1'; "
    "from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()"
)


class LocalCluster:
    """A head plus `nodes - 1` nodes on 127.0.0.1, `cpus_per_node` CPUs each (see the module doc)."""

    def __init__(self, nodes: int = 2, cpus_per_node: int = 1, *, object_store_mb: int = 200) -> None:
        if nodes < 1 or cpus_per_node < 1:
            raise ValueError("a cluster needs at least one node with one CPU")
        self.nodes, self.cpus_per_node = nodes, cpus_per_node
        self.object_store_bytes = object_store_mb * 1024 * 1024
        self.port = 0
        self.temp_dir: Path | None = None
        self._procs: list[subprocess.Popen[bytes]] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _node_args(self) -> list[str]:
        return [
            f"--num-cpus={self.cpus_per_node}",
            f"--object-store-memory={self.object_store_bytes}",
            "--disable-usage-stats",
            "--block",
            f"--node-manager-port={free_port()}",
            f"--object-manager-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
            f"--dashboard-agent-grpc-port={free_port()}",
            f"--runtime-env-agent-port={free_port()}",
            f"--metrics-export-port={free_port()}",
        ]

    def _spawn(self, args: list[str], env: dict[str, str], name: str) -> None:
        assert self.temp_dir is not None
        log = open(self.temp_dir / f"{name}.log", "wb")  # noqa: SIM115 - the process keeps it
        self._procs.append(
            subprocess.Popen(
                [sys.executable, "-c", _NODE_CLI, "start", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        )
        log.close()

    def start(self) -> None:
        """Start the head, then the other nodes; returns once every node has joined (or raises, stopped)."""
        # A short folder: Ray's socket paths must fit in 107 bytes.
        self.temp_dir = Path(tempfile.mkdtemp(prefix="tlray", dir="/tmp"))
        self.port = free_port()
        base = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        head = [
            "--head",
            f"--port={self.port}",
            "--node-ip-address=127.0.0.1",
            "--include-dashboard=false",
            f"--ray-client-server-port={free_port()}",
            f"--temp-dir={self.temp_dir}",
            *self._node_args(),
        ]
        try:
            self._spawn(head, {**base, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}, "head")
            self._wait_started(0)
            # A node joining 127.0.0.1:PORT takes 127.0.0.1 as its address (the head's point of view).
            for k in range(1, self.nodes):
                node_env = {**base, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1"}  # `ray start` refuses to join otherwise
                self._spawn([f"--address={self.address}", *self._node_args()], node_env, f"node{k}")
                self._wait_started(k)
        except BaseException:
            self.stop()
            raise

    def _wait_started(self, k: int) -> None:
        """Until node `k`'s `ray start` says the runtime started (or it exits, or the deadline passes)."""
        assert self.temp_dir is not None
        log = self.temp_dir / ("head.log" if k == 0 else f"node{k}.log")
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if "Ray runtime started" in log.read_text(errors="replace"):
                return
            if self._procs[k].poll() is not None:
                break
            time.sleep(0.2)
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise RayClusterError(f"ray node {k} did not start within {START_TIMEOUT_S:.0f}s: {' | '.join(tail)}")

    def stop(self) -> None:
        """End every node's process group (TERM, then KILL after a grace period) and remove the temp folder."""
        for proc in reversed(self._procs):
            _end_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in reversed(self._procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            _end_group(proc, signal.SIGKILL)  # whatever of the group is left (workers, agents)
            proc.wait(timeout=30)
        self._procs.clear()
        if self.temp_dir is not None:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
            self.temp_dir = None


def _end_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
