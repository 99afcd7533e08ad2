//! Command-line arguments. Plain data: no logic here (resolution is in `resolve.rs`).
//!
//! Defaults are core's (and the daemon's) named consts; environment variable names are the
//! consts of `uploader_core::env`. Precedence: flag, then environment variable, then default.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use uploader_core::config::{
    DEFAULT_CHECKSUM_CHOICE, DEFAULT_MAX_BUFFER_BYTES, DEFAULT_MULTIPART_THRESHOLD,
    DEFAULT_PART_SIZE, DEFAULT_RETRIES, format_duration, format_size,
};
use uploader_core::env;
use uploader_server::config as server;

const EXAMPLES: &str = "\
Examples:
  # Try it with no AWS account: an S3 endpoint embedded in the process, data under ./.uploader-data
  uploader upload ./docs s3://demo/docs/ --embedded-s3 ./.uploader-data

  # Upload a tree to AWS (credentials from the usual AWS environment/profile)
  uploader upload ./photos s3://my-bucket/photos/2024/ --exclude '*.tmp' --concurrency 64

  # An S3-compatible server, machine-readable output, no overwrites
  uploader upload ./out s3://bucket/run-42/ --endpoint-url https://minio.internal:9000 --json --no-clobber

  # Paths from another program, relative to the source directory
  find . -name '*.csv' | uploader upload --files-from - . s3://bucket/csv/

  # Check credentials and bucket; abort multipart uploads older than a day
  uploader check s3://my-bucket/photos/
  uploader cleanup s3://my-bucket/photos/ --older-than 24h --dry-run

Exit codes: 0 all uploaded (or skipped on request), 1 some files failed,
            2 usage, configuration or credential error (nothing uploaded), 130 interrupted.";

const SYNC_EXAMPLES: &str = "\
Examples:
  # Nightly: send what changed since last night (decided by full-object checksums)
  uploader sync ./photos s3://my-bucket/photos/

  # Also delete objects whose files are gone; look first
  uploader sync ./photos s3://my-bucket/photos/ --delete --dry-run
  uploader sync ./photos s3://my-bucket/photos/ --delete

  # Cheaper, weaker: same size and not newer than at upload
  uploader sync ./logs s3://my-bucket/logs/ --skip-existing mtime

Exit codes: 0 all uploaded or unchanged (and orphans deleted), 1 some files or deletes
            failed, 2 usage, configuration or credential error, 130 interrupted.";

/// Fast, safe, parallel uploads to S3 and S3-compatible servers.
#[derive(Debug, Parser)]
#[command(name = "uploader", version, about, after_help = EXAMPLES, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Upload files and directories to s3://bucket/prefix/.
    #[command(visible_alias = "cp", after_help = EXAMPLES)]
    Upload(Box<UploadArgs>),
    /// Upload only what is new or changed (by checksum unless --skip-existing says otherwise);
    /// with --delete, remove objects under the prefix that no source maps to.
    #[command(after_help = SYNC_EXAMPLES)]
    Sync(Box<SyncArgs>),
    /// Check credentials and bucket access, then exit (0 ok, 2 not usable).
    Check(CheckArgs),
    /// List and abort multipart uploads left behind under s3://bucket/prefix.
    Cleanup(CleanupArgs),
    /// List resumable upload jobs (their journals); `jobs clean` removes finished or abandoned
    /// ones, aborting their multipart uploads.
    Jobs(JobsArgs),
    /// Run the HTTP batch upload daemon (POST /v1/uploads).
    Serve(Box<ServeArgs>),
    /// Scoped tokens of the daemon (`uploader serve --scoped-tokens`).
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random token (once, on stdout's first line) and the line to add to the
    /// --scoped-tokens file (second line: its id, SHA-256 hash and prefix; never the token).
    New(TokenNewArgs),
}

#[derive(Debug, Args)]
pub struct TokenNewArgs {
    /// The token's id in logs and metrics (default: token- and 8 random hex digits).
    #[arg(long, value_name = "ID")]
    pub id: Option<String>,
    /// The key prefix the token is confined to, under the daemon's --root-prefix; `/` is the
    /// whole root (default: the id).
    #[arg(long, value_name = "PREFIX")]
    pub prefix: Option<String>,
}

