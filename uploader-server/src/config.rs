//! The daemon's configuration: plain data with documented defaults, validated once.
//!
//! The flags and `UPLOADER_*` variables that fill it are parsed by the `uploader` binary
//! (`uploader-cli`); this crate takes no command line.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

use uploader_core::connect::ConnectOptions;
use uploader_core::{ConfigError, KeyPrefix, RateLimits, UploadConfig};

pub use crate::cors::{CorsOrigin, CorsOriginError};
pub use crate::idempotency::{
    DEFAULT_LEASE as DEFAULT_IDEMPOTENCY_LEASE, DEFAULT_TTL as DEFAULT_IDEMPOTENCY_TTL,
    IdempotencyConfig,
};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Default listening address: loopback, where the daemon may run without tokens.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
/// Default time in-flight requests get after SIGTERM before their uploads are aborted.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
/// Default largest accepted file.
pub const DEFAULT_MAX_FILE_SIZE: u64 = 5 * GIB;
/// Default largest accepted request body.
pub const DEFAULT_MAX_REQUEST_SIZE: u64 = 10 * GIB;
/// Default most file parts in one request.
pub const DEFAULT_MAX_FILES: usize = 1000;
/// Default idle time after which a request body is cut off.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Default upload requests served at once (more get 503 with Retry-After).
pub const DEFAULT_MAX_CONCURRENT_UPLOADS: usize = 32;
/// Default memory for request data in flight. Larger than the CLI's
/// ([`uploader_core::config::DEFAULT_MAX_BUFFER_BYTES`]): every concurrent request may hold
/// its first MiB while others grow to the multipart threshold (see [`ServerConfig::validate`]).
pub const DEFAULT_MAX_BUFFER_BYTES: u64 = 512 * MIB;
/// The daemon's default checksum choice: `auto`, which probes once at start-up what the endpoint
/// verifies (the CLI's default is [`uploader_core::config::DEFAULT_CHECKSUM_CHOICE`], CRC32C,
/// because its probe would be paid on every run).
pub const DEFAULT_CHECKSUM_CHOICE: &str = "auto";
/// Shortest accepted idempotency lease (it is renewed every third of it).
pub const MIN_IDEMPOTENCY_LEASE: Duration = Duration::from_secs(1);
/// Shortest accepted bearer token.
pub const MIN_TOKEN_LEN: usize = 16;

/// Request limits of the daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted file (default [`DEFAULT_MAX_FILE_SIZE`]).
    pub max_file_size: u64,
    /// Largest accepted request body (default [`DEFAULT_MAX_REQUEST_SIZE`]).
    pub max_request_size: u64,
    /// Most file parts in one request (default [`DEFAULT_MAX_FILES`]).
    pub max_files: usize,
    /// A body that sends nothing for this long is cut off (default
    /// [`DEFAULT_BODY_IDLE_TIMEOUT`]).
    pub body_idle_timeout: Duration,
    /// Upload requests served at once (default [`DEFAULT_MAX_CONCURRENT_UPLOADS`]).
    pub max_concurrent_uploads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_size: DEFAULT_MAX_FILE_SIZE,
            max_request_size: DEFAULT_MAX_REQUEST_SIZE,
            max_files: DEFAULT_MAX_FILES,
            body_idle_timeout: DEFAULT_BODY_IDLE_TIMEOUT,
            max_concurrent_uploads: DEFAULT_MAX_CONCURRENT_UPLOADS,
        }
    }
}

/// Everything the daemon needs. Check it with [`ServerConfig::validate`].
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to listen on (default [`DEFAULT_LISTEN`]).
    pub listen: SocketAddr,
    /// Bucket that receives the uploads (no default).
    pub bucket: String,
    /// Prefix of every key; clients' `prefix` goes below it (default: the bucket's root).
    pub root_prefix: KeyPrefix,
    /// Certificate chain and private key (PEM): serve HTTPS (default: HTTP).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Grace period after SIGTERM (default [`DEFAULT_SHUTDOWN_GRACE`]).
    pub shutdown_grace: Duration,
    /// Accepted bearer tokens (default: none).
    pub tokens: Vec<String>,
    /// The scoped tokens file: hashed tokens, each with an id, a prefix and limits (default:
    /// none). Read at start-up, when it changes and on SIGHUP.
    pub scoped_tokens: Option<PathBuf>,
    /// Serve without authentication, tokens or not (default: no; needed without tokens on a
    /// non-loopback address).
    pub no_auth: bool,
    pub limits: Limits,
    /// Bandwidth and request-rate limits, shared by every request (default: none); the admin
    /// API changes them at run time.
    pub rates: RateLimits,
    /// Tokens of the admin API, `PUT /v1/limits` (default: none, the admin API is off).
    pub admin_tokens: Vec<String>,
    /// Origins whose pages may call the API (default: none, no CORS headers at all).
    pub cors_origins: Vec<CorsOrigin>,
    /// Serve the upload page at `GET /` (default: no, `GET /` is 404).
    pub ui: bool,
    /// How long idempotency records count (default [`IdempotencyConfig::default`]).
    pub idempotency: IdempotencyConfig,
    /// How uploads are made; `max_buffer_bytes` defaults to [`DEFAULT_MAX_BUFFER_BYTES`] here.
    pub upload: UploadConfig,
    /// Probe the endpoint for the checksum it verifies at start-up (default: yes).
    pub detect_checksum: bool,
    /// How to reach S3.
    pub connect: ConnectOptions,
}

