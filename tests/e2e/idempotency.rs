//! `Idempotency-Key` on `POST /v1/uploads`, through the `uploader serve` binary over the
//! embedded endpoint (and rclone, which ignores conditional writes), with the counting proxy
//! between the daemon and S3: a repeat replays without a PUT, 409 while the first runs, 422
//! for another request, scopes per token, expiry, replicas sharing the records, takeover of a
//! crashed replica's claim, the reserved directory.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use uploader_core::{EmbeddedS3, ObjectStore as _, S3Store};
use uploader_e2e::proxy::{FaultPlan, Op, Proxy};
use uploader_e2e::servers::ThirdParty;
use uploader_e2e::{data, write};

use crate::harness::{Daemon, Reply, Target};

const TOKEN: &str = "idempotency-token-0123456789";
const OTHER_TOKEN: &str = "idempotency-other-0123456789";

/// The embedded endpoint, the counting proxy in front of it, and what they need.
struct Setup {
    target: Target,
    proxy: Proxy,
    home: tempfile::TempDir,
    src: tempfile::TempDir,
    _store: (EmbeddedS3, tempfile::TempDir),
}

impl Setup {
    async fn new(bucket: &str) -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let server = EmbeddedS3::start(dir.path(), bucket).await.unwrap();
        let target = Target::embedded(&server);
        let proxy = Proxy::start(&target.endpoint, FaultPlan::none()).await;
        Setup {
            target,
            proxy,
            home: tempfile::tempdir().unwrap(),
            src: tempfile::tempdir().unwrap(),
            _store: (server, dir),
        }
    }

    /// A daemon through the proxy, with both tokens and `extra` flags.
    fn daemon(&self, extra: &[&str]) -> Daemon {
        let tokens = format!("{TOKEN},{OTHER_TOKEN}");
        let mut flags = vec![
            "--allow-mime",
            "application/octet-stream",
            "--checksum",
            "crc32c",
            "--tokens",
            &tokens,
        ];
        flags.extend_from_slice(extra);
        // A home (and log) of its own for each replica.
        let home = tempfile::tempdir_in(self.home.path()).unwrap().keep();
        tokio::task::block_in_place(|| {
            Daemon::start_with(&self.target, &home, &self.proxy.endpoint(), &flags)
        })
    }

    fn puts(&self) -> u64 {
        self.proxy.stats.seen(Op::PutObject)
    }

    async fn direct(&self) -> S3Store {
        self.target.direct().await
    }
}

fn auth(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// POSTs files (curl's `-F` values) with a key and a token.
async fn post(d: &Daemon, form: &[String], key: &str, token: &str) -> Reply {
    let key = format!("Idempotency-Key: {key}");
    d.exchange(form, "prefix=idem", &[&auth(token), &key]).await
}

fn file(p: &Path) -> String {
    format!("file=@{}", p.display())
}

/// A repeat of a 201 and of a 207 gets the same status and body, marked replayed, and sends
/// no PUT to the store (neither files nor records); the first answers are not marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_replays_the_stored_response_without_uploading_again() {
    let s = Setup::new("idem-replay").await;
    let d = s.daemon(&[]);
    let a = write(s.src.path(), "a.txt", b"first file\n");
    let b = write(s.src.path(), "b.csv", b"x,y\n1,2\n");
    let html = write(
        s.src.path(),
        "page.html",
        b"<html><script>x()</script></html>",
    );
    for (key, form, status) in [
        ("key-201", vec![file(&a), file(&b)], 201),
        ("key-207", vec![file(&a), file(&html)], 207),
    ] {
        let first = post(&d, &form, key, TOKEN).await;
        assert_eq!(first.status, status, "{}", first.body);
        assert_eq!(first.header("idempotent-replayed"), None);
        let puts = s.puts();
        assert!(puts >= 3, "a claim, the files and the final record: {puts}");
        let again = post(&d, &form, key, TOKEN).await;
        assert_eq!(again.status, status, "{}", again.body);
        assert_eq!(again.header("idempotent-replayed"), Some("true"));
        assert_eq!(again.header("content-type"), Some("application/json"));
        assert_eq!(again.body, first.body, "the stored body, byte for byte");
        assert_eq!(s.puts(), puts, "a replay sends no PUT");
        assert_ne!(
            again.header("x-request-id"),
            first.header("x-request-id"),
            "the replay is a request of its own"
        );
    }
    let stored = s.direct().await;
    assert_eq!(
        &stored.get("idem/a.txt").await.unwrap().unwrap()[..],
        b"first file\n"
    );
}