#[derive(Debug, Args)]
pub struct OutputArgs {
    /// One JSON object per file and a final summary object on stdout; nothing else on stdout.
    #[arg(long, global = true, help_heading = "Output")]
    pub json: bool,
    /// No progress bar and no summary; errors only.
    #[arg(long, short, global = true, help_heading = "Output")]
    pub quiet: bool,
    /// More logging on stderr (-v info, -vv debug). UPLOADER_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, help_heading = "Output")]
    pub verbose: u8,
    /// Format of the log lines on stderr (the daemon's access log among them): text, or json
    /// (one object per line).
    #[arg(
        long,
        value_enum,
        value_name = "FORMAT",
        env = env::UPLOADER_LOG_FORMAT,
        default_value_t = LogFormat::Text,
        global = true,
        help_heading = "Output"
    )]
    pub log_format: LogFormat,
}

/// Format of the log lines (`--log-format`). The variants carry no doc comments: clap would
/// turn them into a paragraph per value and switch every command's `--help` to the long layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    // `tracing`'s human-readable lines.
    Text,
    // One JSON object per line.
    Json,
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    /// Files and directories to upload, then the destination s3://bucket/prefix/. A directory's
    /// contents go under the prefix; a file goes to prefix + its name.
    #[arg(value_name = "SRC... DEST", num_args = 2.., required = true)]
    pub paths: Vec<String>,

    /// Upload only files matching GLOB (repeatable). Name patterns (no '/') match at any depth.
    #[arg(long, value_name = "GLOB", help_heading = "Selection")]
    pub include: Vec<String>,
    /// Skip files matching GLOB (repeatable). Excludes win over includes.
    #[arg(long, value_name = "GLOB", help_heading = "Selection")]
    pub exclude: Vec<String>,
    /// Follow symbolic links (only those resolving inside the source directory).
    #[arg(long, help_heading = "Selection")]
    pub follow_symlinks: bool,
    /// Read paths relative to the single SRC directory from FILE ('-' for stdin), one per line.
    #[arg(long, value_name = "FILE", help_heading = "Selection")]
    pub files_from: Option<String>,
    /// Upload only shard K of N: the files whose relative path hashes to K (rclone's
    /// --hash-filter K/N, so N runs with K = 0..N-1 upload every file once). auto/N takes K
    /// from JOB_COMPLETION_INDEX, SLURM_ARRAY_TASK_ID or AWS_BATCH_JOB_ARRAY_INDEX.
    #[arg(long, value_name = "K/N", env = env::UPLOADER_SHARD, help_heading = "Selection")]
    pub shard: Option<String>,

    #[command(flatten)]
    pub tuning: TuningArgs,

    /// Show what would be uploaded where; upload nothing.
    #[arg(long, help_heading = "Behaviour")]
    pub dry_run: bool,
    /// Never overwrite: existing keys are reported as skipped.
    #[arg(long, help_heading = "Behaviour", conflicts_with = "skip_existing")]
    pub no_clobber: bool,
    /// Skip files whose object exists unchanged: `size` (same size), `mtime` (same size, not
    /// newer than at upload) or `checksum` (same full-object checksum; sync's default).
    #[arg(long, value_name = "MODE", help_heading = "Behaviour")]
    pub skip_existing: Option<String>,
    /// The checksum cache, which spares re-reading unchanged files (default:
    /// $XDG_STATE_HOME/uploader/checksums, else ~/.local/state/uploader/checksums). Safe to
    /// delete.
    #[arg(
        long,
        value_name = "FILE",
        env = env::UPLOADER_CHECKSUM_CACHE,
        help_heading = "Behaviour"
    )]
    pub checksum_cache: Option<PathBuf>,
    /// Use no checksum cache (wins over --checksum-cache): every checksum a sync needs is
    /// computed from the file.
    #[arg(long, help_heading = "Behaviour")]
    pub no_checksum_cache: bool,
    /// Stop starting new files after the first failure.
    #[arg(long, help_heading = "Behaviour")]
    pub fail_fast: bool,
    /// Continue the last run of this same job (same sources, destination and settings) where it
    /// stopped: files it stored are skipped while unchanged, its open multipart uploads continue
    /// from their verified parts. Implies --resumable.
    #[arg(long, help_heading = "Resume", conflicts_with_all = ["no_journal", "dry_run"])]
    pub resume: bool,
    /// On Ctrl-C or SIGTERM, keep the open multipart uploads (parts in flight finish) and print
    /// the command that resumes, instead of aborting them.
    #[arg(long, help_heading = "Resume")]
    pub resumable: bool,
    /// The job's journal (default: $XDG_STATE_HOME/uploader/jobs/<job id>.ndjson, else
    /// ~/.local/state/uploader/jobs/...).
    #[arg(long, value_name = "FILE", env = env::UPLOADER_JOURNAL, help_heading = "Resume")]
    pub journal: Option<PathBuf>,
    /// Keep no journal (the job cannot be resumed but from ListMultipartUploads).
    #[arg(long, help_heading = "Resume", conflicts_with = "journal")]
    pub no_journal: bool,
    /// Store this Content-Type instead of the detected one (must itself be allowed).
    #[arg(long, value_name = "TYPE", help_heading = "Content types")]
    pub content_type: Option<String>,
    /// Stored metadata KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE", help_heading = "Behaviour")]
    pub metadata: Vec<String>,
    /// Storage class, e.g. STANDARD_IA.
    #[arg(long, value_name = "CLASS", help_heading = "Behaviour")]
    pub storage_class: Option<String>,
    /// Server-side encryption: AES256 or aws:kms.
    #[arg(long, value_name = "ALG", help_heading = "Behaviour")]
    pub sse: Option<String>,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    #[command(flatten)]
    pub upload: UploadArgs,
    /// Delete the objects under the prefix that no source maps to (and that --include,
    /// --exclude and --shard select); each is printed. Nothing is deleted when a source could
    /// not be read, the listing failed or the run was interrupted. With --dry-run, only lists.
    #[arg(long, help_heading = "Behaviour")]
    pub delete: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// s3://bucket[/prefix]
    #[arg(value_name = "S3_URL")]
    pub target: String,
    /// Also prove write access (creates and aborts a multipart upload under the prefix).
    #[arg(long)]
    pub write_probe: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// s3://bucket[/prefix]
    #[arg(value_name = "S3_URL")]
    pub target: String,
    /// Only abort uploads at least this old, e.g. 24h, 30m, 7d, 0s.
    #[arg(long, value_name = "AGE", default_value = "24h")]
    pub older_than: String,
    /// List what would be aborted; abort nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    pub action: Option<JobsAction>,
    /// The directory of the journals (default: $XDG_STATE_HOME/uploader/jobs, else
    /// ~/.local/state/uploader/jobs).
    #[arg(long, value_name = "DIR", global = true)]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum JobsAction {
    /// Remove the journals of finished jobs, and of unfinished ones at least --older-than old
    /// (aborting their open multipart uploads first: pass the job's connection flags).
    Clean(JobsCleanArgs),
}

