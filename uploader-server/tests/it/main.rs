//! Tests of the daemon: through `app(state).oneshot(request)` and through a real socket, against
//! the embedded S3 endpoint (real aws-sdk-s3 over HTTP), and against fault-injecting stores.

mod common;
mod requests;
mod socket;
mod web;
