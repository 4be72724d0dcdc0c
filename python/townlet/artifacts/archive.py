"""Reproducible artifact archives: a checkpoint, its log and config in one `.tar.gz`.

Members (regular files only, sorted by name):

    checkpoint/X.json, checkpoint/X.safetensors   the checkpoint (one .json, or weights + header)
    checkpoint_config.json                        the config embedded in the checkpoint
    config/NAME                                   the config file as given
    config_resolved.json                          that config resolved (includes inlined, defaults filled)
    log/NAME                                      the log, when given
    attached/NAME                                 further files, when given (`--attach`)
    metadata.json                                 SHA-256 and size of every other member, label, provenance

Equal inputs give equal bytes: member mtimes are `SOURCE_DATE_EPOCH` (else 0), owners 0/0 with empty
names, modes 0644, PAX headers, and the gzip header has mtime 0 and no file name. `verify` reads the
members in memory (nothing is extracted) and fails on any extra, missing, altered, non-regular or
path-traversing member and when the checkpoint's `config_sha256` does not match the bundled config.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import ValidationError

from townlet.artifacts.archive_format import (
    ARCHIVE_FORMAT,
    ARCHIVE_VERSION,
    EMBEDDED,
    METADATA,
    RESOLVED,
    ArchiveMetadata,
    CheckpointBlock,
    ConfigBlock,
    LogBlock,
    MemberRecord,
    Provenance,
    metadata_problems,
)
from townlet.artifacts.checkpoint_tools import VerifyFailed, check_checkpoint, obj
from townlet.artifacts.checkpoint_tools import verify as verify_checkpoint
from townlet.artifacts.log_tools import validate_log
from townlet.artifacts.registry import config_sha256, key_path_diff, labels, load_resolved
from townlet.clock import source_date_epoch, utc_stamp
from townlet.errors import UsageError
from townlet.jsonio import atomic_write_bytes, canonical_json, loads_strict

MEMBER_MODE = 0o644
#: Members kept in memory by `read` (the others are only hashed, as a stream of 1 MiB chunks).
KEEP_PREFIXES = ("checkpoint/", EMBEDDED, RESOLVED, METADATA)
#: Default of `--max-member-bytes`: a member whose tar header says more is refused before it is read.
MAX_MEMBER_BYTES = 2 << 30


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# create


def build_tar(members: dict[str, bytes], mtime: int) -> bytes:
    """A deterministic .tar.gz of `members` (name -> bytes)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        for name in sorted(members):
            data = members[name]
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = mtime
            info.mode = MEMBER_MODE
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.type = tarfile.REGTYPE
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


