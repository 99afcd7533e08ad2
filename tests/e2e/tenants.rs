//! Scoped tokens of `uploader serve --scoped-tokens`: confinement to the token's prefix,
//! quotas, rotation on SIGHUP, the token id in the access log and metrics, start-up refusals of
//! a malformed file; and the refusal of cross-site form posts.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use uploader_core::EmbeddedS3;
use uploader_core::store::list_all;
use uploader_e2e::uploader;

use crate::harness::{Daemon, Target};

const BOUNDARY: &str = "tenants-boundary-7f3a9c";

/// One part of a hand-made multipart body: field name, filename, data.
type Part<'a> = (&'a str, Option<&'a str>, &'a [u8]);

/// What the daemon answered.
struct Reply {
    status: u16,
    retry_after: Option<u64>,
    json: Value,
}

/// POSTs a multipart body built byte by byte (curl's `-F` would rewrite some filenames) to
/// `/v1/uploads?<query>` with `headers`; `chunked` sends it without a Content-Length.
async fn post(
    d: &Daemon,
    query: &str,
    parts: &[Part<'_>],
    headers: &[&str],
    chunked: bool,
) -> Reply {
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"").as_bytes(),
        );
        if let Some(f) = filename {
            body.extend_from_slice(format!("; filename=\"{f}\"").as_bytes());
        }
        body.extend_from_slice(b"\r\n\r\n");
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    let dir = tempfile::tempdir().unwrap();
    let (body_path, head_path) = (dir.path().join("body"), dir.path().join("head"));
    std::fs::write(&body_path, body).unwrap();
    let mut c = Command::new("curl");
    c.args(["-s", "-o", "-", "-w", "\n%{http_code}", "-D"])
        .arg(&head_path)
        .arg("-H")
        .arg(format!(
            "Content-Type: multipart/form-data; boundary={BOUNDARY}"
        ))
        .arg("--data-binary")
        .arg(format!("@{}", body_path.display()));
    if chunked {
        c.args(["-H", "Transfer-Encoding: chunked"]);
    }
    for h in headers {
        c.arg("-H").arg(h);
    }
    c.arg(format!("http://127.0.0.1:{}/v1/uploads?{query}", d.port));
    let out = tokio::task::spawn_blocking(move || c.output().expect("curl runs"))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (json, status) = text
        .trim_end()
        .rsplit_once('\n')
        .unwrap_or_else(|| panic!("{text}"));
    let head = std::fs::read_to_string(&head_path).unwrap();
    let retry_after = head.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("retry-after")
            .then(|| value.trim().parse().unwrap())
    });
    Reply {
        status: status.parse().unwrap(),
        retry_after,
        json: serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {json}")),
    }
}

/// POSTs one file `name` with `token`.
async fn post_one(d: &Daemon, token: &str, name: &str, data: &[u8]) -> Reply {
    post(
        d,
        "",
        &[("file", Some(name), data)],
        &[&bearer(token)],
        false,
    )
    .await
}

/// A 429 `quota_exceeded` with a `Retry-After` of 1 to 60 seconds.
fn assert_over_quota(r: &Reply) {
    assert_eq!(r.status, 429, "{}", r.json);
    assert_eq!(r.json["code"], "quota_exceeded", "{}", r.json);
    let wait = r.retry_after.expect("Retry-After");
    assert!((1..=60).contains(&wait), "{wait}");
}

