//! Load on a running `uploader serve`: N clients each POST batches back to back for a fixed time
//! (a new connection per request); reports requests, errors, latency percentiles and, given the
//! daemon's PID, its resident memory sampled every second.
//!
//! ```text
//! cargo run --release -p benches --bin daemon_load -- --addr 127.0.0.1:8080 \
//!     [--clients 10] [--files 20] [--size 65536] [--seconds 60] [--pid PID] [--token T]
//! ```
//!
//! Prints one human line and one JSON line (`{"requests":..}`) for `daemon_bench.py`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use benches::{ms, multipart_body, percentile, post};

/// Resident set size of `pid` in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: HashMap<String, String> = HashMap::new();
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| anyhow::anyhow!("unexpected argument {flag:?}"))?;
        let value = it
            .next()
            .ok_or_else(|| anyhow::anyhow!("{flag} needs a value"))?;
        args.insert(name.to_owned(), value);
    }
    let get = |k: &str, default: &str| args.get(k).cloned().unwrap_or_else(|| default.to_owned());
    let addr: std::net::SocketAddr = args
        .get("addr")
        .ok_or_else(|| anyhow::anyhow!("--addr HOST:PORT is required"))?
        .parse()?;
    let clients: usize = get("clients", "10").parse()?;
    let files: usize = get("files", "20").parse()?;
    let size: usize = get("size", "65536").parse()?;
    let seconds: u64 = get("seconds", "60").parse()?;
    let pid: Option<u32> = args.get("pid").map(|p| p.parse()).transpose()?;
    let token = args.get("token").cloned();

    let payload = Arc::new(multipart_body(files, size));
    // Warm-up: one request, which must succeed.
    let status = post(addr, "load-warmup", token.as_deref(), &payload).await?;
    anyhow::ensure!(status == 201, "warm-up request: HTTP {status}");

    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                if let Some(kib) = pid.and_then(rss_kib) {
                    samples.push(kib);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            samples
        })
    };
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (payload, token) = (Arc::clone(&payload), token.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors: HashMap<String, u64> = HashMap::new();
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                let prefix = format!("load/c{c}/r{i}");
                match post(addr, &prefix, token.as_deref(), &payload).await {
                    Ok(201) => lat.push(t.elapsed()),
                    Ok(status) => *errors.entry(format!("HTTP {status}")).or_default() += 1,
                    Err(e) => *errors.entry(e.kind().to_string()).or_default() += 1,
                }
                i += 1;
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors: HashMap<String, u64> = HashMap::new();
    for t in tasks {
        let (l, e) = t.await?;
        lat.extend(l);
        for (k, n) in e {
            *errors.entry(k).or_default() += n;
        }
    }
    let wall = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    let rss = sampler.await?;
    lat.sort();
    let failed: u64 = errors.values().sum();
    let mib = (lat.len() * files * size) as f64 / f64::from(1 << 20);
    let rss_mib = |k: Option<&u64>| k.map_or(0.0, |k| *k as f64 / 1024.0);
    // "Flat": the last sample against the one 10 s in (the first seconds fill pools and caches).
    let settled = rss.get(10.min(rss.len().saturating_sub(1)));
    println!(
        "{clients} clients × {files} × {size} B for {:.0} s: {} ok, {failed} failed {errors:?}; \
         p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {:.1} MiB/s; \
         daemon RSS MiB: first {:.1}, at 10 s {:.1}, max {:.1}, last {:.1}",
        wall.as_secs_f64(),
        lat.len(),
        ms(percentile(&lat, 0.50)),
        ms(percentile(&lat, 0.95)),
        ms(percentile(&lat, 0.99)),
        ms(lat.last().copied().unwrap_or_default()),
        mib / wall.as_secs_f64(),
        rss_mib(rss.first()),
        rss_mib(settled),
        rss_mib(rss.iter().max()),
        rss_mib(rss.last()),
    );
    println!(
        "{}",
        serde_json::json!({
            "clients": clients, "files": files, "size": size, "seconds": wall.as_secs_f64(),
            "requests": lat.len(), "failed": failed, "errors": errors,
            "p50_ms": ms(percentile(&lat, 0.50)), "p95_ms": ms(percentile(&lat, 0.95)),
            "p99_ms": ms(percentile(&lat, 0.99)), "mib_s": mib / wall.as_secs_f64(),
            "rss_mib": rss.iter().map(|k| *k as f64 / 1024.0).collect::<Vec<_>>(),
        })
    );
    Ok(())
}
