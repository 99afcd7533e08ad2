//! `uploader sync` against real servers: what an unchanged re-run sends (counted at a proxy),
//! the skip modes on an in-place edit whose mtime was restored, multipart objects, objects of
//! another tool (boto3), and `--delete`.

use std::path::Path;
use std::process::{Command, Output};

use uploader_core::store::list_all;
use uploader_core::{EmbeddedS3, ObjectStore as _};
use uploader_e2e::proxy::{FaultPlan, Op, Proxy};
use uploader_e2e::servers::{ThirdParty, boto3_put};
use uploader_e2e::{data, describe, json_lines, run, write};

use crate::harness::Target;

const MIB: usize = 1024 * 1024;

/// `uploader sync SRC s3://bucket/DEST` (or `upload`, as `cmd`) against `endpoint`, with 5 MiB
/// multipart threshold and parts, octet-stream allowed, JSON output and the checksum cache in
/// `home`.
async fn cli(
    t: &Target,
    home: &Path,
    endpoint: &str,
    cmd: &str,
    src: &Path,
    dest: &str,
    extra: &[&str],
) -> Output {
    let mut c: Command = t.command(home);
    c.args([cmd, "--json", "--endpoint-url", endpoint])
        .args(["--multipart-threshold", "5MiB", "--part-size", "5MiB"])
        .args(["--allow-mime", "application/octet-stream"])
        .arg("--checksum-cache")
        .arg(home.join("cache/checksums"))
        .args(extra)
        .arg(src)
        .arg(format!("s3://{}/{dest}", t.bucket));
    tokio::task::spawn_blocking(move || run(&mut c))
        .await
        .unwrap()
}

/// A tree synced to one destination of a server, with the checksum cache in `home`.
struct Tree<'a> {
    t: &'a Target,
    home: &'a Path,
    src: &'a Path,
    dest: &'a str,
}

impl Tree<'_> {
    /// `uploader sync` of the tree, straight to the server.
    async fn sync(&self, extra: &[&str]) -> Output {
        self.sync_via(&self.t.endpoint, extra).await
    }

    /// `uploader sync` of the tree through `endpoint` (a proxy).
    async fn sync_via(&self, endpoint: &str, extra: &[&str]) -> Output {
        cli(
            self.t, self.home, endpoint, "sync", self.src, self.dest, extra,
        )
        .await
    }
}

/// The summary line of a JSON run that exited with `code`.
fn summary(out: &Output, code: i32) -> serde_json::Value {
    assert_eq!(out.status.code(), Some(code), "{}", describe(out));
    let lines = json_lines(out);
    let s = lines.last().unwrap().clone();
    assert_eq!(s["type"], "summary", "{}", describe(out));
    s
}

/// The file lines of a JSON run, by key: (status, reason).
fn by_key(out: &Output) -> std::collections::BTreeMap<String, (String, String)> {
    json_lines(out)
        .into_iter()
        .filter(|l| l["type"] == "file")
        .map(|l| {
            (
                l["key"].as_str().unwrap_or("-").to_owned(),
                (
                    l["status"].as_str().unwrap().to_owned(),
                    l["reason"].as_str().unwrap_or("").to_owned(),
                ),
            )
        })
        .collect()
}

