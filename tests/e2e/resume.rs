//! `uploader upload --resume` against real servers (the embedded endpoint and rclone serve s3),
//! through the counting proxy of tests/proxy.rs, which also throttles (every UploadPart or
//! PutObject stalled): what a resumed job sends again (UploadPart and PutObject requests and
//! bytes counted at the proxy), what it trusts (parts verified against the local bytes, files
//! unchanged since they were stored) and that what ends up stored is byte-identical.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use uploader_core::store::list_all;
use uploader_core::{EmbeddedS3, ObjectStore as _, S3Store};
use uploader_e2e::proxy::{Fault, FaultPlan, Op, Proxy};
use uploader_e2e::servers::ThirdParty;
use uploader_e2e::{data, describe, json_lines, write};

use crate::harness::Target;

const MIB: usize = 1024 * 1024;

/// Two tests running `$check` (an `async fn(&Target)`): on the embedded endpoint and on rclone.
macro_rules! on_embedded_and_rclone {
    ($check:ident, $embedded:ident, $rclone:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $embedded() {
            let (_dir, server) = embedded().await;
            $check(&Target::embedded(&server)).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $rclone() {
            let server = ThirdParty::rclone();
            $check(&Target::third_party(&server, "rclone")).await;
        }
    };
}

/// The embedded endpoint on a temporary directory (returned too: its files are the server's).
async fn embedded() -> (tempfile::TempDir, EmbeddedS3) {
    let dir = tempfile::tempdir().unwrap();
    let server = EmbeddedS3::start(dir.path(), "resume-bucket")
        .await
        .unwrap();
    (dir, server)
}

/// A proxy in front of `t` that stalls every request of `op` by `stall` (a throttle).
async fn throttled(t: &Target, op: Op, stall: Duration) -> Proxy {
    let plan = FaultPlan {
        seed: 1,
        rate: 1.0,
        faults: vec![Fault::Stall(stall)],
        ops: vec![op],
        limit: None,
    };
    Proxy::start(&t.endpoint, plan).await
}

/// `uploader upload --json SRC s3://bucket/DEST` through `proxy`, 8 MiB parts, octet-stream
/// allowed, state (journal, checksum cache) under `home`.
fn upload(
    t: &Target,
    home: &Path,
    proxy: &Proxy,
    src: &Path,
    dest: &str,
    extra: &[&str],
) -> Command {
    let mut c = t.command(home);
    c.args(["upload", "--json", "--endpoint-url", &proxy.endpoint()]);
    if !extra.contains(&"--concurrency") {
        c.args(["--concurrency", "2"]);
    }
    if !extra.contains(&"--part-size") {
        c.args(["--part-size", "8MiB"]);
    }
    c.args(["--multipart-threshold", "8MiB"])
        .args(["--allow-mime", "application/octet-stream"])
        .args(extra)
        .arg(src)
        .arg(format!("s3://{}/{dest}", t.bucket))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

async fn finish(child: Child) -> Output {
    tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap()
}

async fn run(mut c: Command) -> Output {
    finish(c.spawn().unwrap()).await
}

fn summary(out: &Output) -> serde_json::Value {
    let lines = json_lines(out);
    let s = lines.last().cloned().unwrap_or_default();
    assert_eq!(s["type"], "summary", "{}", describe(out));
    s
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// The parts of the one pending upload under `prefix` (0 while there is none).
async fn listed_parts(store: &S3Store, prefix: &str) -> usize {
    let pending = store.list_multipart_uploads(prefix).await.unwrap();
    match pending.first() {
        Some(u) => store.list_parts(&u.key, &u.upload_id).await.unwrap().len(),
        None => 0,
    }
}

/// Waits until at least `n` parts are stored: with 2 requests in flight, part `n + 2` reaches
/// the proxy only once `n` parts were answered. Then the parts the server lists (at least `n`).
async fn wait_for_parts(proxy: &Proxy, store: &S3Store, prefix: &str, n: usize) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while proxy.stats.seen(Op::UploadPart) < (n + 2) as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no progress after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let listed = listed_parts(store, prefix).await;
    assert!(listed >= n, "{listed} parts listed, {n} expected");
    listed
}

/// The one journal under `home` (the default state directory).
fn journal(home: &Path) -> PathBuf {
    let dir = home.join(".local/state/uploader/jobs");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.pop().unwrap()
}

async fn assert_stored(store: &S3Store, key: &str, want: &[u8]) {
    let got = store.get(key).await.unwrap().expect("the object is stored");
    assert!(
        got == want,
        "{key}: {} bytes stored, {} expected, or other bytes",
        got.len(),
        want.len()
    );
}

async fn assert_nothing_pending(store: &S3Store, prefix: &str) {
    let pending = store.list_multipart_uploads(prefix).await.unwrap();
    assert!(pending.is_empty(), "pending uploads remain: {pending:?}");
}

/// A job interrupted with its large file half sent, its multipart upload left open.
struct Interrupted {
    src: tempfile::TempDir,
    home: tempfile::TempDir,
    file: PathBuf,
    bytes: Vec<u8>,
    /// Parts the server listed when the interruption was sent.
    listed_before: usize,
    /// The command the CLI printed to resume (not after `kill -9`).
    resume_command: Option<String>,
}

const PARTS: usize = 16;

/// What `--resume` of an interrupted job did.
struct Resumed {
    summary: serde_json::Value,
    /// Parts reused (the summary's).
    reused: usize,
    /// UploadPart requests and bytes the proxy saw.
    parts_sent: usize,
    bytes_sent: u64,
}

impl Interrupted {
    /// Runs `--resume` (and `extra`) through `proxy`; checks it exits 0, stores `want` at `dest` + `big.bin`
    /// byte for byte and leaves no upload pending.
    async fn resume(
        &self,
        t: &Target,
        proxy: &Proxy,
        dest: &str,
        want: &[u8],
        extra: &[&str],
    ) -> Resumed {
        let (parts0, bytes0) = (
            proxy.stats.seen(Op::UploadPart),
            proxy.stats.bytes(Op::UploadPart),
        );
        let (home, src) = (self.home.path(), self.src.path());
        let args = [&["--resume"], extra].concat();
        let out = run(upload(t, home, proxy, src, dest, &args)).await;
        assert_eq!(out.status.code(), Some(0), "{}: {}", t.name, describe(&out));
        let summary = summary(&out);
        let reused = summary["resumed"]["parts_reused"].as_u64().unwrap() as usize;
        let direct = t.direct().await;
        assert_stored(&direct, &format!("{dest}big.bin"), want).await;
        assert_nothing_pending(&direct, dest).await;
        Resumed {
            summary,
            reused,
            parts_sent: (proxy.stats.seen(Op::UploadPart) - parts0) as usize,
            bytes_sent: proxy.stats.bytes(Op::UploadPart) - bytes0,
        }
    }
}

/// Uploads a 128 MiB file (16 parts of 8 MiB) through `proxy`, which stalls each part, and
/// interrupts the CLI with `sig` once the server lists `after` parts: `-KILL` (nothing is
/// cleaned up, the journal is as last flushed) or `-INT` with `--resumable` (parts in flight
/// finish, the upload is kept).
async fn interrupt(t: &Target, proxy: &Proxy, dest: &str, sig: &str, after: usize) -> Interrupted {
    let src = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let bytes = data(PARTS * 8 * MIB, 7);
    let file = write(src.path(), "big.bin", &bytes);
    let extra: &[&str] = if sig == "-KILL" {
        &[]
    } else {
        &["--resumable"]
    };
    let child = upload(t, home.path(), proxy, src.path(), dest, extra)
        .spawn()
        .unwrap();
    let direct = t.direct().await;
    let listed_before = wait_for_parts(proxy, &direct, dest, after).await;
    signal(&child, sig);
    let out = finish(child).await;
    let err = String::from_utf8_lossy(&out.stderr);
    let resume_command = err
        .lines()
        .find_map(|l| l.strip_prefix("resume with: "))
        .map(str::to_owned);
    if sig == "-KILL" {
        assert_eq!(out.status.code(), None, "killed: {}", describe(&out));
    } else {
        assert_eq!(out.status.code(), Some(130), "{}", describe(&out));
        let cmd = resume_command.as_deref().unwrap_or_default();
        assert!(cmd.ends_with(" --resume"), "{err}");
    }
    let now = listed_parts(&direct, dest).await;
    assert!(
        (after..PARTS).contains(&now),
        "the job must stop with the file half sent: {now} of {PARTS} parts"
    );
    Interrupted {
        src,
        home,
        file,
        bytes,
        listed_before,
        resume_command,
    }
}

/// `kill -9` while a large file is half sent; `--resume` sends only the missing parts.
///
/// The resume is given another `--part-size`: the upload keeps the part size it was begun with.
///
/// The 1 GiB is 128 MiB here (16 parts of 8 MiB) to stay well under 20 s on a 2-core CI
/// machine with a debug build; the part count, not the size, is what the test is about.
async fn kill_9_then_resume(t: &Target) {
    let proxy = throttled(t, Op::UploadPart, Duration::from_millis(300)).await;
    let dest = "kill9/";
    let i = interrupt(t, &proxy, dest, "-KILL", 6).await;
    // Another --part-size: the upload in progress keeps its own.
    let r = i
        .resume(t, &proxy, dest, &i.bytes, &["--part-size", "16MiB"])
        .await;
    let not_resent = r.summary["resumed"]["bytes_not_resent"].as_u64().unwrap();
    assert!(
        r.reused >= i.listed_before,
        "{}: every part stored before the kill is reused ({} < {})",
        t.name,
        r.reused,
        i.listed_before
    );
    assert_eq!(not_resent, (r.reused * 8 * MIB) as u64);
    assert_eq!(
        r.parts_sent,
        PARTS - r.reused,
        "{}: only the missing parts",
        t.name
    );
    assert_eq!(
        r.bytes_sent,
        i.bytes.len() as u64 - not_resent,
        "{}",
        t.name
    );
}

on_embedded_and_rclone!(
    kill_9_then_resume,
    kill_9_mid_file_then_resume_sends_only_the_missing_parts_embedded,
    kill_9_mid_file_then_resume_sends_only_the_missing_parts_rclone
);

/// SIGTERM (how job runners stop a task) with `--resumable` keeps the upload open, and the
/// command the CLI prints, run as it is by a shell, resumes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_the_upload_and_the_printed_command_resumes_it() {
    let (_dir, server) = embedded().await;
    let t = Target::embedded(&server);
    let proxy = throttled(&t, Op::UploadPart, Duration::from_millis(200)).await;
    let dest = "term/";
    let i = interrupt(&t, &proxy, dest, "-TERM", 3).await;
    let direct = t.direct().await;
    let kept = listed_parts(&direct, dest).await;
    let cmd = i.resume_command.clone().expect("the command is printed");
    // The printed command, with the environment the first run had.
    let first = t.command(i.home.path());
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(&cmd)
        .current_dir(std::env::current_dir().unwrap());
    for (k, v) in first.get_envs() {
        match v {
            Some(v) => sh.env(k, v),
            None => sh.env_remove(k),
        };
    }
    sh.stdout(Stdio::piped()).stderr(Stdio::piped());
    let parts0 = proxy.stats.seen(Op::UploadPart);
    let out = run(sh).await;
    assert_eq!(out.status.code(), Some(0), "{cmd}: {}", describe(&out));
    let reused = summary(&out)["resumed"]["parts_reused"].as_u64().unwrap() as usize;
    assert_eq!(reused, kept, "every kept part is reused");
    assert_eq!(
        (proxy.stats.seen(Op::UploadPart) - parts0) as usize,
        PARTS - kept
    );
    assert_stored(&direct, "term/big.bin", &i.bytes).await;
    assert_nothing_pending(&direct, dest).await;
}

/// A 2 000-file tree interrupted (SIGINT) at about half: `--resume` PUTs only the files not yet
/// stored, and every object is present with its bytes.
async fn two_thousand_files(t: &Target) {
    const FILES: usize = 2000;
    let src = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let content = |i: usize| data(100 + (i * 37) % 3000, i as u64);
    for i in 0..FILES {
        write(src.path(), &format!("d{}/f{i}.bin", i % 20), &content(i));
    }
    let proxy = throttled(t, Op::PutObject, Duration::from_millis(15)).await;
    let dest = "tree/";
    let extra = ["--concurrency", "8", "--resumable"];
    let child = upload(t, home.path(), &proxy, src.path(), dest, &extra)
        .spawn()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while proxy.stats.seen(Op::PutObject) < (FILES / 2) as u64 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload does not progress"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    signal(&child, "-INT");
    let first = finish(child).await;
    assert_eq!(first.status.code(), Some(130), "{}", describe(&first));
    let done = summary(&first)["uploaded"].as_u64().unwrap() as usize;
    assert!(
        (FILES / 3..FILES).contains(&done),
        "interrupted at about half: {done}"
    );
    let puts0 = proxy.stats.seen(Op::PutObject);
    assert_eq!(puts0 as usize, done, "each stored file was one PUT");

    let second = run(upload(
        t,
        home.path(),
        &proxy,
        src.path(),
        dest,
        &["--concurrency", "8", "--resume"],
    ))
    .await;
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));
    let s = summary(&second);
    assert_eq!(s["uploaded"].as_u64().unwrap() as usize, FILES - done);
    assert_eq!(
        s["resumed"]["files_skipped"].as_u64().unwrap() as usize,
        done
    );
    let puts = proxy.stats.seen(Op::PutObject) - puts0;
    assert_eq!(
        puts as usize,
        FILES - done,
        "only the files not yet stored are PUT"
    );

    let direct = t.direct().await;
    let listed = list_all(&direct, dest).await.unwrap();
    assert_eq!(listed.len(), FILES);
    for i in 0..FILES {
        let key = format!("tree/d{}/f{i}.bin", i % 20);
        assert_stored(&direct, &key, &content(i)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_halfway_through_2000_files_then_resume_puts_only_the_rest() {
    let (_dir, server) = embedded().await;
    two_thousand_files(&Target::embedded(&server)).await;
}

/// A source rewritten between the interruption and the resume (same size, other bytes, another
/// mtime) is uploaded whole, its old upload aborted, and stored with its new bytes.
async fn source_changed(t: &Target) {
    let proxy = throttled(t, Op::UploadPart, Duration::from_millis(200)).await;
    let dest = "changed/";
    let i = interrupt(t, &proxy, dest, "-INT", 4).await;
    let new = data(i.bytes.len(), 99);
    // A later mtime (some filesystems keep whole seconds).
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&i.file, &new).unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(2);
    std::fs::File::options()
        .write(true)
        .open(&i.file)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let r = i.resume(t, &proxy, dest, &new, &[]).await;
    assert_eq!(r.reused, 0, "{}", t.name);
    assert_eq!(r.parts_sent, PARTS, "{}: uploaded whole", t.name);
}

on_embedded_and_rclone!(
    source_changed,
    a_source_changed_before_the_resume_is_uploaded_whole_embedded,
    a_source_changed_before_the_resume_is_uploaded_whole_rclone
);

/// A part whose journal record was tampered with, and a part whose bytes on the server are not
/// the local ones, are both sent again, never trusted; the object ends up right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_that_do_not_match_the_local_bytes_are_sent_again() {
    let (dir, server) = embedded().await;
    let t = Target::embedded(&server);
    let proxy = throttled(&t, Op::UploadPart, Duration::from_millis(200)).await;
    let dest = "mismatch/";
    let i = interrupt(&t, &proxy, dest, "-INT", 4).await;
    let direct = t.direct().await;
    let listed = listed_parts(&direct, dest).await;
    // The journal's view: part 1's recorded checksum and ETag replaced.
    let path = journal(i.home.path());
    let text = std::fs::read_to_string(&path).unwrap();
    let mut tampered = String::new();
    for line in text.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["t"] == "part" && v["n"] == 1 {
            v["checksum"] = "crc32c:AAAAAA==".into();
            v["etag"] = "\"00000000000000000000000000000000\"".into();
        }
        tampered.push_str(&v.to_string());
        tampered.push('\n');
    }
    assert_ne!(text, tampered, "part 1 is journaled");
    std::fs::write(&path, tampered).unwrap();
    // The server's view: part 2's stored bytes replaced by others of the same size.
    let pending = &direct.list_multipart_uploads(dest).await.unwrap()[0];
    let part2 = dir
        .path()
        .join(format!(".upload_id-{}.part-2", pending.upload_id));
    let len = std::fs::metadata(&part2).unwrap().len() as usize;
    std::fs::write(&part2, data(len, 1234)).unwrap();

    let r = i.resume(&t, &proxy, dest, &i.bytes, &[]).await;
    assert_eq!(
        r.reused,
        listed - 2,
        "the two mismatching parts are not reused"
    );
    assert_eq!(
        r.parts_sent,
        PARTS - listed + 2,
        "the missing parts and the two mismatching ones"
    );
}

