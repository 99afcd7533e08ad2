//! Sniff: the content type of a file, detected from its bytes, checked against an allowlist.
//!
//! The type is never taken from a client's `Content-Type` or from the extension alone: the first
//! [`SNIFF_WINDOW`] bytes decide (files shorter than the window work). Rules, in order:
//!
//! 1. Magic numbers (`infer`): images, PDF, archives, executables (ELF, PE, Mach-O), HTML, XML,
//!    shell scripts… A zip is OOXML (DOCX/XLSX/PPTX) only if `infer` finds the Office entries
//!    *and* `[Content_Types].xml` is among its first entries.
//! 2. Text that `infer` does not name: valid UTF-8 (an incomplete character cut by the window is
//!    tolerated), no NUL. Text whose first non-blank character is `<` is markup: `image/svg+xml`
//!    if it has `<svg` anywhere in the window, `application/xml` for a `<?xml` prolog with no
//!    script, frame, object or `on…=` handler, else `text/html` (as in the WHATWG sniffing
//!    rules, prose that merely mentions `<script>` stays text); a leading `#!` makes it
//!    `text/x-shellscript`. Otherwise it is `application/json` when the extension is `.json` and
//!    it starts with `{` or `[` (or the whole file parses as JSON), `text/csv` when the extension
//!    is `.csv`, else `text/plain`. An empty file is `text/plain`.
//! 3. Anything else is `application/octet-stream`.
//!
//! Then: a known extension must agree with the detected type (`mime_mismatch`: an `.png` that is
//! HTML), an image or PDF must not also be a ZIP archive (a polyglot, found from the file's last
//! 64 KiB), and the type must be allowed (`mime_not_allowed`).

use crate::report::{ErrorCode, FileError};

/// Bytes read from the start of a file to detect its type.
pub const SNIFF_WINDOW: usize = 8 * 1024;
/// Bytes read from the end of a file to find an appended ZIP archive.
pub const TAIL_WINDOW: usize = 64 * 1024;

/// The default allowlist (safe, passive content).
pub const DEFAULT_ALLOWLIST: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/bmp",
    "image/tiff",
    "image/avif",
    "image/heif",
    "application/pdf",
    "text/plain",
    "text/csv",
    "application/json",
    "application/zip",
    "application/gzip",
    "application/x-tar",
    "application/x-bzip2",
    "application/x-xz",
    "application/zstd",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "audio/mpeg",
    "video/mp4",
];

const OOXML: [&str; 3] = [
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
];

/// Which detected types are stored. Entries are exact (`image/png`) or a whole top-level type
/// (`image/*`); `*/*` allows everything. Denials win over allowances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MimePolicy {
    allow: Vec<String>,
    deny: Vec<String>,
}

impl Default for MimePolicy {
    fn default() -> Self {
        MimePolicy {
            allow: DEFAULT_ALLOWLIST.iter().map(|s| (*s).to_owned()).collect(),
            deny: Vec::new(),
        }
    }
}

/// A malformed MIME pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid MIME type pattern {0:?}: expected type/subtype, type/* or */*")]
pub struct PatternError(String);

fn check_pattern(p: &str) -> Result<String, PatternError> {
    let p = p.trim().to_ascii_lowercase();
    let ok = match p.split_once('/') {
        Some((t, s)) => {
            let token = |x: &str| {
                !x.is_empty()
                    && x.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
            };
            (t == "*" && s == "*") || (token(t) && (s == "*" || token(s)))
        }
        None => false,
    };
    if ok { Ok(p) } else { Err(PatternError(p)) }
}

fn matches(pattern: &str, mime: &str) -> bool {
    pattern == "*/*"
        || pattern == mime
        || pattern
            .strip_suffix("/*")
            .is_some_and(|t| mime.split('/').next() == Some(t))
}

impl MimePolicy {
    /// The default allowlist plus `allow`, minus `deny`.
    pub fn new(allow: &[String], deny: &[String]) -> Result<MimePolicy, PatternError> {
        let mut p = MimePolicy::default();
        for a in allow {
            p.allow.push(check_pattern(a)?);
        }
        for d in deny {
            p.deny.push(check_pattern(d)?);
        }
        Ok(p)
    }

    /// Whether `mime` may be stored.
    pub fn allows(&self, mime: &str) -> bool {
        !self.deny.iter().any(|d| matches(d, mime)) && self.allow.iter().any(|a| matches(a, mime))
    }
}