/// Sets `path`'s mtime to `reference`'s, as `touch -r` does (the ctime still moves).
fn touch_like(path: &Path, reference: &Path) {
    let st = Command::new("touch")
        .arg("-r")
        .arg(reference)
        .arg(path)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A re-run over 2 000 unchanged files: no PUT, no file read (the cache), 2 LIST pages, and
/// `heads` HEADs: none where the listing shows the ETags the cache recorded at upload, one per
/// file where it shows none (s3s-fs).
async fn unchanged_rerun(t: &Target, heads: u64) {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    for i in 0..2000 {
        write(
            src.path(),
            &format!("d{}/f{i}.txt", i % 20),
            format!("file {i}\n").repeat(1 + i % 7).as_bytes(),
        );
    }
    let tree = Tree {
        t,
        home: home.path(),
        src: src.path(),
        dest: "tree/",
    };
    // Both runs through one proxy: the cache's object versions are per endpoint.
    let proxy = Proxy::start(&t.endpoint, FaultPlan::none()).await;
    let first = tree.sync_via(&proxy.endpoint(), &[]).await;
    assert_eq!(summary(&first, 0)["uploaded"], 2000);
    let ops = [
        Op::PutObject,
        Op::CreateMultipart,
        Op::UploadPart,
        Op::ListObjects,
        Op::HeadObject,
    ];
    let before: Vec<u64> = ops.iter().map(|op| proxy.stats.seen(*op)).collect();
    let again = tree.sync_via(&proxy.endpoint(), &[]).await;
    let s = summary(&again, 0);
    assert_eq!(s["skipped"], 2000, "{}", describe(&again));
    assert_eq!(s["uploaded"], 0);
    assert_eq!(
        s["hashed"], 0,
        "the cache answers for every file: no file is read"
    );
    assert!(
        by_key(&again)
            .values()
            .all(|(st, why)| st == "skipped" && why == "unchanged (checksum)")
    );
    let seen: Vec<u64> = ops
        .iter()
        .zip(&before)
        .map(|(op, b)| proxy.stats.seen(*op) - b)
        .collect();
    // No write; one listing page per 1 000 objects; a HEAD per file only where the listing has
    // no ETag.
    assert_eq!(seen, [0, 0, 0, 2, heads], "{}: {ops:?}", t.name);

    // Without the cache every file is read again, and still nothing is sent.
    let proxy = Proxy::start(&t.endpoint, FaultPlan::none()).await;
    let uncached = tree
        .sync_via(&proxy.endpoint(), &["--no-checksum-cache"])
        .await;
    let s = summary(&uncached, 0);
    assert_eq!(
        (s["skipped"].as_u64(), s["hashed"].as_u64()),
        (Some(2000), Some(2000))
    );
    assert_eq!(proxy.stats.seen(Op::PutObject), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_over_2000_unchanged_files_sends_no_put_and_reads_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "sync-bucket").await.unwrap();
    unchanged_rerun(&Target::embedded(&server), 2000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_over_2000_unchanged_files_needs_only_the_listing_on_rclone() {
    let server = ThirdParty::rclone();
    unchanged_rerun(&Target::third_party(&server, "rclone"), 0).await;
}

/// An in-place edit with the same size and the mtime put back: `size` and `mtime` skip it (as
/// documented), `checksum` uploads it; the same for a multipart file; unchanged files (small
/// and multipart) are skipped by checksum on the second run.
async fn in_place_edits(t: &Target) {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let refs = tempfile::tempdir().unwrap();
    let small = write(src.path(), "small.txt", b"version one\n");
    let big = write(src.path(), "big.bin", &data(11 * MIB + 5, 1));
    write(src.path(), "same.txt", b"never changes\n");
    let tree = Tree {
        t,
        home: home.path(),
        src: src.path(),
        dest: "edit/",
    };
    let first = tree.sync(&[]).await;
    assert_eq!(summary(&first, 0)["uploaded"], 3, "{}", t.name);
    let again = tree.sync(&[]).await;
    assert_eq!(
        summary(&again, 0)["skipped"],
        3,
        "{}: {}",
        t.name,
        describe(&again)
    );

    for (path, new) in [
        (&small, b"version two\n".to_vec()),
        (&big, data(11 * MIB + 5, 2)),
    ] {
        let r = refs.path().join("ref");
        touch_like(&write(refs.path(), "ref", b""), path);
        std::fs::write(path, &new).unwrap();
        touch_like(path, &r);
    }
    for (mode, reason) in [("size", "unchanged (size)"), ("mtime", "unchanged (mtime)")] {
        let out = tree.sync(&["--skip-existing", mode]).await;
        assert_eq!(summary(&out, 0)["uploaded"], 0, "{}: {mode}", t.name);
        for key in ["edit/small.txt", "edit/big.bin"] {
            assert_eq!(by_key(&out)[key].1, reason, "{}: {key}", t.name);
        }
    }
    let out = tree.sync(&[]).await;
    let s = summary(&out, 0);
    let files = by_key(&out);
    assert_eq!(files["edit/small.txt"].0, "uploaded", "{}", t.name);
    assert_eq!(files["edit/big.bin"].0, "uploaded", "{}", t.name);
    assert_eq!(
        files["edit/same.txt"].1, "unchanged (checksum)",
        "{}",
        t.name
    );
    assert_eq!(
        s["hashed"], 2,
        "{}: only the two edited files are read to compare",
        t.name
    );
    let direct = t.direct().await;
    assert_eq!(
        direct.get("edit/small.txt").await.unwrap().unwrap(),
        &b"version two\n"[..],
        "{}",
        t.name
    );
    assert!(
        direct.get("edit/big.bin").await.unwrap().unwrap() == data(11 * MIB + 5, 2),
        "{}: the stored multipart object has the new bytes",
        t.name
    );
    // And now they compare equal again.
    let last = tree.sync(&[]).await;
    let s = summary(&last, 0);
    assert_eq!(
        (s["skipped"].as_u64(), s["hashed"].as_u64()),
        (Some(3), Some(0)),
        "{}",
        t.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_edits_with_restored_mtimes_on_the_embedded_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "edit-bucket").await.unwrap();
    in_place_edits(&Target::embedded(&server)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_edits_with_restored_mtimes_on_rclone() {
    let server = ThirdParty::rclone();
    in_place_edits(&Target::third_party(&server, "rclone")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_edits_with_restored_mtimes_on_moto() {
    let server = ThirdParty::moto().await;
    in_place_edits(&Target::third_party(&server, "moto")).await;
}

/// Objects boto3 wrote (no metadata of ours): a single-part one is compared by its MD5 ETag
/// (skipped when equal, uploaded when not), a multipart one is uploaded (its ETag is no MD5).
async fn objects_of_another_tool(t: &Target) {
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let same = write(src.path(), "same.bin", &data(100_000, 5));
    write(src.path(), "differs.bin", &data(100_000, 6));
    let big = write(src.path(), "multi.bin", &data(6 * MIB, 7));
    let differs_there = write(other.path(), "d", &data(100_000, 8));
    let put = |key: &str, file: &Path, multipart| {
        boto3_put(&t.endpoint, &t.creds, &t.bucket, key, file, multipart)
    };
    put("b3/same.bin", &same, false);
    put("b3/differs.bin", &differs_there, false);
    put("b3/multi.bin", &big, true);
    let tree = Tree {
        t,
        home: home.path(),
        src: src.path(),
        dest: "b3/",
    };
    let out = tree.sync(&[]).await;
    summary(&out, 0);
    let files = by_key(&out);
    assert_eq!(
        files["b3/same.bin"].1,
        "unchanged (md5 etag)",
        "{}: {}",
        t.name,
        describe(&out)
    );
    assert_eq!(files["b3/differs.bin"].0, "uploaded", "{}", t.name);
    assert_eq!(
        files["b3/multi.bin"].0, "uploaded",
        "{}: a multipart ETag is no MD5: never skipped on a guess",
        t.name
    );
    let direct = t.direct().await;
    assert!(direct.get("b3/differs.bin").await.unwrap().unwrap() == data(100_000, 6));
    let again = tree.sync(&[]).await;
    let files = by_key(&again);
    assert_eq!(
        files["b3/multi.bin"].1, "unchanged (checksum)",
        "{}",
        t.name
    );
    assert_eq!(
        files["b3/differs.bin"].1, "unchanged (checksum)",
        "{}",
        t.name
    );
    // Rewritten behind our back with other bytes of the same size: the listing shows another
    // ETag than the one the cache recorded, so the object is looked at again, and replaced.
    put("b3/differs.bin", &differs_there, false);
    let third = tree.sync(&[]).await;
    assert_eq!(by_key(&third)["b3/differs.bin"].0, "uploaded", "{}", t.name);
    assert!(direct.get("b3/differs.bin").await.unwrap().unwrap() == data(100_000, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_written_by_boto3_on_moto() {
    let server = ThirdParty::moto().await;
    objects_of_another_tool(&Target::third_party(&server, "moto")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_written_by_boto3_on_the_embedded_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "boto-bucket").await.unwrap();
    objects_of_another_tool(&Target::embedded(&server)).await;
}

async fn bucket_keys(t: &Target) -> Vec<String> {
    let direct = t.direct().await;
    let mut keys: Vec<String> = list_all(&direct, "")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_exactly_the_orphans_under_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "del-bucket").await.unwrap();
    let t = Target::embedded(&server);
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let s = src.path();
    for rel in ["a.txt", "gone.txt", "d/b.txt", "d/gone.txt", "x.keep"] {
        write(s, rel, rel.as_bytes());
    }
    let out = cli(&t, home.path(), &t.endpoint, "sync", s, "p/", &[]).await;
    summary(&out, 0);
    // Outside the prefix: another prefix, one that shares its first letter, the root.
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "gone.txt", b"not ours");
    for dest in ["other/", "pp/", ""] {
        let out = cli(
            &t,
            home.path(),
            &t.endpoint,
            "upload",
            outside.path(),
            dest,
            &[],
        )
        .await;
        summary(&out, 0);
    }
    std::fs::remove_file(s.join("gone.txt")).unwrap();
    std::fs::remove_file(s.join("d/gone.txt")).unwrap();
    std::fs::remove_file(s.join("x.keep")).unwrap();
    let before = bucket_keys(&t).await;
    let filters = ["--delete", "--exclude", "*.keep"];

    let dry: Vec<&str> = [&filters[..], &["--dry-run"]].concat();
    let out = cli(&t, home.path(), &t.endpoint, "sync", s, "p/", &dry).await;
    let sm = summary(&out, 0);
    let listed: Vec<(String, String)> = json_lines(&out)
        .into_iter()
        .filter(|l| l["type"] == "delete")
        .map(|l| {
            (
                l["key"].as_str().unwrap().into(),
                l["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    let orphans = ["p/d/gone.txt", "p/gone.txt"];
    let want: Vec<(String, String)> = orphans
        .iter()
        .map(|k| (k.to_string(), "would_delete".to_string()))
        .collect();
    assert_eq!(
        listed, want,
        "x.keep is excluded, so not the sync's to delete"
    );
    assert_eq!(sm["deleted"], 2);
    assert_eq!(bucket_keys(&t).await, before, "a dry run deletes nothing");

    let out = cli(&t, home.path(), &t.endpoint, "sync", s, "p/", &filters).await;
    let sm = summary(&out, 0);
    assert_eq!(sm["deleted"], 2, "{}", describe(&out));
    let after = bucket_keys(&t).await;
    let want: Vec<String> = before
        .iter()
        .filter(|k| !orphans.contains(&k.as_str()))
        .cloned()
        .collect();
    assert_eq!(after, want);
    for k in [
        "gone.txt",
        "other/gone.txt",
        "pp/gone.txt",
        "p/x.keep",
        "p/a.txt",
    ] {
        assert!(
            after.contains(&k.to_string()),
            "{k} must survive: {after:?}"
        );
    }
    // Nothing left to delete: said so.
    let out = cli(&t, home.path(), &t.endpoint, "sync", s, "p/", &filters).await;
    assert_eq!(summary(&out, 0)["deleted"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_refuses_when_a_source_could_not_be_named_or_the_scope_is_unclear() {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "refuse-bucket")
        .await
        .unwrap();
    let t = Target::embedded(&server);
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    write(src.path(), "a.txt", b"a");
    write(src.path(), "b.txt", b"b");
    let out = cli(&t, home.path(), &t.endpoint, "sync", src.path(), "q/", &[]).await;
    summary(&out, 0);
    std::fs::remove_file(src.path().join("b.txt")).unwrap();
    // A name that is not UTF-8 has no key: its object might be any of the listed ones.
    let bad = std::ffi::OsStr::from_bytes(b"bad\xff.txt");
    std::fs::write(src.path().join(bad), b"x").unwrap();
    let before = bucket_keys(&t).await;
    let out = cli(
        &t,
        home.path(),
        &t.endpoint,
        "sync",
        src.path(),
        "q/",
        &["--delete"],
    )
    .await;
    let sm = summary(&out, 1);
    assert!(
        sm["delete_refused"]
            .as_str()
            .unwrap()
            .contains("nothing deleted"),
        "{sm}"
    );
    assert_eq!(bucket_keys(&t).await, before, "nothing was deleted");

    // No prefix (the whole bucket) and --files-from are refused before anything is sent.
    for (dest, extra) in [("", &[][..]), ("q/", &["--files-from", "/dev/null"][..])] {
        let args: Vec<&str> = [&["--delete"][..], extra].concat();
        let out = cli(
            &t,
            home.path(),
            &t.endpoint,
            "sync",
            src.path(),
            dest,
            &args,
        )
        .await;
        assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
        assert!(String::from_utf8_lossy(&out.stderr).contains("--delete"));
    }
    assert_eq!(bucket_keys(&t).await, before);
}

/// The daemon's `skip_existing`: an unchanged body is reported `skipped` (201), nothing is
/// written (a multipart body's upload is aborted); a changed one is stored; `mtime` is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_skips_unchanged_bodies_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "daemon-sync").await.unwrap();
    let t = Target::embedded(&server);
    let home = tempfile::tempdir().unwrap();
    let src = tempfile::tempdir().unwrap();
    let small = write(src.path(), "small.bin", &data(50_000, 1));
    let big = write(src.path(), "big.bin", &data(6 * MIB, 2));
    // The big one first by the CLI: its objects carry the full-object checksum.
    let out = cli(&t, home.path(), &t.endpoint, "upload", &big, "ds/", &[]).await;
    summary(&out, 0);
    let proxy = Proxy::start(&t.endpoint, FaultPlan::none()).await;
    let daemon = crate::harness::Daemon::start(&t, home.path(), &proxy.endpoint());
    let files = [small.as_path(), big.as_path()];
    let (status, body) = daemon
        .post_query(&files, "prefix=ds&skip_existing=checksum")
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["results"][0]["status"], "uploaded", "{body}");
    assert_eq!(body["results"][1]["status"], "skipped", "{body}");
    assert_eq!(body["results"][1]["reason"], "unchanged (checksum)");
    assert_eq!(
        proxy.stats.seen(Op::CompleteMultipart),
        0,
        "the big body was not stored"
    );

    let puts = proxy.stats.seen(Op::PutObject);
    let (status, body) = daemon
        .post_query(&files, "prefix=ds&skip_existing=checksum")
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["summary"]["skipped"], 2, "{body}");
    assert_eq!(body["summary"]["succeeded"], 2, "{body}");
    assert_eq!(proxy.stats.seen(Op::PutObject), puts, "nothing written");
    assert_eq!(proxy.stats.seen(Op::CompleteMultipart), 0);
    assert!(proxy.stats.seen(Op::AbortMultipart) >= 2);

    // Same size, other bytes: stored.
    std::fs::write(&small, data(50_000, 3)).unwrap();
    let (status, body) = daemon
        .post_query(&[small.as_path()], "prefix=ds&skip_existing=checksum")
        .await;
    assert_eq!(
        (status, &body["results"][0]["status"]),
        (201, &"uploaded".into())
    );
    let stored = t.direct().await.get("ds/small.bin").await.unwrap().unwrap();
    assert!(stored == data(50_000, 3));
    // By size, the same-size edit is left as it is (as documented).
    std::fs::write(&small, data(50_000, 4)).unwrap();
    let (_, body) = daemon
        .post_query(&[small.as_path()], "prefix=ds&skip_existing=size")
        .await;
    assert_eq!(body["results"][0]["reason"], "unchanged (size)", "{body}");

    let (status, body) = daemon
        .post_query(&[small.as_path()], "prefix=ds&skip_existing=mtime")
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("mtime"), "{body}");
}
