//! The fault matrix: every fault kind on every upload request, through every path that feeds
//! the one upload life cycle — the library's file source (`upload_files`) and stream source
//! (`upload_stream`), the CLI binary, and the daemon binary over a real socket — so the file
//! and stream paths cannot drift apart again.
//!
//! A cell is (operation, fault, once or always), run against the embedded endpoint behind the
//! fault proxy, with two single-PUT files and one two-part multipart file under keys of its own.
//! In every cell: each file reported uploaded is stored byte for byte, each file reported failed
//! is absent, nothing is left pending, and the fault fired. A fault that fires once loses
//! nothing; one that always fires fails exactly the files whose requests it hits (where it is
//! an error answer) and nothing else.
//!
//! Stalls need a read timeout shorter than the stall; neither `uploader upload` nor `uploader
//! serve` has a read-timeout flag (the default is 60 s), so stalls run on the library paths
//! only, with `S3Config::read_timeout` at 2 s in those cells.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;
use uploader_core::{
    EmbeddedS3, FileOutcome, KeyPrefix, MimePolicy, ObjectKey, ObjectStore as _, S3Store,
    UploadConfig, UploadItem, Uploader,
};
use uploader_e2e::proxy::{Fault, FaultPlan, Op, Proxy};
use uploader_e2e::{data, describe, json_lines, run, write};

use crate::harness::{Daemon, Target, fast_retries};

const MIB: usize = 1024 * 1024;
/// (name, size, seed): two single PUTs and one multipart upload of two parts (5 MiB + 100 B).
const FILES: [(&str, usize, u64); 3] = [
    ("a.bin", 1000, 501),
    ("b.bin", 70_000, 502),
    ("c.bin", 5 * MIB + 100, 503),
];
const MULTIPART_FILE: &str = "c.bin";
/// The library's read timeout in stall cells, and a stall that outlasts it. Other cells keep
/// the default (60 s): a CompleteMultipartUpload of a debug-built embedded endpoint on a busy
/// machine can take over a second, and a spurious timeout there is another cell's business
/// (`a_complete_whose_client_went_away_is_done_or_still_pending`).
const READ_TIMEOUT: Duration = Duration::from_secs(2);
const STALL: Duration = Duration::from_secs(3);
/// Attempts per request on each path: the library's policy, `--retries 3`, the daemon's
/// default policy (it has no retry flag).
const LIBRARY_ATTEMPTS: u32 = 4;
const CLI_ATTEMPTS: u32 = 4;
const DAEMON_ATTEMPTS: u32 = uploader_core::retry::DEFAULT_MAX_ATTEMPTS;
/// Cells run at once (each has its own proxy, keys and, for the binaries, process).
const CELLS_AT_ONCE: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    LibraryFile,
    LibraryStream,
    Cli,
    Daemon,
}

impl Via {
    fn name(self) -> &'static str {
        match self {
            Via::LibraryFile => "library-file",
            Via::LibraryStream => "library-stream",
            Via::Cli => "cli",
            Via::Daemon => "daemon",
        }
    }

    fn attempts(self) -> u32 {
        match self {
            Via::LibraryFile | Via::LibraryStream => LIBRARY_ATTEMPTS,
            Via::Cli => CLI_ATTEMPTS,
            Via::Daemon => DAEMON_ATTEMPTS,
        }
    }

    /// Whether the path can be given a read timeout shorter than [`STALL`].
    fn times_out(self) -> bool {
        matches!(self, Via::LibraryFile | Via::LibraryStream)
    }
}

#[derive(Debug, Clone, Copy)]
struct Cell {
    op: Op,
    fault: Fault,
    /// The fault fires on every request of `op` (else on the first only).
    always: bool,
}

impl Cell {
    fn name(&self) -> String {
        let fault = match self.fault {
            Fault::InternalError => "500",
            Fault::SlowDown => "slowdown",
            Fault::ResetMidBody => "reset",
            Fault::Stall(_) => "stall",
            Fault::DropResponse => "dropped-answer",
        };
        let when = if self.always { "always" } else { "once" };
        format!("{:?}-{fault}-{when}", self.op)
    }

    fn plan(&self) -> FaultPlan {
        FaultPlan::first(self.op, self.fault, if self.always { 1_000 } else { 1 })
    }

