//! The router and the cross-cutting layers: request ids, the access log, CORS and security
//! headers are tower-http layers; HTTP metrics, authentication and load shedding are the
//! middleware of this module. The small handlers (health, readiness, metrics) are
//! [`crate::probes`], the OpenAPI document's [`crate::openapi`].
//! The shared state is [`crate::state`]; uploads are [`crate::upload`].

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tower::ServiceBuilder;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::set_header::{SetRequestHeaderLayer, SetResponseHeaderLayer};
use tower_http::trace::TraceLayer;

use crate::access::{self, REQUEST_ID};
use crate::problem::{ApiError, ProblemKind};
use crate::state::{AppState, Slot};

/// The policy of every response that sets none (the JSON API loads nothing; the upload page
/// sets its own).
const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

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
    let mut router = Router::new()
        .merge(uploads)
        .merge(admin)
        .route("/healthz", get(crate::probes::healthz))
        .route("/readyz", get(crate::probes::readyz))
        .route("/metrics", get(crate::probes::metrics))
        .route("/openapi.json", get(crate::openapi::handler))
        .route("/problems/{code}", get(crate::problem::explain));
    if state.ui {
        router = router.route("/", get(crate::ui::page));
    }
    let pair = |name: HeaderName, value: &'static str| (name, HeaderValue::from_static(value));
    let (nosniff, no_store, csp, referrer) = (
        pair(header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        pair(header::CACHE_CONTROL, "no-store"),
        pair(header::CONTENT_SECURITY_POLICY, API_CSP),
        pair(header::REFERRER_POLICY, "no-referrer"),
    );
    // Outermost first: the request id is settled before anything logs, the access log sees
    // every answer (preflights and refusals included), CORS labels even the security headers'
    // responses.
    let layers = ServiceBuilder::new()
        .layer(SetRequestHeaderLayer::overriding(
            REQUEST_ID,
            access::request_id,
        ))
        .layer(SetRequestIdLayer::new(REQUEST_ID, access::RandomId))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(access::make_span)
                .on_request(())
                .on_response(access::on_response)
                .on_body_chunk(())
                .on_eos(())
                .on_failure(()),
        )
        .layer(middleware::from_fn(http_metrics))
        .layer(SetResponseHeaderLayer::overriding(nosniff.0, nosniff.1))
        .layer(SetResponseHeaderLayer::overriding(no_store.0, no_store.1))
        .layer(SetResponseHeaderLayer::if_not_present(csp.0, csp.1))
        .layer(SetResponseHeaderLayer::if_not_present(
            referrer.0, referrer.1,
        ))
        .option_layer(crate::cors::layer(&state.cors_origins));
    router
        .fallback(|| async { ApiError::new(ProblemKind::NotFound, "no such route") })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::origin::guard,
        ))
        .layer(DefaultBodyLimit::disable())
        .layer(layers)
        .with_state(state)
}

/// The route label of the HTTP metrics: a fixed set, so a client cannot mint label values.
fn route_label(path: &str) -> &'static str {
    match path {
        "/v1/uploads" => "/v1/uploads",
        "/v1/limits" => "/v1/limits",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        "/" => "/",
        p if p.starts_with("/problems/") => "/problems/{code}",
        _ => "other",
    }
}

/// `http_requests_total` and `http_request_duration_seconds`. By hand: tower-http has no
/// metrics layer, and TraceLayer's `on_response` does not see the request's method and path
/// (axum's own Prometheus example is the same small middleware).
async fn http_metrics(req: Request, next: Next) -> Response {
    let method = req.method().to_string();
    let route = route_label(req.uri().path());
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method, "route" => route, "status" => status).increment(1);
    metrics::histogram!("http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    resp
}

/// Authentication, then load shedding: a request over the concurrency limit is refused at
/// once with 503 and `Retry-After`, never queued.
///
/// By hand rather than tower's `ConcurrencyLimitLayer` + `LoadShedLayer`: the limit is on
/// uploads only (this guard is layered on `/v1/uploads`; health, readiness, metrics and the
/// admin API are never shed), a request is authenticated before it takes a slot (a caller
/// without a token gets 401, not 503, and cannot use up the slots), draining answers its own
/// 503, and the refusal must be a problem document with `Retry-After`, which `LoadShed`'s
/// `Overloaded` error would need a `HandleErrorLayer` to become. A `try_acquire` on the
/// semaphore does all that in three lines.
async fn guard(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    let Some(identity) = state.auth.identify(auth) else {
        return ApiError::unauthorized().into_response();
    };
    // The access-log line names the token by its id (never the token).
    tracing::Span::current().record("token_id", identity.id());
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
    req.extensions_mut().insert(identity);
    next.run(req).await
}
