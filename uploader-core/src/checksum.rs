//! Checksums that the server verifies.
//!
//! Every request carries a checksum of its body computed once, by us, while reading the data
//! from the source; it travels as a plain header (`x-amz-checksum-crc32c` or `Content-MD5`), never
//! as an aws-chunked trailer, so servers that reject trailers still work. CRC32C is the default:
//! it is hardware-accelerated (SSE 4.2 / ARMv8 CRC) and costs a few hundredths of a CPU-second
//! per GiB, where MD5 costs well over one. `Content-MD5` is the fallback for servers that only
//! verify MD5 (rclone serve s3, older S3-compatible stores).

pub mod cache;

use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use md5::Digest as _;

/// Size of the reads used to checksum a file range.
const READ_CHUNK: usize = 256 * 1024;

/// Which checksum travels with every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecksumAlgorithm {
    /// `x-amz-checksum-crc32c` (S3, MinIO, s3s): the default.
    #[default]
    Crc32c,
    /// `Content-MD5`: understood by every S3-compatible server.
    Md5,
}

impl ChecksumAlgorithm {
    /// The name used in configuration and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Crc32c => "crc32c",
            ChecksumAlgorithm::Md5 => "md5",
        }
    }
}

impl fmt::Display for ChecksumAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown checksum algorithm name.
#[derive(Debug, thiserror::Error)]
#[error("unknown checksum algorithm {0:?} (expected crc32c or md5)")]
pub struct UnknownAlgorithm(String);

impl FromStr for ChecksumAlgorithm {
    type Err = UnknownAlgorithm;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "crc32c" => Ok(ChecksumAlgorithm::Crc32c),
            "md5" | "content-md5" => Ok(ChecksumAlgorithm::Md5),
            _ => Err(UnknownAlgorithm(s.to_owned())),
        }
    }
}

/// Parses a `--checksum` value: `auto` (probe the endpoint: `None`), `crc32c` or `md5`.
pub fn parse_choice(s: &str) -> Result<Option<ChecksumAlgorithm>, UnknownAlgorithm> {
    if s.eq_ignore_ascii_case("auto") {
        Ok(None)
    } else {
        s.parse().map(Some)
    }
}

/// A checksum value: the algorithm and the base64 of the raw digest, as S3 headers carry it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Checksum {
    algorithm: ChecksumAlgorithm,
    raw: Vec<u8>,
}

impl Checksum {
    /// The algorithm.
    pub fn algorithm(&self) -> ChecksumAlgorithm {
        self.algorithm
    }

    /// The raw digest bytes.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The base64 of the digest, as sent in the header.
    pub fn base64(&self) -> String {
        B64.encode(&self.raw)
    }

    /// A checksum from its base64, if it is well-formed for `algorithm` (the right length).
    pub fn from_base64(algorithm: ChecksumAlgorithm, value: &str) -> Option<Checksum> {
        let raw = B64.decode(value).ok()?;
        let want = match algorithm {
            ChecksumAlgorithm::Crc32c => 4,
            ChecksumAlgorithm::Md5 => 16,
        };
        (raw.len() == want).then_some(Checksum { algorithm, raw })
    }

    /// Checksum of an in-memory buffer.
    pub fn of_bytes(algorithm: ChecksumAlgorithm, data: &[u8]) -> Checksum {
        let mut h = Hasher::new(algorithm);
        h.update(data);
        h.finish()
    }

    /// Checksum of `len` bytes of the file at `path` from `offset`. Blocking: call it from
    /// `spawn_blocking`. Fails when the file is shorter than `offset + len`.
    pub fn of_file_range(
        algorithm: ChecksumAlgorithm,
        path: &Path,
        offset: u64,
        len: u64,
    ) -> std::io::Result<Checksum> {
        let mut f = std::fs::File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut h = Hasher::new(algorithm);
        let mut buf = vec![
            0u8;
            READ_CHUNK
                .min(usize::try_from(len).unwrap_or(READ_CHUNK))
                .max(1)
        ];
        let mut left = len;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = f.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("file ended {left} bytes early (it changed since it was listed)"),
                ));
            }
            h.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(h.finish())
    }

    /// The CRC32C of the whole of consecutive ranges from their CRC32Cs and lengths, without
    /// reading them again (`None` when a checksum is not CRC32C).
    pub fn combine_crc32c(parts: &[(Checksum, u64)]) -> Option<Checksum> {
        let mut crc = 0u32;
        for (c, len) in parts {
            if c.algorithm != ChecksumAlgorithm::Crc32c {
                return None;
            }
            let part = u32::from_be_bytes(c.raw.as_slice().try_into().ok()?);
            crc = crc32c::crc32c_combine(crc, part, usize::try_from(*len).ok()?);
        }
        Some(Checksum {
            algorithm: ChecksumAlgorithm::Crc32c,
            raw: crc.to_be_bytes().to_vec(),
        })
    }

    /// The object-level checksum of a multipart upload, as S3 computes it for the COMPOSITE
    /// type: the checksum of the concatenated raw part checksums, suffixed with `-<parts>`.
    pub fn composite(parts: &[Checksum]) -> Option<String> {
        let first = parts.first()?;
        let mut h = Hasher::new(first.algorithm);
        for p in parts {
            h.update(&p.raw);
        }
        Some(format!("{}-{}", h.finish().base64(), parts.len()))
    }
}

