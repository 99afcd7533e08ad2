//! Key: deriving object keys that nothing can escape.
//!
//! [`ObjectKey`] can only be built here, so every key in the program has passed these rules
//! (checked on the final string, after Unicode NFC normalisation):
//!
//! * `\` is never a separator and is refused; percent-escapes are not decoded (`%2e%2e%2f` is
//!   five literal characters, never `../`);
//! * no `.` or `..` segment, no segment made only of dots, no empty segment (`a//b`, a leading
//!   or trailing `/`), no whitespace-only segment, no segment over 255 bytes;
//! * no segment whose compatibility form (NFKC) is only dots or holds a `/` or `\`, so
//!   full-width `．．／` cannot become `../` in any later normalisation;
//! * no control characters (C0, DEL, C1), no line/paragraph separators, no bidi controls and no
//!   zero-width characters;
//! * at most 1024 UTF-8 bytes including the prefix, and always under the prefix.
//!
//! Inputs that break a rule are refused with the rule's name rather than repaired: repairing
//! (dropping characters, collapsing segments) could map two different inputs onto one key.
//! Two inputs of one batch that normalise to the same key are caught by the pipeline as
//! `duplicate_key`.

use std::fmt;
use std::path::{Component, Path};

use unicode_normalization::UnicodeNormalization;

/// S3's limit on key length, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 1024;
/// Longest segment accepted: the common file-name limit of filesystem-backed servers.
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Which rule refused a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The name is empty.
    #[error("the name is empty")]
    Empty,
    /// The name is not valid UTF-8.
    #[error("the name is not valid UTF-8")]
    InvalidUtf8,
    /// A leading `/`.
    #[error("absolute paths are not allowed (leading '/')")]
    Absolute,
    /// A backslash.
    #[error("backslash is not allowed in names")]
    Backslash,
    /// `//`, or a leading or trailing `/`.
    #[error("empty path segment ('//', or a leading or trailing '/')")]
    EmptySegment,
    /// A segment made only of dots.
    #[error("'.' and '..' segments (or segments made only of dots) are not allowed")]
    DotSegment,
    /// A segment made only of whitespace.
    #[error("whitespace-only segments are not allowed")]
    BlankSegment,
    /// A segment that Unicode normalisation turns into `.`, `..` or a separator.
    #[error("segment {0:?} would become '.', '..' or a separator under Unicode normalisation")]
    ConfusableSegment(String),
    /// A control, separator, bidi or zero-width character (and its code point).
    #[error("character {0:?} (U+{1:04X}) is not allowed: control, separator, bidi or zero-width")]
    ForbiddenChar(char, u32),
    /// A segment over [`MAX_SEGMENT_BYTES`] (its length).
    #[error("a path segment is {0} bytes long (limit {MAX_SEGMENT_BYTES})")]
    SegmentTooLong(usize),
    /// A key over [`MAX_KEY_BYTES`] with its prefix (its length).
    #[error("the key would be {0} bytes long with the prefix (limit {MAX_KEY_BYTES})")]
    TooLong(usize),
}

impl KeyError {
    /// Stable name of the rule, for machine-readable errors.
    pub fn rule(&self) -> &'static str {
        match self {
            KeyError::Empty => "empty",
            KeyError::InvalidUtf8 => "invalid_utf8",
            KeyError::Absolute => "absolute",
            KeyError::Backslash => "backslash",
            KeyError::EmptySegment => "empty_segment",
            KeyError::DotSegment => "dot_segment",
            KeyError::BlankSegment => "blank_segment",
            KeyError::ConfusableSegment(_) => "confusable_segment",
            KeyError::ForbiddenChar(..) => "forbidden_char",
            KeyError::SegmentTooLong(_) => "segment_too_long",
            KeyError::TooLong(_) => "too_long",
        }
    }
}

