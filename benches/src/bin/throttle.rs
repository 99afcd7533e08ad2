//! Throttling: the adaptive limit of requests in flight against the fixed one at the same
//! ceiling, on a server that answers `503 SlowDown`. It is an in-process S3-shaped discard
//! server that drains each body and answers 20 ms later. It throttles in one of two ways:
//!
//! * `random`: 20 % of requests, whatever the load (a flaky endpoint);
//! * `load`: every request beyond 64 in flight (a partition's capacity, as S3 throttles a
//!   prefix).
//!
//! 2 000 files of 16 KiB each (`FILES` to change), for each client: files/s, retries per file
//! (the 503s the client had to retry), files lost (must be 0).
//!
//! `cargo run --release -p benches --bin throttle`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use uploader_core::config::ConcurrencyMode;
use uploader_core::{
    KeyPrefix, MimePolicy, RetryPolicy, S3Config, S3Store, StaticCredentials, UploadConfig,
    Uploader, WalkOptions,
};

#[derive(Default)]
struct Server {
    random: bool,
    in_flight: AtomicUsize,
    requests: AtomicU64,
    throttled: AtomicU64,
}

const CAPACITY: usize = 64;
const DELAY: Duration = Duration::from_millis(20);

async fn handle(State(s): State<Arc<Server>>, req: Request) -> Response {
    let n = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let count = s.requests.fetch_add(1, Ordering::SeqCst);
    let body = axum::body::to_bytes(req.into_body(), usize::MAX).await;
    tokio::time::sleep(DELAY).await;
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    // A fixed 1-in-5 pattern: 20 % of requests, whatever the load.
    let throttle = if s.random {
        count % 5 == 4
    } else {
        n > CAPACITY
    };
    if body.is_err() || throttle {
        s.throttled.fetch_add(1, Ordering::SeqCst);
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "application/xml")],
            xml,
        )
            .into_response();
    }
    let mut r = Response::new(Body::empty());
    r.headers_mut().insert(
        "etag",
        "\"d41d8cd98f00b204e9800998ecf8427e\""
            .parse()
            .expect("a header"),
    );
    r
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let files: usize = std::env::var("FILES")
        .ok()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2000);
    let src = tempfile::tempdir()?;
    for i in 0..files {
        let body = uploader_core::testing::pseudo_random(16 << 10, i as u64);
        std::fs::write(src.path().join(format!("f{i:05}.bin")), body)?;
    }
    println!("| server | client | files/s | retries per file | 503s | files lost |");
    println!("|---|---|---|---|---|---|");
    for random in [true, false] {
        for (name, mode) in [
            ("fixed 256", ConcurrencyMode::Fixed),
            ("adaptive, ceiling 256", ConcurrencyMode::Adaptive),
        ] {
            let server = Arc::new(Server {
                random,
                ..Server::default()
            });
            let app = axum::Router::new()
                .fallback(handle)
                .with_state(Arc::clone(&server));
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            let serving = tokio::spawn(async move { axum::serve(listener, app).await });
            let store = S3Store::connect(&S3Config {
                bucket: "throttle".into(),
                endpoint_url: Some(format!("http://{addr}")),
                region: Some("us-east-1".into()),
                credentials: Some(StaticCredentials {
                    access_key_id: "bench".into(),
                    secret_access_key: "bench-secret".into(),
                }),
                ..S3Config::default()
            })
            .await?;
            let uploader = Uploader::builder()
                .with_store(Arc::new(store))
                .with_config(UploadConfig {
                    concurrency: 256,
                    concurrency_mode: mode,
                    mime: MimePolicy::new(&["application/octet-stream".into()], &[])?,
                    retry: RetryPolicy {
                        max_attempts: 10,
                        ..RetryPolicy::default()
                    },
                    ..UploadConfig::default()
                })
                .build()?;
            let started = Instant::now();
            let report = uploader
                .upload_dir(src.path(), &KeyPrefix::root(), WalkOptions::default())
                .wait()
                .await;
            let took = started.elapsed();
            let s = report.summary();
            println!(
                "| {} | {name} (limit at the end {}, peak {}) | {:.0} | {:.3} | {} | {} |",
                if random {
                    "20 % of requests"
                } else {
                    "beyond 64 in flight"
                },
                report.concurrency.limit,
                report.concurrency.peak,
                s.uploaded as f64 / took.as_secs_f64(),
                report.retries as f64 / files as f64,
                server.throttled.load(Ordering::SeqCst),
                files - s.uploaded,
            );
            serving.abort();
        }
    }
    Ok(())
}
