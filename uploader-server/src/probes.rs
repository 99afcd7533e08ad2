//! The small handlers: liveness, readiness and the Prometheus metrics (never shed, never
//! authenticated).

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::model::{Health, Readiness};
use crate::state::AppState;

/// How long a readiness verdict is reused.
const READY_CACHE: Duration = Duration::from_secs(5);

/// Liveness.
#[utoipa::path(get, path = "/healthz", summary = "liveness",
    responses((status = 200, description = "alive", body = Health)))]
pub(crate) async fn healthz() -> axum::Json<Health> {
    axum::Json(Health {
        status: "ok".into(),
    })
}

/// Ready when the bucket is reachable with valid credentials (checked at most every 5 s).
#[utoipa::path(get, path = "/readyz", summary = "bucket reachable with valid credentials",
    responses(
        (status = 200, description = "ready", body = Readiness),
        (status = 503, description = "not ready", body = Readiness),
    ))]
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
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
    let (status, body) = match verdict {
        Ok(()) => (
            StatusCode::OK,
            Readiness {
                ready: true,
                reason: None,
            },
        ),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Readiness {
                ready: false,
                reason: Some(reason),
            },
        ),
    };
    (status, axum::Json(body)).into_response()
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", summary = "Prometheus metrics",
    responses((status = 200, description = "text exposition format", content_type = "text/plain", body = String)))]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
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
