//! The daemon's reserved directory under its root prefix (the idempotency records live there):
//! no upload may write into it, whatever its token's prefix.

use uploader_core::KeyPrefix;

/// The directory, under the root prefix, that uploads cannot write (the records are in its
/// `idempotency/`).
pub const RESERVED_DIR: &str = ".uploader";

/// Whether `key` (a full key or a prefix) lies in the reserved directory under `root` (the
/// daemon's root prefix, never a token's). The directory's name is compared ignoring ASCII
/// case: on a case-insensitive backend `.UPLOADER/` is the same directory.
pub fn is_reserved(root: &KeyPrefix, key: &str) -> bool {
    key.strip_prefix(root.as_str())
        .and_then(|rel| {
            let head = rel.get(..RESERVED_DIR.len())?;
            head.eq_ignore_ascii_case(RESERVED_DIR)
                .then(|| &rel[RESERVED_DIR.len()..])
        })
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What a refusal to write under the reserved directory says.
pub fn reserved_message(root: &KeyPrefix) -> String {
    format!(
        "{}{RESERVED_DIR}/ is reserved for the daemon's own records",
        root.as_str()
    )
}
