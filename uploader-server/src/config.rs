//! `uploader serve` flags (each also an `UPLOADER_*` environment variable) and their
//! resolution into a validated [`ServerConfig`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use uploader_core::config::{parse_duration, parse_size};
use uploader_core::{KeyPrefix, MimePolicy, RetryPolicy, UploadConfig};

use crate::connect::ConnectionArgs;

/// Flags of `uploader serve`.
#[derive(Debug, Args, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "UPLOADER_LISTEN",
        default_value = "127.0.0.1:8080",
        help_heading = "Server"
    )]
    pub listen: SocketAddr,
    /// Bucket that receives the uploads.
    #[arg(long, env = "UPLOADER_BUCKET", help_heading = "Server")]
    pub bucket: String,
    /// Key prefix under which every upload is stored (clients' `prefix` goes below it).
    #[arg(
        long,
        env = "UPLOADER_ROOT_PREFIX",
        default_value = "",
        help_heading = "Server"
    )]
    pub root_prefix: String,
    /// TLS certificate chain (PEM); serves HTTPS together with --tls-key.
    #[arg(
        long,
        env = "UPLOADER_TLS_CERT",
        requires = "tls_key",
        help_heading = "Server"
    )]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(
        long,
        env = "UPLOADER_TLS_KEY",
        requires = "tls_cert",
        help_heading = "Server"
    )]
    pub tls_key: Option<PathBuf>,
    /// Time in-flight requests get to finish after SIGTERM before their uploads are aborted.
    #[arg(
        long,
        env = "UPLOADER_SHUTDOWN_GRACE",
        default_value = "30s",
        help_heading = "Server"
    )]
    pub shutdown_grace: String,

    /// File of bearer tokens, one per line (several for rotation).
    #[arg(long, env = "UPLOADER_TOKEN_FILE", help_heading = "Authentication")]
    pub token_file: Option<PathBuf>,
    /// Bearer tokens, comma-separated (prefer --token-file: environments leak).
    #[arg(
        long,
        env = "UPLOADER_TOKENS",
        hide_env_values = true,
        help_heading = "Authentication"
    )]
    pub tokens: Option<String>,
    /// Serve without authentication (required to run without tokens on a non-loopback address).
    #[arg(long, env = "UPLOADER_NO_AUTH", help_heading = "Authentication")]
    pub no_auth: bool,

    /// Largest accepted file.
    #[arg(
        long,
        env = "UPLOADER_MAX_FILE_SIZE",
        default_value = "5GiB",
        help_heading = "Limits"
    )]
    pub max_file_size: String,
    /// Largest accepted request body.
    #[arg(
        long,
        env = "UPLOADER_MAX_REQUEST_SIZE",
        default_value = "10GiB",
        help_heading = "Limits"
    )]
    pub max_request_size: String,
    /// Most file parts in one request.
    #[arg(
        long,
        env = "UPLOADER_MAX_FILES",
        default_value_t = 1000,
        help_heading = "Limits"
    )]
    pub max_files: usize,
    /// A request body that sends nothing for this long is cut off.
    #[arg(
        long,
        env = "UPLOADER_BODY_IDLE_TIMEOUT",
        default_value = "30s",
        help_heading = "Limits"
    )]
    pub body_idle_timeout: String,
    /// Upload requests served at once; more get 503 with Retry-After.
    #[arg(
        long,
        env = "UPLOADER_MAX_CONCURRENT_UPLOADS",
        default_value_t = 32,
        help_heading = "Limits"
    )]
    pub max_concurrent_uploads: usize,

    /// S3 requests in flight, shared by every HTTP request.
    #[arg(
        long,
        env = "UPLOADER_CONCURRENCY",
        default_value_t = 16,
        help_heading = "Upload"
    )]
    pub concurrency: usize,
    /// Multipart part size.
    #[arg(
        long,
        env = "UPLOADER_PART_SIZE",
        default_value = "8MiB",
        help_heading = "Upload"
    )]
    pub part_size: String,
    /// Files of this size or more go multipart.
    #[arg(
        long,
        env = "UPLOADER_MULTIPART_THRESHOLD",
        default_value = "16MiB",
        help_heading = "Upload"
    )]
    pub multipart_threshold: String,
    /// Memory the server may hold for request data in flight.
    #[arg(
        long,
        env = "UPLOADER_MAX_BUFFER",
        default_value = "512MiB",
        help_heading = "Upload"
    )]
    pub max_buffer: String,
    /// Checksum sent with every request: crc32c or md5.
    #[arg(
        long,
        env = "UPLOADER_CHECKSUM",
        default_value = "crc32c",
        help_heading = "Upload"
    )]
    pub checksum: String,
    /// Also accept content sniffed as TYPE (comma-separated or repeated).
    #[arg(
        long,
        env = "UPLOADER_ALLOW_MIME",
        value_delimiter = ',',
        help_heading = "Upload"
    )]
    pub allow_mime: Vec<String>,
    /// Refuse content sniffed as TYPE (comma-separated or repeated); wins over allows.
    #[arg(
        long,
        env = "UPLOADER_DENY_MIME",
        value_delimiter = ',',
        help_heading = "Upload"
    )]
    pub deny_mime: Vec<String>,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// Request limits of the daemon.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_file_size: u64,
    pub max_request_size: u64,
    pub max_files: usize,
    pub body_idle_timeout: Duration,
    pub max_concurrent_uploads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_size: 5 << 30,
            max_request_size: 10 << 30,
            max_files: 1000,
            body_idle_timeout: Duration::from_secs(30),
            max_concurrent_uploads: 32,
        }
    }
}

