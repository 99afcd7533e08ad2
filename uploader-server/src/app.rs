//! The router and the cross-cutting middleware: request ids, security headers, HTTP metrics,
//! authentication and load shedding; and the small handlers (health, readiness, metrics,
//! OpenAPI). The shared state is [`crate::state`]; uploads are [`crate::upload`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::problem::{ApiError, ProblemKind};
use crate::state::{AppState, RequestId, Slot};

/// How long a readiness verdict is reused.
const READY_CACHE: Duration = Duration::from_secs(5);

/// The application.
pub fn app(state: AppState) -> Router {
    let uploads = Router::new()
        .route("/v1/uploads", post(crate::upload::handler))
        .layer(middleware::from_fn_with_state(state.clone(), guard));
    let admin = Router::new()
        .route("/v1/limits", get(crate::admin::get).put(crate::admin::put))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::admin::guard,
        ));
    Router::new()
        .merge(uploads)
        .merge(admin)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .fallback(|| async { ApiError::new(ProblemKind::NotFound, "no such route") })
        .layer(DefaultBodyLimit::disable())
        .layer(middleware::from_fn(common))
        .with_state(state)
}

fn new_request_id() -> String {
    use rand::Rng as _;
    format!("{:016x}", rand::rng().random::<u64>())
}

/// Request id, security headers, HTTP metrics and a log line for every request. The
/// `Authorization` header is never logged.
async fn common(mut req: Request, next: Next) -> Response {
    let id = new_request_id();
    req.extensions_mut().insert(RequestId(id.clone()));
    let method = req.method().clone();
    let route: &'static str = match req.uri().path() {
        "/v1/uploads" => "/v1/uploads",
        "/v1/limits" => "/v1/limits",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        _ => "other",
    };
    let started = Instant::now();
    let span = tracing::info_span!("request", request_id = %id, %method, route);
    let mut resp = tracing::Instrument::instrument(next.run(req), span.clone()).await;
    let h = resp.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        h.insert("x-request-id", v);
    }
    let status = resp.status().as_u16().to_string();
    let elapsed = started.elapsed();
    metrics::counter!("http_requests_total", "method" => method.to_string(), "route" => route, "status" => status.clone()).increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route)
        .record(elapsed.as_secs_f64());
    tracing::info!(parent: &span, status, elapsed_ms = elapsed.as_millis() as u64, "request served");
    resp
}

/// Authentication, then load shedding: a request over the concurrency limit is refused at
/// once with 503 and `Retry-After`, never queued.
async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if !state.tokens.check(auth) {
        return ApiError::unauthorized().into_response();
    }
    if state.is_draining() {
        return ApiError::new(
            ProblemKind::ShuttingDown,
            "the server is shutting down; retry on another instance",
        )
        .into_response();
    }
    let Ok(permit) = Arc::clone(&state.slots).try_acquire_owned() else {
        return ApiError::overloaded().into_response();
    };
    req.extensions_mut().insert(Slot::new(permit));
    next.run(req).await
}

async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// Ready when the bucket is reachable with valid credentials (checked at most every 5 s).
async fn readyz(State(state): State<AppState>) -> Response {
    let verdict = {
        let cached = state.ready.lock().unwrap().clone();
        match cached {
            Some((at, v)) if at.elapsed() < READY_CACHE => v,
            _ => {
                let v = match &state.s3 {
                    None => Ok(()),
                    Some(s3) => uploader_core::validate::check(s3, &state.root_prefix, false)
                        .await
                        .map(|_| ())
                        .map_err(|e| e.to_string()),
                };
                *state.ready.lock().unwrap() = Some((Instant::now(), v.clone()));
                v
            }
        }
    };
    match verdict {
        Ok(()) => (StatusCode::OK, axum::Json(json!({"ready": true}))).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({"ready": false, "reason": reason})),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    let budget = state.uploader.budget();
    metrics::gauge!("uploader_in_flight_requests").set(budget.in_flight() as f64);
    metrics::gauge!("uploader_concurrency_limit").set(budget.limit() as f64);
    metrics::gauge!("uploader_concurrency_peak").set(budget.peak_limit() as f64);
    let body = state.metrics.render();
    let mut resp = body.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}

async fn openapi() -> impl IntoResponse {
    axum::Json(crate::openapi::document())
}
