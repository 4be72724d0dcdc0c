//! Checksums of files being written: zlib's CRC-32 (a zip member's) and SHA-256 (a file's digest in a
//! manifest), each over pieces in order, for the capture's archives (python/townlet/capture/npz.py).
//! One call for all the pieces of an archive, where Python's zlib and hashlib took one per piece.

use sha2::{Digest, Sha256};

/// The CRC-32 of `pieces` concatenated, continuing from `crc` (zlib's `crc32(data, crc)`; 0 to start).
pub fn crc32<'a>(crc: u32, pieces: impl IntoIterator<Item = &'a [u8]>) -> u32 {
    let mut h = crc32fast::Hasher::new_with_initial(crc);
    for piece in pieces {
        h.update(piece);
    }
    h.finalize()
}

/// The SHA-256 of `pieces` concatenated, as lowercase hex.
pub fn sha256_hex<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut h = Sha256::new();
    for piece in pieces {
        h.update(piece);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_zlibs() {
        // zlib.crc32(b"123456789") == 0xCBF43926, the CRC-32 check value.
        assert_eq!(crc32(0, [b"123456789".as_slice()]), 0xCBF4_3926);
        assert_eq!(crc32(0, []), 0);
    }

    #[test]
    fn crc32_continues_across_pieces_and_calls() {
        let whole = crc32(0, [b"hello world".as_slice()]);
        assert_eq!(crc32(0, [b"hello".as_slice(), b" world".as_slice()]), whole);
        assert_eq!(
            crc32(crc32(0, [b"hello ".as_slice()]), [b"world".as_slice()]),
            whole
        );
    }

    #[test]
    fn sha256_of_pieces_is_of_their_concatenation() {
        assert_eq!(
            sha256_hex([b"ab".as_slice(), b"".as_slice(), b"c".as_slice()]),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex([]),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
