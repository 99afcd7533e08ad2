//! Walk: turns a directory tree into upload inputs, in a blocking thread, while the upload runs.
//!
//! Entries go through a bounded channel, so a huge tree never sits in memory and uploading
//! starts with the first file. Symbolic links are not followed unless asked; a followed link must
//! resolve inside the source root, and directory loops are detected. Special files (FIFOs,
//! sockets, devices) are reported as skipped, never opened. Filters decide on the path relative
//! to the root.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::key::{KeyPrefix, ObjectKey};
use crate::report::{ErrorCode, FileError};

/// A filter on relative paths (`/`-separated): `true` keeps the file.
pub type PathFilter = std::sync::Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// How a tree is walked.
#[derive(Clone, Default)]
pub struct WalkOptions {
    /// Follow symbolic links that resolve inside the root (default: no).
    pub follow_symlinks: bool,
    /// Keep only the files this accepts (default: all).
    pub filter: Option<PathFilter>,
    /// Keep only the files of this shard (default: all).
    pub shard: Option<Shard>,
}

impl std::fmt::Debug for WalkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalkOptions")
            .field("follow_symlinks", &self.follow_symlinks)
            .field("filter", &self.filter.is_some())
            .field("shard", &self.shard)
            .finish()
    }
}

/// One input of a job.
#[derive(Debug, Clone)]
pub enum Input {
    /// A file to upload to `key`.
    File {
        /// The file.
        path: PathBuf,
        /// Its key.
        key: ObjectKey,
    },
    /// A file that is reported without being uploaded.
    Skip {
        /// The source, for the report.
        source: String,
        /// Its key, when one could be derived.
        key: Option<String>,
        /// Why it is skipped.
        reason: String,
    },
    /// A file that cannot be uploaded.
    Fail {
        /// The source, for the report.
        source: String,
        /// Its key, when one could be derived.
        key: Option<String>,
        /// Why it fails.
        error: FileError,
    },
}

/// What a job uploads.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file (uploaded as `<prefix><file name>`) or a directory (its contents are uploaded
    /// under `<prefix>`, keyed by their path relative to it).
    Path(PathBuf),
    /// Paths relative to `root` (as read by `--files-from`), keyed by that relative path. They
    /// are held to the same rules as a walk: no escape from `root`, symlinks per the options.
    List {
        /// The directory the paths are relative to.
        root: PathBuf,
        /// The relative paths.
        paths: Vec<String>,
    },
}

/// What a walk sent, once it has ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkTotals {
    /// Inputs sent (files to upload, and those reported without being read).
    pub inputs: usize,
    /// Bytes of the files to upload, as the walk stat'ed them.
    pub bytes: u64,
}

/// Walks the sources in a blocking thread, sending inputs on `tx` until done or cancelled;
/// `tx` is dropped when the walk ends. With [`crate::Uploader::upload_inputs`] this is
/// [`crate::Uploader::upload_sources`], for callers that want the totals (the CLI's progress
/// bar): the handle ends with them when the walk is complete, or with `None` when it stopped
/// first (the receiver gone, or the job cancelled). The sizes come from the stat the walk makes
/// of every entry anyway: counting costs no syscall. Must be called within a Tokio runtime.
pub fn spawn_walk(
    sources: Vec<Source>,
    prefix: KeyPrefix,
    opts: WalkOptions,
    tx: mpsc::Sender<Input>,
    cancel: CancellationToken,
) -> tokio::task::JoinHandle<Option<WalkTotals>> {
    tokio::task::spawn_blocking(move || {
        let mut totals = WalkTotals::default();
        for source in sources {
            let (root, paths) = match source {
                Source::Path(p) => match std::fs::symlink_metadata(&p) {
                    Ok(m) if m.is_dir() => (p, None),
                    Ok(_) => {
                        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                        let parent = p.parent().unwrap_or(Path::new(".")).to_owned();
                        (parent, Some(name.into_iter().collect()))
                    }
                    Err(e) => {
                        let input = Input::Fail {
                            source: p.display().to_string(),
                            key: None,
                            error: FileError::new(
                                ErrorCode::SourceUnreadable,
                                e.to_string(),
                                false,
                            ),
                        };
                        if tx.blocking_send(input).is_err() {
                            return None;
                        }
                        totals.inputs += 1;
                        continue;
                    }
                },
                Source::List { root, paths } => (root, Some(paths)),
            };
            let mut w = Walker {
                root_canon: std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone()),
                root,
                prefix: prefix.clone(),
                opts: opts.clone(),
                tx: tx.clone(),
                cancel: cancel.clone(),
                visited: HashSet::new(),
                totals,
            };
            let go_on = match paths {
                None => {
                    let root = w.root.clone();
                    w.dir(&root)
                }
                Some(paths) => paths.iter().all(|rel| w.listed(rel)),
            };
            if !go_on {
                return None;
            }
            totals = w.totals;
        }
        Some(totals)
    })
}

