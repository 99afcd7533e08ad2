//! The daemon as N stateless replicas (issue 13): two `uploader serve` processes writing to one
//! bucket of one S3 endpoint (the embedded one, in this process), behind HAProxy; several
//! clients post batches through HAProxy while one replica is sent SIGTERM.
//!
//! What must hold: every answer a client got is true of the bucket, every batch ends up stored
//! (clients retry what got no answer from a replica), nothing is left pending, and the replica
//! drains and exits 0 within its grace period while the other one keeps serving.
//!
//! Keys are unique per *attempt*: `c<client>/b<batch>/a<attempt>/<file>`, and a file's bytes
//! are a function of its key (the key itself, then pseudo-random bytes). So a retry never
//! writes a key an earlier attempt used, and every check is unambiguous: a file a replica
//! reported failed must be absent (no later attempt can have written it), a file reported
//! uploaded must hold exactly its bytes, and an attempt that got no replica's answer (a
//! connection error, an empty response, HAProxy's own 502/503/504) may have stored its files
//! or not — but only whole and exact, which the sweep of the whole bucket checks. (Retrying
//! under the *same* keys would make "reported failed" indistinguishable from "failed, then
//! stored by the retry".) HAProxy's own retries re-send an attempt unchanged, so they write
//! the same bytes to the same keys.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt as _;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use uploader_core::{EmbeddedS3, ObjectStore as _, S3Store};
use uploader_e2e::data;
use uploader_e2e::haproxy::{Haproxy, PIN, SERVED_BY, ServerStat, haproxy_bin};

use crate::harness::{Daemon, Target};

const MIB: usize = 1 << 20;
/// Concurrent clients.
const CLIENTS: usize = 4;
/// Clients start new batches for this long.
const LOAD: Duration = Duration::from_secs(5);
/// The slow batch pinned to replica `a` starts this long into the load; SIGTERM follows once
/// its multipart upload is open.
const PINNED_AFTER: Duration = Duration::from_millis(1200);
/// The replicas' `--shutdown-grace`.
const GRACE: Duration = Duration::from_secs(6);
/// Attempts per batch before the test gives up on it.
const MAX_ATTEMPTS: u32 = 12;
/// How long the test waits for a step of the SIGTERM sequence to show (beyond the grace period
/// for an exit).
const SETTLE: Duration = Duration::from_secs(5);
/// An attempt with no answer at all after this long is a hang: the test fails.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// Large files: over the replicas' 5 MiB threshold, so multipart (parts of 5 MiB and 1 MiB).
const LARGE: usize = 6 * MIB;
/// Every client's every fourth batch carries a large file.
const LARGE_EVERY: usize = 4;
const BOUNDARY: &str = "replica-test-boundary";

type ReqBody = BoxBody<Bytes, Infallible>;
type Http = Client<HttpConnector, ReqBody>;

/// A file of a batch: its key (the attempt's prefix and its name) and its size.
#[derive(Debug, Clone)]
struct File {
    key: String,
    size: usize,
}

impl File {
    fn name(&self) -> &str {
        self.key.rsplit('/').next().unwrap()
    }
}

/// The bytes shared by every large file after its key (one allocation, sliced).
fn large_base() -> &'static Bytes {
    static BASE: OnceLock<Bytes> = OnceLock::new();
    BASE.get_or_init(|| Bytes::from(data(LARGE, 0x5EED)))
}

