//! The checksum cache: full-file checksums of local files, keyed by what changes whenever a
//! file's bytes may have changed, so that a sync over an unchanged tree reads no file contents.
//!
//! The key is (device, inode, size, mtime in ns, ctime in ns). The ctime is the point: every
//! write changes it and no tool can set it back, so an in-place edit whose mtime was restored
//! (`touch -r`) still misses the cache. The cache is one text file, written whole to a temporary
//! file and renamed over the old one; a file that is corrupt, truncated or from another version
//! is ignored with a warning (everything is hashed again), never trusted in part. Two runs
//! sharing it lose at worst some of each other's entries (each merges the file as it is on disk
//! before writing). It is always safe to delete.
//!
//! It also records, per store location and key, the ETag of an object version this program
//! wrote or verified and that version's full checksum: a later listing that shows the same
//! ETag needs no HEAD to know the object's checksum (an object rewritten by anyone gets
//! another ETag).
//!
//! The two tables live apart ([`ChecksumCache::load_split`]): the files' checksums in the base
//! file (what is known of a local file holds for every destination: a large file uploaded to a
//! new prefix is not hashed again), the objects' in one file per destination
//! ([`destination_path`]: its store location and key prefix), so a job reads and writes only
//! its destination's objects and its cost follows that destination's history, not every key
//! this user ever wrote (in one file they grew with every key written anywhere, and were read
//! and rewritten whole by every job). Destination files not written for [`STALE_AFTER`] are
//! deleted when another is saved beside them. There is no other eviction: entries of files
//! that no longer exist stay; each costs about 80 bytes.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing::{debug, warn};

use super::{Checksum, ChecksumAlgorithm};

/// First line of a cache file of this format.
const HEADER: &str = "uploader-checksum-cache v1";

/// What identifies one version of a local file's bytes: device, inode, size, and the mtime and
/// ctime in nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i128,
    /// Status-change time, ns since the epoch.
    pub ctime_ns: i128,
}

impl FileIdentity {
    /// The identity of a file from its metadata (`None` where the platform has no inodes).
    pub fn of(meta: &std::fs::Metadata) -> Option<FileIdentity> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt as _;
            let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
            Some(FileIdentity {
                dev: meta.dev(),
                ino: meta.ino(),
                size: meta.size(),
                mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
                ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            None
        }
    }
}

/// Where the cache lives by default: `checksums` in [`crate::env::state_dir`]
/// (`$XDG_STATE_HOME/uploader/checksums`, else `$HOME/.local/state/uploader/checksums`; `None`
/// with neither set).
pub fn default_path() -> Option<PathBuf> {
    Some(crate::env::state_dir()?.join("checksums"))
}

/// The cache file of one destination: `base` with a suffix that hashes the store `location`
/// (endpoint and bucket) and the job's key `prefix`, e.g. `checksums.3fa2c1d4e5f60718`.
pub fn destination_path(base: &Path, location: Option<&str>, prefix: &str) -> PathBuf {
    use md5::Digest as _;
    let mut h = md5::Md5::new();
    h.update(location.unwrap_or("").as_bytes());
    h.update([0]);
    h.update(prefix.as_bytes());
    let digest = h.finalize();
    let mut name = base
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_else(|| "checksums".into());
    name.push(".");
    name.push(hex::encode(&digest[..8]));
    base.with_file_name(name)
}

/// How long the cache of a destination that is not written again is kept (90 days).
pub const STALE_AFTER: std::time::Duration = std::time::Duration::from_secs(90 * 24 * 3600);

