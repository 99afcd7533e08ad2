//! Command-line arguments. Plain data: no logic here (resolution is in `resolve.rs`).

use clap::{Args, Parser, Subcommand};
pub use uploader_server::connect::ConnectionArgs;

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
    /// Check credentials and bucket access, then exit (0 ok, 2 not usable).
    Check(CheckArgs),
    /// List and abort multipart uploads left behind under s3://bucket/prefix.
    Cleanup(CleanupArgs),
    /// Run the HTTP batch upload daemon (POST /v1/uploads).
    Serve(Box<uploader_server::ServeArgs>),
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

    /// Requests in flight, shared by small files and parts.
    #[arg(long, short = 'c', default_value_t = uploader_core::config::DEFAULT_CONCURRENCY, help_heading = "Tuning")]
    pub concurrency: usize,
    /// Multipart part size (5MiB..5GiB), e.g. 8MiB, 16M.
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "8MiB",
        help_heading = "Tuning"
    )]
    pub part_size: String,
    /// Files of this size or more go multipart, e.g. 16MiB.
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "16MiB",
        help_heading = "Tuning"
    )]
    pub multipart_threshold: String,
    /// Memory for file data being sent, e.g. 96MiB: bodies up to a quarter of it are read once
    /// and sent from memory, larger ones stream from disk.
    #[arg(
        long,
        value_name = "SIZE",
        default_value = "96MiB",
        help_heading = "Tuning"
    )]
    pub max_buffer: String,
    /// Retries per request after the first attempt.
    #[arg(long, value_name = "N", default_value_t = 4, help_heading = "Tuning")]
    pub retries: u32,
    /// Checksum sent with every request and verified by the server: crc32c or md5.
    #[arg(
        long,
        value_name = "ALG",
        default_value = "crc32c",
        help_heading = "Tuning"
    )]
    pub checksum: String,

    /// Show what would be uploaded where; upload nothing.
    #[arg(long, help_heading = "Behaviour")]
    pub dry_run: bool,
    /// Never overwrite: existing keys are reported as skipped.
    #[arg(long, help_heading = "Behaviour")]
    pub no_clobber: bool,
    /// Stop starting new files after the first failure.
    #[arg(long, help_heading = "Behaviour")]
    pub fail_fast: bool,
    /// Also upload content sniffed as TYPE (exact, or type/*; repeatable). The default
    /// allowlist is safe passive content: images, PDF, text, CSV, JSON, archives, Office.
    #[arg(long, value_name = "TYPE", help_heading = "Content types")]
    pub allow_mime: Vec<String>,
    /// Never upload content sniffed as TYPE (exact, or type/*; repeatable). Wins over allows.
    #[arg(long, value_name = "TYPE", help_heading = "Content types")]
    pub deny_mime: Vec<String>,
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