/// The journal deleted: the pending upload is found with ListMultipartUploads, its part size
/// inferred from its parts, and every part verified by hashing the local range.
async fn journal_deleted(t: &Target) {
    let proxy = throttled(t, Op::UploadPart, Duration::from_millis(200)).await;
    let dest = "nojournal/";
    let i = interrupt(t, &proxy, dest, "-INT", 4).await;
    let direct = t.direct().await;
    let listed = listed_parts(&direct, dest).await;
    std::fs::remove_file(journal(i.home.path())).unwrap();
    let lists0 = proxy.stats.seen(Op::ListMultipartUploads);
    let r = i.resume(t, &proxy, dest, &i.bytes, &[]).await;
    assert!(
        proxy.stats.seen(Op::ListMultipartUploads) > lists0,
        "the fallback listed"
    );
    assert_eq!(
        r.reused, listed,
        "{}: every listed part verified and reused",
        t.name
    );
    assert_eq!(r.parts_sent, PARTS - listed, "{}", t.name);
    // The upload found without a journal went into the new one, every part with it (the
    // verified ones too): a second interruption would resume from the journal.
    let text = std::fs::read_to_string(journal(i.home.path())).unwrap();
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let count = |t: &str| records.iter().filter(|r| r["t"] == t).count();
    assert_eq!(count("upload"), 1, "{text}");
    assert_eq!(count("part"), PARTS, "{text}");
}

