//! Content sniffing never panics on arbitrary bytes and names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uploader_core::sniff::{MimePolicy, check};

fuzz_target!(|input: (&[u8], Option<&[u8]>, &str)| {
    let (head, tail, name) = input;
    let _ = check(&MimePolicy::default(), head, tail, name);
});