struct Walker {
    root: PathBuf,
    root_canon: PathBuf,
    prefix: KeyPrefix,
    opts: WalkOptions,
    tx: mpsc::Sender<Input>,
    cancel: CancellationToken,
    visited: HashSet<(u64, u64)>,
    /// What was sent so far, by this walker and the sources before it.
    totals: WalkTotals,
}

impl Walker {
    /// Sends one input (a file to upload of `bytes`); false when the receiver is gone or the
    /// job cancelled.
    fn send(&mut self, input: Input, bytes: u64) -> bool {
        let sent = !self.cancel.is_cancelled() && self.tx.blocking_send(input).is_ok();
        if sent {
            self.totals.inputs += 1;
            self.totals.bytes += bytes;
        }
        sent
    }

    fn fail(&mut self, path: &Path, code: ErrorCode, message: String) -> bool {
        self.send(
            Input::Fail {
                source: path.display().to_string(),
                key: None,
                error: FileError::new(code, message, false),
            },
            0,
        )
    }

    fn skip(&mut self, path: &Path, reason: &str) -> bool {
        self.send(
            Input::Skip {
                source: path.display().to_string(),
                key: None,
                reason: reason.into(),
            },
            0,
        )
    }

    /// Walks one directory in name order (stable output); false to stop.
    fn dir(&mut self, dir: &Path) -> bool {
        #[cfg(unix)]
        if let Ok(meta) = std::fs::metadata(dir) {
            use std::os::unix::fs::MetadataExt;
            if !self.visited.insert((meta.dev(), meta.ino())) {
                return self.skip(dir, "directory loop through a symbolic link");
            }
        }
        let mut entries = match std::fs::read_dir(dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .collect::<Vec<_>>(),
            Err(e) => {
                return self.fail(
                    dir,
                    ErrorCode::SourceUnreadable,
                    format!("cannot list directory: {e}"),
                );
            }
        };
        entries.sort();
        for path in entries {
            if !self.entry(&path) {
                return false;
            }
        }
        true
    }

    /// A path given relative to the root (a single file source, or a `--files-from` line).
    fn listed(&mut self, rel: &str) -> bool {
        // Another shard's file is not this shard's to report, even when it fails.
        if self.opts.shard.is_some_and(|s| !s.contains(rel)) {
            return true;
        }
        let path = self.root.join(rel);
        if let Err(e) = ObjectKey::derive(&self.prefix, rel) {
            return self.fail(&path, ErrorCode::InvalidKey, format!("{e} [{}]", e.rule()));
        }
        self.entry(&path)
    }