fn seed(key: &str) -> u64 {
    // FNV-1a: stable across runs and processes.
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// A file's bytes, a function of its key: the key and a newline, then pseudo-random bytes
/// (large files share theirs).
fn content(f: &File) -> [Bytes; 2] {
    let head = Bytes::from(format!("{}\n", f.key));
    let rest = if f.size >= MIB {
        large_base().slice(head.len()..f.size)
    } else {
        Bytes::from(data(f.size - head.len(), seed(&f.key)))
    };
    [head, rest]
}

/// The files of client `c`'s batch `b` under `prefix`: three small ones (64 B – 32 KiB) and,
/// every [`LARGE_EVERY`] batches, a large one.
fn batch_files(c: usize, b: usize, prefix: &str) -> Vec<File> {
    let mut files: Vec<File> = (0..3)
        .map(|i| File {
            key: format!("{prefix}/f{i}.bin"),
            size: 64 + (seed(&format!("{c}/{b}/{i}")) % (32 << 10)) as usize,
        })
        .collect();
    if (b + c).is_multiple_of(LARGE_EVERY) {
        files.push(File {
            key: format!("{prefix}/large.bin"),
            size: LARGE,
        });
    }
    files
}

/// A multipart/form-data body with one `file` part per file; and its length.
fn form(files: &[File]) -> (Vec<Bytes>, u64) {
    let mut chunks = Vec::new();
    for f in files {
        chunks.push(Bytes::from(format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{}\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n",
            f.name()
        )));
        chunks.extend(content(f));
        chunks.push(Bytes::from_static(b"\r\n"));
    }
    chunks.push(Bytes::from(format!("--{BOUNDARY}--\r\n")));
    let len = chunks.iter().map(|c| c.len() as u64).sum();
    (chunks, len)
}

fn body_of(chunks: Vec<Bytes>) -> ReqBody {
    let frames = chunks.into_iter().map(|c| Ok(Frame::data(c)));
    BodyExt::boxed(StreamBody::new(futures::stream::iter(frames)))
}

/// What an attempt got back.
#[derive(Debug, Clone)]
enum Outcome {
    /// A replica's answer (it carries the daemon's `x-request-id`).
    Replica {
        status: u16,
        served_by: String,
        body: Value,
    },
    /// HAProxy's own error page: no replica's answer reached it.
    Balancer { status: u16 },
    /// The connection failed or closed without a whole answer.
    Transport(String),
}

impl Outcome {
    fn stored_all(&self) -> bool {
        matches!(self, Outcome::Replica { status: 201, .. })
    }
}

/// One POST of one batch.
#[derive(Debug, Clone)]
struct Attempt {
    client: usize,
    batch: usize,
    files: Vec<File>,
    started: Instant,
    ended: Instant,
    outcome: Outcome,
}

/// POSTs `body` to `url` under `prefix`; `pin` names the replica to send it to.
async fn send(
    http: &Http,
    url: &str,
    prefix: &str,
    body: ReqBody,
    len: u64,
    pin: Option<&str>,
) -> Outcome {
    let mut req = hyper::Request::post(format!("{url}/v1/uploads?prefix={prefix}"))
        .header(
            "content-type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .header("content-length", len);
    if let Some(p) = pin {
        req = req.header(PIN, p);
    }
    let req = req.body(body).unwrap();
    let exchange = async {
        let resp = http.request(req).await.map_err(|e| format!("{e:?}"))?;
        let (parts, body) = resp.into_parts();
        let bytes = body
            .collect()
            .await
            .map_err(|e| format!("reading the answer: {e:?}"))?
            .to_bytes();
        Ok::<_, String>((parts, bytes))
    };
    let (parts, bytes) = match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
        Err(_) => panic!("POST {prefix}: no answer nor error within {REQUEST_TIMEOUT:?}"),
        Ok(Err(e)) => return Outcome::Transport(e),
        Ok(Ok(x)) => x,
    };
    let status = parts.status.as_u16();
    if !parts.headers.contains_key("x-request-id") {
        return Outcome::Balancer { status };
    }
    let served_by = parts
        .headers
        .get(SERVED_BY)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("POST {prefix}: a replica's answer without {SERVED_BY}"))
        .to_owned();
    let body = serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        panic!(
            "POST {prefix}: {status} with a body that is not JSON ({e}): {}",
            String::from_utf8_lossy(&bytes)
        )
    });
    Outcome::Replica {
        status,
        served_by,
        body,
    }
}