impl fmt::Display for Checksum {
    /// `crc32c:<base64>` or `md5:<base64>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.base64())
    }
}

/// Incremental checksum computation.
#[derive(Debug)]
pub enum Hasher {
    /// CRC32C so far.
    Crc32c(u32),
    /// MD5 state so far.
    Md5(Box<md5::Md5>),
}

impl Hasher {
    /// A fresh hasher.
    pub fn new(algorithm: ChecksumAlgorithm) -> Hasher {
        match algorithm {
            ChecksumAlgorithm::Crc32c => Hasher::Crc32c(0),
            ChecksumAlgorithm::Md5 => Hasher::Md5(Box::default()),
        }
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Crc32c(c) => *c = crc32c::crc32c_append(*c, data),
            Hasher::Md5(m) => m.update(data),
        }
    }

    /// The checksum of everything fed.
    pub fn finish(self) -> Checksum {
        match self {
            Hasher::Crc32c(c) => Checksum {
                algorithm: ChecksumAlgorithm::Crc32c,
                raw: c.to_be_bytes().to_vec(),
            },
            Hasher::Md5(m) => Checksum {
                algorithm: ChecksumAlgorithm::Md5,
                raw: m.finalize().to_vec(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_known_vector() {
        // RFC 3720 B.4: CRC32C of 32 zero bytes is 0x8A9136AA.
        let c = Checksum::of_bytes(ChecksumAlgorithm::Crc32c, &[0u8; 32]);
        assert_eq!(c.raw(), &0x8A91_36AAu32.to_be_bytes());
        assert_eq!(
            c.to_string(),
            format!("crc32c:{}", B64.encode(0x8A91_36AAu32.to_be_bytes()))
        );
    }

    #[test]
    fn md5_of_empty_is_the_known_digest() {
        let c = Checksum::of_bytes(ChecksumAlgorithm::Md5, b"");
        assert_eq!(hex::encode(c.raw()), "d41d8cd98f00b204e9800998ecf8427e");
    }

    #[test]
    fn file_range_equals_bytes_and_detects_short_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        for alg in [ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Md5] {
            let want = Checksum::of_bytes(alg, &data[1000..700_000]);
            let got = Checksum::of_file_range(alg, &p, 1000, 699_000).unwrap();
            assert_eq!(got, want);
            let err = Checksum::of_file_range(alg, &p, 999_000, 2000).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
        }
    }

    #[test]
    fn combined_crc32c_is_the_crc32c_of_the_whole() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let alg = ChecksumAlgorithm::Crc32c;
        let parts: Vec<(Checksum, u64)> = data
            .chunks(30_000)
            .map(|c| (Checksum::of_bytes(alg, c), c.len() as u64))
            .collect();
        assert_eq!(
            Checksum::combine_crc32c(&parts),
            Some(Checksum::of_bytes(alg, &data))
        );
        let md5 = Checksum::of_bytes(ChecksumAlgorithm::Md5, b"x");
        assert_eq!(Checksum::combine_crc32c(&[(md5, 1)]), None);
    }

    #[test]
    fn composite_is_checksum_of_part_checksums() {
        let a = Checksum::of_bytes(ChecksumAlgorithm::Crc32c, b"hello ");
        let b = Checksum::of_bytes(ChecksumAlgorithm::Crc32c, b"world");
        let mut joined = a.raw().to_vec();
        joined.extend_from_slice(b.raw());
        let want = format!(
            "{}-2",
            Checksum::of_bytes(ChecksumAlgorithm::Crc32c, &joined).base64()
        );
        assert_eq!(Checksum::composite(&[a, b]).unwrap(), want);
        assert_eq!(Checksum::composite(&[]), None);
    }
}
