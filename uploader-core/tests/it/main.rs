//! Integration tests of uploader-core: the store conformance suite, the pipeline against the
//! embedded S3 endpoint (real aws-sdk-s3 over real HTTP), fault injection, and memory bounds.

mod common;
mod faults;
mod memory;
mod pipeline;
mod resume;
mod sniffing;
mod stream;
mod sync;
mod validate;