/// Deletes the destination caches beside `path` (same base name, a 16-hex-digit suffix) that
/// were last written more than [`STALE_AFTER`] ago. Nothing else in the directory is touched.
fn prune_stale(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let Some((base, _)) = name.rsplit_once('.') else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    }) else {
        return;
    };
    for e in entries.flatten() {
        let n = e.file_name();
        let Some(suffix) = n
            .to_str()
            .and_then(|n| n.strip_prefix(base)?.strip_prefix('.'))
        else {
            continue;
        };
        if suffix.len() != 16 || !suffix.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let old = e
            .metadata()
            .ok()
            .filter(std::fs::Metadata::is_file)
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_AFTER);
        if old {
            debug!(path = %e.path().display(), "deleting a stale checksum cache");
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A stored object's version (its ETag, quotes trimmed) and that version's full checksum, by
/// (location, key).
type Objects = HashMap<(String, String), (String, Checksum)>;

/// What the cache holds.
#[derive(Debug, Default)]
struct Entries {
    files: HashMap<(FileIdentity, ChecksumAlgorithm), Checksum>,
    objects: Objects,
}

impl Entries {
    fn is_empty(&self) -> bool {
        self.files.is_empty() && self.objects.is_empty()
    }

    fn extend(&mut self, other: Entries) {
        self.files.extend(other.files);
        self.objects.extend(other.objects);
    }
}

/// Full-file checksums by [`FileIdentity`], and the checksums of object versions this program
/// wrote or verified (by location, key and ETag), loaded from and saved to one file, or the
/// objects to a file of their own ([`ChecksumCache::load_split`]).
#[derive(Debug)]
pub struct ChecksumCache {
    path: PathBuf,
    /// Where the objects' table lives, when not in `path`.
    objects_path: Option<PathBuf>,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    entries: Entries,
    /// Entries added since the load.
    added: Entries,
}

impl ChecksumCache {
    /// Loads the cache at `path` (blocking). A missing file is an empty cache; an unreadable,
    /// corrupt or foreign one is ignored with a warning.
    pub fn load(path: impl Into<PathBuf>) -> ChecksumCache {
        let path = path.into();
        let entries = read_entries(&path);
        debug!(path = %path.display(), files = entries.files.len(), objects = entries.objects.len(), "checksum cache loaded");
        ChecksumCache {
            path,
            objects_path: None,
            state: Mutex::new(State {
                entries,
                added: Entries::default(),
            }),
        }
    }

    /// Loads the files' table from `files` and the objects' from `objects` (blocking; each as
    /// [`ChecksumCache::load`] does; objects found in `files`, or files in `objects`, are left
    /// out, so an older cache that held both sheds its objects at the next save).
    pub fn load_split(files: impl Into<PathBuf>, objects: impl Into<PathBuf>) -> ChecksumCache {
        let (path, objects_path) = (files.into(), objects.into());
        let entries = Entries {
            files: read_entries(&path).files,
            objects: read_entries(&objects_path).objects,
        };
        debug!(files_path = %path.display(), objects_path = %objects_path.display(), files = entries.files.len(), objects = entries.objects.len(), "checksum cache loaded");
        ChecksumCache {
            path,
            objects_path: Some(objects_path),
            state: Mutex::new(State {
                entries,
                added: Entries::default(),
            }),
        }
    }

    /// Where the cache lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cached checksum of this version of a file, in `alg`.
    pub fn get(&self, id: &FileIdentity, alg: ChecksumAlgorithm) -> Option<Checksum> {
        let s = self.state.lock().unwrap();
        s.entries.files.get(&(*id, alg)).cloned()
    }

    /// Records the checksum of this version of a file.
    pub fn insert(&self, id: FileIdentity, checksum: Checksum) {
        let mut s = self.state.lock().unwrap();
        let k = (id, checksum.algorithm());
        if s.entries.files.get(&k) != Some(&checksum) {
            s.entries.files.insert(k, checksum.clone());
            s.added.files.insert(k, checksum);
        }
    }

    /// The full checksum recorded for the object at `key` of the store at `location`, if the
    /// version recorded is the one with `etag`.
    pub fn object(&self, location: &str, key: &str, etag: &str) -> Option<Checksum> {
        let s = self.state.lock().unwrap();
        let (recorded, sum) = s
            .entries
            .objects
            .get(&(location.to_owned(), key.to_owned()))?;
        (recorded == etag.trim_matches('"')).then(|| sum.clone())
    }

    /// Records that the version `etag` of the object at `key` of the store at `location` has
    /// the full checksum `checksum` (it was written or verified with it).
    pub fn insert_object(&self, location: &str, key: &str, etag: &str, checksum: Checksum) {
        let etag = etag.trim_matches('"');
        if location.contains(['\t', '\n'])
            || key.contains(['\t', '\n'])
            || etag.is_empty()
            || etag.contains(['\t', '\n'])
        {
            return;
        }
        let k = (location.to_owned(), key.to_owned());
        let v = (etag.to_owned(), checksum);
        let mut s = self.state.lock().unwrap();
        if s.entries.objects.get(&k) != Some(&v) {
            s.entries.objects.insert(k.clone(), v.clone());
            s.added.objects.insert(k, v);
        }
    }

    /// Writes the cache back (blocking) if anything was added: the file as it is now on disk,
    /// merged with this run's entries, to a temporary file renamed over it. Failures are
    /// warnings: the cache only saves work.
    pub fn save(&self) {
        let added = std::mem::take(&mut self.state.lock().unwrap().added);
        let Some(objects_path) = &self.objects_path else {
            if !added.is_empty() {
                merge_into(&self.path, added, |_| {});
            }
            return;
        };
        if !added.files.is_empty() {
            let files = Entries {
                files: added.files,
                objects: Objects::default(),
            };
            merge_into(&self.path, files, |on_disk| on_disk.objects.clear());
        }
        if !added.objects.is_empty() {
            let objects = Entries {
                files: HashMap::new(),
                objects: added.objects,
            };
            merge_into(objects_path, objects, |on_disk| on_disk.files.clear());
            prune_stale(objects_path);
        }
    }
}

/// Writes `added` over the cache file at `path`, merged with what is on disk now (after `keep`
/// dropped what does not belong in that file). A failure is a warning: the cache only saves
/// work.
fn merge_into(path: &Path, added: Entries, keep: impl FnOnce(&mut Entries)) {
    let mut all = read_entries(path);
    keep(&mut all);
    all.extend(added);
    if let Err(e) = write_entries(path, &all) {
        warn!(path = %path.display(), error = %e, "could not save the checksum cache (files will be hashed again next time)");
    }
}

fn read_entries(path: &Path) -> Entries {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Entries::default(),
        Err(e) => {
            warn!(path = %path.display(), error = %e, "ignoring the unreadable checksum cache");
            return Entries::default();
        }
    };
    match parse(&text) {
        Some(entries) => entries,
        None => {
            warn!(path = %path.display(), "ignoring the checksum cache: it is corrupt, truncated or from another version (files are hashed again)");
            Entries::default()
        }
    }
}

