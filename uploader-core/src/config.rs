//! Upload configuration: plain data with documented defaults, validated once.

use crate::checksum::ChecksumAlgorithm;
use crate::plan::{MAX_PART_SIZE, MIN_PART_SIZE};
use crate::retry::RetryPolicy;
use crate::sniff::MimePolicy;
use crate::sync::SkipMode;

const MIB: u64 = 1024 * 1024;

/// Default ceiling of requests in flight (small-file PUTs and parts together): the adaptive
/// limit ([`ConcurrencyMode::Adaptive`], the default) moves between
/// `schedule::ADAPTIVE_FLOOR` and this.
pub const DEFAULT_CONCURRENCY: usize = 256;
/// Requests in flight of [`ConcurrencyMode::Fixed`] when no number is given (the default of
/// earlier versions), and the floor of the adaptive limit.
pub const DEFAULT_FIXED_CONCURRENCY: usize = 16;
/// How the number of requests in flight is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConcurrencyMode {
    /// Follow the endpoint, between `schedule::ADAPTIVE_FLOOR` and the configured concurrency.
    #[default]
    Adaptive,
    /// Exactly the configured concurrency.
    Fixed,
}

impl std::fmt::Display for ConcurrencyMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConcurrencyMode::Adaptive => "adaptive",
            ConcurrencyMode::Fixed => "fixed",
        })
    }
}

/// Default part size of multipart uploads.
pub const DEFAULT_PART_SIZE: u64 = 8 * MIB;
/// Files of this size or more go multipart.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 16 * MIB;
/// Default budget of request bodies held in memory by the pipeline: file ranges read once and
/// sent from memory, daemon bodies. Ranges up to a quarter of it are buffered (so 12 parts of
/// the default 8 MiB at once); larger ones stream from disk.
pub const DEFAULT_MAX_BUFFER_BYTES: u64 = 96 * MIB;
/// Largest accepted concurrency.
pub const MAX_CONCURRENCY: usize = 1024;
/// Default retries per request after the first attempt (`RetryPolicy::default()`'s attempts
/// less one).
pub const DEFAULT_RETRIES: u32 = crate::retry::DEFAULT_MAX_ATTEMPTS - 1;
/// Default checksum choice of `uploader upload`: CRC32C, which S3 and most S3-compatible
/// servers verify. `auto` (see [`crate::checksum::parse_choice`] and
/// `validate::detect_checksum`) probes what the endpoint verifies, at the price of about four
/// requests in a row per run (≈80 ms on an endpoint 20 ms away): the daemon's default, where it
/// is paid once at start-up.
pub const DEFAULT_CHECKSUM_CHOICE: &str = "crc32c";

/// How a job uploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadConfig {
    /// Requests in flight, shared by every file and part (default [`DEFAULT_CONCURRENCY`]):
    /// exactly this many in [`ConcurrencyMode::Fixed`], at most this many in
    /// [`ConcurrencyMode::Adaptive`].
    pub concurrency: usize,
    /// Fixed, or following the endpoint (default: adaptive).
    pub concurrency_mode: ConcurrencyMode,
    /// Part size of multipart uploads (default [`DEFAULT_PART_SIZE`]); raised automatically
    /// for files that would need more than 10 000 parts.
    pub part_size: u64,
    /// Files this large or larger go multipart (default [`DEFAULT_MULTIPART_THRESHOLD`]).
    pub multipart_threshold: u64,
    /// Bytes the pipeline may hold in memory at once (default [`DEFAULT_MAX_BUFFER_BYTES`]).
    pub max_buffer_bytes: u64,
    /// Retry policy of every request.
    pub retry: RetryPolicy,
    /// Checksum sent with every request (default CRC32C).
    pub checksum: ChecksumAlgorithm,
    /// Stop scheduling new files after the first failure (default: no, every file is tried).
    pub fail_fast: bool,
    /// Never overwrite: existing keys are reported as skipped (default: overwrite).
    pub no_clobber: bool,
    /// Which detected content types are uploaded.
    pub mime: MimePolicy,
    /// Content-Type stored instead of the detected one. It must itself be allowed by the
    /// policy, and the detected type must be allowed too: the override relabels, never admits.
    pub content_type: Option<String>,
    /// Plan and validate every file, upload nothing (each file is reported as skipped).
    pub dry_run: bool,
    /// User metadata stored with every object.
    pub metadata: Vec<(String, String)>,
    /// Storage class of every object.
    pub storage_class: Option<String>,
    /// Server-side encryption of every object.
    pub sse: Option<String>,
    /// Skip a file whose object already exists and is unchanged by this measure (`sync`,
    /// `--skip-existing`; default: upload every file). See [`crate::sync`].
    pub skip_existing: Option<SkipMode>,
    /// The checksum cache file (default: none, every checksum is computed from the file's
    /// bytes). See [`crate::checksum::cache`].
    pub checksum_cache: Option<std::path::PathBuf>,
    /// The job journal, and whether to resume the job it describes (default: none). See
    /// [`crate::journal`].
    pub journal: Option<crate::journal::JournalConfig>,
    /// On cancellation, keep the open multipart uploads for a resume: parts in flight finish
    /// (and are journaled), nothing is aborted (default: abort them).
    pub keep_uploads_on_cancel: bool,
}

