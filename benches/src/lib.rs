//! Helpers shared by the daemon benchmark binaries: multipart bodies, a minimal HTTP/1.1 POST
//! (a new connection per request, like a client without a pool), and percentiles.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The multipart boundary of every generated body.
pub const BOUNDARY: &str = "bench-boundary-7f3a";

/// A multipart/form-data body of `files` file parts of `size` pseudo-random bytes each.
pub fn multipart_body(files: usize, size: usize) -> Vec<u8> {
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

/// POSTs `body` to `/v1/uploads?prefix=<prefix>` on a new connection; returns the HTTP status
/// (0 when the answer has no status line).
pub async fn post(
    addr: std::net::SocketAddr,
    prefix: &str,
    token: Option<&str>,
    body: &[u8],
) -> std::io::Result<u16> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST /v1/uploads?prefix={prefix} HTTP/1.1\r\nHost: bench\r\n{auth}Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
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

/// The `p` quantile (0..=1) of sorted durations, nearest rank.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