/// A checksum from its algorithm's name and base64, if both are well-formed.
fn checksum(alg: &str, value: &str) -> Option<Checksum> {
    Checksum::from_base64(alg.parse().ok()?, value)
}

/// The entries of a whole, well-formed cache file; `None` for anything else. A file line is
/// `dev ino size mtime ctime alg base64`; an object line `o<TAB>location<TAB>key<TAB>etag<TAB>alg<TAB>base64`.
fn parse(text: &str) -> Option<Entries> {
    // Every line ends with '\n': a file cut short is not trusted, not even in part.
    let body = text.strip_suffix('\n')?;
    let mut lines = body.split('\n');
    if lines.next()? != HEADER {
        return None;
    }
    let mut out = Entries::default();
    for line in lines {
        if let Some(rest) = line.strip_prefix("o\t") {
            let f: Vec<&str> = rest.split('\t').collect();
            let [location, key, etag, alg, value] = f[..] else {
                return None;
            };
            if etag.is_empty() {
                return None;
            }
            let k = (location.to_owned(), key.to_owned());
            out.objects
                .insert(k, (etag.to_owned(), checksum(alg, value)?));
            continue;
        }
        let f: Vec<&str> = line.split(' ').collect();
        let [dev, ino, size, mtime, ctime, alg, value] = f[..] else {
            return None;
        };
        let id = FileIdentity {
            dev: dev.parse().ok()?,
            ino: ino.parse().ok()?,
            size: size.parse().ok()?,
            mtime_ns: mtime.parse().ok()?,
            ctime_ns: ctime.parse().ok()?,
        };
        let c = checksum(alg, value)?;
        out.files.insert((id, c.algorithm()), c);
    }
    Some(out)
}