impl Default for UploadConfig {
    fn default() -> Self {
        UploadConfig {
            concurrency: DEFAULT_CONCURRENCY,
            concurrency_mode: ConcurrencyMode::Adaptive,
            part_size: DEFAULT_PART_SIZE,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            max_buffer_bytes: DEFAULT_MAX_BUFFER_BYTES,
            retry: RetryPolicy::default(),
            checksum: ChecksumAlgorithm::default(),
            fail_fast: false,
            no_clobber: false,
            dry_run: false,
            mime: MimePolicy::default(),
            content_type: None,
            metadata: Vec::new(),
            storage_class: None,
            sse: None,
            skip_existing: None,
            checksum_cache: None,
            journal: None,
            keep_uploads_on_cancel: false,
        }
    }
}

/// An invalid setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Concurrency is 0 or above [`MAX_CONCURRENCY`].
    #[error("concurrency must be between 1 and {MAX_CONCURRENCY}, got {0}")]
    Concurrency(usize),
    /// Part size outside S3's 5 MiB to 5 GiB.
    #[error("part size must be between 5 MiB and 5 GiB, got {0} bytes")]
    PartSize(u64),
    /// Multipart threshold is 0 or above 5 GiB.
    #[error("multipart threshold must be between 1 byte and 5 GiB, got {0} bytes")]
    Threshold(u64),
    /// Zero retry attempts.
    #[error("retry attempts must be at least 1")]
    Attempts,
    /// Byte budget under 1 MiB.
    #[error("the memory budget (max buffer) must be at least 1 MiB, got {0} bytes")]
    MaxBuffer(u64),
    /// The Content-Type override is not allowed by the MIME policy (or holds a line break).
    #[error("content type {0:?} is not allowed by the MIME policy (see --allow-mime)")]
    ContentType(String),
    /// [`UploaderBuilder::build`](crate::UploaderBuilder::build) without a store.
    #[error("no store was given to the uploader builder")]
    MissingStore,
    /// A metadata key with characters other than letters, digits, `-` and `_`.
    #[error("invalid metadata key {0:?}: use letters, digits, '-' and '_'")]
    MetadataKey(String),
    /// A metadata value with characters other than printable ASCII.
    #[error("invalid metadata value for {0:?}: use printable ASCII")]
    MetadataValue(String),
}

impl UploadConfig {
    /// Checks every setting against S3's limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return Err(ConfigError::Concurrency(self.concurrency));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return Err(ConfigError::PartSize(self.part_size));
        }
        if !(1..=MAX_PART_SIZE).contains(&self.multipart_threshold) {
            return Err(ConfigError::Threshold(self.multipart_threshold));
        }
        if self.retry.max_attempts == 0 {
            return Err(ConfigError::Attempts);
        }
        if self.max_buffer_bytes < MIB {
            return Err(ConfigError::MaxBuffer(self.max_buffer_bytes));
        }
        if let Some(ct) = &self.content_type
            && (!self.mime.allows(&ct.to_ascii_lowercase()) || ct.contains(['\r', '\n']))
        {
            return Err(ConfigError::ContentType(ct.clone()));
        }
        for (k, v) in &self.metadata {
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(ConfigError::MetadataKey(k.clone()));
            }
            if !v.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                return Err(ConfigError::MetadataValue(k.clone()));
            }
        }
        Ok(())
    }
}

/// A concurrency mode that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid concurrency mode {0:?}: expected adaptive or fixed")]
pub struct ModeError(String);

/// The concurrency from the two settings: a number alone is fixed; a mode alone takes its
/// default number ([`DEFAULT_CONCURRENCY`] as the adaptive ceiling, [`DEFAULT_FIXED_CONCURRENCY`]
/// fixed); neither is adaptive up to [`DEFAULT_CONCURRENCY`].
pub fn resolve_concurrency(
    n: Option<usize>,
    mode: Option<&str>,
) -> Result<(usize, ConcurrencyMode), ModeError> {
    let mode = match mode.map(str::trim) {
        None => None,
        Some(m) if m.eq_ignore_ascii_case("adaptive") => Some(ConcurrencyMode::Adaptive),
        Some(m) if m.eq_ignore_ascii_case("fixed") => Some(ConcurrencyMode::Fixed),
        Some(m) => return Err(ModeError(m.to_owned())),
    };
    Ok(match (n, mode) {
        (None, None | Some(ConcurrencyMode::Adaptive)) => {
            (DEFAULT_CONCURRENCY, ConcurrencyMode::Adaptive)
        }
        (None, Some(ConcurrencyMode::Fixed)) => (DEFAULT_FIXED_CONCURRENCY, ConcurrencyMode::Fixed),
        (Some(n), None | Some(ConcurrencyMode::Fixed)) => (n, ConcurrencyMode::Fixed),
        (Some(n), Some(ConcurrencyMode::Adaptive)) => (n, ConcurrencyMode::Adaptive),
    })
}