    fn entry(&mut self, path: &Path) -> bool {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                return self.fail(path, ErrorCode::SourceUnreadable, e.to_string());
            }
        };
        let ft = meta.file_type();
        if ft.is_symlink() {
            if !self.opts.follow_symlinks {
                return self.skip(path, "symbolic link not followed (use --follow-symlinks)");
            }
            let target = match std::fs::canonicalize(path) {
                Ok(t) => t,
                Err(_) => return self.skip(path, "dangling symbolic link"),
            };
            if !target.starts_with(&self.root_canon) {
                return self.skip(path, "symbolic link points outside the source root");
            }
            return match std::fs::metadata(&target) {
                Ok(m) if m.is_dir() => self.dir(path),
                Ok(m) if m.is_file() => self.file(path, m.len()),
                _ => self.skip(path, "symbolic link to a special file"),
            };
        }
        if ft.is_dir() {
            return self.dir(path);
        }
        if !ft.is_file() {
            return self.skip(path, "not a regular file (FIFO, socket or device)");
        }
        self.file(path, meta.len())
    }

    /// A regular file of `size` bytes (as stat'ed by the walk).
    fn file(&mut self, path: &Path, size: u64) -> bool {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        if rel.as_os_str().is_empty() {
            return self.fail(path, ErrorCode::InvalidKey, "the path has no name".into());
        }
        if self.opts.filter.is_some() || self.opts.shard.is_some() {
            // Filters and shards apply to walked trees and lists alike.
            let rel_str = rel.to_string_lossy().replace('\\', "/");
            if self.opts.filter.as_ref().is_some_and(|f| !f(&rel_str))
                || self.opts.shard.is_some_and(|s| !s.contains(&rel_str))
            {
                return true;
            }
        }
        match ObjectKey::from_relative_path(&self.prefix, rel) {
            Ok(key) => self.send(
                Input::File {
                    path: path.to_owned(),
                    key,
                },
                size,
            ),
            Err(e) => self.fail(path, ErrorCode::InvalidKey, format!("{e} [{}]", e.rule())),
        }
    }
}

/// One of `count` disjoint parts of a job (`--shard K/N`): the files whose relative path hashes
/// to `index`. The hash is rclone's `--hash-filter K/N`, so another tool can check a partition:
/// the MD5 of the path relative to its source root (`/`-separated), NFC-normalised and
/// lower-cased; its first 8 bytes as a little-endian u64, modulo `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: u64,
    count: u64,
}

/// A shard that could not be parsed or resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    /// Not `K/N` or `auto/N`.
    #[error("invalid shard {0:?}: expected K/N with 0 <= K < N (e.g. 2/8), or auto/N")]
    Syntax(String),
    /// `auto/N` with none of the job runners' index variables set.
    #[error(
        "--shard auto/{0}: none of {vars} is set; give the shard as K/{0}",
        vars = SHARD_INDEX_VARS.join(", ")
    )]
    NoIndex(u64),
    /// A job runner's index variable that is not a number below N.
    #[error("--shard auto/{count}: {var}={value:?} is not a number below {count}")]
    BadIndex {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// N.
        count: u64,
    },
}

/// The variables job runners give an array task's index in, in the order `auto/N` reads them:
/// Kubernetes Indexed Jobs, Slurm job arrays, AWS Batch array jobs.
pub const SHARD_INDEX_VARS: [&str; 3] = [
    crate::env::JOB_COMPLETION_INDEX,
    crate::env::SLURM_ARRAY_TASK_ID,
    crate::env::AWS_BATCH_JOB_ARRAY_INDEX,
];

impl Shard {
    /// Shard `index` of `count`.
    pub fn new(index: u64, count: u64) -> Result<Shard, ShardError> {
        if count == 0 || index >= count {
            return Err(ShardError::Syntax(format!("{index}/{count}")));
        }
        Ok(Shard { index, count })
    }

    /// Parses `K/N`, or `auto/N` with K from the first of [`SHARD_INDEX_VARS`] that `var` finds.
    pub fn parse(s: &str, var: impl Fn(&str) -> Option<String>) -> Result<Shard, ShardError> {
        let syntax = || ShardError::Syntax(s.to_owned());
        let (k, n) = s.trim().split_once('/').ok_or_else(syntax)?;
        let number = |t: &str| {
            (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse::<u64>().ok())
                .flatten()
        };
        let count = number(n).filter(|n| *n > 0).ok_or_else(syntax)?;
        if k != "auto" {
            return Shard::new(number(k).ok_or_else(syntax)?, count).map_err(|_| syntax());
        }
        let (name, value) = SHARD_INDEX_VARS
            .iter()
            .find_map(|name| var(name).map(|v| (*name, v)))
            .ok_or(ShardError::NoIndex(count))?;
        number(value.trim())
            .filter(|k| *k < count)
            .map(|index| Shard { index, count })
            .ok_or(ShardError::BadIndex {
                var: name,
                value,
                count,
            })
    }

