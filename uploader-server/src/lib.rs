//! `uploader-server`: the HTTP batch daemon (`uploader serve`), a thin front-end over
//! `uploader-core`: it parses requests, calls the core pipeline, and renders per-file results.

pub mod app;
pub mod auth;
mod batch;
mod body;
pub mod config;
pub mod connect;
mod form;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod serve;
pub mod state;
pub mod upload;

pub use app::app;
pub use config::{Limits, ServeArgs, ServerConfig};
pub use state::AppState;