on_embedded_and_rclone!(
    journal_deleted,
    without_its_journal_a_job_resumes_from_list_multipart_uploads_embedded,
    without_its_journal_a_job_resumes_from_list_multipart_uploads_rclone
);

/// Resuming a job that had finished sends nothing and exits 0.
async fn finished_job(t: &Target) {
    let src = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    for i in 0..20 {
        write(src.path(), &format!("s{i}.bin"), &data(1000 + i, i as u64));
    }
    write(src.path(), "big.bin", &data(20 * MIB, 5));
    let proxy = Proxy::start(&t.endpoint, FaultPlan::none()).await;
    let first = run(upload(t, home.path(), &proxy, src.path(), "done/", &[])).await;
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let (puts, parts) = (
        proxy.stats.seen(Op::PutObject),
        proxy.stats.seen(Op::UploadPart),
    );
    let (creates, lists) = (
        proxy.stats.seen(Op::CreateMultipart),
        proxy.stats.seen(Op::ListParts),
    );
    assert_eq!((puts, parts), (20, 3));
    let again = run(upload(
        t,
        home.path(),
        &proxy,
        src.path(),
        "done/",
        &["--resume"],
    ))
    .await;
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let s = summary(&again);
    assert_eq!(s["uploaded"], 0);
    assert_eq!(s["skipped"], 21);
    assert_eq!(s["resumed"]["files_skipped"], 21);
    assert_eq!(proxy.stats.seen(Op::PutObject), puts, "no PUT");
    assert_eq!(proxy.stats.seen(Op::UploadPart), parts, "no part");
    assert_eq!(
        proxy.stats.seen(Op::CreateMultipart),
        creates,
        "no upload created"
    );
    assert_eq!(
        proxy.stats.seen(Op::ListParts),
        lists,
        "no part listed: nothing to resume"
    );
}