/// Detects the type of content whose first bytes are `head`. `name` is the file name (for the
/// text rules that need an extension).
pub fn detect(head: &[u8], name: &str) -> &'static str {
    let head = &head[..head.len().min(SNIFF_WINDOW)];
    if let Some(t) = infer::get(head) {
        let mime = t.mime_type();
        if OOXML.contains(&mime) && !find(head, b"[Content_Types].xml") {
            return "application/zip";
        }
        if mime == "text/xml" {
            return xml_kind(head);
        }
        return mime;
    }
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        // A multi-byte character cut by the end of the window is still text.
        Err(e) if e.error_len().is_none() && head.len() == SNIFF_WINDOW => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return "application/octet-stream",
    };
    if text.contains('\0') {
        return "application/octet-stream";
    }
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with("#!") {
        return "text/x-shellscript";
    }
    // A document that *is* markup starts with a tag (as in the WHATWG sniffing rules): text that
    // merely mentions `<script>` in prose, like this project's own docs, stays text.
    if trimmed.starts_with('<') {
        let lower = text.to_ascii_lowercase();
        if lower.contains("<svg") {
            return "image/svg+xml";
        }
        if trimmed.starts_with("<?xml") && !has_active_markup(&lower) {
            return "application/xml";
        }
        return "text/html";
    }
    let ext = extension(name);
    let json_like = trimmed.starts_with('{') || trimmed.starts_with('[');
    if json_like
        && (ext.as_deref() == Some("json")
            || (head.len() < SNIFF_WINDOW && serde_json_like_complete(trimmed)))
    {
        return "application/json";
    }
    if ext.as_deref() == Some("csv") {
        return "text/csv";
    }
    "text/plain"
}

/// Script, frames, embedded objects or event handlers.
fn has_active_markup(lower: &str) -> bool {
    [
        "<script",
        "<html",
        "<!doctype html",
        "<iframe",
        "<body",
        "<object",
        "<embed",
    ]
    .iter()
    .any(|m| lower.contains(m))
        || has_event_handler(lower)
}

fn xml_kind(head: &[u8]) -> &'static str {
    let lower = String::from_utf8_lossy(head).to_ascii_lowercase();
    if lower.contains("<svg") {
        "image/svg+xml"
    } else if lower.contains("<html") || lower.contains("<script") {
        "text/html"
    } else {
        "application/xml"
    }
}

/// `<tag ... onload=` and friends: event handlers make markup active.
fn has_event_handler(lower: &str) -> bool {
    lower.match_indices('<').any(|(i, _)| {
        let tag = &lower[i..];
        let end = tag.find('>').unwrap_or(tag.len());
        tag[..end]
            .split(|c: char| c.is_whitespace() || c == '/')
            .skip(1)
            .any(|attr| attr.starts_with("on") && attr.contains('='))
    })
}

/// A cheap structural check that a whole document is JSON: balanced brackets outside strings,
/// nothing after the end. (Used only for files that fit in the window.)
fn serde_json_like_complete(s: &str) -> bool {
    let mut depth = 0i32;
    let (mut in_str, mut esc) = (false, false);
    let mut closed_at = None;
    for (i, c) in s.char_indices() {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth -= 1;
                if depth == 0 {
                    closed_at = Some(i);
                    break;
                }
                if depth < 0 {
                    return false;
                }
            }
            _ => {}
        }
    }
    closed_at.is_some_and(|i| s[i + 1..].trim().is_empty())
}

fn find(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn extension(name: &str) -> Option<String> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let (stem, ext) = base.rsplit_once('.')?;
    (!stem.is_empty()).then(|| ext.to_ascii_lowercase())
}

/// The types a known extension may carry; `None` for extensions we do not judge.
fn expected_for(ext: &str) -> Option<&'static [&'static str]> {
    Some(match ext {
        "png" => &["image/png"],
        "jpg" | "jpeg" => &["image/jpeg"],
        "gif" => &["image/gif"],
        "webp" => &["image/webp"],
        "bmp" => &["image/bmp"],
        "tif" | "tiff" => &["image/tiff"],
        "pdf" => &["application/pdf"],
        "txt" | "md" | "log" => &["text/plain"],
        "csv" => &["text/csv", "text/plain"],
        "json" => &["application/json"],
        "zip" => &["application/zip"],
        "gz" | "tgz" => &["application/gzip"],
        "tar" => &["application/x-tar"],
        "docx" => &[OOXML[0]],
        "xlsx" => &[OOXML[1]],
        "pptx" => &[OOXML[2]],
        "html" | "htm" => &["text/html"],
        "svg" => &["image/svg+xml"],
        "xml" => &["application/xml"],
        "sh" => &["text/x-shellscript", "text/plain"],
        "exe" | "dll" => &["application/vnd.microsoft.portable-executable"],
        _ => return None,
    })
}

