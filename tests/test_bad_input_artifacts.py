"""Artefacts that must not be trusted blindly.

* Checkpoints holding NaN/inf (in a parameter or in a training tensor, in either encoding) are refused on load,
  naming the file and the parameter, before any model or trainer sees them: `train --warm-start-load` and
  `capture rollout --policy` exit 2 with one `error:` line and write nothing; `checkpoint verify` lists the
  parameter among its problems (exit 1).
* `archive verify/summary/diff` refuse a member larger than `--max-member-bytes` before reading it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from conftest import CliResult, RunCli, assert_one_line_error

QUEUE = "configs/scenarios/queue_conflict.yaml"
TINY = ("--epochs", "1", "--num-envs", "1", "--rollout-ticks", "20", "-q")


@dataclass(frozen=True)
class Base:
    ckpt: Path  # a .json checkpoint with training state, written by the real trainer


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    from conftest import run_cli

    d = tmp_path_factory.mktemp("ckbase")
    res = run_cli("train", QUEUE, *TINY, "--fresh", "--warm-start-save", d / "a.json")
    assert res.returncode == 0, str(res)
    return Base(d / "a.json")


# (id, which table, which entry (index into its sorted names), the value written)
BAD_VALUES = [
    ("param-nan", "weights", 0, math.nan),
    ("param-inf", "weights", -1, math.inf),
    ("param-neg-inf", "weights", 1, -math.inf),
    ("train-nan", "training", 0, math.nan),
    ("train-inf", "training", -1, math.inf),
]


def _poisoned(base: Base, out: Path, table: str, index: int, value: float) -> tuple[Path, str, str]:
    """A copy of the base checkpoint (encoding from `out`'s suffix) with one non-finite entry; returns the path to
    pass, the file the error must name, and the entry's name. Every digest the format records still holds.

    JSON has no NaN/Infinity (refused as invalid JSON), so in a .json checkpoint the value is a number that loads
    as one: beyond float64 (1e400) or beyond float32 (1e39)."""
    import json

    from townlet.artifacts.checkpoint import load_checkpoint, save_checkpoint

    if out.suffix == ".json":
        header = json.loads(base.ckpt.read_text(encoding="utf-8"))
        key = "weights" if table == "weights" else "training_weights"
        name = sorted(header[key])[index]
        if isinstance(header[key][name], list):
            flat = header[key][name]
            while isinstance(flat[0], list):
                flat = flat[0]
            flat[0] = "@BAD@"
        else:  # a scalar tensor
            header[key][name] = "@BAD@"
        number = "1e400" if math.isnan(value) else ("1e39" if value > 0 else "-1e39")
        out.write_text(json.dumps(header).replace('"@BAD@"', number), encoding="utf-8")
        return out, str(out), name
    ck = load_checkpoint(base.ckpt)
    assert ck.training is not None
    net = ck.policy()
    tensors = dict(ck.training.tensors)
    if table == "weights":
        name = sorted(net.state_dict())[index]
        with torch.no_grad():
            net.state_dict()[name].view(-1)[0] = value
    else:
        name = sorted(tensors)[index]
        tensors[name] = tensors[name].clone()
        tensors[name].view(-1)[0] = value
    h = ck.header
    training = type(ck.training)(ck.training.data, tensors)
    save_checkpoint(out, net, obs_meta=h["observation"], config=h["config"], seed=h["seed"],
                    counters=h["counters"], metadata=h["metadata"], training=training)  # fmt: skip
    return out, str(out), name


ENCODINGS = ["json", "safetensors"]


def _assert_refused(res: CliResult, named: str, name: str, table: str) -> None:
    kind = "parameter" if table == "weights" else "training tensor"
    assert_one_line_error(res, f"{named}: {kind} {name!r} holds NaN or infinite values")


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(("table", "index", "value"), [c[1:] for c in BAD_VALUES], ids=[c[0] for c in BAD_VALUES])
def test_warm_start_refuses_non_finite_checkpoints(
    base: Base, tmp_path: Path, cli: RunCli, encoding: str, table: str, index: int, value: float
) -> None:
    ckpt, named, name = _poisoned(base, tmp_path / f"bad.{encoding}", table, index, value)
    out = tmp_path / "out.json"
    res = cli("train", QUEUE, *TINY[2:], "--epochs", "2", "--warm-start-load", ckpt, "--warm-start-save", out)
    _assert_refused(res, named, name, table)
    assert not out.exists()

    # verify reports it as a problem of the checkpoint (exit 1), naming the parameter.
    res = cli("checkpoint", "verify", ckpt)
    assert res.returncode == 1 and "Traceback" not in res.stderr, str(res)
    assert f"{name!r} holds NaN or infinite values" in res.stderr, str(res)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    ("table", "index", "value"), [c[1:] for c in BAD_VALUES[:3]], ids=[c[0] for c in BAD_VALUES[:3]]
)
def test_capture_refuses_a_non_finite_policy(
    base: Base, tmp_path: Path, cli: RunCli, encoding: str, table: str, index: int, value: float
) -> None:
    ckpt, named, name = _poisoned(base, tmp_path / f"bad.{encoding}", table, index, value)
    out = tmp_path / "capture"
    res = cli("capture", "rollout", QUEUE, "--output", out, "--ticks", "5", "--policy", ckpt)
    _assert_refused(res, named, name, table)
    assert not out.exists()


# -- archives ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def archive(base: Base, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import REPO_ROOT, run_cli

    out = tmp_path_factory.mktemp("archive") / "run.tar.gz"
    res = run_cli("archive", "create", "--checkpoint", base.ckpt, "--config", REPO_ROOT / QUEUE, "--output", out)
    assert res.returncode == 0, str(res)
    return out


def _member_sizes(path: Path) -> dict[str, int]:
    import tarfile

    with tarfile.open(path, "r:gz") as tar:
        return {m.name: m.size for m in tar.getmembers()}


def test_archive_members_over_the_size_limit_are_refused_before_reading(archive: Path, cli: RunCli) -> None:
    sizes = _member_sizes(archive)
    largest = max(sizes, key=lambda n: sizes[n])
    limit = sizes[largest] - 1
    # At the limit of the largest member everything verifies; one byte less refuses exactly that member.
    assert cli("archive", "verify", archive, "--max-member-bytes", str(sizes[largest])).returncode == 0
    refusal = f"member {largest!r} is {sizes[largest]} bytes, over the limit of {limit} (--max-member-bytes); not read"
    res = cli("archive", "verify", archive, "--max-member-bytes", str(limit))
    assert res.returncode == 1 and "Traceback" not in res.stderr, str(res)
    assert res.stderr_lines[0] == f"error: {archive}: {refusal}", str(res)
    assert "altered" not in res.stderr and "missing" not in res.stderr.split("\n")[0], str(res)

    # A small limit refuses every member above it, each named, none read.
    res = cli("archive", "verify", archive, "--max-member-bytes", "64", "--json")
    assert res.returncode == 1, str(res)
    problems = res.json()["problems"]
    for name, size in sizes.items():
        if size > 64:
            assert (
                f"{archive}: member {name!r} is {size} bytes, over the limit of 64 (--max-member-bytes); not read"
                in problems
            )

    # summary and diff verify first: one line naming the refusal, exit 1; no markdown file written.
    md = archive.parent / "summary.md"
    for args in (
        ["archive", "summary", "--archive", archive, "--max-member-bytes", str(limit), "--markdown-path", md],
        ["archive", "diff", "--archive", archive, "--config", QUEUE, "--max-member-bytes", str(limit)],
    ):
        res = cli(*args)
        assert_one_line_error(res, refusal, exit_code=1)
    assert not md.exists()
    res = cli("archive", "verify", archive, "--max-member-bytes", "0")
    assert res.returncode == 2 and "--max-member-bytes" in res.stderr and "Traceback" not in res.stderr, str(res)
