//! Every environment variable the project reads, in one place.

/// Standard AWS: endpoint of every service.
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
/// Standard AWS: endpoint of S3 (wins over [`AWS_ENDPOINT_URL`]).
pub const AWS_ENDPOINT_URL_S3: &str = "AWS_ENDPOINT_URL_S3";
/// Standard AWS: region.
pub const AWS_REGION: &str = "AWS_REGION";
/// Standard AWS: profile.
pub const AWS_PROFILE: &str = "AWS_PROFILE";
/// Log filter of the binaries (`tracing_subscriber` syntax), e.g. `uploader_core=debug`.
pub const UPLOADER_LOG: &str = "UPLOADER_LOG";
/// Allow plain-HTTP endpoints on non-loopback hosts (`1`/`true`).
pub const UPLOADER_ALLOW_HTTP: &str = "UPLOADER_ALLOW_HTTP";
/// Disable colours in terminal output (any value).
pub const NO_COLOR: &str = "NO_COLOR";