    /// Whether the fault hits requests of file `name`.
    fn hits(&self, name: &str) -> bool {
        (self.op == Op::PutObject) != (name == MULTIPART_FILE)
    }
}

const OPS: [Op; 4] = [
    Op::PutObject,
    Op::UploadPart,
    Op::CreateMultipart,
    Op::CompleteMultipart,
];

/// Every fault once on every operation; error answers and lost answers always on every
/// operation.
fn cells(via: Via) -> Vec<Cell> {
    let mut once = vec![
        Fault::InternalError,
        Fault::SlowDown,
        Fault::ResetMidBody,
        Fault::DropResponse,
    ];
    if via.times_out() {
        once.push(Fault::Stall(STALL));
    }
    let always = [Fault::InternalError, Fault::DropResponse];
    let mut v = Vec::new();
    for op in OPS {
        v.extend(once.iter().map(|&fault| Cell {
            op,
            fault,
            always: false,
        }));
        v.extend(always.iter().map(|&fault| Cell {
            op,
            fault,
            always: true,
        }));
    }
    v
}

/// What a path said about each file (by name): `Ok` uploaded, `Err` failed (or anything else).
type Reported = HashMap<String, Result<(), String>>;

/// One embedded endpoint and the source files, shared by the cells of one test.
struct Env {
    _server: EmbeddedS3,
    _dir: tempfile::TempDir,
    target: Target,
    direct: S3Store,
    src: tempfile::TempDir,
}

impl Env {
    async fn start() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let server = EmbeddedS3::start(dir.path(), "matrix-bucket")
            .await
            .unwrap();
        let target = Target::embedded(&server);
        let direct = target.direct().await;
        let src = tempfile::tempdir().unwrap();
        for (name, len, seed) in FILES {
            write(src.path(), name, &data(len, seed));
        }
        Env {
            _server: server,
            _dir: dir,
            target,
            direct,
            src,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.src.path().join(name)
    }

    async fn uploader_via(&self, proxy: &Proxy, cell: Cell) -> Uploader {
        let timeout = matches!(cell.fault, Fault::Stall(_)).then_some(READ_TIMEOUT);
        let store = self.target.store_via(proxy, timeout).await;
        Uploader::builder()
            .with_store(Arc::new(store))
            .with_config(UploadConfig {
                part_size: 5 << 20,
                multipart_threshold: 5 << 20,
                retry: fast_retries(LIBRARY_ATTEMPTS),
                // Transport faults are under test, not content.
                mime: MimePolicy::new(&["*/*".into()], &[]).unwrap(),
                ..UploadConfig::default()
            })
            .build()
            .unwrap()
    }
}

fn outcome(o: &FileOutcome) -> Result<(), String> {
    match o {
        FileOutcome::Uploaded { .. } => Ok(()),
        other => Err(format!("{other:?}")),
    }
}

async fn library_files(
    env: &Env,
    proxy: &Proxy,
    cell: Cell,
    prefix: &KeyPrefix,
) -> Result<Reported, String> {
    let items = FILES
        .iter()
        .map(|(name, _, _)| UploadItem {
            path: env.path(name),
            key: ObjectKey::derive(prefix, name).unwrap(),
        })
        .collect();
    let report = env
        .uploader_via(proxy, cell)
        .await
        .upload_files(items)
        .wait()
        .await;
    if report.files.len() != FILES.len() {
        return Err(format!("{} files reported", report.files.len()));
    }
    Ok(FILES
        .iter()
        .zip(&report.files)
        .map(|((name, _, _), f)| (name.to_string(), outcome(&f.outcome)))
        .collect())
}

