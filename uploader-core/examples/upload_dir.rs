//! Uploads a directory with a progress display fed by the job's events.
//!
//! Runs against the embedded S3 endpoint in a temporary directory, so no AWS account is needed:
//!
//! ```sh
//! cargo run -p uploader-core --example upload_dir --features embedded
//! ```
//!
//! Against real S3, build the store with `S3Store::connect(&S3Config { bucket, .. })` instead.

use std::collections::HashMap;
use std::sync::Arc;

use uploader_core::{EmbeddedS3, Event, FileOutcome, KeyPrefix, S3Store, Uploader, WalkOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A tree to upload: a few small files, one large enough to go multipart (16 MiB and more,
    // in 8 MiB parts by default), and an HTML page that the default MIME allowlist refuses.
    let src = tempfile::tempdir()?;
    std::fs::create_dir_all(src.path().join("notes"))?;
    std::fs::write(src.path().join("notes/todo.txt"), "buy milk\nwrite docs\n")?;
    std::fs::write(src.path().join("data.csv"), "id,value\n1,42\n2,43\n")?;
    std::fs::write(src.path().join("config.json"), r#"{"retries": 5}"#)?;
    std::fs::write(
        src.path().join("index.html"),
        "<!doctype html><html></html>",
    )?;
    let big: String = (0..400_000).map(|i| format!("line {i:>40}\n")).collect();
    std::fs::write(src.path().join("big.txt"), big)?;

    // The embedded endpoint and a store connected to it over real HTTP.
    let data = tempfile::tempdir()?;
    let s3 = EmbeddedS3::start(data.path(), "demo").await?;
    let store = S3Store::connect(&s3.s3_config()).await?;

    let uploader = Uploader::builder()
        .with_store(Arc::new(store))
        .with_concurrency(8)
        .build()?;
    let mut job = uploader.upload_dir(
        src.path(),
        &KeyPrefix::new("backup/")?,
        WalkOptions::default(),
    );

    // Events are for display only; the report returned by `wait` is authoritative.
    let mut events = job.events().expect("events are taken once");
    let progress = tokio::spawn(async move {
        let mut sizes = HashMap::new();
        let mut sent = HashMap::new();
        while let Some(event) = events.recv().await {
            match event {
                Event::Queued { index, size } => {
                    sizes.insert(index, size);
                }
                Event::Progress { index, bytes } => {
                    let done = sent.entry(index).or_insert(0u64);
                    *done += bytes;
                    let size = sizes.get(&index).copied().unwrap_or(0).max(1);
                    eprintln!(
                        "  #{index}: {done} / {size} bytes ({}%)",
                        *done * 100 / size
                    );
                }
                Event::Finished(report) => {
                    let key = report.key.as_deref().unwrap_or("-");
                    let what = match &report.outcome {
                        FileOutcome::Uploaded { parts, .. } => {
                            format!("uploaded ({parts} part(s))")
                        }
                        FileOutcome::Skipped { reason } => format!("skipped: {reason}"),
                        FileOutcome::Failed { error } => format!("failed: {}", error.message),
                    };
                    eprintln!("  #{} {} → {key}: {what}", report.index, report.source);
                }
                // Retries, aborted multipart uploads, and kinds added later.
                _ => {}
            }
        }
    });

    let report = job.wait().await;
    progress.await?;
    let summary = report.summary();
    println!(
        "{} files: {} uploaded ({} bytes), {} skipped, {} failed, in {:?}",
        summary.total,
        summary.uploaded,
        summary.bytes,
        summary.skipped,
        summary.failed,
        report.elapsed
    );
    // The HTML page is the one expected failure (`mime_not_allowed`); anything else is a bug.
    for f in report.failures() {
        let error = f.error().expect("a failure has an error");
        println!("refused: {} ({})", f.source, error.code.as_str());
    }
    Ok(())
}
