//! The CLI against the embedded endpoint: `--embedded-s3` runs, and runs against an endpoint
//! the test serves itself (for credentials, unknown buckets, cleanup and Ctrl-C).

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use uploader_core::{EmbeddedS3, ObjectStore as _, S3Store};
use uploader_e2e::{data, describe, json_lines, run, uploader, write};

const MIB: usize = 1024 * 1024;
const UNICODE_TEXT: &str = "ünïcödé text, 😀 and spaces\n";

/// Reads an object back through a fresh endpoint over the same data directory.
async fn read_back(data_dir: &Path, bucket: &str) -> (EmbeddedS3, S3Store) {
    let server = EmbeddedS3::start(data_dir, bucket).await.unwrap();
    let store = S3Store::connect(&server.s3_config()).await.unwrap();
    (server, store)
}

/// Runs a blocking command without stalling the runtime that serves the test's endpoint.
async fn run_async(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || run(&mut c))
        .await
        .unwrap()
}

/// A command aimed at an endpoint served by the test, with its credentials in the environment.
fn against(server: &EmbeddedS3, home: &Path) -> Command {
    let mut c = uploader(home);
    let creds = server.credentials();
    c.env("AWS_ACCESS_KEY_ID", &creds.access_key_id)
        .env("AWS_SECRET_ACCESS_KEY", &creds.secret_access_key)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ENDPOINT_URL", server.endpoint_url());
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_a_tree_with_every_kind_of_name_and_reports_json() {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let s = src.path();
    write(s, "top.txt", b"top level\n");
    write(s, "nested/deeper/leaf.csv", b"a,b\n1,2\n");
    write(
        s,
        "unicode/caf\u{e9} \u{1F600} and spaces.txt",
        UNICODE_TEXT.as_bytes(),
    );
    write(s, "empty.txt", b"");
    write(s, ".hidden/.config", b"hidden=1\n");
    write(s, "big/large.bin", &data(11 * MIB + 7, 2));
    write(s, "skip/me.tmp", b"temporary");
    write(s, "logs/keep.log", b"kept by include");
    let secret = write(outside.path(), "secret.txt", b"must never be uploaded");
    std::os::unix::fs::symlink(&secret, s.join("link-out.txt")).unwrap();

    let out = run(uploader(home.path())
        .arg("upload")
        .arg(s)
        .arg("s3://e2e-bucket/run1/")
        .args(["--embedded-s3"])
        .arg(store_dir.path())
        .args([
            "--json",
            "--allow-mime",
            "application/octet-stream",
            "--multipart-threshold",
            "5MiB",
            "--part-size",
            "5MiB",
        ])
        .args([
            "--exclude",
            "*.tmp",
            "--exclude",
            "logs/*",
            "--include",
            "*",
            "--include",
            "logs/keep.log",
        ]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    let lines = json_lines(&out);
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary");
    let files: Vec<_> = lines.iter().filter(|l| l["type"] == "file").collect();
    assert_eq!(
        files.len() + 1,
        lines.len(),
        "nothing but JSON objects on stdout"
    );
    let uploaded: Vec<&str> = files
        .iter()
        .filter(|f| f["status"] == "uploaded")
        .map(|f| f["key"].as_str().unwrap())
        .collect();
    let mut expected = vec![
        "run1/.hidden/.config",
        "run1/big/large.bin",
        "run1/empty.txt",
        "run1/nested/deeper/leaf.csv",
        "run1/top.txt",
        "run1/unicode/caf\u{e9} \u{1F600} and spaces.txt",
    ];
    let mut got = uploaded.clone();
    got.sort();
    expected.sort();
    // Excludes win over includes: logs/keep.log matches the exclude `logs/*`.
    assert_eq!(got, expected, "{}", describe(&out));
    assert_eq!(summary["uploaded"], 6);
    assert_eq!(summary["failed"], 0);
    let link = files
        .iter()
        .find(|f| f["source"].as_str().unwrap().ends_with("link-out.txt"))
        .expect("the symlink is reported");
    assert_eq!(link["status"], "skipped");
    let big = files
        .iter()
        .find(|f| f["key"] == "run1/big/large.bin")
        .unwrap();
    assert_eq!(big["parts"], 3);
    assert!(big["checksum"].as_str().unwrap().starts_with("crc32c:"));
    assert!(big["etag"].as_str().unwrap().ends_with("-3\""));

    let (_server, store) = read_back(store_dir.path(), "e2e-bucket").await;
    for (key, want) in [
        ("run1/top.txt", b"top level\n".to_vec()),
        ("run1/nested/deeper/leaf.csv", b"a,b\n1,2\n".to_vec()),
        (
            "run1/unicode/caf\u{e9} \u{1F600} and spaces.txt",
            UNICODE_TEXT.as_bytes().to_vec(),
        ),
        ("run1/empty.txt", Vec::new()),
        ("run1/.hidden/.config", b"hidden=1\n".to_vec()),
        ("run1/big/large.bin", data(11 * MIB + 7, 2)),
    ] {
        let got = store
            .get(key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{key} missing"));
        assert!(got == want, "{key}: bytes differ");
    }
    for absent in [
        "run1/link-out.txt",
        "run1/skip/me.tmp",
        "run1/logs/keep.log",
    ] {
        assert!(
            store.head(absent).await.unwrap().is_none(),
            "{absent} was uploaded"
        );
    }
    assert!(store.list_multipart_uploads("").await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_from_stdin_and_dry_run() {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    write(src.path(), "a/one.txt", b"1");
    write(src.path(), "a/two.txt", b"22");
    write(src.path(), "b/three.txt", b"333");

    // Dry run: everything is planned, nothing is stored.
    let out = run(uploader(home.path())
        .args(["cp", "--dry-run", "--json"])
        .arg(src.path())
        .arg("s3://e2e-bucket/dry/")
        .arg("--embedded-s3")
        .arg(store_dir.path()));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 4);
    assert!(
        lines[..3]
            .iter()
            .all(|l| l["status"] == "skipped"
                && l["reason"].as_str().unwrap().starts_with("dry run"))
    );

    // --files-from -: only the listed paths, keyed relative to SRC; `..` is refused.
    let mut c = uploader(home.path());
    c.args(["upload", "--json", "--files-from", "-"])
        .arg(src.path())
        .arg("s3://e2e-bucket/list/")
        .arg("--embedded-s3")
        .arg(store_dir.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(b"a/two.txt\n./b/three.txt\n../escape.txt\n")
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let mut lines = json_lines(&out);
    let summary = lines.pop().unwrap();
    assert_eq!(summary["type"], "summary");
    // Lines come in completion order; `index` is the input order.
    lines.sort_by_key(|l| l["index"].as_u64());
    let status: Vec<_> = lines
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    assert_eq!(status, ["uploaded", "uploaded", "failed"]);
    assert_eq!(lines[2]["error"]["code"], "invalid_key");

    let (_server, store) = read_back(store_dir.path(), "e2e-bucket").await;
    assert!(
        store.head("dry/a/one.txt").await.unwrap().is_none(),
        "dry run uploaded"
    );
    assert_eq!(
        &store.get("list/a/two.txt").await.unwrap().unwrap()[..],
        b"22"
    );
    assert_eq!(
        &store.get("list/b/three.txt").await.unwrap().unwrap()[..],
        b"333"
    );
    assert!(store.head("list/a/one.txt").await.unwrap().is_none());
}

#[test]
fn invalid_settings_exit_2_before_anything_is_uploaded() {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    write(src.path(), "f.txt", b"x");
    for (flags, needle) in [
        (&["--part-size", "1MiB"][..], "part size"),
        (&["--part-size", "6GiB"][..], "part size"),
        (&["--concurrency", "0"][..], "concurrency"),
        (&["--multipart-threshold", "lots"][..], "invalid size"),
        (&["--checksum", "sha3"][..], "checksum"),
        (&["--metadata", "novalue"][..], "KEY=VALUE"),
        (&["--include", "a[b"][..], "invalid pattern"),
    ] {
        let out = run(uploader(home.path())
            .arg("upload")
            .arg(src.path())
            .arg("s3://e2e-bucket/x/")
            .arg("--embedded-s3")
            .arg(store_dir.path())
            .args(flags));
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {}", describe(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{flags:?}: {err}");
    }
    // A prefix with `..` and a non-S3 destination.
    for dest in ["s3://e2e-bucket/a/../b/", "/tmp/not-s3"] {
        let out = run(uploader(home.path())
            .arg("upload")
            .arg(src.path())
            .arg(dest));
        assert_eq!(out.status.code(), Some(2), "{dest}: {}", describe(&out));
    }
    // Nothing was stored by any of these runs.
    let bucket_dir = store_dir.path().join("e2e-bucket");
    let stored = std::fs::read_dir(&bucket_dir)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(stored, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_and_unknown_bucket_exit_2_before_any_upload() {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "f.txt", b"payload");
    let store_dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(store_dir.path(), "real-bucket")
        .await
        .unwrap();

    let mut c = against(&server, home.path());
    c.env("AWS_SECRET_ACCESS_KEY", "wrong-secret-key-wrong-secret-key")
        .arg("upload")
        .arg(src.path())
        .arg("s3://real-bucket/p/");
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("credentials were rejected"), "{err}");
    assert!(!err.contains("wrong-secret-key"), "a secret was printed");

    let mut c = against(&server, home.path());
    c.arg("upload")
        .arg(src.path())
        .arg("s3://no-such-bucket/p/");
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not exist"),
        "{}",
        describe(&out)
    );

    // `check` reports the same, and succeeds on the real bucket.
    let mut c = against(&server, home.path());
    c.args(["check", "s3://no-such-bucket"]);
    assert_eq!(run_async(c).await.status.code(), Some(2));
    let mut c = against(&server, home.path());
    c.args(["check", "s3://real-bucket/p/", "--write-probe"]);
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("real-bucket reachable"));

    let store = S3Store::connect(&server.s3_config()).await.unwrap();
    assert!(
        store.head("p/f.txt").await.unwrap().is_none(),
        "something was uploaded"
    );
    assert!(
        store.list_multipart_uploads("").await.unwrap().is_empty(),
        "the probe left an upload"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_aborts_an_orphaned_multipart_upload() {
    let home = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(store_dir.path(), "real-bucket")
        .await
        .unwrap();
    let store = S3Store::connect(&server.s3_config()).await.unwrap();
    let key = uploader_core::ObjectKey::derive(
        &uploader_core::KeyPrefix::new("orphans").unwrap(),
        "half.bin",
    )
    .unwrap();
    let id = store
        .create_multipart(&key, &Default::default())
        .await
        .unwrap();
    let other = uploader_core::ObjectKey::derive(
        &uploader_core::KeyPrefix::new("elsewhere").unwrap(),
        "keep.bin",
    )
    .unwrap();
    store
        .create_multipart(&other, &Default::default())
        .await
        .unwrap();

    // Young uploads are kept by the default age; a dry run aborts nothing.
    let mut c = against(&server, home.path());
    c.args(["cleanup", "s3://real-bucket/orphans/", "--json"]);
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    assert_eq!(json_lines(&out)[0]["action"], "kept_young");
    let mut c = against(&server, home.path());
    c.args([
        "cleanup",
        "s3://real-bucket/orphans/",
        "--older-than",
        "0s",
        "--dry-run",
        "--json",
    ]);
    let out = run_async(c).await;
    assert_eq!(json_lines(&out)[0]["action"], "would_abort");
    assert_eq!(
        store
            .list_multipart_uploads("orphans/")
            .await
            .unwrap()
            .len(),
        1
    );

    let mut c = against(&server, home.path());
    c.args([
        "cleanup",
        "s3://real-bucket/orphans/",
        "--older-than",
        "0s",
        "--json",
    ]);
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["upload_id"], id.as_str());
    assert_eq!(lines[0]["action"], "aborted");
    assert!(
        store
            .list_multipart_uploads("orphans/")
            .await
            .unwrap()
            .is_empty()
    );
    // Outside the prefix: untouched.
    assert_eq!(
        store
            .list_multipart_uploads("elsewhere/")
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_aborts_open_multipart_uploads_and_exits_130() {
    interrupted_by("-INT", "intr/").await;
}

/// SIGTERM (how Kubernetes, Slurm and AWS Batch stop a task) is an interruption like Ctrl-C.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_aborts_open_multipart_uploads_and_exits_130() {
    interrupted_by("-TERM", "term/").await;
}

async fn interrupted_by(signal: &str, prefix: &str) {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    // Sparse files: large, instant to create.
    for i in 0..4 {
        let f = std::fs::File::create(src.path().join(format!("big{i}.bin"))).unwrap();
        f.set_len(400 * MIB as u64).unwrap();
    }
    let store_dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(store_dir.path(), "real-bucket")
        .await
        .unwrap();
    let store = S3Store::connect(&server.s3_config()).await.unwrap();
    let mut c = against(&server, home.path());
    c.args([
        "upload",
        "--json",
        "--concurrency",
        "2",
        "--allow-mime",
        "application/octet-stream",
    ])
    .arg(src.path())
    .arg(format!("s3://real-bucket/{prefix}"))
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    let child = c.spawn().unwrap();
    let pid = child.id();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while store
        .list_multipart_uploads(prefix)
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no multipart upload started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kill = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
    let lines = json_lines(&out);
    let summary = lines.last().unwrap();
    assert_eq!(summary["type"], "summary", "a well-formed summary");
    assert_eq!(summary["cancelled"], true);
    assert!(
        store
            .list_multipart_uploads(prefix)
            .await
            .unwrap()
            .is_empty(),
        "open uploads remain"
    );
}

#[test]
fn help_groups_flags_and_ends_with_examples() {
    let home = tempfile::tempdir().unwrap();
    let out = run(uploader(home.path()).args(["upload", "--help"]));
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for heading in [
        "Selection:",
        "Tuning:",
        "Behaviour:",
        "S3 connection:",
        "Output:",
        "Examples:",
    ] {
        assert!(help.contains(heading), "missing {heading}\n{help}");
    }
    assert!(help.trim_end().ends_with("130 interrupted."), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disallowed_file_fails_alone_and_the_run_exits_1() {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    write(src.path(), "ok/readme.txt", b"fine\n");
    write(src.path(), "ok/data.csv", b"a,b\n");
    write(
        src.path(),
        "bad/photo.png",
        b"<html><script>alert(1)</script></html>",
    );
    write(src.path(), "bad/page.html", b"<!doctype html><p>hi");
    let out = run(uploader(home.path())
        .args(["upload", "--json"])
        .arg(src.path())
        .arg("s3://e2e-bucket/mixed/")
        .arg("--embedded-s3")
        .arg(store_dir.path()));
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    let lines = json_lines(&out);
    let find = |k: &str| {
        lines
            .iter()
            .find(|l| l["key"] == k)
            .unwrap_or_else(|| panic!("{k}"))
    };
    assert_eq!(
        find("mixed/bad/photo.png")["error"]["code"],
        "mime_not_allowed"
    );
    assert_eq!(
        find("mixed/bad/page.html")["error"]["code"],
        "mime_not_allowed"
    );
    assert_eq!(find("mixed/ok/readme.txt")["content_type"], "text/plain");
    let summary = lines.last().unwrap();
    assert_eq!(
        (summary["uploaded"].as_u64(), summary["failed"].as_u64()),
        (Some(2), Some(2))
    );

    let (_server, store) = read_back(store_dir.path(), "e2e-bucket").await;
    assert_eq!(
        &store.get("mixed/ok/readme.txt").await.unwrap().unwrap()[..],
        b"fine\n"
    );
    let meta = store.head("mixed/ok/data.csv").await.unwrap().unwrap();
    assert_eq!(meta.content_type.as_deref(), Some("text/csv"));
    assert!(store.head("mixed/bad/photo.png").await.unwrap().is_none());
    assert!(store.head("mixed/bad/page.html").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_and_plain_http_exit_2_quickly_with_advice() {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "f.txt", b"x");
    let store_dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(store_dir.path(), "real-bucket")
        .await
        .unwrap();

    let mut c = uploader(home.path());
    c.env("AWS_ENDPOINT_URL", server.endpoint_url())
        .env("AWS_REGION", "us-east-1")
        .arg("upload")
        .arg(src.path())
        .arg("s3://real-bucket/p/");
    let t0 = std::time::Instant::now();
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "took {:?}",
        t0.elapsed()
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no AWS credentials found"), "{err}");
    assert!(err.contains("AWS_ACCESS_KEY_ID"), "says what to do: {err}");

    let mut c = against(&server, home.path());
    c.args([
        "check",
        "s3://real-bucket",
        "--endpoint-url",
        "http://192.0.2.1:9000",
    ]);
    let out = run_async(c).await;
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-http"));
}

/// The README's main job: uploading this repository's docs to the embedded endpoint works,
/// prose that mentions `<svg>` or `<script>` included.
#[test]
fn the_readme_main_job_uploads_the_docs() {
    let home = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
    let out = run(uploader(home.path())
        .arg("upload")
        .arg(&docs)
        .arg("s3://demo/docs/")
        .arg("--embedded-s3")
        .arg(store_dir.path()));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let n = std::fs::read_dir(&docs).unwrap().count();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&format!("{n} files uploaded")), "{stdout}");
}

/// A source named on the command line that does not exist, or cannot be read, makes the
/// command wrong: exit 2 naming the path, before anything is uploaded, even though the other
/// sources are fine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_unreadable_source_exits_2_and_nothing_is_stored() {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    let good = write(src.path(), "good.txt", b"fine\n");
    write(src.path(), "tree/inner.txt", b"also fine\n");
    let missing = src.path().join("no-such-file.txt");
    // A path through a file: the error is not "not found" but "not a directory".
    let through_a_file = good.join("child.txt");
    for (bad, needle) in [
        (
            &missing,
            format!("source {} does not exist", missing.display()),
        ),
        (
            &through_a_file,
            format!("cannot read the source {}", through_a_file.display()),
        ),
    ] {
        for json in [false, true] {
            let mut c = uploader(home.path());
            c.arg("upload")
                .arg(&good)
                .arg(src.path().join("tree"))
                .arg(bad)
                .arg("s3://e2e-bucket/srcs/")
                .arg("--embedded-s3")
                .arg(store_dir.path());
            if json {
                c.arg("--json");
            }
            let out = run_async(c).await;
            assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(&needle), "{needle:?} in {err}");
            assert!(out.stdout.is_empty(), "{}", describe(&out));
        }
    }
    // Nothing reached the store: not the good file, not the tree.
    let (_server, store) = read_back(store_dir.path(), "e2e-bucket").await;
    for key in ["srcs/good.txt", "srcs/inner.txt"] {
        assert!(store.head(key).await.unwrap().is_none(), "{key} was stored");
    }
    // The same sources without the bad one upload.
    drop(_server);
    let out = run_async({
        let mut c = uploader(home.path());
        c.arg("upload")
            .arg(&good)
            .arg(src.path().join("tree"))
            .arg("s3://e2e-bucket/srcs/")
            .arg("--embedded-s3")
            .arg(store_dir.path());
        c
    })
    .await;
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
}

/// The tuning settings are one layer for `upload` and `serve`: a flag wins over its
/// `UPLOADER_*` variable, which wins over the default.
#[test]
fn tuning_comes_from_the_flag_then_the_environment_then_the_default() {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let store_dir = tempfile::tempdir().unwrap();
    write(src.path(), "blob.bin", &data(4096, 7));
    let upload = |env: &[(&str, &str)], flags: &[&str]| {
        let mut c = uploader(home.path());
        c.args(["upload", "--dry-run", "--json"])
            .arg(src.path())
            .arg("s3://e2e-bucket/tuning/")
            .arg("--embedded-s3")
            .arg(store_dir.path())
            .args(flags)
            .envs(env.iter().copied());
        run(&mut c)
    };
    // Default: binary content is not allowed (exit 1, mime_not_allowed).
    let out = upload(&[], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
    assert_eq!(json_lines(&out)[0]["error"]["code"], "mime_not_allowed");
    // The environment allows it (a comma-separated list, like the daemon's).
    let out = upload(
        &[("UPLOADER_ALLOW_MIME", "text/x-nothing,application/*")],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    // A bad value in the environment is a usage error naming the setting...
    let allow = ("UPLOADER_ALLOW_MIME", "application/octet-stream");
    let out = upload(&[allow, ("UPLOADER_PART_SIZE", "1MiB")], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("part size"));
    let out = upload(&[allow, ("UPLOADER_CONCURRENCY", "0")], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    // ...and the flag wins over it.
    let out = upload(
        &[
            allow,
            ("UPLOADER_PART_SIZE", "1MiB"),
            ("UPLOADER_CONCURRENCY", "0"),
        ],
        &["--part-size", "8MiB", "-c", "4"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));

    // `serve` reads the same variables; its settings are refused before it listens.
    let serve = |env: &[(&str, &str)], flags: &[&str]| {
        let mut c = uploader(home.path());
        c.args(["serve", "--embedded-s3"])
            .arg(store_dir.path())
            .args(flags)
            .envs(env.iter().copied());
        run(&mut c)
    };
    let out = serve(
        &[
            ("UPLOADER_BUCKET", "e2e-bucket"),
            ("UPLOADER_CONCURRENCY", "0"),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("concurrency"));
    // The flag wins over UPLOADER_CONCURRENCY, so the next check speaks: a public address
    // from UPLOADER_LISTEN without tokens.
    let out = serve(
        &[
            ("UPLOADER_BUCKET", "e2e-bucket"),
            ("UPLOADER_CONCURRENCY", "0"),
            ("UPLOADER_LISTEN", "0.0.0.0:0"),
        ],
        &["--concurrency", "8"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to serve 0.0.0.0:0 without authentication"),
        "{err}"
    );
    // The daemon's own --max-buffer default (512MiB) is what too many uploads run out of.
    let out = serve(
        &[("UPLOADER_BUCKET", "e2e-bucket")],
        &["--max-concurrent-uploads", "600"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--max-buffer must be at least 624 MiB for 600 concurrent uploads"),
        "{err}"
    );
    // Nothing was stored by any of these runs.
    let stored = std::fs::read_dir(store_dir.path().join("e2e-bucket"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(stored, 0);
}

/// The CLI sends CRC32C unless told otherwise (a probe would cost every run about four round
/// trips); the daemon probes (`auto`), once, at start-up. Both say so in `--help`.
#[test]
fn the_checksum_default_is_crc32c_for_upload_and_auto_for_serve() {
    let home = tempfile::tempdir().unwrap();
    for (command, default) in [
        ("upload", "[default: crc32c]"),
        ("serve", "[default: auto]"),
    ] {
        let out = run(uploader(home.path()).args([command, "--help"]));
        assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
        let help = String::from_utf8_lossy(&out.stdout);
        let line = help
            .lines()
            .skip_while(|l| !l.trim_start().starts_with("--checksum"))
            .take_while(|l| !l.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        assert!(line.contains(default), "{command}: {line}");
    }
}
