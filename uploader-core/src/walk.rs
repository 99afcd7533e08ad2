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
    File { path: PathBuf, key: ObjectKey },
    /// A file that is reported without being uploaded.
    Skip {
        source: String,
        key: Option<String>,
        reason: String,
    },
    /// A file that cannot be uploaded.
    Fail {
        source: String,
        key: Option<String>,
        error: FileError,
    },
}

/// Walks `root` in a blocking thread, sending inputs on `tx` until done or cancelled.
pub(crate) fn spawn_walk(
    root: PathBuf,
    prefix: KeyPrefix,
    opts: WalkOptions,
    tx: mpsc::Sender<Input>,
    cancel: CancellationToken,
) {
    tokio::task::spawn_blocking(move || {
        let mut w = Walker {
            root_canon: std::fs::canonicalize(&root).unwrap_or_else(|_| root.clone()),
            root,
            prefix,
            opts,
            tx,
            cancel,
            visited: HashSet::new(),
        };
        let root = w.root.clone();
        w.dir(&root);
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
        if let Some(filter) = &self.opts.filter {
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