impl ServerConfig {
    /// The defaults for `bucket`.
    pub fn new(bucket: impl Into<String>) -> ServerConfig {
        ServerConfig {
            listen: DEFAULT_LISTEN,
            bucket: bucket.into(),
            root_prefix: KeyPrefix::root(),
            tls: None,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            tokens: Vec::new(),
            scoped_tokens: None,
            no_auth: false,
            limits: Limits::default(),
            rates: RateLimits::unlimited(),
            admin_tokens: Vec::new(),
            cors_origins: Vec::new(),
            ui: false,
            idempotency: IdempotencyConfig::default(),
            upload: UploadConfig {
                max_buffer_bytes: DEFAULT_MAX_BUFFER_BYTES,
                ..UploadConfig::default()
            },
            detect_checksum: true,
            connect: ConnectOptions::default(),
        }
    }

    /// The tokens requests must present; empty: no authentication.
    pub fn auth_tokens(&self) -> &[String] {
        if self.no_auth { &[] } else { &self.tokens }
    }

    /// Checks the settings together (the upload settings included).
    pub fn validate(&self) -> Result<(), ServerConfigError> {
        if self
            .tokens
            .iter()
            .chain(&self.admin_tokens)
            .any(|t| t.len() < MIN_TOKEN_LEN)
        {
            return Err(ServerConfigError::ShortToken);
        }
        if self.admin_tokens.iter().any(|a| self.tokens.contains(a)) {
            return Err(ServerConfigError::AdminTokenReused);
        }
        // Scoped tokens confine their callers: serving them without authentication would
        // silently admit everyone to the whole root.
        if self.no_auth && self.scoped_tokens.is_some() {
            return Err(ServerConfigError::ScopedTokensWithoutAuth);
        }
        if self.tokens.is_empty()
            && self.scoped_tokens.is_none()
            && !self.no_auth
            && !self.listen.ip().is_loopback()
        {
            return Err(ServerConfigError::NoAuth(self.listen));
        }
        if self.limits.max_files == 0 || self.limits.max_concurrent_uploads == 0 {
            return Err(ServerConfigError::ZeroLimit);
        }
        if self.idempotency.ttl.is_zero() || self.idempotency.lease < MIN_IDEMPOTENCY_LEASE {
            return Err(ServerConfigError::Idempotency);
        }
        self.upload.validate()?;
        // Every concurrent request may hold its first MiB while one of them grows to the
        // multipart threshold: the buffer must cover that, or requests could wait on each other.
        let needed = self.limits.max_concurrent_uploads as u64 * MIB
            + self.upload.multipart_threshold
            + self.upload.part_size;
        if self.upload.max_buffer_bytes < needed {
            return Err(ServerConfigError::Buffer {
                needed_mib: needed / MIB,
                uploads: self.limits.max_concurrent_uploads,
            });
        }
        Ok(())
    }
}

/// Settings of the daemon that cannot work together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerConfigError {
    #[error("bearer tokens must be at least {MIN_TOKEN_LEN} characters long")]
    ShortToken,
    #[error(
        "refusing to serve {0} without authentication: give tokens (--scoped-tokens, \
         --token-file or UPLOADER_TOKENS), or pass --no-auth explicitly"
    )]
    NoAuth(SocketAddr),
    #[error("--max-files and --max-concurrent-uploads must be at least 1")]
    ZeroLimit,
    #[error("--idempotency-ttl must be above zero and --idempotency-lease at least 1s")]
    Idempotency,
    #[error("an admin token (--admin-tokens) must not also be an upload token")]
    AdminTokenReused,
    #[error(
        "--scoped-tokens and --no-auth (UPLOADER_NO_AUTH) contradict each other: scoped tokens \
         need authentication; drop one of them"
    )]
    ScopedTokensWithoutAuth,
    #[error("--max-buffer must be at least {needed_mib} MiB for {uploads} concurrent uploads")]
    Buffer { needed_mib: u64, uploads: usize },
    #[error(transparent)]
    Upload(#[from] ConfigError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_combinations_are_checked() {
        let ok = ServerConfig::new("b");
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.upload.max_buffer_bytes, DEFAULT_MAX_BUFFER_BYTES);
        let bad = |f: fn(&mut ServerConfig)| {
            let mut c = ServerConfig::new("b");
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert_eq!(
            bad(|c| c.tokens = vec!["short".into()]),
            ServerConfigError::ShortToken
        );
        let public: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            bad(|c| c.listen = "0.0.0.0:8080".parse().unwrap()),
            ServerConfigError::NoAuth(public)
        );
        assert_eq!(
            bad(|c| c.limits.max_files = 0),
            ServerConfigError::ZeroLimit
        );
        assert_eq!(
            bad(|c| {
                c.tokens = vec!["one-token-for-everything".into()];
                c.admin_tokens = vec!["one-token-for-everything".into()];
            }),
            ServerConfigError::AdminTokenReused
        );
        assert_eq!(
            bad(|c| c.admin_tokens = vec!["short".into()]),
            ServerConfigError::ShortToken
        );
        assert_eq!(
            bad(|c| c.upload.max_buffer_bytes = 32 * MIB),
            ServerConfigError::Buffer {
                needed_mib: 32 + 16 + 8,
                uploads: 32
            }
        );
        assert!(matches!(
            bad(|c| c.upload.concurrency = 0),
            ServerConfigError::Upload(_)
        ));
        // --no-auth: a public address without tokens is allowed, and given tokens are ignored.
        let mut open = ServerConfig::new("b");
        open.listen = public;
        open.no_auth = true;
        open.tokens = vec!["0123456789abcdef".into()];
        assert_eq!(open.validate(), Ok(()));
        assert!(open.auth_tokens().is_empty());
        // ... but scoped tokens without authentication are a contradiction, refused.
        open.scoped_tokens = Some("tokens".into());
        assert_eq!(
            open.validate(),
            Err(ServerConfigError::ScopedTokensWithoutAuth)
        );
    }
}
