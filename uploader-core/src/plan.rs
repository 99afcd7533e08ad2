//! Plan: single PUT or multipart, and the part size.
//!
//! A file smaller than the multipart threshold goes in one PUT; a file of the threshold or more
//! goes multipart (the AWS CLI's convention). The part size is the configured one, raised to
//! `ceil(size / 10 000)` so that no upload needs more than S3's 10 000 parts, and kept within
//! S3's 5 MiB floor and 5 GiB cap. A body of unknown size (a network stream) is planned by
//! [`Plan::for_stream`] with the same rule, from the largest size it may have. Pure arithmetic:
//! no I/O here.

/// S3's smallest part (except the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// S3's largest part, and largest single PUT.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// S3's part-count limit.
pub const MAX_PARTS: u64 = 10_000;
/// Largest object S3 accepts (5 TiB).
pub const MAX_OBJECT_SIZE: u64 = 5 * 1024 * 1024 * 1024 * 1024;

/// How one file is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// One PUT of the whole file.
    Single {
        /// The file's size.
        size: u64,
    },
    /// A multipart upload of `part_count` parts of `part_size` bytes (the last may be shorter).
    Multipart {
        /// The file's size.
        size: u64,
        /// The size of every part but the last.
        part_size: u64,
        /// How many parts.
        part_count: u32,
    },
}

/// The file is larger than S3 can store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{size} bytes is over S3's object size limit of 5 TiB")]
pub struct TooLarge {
    /// The file's size.
    pub size: u64,
}

/// How a body of unknown size is cut: kept whole for one PUT while shorter than `threshold`,
/// else sent as parts of `part_size` bytes (the last may be shorter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamPlan {
    /// Bodies shorter than this go in one PUT.
    pub threshold: u64,
    /// The size of every part but the last.
    pub part_size: u64,
}

impl Plan {
    /// Plans a body of unknown size that may be up to `max_size` bytes: the part size is the
    /// one [`Plan::new`] would choose for a body of `max_size` (so it fits in 10 000 parts), and
    /// parts of the configured size when there is no limit.
    pub fn for_stream(max_size: Option<u64>, threshold: u64, part_size: u64) -> StreamPlan {
        let part_size = part_size
            .max(max_size.unwrap_or(0).div_ceil(MAX_PARTS))
            .clamp(MIN_PART_SIZE, MAX_PART_SIZE);
        StreamPlan {
            threshold,
            part_size,
        }
    }

    /// Plans a file of `size` bytes. `part_size` and `threshold` are assumed already validated
    /// (see `UploadConfig`).
    pub fn new(size: u64, threshold: u64, part_size: u64) -> Result<Plan, TooLarge> {
        if size > MAX_OBJECT_SIZE {
            return Err(TooLarge { size });
        }
        if size < threshold {
            return Ok(Plan::Single { size });
        }
        let part_size = part_size
            .max(size.div_ceil(MAX_PARTS))
            .clamp(MIN_PART_SIZE, MAX_PART_SIZE);
        let part_count = size.div_ceil(part_size).max(1);
        Ok(Plan::Multipart {
            size,
            part_size,
            part_count: u32::try_from(part_count).expect("at most 10 000 parts"),
        })
    }