/// `uploader token new --id ID --prefix P`: the token and the line for the file.
fn new_token(home: &Path, id: &str, prefix: &str) -> (String, String) {
    let out =
        uploader_e2e::run(uploader(home).args(["token", "new", "--id", id, "--prefix", prefix]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let (token, line) = (lines[0].to_owned(), lines[1].to_owned());
    assert!(
        token.starts_with("upl_") && token.len() == 4 + 43,
        "{token}"
    );
    assert!(
        !line.contains(&token),
        "the line holds the hash, never the token: {line}"
    );
    assert!(line.starts_with(&format!("{id} sha256:")), "{line}");
    assert!(line.ends_with(&format!(" prefix={prefix}")), "{line}");
    (token, line)
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// The daemon with `--scoped-tokens file`, JSON logs, CRC32C.
fn daemon(t: &Target, home: &Path, file: &Path, extra: &[&str]) -> Daemon {
    let mut flags = vec![
        "--log-format",
        "json",
        "--checksum",
        "crc32c",
        "--scoped-tokens",
    ];
    let file = file.to_str().unwrap();
    flags.push(file);
    flags.extend_from_slice(extra);
    tokio::task::block_in_place(|| Daemon::start_with(t, home, &t.endpoint, &flags))
}

/// Every key in the bucket.
async fn keys(t: &Target) -> Vec<String> {
    let store = t.direct().await;
    list_all(&store, "")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// The access-log lines of the daemon's JSON log.
fn access_lines(log: &str) -> Vec<Value> {
    log.lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v| v["target"] == "uploader_server::access")
        .collect()
}

/// A token confined to `tenant-a/` cannot write elsewhere by any filename, `prefix` field or
/// `prefix` query parameter: traversal, absolute paths, encoded separators, backslashes. Every
/// object in the whole bucket is under `tenant-a/`; the access log names the token by its id
/// and nowhere holds the token; the metrics count per id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_confined_to_tenant_a_cannot_write_under_tenant_b() {
    let (home, store_dir) = (tempdir(), tempdir());
    let server = EmbeddedS3::start(store_dir.path(), "tenants")
        .await
        .unwrap();
    let t = Target::embedded(&server);
    let (token_a, line_a) = new_token(home.path(), "tenant-a", "tenant-a/");
    let (token_b, line_b) = new_token(home.path(), "tenant-b", "tenant-b/");
    let file = write_file(home.path(), &format!("{line_a}\n{line_b}\n"));
    let d = daemon(&t, home.path(), &file, &[]);
    let auth = bearer(&token_a);

    // Each name and its outcome: the key it is stored at (always under tenant-a/), or refused.
    let names: [(&str, Result<&str, &str>); 11] = [
        ("../tenant-b/x1.txt", Err("dot_segment")),
        ("../../tenant-b/x2.txt", Err("dot_segment")),
        ("/tenant-b/x3.txt", Err("absolute")),
        ("//tenant-b/x4.txt", Err("absolute")),
        // Not decoded: a literal name under tenant-a/.
        (
            "..%2Ftenant-b%2Fx5.txt",
            Ok("tenant-a/..%2Ftenant-b%2Fx5.txt"),
        ),
        (
            "%2E%2E%2Ftenant-b%2Fx6.txt",
            Ok("tenant-a/%2E%2E%2Ftenant-b%2Fx6.txt"),
        ),
        ("..\\tenant-b\\x7.txt", Err("backslash")),
        ("tenant-b\\x8.txt", Err("backslash")),
        ("./../tenant-b/x9.txt", Err("dot_segment")),
        ("tenant-b/x10.txt", Ok("tenant-a/tenant-b/x10.txt")),
        ("a/../../tenant-b/x11.txt", Err("dot_segment")),
    ];
    let mut admitted = 0;
    let mut stored_keys = Vec::new();
    for (name, outcome) in names {
        admitted += 1;
        let r = post_one(&d, &token_a, name, b"from tenant a\n").await;
        let result = &r.json["results"][0];
        match outcome {
            Ok(key) => {
                assert_eq!(r.status, 201, "{name}: {}", r.json);
                assert_eq!(result["status"], "uploaded", "{name}: {}", r.json);
                assert_eq!(result["key"], key, "{name}: {}", r.json);
                stored_keys.push(key.to_owned());
            }
            Err(rule) => {
                assert_eq!(r.status, 422, "{name}: {}", r.json);
                assert_eq!(result["error"]["code"], "invalid_key", "{name}: {}", r.json);
                let message = result["error"]["message"].as_str().unwrap();
                assert!(message.ends_with(&format!("[{rule}]")), "{name}: {message}");
            }
        }
    }
    // Each prefix and its outcome, as a form field and as a query parameter: refused (the
    // rule), or the directory the file is stored in (a literal name under tenant-a/).
    for (prefix, outcome) in [
        ("../tenant-b", Err("dot_segment")),
        ("/tenant-b", Err("absolute")),
        ("..%2Ftenant-b", Ok("tenant-a/..%2Ftenant-b/")),
        ("..\\tenant-b", Err("backslash")),
        ("tenant-a/../../tenant-b", Err("dot_segment")),
    ] {
        // As a form field, then as a query parameter (percent-encoded, so the daemon decodes it).
        let parts = [
            ("prefix", None, prefix.as_bytes()),
            ("file", Some("p.txt"), &b"p\n"[..]),
        ];
        let r = post(&d, "", &parts, &[&auth], false).await;
        let query = format!("prefix={}", percent_encode(prefix));
        let q = post(
            &d,
            &query,
            &[("file", Some("q.txt"), b"q\n")],
            &[&auth],
            false,
        )
        .await;
        // A bad query prefix is refused with the headers, before the request is admitted (and
        // counted); the field is read after.
        admitted += 1 + usize::from(outcome.is_ok());
        for (r, name) in [(r, "p.txt"), (q, "q.txt")] {
            match outcome {
                Err(rule) => {
                    assert_eq!(r.status, 400, "{prefix}: {}", r.json);
                    assert_eq!(r.json["code"], "invalid_prefix", "{prefix}: {}", r.json);
                    let detail = r.json["detail"].as_str().unwrap();
                    assert!(detail.ends_with(&format!("[{rule}]")), "{prefix}: {detail}");
                }
                Ok(dir) => {
                    assert_eq!(r.status, 201, "{prefix}: {}", r.json);
                    let key = format!("{dir}{name}");
                    assert_eq!(r.json["results"][0]["key"], key.as_str(), "{}", r.json);
                    stored_keys.push(key);
                }
            }
        }
    }
    // The same name with tenant b's token lands under tenant-b/ (the confinement is the token's).
    let r = post_one(&d, &token_b, "b.txt", b"from b\n").await;
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(r.json["results"][0]["key"], "tenant-b/b.txt");

    let all = keys(&t).await;
    let (b, a): (Vec<_>, Vec<_>) = all.iter().partition(|k| k.as_str() == "tenant-b/b.txt");
    assert_eq!(b.len(), 1, "{all:?}");
    let mut a: Vec<String> = a.into_iter().cloned().collect();
    a.sort();
    stored_keys.sort();
    assert_eq!(
        a, stored_keys,
        "exactly what was reported stored, all under tenant-a/"
    );

    // The access log names the token id of every authenticated upload, and never a token.
    let metrics = metrics_text(&d).await;
    let log = d.log();
    let lines = access_lines(&log);
    let uploads: Vec<_> = lines
        .iter()
        .filter(|l| l["span"]["path"] == "/v1/uploads")
        .collect();
    assert_eq!(uploads.len(), names.len() + 2 * 5 + 1, "{log}");
    let with_a = uploads
        .iter()
        .filter(|l| l["span"]["token_id"] == "tenant-a")
        .count();
    assert_eq!(with_a, names.len() + 2 * 5, "{log}");
    assert_eq!(
        uploads.last().unwrap()["span"]["token_id"],
        "tenant-b",
        "{log}"
    );
    for secret in [&token_a, &token_b] {
        assert!(
            !log.contains(secret.as_str()),
            "a token is in the log:\n{log}"
        );
        assert!(
            !metrics.contains(secret.as_str()),
            "a token is in the metrics"
        );
    }
    let requests = |id: &str| {
        metric(
            &metrics,
            &format!("uploader_token_requests_total{{token=\"{id}\"}}"),
        )
    };
    assert_eq!(requests("tenant-a"), admitted as f64, "{metrics}");
    assert_eq!(requests("tenant-b"), 1.0, "{metrics}");
    assert_eq!(
        metric(&metrics, "uploader_token_files_total{token=\"tenant-b\"}"),
        1.0
    );
    assert_eq!(
        metric(&metrics, "uploader_token_bytes_total{token=\"tenant-b\"}"),
        7.0
    );
}

/// Quotas: past `requests_per_minute` a request gets 429 with `Retry-After`; a body declared
/// larger than what is left of `bytes_per_minute` is refused before it is read; a file that
/// would go over it mid-stream is refused and not stored, the files before it are; per-token
/// file and request size limits apply. The bucket holds exactly what was within the quotas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_answer_429_with_retry_after_and_nothing_beyond_is_stored() {
    let (home, store_dir) = (tempdir(), tempdir());
    let server = EmbeddedS3::start(store_dir.path(), "quotas").await.unwrap();
    let t = Target::embedded(&server);
    let (rq, rq_line) = new_token(home.path(), "rq", "rq/");
    let (bq, bq_line) = new_token(home.path(), "bq", "bq/");
    let (sz, sz_line) = new_token(home.path(), "sz", "sz/");
    let text = format!(
        "{rq_line} requests_per_minute=2\n{bq_line} bytes_per_minute=1000\n\
         {sz_line} max_file_size=100 max_request_size=2KiB\n"
    );
    let file = write_file(home.path(), &text);
    let d = daemon(&t, home.path(), &file, &[]);

    // Requests per minute.
    for name in ["r0.txt", "r1.txt"] {
        let r = post_one(&d, &rq, name, b"r\n").await;
        assert_eq!(r.status, 201, "{}", r.json);
    }
    assert_over_quota(&post_one(&d, &rq, "r2.txt", b"r\n").await);

    // Bytes per minute: 600 stored; a declared body of ~800 more refused unread; then a
    // chunked body (no declared length) of 300 + 300: the first fits, the second does not.
    let text600 = vec![b'a'; 600];
    let r = post_one(&d, &bq, "b0.txt", &text600).await;
    assert_eq!(r.status, 201, "{}", r.json);
    assert_over_quota(&post_one(&d, &bq, "b1.txt", &text600).await);
    let text300 = vec![b'c'; 300];
    let parts = [
        ("file", Some("c0.txt"), &text300[..]),
        ("file", Some("c1.txt"), &text300[..]),
    ];
    let r = post(&d, "", &parts, &[&bearer(&bq)], true).await;
    assert_over_quota(&r);
    assert_eq!(r.json["results"][0]["status"], "uploaded", "{}", r.json);
    assert_eq!(r.json["results"][0]["key"], "bq/c0.txt", "{}", r.json);
    assert_eq!(r.json["results"][1]["status"], "failed", "{}", r.json);

    // Per-token sizes: a file over max_file_size is refused, a body over max_request_size too.
    let r = post_one(&d, &sz, "s0.txt", &[b's'; 101]).await;
    assert_eq!(r.status, 422, "{}", r.json);
    assert_eq!(r.json["results"][0]["error"]["code"], "file_too_large");
    let small = vec![b's'; 100];
    let many: Vec<Part> = (0..30)
        .map(|_| ("file", Some("s.txt"), &small[..]))
        .collect();
    let r = post(&d, "", &many, &[&bearer(&sz)], false).await;
    assert_eq!(r.status, 413, "{}", r.json);
    let r = post_one(&d, &sz, "s1.txt", &small).await;
    assert_eq!(r.status, 201, "{}", r.json);
    let mut all = keys(&t).await;
    all.sort();
    assert_eq!(
        all,
        [
            "bq/b0.txt",
            "bq/c0.txt",
            "rq/r0.txt",
            "rq/r1.txt",
            "sz/s1.txt"
        ]
    );
    let metrics = metrics_text(&d).await;
    assert_eq!(
        metric(
            &metrics,
            "uploader_token_quota_refusals_total{token=\"rq\"}"
        ),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "uploader_token_quota_refusals_total{token=\"bq\"}"
        ),
        2.0,
        "{metrics}"
    );
}