/// A size that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {0:?}: expected a number with an optional unit, e.g. 8MiB, 16M, 1G, 512KiB")]
pub struct SizeError(String);

/// Parses sizes such as `8MiB`, `16M`, `1G`, `512k`, `100` (bytes). Units are binary
/// (K = KiB = 1024) as in the AWS CLI's `multipart_chunksize`; `KB`/`MB`/`GB` are decimal.
pub fn parse_size(s: &str) -> Result<u64, SizeError> {
    let err = || SizeError(s.to_owned());
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| err())?;
    let mult = size_unit(unit.trim()).ok_or_else(err)?;
    n.checked_mul(mult).ok_or_else(err)
}

/// The multiplier of a size unit (case-insensitive; empty is bytes): binary `K`/`KiB` .. `T`/`TiB`,
/// decimal `KB` .. `TB`.
pub(crate) fn size_unit(unit: &str) -> Option<u64> {
    Some(match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        _ => return None,
    })
}

/// Formats a size the way [`parse_size`] reads it, in the largest binary unit that divides it
/// exactly: `8MiB`, `5GiB`, `1536KiB`, `100`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [(u32, &str); 4] = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
    for (shift, unit) in UNITS {
        if bytes != 0 && bytes.trailing_zeros() >= shift {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// A duration that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected a number and a unit s, m, h or d, e.g. 24h")]
pub struct DurationError(String);

/// Parses `90s`, `30m`, `24h`, `7d`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, DurationError> {
    let err = || DurationError(s.to_owned());
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
    let n: u64 = t[..split].parse().map_err(|_| err())?;
    let secs = match &t[split..] {
        "s" => Some(n),
        "m" => n.checked_mul(60),
        "h" => n.checked_mul(3600),
        "d" => n.checked_mul(86_400),
        _ => None,
    };
    secs.map(std::time::Duration::from_secs).ok_or_else(err)
}

/// Formats a duration the way [`parse_duration`] reads it, in the largest unit that divides it
/// exactly (`30s`, `24h`, `7d`); sub-second parts are dropped.
pub fn format_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    for (unit, name) in [(86_400, "d"), (3600, "h"), (60, "m")] {
        if secs != 0 && secs.is_multiple_of(unit) {
            return format!("{}{name}", secs / unit);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_parse() {
        use std::time::Duration;
        assert_eq!(
            super::parse_duration("24h"),
            Ok(Duration::from_secs(86_400))
        );
        assert_eq!(super::parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(
            super::parse_duration("7d"),
            Ok(Duration::from_secs(7 * 86_400))
        );
        for bad in ["", "h", "24", "1w", "-1h"] {
            assert!(super::parse_duration(bad).is_err(), "{bad}");
        }
        for (secs, text) in [
            (30, "30s"),
            (0, "0s"),
            (90, "90s"),
            (120, "2m"),
            (86_400, "1d"),
        ] {
            let d = Duration::from_secs(secs);
            assert_eq!(super::format_duration(d), text);
            assert_eq!(super::parse_duration(text), Ok(d));
        }
    }

    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("16M"), Ok(16 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("5MB"), Ok(5_000_000));
        for bad in ["", "M", "-1M", "1.5G", "8 parsecs", "99999999999999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_format_in_the_largest_exact_unit_and_parse_back() {
        for (bytes, text) in [
            (DEFAULT_PART_SIZE, "8MiB"),
            (DEFAULT_MAX_BUFFER_BYTES, "96MiB"),
            (5 << 30, "5GiB"),
            (1536 << 10, "1536KiB"),
            (100, "100"),
            (0, "0"),
            (3 << 40, "3TiB"),
        ] {
            assert_eq!(format_size(bytes), text);
            assert_eq!(parse_size(text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn defaults_are_valid_and_limits_are_enforced() {
        assert_eq!(UploadConfig::default().validate(), Ok(()));
        let bad = |f: fn(&mut UploadConfig)| {
            let mut c = UploadConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(bad(|c| c.concurrency = 0), ConfigError::Concurrency(0));
        assert_eq!(
            bad(|c| c.max_buffer_bytes = 1000),
            ConfigError::MaxBuffer(1000)
        );
        assert_eq!(
            bad(|c| c.part_size = MIN_PART_SIZE - 1),
            ConfigError::PartSize(MIN_PART_SIZE - 1)
        );
        assert_eq!(
            bad(|c| c.part_size = MAX_PART_SIZE + 1),
            ConfigError::PartSize(MAX_PART_SIZE + 1)
        );
        assert_eq!(
            bad(|c| c.multipart_threshold = 0),
            ConfigError::Threshold(0)
        );
        assert_eq!(bad(|c| c.retry.max_attempts = 0), ConfigError::Attempts);
        assert_eq!(
            bad(|c| c.content_type = Some("text/html".into())),
            ConfigError::ContentType("text/html".into())
        );
        assert!(matches!(
            bad(|c| c.metadata = vec![("a b".into(), "x".into())]),
            ConfigError::MetadataKey(_)
        ));
        assert!(matches!(
            bad(|c| c.metadata = vec![("k".into(), "a\nb".into())]),
            ConfigError::MetadataValue(_)
        ));
    }
}