/// A validated key prefix: empty, or segments that each pass the key rules, ending in `/`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// The empty prefix (keys at the bucket root).
    pub fn root() -> KeyPrefix {
        KeyPrefix(String::new())
    }

    /// Validates a prefix such as `docs/2024` or `docs/2024/` (a trailing `/` is implied).
    pub fn new(prefix: &str) -> Result<KeyPrefix, KeyError> {
        let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
        if trimmed.is_empty() {
            return if prefix.is_empty() {
                Ok(KeyPrefix::root())
            } else {
                Err(KeyError::Absolute)
            };
        }
        let norm = validate(trimmed, 0)?;
        Ok(KeyPrefix(format!("{norm}/")))
    }

    /// This prefix with `sub` (validated the same way) appended.
    pub fn join(&self, sub: &str) -> Result<KeyPrefix, KeyError> {
        let sub = KeyPrefix::new(sub)?;
        let joined = format!("{}{}", self.0, sub.0);
        if joined.len() > MAX_KEY_BYTES {
            return Err(KeyError::TooLong(joined.len()));
        }
        Ok(KeyPrefix(joined))
    }

    /// The prefix as a string (empty, or ending with `/`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An object key that passed every rule of this module and lies under its prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey(String);

impl ObjectKey {
    /// Derives the key for `name` (a `/`-separated relative name, e.g. a client's file name)
    /// under `prefix`.
    pub fn derive(prefix: &KeyPrefix, name: &str) -> Result<ObjectKey, KeyError> {
        let norm = validate(name, prefix.0.len())?;
        Ok(ObjectKey(format!("{}{norm}", prefix.0)))
    }

