//! The admin API: `GET` and `PUT /v1/limits` read and change the rate limits (`--bwlimit`,
//! `--bwlimit-file`, `--tps-limit`) of the running daemon, without a restart. Authorized by
//! the admin tokens only (`--admin-tokens`), never by upload tokens; without admin tokens the
//! routes do not exist (404). The change applies to the requests that start after it, in this
//! replica only (limits are per process).

use axum::Json;
use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use uploader_core::limit::{parse_rate, parse_request_rate};

use crate::model::LimitsBody;
use crate::problem::Problem;
use crate::problem::{ApiError, ProblemKind};
use crate::state::AppState;

/// A change of limits: each field absent is left as it is; `"off"` removes the limit.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsChange {
    /// Bytes per second shared by every request (`--bwlimit`'s syntax, or `off`).
    bwlimit: Option<String>,
    /// Bytes per second of each file (`--bwlimit-file`'s syntax, or `off`).
    bwlimit_file: Option<String>,
    /// S3 requests per second (`--tps-limit`'s syntax, or `off`).
    tps_limit: Option<String>,
}

/// The admin routes answer only an admin token; without admin tokens configured, they are not
/// there at all.
pub(crate) async fn guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !state.admin_tokens.enabled() {
        return ApiError::new(ProblemKind::NotFound, "no such route").into_response();
    }
    let auth = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if !state.admin_tokens.check(auth) {
        return ApiError::unauthorized().into_response();
    }
    next.run(req).await
}

fn current(state: &AppState) -> LimitsBody {
    let limits = state.uploader.limits();
    LimitsBody {
        bwlimit: limits.bandwidth(),
        bwlimit_file: limits.per_file(),
        tps_limit: limits.requests(),
    }
}

/// `GET /v1/limits`: the limits in force (bytes and requests per second; `null`: none).
#[utoipa::path(
    get,
    path = "/v1/limits",
    summary = "the rate limits in force (admin tokens only; 404 without --admin-tokens)",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "limits", body = LimitsBody),
        (status = 401, description = "not an admin token", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "no admin API configured", body = Problem,
            content_type = "application/problem+json"),
    )
)]
pub(crate) async fn get(State(state): State<AppState>) -> Json<LimitsBody> {
    Json(current(&state))
}

/// One field of a change, parsed (`None`: not given).
fn field<T, E: std::fmt::Display>(
    name: &str,
    value: Option<&str>,
    parse: impl Fn(&str) -> Result<T, E>,
) -> Result<Option<T>, ApiError> {
    value
        .map(parse)
        .transpose()
        .map_err(|e| ApiError::new(ProblemKind::InvalidLimits, format!("{name}: {e}")))
}

/// `PUT /v1/limits`: parses every given field first (one bad field changes nothing), then
/// applies them; answers the limits now in force.
#[utoipa::path(
    put,
    path = "/v1/limits",
    summary = "change the rate limits at run time; absent fields are kept, \"off\" removes a limit",
    security(("bearer" = [])),
    request_body = LimitsChange,
    responses(
        (status = 200, description = "the limits now in force", body = LimitsBody),
        (status = 400, description = "a value that does not parse, or an unknown field: nothing \
            changed", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "not an admin token", body = Problem,
            content_type = "application/problem+json"),
        (status = 404, description = "no admin API configured", body = Problem,
            content_type = "application/problem+json"),
    )
)]
pub(crate) async fn put(
    State(state): State<AppState>,
    body: Result<Json<LimitsChange>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<LimitsBody>, ApiError> {
    let Json(change) =
        body.map_err(|e| ApiError::new(ProblemKind::InvalidLimits, e.body_text()))?;
    let bandwidth = field("bwlimit", change.bwlimit.as_deref(), parse_rate)?;
    let per_file = field("bwlimit_file", change.bwlimit_file.as_deref(), parse_rate)?;
    let requests = field("tps_limit", change.tps_limit.as_deref(), parse_request_rate)?;
    let limits = state.uploader.limits();
    if let Some(b) = bandwidth {
        limits.set_bandwidth(b);
    }
    if let Some(b) = per_file {
        limits.set_per_file(b);
    }
    if let Some(r) = requests {
        limits.set_requests(r);
    }
    tracing::info!(
        bwlimit = ?limits.bandwidth(),
        bwlimit_file = ?limits.per_file(),
        tps_limit = ?limits.requests(),
        "limits changed through the admin API"
    );
    Ok(Json(current(&state)))
}