/// The bytes of a part refused for its name (invalid or duplicate key) were received and count
/// toward `bytes_per_minute`: 80 refused bytes and then a 30-byte file go over a quota of 100,
/// and that file is refused 429 and not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bytes_of_refused_parts_count_toward_the_byte_quota() {
    let (home, store_dir) = (tempdir(), tempdir());
    let server = EmbeddedS3::start(store_dir.path(), "refusedbytes")
        .await
        .unwrap();
    let t = Target::embedded(&server);
    let (token, line) = new_token(home.path(), "rb", "rb/");
    let file = write_file(home.path(), &format!("{line} bytes_per_minute=100\n"));
    let d = daemon(&t, home.path(), &file, &[]);
    let refused = [b'r'; 80];
    let good = [b'g'; 30];
    let parts = [
        ("file", Some("../bad.txt"), &refused[..]),
        ("file", Some("good.txt"), &good[..]),
    ];
    let r = post(&d, "", &parts, &[&bearer(&token)], true).await;
    assert_over_quota(&r);
    assert_eq!(
        r.json["results"][0]["error"]["code"], "invalid_key",
        "{}",
        r.json
    );
    assert!(keys(&t).await.is_empty(), "{:?}", keys(&t).await);
    // The 30 bytes were given back: the 20 left of the window take a 20-byte file exactly
    // (chunked: a declared length counts the multipart framing too).
    let fits = [b'f'; 20];
    let parts = [("file", Some("fits.txt"), &fits[..])];
    let r = post(&d, "", &parts, &[&bearer(&token)], true).await;
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(keys(&t).await, ["rb/fits.txt"]);
}