on_embedded_and_rclone!(
    finished_job,
    resuming_a_finished_job_uploads_nothing_and_exits_0_embedded,
    resuming_a_finished_job_uploads_nothing_and_exits_0_rclone
);

/// A journal is attacker-reachable: another job's journal is refused (exit 2, left as it is);
/// records for keys outside the destination, garbage and a huge line are ignored with a
/// warning, and a file whose record does not match it is uploaded, never trusted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_journals_are_refused_or_ignored_safely() {
    let (_dir, server) = embedded().await;
    let t = Target::embedded(&server);
    let proxy = Proxy::start(&t.endpoint, FaultPlan::none()).await;
    let src = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    write(src.path(), "a.bin", &data(5000, 1));
    write(src.path(), "b.bin", &data(6000, 2));
    let first = run(upload(&t, home.path(), &proxy, src.path(), "safe/", &[])).await;
    assert_eq!(first.status.code(), Some(0), "{}", describe(&first));
    let path = journal(home.path());
    let text = std::fs::read_to_string(&path).unwrap();

    // Another job (another destination) given this journal: refused, not overwritten.
    let other = run(upload(
        &t,
        home.path(),
        &proxy,
        src.path(),
        "elsewhere/",
        &["--resume", "--journal", path.to_str().unwrap()],
    ))
    .await;
    assert_eq!(other.status.code(), Some(2), "{}", describe(&other));
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("another job"),
        "{}",
        describe(&other)
    );
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        text,
        "left as it is"
    );

    // Records for keys outside the destination, garbage, a huge line; b.bin's record altered
    // (another size): ignored, and b.bin uploaded again.
    let mut tampered = String::new();
    for line in text.lines() {
        let mut v: serde_json::Value = serde_json::from_str(line).unwrap();
        if v["t"] == "done" && v["key"] == "safe/b.bin" {
            v["size"] = 1.into();
        }
        tampered.push_str(&v.to_string());
        tampered.push('\n');
    }
    tampered.push_str("{\"t\":\"done\",\"key\":\"../etc/x\",\"size\":1,\"mtime_ns\":1,\"ino\":1,\"etag\":null,\"checksum\":null}\n");
    tampered.push_str("{\"t\":\"upload\",\"key\":\"other/victim\",\"upload_id\":\"x\",\"part_size\":8388608,\"alg\":\"crc32c\",\"size\":1,\"mtime_ns\":1,\"ino\":1,\"token\":\"t\"}\n");
    tampered.push_str("\u{1}\u{2} garbage\n");
    tampered.push_str(&format!(
        "{{\"t\":\"done\",\"key\":\"safe/{}\"}}\n",
        "x".repeat(200_000)
    ));
    std::fs::write(&path, tampered).unwrap();
    let aborts0 = proxy.stats.seen(Op::AbortMultipart);
    let puts0 = proxy.stats.seen(Op::PutObject);
    let again = run(upload(
        &t,
        home.path(),
        &proxy,
        src.path(),
        "safe/",
        &["--resume"],
    ))
    .await;
    assert_eq!(again.status.code(), Some(0), "{}", describe(&again));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("outside the job's destination"), "{err}");
    assert!(
        err.contains("over 65536 bytes") && err.contains("malformed"),
        "{err}"
    );
    let s = summary(&again);
    assert_eq!(s["resumed"]["files_skipped"], 1, "a.bin only");
    assert_eq!(
        proxy.stats.seen(Op::PutObject) - puts0,
        1,
        "b.bin is sent again"
    );
    assert_eq!(
        proxy.stats.seen(Op::AbortMultipart),
        aborts0,
        "nothing outside is aborted"
    );
    let direct = t.direct().await;
    let keys: Vec<String> = list_all(&direct, "")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["safe/a.bin", "safe/b.bin"]);
}