fn write_entries(path: &Path, entries: &Entries) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d)?;
    }
    let mut tmp = tempfile_in(dir.unwrap_or(Path::new(".")))?;
    let mut w = std::io::BufWriter::new(tmp.as_file_mut());
    writeln!(w, "{HEADER}")?;
    for ((id, alg), c) in &entries.files {
        writeln!(
            w,
            "{} {} {} {} {} {alg} {}",
            id.dev,
            id.ino,
            id.size,
            id.mtime_ns,
            id.ctime_ns,
            c.base64()
        )?;
    }
    for ((location, key), (etag, c)) in &entries.objects {
        let alg = c.algorithm();
        writeln!(w, "o\t{location}\t{key}\t{etag}\t{alg}\t{}", c.base64())?;
    }
    w.flush()?;
    drop(w);
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

fn tempfile_in(dir: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    tempfile::Builder::new()
        .prefix(".checksums-")
        .tempfile_in(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;

    fn id(n: u64) -> FileIdentity {
        FileIdentity {
            dev: 1,
            ino: n,
            size: 10,
            mtime_ns: 1_700_000_000_123_456_789,
            ctime_ns: 1_700_000_000_987_654_321,
        }
    }

    #[test]
    fn round_trips_and_merges_concurrent_writers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state/checksums");
        let c = Checksum::of_bytes(ChecksumAlgorithm::Crc32c, b"abc");
        let m = Checksum::of_bytes(ChecksumAlgorithm::Md5, b"abc");
        let a = ChecksumCache::load(&p);
        let b = ChecksumCache::load(&p);
        a.insert(id(1), c.clone());
        a.insert(id(1), m.clone());
        b.insert(id(2), c.clone());
        a.save();
        b.save();
        let again = ChecksumCache::load(&p);
        assert_eq!(
            again.get(&id(1), ChecksumAlgorithm::Crc32c),
            Some(c.clone())
        );
        assert_eq!(again.get(&id(1), ChecksumAlgorithm::Md5), Some(m));
        assert_eq!(again.get(&id(2), ChecksumAlgorithm::Crc32c), Some(c));
        // Another ctime (an in-place write, mtime restored) is another file version.
        let mut touched = id(1);
        touched.ctime_ns += 1;
        assert_eq!(again.get(&touched, ChecksumAlgorithm::Crc32c), None);
    }

    #[test]
    fn object_versions_are_known_by_their_etag_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c");
        let c = Checksum::of_bytes(ChecksumAlgorithm::Crc32c, b"abc");
        let a = ChecksumCache::load(&p);
        a.insert_object("http://h:1/b", "k with space", "\"e1\"", c.clone());
        a.save();
        let again = ChecksumCache::load(&p);
        assert_eq!(
            again.object("http://h:1/b", "k with space", "e1"),
            Some(c.clone())
        );
        assert_eq!(again.object("http://h:1/b", "k with space", "\"e2\""), None);
        assert_eq!(again.object("http://h:2/b", "k with space", "e1"), None);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            parse(&text.replace("\te1\t", "\t\t")).is_none(),
            "an empty ETag is not trusted"
        );
    }

    #[test]
    fn corrupt_truncated_or_foreign_files_are_ignored_whole() {
        let good = format!("{HEADER}\n1 2 3 4 5 crc32c {}\n", B64.encode([1, 2, 3, 4]));
        assert_eq!(parse(&good).unwrap().files.len(), 1);
        for bad in [
            good.trim_end().to_owned(),               // cut before the last newline
            good[..good.len() - 4].to_owned() + "\n", // base64 cut short
            good.replace("v1", "v2"),
            good.replace("crc32c", "sha1"),
            good.replace(" 3 ", " x "),
            format!("{good}garbage\n"),
            String::new(),
        ] {
            assert!(parse(&bad).is_none(), "{bad:?} must not be trusted");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c");
        std::fs::write(&p, "\u{0}\u{1}not a cache").unwrap();
        let c = ChecksumCache::load(&p);
        assert_eq!(c.get(&id(1), ChecksumAlgorithm::Crc32c), None);
        // Saving replaces the corrupt file with a good one.
        c.insert(id(1), Checksum::of_bytes(ChecksumAlgorithm::Crc32c, b"x"));
        c.save();
        assert!(
            ChecksumCache::load(&p)
                .get(&id(1), ChecksumAlgorithm::Crc32c)
                .is_some()
        );
    }

    #[test]
    fn files_are_shared_objects_are_per_destination_and_stale_ones_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("checksums");
        let a = destination_path(&base, Some("http://h:1/bucket"), "p/");
        let b = destination_path(&base, Some("http://h:1/bucket"), "q/");
        let c = destination_path(&base, Some("http://h:2/bucket"), "p/");
        assert_eq!(a, destination_path(&base, Some("http://h:1/bucket"), "p/"));
        assert!(a != b && a != c && b != c);
        let name = a.file_name().unwrap().to_str().unwrap().to_owned();
        assert!(name.starts_with("checksums.") && name.len() == "checksums.".len() + 16);
        assert_eq!(a.parent(), Some(dir.path()));

        // A file's checksum is known to every destination; an object's only to its own.
        let sum = Checksum::of_bytes(ChecksumAlgorithm::Crc32c, b"x");
        let ca = ChecksumCache::load_split(&base, &a);
        ca.insert(id(1), sum.clone());
        ca.insert_object("http://h:1/bucket", "p/k", "etag-1", sum.clone());
        ca.save();
        let again = ChecksumCache::load_split(&base, &a);
        assert_eq!(
            again.get(&id(1), ChecksumAlgorithm::Crc32c),
            Some(sum.clone())
        );
        assert_eq!(
            again.object("http://h:1/bucket", "p/k", "etag-1"),
            Some(sum.clone())
        );
        let other = ChecksumCache::load_split(&base, &b);
        assert_eq!(
            other.get(&id(1), ChecksumAlgorithm::Crc32c),
            Some(sum.clone()),
            "files are shared"
        );
        assert_eq!(other.object("http://h:1/bucket", "p/k", "etag-1"), None);
        // The base holds no object, the destination file no file.
        assert!(read_entries(&base).objects.is_empty());
        assert!(read_entries(&a).files.is_empty());

        // An older cache with both tables in the base sheds its objects at the next save.
        let legacy = dir.path().join("legacy");
        let old = ChecksumCache::load(&legacy);
        old.insert(id(3), sum.clone());
        old.insert_object("http://h:1/bucket", "old", "etag-0", sum.clone());
        old.save();
        let split = ChecksumCache::load_split(&legacy, destination_path(&legacy, None, ""));
        assert_eq!(split.object("http://h:1/bucket", "old", "etag-0"), None);
        split.insert(id(4), sum.clone());
        split.save();
        let left = read_entries(&legacy);
        assert!(left.objects.is_empty() && left.files.len() == 2, "{left:?}");

        // A destination file not written for over 90 days goes when another is saved; fresh
        // ones, and files that are not destination caches, stay.
        let stale = destination_path(&base, Some("http://old/bucket"), "");
        let unrelated = dir.path().join("checksums.not-a-hash");
        for p in [&stale, &unrelated, &base] {
            let f = std::fs::File::options()
                .create(true)
                .append(true)
                .open(p)
                .unwrap();
            f.set_modified(std::time::SystemTime::now() - STALE_AFTER * 2)
                .unwrap();
        }
        let cb = ChecksumCache::load_split(&base, &b);
        cb.insert_object("http://h:1/bucket", "q/k", "etag-2", sum);
        cb.save();
        assert!(!stale.exists(), "the stale destination cache is deleted");
        assert!(a.exists() && b.exists());
        assert!(
            unrelated.exists() && base.exists(),
            "only destination caches are pruned"
        );
    }
}