/// Rotation: the file is edited and the real `uploader serve` gets SIGHUP; the new token works,
/// the removed one gets 401, with no restart (same process). A file that does not parse on a
/// later SIGHUP is logged and the tokens in force stay (never no authentication). An edit
/// without a signal is noticed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_rotates_the_tokens_without_a_restart_and_a_bad_file_keeps_them() {
    let (home, store_dir) = (tempdir(), tempdir());
    let server = EmbeddedS3::start(store_dir.path(), "rotation")
        .await
        .unwrap();
    let t = Target::embedded(&server);
    let (old, old_line) = new_token(home.path(), "app", "app/");
    let (new, new_line) = new_token(home.path(), "app", "app/");
    let file = write_file(home.path(), &format!("{old_line}\n"));
    let mut d = daemon(&t, home.path(), &file, &[]);
    let pid = d.pid();
    let send = |token: String, name: &'static str| {
        let d = &d;
        async move { post_one(d, &token, name, b"rotated\n").await.status }
    };
    assert_eq!(send(old.clone(), "1.txt").await, 201);
    assert_eq!(send(new.clone(), "2.txt").await, 401);

    std::fs::write(&file, format!("# rotated\n{new_line}\n")).unwrap();
    d.signal("HUP");
    wait_for_log(&d, "scoped tokens re-read on SIGHUP (1 in force)", 1).await;
    assert_eq!(send(new.clone(), "3.txt").await, 201);
    assert_eq!(send(old.clone(), "4.txt").await, 401);

    std::fs::write(
        &file,
        format!("{new_line}\n{new_line} max_file_size=lots\n"),
    )
    .unwrap();
    d.signal("HUP");
    wait_for_log(&d, "the scoped tokens file was not re-read on SIGHUP", 1).await;
    let log = d.log();
    let error = log.lines().find(|l| l.contains("was not re-read")).unwrap();
    assert!(error.contains("line 2"), "{error}");
    assert!(error.contains("\"level\":\"ERROR\""), "{error}");
    assert_eq!(
        send(new.clone(), "5.txt").await,
        201,
        "the tokens in force stay"
    );
    assert_eq!(send(old.clone(), "6.txt").await, 401);
    let r = post(&d, "", &[("file", Some("7.txt"), b"x\n")], &[], false).await;
    assert_eq!(r.status, 401, "never no authentication: {}", r.json);

    // Without a signal: a change of the file is noticed within a few seconds.
    let (third, third_line) = new_token(home.path(), "other", "other/");
    std::fs::write(&file, format!("{third_line}\n")).unwrap();
    wait_for_log(&d, "scoped tokens re-read after a change (1 in force)", 1).await;
    assert_eq!(send(third.clone(), "8.txt").await, 201);
    assert_eq!(send(new.clone(), "9.txt").await, 401);

    assert!(d.running(), "the daemon is still the same process");
    assert_eq!(d.pid(), pid);
    let mut all = keys(&t).await;
    all.sort();
    assert_eq!(all, ["app/1.txt", "app/3.txt", "app/5.txt", "other/8.txt"]);
    let log = d.log();
    for secret in [&old, &new, &third] {
        assert!(
            !log.contains(secret.as_str()),
            "a token is in the log:\n{log}"
        );
    }
}

