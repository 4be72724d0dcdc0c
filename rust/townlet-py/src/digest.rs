//! `crc32s` and `sha256_hex`: checksums over byte pieces (`townlet_core::digest`), each call one release of the
//! GIL for every piece of an archive.

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use townlet_core::digest;

fn bytes<'a>(pieces: &'a [PyReadonlyArray1<'_, u8>]) -> PyResult<Vec<&'a [u8]>> {
    pieces
        .iter()
        .map(|p| p.as_slice().map_err(PyErr::from))
        .collect()
}

/// The CRC-32 (zlib's) of each job's pieces (contiguous uint8 arrays) in order, continuing from its first
/// element (0 to start): one result per job.
#[pyfunction]
pub fn crc32s(
    py: Python<'_>,
    jobs: Vec<(u32, Vec<PyReadonlyArray1<'_, u8>>)>,
) -> PyResult<Vec<u32>> {
    let slices = jobs
        .iter()
        .map(|(crc, pieces)| Ok((*crc, bytes(pieces)?)))
        .collect::<PyResult<Vec<_>>>()?;
    Ok(py.detach(|| {
        slices
            .iter()
            .map(|(crc, pieces)| digest::crc32(*crc, pieces.iter().copied()))
            .collect()
    }))
}

/// The SHA-256 (lowercase hex) of `pieces` (contiguous uint8 arrays) concatenated.
#[pyfunction]
pub fn sha256_hex(py: Python<'_>, pieces: Vec<PyReadonlyArray1<'_, u8>>) -> PyResult<String> {
    let slices = bytes(&pieces)?;
    Ok(py.detach(|| digest::sha256_hex(slices.iter().copied())))
}