async fn library_streams(
    env: &Env,
    proxy: &Proxy,
    cell: Cell,
    prefix: &KeyPrefix,
) -> Result<Reported, String> {
    let up = env.uploader_via(proxy, cell).await;
    let cancel = CancellationToken::new();
    let mut uploads = Vec::new();
    for (i, (name, len, seed)) in FILES.iter().enumerate() {
        let body = data(*len, *seed);
        let pieces: Vec<Result<Bytes, Infallible>> = body
            .chunks(64 * 1024)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let key = ObjectKey::derive(prefix, name).unwrap();
        let stream = futures::stream::iter(pieces);
        uploads.push(up.upload_stream(i, key, stream, None, &cancel).await);
    }
    let mut reported = Reported::new();
    for (i, upload) in uploads.into_iter().enumerate() {
        let r = upload.wait().await;
        // `size` counts what was read, which stops early when the upload fails.
        let read_all = r.size == FILES[i].1 as u64;
        if r.index != i || (matches!(r.outcome, FileOutcome::Uploaded { .. }) && !read_all) {
            return Err(format!("stream {i}: index {} size {}", r.index, r.size));
        }
        reported.insert(FILES[i].0.to_owned(), outcome(&r.outcome));
    }
    Ok(reported)
}

async fn cli(env: &Env, proxy: &Proxy, prefix: &KeyPrefix) -> Result<Reported, String> {
    let home = tempfile::tempdir().unwrap();
    let mut c = env.target.command(home.path());
    c.args(["upload", "--json", "--retries", "3", "--checksum", "crc32c"])
        .args(["--multipart-threshold", "5MiB", "--part-size", "5MiB"])
        .args(["--allow-mime", "*/*", "--endpoint-url", &proxy.endpoint()])
        .args(FILES.iter().map(|(name, _, _)| env.path(name)))
        .arg(format!("s3://{}/{prefix}", env.target.bucket));
    let out = tokio::task::spawn_blocking(move || run(&mut c))
        .await
        .unwrap();
    let lines = json_lines(&out);
    let reported: Reported = lines
        .iter()
        .filter_map(|l| {
            let name = l["key"].as_str()?.strip_prefix(prefix.as_str())?;
            let status = l["status"].as_str()?;
            let r = if status == "uploaded" {
                Ok(())
            } else {
                Err(l.to_string())
            };
            Some((name.to_owned(), r))
        })
        .collect();
    let want = if reported.values().all(Result::is_ok) {
        0
    } else {
        1
    };
    if out.status.code() != Some(want) {
        return Err(format!("exit code, want {want}: {}", describe(&out)));
    }
    Ok(reported)
}

async fn daemon(env: &Env, proxy: &Proxy, prefix: &KeyPrefix) -> Result<Reported, String> {
    let home = tempfile::tempdir().unwrap();
    let extra = ["--allow-mime", "*/*", "--checksum", "crc32c"];
    let d = Daemon::start_with(&env.target, home.path(), &proxy.endpoint(), &extra);
    let paths: Vec<PathBuf> = FILES.iter().map(|(name, _, _)| env.path(name)).collect();
    let files: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let (status, json) = d.post(&files, prefix.as_str().trim_end_matches('/')).await;
    let results = json["results"].as_array().cloned().unwrap_or_default();
    let reported: Reported = results
        .iter()
        .filter_map(|r| {
            let name = r["key"].as_str()?.strip_prefix(prefix.as_str())?;
            let ok = if r["status"] == "uploaded" {
                Ok(())
            } else {
                Err(r.to_string())
            };
            Some((name.to_owned(), ok))
        })
        .collect();
    let ok = reported.values().filter(|r| r.is_ok()).count();
    let want = match ok {
        n if n == FILES.len() => 201,
        0 => 502,
        _ => 207,
    };
    if status != want {
        let log = std::fs::read_to_string(home.path().join("daemon.log")).unwrap_or_default();
        return Err(format!("status {status}, want {want}: {json}\n{log}"));
    }
    Ok(reported)
}

