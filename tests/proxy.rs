//! A fault-injecting HTTP proxy in front of a real S3 server, for the fault-tolerance tests.
//!
//! Requests are classified by S3 operation; a seeded RNG decides, request by request, whether a
//! fault fires (so a run is reproducible from its seed). Faults: a 500 InternalError, a 503
//! SlowDown, a connection reset partway through the request body, a stall longer than the
//! client's timeout, and a response dropped *after* the server has executed the request. The
//! Host header is forwarded unchanged, so SigV4 signatures made for the proxy stay valid.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::{Rng as _, SeedableRng as _};

/// The S3 operation of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    PutObject,
    UploadPart,
    CreateMultipart,
    CompleteMultipart,
    AbortMultipart,
    HeadObject,
    ListObjects,
    DeleteObject,
    ListParts,
    ListMultipartUploads,
    Other,
}

fn classify(req: &Request<Incoming>) -> Op {
    let q = req.uri().query().unwrap_or("");
    let has = |k: &str| {
        q.split('&')
            .any(|kv| kv == k || kv.starts_with(&format!("{k}=")))
    };
    match *req.method() {
        hyper::Method::PUT if has("partNumber") => Op::UploadPart,
        hyper::Method::PUT => Op::PutObject,
        hyper::Method::POST if has("uploads") => Op::CreateMultipart,
        hyper::Method::POST if has("uploadId") => Op::CompleteMultipart,
        hyper::Method::DELETE if has("uploadId") => Op::AbortMultipart,
        hyper::Method::DELETE => Op::DeleteObject,
        // Path-style `/bucket/key`; `HEAD /bucket` is HeadBucket.
        hyper::Method::HEAD if req.uri().path().trim_matches('/').contains('/') => Op::HeadObject,
        hyper::Method::GET if has("list-type") => Op::ListObjects,
        hyper::Method::GET if has("uploadId") => Op::ListParts,
        hyper::Method::GET if has("uploads") => Op::ListMultipartUploads,
        _ => Op::Other,
    }
}

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    InternalError,
    SlowDown,
    ResetMidBody,
    Stall(Duration),
    DropResponse,
}

/// Which faults fire, how often, on which operations.
#[derive(Debug, Clone)]
pub struct FaultPlan {
    pub seed: u64,
    /// Probability that a targeted request gets a fault.
    pub rate: f64,
    pub faults: Vec<Fault>,
    pub ops: Vec<Op>,
    /// At most this many faults fire in all (`None`: no limit).
    pub limit: Option<u64>,
}

impl FaultPlan {
    /// No faults: the proxy only forwards and counts.
    pub fn none() -> FaultPlan {
        FaultPlan {
            seed: 0,
            rate: 0.0,
            faults: Vec::new(),
            ops: Vec::new(),
            limit: None,
        }
    }

    /// `fault` on the first `n` requests of `op`, nothing else.
    pub fn first(op: Op, fault: Fault, n: u64) -> FaultPlan {
        FaultPlan {
            seed: 0,
            rate: 1.0,
            faults: vec![fault],
            ops: vec![op],
            limit: Some(n),
        }
    }
}

/// Counts of what the proxy did.
#[derive(Debug, Default)]
pub struct Stats {
    pub requests: AtomicU64,
    pub faults: AtomicU64,
    /// Requests seen per operation.
    pub ops: Mutex<std::collections::HashMap<Op, u64>>,
    /// Request body bytes announced (`x-amz-decoded-content-length`, else `Content-Length`)
    /// per operation.
    pub bytes: Mutex<std::collections::HashMap<Op, u64>>,
}

impl Stats {
    /// Requests of `op` seen so far.
    pub fn seen(&self, op: Op) -> u64 {
        self.ops.lock().unwrap().get(&op).copied().unwrap_or(0)
    }

    /// Request body bytes of `op` seen so far.
    pub fn bytes(&self, op: Op) -> u64 {
        self.bytes.lock().unwrap().get(&op).copied().unwrap_or(0)
    }
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

struct Shared {
    upstream: String,
    plan: FaultPlan,
    rng: Mutex<rand::rngs::StdRng>,
    client: Client<HttpConnector, Incoming>,
    stats: Arc<Stats>,
}

/// A running proxy; stops when dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Proxies 127.0.0.1:<free port> to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str, plan: FaultPlan) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_owned(),
            rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(plan.seed)),
            plan,
            client: Client::builder(TokioExecutor::new()).build_http(),
            stats: Arc::clone(&stats),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let shared = Arc::clone(&shared);
                        async move { handle(shared, req).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        Proxy { addr, stats, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn s3_error(status: u16, code: &str) -> Response<ProxyBody> {
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "application/xml")
        .body(
            Full::new(Bytes::from(xml))
                .map_err(|e: Infallible| match e {})
                .boxed(),
        )
        .unwrap()
}

/// The connection is closed without a response (hyper drops it when the service fails).
#[derive(Debug)]
struct Dropped;
impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("injected connection drop")
    }
}
impl std::error::Error for Dropped {}

async fn forward(shared: &Shared, req: Request<Incoming>) -> Result<Response<ProxyBody>, Dropped> {
    let (mut parts, body) = req.into_parts();
    let pq = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    parts.uri = format!("{}{pq}", shared.upstream)
        .parse()
        .map_err(|_| Dropped)?;
    let resp = shared
        .client
        .request(Request::from_parts(parts, body))
        .await
        .map_err(|_| Dropped)?;
    Ok(resp.map(|b| b.boxed()))
}

async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Dropped> {
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let op = classify(&req);
    *shared.stats.ops.lock().unwrap().entry(op).or_default() += 1;
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
    };
    let len = header("x-amz-decoded-content-length")
        .or_else(|| header("content-length"))
        .unwrap_or(0);
    *shared.stats.bytes.lock().unwrap().entry(op).or_default() += len;
    let fault = {
        let mut rng = shared.rng.lock().unwrap();
        let spent = shared
            .plan
            .limit
            .is_some_and(|n| shared.stats.faults.load(Ordering::Relaxed) >= n);
        let targeted = !spent && shared.plan.ops.contains(&op) && !shared.plan.faults.is_empty();
        if targeted && rng.random::<f64>() < shared.plan.rate {
            // Counted while the lock is held, so concurrent requests cannot overrun the limit.
            shared.stats.faults.fetch_add(1, Ordering::Relaxed);
            Some(shared.plan.faults[rng.random_range(0..shared.plan.faults.len())])
        } else {
            None
        }
    };
    let Some(fault) = fault else {
        return forward(&shared, req).await;
    };
    match fault {
        // Answered after the body is read, as S3 does: answering before it would have the
        // server close a connection the client may already be reusing for its retry, which
        // then fails before reaching the proxy (an attempt the proxy never sees).
        Fault::InternalError => {
            let _ = req.into_body().collect().await;
            Ok(s3_error(500, "InternalError"))
        }
        Fault::SlowDown => {
            let _ = req.into_body().collect().await;
            Ok(s3_error(503, "SlowDown"))
        }
        Fault::ResetMidBody => {
            let mut body = req.into_body();
            let _ = body.frame().await;
            Err(Dropped)
        }
        Fault::Stall(d) => {
            tokio::time::sleep(d).await;
            forward(&shared, req).await
        }
        Fault::DropResponse => {
            // Let the server execute the request, then lose its answer.
            let resp = forward(&shared, req).await?;
            let _ = resp.into_body().collect().await;
            Err(Dropped)
        }
    }
}
