//! Flags + environment → core configuration (ripgrep's LowArgs → HiArgs). Every invalid value
//! is refused here, before anything is uploaded.

use std::path::PathBuf;

use anyhow::{Context as _, bail};
use uploader_core::config::{parse_duration, parse_size};
use uploader_core::walk::glob_filter;
use uploader_core::{KeyPrefix, MimePolicy, RetryPolicy, Source, UploadConfig, WalkOptions};

use crate::args::{CleanupArgs, UploadArgs};

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
        let metadata = a
            .metadata
            .iter()
            .map(|kv| {
                kv.split_once('=')
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .with_context(|| format!("--metadata {kv:?}: expected KEY=VALUE"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let checksum = uploader_core::checksum::parse_choice(&a.checksum).context("--checksum")?;
        let config = UploadConfig {
            concurrency: a.concurrency,
            part_size: parse_size(&a.part_size).context("--part-size")?,
            multipart_threshold: parse_size(&a.multipart_threshold)
                .context("--multipart-threshold")?,
            max_buffer_bytes: parse_size(&a.max_buffer).context("--max-buffer")?,
            retry: RetryPolicy {
                max_attempts: a.retries.saturating_add(1),
                ..RetryPolicy::default()
            },
            checksum: checksum.unwrap_or_default(),
            fail_fast: a.fail_fast,
            no_clobber: a.no_clobber,
            dry_run: a.dry_run,
            mime: MimePolicy::new(&a.allow_mime, &a.deny_mime)?,
            content_type: a.content_type.clone(),
            metadata,
            storage_class: a.storage_class.clone(),
            sse: a.sse.clone(),
        };
        config.validate()?;
        Ok(UploadPlan {
            detect_checksum: checksum.is_none(),
            sources,
            target,
            walk: WalkOptions {
                follow_symlinks: a.follow_symlinks,
                filter,
            },
            config,
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