/// The reserved directory is the daemon's `.uploader/` (under its root prefix), in any case,
/// whatever the token: a `prefix=/` token cannot write it by a filename or a `prefix`; a
/// token's prefix inside it is refused by `uploader token new` and at start-up (naming the
/// line), so no token can store among the idempotency records; a `prefix=a/` token may write
/// `a/.uploader/z.json`, which is not the reserved directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reserved_directory_is_the_daemons_whatever_the_tokens_prefix() {
    let (home, store_dir) = (tempdir(), tempdir());
    let server = EmbeddedS3::start(store_dir.path(), "reserved")
        .await
        .unwrap();
    let t = Target::embedded(&server);
    for prefix in [
        ".uploader/",
        ".uploader/idempotency/",
        ".UPLOADER/idempotency/",
    ] {
        let out = uploader_e2e::run(
            uploader(home.path()).args(["token", "new", "--id", "x", "--prefix", prefix]),
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{prefix}: {err}");
        assert!(
            err.contains("--prefix") && err.contains("reserved"),
            "{err}"
        );
    }
    for prefix in [".uploader/", ".Uploader/idempotency/"] {
        let h = format!("sha256:{}", "ab".repeat(32));
        let file = write_file(home.path(), &format!("# tokens\nbad {h} prefix={prefix}\n"));
        let err = refused_at_start_up(home.path(), store_dir.path(), &file, &[], &[]);
        assert!(
            err.contains("line 2: ") && err.contains("reserved"),
            "{prefix}: {err}"
        );
    }

    let (whole, whole_line) = new_token(home.path(), "whole", "/");
    let (a, a_line) = new_token(home.path(), "a", "a/");
    let file = write_file(home.path(), &format!("{whole_line}\n{a_line}\n"));
    let d = daemon(&t, home.path(), &file, &[]);
    for name in [
        ".uploader/idempotency/deadbeef/cafe.json",
        ".UPLOADER/idempotency/deadbeef/cafe.json",
        ".Uploader/x.json",
        ".uploader",
    ] {
        let r = post_one(&d, &whole, name, b"{}").await;
        assert_eq!(r.status, 422, "{name}: {}", r.json);
        let error = &r.json["results"][0]["error"];
        assert_eq!(error["code"], "invalid_key", "{name}: {}", r.json);
        assert_eq!(
            error["message"], ".uploader/ is reserved for the daemon's own records",
            "{name}: {}",
            r.json
        );
    }
    for prefix in [".uploader/idempotency", ".UPLOADER"] {
        let parts = [
            ("prefix", None, prefix.as_bytes()),
            ("file", Some("p.json"), &b"{}"[..]),
        ];
        let r = post(&d, "", &parts, &[&bearer(&whole)], false).await;
        assert_eq!(r.status, 400, "{prefix}: {}", r.json);
        assert_eq!(r.json["code"], "invalid_prefix", "{prefix}: {}", r.json);
    }
    // Not the reserved directory: under a/, for the a/ token.
    let r = post_one(&d, &a, ".uploader/z.json", b"{}").await;
    assert_eq!(r.status, 201, "{}", r.json);
    assert_eq!(r.json["results"][0]["key"], "a/.uploader/z.json");
    let r = post_one(&d, &whole, "ok.json", b"{}").await;
    assert_eq!(r.status, 201, "{}", r.json);
    let mut all = keys(&t).await;
    all.sort();
    assert_eq!(all, ["a/.uploader/z.json", "ok.json"]);
}

