//! `/openapi.json` against what the daemon really sends: a 201, a 207 and a problem document
//! from the `uploader serve` binary, each validated (JSON Schema 2020-12, the dialect of
//! OpenAPI 3.1) against the schema the served document gives for that status and type.

use serde_json::{Value, json};
use uploader_core::EmbeddedS3;
use uploader_e2e::write;

use crate::harness::{Daemon, Reply, Target};

/// The schema of `path`'s POST response `status` with `content_type`, as a JSON Schema whose
/// `$ref`s resolve in the document's components.
fn response_schema(doc: &Value, path: &str, status: &str, content_type: &str) -> Value {
    let schema =
        &doc["paths"][path]["post"]["responses"][status]["content"][content_type]["schema"];
    assert!(
        schema.is_object(),
        "{path} {status} {content_type}: no schema"
    );
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": doc["components"],
        "allOf": [schema],
    })
}

/// The validation errors of `body` against `schema`.
fn errors(schema: &Value, body: &Value) -> Vec<String> {
    let validator = jsonschema::draft202012::new(schema).expect("the schema compiles");
    validator.iter_errors(body).map(|e| e.to_string()).collect()
}

fn check(doc: &Value, reply: &Reply, status: &str, content_type: &str) -> Value {
    assert_eq!(reply.status.to_string(), status, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(content_type));
    let schema = response_schema(doc, "/v1/uploads", status, content_type);
    let body = reply.json();
    let errs = errors(&schema, &body);
    assert!(errs.is_empty(), "{status}: {errs:?}\n{body}");
    schema
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_responses_match_the_served_schemas() {
    let (home, src, store_dir) = (tempdir(), tempdir(), tempdir());
    let server = EmbeddedS3::start(store_dir.path(), "openapi")
        .await
        .unwrap();
    let t = Target::embedded(&server);
    let flags = [
        "--checksum",
        "crc32c",
        "--tokens",
        "openapi-token-0123456789",
    ];
    let d =
        tokio::task::block_in_place(|| Daemon::start_with(&t, home.path(), &t.endpoint, &flags));
    let url = format!("http://127.0.0.1:{}/openapi.json", d.port);
    let doc: Value = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("curl")
            .args(["-s", &url])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    })
    .await
    .unwrap();
    assert_eq!(doc["openapi"], "3.1.0");

    let a = write(src.path(), "a.txt", b"a text file\n");
    let html = write(
        src.path(),
        "page.html",
        b"<html><script>x()</script></html>",
    );
    let form = |files: &[&std::path::Path]| -> Vec<String> {
        files
            .iter()
            .map(|f| format!("file=@{}", f.display()))
            .collect()
    };
    let auth = "Authorization: Bearer openapi-token-0123456789";
    let created = d.exchange(&form(&[&a]), "prefix=o", &[auth]).await;
    let schema = check(&doc, &created, "201", "application/json");
    // The schema is not vacuous: a body that differs from the contract fails it.
    let mut wrong = created.json();
    wrong["results"][0]["status"] = json!("stored");
    assert!(
        !errors(&schema, &wrong).is_empty(),
        "an unknown status passes"
    );
    let mut wrong = created.json();
    wrong.as_object_mut().unwrap().remove("request_id");
    assert!(
        !errors(&schema, &wrong).is_empty(),
        "a missing member passes"
    );

    let mixed = d.exchange(&form(&[&a, &html]), "prefix=o", &[auth]).await;
    check(&doc, &mixed, "207", "application/json");
    assert_eq!(
        mixed.json()["results"][1]["error"]["code"],
        "mime_not_allowed"
    );

    let unauthorized = d.exchange(&form(&[&a]), "", &[]).await;
    let schema = check(&doc, &unauthorized, "401", "application/problem+json");
    let mut wrong = unauthorized.json();
    wrong["code"] = json!("no_such_code");
    assert!(
        !errors(&schema, &wrong).is_empty(),
        "an unknown code passes"
    );
    // A problem that lists the files handled before it: a prefix after a file.
    let misplaced = d
        .exchange(&[form(&[&a])[0].clone(), "prefix=late".into()], "", &[auth])
        .await;
    check(&doc, &misplaced, "400", "application/problem+json");
    let reused = {
        let key = "Idempotency-Key: openapi-key";
        d.exchange(&form(&[&a]), "prefix=k", &[auth, key]).await;
        d.exchange(&form(&[&html]), "prefix=k", &[auth, key]).await
    };
    check(&doc, &reused, "422", "application/problem+json");
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}
