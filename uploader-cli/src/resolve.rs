//! Flags + environment → core configuration (ripgrep's LowArgs → HiArgs). Every invalid value
//! is refused here, before anything is uploaded. clap has already applied the precedence
//! (flag, then environment variable, then default); this layer only converts and validates.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use uploader_core::checksum::cache::default_path;
use uploader_core::config::{parse_duration, parse_size};
use uploader_core::connect::ConnectOptions;
use uploader_core::journal::{self, JobIdentity, JournalConfig};
use uploader_core::limit::{parse_rate, parse_request_rate};
use uploader_core::walk::{Shard, glob_filter};
use uploader_core::{
    Destination, KeyPrefix, MimePolicy, RateLimits, RetryPolicy, SkipMode, Source, Timetable,
    UploadConfig, WalkOptions,
};
use uploader_server::ServerConfig;
use uploader_server::config::CorsOrigin;

use crate::args::{CleanupArgs, ConnectionArgs, ServeArgs, SyncArgs, TuningArgs, UploadArgs};

/// `s3://bucket/prefix`.
#[derive(Debug, Clone)]
pub struct S3Target {
    pub bucket: String,
    pub prefix: KeyPrefix,
}

impl S3Target {
    pub fn parse(url: &str) -> anyhow::Result<S3Target> {
        let rest = url
            .strip_prefix("s3://")
            .with_context(|| format!("{url:?} is not an s3://bucket/prefix URL"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            bail!("{url:?} has no bucket name");
        }
        let prefix =
            KeyPrefix::new(prefix).with_context(|| format!("invalid key prefix in {url:?}"))?;
        Ok(S3Target {
            bucket: bucket.to_owned(),
            prefix,
        })
    }

    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }
}

/// Everything an upload needs, validated.
pub struct UploadPlan {
    /// Find out which checksum the endpoint verifies before uploading (`--checksum auto`).
    pub detect_checksum: bool,
    pub sources: Vec<Source>,
    pub target: S3Target,
    pub walk: WalkOptions,
    pub config: UploadConfig,
    pub rates: Rates,
    /// What a listing covers and what `sync --delete` may remove.
    pub dest: Destination,
    /// What makes this job this job (its `location` is the store's, known once connected).
    pub identity: JobIdentity,
    /// How the job keeps its journal.
    pub journal: JournalChoice,
}

/// `--journal`, `--no-journal` and `--resume`.
pub struct JournalChoice {
    /// `--journal FILE` (else the default path of the job's id).
    pub path: Option<PathBuf>,
    /// `--no-journal` (or `--dry-run`).
    pub off: bool,
    /// `--resume`.
    pub resume: bool,
}

impl UploadPlan {
    /// The journal of this job on the store at `location` (`None`: it keeps none), refused when
    /// it is another job's or not a journal.
    pub fn journal_config(&mut self, location: String) -> anyhow::Result<Option<JournalConfig>> {
        if self.journal.off {
            return Ok(None);
        }
        self.identity.location = location;
        let id = self.identity.id();
        let path = match self
            .journal
            .path
            .clone()
            .or_else(|| journal::default_path(&id))
        {
            Some(p) => p,
            None => {
                tracing::warn!(
                    "no state directory (neither XDG_STATE_HOME nor HOME is set): this job keeps no journal and cannot be resumed"
                );
                return Ok(None);
            }
        };
        // Another job's journal (or any other file) is neither used nor overwritten.
        journal::read(&path, Some(&id), Some(&self.target.prefix))
            .with_context(|| format!("the journal {}", path.display()))?;
        Ok(Some(JournalConfig {
            path,
            id,
            prefix: self.target.prefix.clone(),
            location: self.identity.location.clone(),
            bucket: self.target.bucket.clone(),
            resume: self.journal.resume,
            command: std::env::args().collect(),
        }))
    }
}