    /// Derives the key for a relative filesystem path under `prefix`. Only normal components
    /// are accepted; the path must be valid UTF-8.
    pub fn from_relative_path(prefix: &KeyPrefix, path: &Path) -> Result<ObjectKey, KeyError> {
        let mut parts = Vec::new();
        for c in path.components() {
            match c {
                Component::Normal(s) => parts.push(s.to_str().ok_or(KeyError::InvalidUtf8)?),
                Component::RootDir | Component::Prefix(_) => return Err(KeyError::Absolute),
                Component::CurDir | Component::ParentDir => return Err(KeyError::DotSegment),
            }
        }
        ObjectKey::derive(prefix, &parts.join("/"))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Takes the string out.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ObjectKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Characters never allowed in a key.
fn forbidden(c: char) -> bool {
    c.is_control() // C0, DEL, C1
        || matches!(c,
            '\u{2028}' | '\u{2029}'                 // line / paragraph separator
            | '\u{200B}'..='\u{200F}'               // zero-width space/joiners, LRM, RLM
            | '\u{202A}'..='\u{202E}'               // bidi embeddings and overrides
            | '\u{2060}'..='\u{2064}'               // word joiner, invisible operators
            | '\u{2066}'..='\u{2069}'               // bidi isolates
            | '\u{061C}'                            // Arabic letter mark
            | '\u{FEFF}'                            // BOM / zero-width no-break space
            | '\u{FFF9}'..='\u{FFFB}'               // interlinear annotations
        )
}

/// Validates a relative name; returns its NFC form. `prefix_len` counts toward the length limit.
fn validate(name: &str, prefix_len: usize) -> Result<String, KeyError> {
    if name.is_empty() {
        return Err(KeyError::Empty);
    }
    let norm: String = name.nfc().collect();
    if let Some(c) = norm.chars().find(|&c| forbidden(c)) {
        return Err(KeyError::ForbiddenChar(c, c as u32));
    }
    if norm.contains('\\') {
        return Err(KeyError::Backslash);
    }
    if norm.starts_with('/') {
        return Err(KeyError::Absolute);
    }
    for seg in norm.split('/') {
        if seg.is_empty() {
            return Err(KeyError::EmptySegment);
        }
        if seg.chars().all(|c| c == '.') {
            return Err(KeyError::DotSegment);
        }
        if seg.chars().all(char::is_whitespace) {
            return Err(KeyError::BlankSegment);
        }
        if seg.len() > MAX_SEGMENT_BYTES {
            return Err(KeyError::SegmentTooLong(seg.len()));
        }
        if !seg.is_ascii() {
            let compat: String = seg.nfkc().collect();
            if compat.chars().all(|c| c == '.')
                || compat.contains('/')
                || compat.contains('\\')
                || compat.chars().any(forbidden)
            {
                return Err(KeyError::ConfusableSegment(seg.to_owned()));
            }
        }
    }
    let total = prefix_len + norm.len();
    if total > MAX_KEY_BYTES {
        return Err(KeyError::TooLong(total));
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(prefix: &str, name: &str) -> Result<String, &'static str> {
        let p = KeyPrefix::new(prefix).map_err(|e| e.rule())?;
        ObjectKey::derive(&p, name)
            .map(ObjectKey::into_string)
            .map_err(|e| e.rule())
    }

    #[test]
    fn accepts_ordinary_names_under_the_prefix() {
        assert_eq!(key("docs", "a/b.txt"), Ok("docs/a/b.txt".into()));
        assert_eq!(key("docs/", "a b/ü.txt"), Ok("docs/a b/ü.txt".into()));
        assert_eq!(key("", "x"), Ok("x".into()));
        assert_eq!(key("p", "%2e%2e%2f"), Ok("p/%2e%2e%2f".into()));
        assert_eq!(key("p", "%252e"), Ok("p/%252e".into()));
        assert_eq!(key("p", ".hidden"), Ok("p/.hidden".into()));
        assert_eq!(key("p", "wait….txt"), Ok("p/wait….txt".into()));
    }

    /// BAD_INPUTS.md, names section: every entry is refused with a named rule.
    #[test]
    fn bad_inputs_table() {
        let cases: &[(&str, &str)] = &[
            ("../../etc/passwd", "dot_segment"),
            ("a/../b", "dot_segment"),
            ("a/./b", "dot_segment"),
            ("..", "dot_segment"),
            (".", "dot_segment"),
            ("...", "dot_segment"),
            ("......", "dot_segment"),
            ("..\\..\\win.ini", "backslash"),
            ("a\\b", "backslash"),
            ("C:\\x", "backslash"),
            ("\\\\host\\share\\x", "backslash"),
            ("/etc/x", "absolute"),
            ("//x", "absolute"),
            ("a//b", "empty_segment"),
            ("a/", "empty_segment"),
            ("a\0.png", "forbidden_char"),
            ("a\r\nb", "forbidden_char"),
            ("a\tb", "forbidden_char"),
            ("a\u{7f}b", "forbidden_char"),
            ("a\u{85}b", "forbidden_char"),
            ("a\u{2028}b", "forbidden_char"),
            ("gnp.\u{202E}exe", "forbidden_char"),
            ("a\u{200B}b", "forbidden_char"),
            ("．．／etc", "confusable_segment"),
            ("．．", "confusable_segment"),
            ("a／b", "confusable_segment"),
            ("", "empty"),
            ("   ", "blank_segment"),
        ];
        for (input, rule) in cases {
            assert_eq!(key("p", input), Err(*rule), "input {input:?}");
        }
        // A basename over 255 bytes.
        assert_eq!(key("p", &"a".repeat(256)), Err("segment_too_long"));
        // 400 × '€' is 1200 bytes: over the limit only with the prefix... and alone.
        let euros = format!("{}/{}", "€".repeat(80), "€".repeat(80)); // 481 bytes
        let long_prefix = "d/".repeat(280); // 560 bytes
        assert!(key("", &euros).is_ok());
        assert_eq!(key(&long_prefix, &euros), Err("too_long"));
    }

    #[test]
    fn nfc_and_nfd_forms_map_to_one_key() {
        let nfc = "caf\u{e9}.txt";
        let nfd = "cafe\u{301}.txt";
        assert_ne!(nfc, nfd);
        assert_eq!(key("p", nfc), key("p", nfd));
    }

    #[test]
    fn relative_paths_join_components_and_refuse_escapes() {
        let p = KeyPrefix::new("up").unwrap();
        let k = ObjectKey::from_relative_path(&p, Path::new("a/b/c.bin")).unwrap();
        assert_eq!(k.as_str(), "up/a/b/c.bin");
        assert_eq!(
            ObjectKey::from_relative_path(&p, Path::new("../x")),
            Err(KeyError::DotSegment)
        );
        assert_eq!(
            ObjectKey::from_relative_path(&p, Path::new("/x")),
            Err(KeyError::Absolute)
        );
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            let bad = std::ffi::OsStr::from_bytes(b"a\xffb");
            assert_eq!(
                ObjectKey::from_relative_path(&p, Path::new(bad)),
                Err(KeyError::InvalidUtf8)
            );
        }
    }

    use proptest::prelude::*;

    /// Names built from the characters that matter: separators, dots, confusables, controls,
    /// bidi and zero-width characters, combining marks, and ordinary letters.
    fn tricky_name() -> impl Strategy<Value = String> {
        let chars = prop::sample::select(vec![
            "/", "\\", ".", "..", "．", "／", "＼", "\0", "\n", "\u{7f}", "\u{85}", "\u{202e}",
            "\u{200b}", "\u{2028}", "e\u{301}", "\u{e9}", "a", "Z", "0", " ", "%2e", "%2f", "€",
            "ﬁ", "\u{2024}", "\u{fe52}", "C:", "~",
        ]);
        prop::collection::vec(chars, 0..40).prop_map(|v| v.concat())
    }

    fn check_invariants(prefix: &KeyPrefix, name: &str) -> Result<(), TestCaseError> {
        if let Ok(key) = ObjectKey::derive(prefix, name) {
            let k = key.as_str();
            prop_assert!(k.starts_with(prefix.as_str()));
            prop_assert!(k.len() <= MAX_KEY_BYTES);
            prop_assert!(!k.starts_with('/'));
            for seg in k.split('/') {
                prop_assert!(!seg.is_empty(), "empty segment in {k:?}");
                prop_assert!(seg != "." && seg != "..", "dot segment in {k:?}");
                let compat: String = seg.nfkc().collect();
                prop_assert!(!compat.chars().all(|c| c == '.'), "confusable {k:?}");
                prop_assert!(!compat.contains('/') && !compat.contains('\\'));
            }
            prop_assert!(!k.contains('\\'));
            prop_assert!(!k.chars().any(forbidden));
            let nfc: String = k.nfc().collect();
            prop_assert_eq!(&nfc, k, "not NFC");
            // Idempotent: deriving again from the result gives the same key.
            let rest = &k[prefix.as_str().len()..];
            let again = ObjectKey::derive(prefix, rest);
            prop_assert_eq!(again, Ok(key.clone()));
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn derived_keys_never_escape_and_are_idempotent(name in tricky_name(), raw in ".{0,64}") {
            let prefix = KeyPrefix::new("root/sub").unwrap();
            check_invariants(&prefix, &name)?;
            check_invariants(&prefix, &raw)?;
            check_invariants(&KeyPrefix::root(), &name)?;
        }

        #[test]
        fn long_names_respect_the_byte_limit(seg in "[a-z€]{1,60}", n in 1usize..40) {
            let name = vec![seg; n].join("/");
            let prefix = KeyPrefix::new(&"p".repeat(200)).unwrap();
            check_invariants(&prefix, &name)?;
        }
    }

    #[test]
    fn prefixes_are_validated_and_joined() {
        assert_eq!(KeyPrefix::new("a/b").unwrap().as_str(), "a/b/");
        assert_eq!(KeyPrefix::new("").unwrap().as_str(), "");
        assert_eq!(KeyPrefix::new("a/../b"), Err(KeyError::DotSegment));
        assert_eq!(KeyPrefix::new("/"), Err(KeyError::Absolute));
        let root = KeyPrefix::new("root").unwrap();
        assert_eq!(root.join("x/y").unwrap().as_str(), "root/x/y/");
        assert_eq!(root.join(".."), Err(KeyError::DotSegment));
    }
}