#[derive(Debug, Args)]
pub struct JobsCleanArgs {
    /// Unfinished jobs at least this old are abandoned, e.g. 7d, 24h, 0s.
    #[arg(long, value_name = "AGE", default_value = "7d")]
    pub older_than: String,
    /// List what would be removed and aborted; remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub connection: ConnectionArgs,
}

/// Upload tuning, the same flags for `upload` and `serve`; each is also an `UPLOADER_*`
/// environment variable. Resolved into `UploadConfig` in one place (`resolve::Tuning`).
#[derive(Debug, Args, Clone)]
pub struct TuningArgs {
    /// S3 requests in flight, shared by small files and parts (in the daemon: by every HTTP
    /// request). Given alone, exactly N (fixed); with --concurrency-mode adaptive, the ceiling.
    /// Default: adaptive, up to 256.
    #[arg(
        long,
        short = 'c',
        value_name = "N",
        env = env::UPLOADER_CONCURRENCY,
        help_heading = "Tuning"
    )]
    pub concurrency: Option<usize>,
    /// adaptive: requests in flight follow the endpoint (more while latency stays flat, half on
    /// throttling) between 16 and --concurrency; fixed: exactly --concurrency (default 16).
    /// Default: adaptive, unless --concurrency is given.
    #[arg(
        long,
        value_name = "MODE",
        env = env::UPLOADER_CONCURRENCY_MODE,
        help_heading = "Tuning"
    )]
    pub concurrency_mode: Option<String>,
    /// Multipart part size (5MiB..5GiB), e.g. 8MiB, 16M.
    #[arg(
        long,
        value_name = "SIZE",
        env = env::UPLOADER_PART_SIZE,
        default_value_t = format_size(DEFAULT_PART_SIZE),
        help_heading = "Tuning"
    )]
    pub part_size: String,
    /// Files of this size or more go multipart, e.g. 16MiB.
    #[arg(
        long,
        value_name = "SIZE",
        env = env::UPLOADER_MULTIPART_THRESHOLD,
        default_value_t = format_size(DEFAULT_MULTIPART_THRESHOLD),
        help_heading = "Tuning"
    )]
    pub multipart_threshold: String,
    /// Memory for file data being sent, e.g. 96MiB: bodies up to a quarter of it are read once
    /// and sent from memory, larger ones stream from disk.
    #[arg(
        long,
        value_name = "SIZE",
        env = env::UPLOADER_MAX_BUFFER,
        default_value_t = format_size(DEFAULT_MAX_BUFFER_BYTES),
        help_heading = "Tuning"
    )]
    pub max_buffer: String,
    /// Retries per request after the first attempt.
    #[arg(
        long,
        value_name = "N",
        env = env::UPLOADER_RETRIES,
        default_value_t = DEFAULT_RETRIES,
        help_heading = "Tuning"
    )]
    pub retries: u32,
    /// Checksum sent with every request and verified by the server: auto (probe the endpoint
    /// once), crc32c or md5.
    #[arg(
        long,
        value_name = "ALG",
        env = env::UPLOADER_CHECKSUM,
        default_value = DEFAULT_CHECKSUM_CHOICE,
        help_heading = "Tuning"
    )]
    pub checksum: String,
    /// Also upload content sniffed as TYPE (exact, or type/*; repeatable or comma-separated).
    /// The default allowlist is safe passive content: images, PDF, text, CSV, JSON, archives,
    /// Office.
    #[arg(
        long,
        value_name = "TYPE",
        env = env::UPLOADER_ALLOW_MIME,
        value_delimiter = ',',
        help_heading = "Content types"
    )]
    pub allow_mime: Vec<String>,
    /// Never upload content sniffed as TYPE (exact, or type/*; repeatable or comma-separated).
    /// Wins over allows.
    #[arg(
        long,
        value_name = "TYPE",
        env = env::UPLOADER_DENY_MIME,
        value_delimiter = ',',
        help_heading = "Content types"
    )]
    pub deny_mime: Vec<String>,
    /// Bandwidth of the whole process in bytes/s, shared by every transfer (in the daemon: by
    /// every request): e.g. 50M, 1.5GiB, 512k (K = KiB), or a timetable of HH:MM,RATE or
    /// Ddd-HH:MM,RATE entries, as rclone's: "08:00,512k 19:00,off".
    #[arg(
        long,
        value_name = "RATE|TIMETABLE",
        env = env::UPLOADER_BWLIMIT,
        help_heading = "Limits"
    )]
    pub bwlimit: Option<String>,
    /// Bandwidth of each file in bytes/s, e.g. 10M.
    #[arg(
        long,
        value_name = "RATE",
        env = env::UPLOADER_BWLIMIT_FILE,
        help_heading = "Limits"
    )]
    pub bwlimit_file: Option<String>,
    /// S3 requests per second of the whole process (every request counts, retries too), e.g. 50.
    #[arg(
        long,
        value_name = "N",
        env = env::UPLOADER_TPS_LIMIT,
        help_heading = "Limits"
    )]
    pub tps_limit: Option<String>,
}

