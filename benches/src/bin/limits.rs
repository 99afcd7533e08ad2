//! Rate limits, achieved against set: `--bwlimit` (one budget for the process), `--bwlimit-file`
//! and `--tps-limit`, each at several settings, through the library over the embedded S3
//! endpoint (in process, on a temporary directory). Each cell runs for about `SECONDS` (default
//! 4) at its limit; the table gives the achieved rate and achieved / limit.
//!
//! `cargo run --release -p benches --bin limits` (`SECONDS=8` for steadier figures).

use std::sync::Arc;
use std::time::{Duration, Instant};

use uploader_core::{
    EmbeddedS3, KeyPrefix, MimePolicy, RateLimits, S3Store, UploadConfig, Uploader, WalkOptions,
};

const MIB: f64 = (1 << 20) as f64;

struct Cell {
    what: String,
    limit: f64,
    unit: &'static str,
    achieved: f64,
}

/// Uploads the directory `src` under `prefix` with `limits`; returns the wall time.
async fn run(
    store: &Arc<S3Store>,
    src: &std::path::Path,
    prefix: &str,
    limits: RateLimits,
) -> anyhow::Result<Duration> {
    let uploader = Uploader::builder()
        .with_store(store.clone())
        .with_config(UploadConfig {
            concurrency: 16,
            mime: MimePolicy::new(&["application/octet-stream".into()], &[])?,
            ..UploadConfig::default()
        })
        .with_limits(limits)
        .build()?;
    let started = Instant::now();
    let report = uploader
        .upload_dir(src, &KeyPrefix::new(prefix)?, WalkOptions::default())
        .wait()
        .await;
    anyhow::ensure!(report.is_success(), "{prefix}: {:?}", report.summary());
    Ok(started.elapsed())
}

/// A directory of `count` files of `size` bytes.
fn files(count: usize, size: usize) -> anyhow::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    for i in 0..count {
        std::fs::write(
            dir.path().join(format!("f{i:05}.bin")),
            uploader_core::testing::pseudo_random(size, i as u64),
        )?;
    }
    Ok(dir)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: f64 = std::env::var("SECONDS")
        .ok()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(4.0);
    let data = tempfile::tempdir()?;
    let s3 = EmbeddedS3::start(data.path(), "limits").await?;
    let store = Arc::new(S3Store::connect(&s3.s3_config()).await?);
    let mut cells = Vec::new();

    for mib_s in [5.0, 20.0, 50.0, 100.0] {
        // 8 files sharing one budget.
        let size = (mib_s * MIB * seconds / 8.0) as usize;
        let src = files(8, size)?;
        let limit = (mib_s * MIB) as u64;
        let took = run(
            &store,
            src.path(),
            &format!("bw{mib_s}"),
            RateLimits::new(Some(limit), None, None),
        )
        .await?;
        cells.push(Cell {
            what: format!("--bwlimit {mib_s}M, 8 files × {:.1} MiB", size as f64 / MIB),
            limit: mib_s,
            unit: "MiB/s",
            achieved: 8.0 * size as f64 / MIB / took.as_secs_f64(),
        });
    }
    for mib_s in [5.0, 20.0] {
        // One file, so that the per-file budget is the whole rate.
        let size = (mib_s * MIB * seconds) as usize;
        let src = files(1, size)?;
        let limit = (mib_s * MIB) as u64;
        let took = run(
            &store,
            src.path(),
            &format!("pf{mib_s}"),
            RateLimits::new(None, Some(limit), None),
        )
        .await?;
        cells.push(Cell {
            what: format!(
                "--bwlimit-file {mib_s}M, 1 file of {:.0} MiB",
                size as f64 / MIB
            ),
            limit: mib_s,
            unit: "MiB/s",
            achieved: size as f64 / MIB / took.as_secs_f64(),
        });
    }
    for tps in [20.0, 50.0, 100.0, 200.0] {
        // One PUT per small file.
        let count = (tps * seconds) as usize;
        let src = files(count, 1024)?;
        let took = run(
            &store,
            src.path(),
            &format!("tps{tps}"),
            RateLimits::new(None, None, Some(tps)),
        )
        .await?;
        cells.push(Cell {
            what: format!("--tps-limit {tps}, {count} files of 1 KiB"),
            limit: tps,
            unit: "requests/s",
            achieved: count as f64 / took.as_secs_f64(),
        });
    }

    println!("| limit | set | achieved | achieved / set |");
    println!("|---|---|---|---|");
    for c in &cells {
        println!(
            "| {} | {:.0} {} | {:.1} {} | {:.3} |",
            c.what,
            c.limit,
            c.unit,
            c.achieved,
            c.unit,
            c.achieved / c.limit
        );
    }
    Ok(())
}