/// The first request with a key is held open (its body half sent): a repeat gets 409 with
/// Retry-After; once the first answers, a repeat sent by curl (another boundary, another
/// chunking) replays the first one's response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_while_the_first_runs_is_409_then_replays() {
    let s = Setup::new("idem-running").await;
    let d = s.daemon(&[]);
    let bytes = data(3 << 20, 7);
    let path = write(s.src.path(), "slow.bin", &bytes);
    let mut first = SlowPost::start(d.port, "key-409", "slow.bin", &bytes);
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.puts() == 0 {
        assert!(Instant::now() < deadline, "the claim was never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let busy = post(&d, &[file(&path)], "key-409", TOKEN).await;
    assert_eq!(busy.status, 409, "{}", busy.body);
    assert_eq!(busy.json()["code"], "idempotency_key_in_use");
    assert_eq!(
        busy.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(busy.header("retry-after"), Some("1"));

    let (status, body) = tokio::task::block_in_place(|| first.finish());
    assert_eq!(status, 201, "{body}");
    let puts = s.puts();
    let again = post(&d, &[file(&path)], "key-409", TOKEN).await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, body);
    assert_eq!(s.puts(), puts);
}

/// The same key with another request (other bytes under the same name, another prefix) is a
/// 422 problem and changes nothing in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_for_another_request_is_422_and_uploads_nothing() {
    let s = Setup::new("idem-reused").await;
    let d = s.daemon(&[]);
    let a = write(s.src.path(), "one/a.txt", b"the first body\n");
    let changed = write(s.src.path(), "two/a.txt", b"the other body\n");
    let first = post(&d, &[file(&a)], "key-422", TOKEN).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let puts = s.puts();
    for reply in [
        post(&d, &[file(&changed)], "key-422", TOKEN).await,
        d.exchange(
            &[file(&a)],
            "prefix=elsewhere",
            &[&auth(TOKEN), "Idempotency-Key: key-422"],
        )
        .await,
    ] {
        assert_eq!(reply.status, 422, "{}", reply.body);
        assert_eq!(reply.json()["code"], "idempotency_key_reused");
        assert_eq!(reply.header("idempotent-replayed"), None);
    }
    assert_eq!(s.puts(), puts, "nothing was uploaded");
    let stored = s.direct().await;
    assert_eq!(
        &stored.get("idem/a.txt").await.unwrap().unwrap()[..],
        b"the first body\n"
    );
    assert!(stored.head("elsewhere/a.txt").await.unwrap().is_none());
}

/// Another token's request with the same key is processed as its own (neither replayed nor
/// refused), and the first token still gets its own response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_token_with_the_same_key_is_processed_on_its_own() {
    let s = Setup::new("idem-scope").await;
    let d = s.daemon(&[]);
    let mine = write(s.src.path(), "one/a.txt", b"uploaded by the first token\n");
    let theirs = write(s.src.path(), "two/a.txt", b"uploaded by the other token\n");
    let first = post(&d, &[file(&mine)], "shared-key", TOKEN).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let other = post(&d, &[file(&theirs)], "shared-key", OTHER_TOKEN).await;
    assert_eq!(other.status, 201, "{}", other.body);
    assert_eq!(other.header("idempotent-replayed"), None);
    assert_ne!(other.body, first.body);
    let stored = s.direct().await;
    assert_eq!(
        &stored.get("idem/a.txt").await.unwrap().unwrap()[..],
        b"uploaded by the other token\n"
    );
    let mine_again = post(&d, &[file(&mine)], "shared-key", TOKEN).await;
    assert_eq!(mine_again.header("idempotent-replayed"), Some("true"));
    assert_eq!(mine_again.body, first.body);
    // Both records are in the reserved directory, and nothing in them (the stored responses
    // included) holds a token, an Authorization header or the idempotency key.
    let records = uploader_core::store::list_all(&stored, ".uploader/idempotency/")
        .await
        .unwrap();
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        let body = stored
            .get(&r.key)
            .await
            .unwrap()
            .expect("the record is there");
        let text = String::from_utf8(body.to_vec()).unwrap();
        let record: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(record["state"], "completed", "{text}");
        assert!(
            record["response"]["body"]
                .as_str()
                .unwrap()
                .contains("idem/a.txt"),
            "the record holds the stored response: {text}"
        );
        for secret in [TOKEN, OTHER_TOKEN, "Bearer", "shared-key"] {
            assert!(
                !text.contains(secret) && !r.key.contains(secret),
                "{secret} in {}: {text}",
                r.key
            );
        }
    }
}

/// With `--idempotency-ttl 1s`, a repeat after the TTL is processed again (a new upload).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_expires_after_the_ttl() {
    let s = Setup::new("idem-ttl").await;
    let d = s.daemon(&["--idempotency-ttl", "1s"]);
    let a = write(s.src.path(), "a.txt", b"expiring\n");
    let first = post(&d, &[file(&a)], "key-ttl", TOKEN).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let puts = s.puts();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let again = post(&d, &[file(&a)], "key-ttl", TOKEN).await;
    assert_eq!(again.status, 201, "{}", again.body);
    assert_eq!(again.header("idempotent-replayed"), None);
    assert_ne!(
        again.body, first.body,
        "a new response (its own request id)"
    );
    assert!(s.puts() >= puts + 3, "uploaded again");
}