/// `--scoped-tokens` with `--no-auth` (or `UPLOADER_NO_AUTH=true`) is a usage error, never a
/// daemon without authentication; a scoped token that is also a plain (`--tokens`) or an
/// admin token is refused at start-up naming its line, and on SIGHUP (the tokens in force
/// stay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contradictory_token_settings_are_refused_at_start_up_and_on_reload() {
    let (home, store_dir) = (tempdir(), tempdir());
    let (scoped, scoped_line) = new_token(home.path(), "s", "s/");
    let file = write_file(home.path(), &format!("# one\n{scoped_line}\n"));
    for (extra, env) in [
        (&["--no-auth"][..], &[][..]),
        (&[][..], &[("UPLOADER_NO_AUTH", "true")][..]),
    ] {
        let err = refused_at_start_up(home.path(), store_dir.path(), &file, extra, env);
        assert!(err.contains("--scoped-tokens and --no-auth"), "{err}");
    }
    for (flag, role) in [
        ("--tokens", "also a plain upload token"),
        ("--admin-tokens", "also an admin token"),
    ] {
        let err = refused_at_start_up(home.path(), store_dir.path(), &file, &[flag, &scoped], &[]);
        assert!(
            err.contains("line 2: ") && err.contains(role),
            "{flag}: {err}"
        );
        assert!(!err.contains(&scoped), "the token is not echoed: {err}");
    }

    // On reload: an admin token written into the file is refused, the old tokens stay.
    let server = EmbeddedS3::start(store_dir.path(), "clash").await.unwrap();
    let t = Target::embedded(&server);
    let (admin, admin_line) = new_token(home.path(), "adm", "adm/");
    let d = daemon(&t, home.path(), &file, &["--admin-tokens", &admin]);
    assert_eq!(post_one(&d, &scoped, "1.txt", b"one\n").await.status, 201);
    std::fs::write(&file, format!("{scoped_line}\n{admin_line}\n")).unwrap();
    d.signal("HUP");
    wait_for_log(&d, "the scoped tokens file was not re-read on SIGHUP", 1).await;
    let log = d.log();
    let error = log.lines().find(|l| l.contains("was not re-read")).unwrap();
    assert!(
        error.contains("line 2") && error.contains("also an admin token"),
        "{error}"
    );
    assert_eq!(post_one(&d, &scoped, "2.txt", b"two\n").await.status, 201);
    assert_eq!(
        post_one(&d, &admin, "3.txt", b"three\n").await.status,
        401,
        "the admin token did not become an upload token"
    );
    assert!(!d.log().contains(admin.as_str()), "a token is in the log");
}