@dataclass
class Created:
    output: Path
    sha256: str
    metadata: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def create(
    checkpoint: Path,
    config: Path,
    *,
    log: Path | None = None,
    output: Path | None = None,
    label: str | None = None,
    registry: Path | None = None,
    overwrite: bool = False,
    attach: tuple[Path, ...] = (),
) -> Created:
    """Bundle a checkpoint that verifies, its config and log (and `attach`: further files, by name);
    write the archive atomically."""
    files, check = verify_checkpoint(checkpoint)
    if files is None or check.header is None:
        raise UsageError(check.problems[0])
    if check.problems:
        raise VerifyFailed(
            f"{checkpoint}: refusing to archive a checkpoint that fails verification: {check.problems[0]}"
        )
    header = check.header
    notes: list[str] = []
    members: dict[str, bytes] = {f"checkpoint/{p.name}": p.read_bytes() for p in files.paths}
    members[EMBEDDED] = canonical_json(header["config"]).encode()
    try:
        members[f"config/{config.name}"] = config.read_bytes()
    except OSError as exc:
        raise UsageError(f"{config}: cannot read config ({exc.strerror or exc})") from None
    resolved = load_resolved(config)
    resolved_sha = config_sha256(resolved)
    members[RESOLVED] = canonical_json(resolved).encode()
    log_info: LogBlock | None = None
    if log is not None:
        report = validate_log(log)
        if report.problems:
            raise VerifyFailed(
                f"{log}: refusing to archive a log that fails validation ({len(report.problems)} problems; "
                f"first: {report.problems[0]})"
            )
        members[f"log/{log.name}"] = log.read_bytes()
        log_info = LogBlock(file=f"log/{log.name}", telemetry_records=report.telemetry, episode_records=report.episodes)
    attached = _attach(members, attach)
    ckpt_sha = header.get("config_sha256")
    known = labels(registry)
    registry_label = known.get(resolved_sha) or known.get(str(ckpt_sha))
    if ckpt_sha != resolved_sha:
        notes.append(
            f"{config} resolves to sha256 {resolved_sha[:12]} but the checkpoint embeds config sha256 "
            f"{str(ckpt_sha)[:12]} (trained with overrides or another config); the archive holds both "
            f"({RESOLVED} and {EMBEDDED})"
        )
    epoch = source_date_epoch()
    metadata = ArchiveMetadata(
        format=ARCHIVE_FORMAT,
        format_version=ARCHIVE_VERSION,
        # Equal inputs, equal bytes: no wall clock unless SOURCE_DATE_EPOCH asks for a time.
        created_utc=utc_stamp(epoch) if epoch is not None else header.get("created_utc"),
        label=label or registry_label,
        members={name: MemberRecord(sha256=_sha(data), size=len(data)) for name, data in sorted(members.items())},
        checkpoint=CheckpointBlock(
            format=files.kind,
            header=f"checkpoint/{files.header.name}",
            weights=f"checkpoint/{files.weights.name}" if files.weights else None,
            policy_class=header.get("policy_class"),
            config_sha256=ckpt_sha,
            fingerprint=header.get("fingerprint"),
            weights_sha256=check.weights_sha256,
            seed=header.get("seed"),
            counters=header.get("counters"),
        ),
        config=ConfigBlock(
            file=f"config/{config.name}",
            resolved=RESOLVED,
            resolved_sha256=resolved_sha,
            registry_label=registry_label,
            matches_checkpoint=ckpt_sha == resolved_sha,
        ),
        log=log_info,
        provenance=Provenance(
            git=header.get("git"),
            checkpoint_created_utc=header.get("created_utc"),
            libraries=header.get("libraries"),
            lineage=header.get("lineage"),
        ),
        attached=attached or None,
    ).model_dump()
    if not attached:
        del metadata["attached"]  # archives without attachments read as they always did
    members[METADATA] = canonical_json(metadata).encode()
    target = output or Path("artifacts") / f"{files.header.stem}.tar.gz"
    if target.exists() and not overwrite:
        raise UsageError(f"{target}: already exists (pass --overwrite to replace it)")
    data = build_tar(members, epoch or 0)
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        raise UsageError(f"{target}: cannot write ({exc.strerror or exc})") from None
    return Created(target, _sha(data), metadata, notes)


def _attach(members: dict[str, bytes], files: tuple[Path, ...]) -> list[str]:
    """Add each file as `attached/NAME`; two files of one name are refused."""
    names: list[str] = []
    for path in files:
        name = f"attached/{path.name}"
        if name in members:
            raise UsageError(f"--attach {path}: another attached file is also named {path.name}")
        try:
            members[name] = path.read_bytes()
        except OSError as exc:
            raise UsageError(f"--attach {path}: cannot read ({exc.strerror or exc})") from None
        names.append(name)
    return names


# ---------------------------------------------------------------------------------------------
# read / verify


@dataclass
class Member:
    name: str
    sha256: str
    size: int
    data: bytes | None  # kept for the members verify needs (KEEP_PREFIXES)


@dataclass
class Contents:
    members: dict[str, Member] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    oversized: set[str] = field(default_factory=set)  # refused by size, not read


def _unsafe_name(name: str) -> str | None:
    """Why a member name could write outside an extraction folder (None when it is safe)."""
    if not name or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if "\\" in name:
        return "a name with a backslash"
    if ".." in PurePosixPath(name).parts:
        return "a path that leaves the archive (..)"
    return None


