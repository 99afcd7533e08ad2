//! Latency of the daemon: an in-process `uploader serve` app over the embedded S3 endpoint,
//! one client posting batches back to back over keep-alive-free HTTP/1.1 connections.
//!
//! `cargo run --release -p benches --bin daemon_latency -- [files] [file_size_bytes] [requests]`
//! (default: 20 files of 1 MiB, 100 requests). Prints p50/p95/p99 and the throughput.

use std::sync::Arc;
use std::time::Instant;

use benches::{ms, multipart_body, percentile, post};
use uploader_core::{EmbeddedS3, KeyPrefix, MimePolicy, S3Store, UploadConfig, Uploader};
use uploader_server::{AppState, Limits, app};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let files = args.first().copied().unwrap_or(20);
    let size = args.get(1).copied().unwrap_or(1 << 20);
    let requests = args.get(2).copied().unwrap_or(100);

    let dir = tempfile::tempdir()?;
    let s3 = EmbeddedS3::start(dir.path(), "bench").await?;
    let store = Arc::new(S3Store::connect(&s3.s3_config()).await?);
    let uploader = Uploader::builder()
        .with_store(store.clone())
        .with_config(UploadConfig {
            mime: MimePolicy::new(&["application/octet-stream".into()], &[])?,
            ..UploadConfig::default()
        })
        .build()?;
    let state = AppState::new(
        uploader,
        KeyPrefix::root(),
        Limits::default(),
        &[],
        Some(store),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app(state)).await });

    let payload = multipart_body(files, size);
    // Warm-up (connections, page cache of the data directory).
    post(addr, "warmup", None, &payload).await?;
    let mut lat = Vec::with_capacity(requests);
    let t0 = Instant::now();
    for i in 0..requests {
        let t = Instant::now();
        let status = post(addr, &format!("r{i}"), None, &payload).await?;
        anyhow::ensure!(status == 201, "request {i}: HTTP {status}");
        lat.push(t.elapsed());
    }
    let wall = t0.elapsed();
    lat.sort();
    let mib = (files * size * requests) as f64 / (1 << 20) as f64;
    println!(
        "{requests} requests of {files} × {size} B: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {:.1} MiB/s",
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.95)),
        ms(percentile(&lat, 0.99)),
        ms(*lat.last().expect("at least one request")),
        mib / wall.as_secs_f64()
    );
    Ok(())
}
