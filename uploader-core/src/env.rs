//! Every environment variable the libraries and binaries read, in one place: the binaries take
//! their names from here (clap `env` attributes included), and `docs/CONFIGURATION.md` lists
//! them.
//!
//! Not listed: the AWS SDK's own standard variables (`AWS_ACCESS_KEY_ID`,
//! `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, `AWS_CONFIG_FILE`, ...), which only its default
//! credential and region chains read, and the variables of the test and benchmark scripts
//! (`SOAK_FILES`, `UPLOADER_BIN`, ...), documented where they are used.

/// Standard AWS: endpoint of every service.
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
/// Standard AWS: endpoint of S3 (wins over [`AWS_ENDPOINT_URL`]).
pub const AWS_ENDPOINT_URL_S3: &str = "AWS_ENDPOINT_URL_S3";
/// Standard AWS: region (read by the SDK's region chain; named in `--region`'s help).
pub const AWS_REGION: &str = "AWS_REGION";
/// Standard AWS: profile (read by the SDK; named in `--profile`'s help).
pub const AWS_PROFILE: &str = "AWS_PROFILE";
/// Disable colours in terminal output (any value).
pub const NO_COLOR: &str = "NO_COLOR";

/// Kubernetes Indexed Jobs: the pod's index (read by `--shard auto/N`).
pub const JOB_COMPLETION_INDEX: &str = "JOB_COMPLETION_INDEX";
/// Slurm job arrays: the task's index (read by `--shard auto/N`).
pub const SLURM_ARRAY_TASK_ID: &str = "SLURM_ARRAY_TASK_ID";
/// AWS Batch array jobs: the child's index (read by `--shard auto/N`).
pub const AWS_BATCH_JOB_ARRAY_INDEX: &str = "AWS_BATCH_JOB_ARRAY_INDEX";

/// XDG base directories: where state lives (default `$HOME/.local/state`); the checksum cache
/// is `uploader/checksums` under it.
pub const XDG_STATE_HOME: &str = "XDG_STATE_HOME";
/// The job journal of `uploader upload` (`--journal`).
pub const UPLOADER_JOURNAL: &str = "UPLOADER_JOURNAL";
/// The user's home directory (the fallback of [`XDG_STATE_HOME`]).
pub const HOME: &str = "HOME";

/// The program's state directory: `$XDG_STATE_HOME/uploader`, else
/// `$HOME/.local/state/uploader` (`None` with neither set). The checksum cache
/// (`checksums`) and the job journals (`jobs/`) live there.
pub fn state_dir() -> Option<std::path::PathBuf> {
    let var = |v: &str| {
        std::env::var_os(v)
            .filter(|s| !s.is_empty())
            .map(std::path::PathBuf::from)
    };
    let state = var(XDG_STATE_HOME).or_else(|| var(HOME).map(|h| h.join(".local/state")))?;
    Some(state.join("uploader"))
}

/// Log filter of the binaries (`tracing_subscriber` syntax), e.g. `uploader_core=debug`.
pub const UPLOADER_LOG: &str = "UPLOADER_LOG";
/// Format of the log lines on stderr: `text` or `json` (`--log-format`).
pub const UPLOADER_LOG_FORMAT: &str = "UPLOADER_LOG_FORMAT";

// S3 connection (every command).

/// Allow plain-HTTP endpoints on non-loopback hosts (`--allow-http`; `true`/`false`).
pub const UPLOADER_ALLOW_HTTP: &str = "UPLOADER_ALLOW_HTTP";
/// Run the embedded S3 endpoint over this directory (`--embedded-s3`).
pub const UPLOADER_EMBEDDED_S3: &str = "UPLOADER_EMBEDDED_S3";

// Tuning (`upload` and `serve` alike).

/// Requests in flight (`--concurrency`).
pub const UPLOADER_CONCURRENCY: &str = "UPLOADER_CONCURRENCY";
/// `adaptive` or `fixed` (`--concurrency-mode`).
pub const UPLOADER_CONCURRENCY_MODE: &str = "UPLOADER_CONCURRENCY_MODE";
/// Multipart part size (`--part-size`).
pub const UPLOADER_PART_SIZE: &str = "UPLOADER_PART_SIZE";
/// Size from which files go multipart (`--multipart-threshold`).
pub const UPLOADER_MULTIPART_THRESHOLD: &str = "UPLOADER_MULTIPART_THRESHOLD";
/// Memory for bodies in flight (`--max-buffer`).
pub const UPLOADER_MAX_BUFFER: &str = "UPLOADER_MAX_BUFFER";
/// Retries per request after the first attempt (`--retries`).
pub const UPLOADER_RETRIES: &str = "UPLOADER_RETRIES";
/// Checksum of every request: `auto`, `crc32c` or `md5` (`--checksum`).
pub const UPLOADER_CHECKSUM: &str = "UPLOADER_CHECKSUM";
/// Content types also allowed, comma-separated (`--allow-mime`).
pub const UPLOADER_ALLOW_MIME: &str = "UPLOADER_ALLOW_MIME";
/// Content types refused, comma-separated (`--deny-mime`).
pub const UPLOADER_DENY_MIME: &str = "UPLOADER_DENY_MIME";
/// Bandwidth of the whole process, a rate or a timetable (`--bwlimit`).
pub const UPLOADER_BWLIMIT: &str = "UPLOADER_BWLIMIT";
/// Bandwidth of each file (`--bwlimit-file`).
pub const UPLOADER_BWLIMIT_FILE: &str = "UPLOADER_BWLIMIT_FILE";
/// Requests per second of the whole process (`--tps-limit`).
pub const UPLOADER_TPS_LIMIT: &str = "UPLOADER_TPS_LIMIT";