/// How to reach S3; follows the AWS CLI's names and environment variables.
#[derive(Debug, Args, Clone, Default)]
pub struct ConnectionArgs {
    /// S3 endpoint URL (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, then AWS).
    #[arg(long, value_name = "URL", help_heading = "S3 connection")]
    pub endpoint_url: Option<String>,
    /// Region (default: AWS_REGION, the profile, then us-east-1).
    #[arg(long, help_heading = "S3 connection")]
    pub region: Option<String>,
    /// Shared-config profile (default: AWS_PROFILE).
    #[arg(long, help_heading = "S3 connection")]
    pub profile: Option<String>,
    /// Path-style addressing (default: on for custom endpoints).
    #[arg(long, help_heading = "S3 connection")]
    pub force_path_style: bool,
    /// Allow a plain-HTTP endpoint on a non-loopback host (credentials and data unencrypted).
    #[arg(long, env = env::UPLOADER_ALLOW_HTTP, help_heading = "S3 connection")]
    pub allow_http: bool,
    /// Run an S3-compatible endpoint inside this process over DIR and use it (the bucket is
    /// created as a directory under DIR). For trying the tool and for tests.
    #[arg(
        long,
        value_name = "DIR",
        env = env::UPLOADER_EMBEDDED_S3,
        help_heading = "S3 connection"
    )]
    pub embedded_s3: Option<PathBuf>,
}