/// Two replicas on one bucket share the records: the second replays the first one's
/// response (with the first one's request id in the body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_records() {
    let s = Setup::new("idem-replicas").await;
    let (one, two) = (s.daemon(&[]), s.daemon(&[]));
    let a = write(s.src.path(), "a.txt", b"replicated\n");
    let first = post(&one, &[file(&a)], "key-replicas", TOKEN).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let puts = s.puts();
    let other = post(&two, &[file(&a)], "key-replicas", TOKEN).await;
    assert_eq!(
        other.status,
        201,
        "{}\n{}\n{}",
        other.body,
        one.log(),
        two.log()
    );
    assert_eq!(other.header("idempotent-replayed"), Some("true"));
    assert_eq!(other.json()["request_id"], first.json()["request_id"]);
    assert_eq!(s.puts(), puts);
}

/// A replica killed while it holds a key (`--idempotency-lease 1s`) blocks the key no longer
/// than its lease: then another replica takes the key over and processes the request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_replicas_claim_is_taken_over_after_its_lease() {
    let s = Setup::new("idem-takeover").await;
    let lease = ["--idempotency-lease", "1s"];
    let (one, two) = (s.daemon(&lease), s.daemon(&lease));
    let bytes = data(1 << 20, 3);
    let path = write(s.src.path(), "held.bin", &bytes);
    let held = SlowPost::start(one.port, "key-crash", "held.bin", &bytes);
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.puts() == 0 {
        assert!(Instant::now() < deadline, "the claim was never written");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(one); // SIGKILL: the claim stays `running` and is no longer renewed
    drop(held);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let reply = post(&two, &[file(&path)], "key-crash", TOKEN).await;
    assert_eq!(reply.status, 201, "{}\n{}", reply.body, two.log());
    assert_eq!(reply.header("idempotent-replayed"), None);
    let stored = s.direct().await;
    assert_eq!(
        stored.head("idem/held.bin").await.unwrap().unwrap().size,
        bytes.len() as u64
    );
    let again = post(&two, &[file(&path)], "key-crash", TOKEN).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
}

/// Malformed keys are a 400 problem before anything is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_key_is_400() {
    let s = Setup::new("idem-bad").await;
    let d = s.daemon(&[]);
    let a = write(s.src.path(), "a.txt", b"never stored\n");
    let long = format!("Idempotency-Key: {}", "k".repeat(256));
    for header in [
        "Idempotency-Key;",
        long.as_str(),
        "Idempotency-Key: \"unclosed",
    ] {
        let reply = d.exchange(&[file(&a)], "", &[&auth(TOKEN), header]).await;
        assert_eq!(reply.status, 400, "{header}: {}", reply.body);
        assert_eq!(reply.json()["code"], "invalid_idempotency_key", "{header}");
    }
    assert_eq!(s.puts(), 0);
}

/// Uploads cannot write the reserved directory: a prefix in it is a 400, a file name in it a
/// per-file `invalid_key`; nothing appears there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reserved_directory_cannot_be_written_by_uploads() {
    let s = Setup::new("idem-reserved").await;
    let d = s.daemon(&[]);
    let a = write(s.src.path(), "a.json", b"{\"forged\": true}\n");
    let bearer = auth(TOKEN);
    for prefix in [".uploader/idempotency", ".uploader"] {
        let reply = d
            .exchange(&[file(&a)], &format!("prefix={prefix}"), &[&bearer])
            .await;
        assert_eq!(reply.status, 400, "{prefix}: {}", reply.body);
        assert_eq!(reply.json()["code"], "invalid_prefix");
        assert!(
            reply.json()["detail"]
                .as_str()
                .unwrap()
                .contains("reserved")
        );
    }
    let named = format!(
        "file=@{};filename=.uploader/idempotency/x/y.json",
        a.display()
    );
    let reply = d.exchange(&[named], "", &[&bearer]).await;
    assert_eq!(reply.status, 422, "{}", reply.body);
    let result = &reply.json()["results"][0];
    assert_eq!(result["error"]["code"], "invalid_key", "{result}");
    let stored = s.direct().await;
    assert!(
        uploader_core::store::list_all(&stored, ".uploader/")
            .await
            .unwrap()
            .is_empty()
    );
}

