"""The capture's .npz writer: each sample's archive written from array memory, streamed while the
town steps, byte for byte what `npz_bytes` (plain `zipfile`) makes of the same arrays.

Every offset of a stored archive is known before the first tick, so the rows of the big per-tick
arrays (`map`, `features`) go to their final offsets in the staging file, and their CRC-32 is
extended, while later ticks step (the GIL is released); only the zip headers, the small arrays and
the central directory are left for the end. Deflated archives stream the CRC only.

Why not plain `zipfile`/`np.savez` (`npz_bytes` + `staging.publish`, the same bytes): measured on
the default town (configs/examples/poc_hybrid.yaml, 1440 ticks; 2-core machine shared with other
work, so noisy; medians of 5 interleaved runs in each of three sessions, the third being
`bench/capture.py --only default_town,default_town_compressed`, whose deflated set has 2 repeats),
a whole capture takes, streaming vs plain:

    stored:    103 vs 207 ms (plain 2.00x), 168 vs 233 ms (1.38x), 88 vs 172 ms (1.95x)
    deflated:  227 vs 286 ms (plain 1.26x), 244 vs 284 ms (1.16x), 204 vs 262 ms (1.29x)

so the streaming writer stays. `bench/capture.py` prints the ratio again (`plain_writer_ratio`).
"""

from __future__ import annotations

import functools
import io
import struct
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from townlet import _core
from townlet.capture.staging import pwrite_all
from townlet.errors import UsageError

#: Zip entries carry this date, never the clock's.
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
#: The per-tick arrays large enough to stream to disk while later ticks step.
STREAMED_ARRAYS = ("map", "features")
#: About this many bytes of streamed rows per chunk of ticks.
CHUNK_BYTES = 2 << 20
#: Pieces of at least this size are written on their own; smaller ones are gathered into runs.
_RUN_BYTES = 64 << 10
_ZIP64_LIMIT = (1 << 31) - 1
_ZIP_FILECOUNT_LIMIT = (1 << 16) - 1
_CENTRAL_DIR = struct.Struct("<4s4B4HL2L5H2L")
_END_RECORD = struct.Struct("<4s4H2LH")


def chunks(steps: int, bytes_per_tick: int) -> list[tuple[int, int]]:
    """Tick ranges of about CHUNK_BYTES of streamed rows each."""
    size = max(1, CHUNK_BYTES // max(1, bytes_per_tick))
    return [(t0, min(steps, t0 + size)) for t0 in range(0, steps, size)]


def npz_bytes(arrays: dict[str, npt.NDArray[Any]], *, compress: bool) -> bytes:
    """An .npz archive with fixed entry dates and order, so equal arrays give equal bytes."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name in sorted(arrays):
            payload = io.BytesIO()
            np.lib.format.write_array(payload, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = method
            info.external_attr = 0o644 << 16
            zf.writestr(info, payload.getvalue())
    return buf.getvalue()


def load_npz(path: Path, raw: bytes | None = None) -> dict[str, npt.NDArray[Any]]:
    """Read a sample (from `raw`, its bytes, when the caller has them) without ever unpickling; a
    damaged file is a UsageError naming it."""
    try:
        with np.load(io.BytesIO(raw) if raw is not None else path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise UsageError(f"{path}: file not found") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise UsageError(f"{path}: not a readable .npz sample ({exc})") from None


#: The arrays a training sample must hold, one row per tick (`map` may have more axes).
SAMPLE_ARRAYS = ("map", "features", "actions", "old_log_probs", "rewards", "dones", "action_masks")
#: Per-tick arrays a sample may hold (defaults apply when absent).
OPTIONAL_ARRAYS = ("truncations", "alive")
_SAMPLE_NDIM = {"features": 2, "action_masks": 2}


def check_sample(path: Path, arrays: dict[str, npt.NDArray[Any]]) -> None:
    """A training sample's arrays (`load_npz`), checked in one place: every array it needs, one row
    per tick in each, numbers only, finite floats, actions inside the action mask's width. A
    problem is a UsageError naming the file and the array."""
    missing = [a for a in SAMPLE_ARRAYS[:-1] if a not in arrays]
    if missing:
        raise UsageError(f"{path}: sample lacks arrays {missing}")
    if "action_masks" not in arrays:
        raise UsageError(f"{path}: sample lacks action_masks (captured by an older Townlet?)")
    rows = None
    for name in (*SAMPLE_ARRAYS, *OPTIONAL_ARRAYS):
        arr = arrays.get(name)
        if arr is None:
            continue
        if arr.dtype.kind not in "biuf":
            raise UsageError(f"{path}: array {name!r} holds {arr.dtype} values, not numbers")
        want = _SAMPLE_NDIM.get(name, 2 if name == "map" else 1)
        if arr.ndim < want or (name != "map" and arr.ndim != want):
            raise UsageError(f"{path}: array {name!r} has shape {arr.shape}, expected {want} axes (ticks first)")
        if rows is None:
            rows = arr.shape[0]
            if rows == 0:
                raise UsageError(f"{path}: array {name!r} has no rows (the sample holds no ticks)")
        elif arr.shape[0] != rows:
            raise UsageError(f"{path}: array {name!r} has {arr.shape[0]} rows, but 'map' has {rows} (one per tick)")
        if arr.dtype.kind == "f":
            bad = ~np.isfinite(arr)
            if bad.any():
                first = np.unravel_index(int(np.argmax(bad)), arr.shape)
                raise UsageError(
                    f"{path}: array {name!r} holds a non-finite value ({arr[first]} at row {int(first[0])})"
                )
    actions, width = arrays["actions"], arrays["action_masks"].shape[1]
    if actions.dtype.kind not in "iu":
        raise UsageError(f"{path}: array 'actions' holds {actions.dtype} values, not action indices")
    out_of_range = (actions < 0) | (actions >= width)
    if out_of_range.any():
        row = int(np.argmax(out_of_range))
        raise UsageError(
            f"{path}: array 'actions' holds {int(actions[row])} at row {row}, outside the {width} actions of "
            "'action_masks'"
        )


def _npy_header(arr: npt.NDArray[Any]) -> bytes:
    """The .npy header `np.lib.format.write_array` writes before `arr`'s data."""
    return _npy_header_for(arr.dtype, arr.shape)


@functools.lru_cache(maxsize=256)
def _npy_header_for(dtype: np.dtype[Any], shape: tuple[int, ...]) -> bytes:
    # What `header_data_from_array_1_0` gives for a C-contiguous array.
    header = {"shape": shape, "fortran_order": False, "descr": np.lib.format.dtype_to_descr(dtype)}
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, header)
    return buf.getvalue()