/// Whether an attempt that did not store its whole batch is worth another one (not for an
/// answer no retry can change: a refusal of the request or of a file).
fn retryable(a: &Attempt) -> bool {
    match &a.outcome {
        Outcome::Transport(_) => true,
        Outcome::Balancer { status } => matches!(status, 502..=504),
        Outcome::Replica { status: 503, .. } => true,
        Outcome::Replica {
            status: 207 | 502,
            body,
            ..
        } => body["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["status"] != "uploaded")
            .all(|r| r["error"]["retryable"] == true),
        Outcome::Replica { .. } => false,
    }
}

/// Backoff before attempt `n + 1`: short, because the other replica is there to take it.
fn backoff(n: u32) -> Duration {
    Duration::from_millis((50 * u64::from(n + 1)).min(300))
}

/// One client: batches one after another until `until`, each retried (under new keys) until a
/// replica answers 201.
async fn client(c: usize, http: Http, url: String, until: Instant, log: Arc<Mutex<Vec<Attempt>>>) {
    let mut b = 0;
    while Instant::now() < until {
        for n in 0.. {
            let prefix = format!("c{c}/b{b}/a{n}");
            let files = batch_files(c, b, &prefix);
            let (chunks, len) = form(&files);
            let started = Instant::now();
            let outcome = send(&http, &url, &prefix, body_of(chunks), len, None).await;
            let a = Attempt {
                client: c,
                batch: b,
                files,
                started,
                ended: Instant::now(),
                outcome,
            };
            let done = a.outcome.stored_all();
            let again = !done && retryable(&a);
            log.lock().unwrap().push(a.clone());
            if done {
                break;
            }
            assert!(
                again,
                "{prefix}: an answer no retry can change: {:?}",
                a.outcome
            );
            assert!(
                n + 1 < MAX_ATTEMPTS,
                "{prefix}: batch not stored after {MAX_ATTEMPTS} attempts; last: {:?}",
                a.outcome
            );
            tokio::time::sleep(backoff(n)).await;
        }
        b += 1;
    }
}

/// Every object in the bucket, by key.
async fn list_all(store: &S3Store, bucket: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = store
            .client()
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .expect("ListObjectsV2");
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        token = out.next_continuation_token().map(str::to_owned);
        if token.is_none() {
            return keys;
        }
    }
}

/// Polls `cond` every 20 ms for up to `within`.
async fn wait_for(what: &str, within: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !cond().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The pinned attempt's `client`: not one of the load clients.
const PINNED: usize = usize::MAX;

/// The replicas' `--shutdown-grace` flag and the rest of their flags (beyond the harness's 5 MiB
/// threshold and parts): any content type, CRC32C without a start-up probe.
fn replica_flags(grace: &str) -> [&str; 6] {
    [
        "--allow-mime",
        "*/*",
        "--checksum",
        "crc32c",
        "--shutdown-grace",
        grace,
    ]
}

/// What became of replica `a` after its SIGTERM.
struct Drain {
    term_at: Instant,
    exited_at: Instant,
    status: std::process::ExitStatus,
    /// Its `uploader_bytes_total` just before the signal.
    bytes_before: f64,
    /// The batch that was streaming into it (a multipart upload open) at the signal.
    pinned: Attempt,
}

/// Streams one large file to replica `a` (pinned through HAProxy), stops partway once its
/// multipart upload is open, sends SIGTERM, waits until `a` refuses new connections, sends the
/// rest, and waits for `a` to exit.
async fn sigterm_mid_multipart(a: &mut Daemon, http: &Http, url: &str, store: &S3Store) -> Drain {
    let files = vec![File {
        key: "pinned/a0/large.bin".into(),
        size: LARGE,
    }];
    let (chunks, len) = form(&files);
    let whole: Bytes = chunks.concat().into();
    let cut = 5 * MIB + MIB / 4;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(2);
    let body = BodyExt::boxed(StreamBody::new(futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|b| (Ok(Frame::data(b)), rx)) },
    )));
    let started = Instant::now();
    let request = {
        let (http, url) = (http.clone(), url.to_owned());
        tokio::spawn(async move { send(&http, &url, "pinned/a0", body, len, Some("a")).await })
    };
    tx.send(whole.slice(..cut)).await.unwrap();
    let open = async || {
        let pending = store.list_multipart_uploads("pinned/").await.unwrap();
        !pending.is_empty()
    };
    wait_for("the pinned multipart upload opens", SETTLE, open).await;

    let bytes_before = a.counter("uploader_bytes_total").await;
    let term_at = Instant::now();
    a.terminate();
    let port = a.port;
    let refused = async || {
        let conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
        conn.is_err()
    };
    wait_for("replica a stops accepting connections", SETTLE, refused).await;
    tx.send(whole.slice(cut..)).await.unwrap();
    drop(tx);
    let outcome = request.await.unwrap();
    let ended = Instant::now();
    let status = a.wait_exit(GRACE + SETTLE).await;
    Drain {
        term_at,
        exited_at: Instant::now(),
        status,
        bytes_before,
        pinned: Attempt {
            client: PINNED,
            batch: 0,
            files,
            started,
            ended,
            outcome,
        },
    }
}

