//! Connect: opens the store a front-end was configured for, an S3 endpoint or the embedded
//! one (`--embedded-s3`), from plain data.
//!
//! This is where the CLI's and the daemon's connection settings become an [`S3Store`]. It
//! sends nothing: credentials and the bucket are checked by [`crate::validate::check`].

use std::path::PathBuf;
use std::sync::Arc;

#[cfg(feature = "embedded")]
use crate::embedded::{EmbeddedError, EmbeddedS3};
use crate::store::s3::EndpointError;
use crate::store::{S3Config, S3Store};

/// How to reach S3; the fields of the AWS CLI's connection flags. `Default`: AWS, with the
/// region, profile and endpoint from the SDK's default chains.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectOptions {
    /// Endpoint URL (default: `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, then AWS).
    pub endpoint_url: Option<String>,
    /// Region (default: `AWS_REGION`, the profile, then `us-east-1`).
    pub region: Option<String>,
    /// Shared-config profile (default: `AWS_PROFILE`).
    pub profile: Option<String>,
    /// Force path-style addressing (default: off; path style is on for custom endpoints).
    pub force_path_style: bool,
    /// Allow a plain-HTTP endpoint on a non-loopback host (default: refused).
    pub allow_http: bool,
    /// Run an S3-compatible endpoint in this process over this directory and use it
    /// (default: none). Excludes `endpoint_url`.
    pub embedded_s3: Option<PathBuf>,
}

/// The store could not be opened; nothing was sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// Both an embedded endpoint and an endpoint URL were asked for.
    #[error("--embedded-s3 and --endpoint-url cannot be used together")]
    EmbeddedWithEndpoint,
    /// The embedded endpoint did not start.
    #[cfg(feature = "embedded")]
    #[error("starting the embedded S3 endpoint")]
    Embedded(#[source] EmbeddedError),
    /// An embedded endpoint was asked for, but this build has none.
    #[error("this build has no embedded S3 endpoint (feature `embedded` of uploader-core)")]
    EmbeddedUnavailable,
    /// The endpoint's configuration cannot work (transport policy, URL, bucket name).
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
}

/// An open store, and the embedded endpoint behind it when one was asked for: the endpoint
/// runs as long as the connection lives.
#[derive(Debug)]
pub struct Connection {
    store: Arc<S3Store>,
    #[cfg(feature = "embedded")]
    embedded: Option<EmbeddedS3>,
}

impl Connection {
    /// Opens the store for `bucket`, starting the embedded endpoint first when asked (it
    /// creates the bucket as a directory). Must be called within a Tokio runtime.
    pub async fn open(opts: &ConnectOptions, bucket: &str) -> Result<Connection, ConnectError> {
        #[cfg(feature = "embedded")]
        let mut embedded = None;
        let config = match &opts.embedded_s3 {
            Some(_) if opts.endpoint_url.is_some() => {
                return Err(ConnectError::EmbeddedWithEndpoint);
            }
            #[cfg(feature = "embedded")]
            Some(dir) => {
                let server = EmbeddedS3::start(dir, bucket)
                    .await
                    .map_err(ConnectError::Embedded)?;
                let config = server.s3_config();
                embedded = Some(server);
                config
            }
            #[cfg(not(feature = "embedded"))]
            Some(_) => return Err(ConnectError::EmbeddedUnavailable),
            None => S3Config {
                bucket: bucket.to_owned(),
                region: opts.region.clone(),
                endpoint_url: opts.endpoint_url.clone(),
                force_path_style: opts.force_path_style.then_some(true),
                profile: opts.profile.clone(),
                allow_http: opts.allow_http,
                ..S3Config::default()
            },
        };
        let store = S3Store::connect(&config).await?;
        Ok(Connection {
            store: Arc::new(store),
            #[cfg(feature = "embedded")]
            embedded,
        })
    }

    /// The store.
    pub fn store(&self) -> &Arc<S3Store> {
        &self.store
    }

    /// The embedded endpoint, when one runs.
    #[cfg(feature = "embedded")]
    pub fn embedded(&self) -> Option<&EmbeddedS3> {
        self.embedded.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectStore as _;
    use crate::key::KeyPrefix;

    #[tokio::test]
    async fn the_embedded_endpoint_and_an_endpoint_url_exclude_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ConnectOptions {
            embedded_s3: Some(dir.path().to_owned()),
            endpoint_url: Some("http://127.0.0.1:9000".into()),
            ..ConnectOptions::default()
        };
        let err = Connection::open(&opts, "bucket").await.unwrap_err();
        assert!(matches!(err, ConnectError::EmbeddedWithEndpoint), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn plain_http_off_loopback_is_refused_before_anything_is_sent() {
        let opts = ConnectOptions {
            endpoint_url: Some("http://192.0.2.1:9000".into()),
            ..ConnectOptions::default()
        };
        let err = Connection::open(&opts, "bucket").await.unwrap_err();
        assert!(matches!(err, ConnectError::Endpoint(_)), "{err}");
    }

    #[cfg(feature = "embedded")]
    #[tokio::test]
    async fn an_embedded_connection_serves_its_bucket_while_it_lives() {
        let dir = tempfile::tempdir().unwrap();
        let opts = ConnectOptions {
            embedded_s3: Some(dir.path().to_owned()),
            ..ConnectOptions::default()
        };
        let conn = Connection::open(&opts, "conn-bucket").await.unwrap();
        assert!(conn.embedded().is_some());
        crate::validate::check(conn.store(), &KeyPrefix::root(), false)
            .await
            .unwrap();
        assert!(conn.store().head("absent.txt").await.unwrap().is_none());
        assert!(dir.path().join("conn-bucket").is_dir());
    }
}