/// What makes two runs of `upload` the same job, besides the store's location: the sources
/// (canonical), the destination, and the flags that change keys or bytes.
fn job_identity(
    a: &UploadArgs,
    srcs: &[String],
    target: &S3Target,
    list: Option<&str>,
) -> JobIdentity {
    let sources = srcs
        .iter()
        .map(|s| {
            std::fs::canonicalize(s)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| s.clone())
        })
        .collect();
    let mut settings = vec![
        format!("follow_symlinks={}", a.follow_symlinks),
        format!("shard={:?}", a.shard),
        format!("content_type={:?}", a.content_type),
        format!("storage_class={:?}", a.storage_class),
        format!("sse={:?}", a.sse),
        format!("allow_mime={:?}", a.tuning.allow_mime),
        format!("deny_mime={:?}", a.tuning.deny_mime),
    ];
    settings.extend(a.include.iter().map(|g| format!("include={g}")));
    settings.extend(a.exclude.iter().map(|g| format!("exclude={g}")));
    settings.extend(a.metadata.iter().map(|m| format!("metadata={m}")));
    if let Some(list) = list {
        settings.push(format!("files_from={list}"));
    }
    JobIdentity {
        sources,
        location: String::new(),
        bucket: target.bucket.clone(),
        prefix: target.prefix.as_str().to_owned(),
        settings,
    }
}

impl TryFrom<&SyncArgs> for UploadPlan {
    type Error = anyhow::Error;

    /// `upload --skip-existing checksum` (unless told another mode), and `--delete`.
    fn try_from(a: &SyncArgs) -> anyhow::Result<UploadPlan> {
        let mut plan = UploadPlan::try_from(&a.upload)?;
        if plan.config.skip_existing.is_none() {
            plan.config.skip_existing = Some(SkipMode::Checksum);
        }
        if a.delete {
            if a.upload.files_from.is_some() {
                bail!(
                    "--delete cannot be combined with --files-from: a list of files does not say                      which objects are orphans"
                );
            }
            if plan.target.prefix.as_str().is_empty() {
                bail!(
                    "--delete needs a key prefix (s3://{}/prefix/): it never cleans a whole bucket",
                    plan.target.bucket
                );
            }
            plan.dest.delete = true;
        }
        Ok(plan)
    }
}

impl TryFrom<&UploadArgs> for UploadPlan {
    type Error = anyhow::Error;

