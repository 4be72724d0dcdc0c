"""A memory policy's memory (an lstm/gru/attention checkpoint: one row per agent slot) in a shard snapshot.

`ShardWorld.memories` names the policies whose memory a snapshot keeps: `acting` (the acting policy) and, once a
promotion manager rides on the shard, `shadow`. Each one with memory is saved under the snapshot's
`shard.policy_memory.<role>` (so the snapshot's checksum covers it) as `{policy, architecture, width, rows, dtype,
data}`: the checkpoint's SHA-256, the memory's width and rows, and the rows as little-endian float32 bytes in
base64 (`rows` and `data` null: fresh memories, the policy has not acted since it last forgot). Never pickle.

Loading gives each role's policy the memory saved for it when it is the same checkpoint (digest) and the shape
fits; otherwise that policy starts from fresh memories. `restore` says which, in one line per role: `restored`, or
`fresh: <why>`.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

import numpy as np

from townlet.errors import UsageError

RESTORED = "restored"
DTYPE = "float32"
#: What a migrated snapshot (an older version, written before memories were kept) holds under `policy_memory`.
NOT_KEPT = None


def _parts(actor: Any) -> tuple[Any, str | None] | None:
    """(the network, its checkpoint's digest) of an actor whose network keeps a memory; None otherwise."""
    inner = getattr(actor, "actor", actor)  # a OneThread wraps the checkpoint actor
    net = getattr(getattr(inner, "loaded", None), "net", None)
    if net is None or not hasattr(net, "acting_state") or not callable(getattr(net, "reset_memory", None)):
        return None
    return net, getattr(getattr(inner, "checkpoint", None), "sha256", None)


def has_memory(actor: Any) -> bool:
    return _parts(actor) is not None


def forget(actor: Any) -> None:
    """Every slot's memory forgotten (a policy without memory: nothing)."""
    parts = _parts(actor)
    if parts is not None:
        parts[0].reset_memory()


def save(actor: Any) -> dict[str, Any] | None:
    """The actor's memory as a snapshot keeps it; None for a policy without memory (or the scripted expert)."""
    parts = _parts(actor)
    if parts is None:
        return None
    net, sha = parts
    doc: dict[str, Any] = {
        "policy": sha,
        "architecture": getattr(net, "architecture", None),
        "width": int(net.state_size),
        "rows": None,
        "dtype": DTYPE,
        "data": None,
    }
    state = net.acting_state
    if state is not None:
        rows = np.ascontiguousarray(state.detach().float().numpy(), dtype="<f4")
        doc["rows"] = int(rows.shape[0])
        doc["data"] = base64.b64encode(rows.tobytes()).decode("ascii")
    return doc


def check(path: Path, kept: Any) -> None:
    """A snapshot's `shard.policy_memory` well formed (UsageError naming the file and the key otherwise)."""
    if kept is NOT_KEPT:
        return
    if not isinstance(kept, dict):
        raise UsageError(f"{path}: shard.policy_memory: expected an object (role -> memory), got {type(kept).__name__}")
    for role, doc in kept.items():
        where = f"{path}: shard.policy_memory.{role}"
        if not isinstance(doc, dict):
            raise UsageError(f"{where}: expected an object, got {type(doc).__name__}")
        width, rows, data = doc.get("width"), doc.get("rows"), doc.get("data")
        if doc.get("dtype") != DTYPE or not isinstance(width, int) or width < 1:
            raise UsageError(f"{where}: expected dtype {DTYPE!r} and a positive integer width")
        if not isinstance(doc.get("policy"), str):
            raise UsageError(f"{where}.policy: expected the checkpoint's SHA-256")
        if data is None and rows is None:
            continue
        if not isinstance(rows, int) or rows < 0 or not isinstance(data, str):
            raise UsageError(f"{where}: rows and data: expected an integer and base64 text (or both null)")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise UsageError(f"{where}.data: not base64") from None
        if len(raw) != 4 * rows * width:
            raise UsageError(f"{where}.data: {len(raw)} bytes, expected {rows} x {width} float32 ({4 * rows * width})")


def restore(actor: Any, kept: dict[str, Any] | None, role: str) -> str | None:
    """Give the actor the memory `kept` (a checked `policy_memory`, or NOT_KEPT) holds for `role`, or fresh memories;
    the outcome in one line (None: the actor has no memory)."""
    parts = _parts(actor)
    if parts is None:
        return None
    net, sha = parts
    net.reset_memory()
    if kept is NOT_KEPT:
        return "fresh: the snapshot keeps no policy memory (written before snapshots kept it)"
    doc = kept.get(role)
    if doc is None:
        return f"fresh: the snapshot keeps no memory of a {role} memory policy"
    if doc["policy"] != sha:
        return f"fresh: the snapshot's {role} memory is another checkpoint's ({str(doc['policy'])[:12]})"
    if doc["width"] != int(net.state_size):
        return f"fresh: the snapshot's {role} memory is {doc['width']} wide, the policy's {net.state_size}"
    if doc["data"] is not None:
        import torch  # the actor is a torch network: torch is loaded already

        raw = np.frombuffer(base64.b64decode(doc["data"]), dtype="<f4").astype(np.float32)
        net.acting_state = torch.from_numpy(raw.reshape(doc["rows"], doc["width"]))
    return RESTORED