/// Two replicas behind HAProxy, one SIGTERMed mid-load (while a multipart upload it serves is
/// open): every answer is true of the bucket, every batch is stored, nothing stays pending,
/// the replica exits 0 within its grace period and the other keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_behind_haproxy_survive_a_sigterm() {
    // Before anything starts: without HAProxy, fail at once and say how to install it.
    haproxy_bin();
    let store_dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(store_dir.path(), "replicas")
        .await
        .unwrap();
    let t = Target::embedded(&server);
    let grace = format!("{}s", GRACE.as_secs());
    let flags = replica_flags(&grace);
    let (home_a, home_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // These helpers block while the daemons check the bucket on the endpoint this runtime
    // serves: keep them off its workers.
    let start = |home: &std::path::Path| {
        tokio::task::block_in_place(|| Daemon::start_with(&t, home, &t.endpoint, &flags))
    };
    let (mut a, mut b) = (start(home_a.path()), start(home_b.path()));
    let lb = tokio::task::block_in_place(|| Haproxy::start(&[("a", a.port), ("b", b.port)]));
    let http: Http = Client::builder(TokioExecutor::new()).build_http();
    let direct = t.direct().await;

    let log = Arc::new(Mutex::new(Vec::<Attempt>::new()));
    let load_start = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (http, url, log) = (http.clone(), lb.url(), Arc::clone(&log));
            tokio::spawn(client(c, http, url, load_start + LOAD, log))
        })
        .collect();
    tokio::time::sleep(PINNED_AFTER).await;
    let drain = sigterm_mid_multipart(&mut a, &http, &lb.url(), &direct).await;
    for c in clients {
        c.await.expect("a client panicked");
    }
    let lb_stats = tokio::task::block_in_place(|| lb.stats());
    b.terminate();
    let b_status = b.wait_exit(GRACE + SETTLE).await;

    // The replicas drained: exit 0, a within its grace period, with the multipart upload that
    // was streaming in at the SIGTERM completed by a itself.
    let drained_in = drain.exited_at - drain.term_at;
    assert!(
        drain.status.success(),
        "a exited with {}; log:\n{}",
        drain.status,
        a.log()
    );
    assert!(
        b_status.success(),
        "b exited with {b_status}; log:\n{}",
        b.log()
    );
    assert!(
        drained_in < GRACE,
        "a took {drained_in:?} to drain (grace {GRACE:?})"
    );
    match &drain.pinned.outcome {
        Outcome::Replica {
            status: 201,
            served_by,
            ..
        } => assert_eq!(served_by, "a"),
        other => panic!("the pinned batch, in flight on replica a at SIGTERM: {other:?}"),
    }
    let a_stat = lb_stats.iter().find(|s| s.name == "a").unwrap();
    assert!(
        a_stat.status.starts_with("DOWN"),
        "haproxy still sees a up: {lb_stats:?}"
    );

    let mut attempts = log.lock().unwrap().clone();
    attempts.push(drain.pinned.clone());
    let sweep = check_truth(&direct, &t.bucket, &attempts).await;
    let pending = direct.list_multipart_uploads("").await.unwrap();
    assert!(
        pending.is_empty(),
        "multipart uploads left pending: {pending:?}"
    );

    // The fault fired: a served batches before its SIGTERM, b kept serving after a had gone.
    let served = Served::count(&attempts, &drain);
    assert!(
        served.a_before > 0,
        "replica a stored no batch before the SIGTERM"
    );
    assert!(
        drain.bytes_before > 0.0,
        "a's metrics show no bytes stored before the SIGTERM"
    );
    assert!(
        served.b_after > 0,
        "no batch was stored after replica a had exited"
    );
    report(&attempts, &sweep, &served, &drain, load_start, &lb_stats);
}