/// Detects, cross-checks and applies the policy. `tail` is the file's last bytes (for files
/// longer than the sniff window). Returns the content type to store.
pub fn check(
    policy: &MimePolicy,
    head: &[u8],
    tail: Option<&[u8]>,
    name: &str,
) -> Result<&'static str, FileError> {
    let mime = detect(head, name);
    if let Some(ext) = extension(name)
        && let Some(expected) = expected_for(&ext)
        && !expected.contains(&mime)
    {
        return Err(FileError::new(
            ErrorCode::MimeMismatch,
            format!("the content is {mime}, which does not match the extension .{ext}"),
            false,
        ));
    }
    let polyglot_risk = mime.starts_with("image/") || mime == "application/pdf";
    if polyglot_risk && tail.is_some_and(|t| find(t, b"PK\x05\x06")) {
        return Err(FileError::new(
            ErrorCode::MimeMismatch,
            format!("the content is {mime} with a ZIP archive appended (a polyglot file)"),
            false,
        ));
    }
    if !policy.allows(mime) {
        return Err(FileError::new(
            ErrorCode::MimeNotAllowed,
            format!("the detected content type {mime} is not in the allowlist"),
            false,
        ));
    }
    Ok(mime)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verdict(head: &[u8], name: &str) -> Result<&'static str, &'static str> {
        check(&MimePolicy::default(), head, None, name).map_err(|e| e.code.as_str())
    }

    #[test]
    fn default_allowlist_has_at_least_15_types_and_patterns_work() {
        assert!(DEFAULT_ALLOWLIST.len() >= 15);
        let p = MimePolicy::new(&["image/*".into()], &["image/gif".into()]).unwrap();
        assert!(p.allows("image/x-icon"));
        assert!(!p.allows("image/gif"), "deny wins");
        assert!(!MimePolicy::default().allows("text/html"));
        assert!(!MimePolicy::default().allows("application/octet-stream"));
        assert!(
            MimePolicy::new(&["*/*".into()], &[])
                .unwrap()
                .allows("text/html")
        );
        assert!(MimePolicy::new(&["nonsense".into()], &[]).is_err());
        assert!(MimePolicy::new(&["text/ht ml".into()], &[]).is_err());
    }

    #[test]
    fn text_rules() {
        assert_eq!(verdict(b"hello world\n", "a.txt"), Ok("text/plain"));
        assert_eq!(verdict(b"", "empty.txt"), Ok("text/plain"));
        assert_eq!(verdict(b"a,b\n1,2\n", "t.csv"), Ok("text/csv"));
        assert_eq!(
            verdict(b"{\"a\": [1, 2]}\n", "d.json"),
            Ok("application/json")
        );
        assert_eq!(verdict(b"[1,2,3]", "noext"), Ok("application/json"));
        assert_eq!(verdict(b"not json", "d.json"), Err("mime_mismatch"));
        assert_eq!(
            verdict("caf\u{e9} ünïcödé".as_bytes(), "u.txt"),
            Ok("text/plain")
        );
        // Active content, with or without a prolog or leading whitespace.
        assert_eq!(
            verdict(b"  \n<!DOCTYPE html><p>x", "page"),
            Err("mime_not_allowed")
        );
        assert_eq!(
            verdict(b"<b>bold</b> and <script>alert(1)</script>", "a.txt"),
            Err("mime_mismatch")
        );
        // Prose that mentions markup is text (this project's own docs do).
        assert_eq!(
            verdict(b"`<svg` makes it image/svg+xml; `<script>` too\n", "doc.md"),
            Ok("text/plain")
        );
        assert_eq!(
            verdict(b"<?xml version=\"1.0\"?><a/>", "data.xml"),
            Err("mime_not_allowed")
        );
        assert_eq!(
            verdict(b"<svg onload=alert(1)>", "i.svg"),
            Err("mime_not_allowed")
        );
        assert_eq!(
            verdict(b"<?xml version=\"1.0\"?><svg><script>x</script></svg>", "i"),
            Err("mime_not_allowed")
        );
        assert_eq!(
            verdict(b"<p onclick=\"x()\">hi</p>", "n"),
            Err("mime_not_allowed")
        );
        assert_eq!(
            verdict(b"#!/bin/sh\nrm -rf /\n", "run"),
            Err("mime_not_allowed")
        );
        assert_eq!(verdict(b"\x00\x01\x02binary", "x"), Err("mime_not_allowed"));
        // A character cut by the end of the window is still text.
        let long = format!("a{}", "é".repeat(SNIFF_WINDOW));
        let window = &long.as_bytes()[..SNIFF_WINDOW];
        assert_eq!(
            window.last(),
            Some(&0xC3),
            "the window ends inside a character"
        );
        assert_eq!(verdict(window, "long.txt"), Ok("text/plain"));
    }

    #[test]
    fn binary_spoofs_are_refused() {
        let elf = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x3e\x00";
        assert_eq!(verdict(elf, "doc.pdf"), Err("mime_mismatch"));
        assert_eq!(verdict(elf, "tool"), Err("mime_not_allowed"));
        assert_eq!(
            verdict(b"<html><body>x</body></html>", "photo.png"),
            Err("mime_mismatch")
        );
        let png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR";
        assert_eq!(verdict(png, "photo.png"), Ok("image/png"));
        assert_eq!(
            check(
                &MimePolicy::default(),
                png,
                Some(b"...PK\x05\x06\x00\x00"),
                "p.png"
            )
            .unwrap_err()
            .code,
            ErrorCode::MimeMismatch
        );
    }
}