/// Everything the daemon needs, validated.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub bucket: String,
    pub root_prefix: KeyPrefix,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub shutdown_grace: Duration,
    /// Accepted bearer tokens; empty means no authentication.
    pub tokens: Vec<String>,
    pub limits: Limits,
    pub upload: UploadConfig,
    /// Probe the endpoint for the checksum it verifies at start-up.
    pub detect_checksum: bool,
}

impl TryFrom<&ServeArgs> for ServerConfig {
    type Error = anyhow::Error;

    fn try_from(a: &ServeArgs) -> anyhow::Result<ServerConfig> {
        let mut tokens: Vec<String> = Vec::new();
        if let Some(path) = &a.token_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?;
            tokens.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from),
            );
        }
        if let Some(t) = &a.tokens {
            tokens.extend(
                t.split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .map(String::from),
            );
        }
        if tokens.iter().any(|t| t.len() < 16) {
            bail!("bearer tokens must be at least 16 characters long");
        }
        if tokens.is_empty() && !a.no_auth && !a.listen.ip().is_loopback() {
            bail!(
                "refusing to serve {} without authentication: give tokens (--token-file or \
                 UPLOADER_TOKENS), or pass --no-auth explicitly",
                a.listen
            );
        }
        if a.no_auth {
            tokens.clear();
        }
        let max_buffer = parse_size(&a.max_buffer).context("--max-buffer")?;
        let checksum = uploader_core::checksum::parse_choice(&a.checksum).context("--checksum")?;
        let upload = UploadConfig {
            concurrency: a.concurrency,
            part_size: parse_size(&a.part_size).context("--part-size")?,
            multipart_threshold: parse_size(&a.multipart_threshold)
                .context("--multipart-threshold")?,
            max_buffer_bytes: max_buffer,
            retry: RetryPolicy::default(),
            checksum: checksum.unwrap_or_default(),
            mime: MimePolicy::new(&a.allow_mime, &a.deny_mime)?,
            ..UploadConfig::default()
        };
        upload.validate()?;
        let limits = Limits {
            max_file_size: parse_size(&a.max_file_size).context("--max-file-size")?,
            max_request_size: parse_size(&a.max_request_size).context("--max-request-size")?,
            max_files: a.max_files,
            body_idle_timeout: parse_duration(&a.body_idle_timeout)
                .context("--body-idle-timeout")?,
            max_concurrent_uploads: a.max_concurrent_uploads,
        };
        if limits.max_files == 0 || limits.max_concurrent_uploads == 0 {
            bail!("--max-files and --max-concurrent-uploads must be at least 1");
        }
        // Every concurrent request may hold its first MiB while one of them grows to the
        // multipart threshold: the buffer must cover that, or requests could wait on each other.
        let needed = limits.max_concurrent_uploads as u64 * (1 << 20)
            + upload.multipart_threshold
            + upload.part_size;
        if max_buffer < needed {
            bail!(
                "--max-buffer must be at least {} MiB for {} concurrent uploads",
                needed >> 20,
                limits.max_concurrent_uploads
            );
        }
        Ok(ServerConfig {
            listen: a.listen,
            bucket: a.bucket.clone(),
            root_prefix: KeyPrefix::new(&a.root_prefix).context("--root-prefix")?,
            tls: a.tls_cert.clone().zip(a.tls_key.clone()),
            shutdown_grace: parse_duration(&a.shutdown_grace).context("--shutdown-grace")?,
            tokens,
            limits,
            upload,
            detect_checksum: checksum.is_none(),
        })
    }
}