/// `uploader jobs` lists a resumable and a finished job; `jobs clean` removes the finished one,
/// keeps the resumable one while it is younger than `--older-than`, and once abandoned aborts
/// its multipart upload and removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_lists_resumable_jobs_and_clean_removes_finished_and_abandoned_ones() {
    let (_dir, server) = embedded().await;
    let t = Target::embedded(&server);
    let proxy = throttled(&t, Op::UploadPart, Duration::from_millis(200)).await;
    let i = interrupt(&t, &proxy, "jobs/", "-INT", 2).await;
    let home = i.home.path();
    // A finished job in the same state directory.
    let small = tempfile::tempdir().unwrap();
    write(small.path(), "s.bin", &data(100, 1));
    let done = run(upload(&t, home, &proxy, small.path(), "small/", &[])).await;
    assert_eq!(done.status.code(), Some(0), "{}", describe(&done));

    let jobs = |args: &[&str]| {
        let mut c = t.command(home);
        c.arg("jobs").args(args);
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        c
    };
    let listed = run(jobs(&["--json"])).await;
    assert_eq!(listed.status.code(), Some(0), "{}", describe(&listed));
    let mut lines = json_lines(&listed);
    lines.sort_by_key(|l| l["status"].as_str().unwrap_or_default().to_owned());
    assert_eq!(lines.len(), 2, "{}", describe(&listed));
    assert_eq!(lines[0]["status"], "finished");
    assert_eq!(lines[0]["files_done"], 1);
    assert_eq!(lines[1]["status"], "resumable");
    assert_eq!(lines[1]["open_uploads"], 1);
    assert!(lines[1]["parts_done"].as_u64().unwrap() >= 2);
    let bucket = &t.bucket;
    assert_eq!(lines[1]["destination"], format!("s3://{bucket}/jobs/"));

    let endpoint = proxy.endpoint();
    let direct = t.direct().await;
    let young = run(jobs(&["clean", "--endpoint-url", &endpoint])).await;
    assert_eq!(young.status.code(), Some(0), "{}", describe(&young));
    assert_eq!(
        std::fs::read_dir(home.join(".local/state/uploader/jobs"))
            .unwrap()
            .count(),
        1,
        "the finished job is removed, the resumable one kept"
    );
    assert_eq!(
        direct.list_multipart_uploads("jobs/").await.unwrap().len(),
        1
    );

    let old = run(jobs(&[
        "clean",
        "--older-than",
        "0s",
        "--endpoint-url",
        &endpoint,
    ]))
    .await;
    assert_eq!(old.status.code(), Some(0), "{}", describe(&old));
    assert!(
        String::from_utf8_lossy(&old.stdout).contains("aborted"),
        "{}",
        describe(&old)
    );
    assert_nothing_pending(&direct, "jobs/").await;
    assert_eq!(
        std::fs::read_dir(home.join(".local/state/uploader/jobs"))
            .unwrap()
            .count(),
        0
    );
}
