//! Latency of the daemon: an in-process `uploader serve` app over the embedded S3 endpoint,
//! one client posting batches back to back over keep-alive-free HTTP/1.1 connections.
//!
//! `cargo run --release -p benches --bin daemon_latency -- [files] [file_size_bytes] [requests]`
//! (default: 20 files of 1 MiB, 100 requests). Prints p50/p95/p99 and the throughput.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use uploader_core::{EmbeddedS3, KeyPrefix, MimePolicy, S3Store, UploadConfig, Uploader};
use uploader_server::{AppState, Limits, app};

const BOUNDARY: &str = "bench-boundary-7f3a";

fn body(files: usize, size: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(files * (size + 200));
    let mut x: u64 = 0x1234_5678_9abc_def1;
    for i in 0..files {
        b.extend_from_slice(
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f{i}.bin\"\r\n\r\n")
                .as_bytes(),
        );
        for _ in 0..size.div_ceil(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.extend_from_slice(&x.to_le_bytes());
        }
        b.truncate(b.len() - (size.div_ceil(8) * 8 - size));
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    b
}

async fn post(addr: std::net::SocketAddr, prefix: &str, body: &[u8]) -> anyhow::Result<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let head = format!(
        "POST /v1/uploads?prefix={prefix} HTTP/1.1\r\nHost: bench\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await?;
    s.write_all(body).await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    let text = String::from_utf8_lossy(&resp);
    Ok(text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0))
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

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

    let payload = body(files, size);
    // Warm-up (connections, page cache of the data directory).
    post(addr, "warmup", &payload).await?;
    let mut lat = Vec::with_capacity(requests);
    let t0 = Instant::now();
    for i in 0..requests {
        let t = Instant::now();
        let status = post(addr, &format!("r{i}"), &payload).await?;
        anyhow::ensure!(status == 201, "request {i}: HTTP {status}");
        lat.push(t.elapsed());
    }
    let wall = t0.elapsed();
    lat.sort();
    let mib = (files * size * requests) as f64 / (1 << 20) as f64;
    println!(
        "{requests} requests of {files} × {size} B: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {:.1} MiB/s",
        pct(&lat, 0.50).as_secs_f64() * 1e3,
        pct(&lat, 0.95).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
        mib / wall.as_secs_f64()
    );
    Ok(())
}