def read(path: Path, max_member_bytes: int = MAX_MEMBER_BYTES) -> Contents:
    """Every member's name, size and SHA-256 (bytes for the ones verification needs), read in memory
    as a stream: nothing is extracted. Unsafe and non-regular members are problems, and so is a member
    whose header declares more than `max_member_bytes` (refused before any of it is read)."""
    out = Contents()
    kinds = {
        tarfile.SYMTYPE: "a symlink",
        tarfile.LNKTYPE: "a hard link",
        tarfile.DIRTYPE: "a directory",
        tarfile.CHRTYPE: "a character device",
        tarfile.BLKTYPE: "a block device",
        tarfile.FIFOTYPE: "a FIFO",
    }
    try:
        with tarfile.open(path, mode="r|gz") as tar:
            for info in tar:
                name = info.name
                why = _unsafe_name(name)
                if why:
                    out.problems.append(f"{path}: member {name!r} is {why}")
                if not info.isreg():
                    kind = kinds.get(info.type, f"not a regular file (type {info.type!r})")
                    target = f" -> {info.linkname}" if info.issym() or info.islnk() else ""
                    out.problems.append(f"{path}: member {name!r} is {kind}{target}; only regular files are allowed")
                    continue
                if name in out.members or name in out.oversized:
                    out.problems.append(f"{path}: member {name!r} appears twice")
                    continue
                if info.size > max_member_bytes:
                    out.problems.append(
                        f"{path}: member {name!r} is {info.size} bytes, over the limit of {max_member_bytes} "
                        "(--max-member-bytes); not read"
                    )
                    out.oversized.add(name)
                    continue
                fh = tar.extractfile(info)
                assert fh is not None  # a regular file
                digest, size, keep = hashlib.sha256(), 0, name.startswith(KEEP_PREFIXES) and not why
                chunks: list[bytes] = []
                while chunk := fh.read(1 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                    if keep:
                        chunks.append(chunk)
                out.members[name] = Member(name, digest.hexdigest(), size, b"".join(chunks) if keep else None)
    except FileNotFoundError:
        raise UsageError(f"{path}: archive not found") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a directory, not an archive") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as exc:
        out.problems.append(f"{path}: not a readable .tar.gz archive ({exc})")
        return out
    meta = out.members.get(METADATA)
    if meta is None or meta.data is None:
        out.problems.append(f"{path}: {METADATA} is missing")
        return out
    try:
        doc = loads_strict(meta.data)
    except (UnicodeDecodeError, ValueError) as exc:
        out.problems.append(f"{path}: {METADATA} is not valid JSON ({exc})")
        return out
    try:
        ArchiveMetadata.model_validate(doc)
    except ValidationError as exc:
        problems, unusable = metadata_problems(path, doc, exc)
        out.problems.extend(problems)
        if unusable:
            return out
    out.metadata = doc
    return out


def verify(path: Path, max_member_bytes: int = MAX_MEMBER_BYTES) -> Contents:
    """Read the archive and check it against its manifest; `.problems` lists every failure."""
    contents = read(path, max_member_bytes)
    doc = contents.metadata
    if doc is None:
        return contents
    problems = contents.problems
    listed: dict[str, Any] = doc["members"]
    present = {n for n in contents.members if n != METADATA}
    listed = {n: rec for n, rec in listed.items() if n not in contents.oversized}  # already reported
    for name in sorted(present - set(listed) - contents.oversized):
        problems.append(f"{path}: extra member {name!r} is not listed in {METADATA}")
    for name in sorted(set(listed) - present):
        problems.append(f"{path}: member {name!r} listed in {METADATA} is missing")
    for name in sorted(present & set(listed)):
        rec, member = listed[name], contents.members[name]
        if not isinstance(rec, dict):
            problems.append(f"{path}: {METADATA}: members.{name} must be an object")
            continue
        if rec.get("sha256") != member.sha256 or rec.get("size") != member.size:
            problems.append(
                f"{path}: member {name!r} was altered (sha256 {member.sha256[:12]}, size {member.size}; "
                f"{METADATA} records {str(rec.get('sha256'))[:12]}, size {rec.get('size')})"
            )
    _check_bundle(path, contents, doc, problems)
    return contents


def _json_member(contents: Contents, name: str) -> Any:
    member = contents.members.get(name)
    if member is None or member.data is None:
        return None
    try:
        return loads_strict(member.data)
    except (UnicodeDecodeError, ValueError):
        return None


def _check_bundle(path: Path, contents: Contents, doc: dict[str, Any], problems: list[str]) -> None:
    """The checkpoint verifies, and its config hash matches the bundled embedded config."""
    ck = obj(doc.get("checkpoint"))
    header_name = ck.get("header")
    member = contents.members.get(header_name) if isinstance(header_name, str) else None
    if member is None or member.data is None or not isinstance(header_name, str):
        problems.append(f"{path}: the checkpoint header {header_name!r} named in {METADATA} is not in the archive")
        return
    folder = str(PurePosixPath(header_name).parent)

    def read_weights(fname: str) -> bytes | None:
        found = contents.members.get(f"{folder}/{fname}")
        return found.data if found is not None else None

    check = check_checkpoint(f"{path}:{header_name}", member.data, read_weights)
    problems.extend(check.problems)
    if check.header is None:
        return
    recorded = check.header.get("config_sha256")
    actual = _config_hash(path, contents, EMBEDDED, "the checkpoint's embedded config", problems)
    if actual is not None and actual != recorded:
        problems.append(
            f"{path}: the checkpoint's config_sha256 {recorded} does not match the bundled config {EMBEDDED} "
            f"(sha256 {actual})"
        )
    if ck.get("config_sha256") != recorded:
        problems.append(
            f"{path}: {METADATA} records checkpoint config_sha256 {ck.get('config_sha256')!r}, the checkpoint "
            f"says {recorded!r}"
        )
    expected = obj(doc.get("config")).get("resolved_sha256")
    actual = _config_hash(path, contents, RESOLVED, "the resolved config", problems)
    if actual is not None and actual != expected:
        problems.append(f"{path}: {RESOLVED} hashes to {actual}, {METADATA} records {expected!r}")


def _config_hash(path: Path, contents: Contents, name: str, what: str, problems: list[str]) -> str | None:
    """`config_sha256` of the JSON member `name`; None (and a problem) when it has none."""
    config = _json_member(contents, name)
    if config is None:
        problems.append(f"{path}: {name} ({what}) is missing or not valid JSON")
        return None
    try:
        return config_sha256(config)
    except UsageError as exc:
        problems.append(f"{path}: {name}: {exc}")
        return None


def verified(path: Path, max_member_bytes: int = MAX_MEMBER_BYTES) -> Contents:
    """The archive's contents, or VerifyFailed naming its first problem (for diff and summary)."""
    contents = verify(path, max_member_bytes)
    if contents.problems or contents.metadata is None:
        first = contents.problems[0] if contents.problems else f"{path}: no manifest"
        raise VerifyFailed(
            f"{first} ({len(contents.problems)} problem{'s' if len(contents.problems) != 1 else ''}; "
            "run `archive verify`)"
        )
    return contents


# ---------------------------------------------------------------------------------------------
# diff / summary


def diff(path: Path, config: Path, max_member_bytes: int = MAX_MEMBER_BYTES) -> tuple[str, str, list[Any]]:
    """Key-path differences from the archive's resolved config to `config` resolved now."""
    contents = verified(path, max_member_bytes)
    archived = _json_member(contents, RESOLVED)
    live = load_resolved(config)
    return config_sha256(archived), config_sha256(live), key_path_diff(archived, live)


def _cell(value: Any) -> str:
    text = "—" if value is None or value == "" else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def _code(value: Any) -> str:
    return "—" if value is None else f"`{_cell(value)}`"


def markdown(path: Path, max_member_bytes: int = MAX_MEMBER_BYTES) -> str:
    """A Markdown summary of a verified archive: the same text for the same archive bytes."""
    contents = verified(path, max_member_bytes)
    doc = contents.metadata
    assert doc is not None
    ck, cfg = obj(doc.get("checkpoint")), obj(doc.get("config"))
    git = obj(obj(doc.get("provenance")).get("git"))
    counters = obj(ck.get("counters"))
    commit = git.get("commit")
    commit_text = _code(commit) + (" (uncommitted changes)" if git.get("dirty") else "") if commit else "—"
    rows = [
        ("label", _cell(doc.get("label"))),
        ("created", _cell(doc.get("created_utc"))),
        ("checkpoint", f"{_code(ck.get('header'))} ({_cell(ck.get('format'))}, {_cell(ck.get('policy_class'))})"),
        ("steps", f"{_cell(counters.get('steps'))} ({_cell(counters.get('epochs'))} epochs)"),
        ("seed", _cell(ck.get("seed"))),
        ("checkpoint config sha256", _code(ck.get("config_sha256"))),
        ("config", _code(cfg.get("file"))),
        ("config sha256 (resolved)", _code(cfg.get("resolved_sha256"))),
        ("registry label", _cell(cfg.get("registry_label"))),
        ("config matches checkpoint", "yes" if cfg.get("matches_checkpoint") else "no"),
        ("git commit", commit_text),
    ]
    lines = ["## Archive summary", "", "| field | value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    lines += ["", "| member | size | sha256 |", "|---|---:|---|"]
    members = contents.members
    for name in sorted(doc["members"]):
        rec = doc["members"][name]
        lines.append(f"| {_code(name)} | {rec.get('size')} | {_code(rec.get('sha256'))} |")
    meta = members[METADATA]
    lines += ["", f"`{METADATA}` sha256: `{meta.sha256}`", ""]
    return "\n".join(lines)


def stale_markdown(path: Path, text: str) -> str | None:
    """Why the file at `path` is not exactly `text` (None when it is)."""
    try:
        have = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return f"{path}: not found (write it with --markdown-path without --check-markdown)"
    except (OSError, UnicodeDecodeError) as exc:
        return f"{path}: cannot read ({exc})"
    if have == text:
        return None
    a, b = have.splitlines(), text.splitlines()
    line = next((i + 1 for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)) + 1)
    return f"{path}:{line}: differs from the archive's summary (regenerate it with --markdown-path)"
