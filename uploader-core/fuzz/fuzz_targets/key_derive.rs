//! Key derivation never panics, and every key it returns obeys the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use uploader_core::key::{KeyPrefix, MAX_KEY_BYTES, ObjectKey};

fuzz_target!(|input: (&str, &str)| {
    let (prefix, name) = input;
    let Ok(prefix) = KeyPrefix::new(prefix) else { return };
    if let Ok(key) = ObjectKey::derive(&prefix, name) {
        let k = key.as_str();
        assert!(k.starts_with(prefix.as_str()));
        assert!(k.len() <= MAX_KEY_BYTES);
        assert!(!k.contains('\\'));
        assert!(k.split('/').all(|s| !s.is_empty() && s != "." && s != ".."));
        let rest = &k[prefix.as_str().len()..];
        assert_eq!(ObjectKey::derive(&prefix, rest).as_ref(), Ok(&key));
    }
});
