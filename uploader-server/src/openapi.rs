//! The OpenAPI document served at `/openapi.json`.

use serde_json::{Value, json};

use crate::problem::ProblemKind;

/// Error codes a per-file result may carry (closed set).
pub const ERROR_CODES: &[&str] = &[
    "invalid_key",
    "duplicate_key",
    "mime_not_allowed",
    "mime_mismatch",
    "file_too_large",
    "source_unreadable",
    "source_changed",
    "checksum_mismatch",
    "already_exists",
    "upstream_throttled",
    "upstream_timeout",
    "upstream_error",
    "upstream_rejected",
    "cancelled",
];

pub fn document() -> Value {
    let batch = json!({"$ref": "#/components/schemas/Batch"});
    let problem_codes: Vec<&str> = ProblemKind::ALL.iter().map(|k| k.as_str()).collect();
    json!({
        "openapi": "3.1.0",
        "info": {"title": "uploader", "version": env!("CARGO_PKG_VERSION")},
        "paths": {
            "/v1/uploads": {"post": {
                "summary": "Upload a batch of files (multipart/form-data), streamed to S3",
                "security": [{"bearer": []}],
                "parameters": [{"name": "prefix", "in": "query", "required": false, "schema": {"type": "string"}},
                    {"name": "skip_existing", "in": "query", "required": false, "schema": {"enum": ["size", "checksum"]},
                     "description": "leave an object that has the file's size (size) or full-object checksum (checksum) as it is; reported as skipped"}],
                "requestBody": {"required": true, "content": {"multipart/form-data": {"schema": {
                    "type": "object",
                    "properties": {
                        "prefix": {"type": "string", "description": "key prefix under the server's root prefix; before the files"},
                        "skip_existing": {"enum": ["size", "checksum"], "description": "as the query parameter; before the files"},
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    }}}}},
                "responses": {
                    "201": {"description": "every file stored (or left unchanged with skip_existing)", "content": {"application/json": {"schema": batch}}},
                    "207": {"description": "some files stored, some failed", "content": {"application/json": {"schema": batch}}},
                    "422": {"description": "every file refused by validation", "content": {"application/json": {"schema": batch}}},
                    "502": {"description": "every file failed upstream", "content": {"application/json": {"schema": batch}}},
                    "400": problem("malformed multipart, unknown field, bad prefix, no files"),
                    "401": problem("missing or invalid bearer token"),
                    "403": problem("a browser's Origin that is neither the daemon's own nor a --cors-origin"),
                    "408": problem("the body stalled past the idle timeout"),
                    "413": problem("request or file count over the limit"),
                    "415": problem("not multipart/form-data"),
                    "429": problem("over the token's requests or bytes per minute; see Retry-After"),
                    "503": problem("overloaded or shutting down; see Retry-After")
                }
            }},
            "/v1/limits": limits_path(),
            "/healthz": {"get": {"summary": "liveness", "responses": {"200": {"description": "alive"}}}},
            "/readyz": {"get": {"summary": "bucket reachable with valid credentials", "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text exposition format"}}}},
            "/openapi.json": {"get": {"summary": "this document", "responses": {"200": {"description": "OpenAPI 3.1"}}}},
            "/": {"get": {"summary": "the upload page (with --ui; 404 without)",
                "responses": {"200": {"description": "a self-contained HTML page", "content": {"text/html": {}}},
                    "404": problem("the daemon runs without --ui")}}},
            "/problems/{code}": {"get": {"summary": "what a problem `type` means (the type of every problem document is /problems/{code})",
                "parameters": [{"name": "code", "in": "path", "required": true, "schema": {"enum": problem_codes}}],
                "responses": {"200": {"description": "the explanation", "content": {"text/plain": {}}},
                    "404": problem("not a problem code")}}}
        },
        "components": components(),
    })
}

/// A problem+json response with description `d`.
fn problem(d: &str) -> Value {
    json!({"description": d, "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}})
}

/// `GET` and `PUT /v1/limits`, the admin API.
fn limits_path() -> Value {
    json!({
        "get": {"summary": "the rate limits in force (admin tokens only; 404 without --admin-tokens)",
            "security": [{"bearer": []}],
            "responses": {"200": {"description": "limits", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Limits"}}}},
                "401": problem("not an admin token"), "404": problem("no admin API configured")}},
        "put": {"summary": "change the rate limits at run time; absent fields are kept, \"off\" removes a limit",
            "security": [{"bearer": []}],
            "requestBody": {"content": {"application/json": {"schema": {"type": "object", "additionalProperties": false, "properties": {
                "bwlimit": {"type": "string"}, "bwlimit_file": {"type": "string"}, "tps_limit": {"type": "string"}}}}}},
            "responses": {"200": {"description": "the limits now in force", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Limits"}}}},
                "400": problem("a value that does not parse, or an unknown field: nothing changed"),
                "401": problem("not an admin token"), "404": problem("no admin API configured")}}
    })
}

/// The security schemes and schemas the paths refer to.
fn components() -> Value {
    let problem_codes: Vec<&str> = ProblemKind::ALL.iter().map(|k| k.as_str()).collect();
    json!({
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        "schemas": {
            "Limits": {"type": "object", "properties": {
                "bwlimit": {"type": ["integer", "null"], "description": "bytes per second, shared by every request"},
                "bwlimit_file": {"type": ["integer", "null"], "description": "bytes per second of each file"},
                "tps_limit": {"type": ["number", "null"], "description": "S3 requests per second"}}},
            "Batch": {"type": "object", "required": ["request_id", "summary", "results"], "properties": {
                "request_id": {"type": "string"},
                "summary": {"type": "object", "properties": {
                    "total": {"type": "integer"}, "succeeded": {"type": "integer", "description": "stored or skipped unchanged"},
                    "skipped": {"type": "integer"}, "failed": {"type": "integer"}, "bytes": {"type": "integer"}}},
                "results": {"type": "array", "items": {"oneOf": [
                    {"$ref": "#/components/schemas/Stored"}, {"$ref": "#/components/schemas/Skipped"},
                    {"$ref": "#/components/schemas/Failed"}]}}}},
            "Skipped": {"type": "object", "properties": {
                "index": {"type": "integer"}, "filename": {"type": "string"}, "key": {"type": "string"},
                "status": {"const": "skipped"}, "size": {"type": "integer"},
                "reason": {"type": "string", "description": "unchanged (size), unchanged (checksum), ..."}}},
            "Stored": {"type": "object", "properties": {
                "index": {"type": "integer"}, "filename": {"type": "string"}, "key": {"type": "string"},
                "status": {"const": "uploaded"}, "size": {"type": "integer"},
                "content_type": {"type": "string"}, "etag": {"type": "string"}, "checksum": {"type": "string"}}},
            "Failed": {"type": "object", "properties": {
                "index": {"type": "integer"}, "filename": {"type": "string"}, "key": {"type": ["string", "null"]},
                "status": {"const": "failed"},
                "error": {"type": "object", "properties": {
                    "code": {"enum": ERROR_CODES}, "message": {"type": "string"}, "retryable": {"type": "boolean"}}}}},
            "Problem": {"type": "object", "required": ["type", "code", "title", "status", "detail"], "properties": {
                "type": {"type": "string", "format": "uri-reference",
                    "description": "/problems/{code}, relative to the daemon, which serves it"},
                "code": {"enum": problem_codes, "description": "stable name of the problem"},
                "title": {"type": "string"}, "status": {"type": "integer"},
                "detail": {"type": "string"},
                "results": {"type": "array", "description": "files handled before the request failed"}}}
        }
    })
}