/// A malformed scoped tokens file stops the daemon before it listens: exit 2, naming the flag,
/// the file, the line and the reason.
#[test]
fn a_malformed_tokens_file_is_refused_at_start_up_naming_the_line() {
    let (home, store_dir) = (tempdir(), tempdir());
    let h1 = format!("sha256:{}", "ab".repeat(32));
    let h2 = format!("sha256:{}", "cd".repeat(32));
    let good = format!("one {h1} prefix=one/");
    for (second, reason) in [
        (
            format!("two sha256:{} prefix=two/", "zz".repeat(32)),
            "not 64 hex digits",
        ),
        (format!("one {h2} prefix=two/"), "duplicate id \"one\""),
        (
            format!("two {h1} prefix=two/"),
            "the same token hash as line 1",
        ),
        (format!("two {h2} prefix=../x"), "invalid prefix \"../x\""),
        (
            format!("two {h2} prefix=two/ colour=red"),
            "unknown field \"colour\"",
        ),
        (
            format!("two {h2} prefix=two/ bytes_per_minute=many"),
            "bytes_per_minute=many",
        ),
    ] {
        let file = write_file(home.path(), &format!("{good}\n{second}\n"));
        let err = refused_at_start_up(home.path(), store_dir.path(), &file, &[], &[]);
        assert!(
            err.contains("--scoped-tokens") && err.contains(file.to_str().unwrap()),
            "{err}"
        );
        assert!(
            err.contains("line 2: ") && err.contains(reason),
            "{second}: {err}"
        );
    }
}

/// A page of another site cannot make a browser post to a loopback daemon without tokens
/// (cross-site form post): an `Origin` that is neither the daemon's own nor a `--cors-origin`
/// is refused with 403 and nothing is stored; a look-alike name resolving to the daemon (DNS
/// rebinding: `Host` and `Origin` agree but are not loopback) too. The daemon's own page and
/// clients without `Origin` post as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_form_post_is_refused() {
    let (home, store_dir) = (tempdir(), tempdir());
    let server = EmbeddedS3::start(store_dir.path(), "csrf").await.unwrap();
    let t = Target::embedded(&server);
    let flags = [
        "--checksum",
        "crc32c",
        "--cors-origin",
        "https://app.example.com",
    ];
    let d =
        tokio::task::block_in_place(|| Daemon::start_with(&t, home.path(), &t.endpoint, &flags));
    let own = format!("Origin: http://127.0.0.1:{}", d.port);
    let rebound = format!("Host: evil.example:{}", d.port);
    let rebound_origin = format!("Origin: http://evil.example:{}", d.port);
    let cases: [(&[&str], &str, u16); 6] = [
        (&["Origin: https://evil.example"], "evil.txt", 403),
        (&["Origin: null"], "null.txt", 403),
        (&[&rebound, &rebound_origin], "rebound.txt", 403),
        (&[&own], "own.txt", 201),
        (&["Origin: https://app.example.com"], "cors.txt", 201),
        (&[], "curl.txt", 201),
    ];
    for (headers, name, status) in cases {
        let r = post(&d, "", &[("file", Some(name), b"x\n")], headers, false).await;
        assert_eq!(r.status, status, "{name}: {}", r.json);
        if status == 403 {
            assert_eq!(r.json["code"], "forbidden_origin", "{}", r.json);
        }
    }
    let mut all = keys(&t).await;
    all.sort();
    assert_eq!(all, ["cors.txt", "curl.txt", "own.txt"]);
}