/// rclone ignores `If-None-Match`: the claim is best effort there (HEAD, PUT, read back), and
/// a repeat still replays without uploading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeat_replays_on_a_server_without_conditional_writes() {
    let server = ThirdParty::rclone();
    let target = Target::third_party(&server, "rclone");
    let proxy = Proxy::start(&target.endpoint, FaultPlan::none()).await;
    let (home, src) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let flags = ["--checksum", "md5", "--tokens", TOKEN];
    let d = tokio::task::block_in_place(|| {
        Daemon::start_with(&target, home.path(), &proxy.endpoint(), &flags)
    });
    let a = write(src.path(), "a.txt", b"on rclone\n");
    let first = post(&d, &[file(&a)], "key-rclone", TOKEN).await;
    assert_eq!(first.status, 201, "{}", first.body);
    let puts = proxy.stats.seen(Op::PutObject);
    let again = post(&d, &[file(&a)], "key-rclone", TOKEN).await;
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    assert_eq!(proxy.stats.seen(Op::PutObject), puts);
}

/// A request with an idempotency key whose body is sent in two halves: the first half now,
/// the rest by [`SlowPost::finish`].
struct SlowPost {
    sock: TcpStream,
    rest: Vec<u8>,
}

impl SlowPost {
    fn start(port: u16, key: &str, filename: &str, bytes: &[u8]) -> SlowPost {
        let boundary = "slow-post-boundary";
        let head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        );
        let tail = format!("\r\n--{boundary}--\r\n");
        let total = head.len() + bytes.len() + tail.len();
        let mut sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            sock,
            "POST /v1/uploads?prefix=idem HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {TOKEN}\r\nIdempotency-Key: {key}\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {total}\r\nConnection: close\r\n\r\n{head}"
        )
        .unwrap();
        let half = bytes.len() / 2;
        sock.write_all(&bytes[..half]).unwrap();
        let mut rest = bytes[half..].to_vec();
        rest.extend_from_slice(tail.as_bytes());
        SlowPost { sock, rest }
    }

    /// Sends the rest; the status and body of the answer.
    fn finish(&mut self) -> (u16, String) {
        self.sock.write_all(&self.rest).unwrap();
        self.sock
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let mut resp = String::new();
        self.sock.read_to_string(&mut resp).unwrap();
        let status = resp[9..12].parse().unwrap();
        let body = resp.split_once("\r\n\r\n").unwrap().1.to_owned();
        (status, body)
    }
}

/// Replays and 409s are not charged to the token's quota: with `requests_per_minute=2`, a
/// first request with a key (201) then three repeats all replay the 201 (never 429); a new
/// request is charged (the second of the window), and the one after it is refused 429, which
/// is not stored: the key is free again for a retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_not_charged_to_the_quota_and_a_429_is_not_stored() {
    let s = Setup::new("idem-quota").await;
    let out = uploader_e2e::run(
        uploader_e2e::uploader(s.home.path()).args(["token", "new", "--id", "q", "--prefix", "/"]),
    );
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    let (token, line) = (lines.next().unwrap(), lines.next().unwrap());
    let file_path = s.home.path().join("scoped");
    std::fs::write(&file_path, format!("{line} requests_per_minute=2\n")).unwrap();
    let d = {
        let flags = [
            "--allow-mime",
            "application/octet-stream",
            "--checksum",
            "crc32c",
            "--scoped-tokens",
            file_path.to_str().unwrap(),
        ];
        let home = tempfile::tempdir_in(s.home.path()).unwrap().keep();
        tokio::task::block_in_place(|| {
            Daemon::start_with(&s.target, &home, &s.proxy.endpoint(), &flags)
        })
    };
    let a = write(s.src.path(), "a.txt", b"charged once\n");
    let first = post(&d, &[file(&a)], "K", token).await;
    assert_eq!(first.status, 201, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    for i in 0..3 {
        let again = post(&d, &[file(&a)], "K", token).await;
        assert_eq!(again.status, 201, "repeat {i}: {}", again.body);
        assert_eq!(
            again.header("idempotent-replayed"),
            Some("true"),
            "repeat {i}"
        );
        assert_eq!(again.body, first.body);
    }
    let b = write(s.src.path(), "b.txt", b"the second request\n");
    let second = post(&d, &[file(&b)], "K2", token).await;
    assert_eq!(
        second.status, 201,
        "the replays left the quota alone: {}",
        second.body
    );
    let c = write(s.src.path(), "c.txt", b"over the quota\n");
    let over = post(&d, &[file(&c)], "K3", token).await;
    assert_eq!(over.status, 429, "{}", over.body);
    assert_eq!(over.json()["code"], "quota_exceeded");
    let stored = s.direct().await;
    assert!(stored.head("c.txt").await.unwrap().is_none());
    let records = uploader_core::store::list_all(&stored, ".uploader/idempotency/")
        .await
        .unwrap();
    assert_eq!(
        records.len(),
        2,
        "K and K2 only: the 429 released K3 {records:?}"
    );
}
