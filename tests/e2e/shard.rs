//! `--shard K/N`: N runs over one tree upload every file exactly once, and the partition is the
//! documented one (rclone's `--hash-filter K/N`), computed here from the definition and checked
//! against rclone itself.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use md5::Digest as _;
use unicode_normalization::UnicodeNormalization as _;
use uploader_core::{EmbeddedS3, ObjectStore as _, S3Store};
use uploader_e2e::servers::venv_bin;
use uploader_e2e::{data, describe, json_lines, run, uploader, write};

/// The documented hash, written from its definition (not by calling the uploader's code):
/// MD5 of the NFC relative path lower-cased a character at a time (Go's simple mapping: 'İ' is
/// 'i'); first 8 bytes little-endian; mod N.
fn shard_of(rel: &str, n: u64) -> u64 {
    let normal: String = rel
        .nfc()
        .map(|c| match c {
            '\u{130}' => "i".to_owned(),
            c => c.to_lowercase().collect(),
        })
        .collect();
    let d = md5::Md5::digest(normal.as_bytes());
    u64::from_le_bytes(d[..8].try_into().unwrap()) % n
}

/// A tree with nested directories, upper case, spaces and non-ASCII names.
fn tree(root: &Path) -> Vec<String> {
    let mut rels = Vec::new();
    for i in 0..70 {
        let rel = match i % 5 {
            0 => format!("top-{i}.bin"),
            1 => format!("Nested/Deeper/File {i}.BIN"),
            2 => format!("caf\u{e9}/\u{fc}ber-{i}.bin"),
            3 if i % 2 == 0 => format!("\u{39f}\u{394}\u{39f}\u{3a3}/\u{130}stanbul-{i}.bin"),
            3 => format!("a/b/c/d/{i}"),
            _ => format!("MiXeD/CaSe-{i}.bin"),
        };
        write(root, &rel, &data(100 + i, i as u64));
        rels.push(rel);
    }
    rels
}

/// Uploads shard `shard` of the tree under `prefix/`; returns the relative paths it uploaded.
fn upload_shard(
    home: &Path,
    src: &Path,
    store: &Path,
    prefix: &str,
    shard: &str,
    envs: &[(&str, &str)],
) -> (BTreeSet<String>, serde_json::Value) {
    let mut c = uploader(home);
    c.env_remove("JOB_COMPLETION_INDEX")
        .env_remove("SLURM_ARRAY_TASK_ID");
    for (k, v) in envs {
        c.env(k, v);
    }
    let out = run(c
        .arg("upload")
        .arg(src)
        .arg(format!("s3://shards/{prefix}/"))
        .arg("--embedded-s3")
        .arg(store)
        .args([
            "--allow-mime",
            "application/octet-stream",
            "--json",
            "--shard",
            shard,
        ]));
    assert_eq!(out.status.code(), Some(0), "{}", describe(&out));
    let mut lines = json_lines(&out);
    let summary = lines.pop().unwrap();
    let strip = format!("{prefix}/");
    let keys = lines
        .iter()
        .filter(|l| l["type"] == "file")
        .map(|l| {
            assert_eq!(l["status"], "uploaded", "{l}");
            l["key"]
                .as_str()
                .unwrap()
                .strip_prefix(&strip)
                .unwrap()
                .to_owned()
        })
        .collect();
    (keys, summary)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_partition_a_tree_exactly_as_documented() {
    let (home, src, store) = (tempdir(), tempdir(), tempdir());
    let rels = tree(src.path());
    let all: BTreeSet<String> = rels.iter().cloned().collect();
    for n in [1u64, 3, 7] {
        let prefix = format!("n{n}");
        let mut union = BTreeSet::new();
        for k in 0..n {
            let (got, summary) = upload_shard(
                home.path(),
                src.path(),
                store.path(),
                &prefix,
                &format!("{k}/{n}"),
                &[],
            );
            assert_eq!(
                summary["shard"],
                format!("{k}/{n}"),
                "the summary names its shard"
            );
            let expected: BTreeSet<String> = rels
                .iter()
                .filter(|r| shard_of(r, n) == k)
                .cloned()
                .collect();
            assert_eq!(got, expected, "shard {k}/{n} is the documented partition");
            assert!(
                union.is_disjoint(&got),
                "shard {k}/{n} overlaps an earlier shard"
            );
            union.extend(got);
        }
        assert_eq!(union, all, "the {n} shards cover the tree");
    }
    // Every file is stored once per N, with its bytes.
    let server = EmbeddedS3::start(store.path(), "shards").await.unwrap();
    let s3 = S3Store::connect(&server.s3_config()).await.unwrap();
    for (i, rel) in rels.iter().enumerate() {
        for n in [1, 3, 7] {
            let got = s3.get(&format!("n{n}/{rel}")).await.unwrap();
            assert_eq!(
                got.as_deref(),
                Some(&data(100 + i, i as u64)[..]),
                "n{n}/{rel}"
            );
        }
    }
}

/// rclone's own `--hash-filter K/N` lists the same partition.
#[test]
fn shards_match_rclone_hash_filter() {
    let src = tempdir();
    let rels = tree(src.path());
    let rclone = venv_bin("rclone");
    for k in 0..3u64 {
        let out = run(std::process::Command::new(&rclone)
            .args([
                "lsf",
                "-R",
                "--files-only",
                "--hash-filter",
                &format!("{k}/3"),
            ])
            .arg(src.path())
            .env("RCLONE_CONFIG", "/dev/null"));
        assert!(out.status.success(), "{}", describe(&out));
        let listed: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.nfc().collect())
            .collect();
        let ours: BTreeSet<String> = rels
            .iter()
            .filter(|r| shard_of(r, 3) == k)
            .map(|r| r.nfc().collect())
            .collect();
        assert_eq!(listed, ours, "rclone --hash-filter {k}/3");
    }
}