    /// A multipart plan of a file of `size` bytes in parts of exactly `part_size` bytes (a
    /// resumed upload keeps the part size it was started with), if S3 allows it: the part size
    /// within 5 MiB..=5 GiB, at most 10 000 parts.
    pub fn with_part_size(size: u64, part_size: u64) -> Option<Plan> {
        if size > MAX_OBJECT_SIZE || !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&part_size) {
            return None;
        }
        let part_count = size.div_ceil(part_size).max(1);
        (part_count <= MAX_PARTS).then(|| Plan::Multipart {
            size,
            part_size,
            part_count: u32::try_from(part_count).expect("at most 10 000 parts"),
        })
    }

    /// The size of every part but the last (the size of the body for a single PUT).
    pub fn part_size(&self) -> u64 {
        match *self {
            Plan::Single { size } => size,
            Plan::Multipart { part_size, .. } => part_size,
        }
    }

    /// Byte range `(offset, len)` of 1-based part `n`.
    pub fn part_range(&self, n: u32) -> (u64, u64) {
        match *self {
            Plan::Single { size } => (0, size),
            Plan::Multipart {
                size, part_size, ..
            } => {
                let offset = u64::from(n - 1) * part_size;
                (offset, part_size.min(size - offset))
            }
        }
    }

    /// Number of requests that carry data.
    pub fn parts(&self) -> u32 {
        match *self {
            Plan::Single { .. } => 1,
            Plan::Multipart { part_count, .. } => part_count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;
    const T: u64 = 16 * MIB;
    const P: u64 = 8 * MIB;

    #[test]
    fn below_threshold_is_single_put_including_empty_files() {
        assert_eq!(Plan::new(0, T, P), Ok(Plan::Single { size: 0 }));
        assert_eq!(Plan::new(T - 1, T, P), Ok(Plan::Single { size: T - 1 }));
        assert_eq!(Plan::new(0, T, P).unwrap().part_range(1), (0, 0));
    }

    #[test]
    fn threshold_and_above_is_multipart_with_short_last_part() {
        let p = Plan::new(T, T, P).unwrap();
        assert_eq!(
            p,
            Plan::Multipart {
                size: T,
                part_size: P,
                part_count: 2
            }
        );
        let p = Plan::new(T + 1, T, P).unwrap();
        assert_eq!(p.parts(), 3);
        assert_eq!(p.part_range(3), (2 * P, 1));
        let total: u64 = (1..=p.parts()).map(|n| p.part_range(n).1).sum();
        assert_eq!(total, T + 1);
    }

    #[test]
    fn part_size_has_a_5_mib_floor() {
        let p = Plan::new(12 * MIB, MIB, MIB).unwrap();
        assert_eq!(
            p,
            Plan::Multipart {
                size: 12 * MIB,
                part_size: 5 * MIB,
                part_count: 3
            }
        );
    }

    #[test]
    fn part_size_grows_to_stay_within_10_000_parts() {
        // Exactly 10 000 parts of 8 MiB fit.
        let size = MAX_PARTS * P;
        let p = Plan::new(size, T, P).unwrap();
        assert_eq!(p.parts(), 10_000);
        // One more byte: the part size grows by one byte rather than making part 10 001.
        let p = Plan::new(size + 1, T, P).unwrap();
        match p {
            Plan::Multipart {
                part_size,
                part_count,
                ..
            } => {
                assert_eq!(part_size, P + 1);
                assert!(part_count <= 10_000);
            }
            Plan::Single { .. } => panic!("expected multipart"),
        }
        // The largest object: 5 TiB in ≤ 10 000 parts, each ≤ 5 GiB.
        let p = Plan::new(MAX_OBJECT_SIZE, T, P).unwrap();
        assert!(p.parts() <= 10_000);
        assert!(p.part_range(1).1 <= MAX_PART_SIZE);
        assert_eq!(
            Plan::new(MAX_OBJECT_SIZE + 1, T, P),
            Err(TooLarge {
                size: MAX_OBJECT_SIZE + 1
            })
        );
    }

    #[test]
    fn streams_are_planned_by_the_same_rule_as_their_largest_size() {
        // No limit: the configured part size, clamped like files.
        assert_eq!(Plan::for_stream(None, T, P).part_size, P);
        assert_eq!(Plan::for_stream(None, T, MIB).part_size, MIN_PART_SIZE);
        // A limit that needs larger parts: the part size a file of that size would get.
        let max = MAX_PARTS * P + 1;
        let planned = Plan::for_stream(Some(max), T, P);
        match Plan::new(max, T, P).unwrap() {
            Plan::Multipart { part_size, .. } => assert_eq!(planned.part_size, part_size),
            Plan::Single { .. } => panic!("expected multipart"),
        }
        assert_eq!(planned.threshold, T);
        assert_eq!(
            Plan::for_stream(Some(MAX_PART_SIZE * MAX_PARTS * 2), T, P).part_size,
            MAX_PART_SIZE
        );
    }

    #[test]
    fn a_kept_part_size_is_used_as_it_is_when_s3_allows_it() {
        let p = Plan::with_part_size(20 * MIB, 6 * MIB).unwrap();
        assert_eq!(p.part_size(), 6 * MIB);
        assert_eq!(p.parts(), 4);
        assert_eq!(p.part_range(4), (18 * MIB, 2 * MIB));
        assert_eq!(
            Plan::with_part_size(20 * MIB, MIB),
            None,
            "under S3's floor"
        );
        assert_eq!(
            Plan::with_part_size(MAX_PARTS * P + 1, P),
            None,
            "over 10 000 parts"
        );
    }

    #[test]
    fn part_size_is_capped_at_5_gib() {
        let p = Plan::new(20 * 1024 * MIB, T, 6 * 1024 * MIB).unwrap();
        assert_eq!(p.part_range(1).1, MAX_PART_SIZE);
        assert_eq!(p.parts(), 4);
    }
}