/// Runs one cell on one path; returns what went wrong (nothing: the cell passed).
async fn run_cell(env: &Env, via: Via, cell: Cell) -> Vec<String> {
    let proxy = Proxy::start(&env.target.endpoint, cell.plan()).await;
    let t0 = Instant::now();
    let prefix = KeyPrefix::new(&format!("m/{}/{}", via.name(), cell.name())).unwrap();
    let reported = match via {
        Via::LibraryFile => library_files(env, &proxy, cell, &prefix).await,
        Via::LibraryStream => library_streams(env, &proxy, cell, &prefix).await,
        Via::Cli => cli(env, &proxy, &prefix).await,
        Via::Daemon => daemon(env, &proxy, &prefix).await,
    };
    if matches!(cell.fault, Fault::Stall(_)) {
        // A stalled request that the proxy forwards late would land now.
        tokio::time::sleep(STALL).await;
    }
    let ctx = format!(
        "{} {} ({:.1} s; requests {:?})",
        via.name(),
        cell.name(),
        t0.elapsed().as_secs_f64(),
        proxy.stats.ops.lock().unwrap()
    );
    let mut bad = match reported {
        Ok(reported) => check(env, via, cell, &prefix, &proxy, &reported).await,
        Err(e) => vec![e],
    };
    let pending = env
        .direct
        .list_multipart_uploads(prefix.as_str())
        .await
        .unwrap();
    if !pending.is_empty() {
        bad.push(format!("pending uploads left: {pending:?}"));
    }
    bad.into_iter().map(|b| format!("{ctx}: {b}")).collect()
}

/// The assertions of one cell, as a list of violations.
async fn check(
    env: &Env,
    via: Via,
    cell: Cell,
    prefix: &KeyPrefix,
    proxy: &Proxy,
    reported: &Reported,
) -> Vec<String> {
    let mut bad = Vec::new();
    let faults = proxy.stats.faults.load(Ordering::Relaxed);
    let seen = proxy.stats.seen(cell.op);
    if faults == 0 {
        bad.push("the fault never fired".to_owned());
    }
    if !cell.always && (faults != 1 || seen < 2) {
        bad.push(format!(
            "{faults} faults, {seen} {:?} requests: not retried",
            cell.op
        ));
    }
    if cell.always && cell.op == Op::PutObject && cell.fault == Fault::InternalError {
        let want = 2 * u64::from(via.attempts());
        if seen != want {
            bad.push(format!(
                "{seen} PUTs for two files, want {want} (bounded attempts)"
            ));
        }
    }
    for (name, len, seed) in FILES {
        let key = format!("{prefix}{name}");
        let stored = env.direct.get(&key).await.unwrap();
        match reported.get(name) {
            None => bad.push(format!("{name}: not reported")),
            Some(Ok(())) => {
                if stored.is_none_or(|b| b != data(len, seed)) {
                    bad.push(format!("{name}: reported uploaded, not stored as sent"));
                }
            }
            Some(Err(why)) => {
                if stored.is_some() {
                    bad.push(format!("{name}: reported failed but stored ({why})"));
                }
            }
        }
        let must_upload = !cell.always || !cell.hits(name);
        let must_fail = cell.always && cell.hits(name) && cell.fault == Fault::InternalError;
        match reported.get(name) {
            Some(Err(why)) if must_upload => bad.push(format!("{name}: failed: {why}")),
            Some(Ok(())) if must_fail => {
                bad.push(format!("{name}: uploaded although every answer was 500"));
            }
            _ => {}
        }
    }
    bad
}