/// `auto/N` takes K from the job runner's variable (Kubernetes first, then Slurm, then AWS
/// Batch), and without one refuses to guess.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_shards_read_the_job_runners_index() {
    let (home, src, store) = (tempdir(), tempdir(), tempdir());
    tree(src.path());
    let (explicit, _) = upload_shard(home.path(), src.path(), store.path(), "e", "2/3", &[]);
    let mut by_var = BTreeMap::new();
    for var in [
        "JOB_COMPLETION_INDEX",
        "SLURM_ARRAY_TASK_ID",
        "AWS_BATCH_JOB_ARRAY_INDEX",
    ] {
        let (got, summary) = upload_shard(
            home.path(),
            src.path(),
            store.path(),
            var,
            "auto/3",
            &[(var, "2")],
        );
        assert_eq!(summary["shard"], "2/3");
        by_var.insert(var, got);
    }
    for (var, got) in &by_var {
        assert_eq!(got, &explicit, "auto/3 with {var}=2 is shard 2/3");
    }
    let out = run(uploader(home.path())
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("SLURM_ARRAY_TASK_ID")
        .arg("upload")
        .arg(src.path())
        .arg("s3://shards/none/")
        .arg("--embedded-s3")
        .arg(store.path())
        .args(["--shard", "auto/3"]));
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JOB_COMPLETION_INDEX"));
    for bad in ["3/3", "1/0", "x/2", "1"] {
        let out = run(uploader(home.path())
            .arg("upload")
            .arg(src.path())
            .arg("s3://shards/bad/")
            .arg("--embedded-s3")
            .arg(store.path())
            .args(["--shard", bad]));
        assert_eq!(
            out.status.code(),
            Some(2),
            "--shard {bad}: {}",
            describe(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("invalid shard"),
            "{}",
            describe(&out)
        );
    }
}

/// A listed file that is missing fails in its own shard only: every other shard skips it before
/// looking at it, and exits 0.
#[test]
fn a_missing_listed_file_fails_in_its_own_shard_only() {
    let (home, src, store) = (tempdir(), tempdir(), tempdir());
    write(src.path(), "there.txt", b"here\n");
    let list = src.path().join("list.txt");
    std::fs::write(&list, "there.txt\nmissing-file.txt\n").unwrap();
    let owner = shard_of("missing-file.txt", 3);
    for k in 0..3 {
        let out = run(uploader(home.path())
            .arg("upload")
            .arg(src.path())
            .arg("s3://shards/listed/")
            .arg("--embedded-s3")
            .arg(store.path())
            .arg("--files-from")
            .arg(&list)
            .args(["--json", "--shard", &format!("{k}/3")]));
        let failed = json_lines(&out).pop().unwrap()["failed"].as_u64().unwrap();
        if k == owner {
            assert_eq!(out.status.code(), Some(1), "{}", describe(&out));
            assert_eq!(failed, 1, "{}", describe(&out));
        } else {
            assert_eq!(out.status.code(), Some(0), "shard {k}: {}", describe(&out));
            assert_eq!(failed, 0);
        }
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
