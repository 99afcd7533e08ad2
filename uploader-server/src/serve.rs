//! Running the daemon: fail-fast validation, listening (HTTP or HTTPS), graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use uploader_core::connect::Connection;
use uploader_core::{Uploader, validate};

use crate::app::app;
use crate::config::ServerConfig;
use crate::state::AppState;

/// Runs `uploader serve` until SIGTERM or Ctrl-C.
///
/// Validates `config`, opens the store and checks credentials and bucket before listening.
/// On the signal: stop accepting connections and new uploads; let in-flight requests finish
/// for the grace period; then cancel what remains (their multipart uploads are aborted and
/// they get their per-file results); exit once every request has answered.
pub async fn run(mut config: ServerConfig) -> anyhow::Result<()> {
    config.validate()?;
    let auth = crate::tenants::Auth::from_config(&config)?;
    let conn = Connection::open(&config.connect, &config.bucket).await?;
    let store = conn.store();
    validate::check(store, &config.root_prefix, false)
        .await
        .context("start-up check failed")?;
    if config.detect_checksum {
        config.upload.checksum =
            validate::detect_checksum(store.as_ref(), &config.root_prefix).await?;
        eprintln!(
            "uploader serve: checksum {} (probed)",
            config.upload.checksum
        );
    }
    let uploader = Uploader::builder()
        .with_store(Arc::clone(store) as _)
        .with_config(config.upload.clone())
        .with_limits(config.rates.clone())
        .build()?;
    let state = AppState::new(
        uploader,
        config.root_prefix.clone(),
        config.limits.clone(),
        config.auth_tokens(),
        Some(Arc::clone(store)),
    )
    .with_auth(auth)
    .with_admin_tokens(&config.admin_tokens)
    .with_cors_origins(&config.cors_origins)
    .with_ui(config.ui)
    .with_idempotency(config.idempotency);
    // The client's address is in every request's extensions, for the access log.
    let service = app(state.clone()).into_make_service_with_connect_info::<SocketAddr>();

    let shutdown = shutdown_signal(state.clone(), config.shutdown_grace);
    if let Some(path) = config.scoped_tokens.clone().filter(|_| !config.no_auth) {
        tokio::spawn(watch_tokens(state.clone(), path));
    }
    match &config.tls {
        None => {
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("listening on {}", config.listen))?;
            tracing::info!(addr = %listener.local_addr()?, auth = state.auth_enabled(), "serving HTTP");
            eprintln!(
                "uploader serve: listening on http://{}",
                listener.local_addr()?
            );
            if config.ui {
                eprintln!(
                    "uploader serve: upload page at http://{}/",
                    listener.local_addr()?
                );
            }
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await?;
        }
        Some((cert, key)) => {
            let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
                .await
                .context("loading the TLS certificate and key")?;
            let handle = axum_server::Handle::new();
            let h = handle.clone();
            tokio::spawn(async move {
                shutdown.await;
                h.graceful_shutdown(None);
            });
            eprintln!("uploader serve: listening on https://{}", config.listen);
            axum_server::bind_rustls(config.listen, tls)
                .handle(handle)
                .serve(service)
                .await?;
        }
    }
    eprintln!("uploader serve: stopped");
    Ok(())
}

/// How often the scoped tokens file is checked for a change.
pub const TOKENS_POLL: Duration = Duration::from_secs(2);

/// Re-reads the scoped tokens file on every SIGHUP, and when its content changes (checked
/// every [`TOKENS_POLL`]: a Kubernetes Secret or ConfigMap volume is updated without a signal,
/// by swapping a symbolic link, which file-event watchers miss; reading a small file every two
/// seconds costs nothing). A change is re-read only once two polls in a row read the same
/// content, so a poll that catches the file mid-write (truncated, half written) reloads
/// nothing; SIGHUP re-reads at once (write the file by atomic rename, as Kubernetes does). A
/// file that does not parse or cannot be read is logged and ignored: the tokens in force stay
/// (never no authentication).
async fn watch_tokens(state: AppState, path: PathBuf) {
    #[cfg(unix)]
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP: the scoped tokens are re-read on change only");
            None
        }
    };
    let content = |path: &PathBuf| {
        let path = path.clone();
        async move {
            tokio::fs::read(&path)
                .await
                .ok()
                .map(|b| crate::tenants::digest(&b))
        }
    };
    let mut last = content(&path).await;
    // A changed content seen once, reloaded when the next poll reads it again.
    let mut pending = None;
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<Option<()>>();
        let signalled = tokio::select! {
            _ = hangup => true,
            () = tokio::time::sleep(TOKENS_POLL) => false,
        };
        let now = content(&path).await;
        if !signalled {
            if now == last {
                pending = None;
                continue;
            }
            if pending.as_ref() != Some(&now) {
                pending = Some(now);
                continue;
            }
        }
        pending = None;
        let why = if signalled {
            "on SIGHUP"
        } else {
            "after a change"
        };
        last = now;
        match state.reload_tokens() {
            Ok(n) => {
                tracing::info!(tokens = n, "scoped tokens re-read {why}");
                eprintln!("uploader serve: scoped tokens re-read {why} ({n} in force)");
            }
            Err(e) => {
                tracing::error!(error = %e, "the scoped tokens file was not re-read {why}; the tokens in force stay");
            }
        }
    }
}

/// Resolves when the server should stop accepting; cancels in-flight uploads after `grace`.
async fn shutdown_signal(state: AppState, grace: Duration) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        () = term => {}
    }
    eprintln!("uploader serve: shutting down (grace {grace:?})");
    state.start_draining();
    let token = state.shutdown_token();
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        token.cancel();
    });
}