/// A page of another site that posts a file to the daemon as a "simple" request (`no-cors`,
/// multipart/form-data, no custom header: no preflight), as a hidden form on any web page could.
const CROSS_SITE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>elsewhere</title></head><body><script>
window.crossSite = async (api) => {
  const form = new FormData();
  form.append("file", new Blob(["cross-site\n"], {type: "text/plain"}), "csrf.txt");
  try {
    const r = await fetch(api + "/v1/uploads", {method: "POST", mode: "no-cors", body: form});
    return "sent: " + r.type;
  } catch (e) {
    return "error: " + e.name;
  }
};
</script></body></html>
"#;

/// In a real browser: the page of another origin makes the browser post to a loopback daemon
/// without tokens; the post reaches the daemon (its access log has it, with 403) and nothing
/// is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_cannot_be_made_to_post_to_the_daemon_from_another_site() {
    let (home, store_dir) = (tempdir(), tempdir());
    let server = EmbeddedS3::start(store_dir.path(), "csrf-browser")
        .await
        .unwrap();
    let t = Target::embedded(&server);
    let flags = ["--checksum", "crc32c", "--log-format", "json"];
    let d =
        tokio::task::block_in_place(|| Daemon::start_with(&t, home.path(), &t.endpoint, &flags));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let page = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::response::Html(CROSS_SITE) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let b = uploader_e2e::webdriver::Browser::start().await;
    b.goto(&format!("{page}/")).await;
    let api = format!("http://127.0.0.1:{}", d.port);
    let v = b
        .execute_async(
            "crossSite(arguments[0]).then(arguments[1]);",
            serde_json::json!([api]),
        )
        .await;
    drop(b);
    assert_eq!(
        v, "sent: opaque",
        "the browser sent it (and hid the answer)"
    );
    let log = d.log();
    let posts: Vec<_> = access_lines(&log)
        .into_iter()
        .filter(|l| l["span"]["method"] == "POST")
        .collect();
    assert_eq!(posts.len(), 1, "{log}");
    assert_eq!(posts[0]["status"], 403, "{log}");
    assert_eq!(keys(&t).await, Vec::<String>::new());
}

/// Waits until the daemon's log has `n` lines containing `what`.
async fn wait_for_log(d: &Daemon, what: &str, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = d.log();
        if log.lines().filter(|l| l.contains(what)).count() >= n {
            return;
        }
        assert!(Instant::now() < deadline, "no {what:?} in the log:\n{log}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn metrics_text(d: &Daemon) -> String {
    let url = format!("http://127.0.0.1:{}/metrics", d.port);
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl").args(["-s", &url]).output().unwrap()
    })
    .await
    .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The value of the series `series` (name and labels, as rendered).
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

fn percent_encode(s: &str) -> String {
    s.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// `uploader serve --scoped-tokens file` with `extra` flags and `env`, which must stop before
/// it listens, with exit 2: its stderr.
fn refused_at_start_up(
    home: &Path,
    store: &Path,
    file: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> String {
    let mut c = uploader(home);
    c.args(["serve", "--bucket", "b", "--scoped-tokens"])
        .arg(file)
        .arg("--embedded-s3")
        .arg(store)
        .args(extra)
        .envs(env.iter().copied());
    let out = uploader_e2e::run(&mut c);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
    assert!(!err.contains("listening"), "{err}");
    err
}

fn write_file(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("scoped-tokens");
    std::fs::write(&p, text).unwrap();
    p
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
