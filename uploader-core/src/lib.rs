//! `uploader-core`: bounded-concurrency, streaming, checksummed uploads to S3.
//!
//! The pipeline is walk → key → sniff → plan → schedule → transfer → report, one module per
//! stage, with [`store`] at the edge. The transfer is one upload life cycle (single PUT or
//! multipart session) fed by two body sources, files and network streams ([`source`]). Every
//! behaviour of the CLI and the daemon lives here.
//!
//! ```no_run
//! use std::sync::Arc;
//! use uploader_core::{KeyPrefix, S3Config, S3Store, Uploader, WalkOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = S3Store::connect(&S3Config { bucket: "my-bucket".into(), ..S3Config::default() }).await?;
//! let uploader = Uploader::builder()
//!     .with_store(Arc::new(store))
//!     .with_concurrency(32)
//!     .build()?;
//! let mut job = uploader.upload_dir("./photos", &KeyPrefix::new("photos/2024")?, WalkOptions::default());
//! let mut events = job.events().expect("events are taken once");
//! tokio::spawn(async move { while let Some(_event) = events.recv().await { /* progress */ } });
//! let report = job.wait().await;
//! println!("{} uploaded, {} failed", report.summary().uploaded, report.summary().failed);
//! # Ok(()) }
//! ```
//!
//! Runnable examples, against the embedded endpoint in a temporary directory (no AWS account
//! needed), in `uploader-core/examples/`:
//!
//! * `upload_dir`: a directory upload with a progress display fed by [`Event`]s;
//! * `stream_body`: a body read from a TCP socket, sent with [`Uploader::upload_stream`];
//! * `logging_store`: a custom [`ObjectStore`] that wraps another and logs every request.
//!
//! Run one with `cargo run -p uploader-core --example upload_dir --features embedded`.
//!
//! # Features
//!
//! * `embedded`: `EmbeddedS3`, an in-process S3 endpoint (s3s + s3s-fs). Off by
//!   default; the CLI and the daemon enable it for `--embedded-s3`.
//! * `testing`: `store::FaultyStore` (fault injection) and deterministic test data, for test
//!   suites and benches.

// Enforced by CI's `clippy -D warnings`; here, not in `[workspace.lints]`, because they are about
// core's public API (the binaries have none).
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]

pub mod checksum;
pub mod cleanup;
pub mod config;
pub mod connect;
mod driver;
#[cfg(feature = "embedded")]
pub mod embedded;
pub mod env;
pub mod error;
mod job;
pub mod journal;
pub mod key;
pub mod limit;
pub mod plan;
pub mod report;
mod resume;
pub mod retry;
pub mod schedule;
pub mod sniff;
pub mod source;
pub mod store;
pub mod sync;
mod transfer;
pub mod uploader;
pub mod validate;
pub mod walk;

pub use checksum::{Checksum, ChecksumAlgorithm};
pub use config::{ConcurrencyMode, ConfigError, UploadConfig};
#[cfg(feature = "embedded")]
pub use embedded::EmbeddedS3;
pub use error::error_chain;
pub use key::{KeyError, KeyPrefix, ObjectKey};
pub use limit::{RateLimits, Timetable};
pub use plan::{Plan, StreamPlan};
pub use report::{
    ConcurrencyReport, DeleteOutcome, Deletion, ErrorCode, Event, FileError, FileOutcome,
    FileReport, Report, ResumeReport, Summary,
};
pub use retry::RetryPolicy;
pub use sniff::MimePolicy;
pub use source::stream::{StreamEnd, StreamResult, StreamUpload};
pub use store::{
    Body, ListPage, ListedObject, MemoryStore, Metered, ObjectStore, PartNumber, PendingUpload,
    S3Config, S3Store, ServiceErrorKind, StaticCredentials, StoreError, UploadId,
};
pub use sync::{Destination, SkipMode};
pub use uploader::{UploadHandle, UploadItem, Uploader, UploaderBuilder};
pub use walk::{Input, Source, WalkOptions, WalkTotals};

/// Deterministic test data, shared by the test suites and the benches (feature `testing`).
#[cfg(any(test, feature = "testing"))]
#[doc(hidden)]
pub mod testing {
    /// `len` pseudo-random (xorshift64) bytes, different for each `seed`; incompressible enough
    /// to sniff as binary, and cheap to regenerate for comparisons.
    pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(len);
        out
    }
}
