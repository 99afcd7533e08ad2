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
}

impl std::fmt::Debug for WalkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WalkOptions")
            .field("follow_symlinks", &self.follow_symlinks)
            .field("filter", &self.filter.is_some())
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

/// Walks the sources in a blocking thread, sending inputs on `tx` until done or cancelled;
/// `tx` is dropped when the walk ends. With [`crate::Uploader::upload_inputs`] this is
/// [`crate::Uploader::upload_sources`], for callers that want to see the inputs go by (the
/// CLI learns from the channel closing that the walk is complete). Must be called within a
/// Tokio runtime.
pub fn spawn_walk(
    sources: Vec<Source>,
    prefix: KeyPrefix,
    opts: WalkOptions,
    tx: mpsc::Sender<Input>,
    cancel: CancellationToken,
) {
    tokio::task::spawn_blocking(move || {
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
                            return;
                        }
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
            };
            let go_on = match paths {
                None => {
                    let root = w.root.clone();
                    w.dir(&root)
                }
                Some(paths) => paths.iter().all(|rel| w.listed(rel)),
            };
            if !go_on {
                return;
            }
        }
    });
}

struct Walker {
    root: PathBuf,
    root_canon: PathBuf,
    prefix: KeyPrefix,
    opts: WalkOptions,
    tx: mpsc::Sender<Input>,
    cancel: CancellationToken,
    visited: HashSet<(u64, u64)>,
}

impl Walker {
    /// Sends one input; false when the receiver is gone or the job cancelled.
    fn send(&self, input: Input) -> bool {
        !self.cancel.is_cancelled() && self.tx.blocking_send(input).is_ok()
    }

    fn fail(&self, path: &Path, code: ErrorCode, message: String) -> bool {
        self.send(Input::Fail {
            source: path.display().to_string(),
            key: None,
            error: FileError::new(code, message, false),
        })
    }

    fn skip(&self, path: &Path, reason: &str) -> bool {
        self.send(Input::Skip {
            source: path.display().to_string(),
            key: None,
            reason: reason.into(),
        })
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
                Ok(m) if m.is_file() => self.file(path),
                _ => self.skip(path, "symbolic link to a special file"),
            };
        }
        if ft.is_dir() {
            return self.dir(path);
        }
        if !ft.is_file() {
            return self.skip(path, "not a regular file (FIFO, socket or device)");
        }
        self.file(path)
    }

    fn file(&self, path: &Path) -> bool {
        let rel = path.strip_prefix(&self.root).unwrap_or(path);
        if rel.as_os_str().is_empty() {
            return self.fail(path, ErrorCode::InvalidKey, "the path has no name".into());
        }
        if let Some(filter) = &self.opts.filter {
            // Filters apply to walked trees and lists alike.
            let rel_str = rel.to_string_lossy().replace('\\', "/");
            if !filter(&rel_str) {
                return true;
            }
        }
        match ObjectKey::from_relative_path(&self.prefix, rel) {
            Ok(key) => self.send(Input::File {
                path: path.to_owned(),
                key,
            }),
            Err(e) => self.fail(path, ErrorCode::InvalidKey, format!("{e} [{}]", e.rule())),
        }
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