/// Runs `cells` on each path of `vias` (sharing one endpoint) and fails with the list of every
/// violation.
async fn run_matrix(vias: &[Via], cells: impl Fn(Via) -> Vec<Cell>) {
    let env = Env::start().await;
    let t0 = Instant::now();
    // MATRIX_CELLS=<substring> runs only the matching cells (for reproducing one).
    let only = std::env::var("MATRIX_CELLS").unwrap_or_default();
    let runs: Vec<(Via, Cell)> = vias
        .iter()
        .flat_map(|&via| cells(via).into_iter().map(move |c| (via, c)))
        .filter(|(_, c)| c.name().contains(&only))
        .collect();
    let n = runs.len();
    let bad: Vec<String> = futures::stream::iter(runs)
        .map(|(via, cell)| run_cell(&env, via, cell))
        .buffer_unordered(CELLS_AT_ONCE)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .flatten()
        .collect();
    eprintln!("{n} cells in {:.1} s", t0.elapsed().as_secs_f64());
    assert!(n > 0, "no cell ran");
    assert!(
        bad.is_empty(),
        "{} violations in {n} cells:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// Every cell of `via`.
async fn matrix(via: Via) {
    run_matrix(&[via], cells).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_file_source_through_every_fault() {
    matrix(Via::LibraryFile).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_stream_source_through_every_fault() {
    matrix(Via::LibraryStream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_through_every_fault() {
    matrix(Via::Cli).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_through_every_fault() {
    matrix(Via::Daemon).await;
}

const ALL_PATHS: [Via; 4] = [Via::LibraryFile, Via::LibraryStream, Via::Cli, Via::Daemon];

/// Cells that found product bugs (now fixed); they are in the matrix, and each also runs on
/// every path in a test of its own, named for what it guards.
const PUT_ANSWERS_LOST: Cell = Cell {
    op: Op::PutObject,
    fault: Fault::DropResponse,
    always: true,
};
const CREATE_ANSWERS_LOST: Cell = Cell {
    op: Op::CreateMultipart,
    fault: Fault::DropResponse,
    always: true,
};

/// Every PutObject answer is lost after the server stored the object. Found as a bug: when the
/// attempts ran out the file was reported failed although it was stored byte for byte. A
/// failed report must mean "not stored": a PUT that failed after an answer may have been lost
/// is looked at (HEAD: its size and the write's token in the metadata) before it is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_whose_every_answer_was_lost_is_reported_as_stored() {
    run_matrix(&ALL_PATHS, |_| vec![PUT_ANSWERS_LOST]).await;
}

/// Every CreateMultipartUpload answer is lost after the server created the upload. Found as a
/// bug: the file was reported failed and each attempt's upload was left pending (4 on the
/// library paths and the CLI, 5 on the daemon), because lost creations were reaped only after
/// a creation that succeeded. Now they are reaped whenever an answer was lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_create_whose_every_answer_was_lost_leaves_no_upload_pending() {
    run_matrix(&ALL_PATHS, |_| vec![CREATE_ANSWERS_LOST]).await;
}

/// The embedded endpoint (uploader-core/src/embedded.rs over s3s-fs 0.14.1) and a
/// CompleteMultipartUpload whose client goes away mid-way (here: a 5 ms read timeout). Found as
/// a bug: s3s-fs deletes the upload id first and then copies the parts into the object, and the
/// handler's future was dropped when the connection closed, so afterwards the upload was gone
/// (a retry found NoSuchUpload) and no object was written. A server must finish (or not start)
/// a Complete whatever its client does; the Complete now runs in a task of its own. Here: once
/// the client gave up, the object appears or the upload stays pending. (Before the fix the race
/// was lost about two runs in three, so one pass alone proves little; the matrix's stall cells
/// run it too.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_endpoint_finishes_a_complete_whose_client_went_away() {
    use uploader_core::store::PutOptions;
    use uploader_core::{Body, Checksum, ObjectStore, PartNumber};
    let env = Env::start().await;
    let mut cfg = env.target.s3.clone();
    cfg.read_timeout = Some(Duration::from_millis(5));
    let impatient = S3Store::connect(&cfg).await.unwrap();
    let key = ObjectKey::derive(&KeyPrefix::new("impatient").unwrap(), "big.bin").unwrap();
    let alg = uploader_core::ChecksumAlgorithm::Crc32c;
    let opts = PutOptions {
        checksum_algorithm: Some(alg),
        ..PutOptions::default()
    };
    let id = env.direct.create_multipart(&key, &opts).await.unwrap();
    let mut parts = Vec::new();
    for n in 1..=4u64 {
        let chunk = Bytes::from(data(5 * MIB, n));
        let sum = Checksum::of_bytes(alg, &chunk);
        let n = PartNumber::new(n).unwrap();
        let receipt = env
            .direct
            .upload_part(&key, &id, n, Body::Bytes(chunk), Some(&sum))
            .await
            .unwrap();
        parts.push(receipt);
    }
    let gave_up = impatient.complete_multipart(&key, &id, &parts).await;
    assert!(gave_up.is_err(), "the Complete answered within 5 ms");
    // Give the server time to finish what it started.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored = env.direct.head(key.as_str()).await.unwrap();
    let pending = env
        .direct
        .list_multipart_uploads("impatient/")
        .await
        .unwrap();
    assert!(
        stored.as_ref().is_some_and(|m| m.size == 20 * MIB as u64) || !pending.is_empty(),
        "the client went away ({}): no object ({stored:?}) and no pending upload",
        gave_up.unwrap_err()
    );
}
