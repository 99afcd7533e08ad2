//! End-to-end tests: the real `uploader` binary against real S3-compatible servers.

mod browser;
mod cli;
mod daemon;
mod faults;
mod harness;
mod idempotency;
mod interop;
mod lifecycle;
mod limits;
mod matrix;
mod openapi;
mod replicas;
mod resume;
mod shard;
mod stores;
mod sync;
mod tenants;
