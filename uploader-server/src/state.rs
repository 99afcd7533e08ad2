//! The state every request shares, and the request extensions the middleware hands to the
//! handlers. Imported by the router (`app`) and by the handlers alike, so neither
//! imports the other.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use uploader_core::{KeyPrefix, S3Store, Uploader};

use crate::auth::Tokens;
use crate::config::{CorsOrigin, Limits};
use crate::idempotency::{IdempotencyConfig, Records};
use crate::tenants::{Auth, TokensFileError};

/// State shared by every request. Cheap to clone (the fields are behind one `Arc`).
#[derive(Clone)]
pub struct AppState {
    shared: Arc<Shared>,
}

/// The fields of [`AppState`] (read by the router and the handlers of this crate).
pub struct Shared {
    /// The core uploader; its budget of S3 requests is shared by every HTTP request.
    pub(crate) uploader: Uploader,
    /// Every key lies under this prefix.
    pub(crate) root_prefix: KeyPrefix,
    pub(crate) limits: Limits,
    /// The upload tokens, plain and scoped (re-read by [`AppState::reload_tokens`]).
    pub(crate) auth: Auth,
    /// Tokens of the admin API (none: the admin API is off).
    pub(crate) admin_tokens: Tokens,
    /// Upload requests served at once.
    pub(crate) slots: Arc<Semaphore>,
    /// Cancelled when in-flight uploads must give up (shutdown deadline).
    pub(crate) shutdown: CancellationToken,
    /// Set when the server stops taking new uploads.
    pub(crate) draining: AtomicBool,
    /// The S3 store to check for readiness (none: always ready, e.g. a test store).
    pub(crate) s3: Option<Arc<S3Store>>,
    /// The last readiness verdict and when it was reached.
    pub(crate) ready: Mutex<Option<(Instant, Result<(), String>)>>,
    /// The process's Prometheus recorder.
    pub(crate) metrics: &'static PrometheusHandle,
    /// Origins allowed to call the API from a browser (none: no CORS).
    pub(crate) cors_origins: Vec<CorsOrigin>,
    /// Whether `GET /` serves the upload page.
    pub(crate) ui: bool,
    /// The idempotency records (in the uploader's store, under the root prefix).
    pub(crate) records: Records,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.shared
    }
}

impl AppState {
    /// State for an uploader; `s3` is checked by `/readyz`.
    pub fn new(
        uploader: Uploader,
        root_prefix: KeyPrefix,
        limits: Limits,
        tokens: &[String],
        s3: Option<Arc<S3Store>>,
    ) -> AppState {
        let records = Records::new(
            Arc::clone(uploader.store()),
            root_prefix.clone(),
            IdempotencyConfig::default(),
            uploader.config().retry,
        );
        AppState {
            shared: Arc::new(Shared {
                uploader,
                root_prefix,
                slots: Arc::new(Semaphore::new(limits.max_concurrent_uploads)),
                limits,
                auth: Auth::new(tokens),
                admin_tokens: Tokens::default(),
                shutdown: CancellationToken::new(),
                draining: AtomicBool::new(false),
                s3,
                ready: Mutex::new(None),
                // The recorder must exist before the first request records anything.
                metrics: crate::metrics::handle(),
                cors_origins: Vec::new(),
                ui: false,
                records,
            }),
        }
    }

    /// Turns the admin API on for `tokens` (`PUT /v1/limits`). Call it before the state is
    /// shared (cloned).
    pub fn with_admin_tokens(mut self, tokens: &[String]) -> AppState {
        Arc::get_mut(&mut self.shared)
            .expect("admin tokens are set before the state is shared")
            .admin_tokens = Tokens::new(tokens);
        self
    }

    /// Uses `auth` for the upload tokens (plain and scoped) instead of the plain tokens given
    /// to [`AppState::new`]. Call it before the state is shared.
    pub fn with_auth(mut self, auth: Auth) -> AppState {
        Arc::get_mut(&mut self.shared)
            .expect("the tokens are set before the state is shared")
            .auth = auth;
        self
    }

    /// Whether upload requests need a token.
    pub fn auth_enabled(&self) -> bool {
        self.auth.enabled()
    }

    /// Re-reads the scoped tokens file (SIGHUP); on error the tokens in force stay. How many
    /// scoped tokens are in force.
    pub fn reload_tokens(&self) -> Result<usize, TokensFileError> {
        self.auth.reload()
    }

    /// Allows cross-origin requests from `origins` (CORS). Call it before the state is shared.
    pub fn with_cors_origins(mut self, origins: &[CorsOrigin]) -> AppState {
        Arc::get_mut(&mut self.shared)
            .expect("CORS origins are set before the state is shared")
            .cors_origins = origins.to_vec();
        self
    }

    /// Serves the upload page at `GET /` (`--ui`). Call it before the state is shared.
    pub fn with_ui(mut self, ui: bool) -> AppState {
        Arc::get_mut(&mut self.shared)
            .expect("the UI switch is set before the state is shared")
            .ui = ui;
        self
    }

    /// Keeps idempotency records by `config` (`--idempotency-ttl`, `--idempotency-lease`).
    /// Call it before the state is shared.
    pub fn with_idempotency(mut self, config: IdempotencyConfig) -> AppState {
        let shared = Arc::get_mut(&mut self.shared)
            .expect("the idempotency settings are set before the state is shared");
        shared.records = Records::new(
            Arc::clone(shared.uploader.store()),
            shared.root_prefix.clone(),
            config,
            shared.uploader.config().retry,
        );
        self
    }

    /// Cancelling this token makes in-flight uploads abort and answer.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops taking new uploads (they get 503).
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the server has stopped taking new uploads.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// The upload slot a request holds while it is served (released when the request's
/// extensions are dropped, after the response is built).
#[derive(Clone)]
pub struct Slot {
    _permit: Arc<OwnedSemaphorePermit>,
}

impl Slot {
    /// Holds `permit` for the request.
    pub(crate) fn new(permit: OwnedSemaphorePermit) -> Slot {
        Slot {
            _permit: Arc::new(permit),
        }
    }
}