/// Batches stored (201) by each replica around the SIGTERM.
struct Served {
    /// By a, begun and answered before the SIGTERM.
    a_before: usize,
    b_before: usize,
    /// Load batches a was serving at the SIGTERM and answered after it.
    a_across: usize,
    /// By b, begun after a had exited.
    b_after: usize,
}

impl Served {
    fn count(attempts: &[Attempt], drain: &Drain) -> Served {
        let by = |name: &str, keep: &dyn Fn(&Attempt) -> bool| {
            let stored_by = |x: &&Attempt| match &x.outcome {
                Outcome::Replica {
                    status: 201,
                    served_by,
                    ..
                } => served_by == name,
                _ => false,
            };
            attempts
                .iter()
                .filter(stored_by)
                .filter(|x| keep(x))
                .count()
        };
        let t = drain.term_at;
        Served {
            a_before: by("a", &|x| x.ended < t),
            b_before: by("b", &|x| x.ended < t),
            a_across: by("a", &|x| x.client != PINNED && x.started < t && x.ended > t),
            b_after: by("b", &|x| x.started > drain.exited_at),
        }
    }
}

/// Prints the run's figures.
fn report(
    attempts: &[Attempt],
    sweep: &Figures,
    served: &Served,
    drain: &Drain,
    load_start: Instant,
    lb_stats: &[ServerStat],
) {
    let count = |f: &dyn Fn(&Outcome) -> bool| attempts.iter().filter(|x| f(&x.outcome)).count();
    let batches: HashSet<(usize, usize)> = attempts.iter().map(|x| (x.client, x.batch)).collect();
    eprintln!(
        "replicas: {} batches ({} files, {} multipart, {:.1} MiB) in {} requests; retries {}; \
         clients saw {} transport errors, {} HAProxy errors, {} replica 503s, {} partial \
         answers",
        batches.len(),
        sweep.files,
        sweep.multipart,
        sweep.bytes as f64 / MIB as f64,
        attempts.len(),
        attempts.len() - batches.len(),
        count(&|o| matches!(o, Outcome::Transport(_))),
        count(&|o| matches!(o, Outcome::Balancer { .. })),
        count(&|o| matches!(o, Outcome::Replica { status: 503, .. })),
        count(&|o| matches!(
            o,
            Outcome::Replica {
                status: 207 | 502,
                ..
            }
        )),
    );
    eprintln!(
        "replicas: SIGTERM to a at {:.2} s; before it a stored {} batches ({:.1} MiB by its \
         metrics) and b {}; a then finished {} load batches and the pinned multipart one, and \
         exited with {:?} {:.2} s after the signal (grace {GRACE:?}); b stored {} batches after \
         a had exited",
        (drain.term_at - load_start).as_secs_f64(),
        served.a_before,
        drain.bytes_before / MIB as f64,
        served.b_before,
        served.a_across,
        drain.status.code(),
        (drain.exited_at - drain.term_at).as_secs_f64(),
        served.b_after,
    );
    eprintln!(
        "replicas: {} objects in the bucket, each verified byte for byte ({} from attempts that \
         got no answer); 0 multipart uploads pending; {:.1} s in all",
        sweep.objects,
        sweep.unanswered_stored,
        load_start.elapsed().as_secs_f64(),
    );
    let mut errors: Vec<&str> = attempts
        .iter()
        .filter_map(|x| match &x.outcome {
            Outcome::Transport(e) => Some(e.split(['(', '{', ':']).next().unwrap_or(e)),
            _ => None,
        })
        .collect();
    errors.sort_unstable();
    errors.dedup();
    if !errors.is_empty() {
        eprintln!("replicas: kinds of transport errors: {errors:?}");
    }
    for s in lb_stats {
        eprintln!(
            "replicas: haproxy server {}: {} ({}), {} sessions, {} retries, {} redispatches, {} \
             connect errors, {} response errors",
            s.name,
            s.status,
            s.check_status,
            s.sessions,
            s.retries,
            s.redispatches,
            s.connect_errors,
            s.response_errors
        );
    }
}