    fn try_from(a: &UploadArgs) -> anyhow::Result<UploadPlan> {
        let (dest, srcs) = a.paths.split_last().context("missing destination")?;
        let target = S3Target::parse(dest)?;
        for s in srcs {
            if s.starts_with("s3://") {
                bail!("only local sources can be uploaded; {s:?} is an S3 URL");
            }
        }
        for s in srcs {
            check_source(Path::new(s))?;
        }
        let mut listed: Option<String> = None;
        let sources = match &a.files_from {
            None => srcs
                .iter()
                .map(|s| Source::Path(PathBuf::from(s)))
                .collect(),
            Some(list) => {
                let [root] = srcs else {
                    bail!(
                        "--files-from takes exactly one SRC directory, the root of the listed paths"
                    );
                };
                let text = if list == "-" {
                    std::io::read_to_string(std::io::stdin()).context("reading paths from stdin")?
                } else {
                    std::fs::read_to_string(list).with_context(|| format!("reading {list}"))?
                };
                listed = Some(text.clone());
                let paths = text
                    .lines()
                    .map(|l| l.trim_end_matches('\r'))
                    .filter(|l| !l.is_empty())
                    .map(|l| l.strip_prefix("./").unwrap_or(l).to_owned())
                    .collect();
                vec![Source::List {
                    root: PathBuf::from(root),
                    paths,
                }]
            }
        };
        let filter = glob_filter(&a.include, &a.exclude)?;
        let shard = a
            .shard
            .as_deref()
            .map(|s| Shard::parse(s, |v| std::env::var(v).ok()))
            .transpose()
            .context("--shard")?;
        let metadata = a
            .metadata
            .iter()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .with_context(|| format!("--metadata {kv:?}: expected KEY=VALUE"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let tuning = Tuning::try_from(&a.tuning)?;
        let skip_existing = a
            .skip_existing
            .as_deref()
            .map(str::parse::<SkipMode>)
            .transpose()
            .context("--skip-existing")?;
        let checksum_cache = if a.no_checksum_cache {
            None
        } else {
            a.checksum_cache.clone().or_else(default_path)
        };
        let config = UploadConfig {
            fail_fast: a.fail_fast,
            no_clobber: a.no_clobber,
            skip_existing,
            checksum_cache,
            dry_run: a.dry_run,
            content_type: a.content_type.clone(),
            metadata,
            storage_class: a.storage_class.clone(),
            sse: a.sse.clone(),
            keep_uploads_on_cancel: a.resume || a.resumable,
            ..tuning.config
        };
        config.validate()?;
        let dest = Destination {
            prefix: target.prefix.clone(),
            delete: false,
            filter: filter.clone(),
            shard,
        };
        let identity = job_identity(a, srcs, &target, listed.as_deref());
        Ok(UploadPlan {
            detect_checksum: tuning.detect_checksum,
            sources,
            target,
            walk: WalkOptions {
                follow_symlinks: a.follow_symlinks,
                filter,
                shard,
            },
            config,
            rates: tuning.rates,
            identity,
            journal: JournalChoice {
                path: a.journal.clone(),
                off: a.no_journal || a.dry_run,
                resume: a.resume,
            },
            dest,
        })
    }
}

/// Validated cleanup settings.
pub struct CleanupPlan {
    pub target: S3Target,
    pub older_than: std::time::Duration,
}

impl TryFrom<&CleanupArgs> for CleanupPlan {
    type Error = anyhow::Error;
    fn try_from(a: &CleanupArgs) -> anyhow::Result<CleanupPlan> {
        Ok(CleanupPlan {
            target: S3Target::parse(&a.target)?,
            older_than: parse_duration(&a.older_than).context("--older-than")?,
        })
    }
}

/// A source named on the command line must exist and be readable: otherwise the command is
/// wrong, not one file of it (exit 2, nothing uploaded). Files and directories are opened;
/// anything else (a symbolic link, a FIFO) is left to the walk, which never opens them.
fn check_source(path: &Path) -> anyhow::Result<()> {
    let shown = path.display();
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("source {shown} does not exist")
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read the source {shown}")),
    };
    let opened = if meta.is_dir() {
        std::fs::read_dir(path).map(drop)
    } else if meta.is_file() {
        std::fs::File::open(path).map(drop)
    } else {
        Ok(())
    };
    opened.with_context(|| format!("cannot read the source {shown}"))
}

/// The tuning flags of `upload` and `serve`, resolved: the one place they become an
/// [`UploadConfig`]. The command-specific fields keep their defaults; validation follows once
/// the command has set them.
pub struct Tuning {
    pub config: UploadConfig,
    /// `--checksum auto`: probe the endpoint before the first upload.
    pub detect_checksum: bool,
    pub rates: Rates,
}

/// `--bwlimit` (a rate or a timetable), `--bwlimit-file` and `--tps-limit`, parsed.
pub struct Rates {
    pub bandwidth: Option<Timetable>,
    pub per_file: Option<u64>,
    pub requests: Option<f64>,
}

impl Rates {
    /// The limits in force now; a timetable that changes is followed by a task (until the
    /// process ends).
    pub fn start(&self) -> RateLimits {
        let limits = RateLimits::new(None, self.per_file, self.requests);
        if let Some(t) = &self.bandwidth {
            limits.set_bandwidth(t.rate_at(local_second_of_week() / 60));
            if !t.is_constant() {
                drop(limits.follow(t.clone(), local_second_of_week));
            }
        }
        limits
    }

    /// A daemon takes a plain rate: its limits change through its admin API.
    fn constant(self) -> anyhow::Result<RateLimits> {
        if self.bandwidth.as_ref().is_some_and(|t| !t.is_constant()) {
            bail!(
                "--bwlimit: `serve` takes a plain rate, not a timetable; change it at run time \
                 with PUT /v1/limits"
            );
        }
        Ok(self.start())
    }
}

/// Seconds since Monday 00:00, local time (the timetable's clock).
fn local_second_of_week() -> u32 {
    use chrono::{Datelike as _, Timelike as _};
    let now = chrono::Local::now();
    now.weekday().num_days_from_monday() * 86_400 + now.num_seconds_from_midnight()
}

impl TryFrom<&TuningArgs> for Tuning {
    type Error = anyhow::Error;

