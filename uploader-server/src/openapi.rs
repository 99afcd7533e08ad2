//! The OpenAPI document served at `/openapi.json`, derived with utoipa: the schemas come from
//! the body types the handlers serialize ([`crate::model`]), each path from the
//! `#[utoipa::path]` attribute next to its handler.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::model::{BatchBody, FileErrorBody, FileResult, Health, LimitsBody, Readiness, Summary};
use crate::problem::Problem;

/// The document.
#[derive(OpenApi)]
#[openapi(
    info(title = "uploader", description = "HTTP batch upload daemon: files streamed to S3"),
    paths(
        crate::upload::handler,
        crate::admin::get,
        crate::admin::put,
        crate::probes::healthz,
        crate::probes::readyz,
        crate::probes::metrics,
        crate::openapi::handler,
        crate::ui::page,
        crate::problem::explain,
    ),
    components(schemas(
        BatchBody,
        Summary,
        FileResult,
        FileErrorBody,
        Problem,
        LimitsBody,
        Health,
        Readiness
    )),
    modifiers(&Bearer)
)]
struct ApiDoc;

/// The `bearer` security scheme the paths name.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// This document.
#[utoipa::path(get, path = "/openapi.json", summary = "this document",
    responses((status = 200, description = "OpenAPI 3.1", content_type = "application/json")))]
pub(crate) async fn handler() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(document())
}

#[cfg(test)]
mod tests {
    use crate::problem::ProblemKind;

    #[test]
    fn every_path_and_problem_code_is_documented() {
        let doc = serde_json::to_value(super::document()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        for path in [
            "/v1/uploads",
            "/v1/limits",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
            "/",
            "/problems/{code}",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} is missing");
        }
        let post = &doc["paths"]["/v1/uploads"]["post"];
        for status in [
            "201", "207", "400", "401", "403", "408", "409", "413", "415", "422", "429", "502",
            "503",
        ] {
            assert!(post["responses"][status].is_object(), "{status} is missing");
        }
        let params: Vec<_> = post["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert!(params.contains(&"Idempotency-Key"), "{params:?}");
        let codes = doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(codes, ProblemKind::ALL.len());
    }
}
