//! `uploader-server`: the HTTP batch daemon (`uploader serve`), a thin front-end over
//! `uploader-core`: it parses requests, calls the core pipeline, and renders per-file results.
//! It takes its settings as a plain [`ServerConfig`]; the command line that fills it belongs to
//! the `uploader` binary.

pub mod access;
mod admin;
pub mod app;
pub mod auth;
mod batch;
mod body;
pub mod config;
pub mod cors;
mod form;
pub mod idempotency;
pub mod metrics;
pub mod model;
pub mod openapi;
mod origin;
mod probes;
pub mod problem;
pub mod quota;
mod reserved;
pub mod serve;
pub mod state;
pub mod tenants;
pub mod ui;
pub mod upload;

pub use app::app;
pub use config::{Limits, ServerConfig, ServerConfigError};
pub use state::AppState;