    fn try_from(t: &TuningArgs) -> anyhow::Result<Tuning> {
        let checksum = uploader_core::checksum::parse_choice(&t.checksum).context("--checksum")?;
        let (concurrency, concurrency_mode) = uploader_core::config::resolve_concurrency(
            t.concurrency,
            t.concurrency_mode.as_deref(),
        )
        .context("--concurrency-mode")?;
        let config = UploadConfig {
            concurrency,
            concurrency_mode,
            part_size: parse_size(&t.part_size).context("--part-size")?,
            multipart_threshold: parse_size(&t.multipart_threshold)
                .context("--multipart-threshold")?,
            max_buffer_bytes: parse_size(&t.max_buffer).context("--max-buffer")?,
            retry: RetryPolicy {
                max_attempts: t.retries.saturating_add(1),
                ..RetryPolicy::default()
            },
            checksum: checksum.unwrap_or_default(),
            mime: MimePolicy::new(&t.allow_mime, &t.deny_mime)?,
            ..UploadConfig::default()
        };
        let rates = Rates {
            bandwidth: t
                .bwlimit
                .as_deref()
                .map(Timetable::parse)
                .transpose()
                .context("--bwlimit")?,
            per_file: t
                .bwlimit_file
                .as_deref()
                .map(parse_rate)
                .transpose()
                .context("--bwlimit-file")?
                .flatten(),
            requests: t
                .tps_limit
                .as_deref()
                .map(parse_request_rate)
                .transpose()
                .context("--tps-limit")?
                .flatten(),
        };
        Ok(Tuning {
            config,
            detect_checksum: checksum.is_none(),
            rates,
        })
    }
}

impl From<&ConnectionArgs> for ConnectOptions {
    fn from(a: &ConnectionArgs) -> ConnectOptions {
        ConnectOptions {
            endpoint_url: a.endpoint_url.clone(),
            region: a.region.clone(),
            profile: a.profile.clone(),
            force_path_style: a.force_path_style,
            allow_http: a.allow_http,
            embedded_s3: a.embedded_s3.clone(),
        }
    }
}

impl TryFrom<&ServeArgs> for ServerConfig {
    type Error = anyhow::Error;

    fn try_from(a: &ServeArgs) -> anyhow::Result<ServerConfig> {
        let mut tokens: Vec<String> = Vec::new();
        if let Some(path) = &a.token_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the token file {}", path.display()))?;
            tokens.extend(text.lines().map(str::trim).map(String::from));
        }
        if let Some(t) = &a.tokens {
            tokens.extend(t.split(',').map(str::trim).map(String::from));
        }
        tokens.retain(|t| !t.is_empty());
        let admin_tokens = a
            .admin_tokens
            .iter()
            .flat_map(|t| t.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from)
            .collect();
        let tuning = Tuning::try_from(&a.tuning)?;
        let cors_origins = a
            .cors_origin
            .iter()
            .map(|o| o.trim())
            .filter(|o| !o.is_empty())
            .map(CorsOrigin::parse)
            .collect::<Result<Vec<_>, _>>()
            .context("--cors-origin")?;
        let config = ServerConfig {
            listen: a.listen,
            bucket: a.bucket.clone(),
            root_prefix: KeyPrefix::new(&a.root_prefix).context("--root-prefix")?,
            tls: a.tls_cert.clone().zip(a.tls_key.clone()),
            shutdown_grace: parse_duration(&a.shutdown_grace).context("--shutdown-grace")?,
            tokens,
            scoped_tokens: a.scoped_tokens.clone(),
            no_auth: a.no_auth,
            limits: uploader_server::Limits {
                max_file_size: parse_size(&a.max_file_size).context("--max-file-size")?,
                max_request_size: parse_size(&a.max_request_size).context("--max-request-size")?,
                max_files: a.max_files,
                body_idle_timeout: parse_duration(&a.body_idle_timeout)
                    .context("--body-idle-timeout")?,
                max_concurrent_uploads: a.max_concurrent_uploads,
            },
            upload: tuning.config,
            detect_checksum: tuning.detect_checksum,
            rates: tuning.rates.constant()?,
            admin_tokens,
            cors_origins,
            ui: a.ui,
            idempotency: uploader_server::config::IdempotencyConfig {
                ttl: parse_duration(&a.idempotency_ttl).context("--idempotency-ttl")?,
                lease: parse_duration(&a.idempotency_lease).context("--idempotency-lease")?,
            },
            connect: ConnectOptions::from(&a.connection),
        };
        config.validate()?;
        Ok(config)
    }
}