    /// K.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// N.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Whether the file at `relative_path` (`/`-separated) belongs to this shard.
    pub fn contains(&self, relative_path: &str) -> bool {
        use md5::Digest as _;
        let normal = shard_form(relative_path);
        let digest = md5::Md5::digest(normal.as_bytes());
        let head: [u8; 8] = digest[..8].try_into().expect("an MD5 has 16 bytes");
        u64::from_le_bytes(head) % self.count == self.index
    }
}

/// What a shard hashes: the path in NFC, lower-cased a character at a time with the simple
/// mapping, as Go's `strings.ToLower` (rclone's) does. Not `str::to_lowercase`, which maps 'İ'
/// to "i̇" and a final 'Σ' to 'ς'; U+0130 is the one character whose full lowercase mapping is
/// not a single character, and its simple mapping is 'i'.
fn shard_form(relative_path: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    let mut out = String::with_capacity(relative_path.len());
    for c in relative_path.nfc() {
        if c == '\u{130}' {
            out.push('i');
        } else {
            out.extend(c.to_lowercase());
        }
    }
    out
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// An invalid glob.
#[derive(Debug, thiserror::Error)]
#[error("invalid pattern {pattern:?}: {source}")]
pub struct GlobError {
    pattern: String,
    #[source]
    source: globset::Error,
}

fn glob_set(patterns: &[String]) -> Result<(globset::GlobSet, globset::GlobSet), GlobError> {
    // Patterns without '/' match the file name at any depth (like .gitignore); patterns with
    // '/' match the whole relative path, where `*` stays within one directory and `**` spans
    // several.
    let mut names = globset::GlobSetBuilder::new();
    let mut paths = globset::GlobSetBuilder::new();
    for p in patterns {
        let glob = globset::GlobBuilder::new(p.trim_start_matches("./"))
            .literal_separator(true)
            .build()
            .map_err(|source| GlobError {
                pattern: p.clone(),
                source,
            })?;
        if p.contains('/') {
            paths.add(glob);
        } else {
            names.add(glob);
        }
    }
    let build = |b: globset::GlobSetBuilder| {
        b.build().map_err(|source| GlobError {
            pattern: patterns.join(" "),
            source,
        })
    };
    Ok((build(names)?, build(paths)?))
}

/// A filter from `--include` / `--exclude` globs. A file is kept when it matches no exclude and,
/// if any include is given, at least one include: excludes win.
pub fn glob_filter(
    includes: &[String],
    excludes: &[String],
) -> Result<Option<PathFilter>, GlobError> {
    if includes.is_empty() && excludes.is_empty() {
        return Ok(None);
    }
    let (inc_names, inc_paths) = glob_set(includes)?;
    let (exc_names, exc_paths) = glob_set(excludes)?;
    let has_includes = !includes.is_empty();
    Ok(Some(std::sync::Arc::new(move |rel: &str| {
        let name = rel.rsplit('/').next().unwrap_or(rel);
        let hit = |n: &globset::GlobSet, p: &globset::GlobSet| n.is_match(name) || p.is_match(rel);
        !hit(&exc_names, &exc_paths) && (!has_includes || hit(&inc_names, &inc_paths))
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_walk_ends_with_the_inputs_it_sent_and_the_bytes_of_its_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for (name, len) in [("a", 10usize), ("b", 0), ("sub/c", 2048)] {
            std::fs::write(dir.path().join(name), vec![b'x'; len]).unwrap();
        }
        // Reported without being read: counted as an input, with no bytes.
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("a"), dir.path().join("link")).unwrap();
        let single = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(single.path(), [0u8; 7]).unwrap();
        let sources = vec![
            Source::Path(dir.path().to_owned()),
            Source::Path(single.path().to_owned()),
            Source::Path(dir.path().join("missing")),
        ];
        let (tx, mut rx) = mpsc::channel(2);
        let walk = spawn_walk(
            sources,
            KeyPrefix::root(),
            WalkOptions::default(),
            tx,
            CancellationToken::new(),
        );
        let mut got = Vec::new();
        while let Some(input) = rx.recv().await {
            got.push(input);
        }
        let files = got
            .iter()
            .filter(|i| matches!(i, Input::File { .. }))
            .count();
        assert_eq!(files, 4);
        let expected_inputs = if cfg!(unix) { 6 } else { 5 };
        assert_eq!(got.len(), expected_inputs, "{got:?}");
        assert_eq!(
            walk.await.unwrap(),
            Some(WalkTotals {
                inputs: expected_inputs,
                bytes: 10 + 2048 + 7
            })
        );

        // A walk whose receiver goes away has no totals.
        let (tx, rx) = mpsc::channel(1);
        drop(rx);
        let walk = spawn_walk(
            vec![Source::Path(dir.path().to_owned())],
            KeyPrefix::root(),
            WalkOptions::default(),
            tx,
            CancellationToken::new(),
        );
        assert_eq!(walk.await.unwrap(), None);
    }

    #[test]
    fn shards_parse_and_auto_reads_the_job_runners_index() {
        let none = |_: &str| None;
        assert_eq!(Shard::parse("2/8", none), Ok(Shard::new(2, 8).unwrap()));
        for bad in [
            "8/8", "1/0", "x/3", "-1/3", "1/", "/3", "1", "1/3/4", "+1/3", "auto/0",
        ] {
            assert!(Shard::parse(bad, none).is_err(), "{bad:?} must be refused");
        }
        assert_eq!(Shard::parse("auto/4", none), Err(ShardError::NoIndex(4)));
        let slurm = |v: &str| (v == "SLURM_ARRAY_TASK_ID").then(|| "3".to_owned());
        assert_eq!(Shard::parse("auto/4", slurm), Ok(Shard::new(3, 4).unwrap()));
        let both = |v: &str| match v {
            "JOB_COMPLETION_INDEX" => Some("1".to_owned()),
            "SLURM_ARRAY_TASK_ID" => Some("3".to_owned()),
            _ => None,
        };
        assert_eq!(Shard::parse("auto/4", both), Ok(Shard::new(1, 4).unwrap()));
        let big = |v: &str| (v == "AWS_BATCH_JOB_ARRAY_INDEX").then(|| "4".to_owned());
        assert!(matches!(
            Shard::parse("auto/4", big),
            Err(ShardError::BadIndex {
                var: "AWS_BATCH_JOB_ARRAY_INDEX",
                ..
            })
        ));
    }

    #[test]
    fn shards_partition_like_rclone_hash_filter() {
        // Checked against `rclone lsf -R --files-only --hash-filter K/3` (rclone v1.75.2).
        let of = |p: &str| (0..3).find(|k| Shard::new(*k, 3).unwrap().contains(p));
        assert_eq!(of("x"), Some(2));
        assert_eq!(of("Y"), Some(1));
        assert_eq!(of("c.txt"), Some(0));
        assert_eq!(of("a/B/Y"), Some(2));
        assert_eq!(of("a/B/a b"), Some(0));
        // NFC and NFD spellings of one name are one path.
        assert_eq!(of("a/B/\u{dc}n\u{ef}"), Some(1));
        assert_eq!(of("a/B/U\u{308}ni\u{308}"), Some(1));
        // Go's simple lower-casing: 'İ' is 'i', and a final 'Σ' is 'σ'.
        assert_eq!(of("\u{130}.txt"), of("i.txt"));
        assert_eq!(
            of("\u{39f}\u{394}\u{39f}\u{3a3}/x"),
            of("\u{3bf}\u{3b4}\u{3bf}\u{3c3}/x")
        );
    }

    #[test]
    fn excludes_win_and_name_patterns_match_at_any_depth() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let f = glob_filter(
            &s(&["*.jpg", "docs/**"]),
            &s(&["*.tmp.jpg", "docs/private/*"]),
        )
        .unwrap()
        .unwrap();
        assert!(f("a.jpg"));
        assert!(f("deep/er/b.jpg"));
        assert!(!f("x.tmp.jpg"));
        assert!(f("docs/readme.md"));
        assert!(!f("docs/private/key.pem"));
        assert!(f("docs/private/sub/file.md"), "`*` does not cross '/'");
        assert!(!f("notes.txt"), "includes given: others are dropped");
        let only_ex = glob_filter(&[], &s(&["*.log"])).unwrap().unwrap();
        assert!(only_ex("a.txt") && !only_ex("d/a.log"));
        assert!(glob_filter(&[], &[]).unwrap().is_none());
        assert!(glob_filter(&s(&["a[b"]), &[]).is_err());
    }
}