// `upload` only.

/// The part of the job this process uploads, `K/N` or `auto/N` (`--shard`).
pub const UPLOADER_SHARD: &str = "UPLOADER_SHARD";

/// The checksum cache file of `sync` and `upload` (`--checksum-cache`).
pub const UPLOADER_CHECKSUM_CACHE: &str = "UPLOADER_CHECKSUM_CACHE";

// The daemon (`uploader serve`).

/// Address to listen on (`--listen`).
pub const UPLOADER_LISTEN: &str = "UPLOADER_LISTEN";
/// Bucket that receives the uploads (`--bucket`).
pub const UPLOADER_BUCKET: &str = "UPLOADER_BUCKET";
/// Key prefix of every upload (`--root-prefix`).
pub const UPLOADER_ROOT_PREFIX: &str = "UPLOADER_ROOT_PREFIX";
/// TLS certificate chain, PEM (`--tls-cert`).
pub const UPLOADER_TLS_CERT: &str = "UPLOADER_TLS_CERT";
/// TLS private key, PEM (`--tls-key`).
pub const UPLOADER_TLS_KEY: &str = "UPLOADER_TLS_KEY";
/// Grace period of in-flight requests after SIGTERM (`--shutdown-grace`).
pub const UPLOADER_SHUTDOWN_GRACE: &str = "UPLOADER_SHUTDOWN_GRACE";
/// File of bearer tokens, one per line (`--token-file`).
pub const UPLOADER_TOKEN_FILE: &str = "UPLOADER_TOKEN_FILE";
/// Bearer tokens, comma-separated (`--tokens`; prefer the token file).
pub const UPLOADER_TOKENS: &str = "UPLOADER_TOKENS";
/// File of hashed tokens, each with an id, a prefix and limits (`--scoped-tokens`).
pub const UPLOADER_SCOPED_TOKENS: &str = "UPLOADER_SCOPED_TOKENS";
/// Tokens of the admin API (`PUT /v1/limits`), comma-separated (`--admin-tokens`).
pub const UPLOADER_ADMIN_TOKENS: &str = "UPLOADER_ADMIN_TOKENS";
/// Serve without authentication (`--no-auth`).
pub const UPLOADER_NO_AUTH: &str = "UPLOADER_NO_AUTH";
/// Origins allowed to call the API from a browser, comma-separated (`--cors-origin`).
pub const UPLOADER_CORS_ORIGINS: &str = "UPLOADER_CORS_ORIGINS";
/// Serve the upload page at `GET /` (`--ui`; `true`/`false`).
pub const UPLOADER_UI: &str = "UPLOADER_UI";
/// Largest accepted file (`--max-file-size`).
pub const UPLOADER_MAX_FILE_SIZE: &str = "UPLOADER_MAX_FILE_SIZE";
/// Largest accepted request body (`--max-request-size`).
pub const UPLOADER_MAX_REQUEST_SIZE: &str = "UPLOADER_MAX_REQUEST_SIZE";
/// Most file parts in one request (`--max-files`).
pub const UPLOADER_MAX_FILES: &str = "UPLOADER_MAX_FILES";
/// Idle time after which a request body is cut off (`--body-idle-timeout`).
pub const UPLOADER_BODY_IDLE_TIMEOUT: &str = "UPLOADER_BODY_IDLE_TIMEOUT";
/// Upload requests served at once (`--max-concurrent-uploads`).
pub const UPLOADER_MAX_CONCURRENT_UPLOADS: &str = "UPLOADER_MAX_CONCURRENT_UPLOADS";
/// How long the daemon replays a stored response for an `Idempotency-Key`
/// (`--idempotency-ttl`).
pub const UPLOADER_IDEMPOTENCY_TTL: &str = "UPLOADER_IDEMPOTENCY_TTL";
/// Lease of a running idempotency claim (`--idempotency-lease`).
pub const UPLOADER_IDEMPOTENCY_LEASE: &str = "UPLOADER_IDEMPOTENCY_LEASE";