/// What the sweep of the bucket counted.
struct Figures {
    /// Files of attempts that stored their whole batch.
    files: usize,
    multipart: usize,
    bytes: u64,
    /// Objects in the bucket (each checked byte for byte).
    objects: usize,
    /// Objects from attempts that got no replica's answer.
    unanswered_stored: usize,
}

/// Checks every answer against the bucket: files reported uploaded are there with their bytes,
/// files reported failed (or never started, behind a 503) are not, every batch has an attempt
/// that stored it, and every object in the bucket is exactly a file some attempt sent.
async fn check_truth(store: &S3Store, bucket: &str, attempts: &[Attempt]) -> Figures {
    let mut must_exist = HashSet::new();
    let mut must_not = HashSet::new();
    let mut unknown = HashSet::new();
    let mut sent: HashMap<String, File> = HashMap::new();
    for a in attempts {
        for f in &a.files {
            assert!(
                sent.insert(f.key.clone(), f.clone()).is_none(),
                "{} sent twice",
                f.key
            );
        }
        let keys = || a.files.iter().map(|f| f.key.clone());
        match &a.outcome {
            Outcome::Transport(_) | Outcome::Balancer { .. } => unknown.extend(keys()),
            Outcome::Replica { status, body, .. } => {
                let results = body["results"].as_array();
                // A 503 without results was refused before any file started; with results
                // (the grace period ran out mid-request), files not listed were not stored.
                let listed = results.map_or(0, Vec::len);
                if *status != 503 {
                    assert_eq!(listed, a.files.len(), "one result per file: {body}");
                }
                for (i, f) in a.files.iter().enumerate() {
                    let r = results.and_then(|r| r.get(i));
                    match r {
                        Some(r) => {
                            assert_eq!(
                                r["key"],
                                f.key.as_str(),
                                "results in request order: {body}"
                            );
                            match r["status"].as_str() {
                                Some("uploaded") => {
                                    assert_eq!(
                                        r["size"], f.size as u64,
                                        "{}: reported size",
                                        f.key
                                    );
                                    must_exist.insert(f.key.clone())
                                }
                                Some("failed") => must_not.insert(f.key.clone()),
                                other => panic!("{}: status {other:?}", f.key),
                            };
                        }
                        None => {
                            must_not.insert(f.key.clone());
                        }
                    }
                }
                if *status == 201 {
                    assert_eq!(body["summary"]["succeeded"], a.files.len(), "{body}");
                }
            }
        }
    }
    for a in attempts {
        let stored = attempts
            .iter()
            .any(|x| x.client == a.client && x.batch == a.batch && x.outcome.stored_all());
        assert!(stored, "batch c{}/b{} was never stored", a.client, a.batch);
    }

    let listed = list_all(store, bucket).await;
    let listed_set: HashSet<&String> = listed.iter().collect();
    for k in &must_exist {
        assert!(
            listed_set.contains(k),
            "{k}: reported uploaded, not in the bucket"
        );
    }
    for k in &must_not {
        assert!(
            !listed_set.contains(k),
            "{k}: reported failed (or not started), yet stored"
        );
    }
    // Every object is exactly a file some attempt sent: whole, with its bytes.
    let checks = futures::stream::iter(listed.iter().map(|k| {
        let f = sent
            .get(k)
            .unwrap_or_else(|| panic!("{k}: an object no client sent"))
            .clone();
        async move {
            let got = store
                .get(&f.key)
                .await
                .unwrap()
                .expect("listed, so present");
            let [head, rest] = content(&f);
            assert!(
                got.len() == f.size
                    && got[..head.len()] == head[..]
                    && got[head.len()..] == rest[..],
                "{}: stored {} bytes that are not the {} bytes sent",
                f.key,
                got.len(),
                f.size
            );
        }
    }))
    .buffer_unordered(8)
    .collect::<Vec<()>>();
    checks.await;

    let complete: Vec<&File> = attempts
        .iter()
        .filter(|a| a.outcome.stored_all())
        .flat_map(|a| &a.files)
        .collect();
    Figures {
        files: complete.len(),
        multipart: complete.iter().filter(|f| f.size >= 5 * MIB).count(),
        bytes: complete.iter().map(|f| f.size as u64).sum(),
        objects: listed.len(),
        unanswered_stored: listed.iter().filter(|k| unknown.contains(*k)).count(),
    }
}
