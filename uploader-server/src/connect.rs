//! S3 connection flags shared by every command (`upload`, `check`, `cleanup`, `serve`), and
//! opening the store they describe (starting the embedded endpoint when asked).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Args;
use uploader_core::{EmbeddedS3, S3Config, S3Store};

/// How to reach S3; follows the AWS CLI's names and environment variables.
#[derive(Debug, Args, Clone, Default)]
pub struct ConnectionArgs {
    /// S3 endpoint URL (default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, then AWS).
    #[arg(long, value_name = "URL", help_heading = "S3 connection")]
    pub endpoint_url: Option<String>,
    /// Region (default: AWS_REGION, the profile, then us-east-1).
    #[arg(long, help_heading = "S3 connection")]
    pub region: Option<String>,
    /// Shared-config profile (default: AWS_PROFILE).
    #[arg(long, help_heading = "S3 connection")]
    pub profile: Option<String>,
    /// Path-style addressing (default: on for custom endpoints).
    #[arg(long, help_heading = "S3 connection")]
    pub force_path_style: bool,
    /// Allow a plain-HTTP endpoint on a non-loopback host (credentials and data unencrypted).
    #[arg(long, env = "UPLOADER_ALLOW_HTTP", help_heading = "S3 connection")]
    pub allow_http: bool,
    /// Run an S3-compatible endpoint inside this process over DIR and use it (the bucket is
    /// created as a directory under DIR). For trying the tool and for tests.
    #[arg(
        long,
        value_name = "DIR",
        env = "UPLOADER_EMBEDDED_S3",
        help_heading = "S3 connection"
    )]
    pub embedded_s3: Option<PathBuf>,
}

/// A store, and the embedded endpoint behind it when one was asked for (kept alive as long as
/// the connection).
pub struct Connection {
    pub store: Arc<S3Store>,
    embedded: Option<EmbeddedS3>,
}

impl Connection {
    /// Opens the store for `bucket`. Sends nothing (see `validate::check`).
    pub async fn open(args: &ConnectionArgs, bucket: &str) -> anyhow::Result<Connection> {
        let (config, embedded) = match &args.embedded_s3 {
            Some(dir) => {
                if args.endpoint_url.is_some() {
                    bail!("--embedded-s3 and --endpoint-url cannot be used together");
                }
                let server = EmbeddedS3::start(dir, bucket)
                    .await
                    .context("starting the embedded S3 endpoint")?;
                (server.s3_config(), Some(server))
            }
            None => (
                S3Config {
                    bucket: bucket.to_owned(),
                    region: args.region.clone(),
                    endpoint_url: args.endpoint_url.clone(),
                    force_path_style: args.force_path_style.then_some(true),
                    profile: args.profile.clone(),
                    allow_http: args.allow_http,
                    ..S3Config::default()
                },
                None,
            ),
        };
        let store = S3Store::connect(&config).await?;
        Ok(Connection {
            store: Arc::new(store),
            embedded,
        })
    }

    /// The embedded endpoint, when one runs.
    pub fn embedded(&self) -> Option<&EmbeddedS3> {
        self.embedded.as_ref()
    }
}
