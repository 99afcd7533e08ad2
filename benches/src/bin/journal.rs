//! The job journal's cost (issue 11): the small-file workload with and without a journal, in the
//! same run, alternating, through the library over the embedded S3 endpoint (in process, on a
//! temporary directory); then the time to resume the finished job (every file skipped from the
//! journal) next to the time to read the journal alone.
//!
//! `cargo run --release -p benches --bin journal` (`FILES=N` files of 4 KiB, default 2 000;
//! `ROUNDS=N` alternations, default 3).

use std::sync::Arc;
use std::time::{Duration, Instant};

use uploader_core::journal::{self, JournalConfig};
use uploader_core::{
    EmbeddedS3, KeyPrefix, MimePolicy, RateLimits, S3Store, UploadConfig, Uploader, WalkOptions,
};

fn env(name: &str, default: usize) -> anyhow::Result<usize> {
    Ok(std::env::var(name)
        .ok()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(default))
}

/// Uploads `src` under `prefix`, with a journal at `journal` when given (resuming it with
/// `resume`); returns the wall time and the files skipped as already done.
async fn run(
    store: &Arc<S3Store>,
    src: &std::path::Path,
    prefix: &str,
    journal: Option<(&std::path::Path, bool)>,
) -> anyhow::Result<(Duration, u64)> {
    let prefix = KeyPrefix::new(prefix)?;
    let journal = journal.map(|(path, resume)| JournalConfig {
        path: path.to_owned(),
        id: "bench".into(),
        prefix: prefix.clone(),
        location: "bench".into(),
        bucket: "bench".into(),
        resume,
        command: Vec::new(),
    });
    let uploader = Uploader::builder()
        .with_store(store.clone())
        .with_config(UploadConfig {
            concurrency: 64,
            mime: MimePolicy::new(&["application/octet-stream".into()], &[])?,
            journal,
            ..UploadConfig::default()
        })
        .with_limits(RateLimits::unlimited())
        .build()?;
    let started = Instant::now();
    let report = uploader
        .upload_dir(src, &prefix, WalkOptions::default())
        .wait()
        .await;
    anyhow::ensure!(report.is_success(), "{prefix}: {:?}", report.summary());
    Ok((started.elapsed(), report.resumed.files_skipped))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count = env("FILES", 2000)?;
    let rounds = env("ROUNDS", 3)?;
    let src = tempfile::tempdir()?;
    for i in 0..count {
        std::fs::write(
            src.path().join(format!("f{i:05}.bin")),
            uploader_core::testing::pseudo_random(4096, i as u64),
        )?;
    }
    let data = tempfile::tempdir()?;
    let state = tempfile::tempdir()?;
    let s3 = EmbeddedS3::start(data.path(), "journal").await?;
    let store = Arc::new(S3Store::connect(&s3.s3_config()).await?);
    let rate = |d: Duration| count as f64 / d.as_secs_f64();
    println!("{count} files of 4 KiB, concurrency 64, embedded endpoint");
    println!("| round | without journal (files/s) | with journal (files/s) |");
    println!("|---|---|---|");
    let mut without = Vec::new();
    let mut with = Vec::new();
    for r in 0..rounds {
        let (a, _) = run(&store, src.path(), &format!("off{r}"), None).await?;
        let path = state.path().join(format!("j{r}.ndjson"));
        let (b, _) = run(&store, src.path(), &format!("on{r}"), Some((&path, false))).await?;
        println!("| {r} | {:.0} | {:.0} |", rate(a), rate(b));
        without.push(rate(a));
        with.push(rate(b));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (m0, m1) = (median(&mut without), median(&mut with));
    println!(
        "median: {m0:.0} files/s without, {m1:.0} with ({:+.1} %)",
        (m1 / m0 - 1.0) * 100.0
    );

    // Resuming the finished job of the last round: every file skipped from the journal.
    let path = state.path().join(format!("j{}.ndjson", rounds - 1));
    let read_started = Instant::now();
    let read = journal::read(&path, Some("bench"), None)?.expect("the journal exists");
    let read_took = read_started.elapsed();
    anyhow::ensure!(read.done.len() == count && read.finished);
    let prefix = format!("on{}", rounds - 1);
    let (took, skipped) = run(&store, src.path(), &prefix, Some((&path, true))).await?;
    anyhow::ensure!(skipped == count as u64, "{skipped} of {count} skipped");
    println!(
        "resume of the finished job: {:.1} ms ({count} files skipped); reading its journal alone: {:.1} ms ({} KiB)",
        took.as_secs_f64() * 1000.0,
        read_took.as_secs_f64() * 1000.0,
        std::fs::metadata(&path)?.len() / 1024
    );
    Ok(())
}