def _flat_bytes(arr: npt.NDArray[Any]) -> memoryview:
    if not arr.flags.c_contiguous:
        raise ValueError("capture arrays must be C-contiguous")
    return memoryview(arr.reshape(-1).view(np.uint8).data)


def _central_directory(infos: Sequence[zipfile.ZipInfo], start: int) -> bytes:
    """Central directory and end record, as `zipfile.ZipFile` writes them without ZIP64 or comments."""
    parts = []
    for info in infos:
        dt = info.date_time
        dosdate = (dt[0] - 1980) << 9 | dt[1] << 5 | dt[2]
        dostime = dt[3] << 11 | dt[4] << 5 | (dt[5] // 2)
        name = info.filename.encode("ascii")
        parts.append(
            _CENTRAL_DIR.pack(
                b"PK\x01\x02",
                info.create_version,
                info.create_system,
                info.extract_version,
                info.reserved,
                info.flag_bits,
                info.compress_type,
                dostime,
                dosdate,
                info.CRC,
                info.compress_size,
                info.file_size,
                len(name),
                0,
                0,
                0,
                info.internal_attr,
                info.external_attr,
                info.header_offset,
            )
            + name
        )
    body = b"".join(parts)
    end = _END_RECORD.pack(b"PK\x05\x06", 0, 0, len(infos), len(infos), len(body), start, 0)
    return body + end


@dataclass(eq=False)
class _Entry:
    """One array of a sample: its zip entry, .npy header and data (the array's own memory)."""

    info: zipfile.ZipInfo
    header: bytes
    data: memoryview
    streamed: bool
    row_bytes: int
    crc: int = 0
    data_offset: int = 0
    packed: bytes = b""


class SampleWriter:
    """One agent's .npz, written from its arrays without building the archive in memory.

    Byte for byte what `npz_bytes(arrays, compress=...)` returns (a test holds the two together).
    Archives that would need ZIP64 (an entry near 2 GiB) are left to `npz_bytes` itself.
    """

    def __init__(self, stem: str, arrays: dict[str, npt.NDArray[Any]], *, compress: bool) -> None:
        self.name = f"{stem}.npz"
        self.arrays = arrays
        self.compress = compress
        method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        self.entries: list[_Entry] = []
        for key in sorted(arrays):
            arr = arrays[key]
            info = zipfile.ZipInfo(f"{key}.npy", date_time=ZIP_DATE)
            info.compress_type = method
            info.external_attr = 0o644 << 16
            header = _npy_header(arr)
            data = _flat_bytes(arr)
            info.file_size = len(header) + data.nbytes
            streamed = key in STREAMED_ARRAYS
            rows = arr.shape[0] if arr.ndim else 1
            row_bytes = data.nbytes // rows if rows else 0
            self.entries.append(_Entry(info, header, data, streamed, row_bytes))
        # A streamed array's CRC starts from its header's; its rows extend it as they come (`_rows`).
        streamed_entries = [e for e in self.entries if e.streamed]
        for e, crc in zip(
            streamed_entries, _core.crc32s([(0, [_u8(e.header)]) for e in streamed_entries]), strict=True
        ):
            e.crc = crc
        size = sum(30 + len(e.info.filename) + e.info.file_size for e in self.entries)
        self.zip64 = (
            any(e.info.file_size * 1.05 > _ZIP64_LIMIT for e in self.entries)
            or size + 46 * len(self.entries) > _ZIP64_LIMIT
            or len(self.entries) > _ZIP_FILECOUNT_LIMIT
        )
        self.rows = next(len(arrays[key]) for key in STREAMED_ARRAYS)
        self.nbytes = sum(e.data.nbytes for e in self.entries)
        self.rows_streamed = 0
        self._writes: list[tuple[bytes | bytearray | memoryview, int]] = []
        # Stored archives have every offset fixed in advance, so rows can go to disk as they come.
        self.planned = not compress and not self.zip64
        if self.planned:
            self._place([e.info.file_size for e in self.entries])

    def _place(self, sizes: Iterable[int]) -> int:
        offset = 0
        for entry, size in zip(self.entries, sizes, strict=True):
            entry.info.header_offset = offset
            entry.data_offset = offset + 30 + len(entry.info.filename) + len(entry.header)
            offset += 30 + len(entry.info.filename) + size
        return offset

    def stream(self, fd: int, t0: int, t1: int) -> None:
        """Rows t0..t1 of the streamed arrays are final: extend their CRCs (and write them)."""
        for piece, at in self._rows(t0, t1):
            pwrite_all(fd, piece, at)

    def _rows(self, t0: int, t1: int) -> list[tuple[memoryview, int]]:
        """Extend the streamed arrays' CRCs over rows t0..t1, in one call of the core; returns the writes they need
        (stored archives)."""
        if t0 != self.rows_streamed:
            raise RuntimeError(f"{self.name}: rows {t0}..{t1} streamed after rows ..{self.rows_streamed}")
        self.rows_streamed = t1
        writes = []
        streamed = [e for e in self.entries if e.streamed]
        jobs = []
        for e in streamed:
            piece = e.data[t0 * e.row_bytes : t1 * e.row_bytes]
            jobs.append((e.crc, [_u8(piece)]))
            if self.planned and e.row_bytes:
                writes.append((piece, e.data_offset + t0 * e.row_bytes))
        for e, crc in zip(streamed, _core.crc32s(jobs), strict=True):
            e.crc = crc
        return writes

    def finish(self, fd: int) -> str:
        """Write the rest of the archive and return its SHA-256 (the file is not yet fsynced)."""
        digest = self.seal()
        self.write(fd)
        return digest

    def write(self, fd: int) -> None:
        """Write what `seal` left to write."""
        for piece, at in self._writes:
            pwrite_all(fd, piece, at)
        self._writes = []

    def seal(self) -> str:
        """Everything of `finish` but the writes, which wait for `write` (so no file is needed yet): the
        CRCs, the zip headers and the archive's SHA-256, which is returned."""
        if self.zip64:
            payload = npz_bytes(self.arrays, compress=self.compress)
            self._writes = [(payload, 0)]
            return _core.sha256_hex([_u8(payload)])
        writes: list[tuple[bytes | bytearray | memoryview, int]] = []
        writes.extend(self._rows(self.rows_streamed, self.rows))  # the rows nobody streamed yet
        whole = [e for e in self.entries if not e.streamed]
        for e, crc in zip(whole, _core.crc32s([(0, [_u8(e.header), _u8(e.data)]) for e in whole]), strict=True):
            e.crc = crc
        for e in self.entries:
            e.info.CRC = e.crc
        if self.compress:
            for e in self.entries:
                # zipfile's compressor; deflate's output does not depend on how its input is split.
                packer = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
                e.packed = packer.compress(e.header) + packer.compress(e.data) + packer.flush()
                e.info.compress_size = len(e.packed)
            end = self._place([e.info.compress_size for e in self.entries])
        else:
            for e in self.entries:
                e.info.compress_size = e.info.file_size
            last = self.entries[-1]
            end = last.data_offset + last.data.nbytes
        hashed: list[npt.NDArray[np.uint8]] = []  # the file's pieces in order, hashed in one call at the end
        run = bytearray()
        run_at = 0

        def put(piece: bytes | memoryview, at: int, written: bool) -> None:
            nonlocal run, run_at
            hashed.append(_u8(piece))
            if written or len(piece) >= _RUN_BYTES:
                if run:
                    writes.append((run, run_at))
                    run = bytearray()
                if not written:
                    writes.append((piece, at))
                return
            if not run:
                run_at = at
            run += piece

        for e in self.entries:
            at = e.info.header_offset
            local = e.info.FileHeader(False)
            put(local, at, False)
            if self.compress:
                put(e.packed, at + len(local), False)
            else:
                put(e.header, at + len(local), False)
                put(e.data, e.data_offset, e.streamed)
        put(_central_directory([e.info for e in self.entries], end), end, False)
        if run:
            writes.append((run, run_at))
        self._writes = writes
        return _core.sha256_hex(hashed)


def _u8(piece: bytes | memoryview) -> npt.NDArray[np.uint8]:
    """`piece`'s bytes as a uint8 array (no copy), as the core's checksums take them."""
    return np.frombuffer(piece, np.uint8)