/// Flags of `uploader serve`, each also an `UPLOADER_*` environment variable.
#[derive(Debug, Args, Clone)]
// The daemon holds request data of every HTTP request at once: its own default and meaning.
#[command(mut_arg("max_buffer", |a| a
    .default_value(format_size(server::DEFAULT_MAX_BUFFER_BYTES))
    .help("Memory for request data in flight, shared by every HTTP request, e.g. 512MiB")))]
// The daemon probes the endpoint's checksum once, at start-up: `auto` costs it nothing per request.
#[command(mut_arg("checksum", |a| a.default_value(server::DEFAULT_CHECKSUM_CHOICE)))]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = env::UPLOADER_LISTEN,
        default_value_t = server::DEFAULT_LISTEN,
        help_heading = "Server"
    )]
    pub listen: SocketAddr,
    /// Bucket that receives the uploads.
    #[arg(long, env = env::UPLOADER_BUCKET, help_heading = "Server")]
    pub bucket: String,
    /// Key prefix under which every upload is stored (clients' `prefix` goes below it).
    #[arg(
        long,
        env = env::UPLOADER_ROOT_PREFIX,
        default_value = "",
        help_heading = "Server"
    )]
    pub root_prefix: String,
    /// TLS certificate chain (PEM); serves HTTPS together with --tls-key.
    #[arg(
        long,
        env = env::UPLOADER_TLS_CERT,
        requires = "tls_key",
        help_heading = "Server"
    )]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(
        long,
        env = env::UPLOADER_TLS_KEY,
        requires = "tls_cert",
        help_heading = "Server"
    )]
    pub tls_key: Option<PathBuf>,
    /// Time in-flight requests get to finish after SIGTERM before their uploads are aborted.
    #[arg(
        long,
        env = env::UPLOADER_SHUTDOWN_GRACE,
        default_value_t = format_duration(server::DEFAULT_SHUTDOWN_GRACE),
        help_heading = "Server"
    )]
    pub shutdown_grace: String,

    /// File of bearer tokens, one per line (several for rotation).
    #[arg(long, env = env::UPLOADER_TOKEN_FILE, help_heading = "Authentication")]
    pub token_file: Option<PathBuf>,
    /// File of hashed tokens, one per line: `ID sha256:HEX prefix=P [max_file_size=SIZE]
    /// [max_request_size=SIZE] [requests_per_minute=N] [bytes_per_minute=SIZE]`; each token
    /// writes only under its prefix. Re-read when it changes and on SIGHUP. `uploader token new`
    /// makes the lines.
    #[arg(
        long,
        value_name = "FILE",
        env = env::UPLOADER_SCOPED_TOKENS,
        help_heading = "Authentication"
    )]
    pub scoped_tokens: Option<PathBuf>,
    /// Bearer tokens, comma-separated (prefer --token-file: environments leak).
    #[arg(
        long,
        env = env::UPLOADER_TOKENS,
        hide_env_values = true,
        help_heading = "Authentication"
    )]
    pub tokens: Option<String>,
    /// Tokens of the admin API (PUT /v1/limits changes --bwlimit, --bwlimit-file and
    /// --tps-limit at run time), comma-separated; without one, the admin API is off.
    #[arg(
        long,
        env = env::UPLOADER_ADMIN_TOKENS,
        hide_env_values = true,
        help_heading = "Authentication"
    )]
    pub admin_tokens: Option<String>,
    /// Serve without authentication (required to run without tokens on a non-loopback address).
    #[arg(long, env = env::UPLOADER_NO_AUTH, help_heading = "Authentication")]
    pub no_auth: bool,

    /// Allow web pages of ORIGIN (scheme://host[:port]) to call the API from a browser (CORS);
    /// repeatable or comma-separated. Default: none, no CORS headers at all. `*` is refused.
    #[arg(
        long,
        value_name = "ORIGIN",
        env = env::UPLOADER_CORS_ORIGINS,
        value_delimiter = ',',
        help_heading = "Browser"
    )]
    pub cors_origin: Vec<String>,
    /// Serve a self-contained upload page at GET / (default: GET / is 404).
    #[arg(long, env = env::UPLOADER_UI, help_heading = "Browser")]
    pub ui: bool,

    /// Largest accepted file.
    #[arg(
        long,
        value_name = "SIZE",
        env = env::UPLOADER_MAX_FILE_SIZE,
        default_value_t = format_size(server::DEFAULT_MAX_FILE_SIZE),
        help_heading = "Limits"
    )]
    pub max_file_size: String,
    /// Largest accepted request body.
    #[arg(
        long,
        value_name = "SIZE",
        env = env::UPLOADER_MAX_REQUEST_SIZE,
        default_value_t = format_size(server::DEFAULT_MAX_REQUEST_SIZE),
        help_heading = "Limits"
    )]
    pub max_request_size: String,
    /// Most file parts in one request.
    #[arg(
        long,
        value_name = "N",
        env = env::UPLOADER_MAX_FILES,
        default_value_t = server::DEFAULT_MAX_FILES,
        help_heading = "Limits"
    )]
    pub max_files: usize,
    /// A request body that sends nothing for this long is cut off.
    #[arg(
        long,
        value_name = "DURATION",
        env = env::UPLOADER_BODY_IDLE_TIMEOUT,
        default_value_t = format_duration(server::DEFAULT_BODY_IDLE_TIMEOUT),
        help_heading = "Limits"
    )]
    pub body_idle_timeout: String,
    /// Upload requests served at once; more get 503 with Retry-After.
    #[arg(
        long,
        value_name = "N",
        env = env::UPLOADER_MAX_CONCURRENT_UPLOADS,
        default_value_t = server::DEFAULT_MAX_CONCURRENT_UPLOADS,
        help_heading = "Limits"
    )]
    pub max_concurrent_uploads: usize,

    /// How long a response stored for an Idempotency-Key is replayed (records are kept in the
    /// bucket under <root prefix>.uploader/idempotency/; delete them with a lifecycle rule).
    #[arg(
        long,
        value_name = "DURATION",
        env = env::UPLOADER_IDEMPOTENCY_TTL,
        default_value_t = format_duration(server::DEFAULT_IDEMPOTENCY_TTL),
        help_heading = "Idempotency"
    )]
    pub idempotency_ttl: String,
    /// How long the claim of a request with an Idempotency-Key holds unless its replica renews
    /// it (every third of it): a crashed replica blocks the key this long at most.
    #[arg(
        long,
        value_name = "DURATION",
        env = env::UPLOADER_IDEMPOTENCY_LEASE,
        default_value_t = format_duration(server::DEFAULT_IDEMPOTENCY_LEASE),
        help_heading = "Idempotency"
    )]
    pub idempotency_lease: String,

    #[command(flatten)]
    pub tuning: TuningArgs,

    #[command(flatten)]
    pub connection: ConnectionArgs,
}
