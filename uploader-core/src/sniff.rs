//! Sniff: the content type of a file, detected from its bytes, checked against an allowlist.
//!
//! The type is never taken from a client's `Content-Type` or from the extension alone: the first
//! [`SNIFF_WINDOW`] bytes decide (files shorter than the window work). Rules, in order:
//!
//! 1. Magic numbers (`infer`): images, PDF, archives, executables (ELF, PE, Mach-O), HTML, XML,
//!    shell scripts… A zip is OOXML (DOCX/XLSX/PPTX) only if `infer` finds the Office entries
//!    *and* `[Content_Types].xml` is among its first entries. A match on one of `infer`'s weak
//!    magic numbers (two or three bytes, see the `weak` module) counts only when the structure
//!    behind it checks out; otherwise the next rules decide.
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
//! Then: the type must be allowed (`mime_not_allowed`, whatever the name: an ELF called
//! `evil.png` is an executable), a known extension must agree with the allowed type
//! (`mime_mismatch`: a `.png` that is a PDF), and an image or PDF must not also be a ZIP archive
//! (a polyglot, found from the file's last 64 KiB).

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

/// The characters a JSON document can start with (after blanks), as the text rules see it.
const JSON_OPENERS: [char; 2] = ['{', '['];

/// Detects the type of content whose first bytes are `head`. `name` is the file name (for the
/// text rules that need an extension, and the one magic number that cannot be corroborated).
pub fn detect(head: &[u8], name: &str) -> &'static str {
    let head = &head[..head.len().min(SNIFF_WINDOW)];
    // A match that rests on a weak magic number and is not corroborated falls to the rules
    // below: random bytes are `application/octet-stream` and text is text.
    if let Some(t) = infer::get(head)
        && weak::corroborated(t.mime_type(), head, name)
    {
        let mime = t.mime_type();
        if OOXML.contains(&mime) && !find(head, b"[Content_Types].xml") {
            return "application/zip";
        }
        if mime == "text/xml" {
            return xml_kind(head);
        }
        return mime;
    }
    let Some(text) = as_text(head) else {
        return "application/octet-stream";
    };
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
    let json_like = trimmed.starts_with(JSON_OPENERS);
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

/// `head` as text: valid UTF-8 (a multi-byte character cut by the end of the window is still
/// text) with no NUL.
fn as_text(head: &[u8]) -> Option<&str> {
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        Err(e) if e.error_len().is_none() && head.len() == SNIFF_WINDOW => {
            std::str::from_utf8(&head[..e.valid_up_to()]).ok()?
        }
        Err(_) => return None,
    };
    (!text.contains('\0')).then_some(text)
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

/// Detects, applies the policy and cross-checks. `tail` is the file's last bytes (for files
/// longer than the sniff window). Returns the content type to store.
///
/// The allowlist comes first: content that may not be stored is `mime_not_allowed` whatever
/// its name (an ELF called `evil.png` is refused as an executable). `mime_mismatch` is for an
/// allowed type under another type's extension, or an allowed image or PDF that is also a ZIP.
pub fn check(
    policy: &MimePolicy,
    head: &[u8],
    tail: Option<&[u8]>,
    name: &str,
) -> Result<&'static str, FileError> {
    let mime = detect(head, name);
    if !policy.allows(mime) {
        return Err(FileError::new(
            ErrorCode::MimeNotAllowed,
            format!("the content is {mime}, which is not in the allowlist"),
            false,
        ));
    }
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
    Ok(mime)
}

mod weak;

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
            Err("mime_not_allowed")
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
    fn disallowed_content_is_not_allowed_whatever_its_name() {
        let elf = elf();
        assert_eq!(detect(&elf, "evil.png"), "application/x-executable");
        for name in ["evil.png", "doc.pdf", "tool", "a.exe"] {
            assert_eq!(verdict(&elf, name), Err("mime_not_allowed"), "{name}");
        }
        let e = check(&MimePolicy::default(), &elf, None, "evil.png").unwrap_err();
        assert!(
            e.message.contains("application/x-executable"),
            "{}",
            e.message
        );
        let html = b"<html><body>x</body></html>";
        assert_eq!(verdict(html, "photo.png"), Err("mime_not_allowed"));
        assert_eq!(
            verdict(b"#!/bin/sh\necho pwned\n", "sh.png"),
            Err("mime_not_allowed")
        );
        // An allowed type under another allowed type's extension is a mismatch.
        let pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n";
        assert_eq!(verdict(pdf, "x.png"), Err("mime_mismatch"));
        let e = check(&MimePolicy::default(), pdf, None, "x.png").unwrap_err();
        assert!(e.message.contains("application/pdf"), "{}", e.message);
        let with_html = MimePolicy::new(&["text/html".into()], &[]).unwrap();
        let e = check(&with_html, html, None, "photo.png").unwrap_err();
        assert_eq!(e.code, ErrorCode::MimeMismatch);
        assert!(e.message.contains("text/html"), "{}", e.message);
        // A random `.bin` is unrecognised binary, refused only because of the allowlist.
        let random = crate::testing::pseudo_random(4096, 7);
        assert_eq!(verdict(&random, "r.bin"), Err("mime_not_allowed"));
        let binary = MimePolicy::new(&["application/octet-stream".into()], &[]).unwrap();
        assert_eq!(
            check(&binary, &random, None, "r.bin"),
            Ok("application/octet-stream")
        );
    }

    #[test]
    fn polyglots_and_matching_names_still_checked() {
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
        // A polyglot of a type that is not allowed is refused for its type.
        let only_pdf = MimePolicy::new(&[], &["image/png".into()]).unwrap();
        let e = check(&only_pdf, png, Some(b"PK\x05\x06"), "p.png").unwrap_err();
        assert_eq!(e.code, ErrorCode::MimeNotAllowed);
    }

    // ---- weak magic numbers -------------------------------------------------------------

    /// Every weak magic number of `infer` 0.22 (see the `weak` module): (offset, bytes).
    const WEAK: &[(usize, &[u8])] = &[
        (0, b"MZ"),
        (0, b"BC"),
        (0, b"\x30\x82"),
        (0, b"\x4C\x01"),
        (0, b"\x64\x86"),
        (0, b"\x00\x02"),
        (0, b"BM"),
        (0, b"\xFF\xFB"),
        (0, b"\xFF\xF3"),
        (0, b"\xFF\xF2"),
        (0, b"ID3"),
        (0, b"\xFF\xF1"),
        (0, b"\xFF\xF9"),
        (0, b"\xFF\x0A"),
        (0, b"\x1F\x9D"),
        (0, b"\x1F\xA0"),
        (0, b"\xC7\x71"),
        (0, b"\x71\xC7"),
        (0, b"%!"),
        (0, b"#!"),
        (0, b"<B>"),
        (0, b"<P "),
        (0, b"<A "),
        (0, b"<!-- "),
        (0, b"\xFF\xD8\xFF"),
        (0, b"GIF"),
        (0, b"II\xBC"),
        (0, b"\x1F\x8B\x08"),
        (0, b"BZh"),
        (0, b"FWS"),
        (0, b"CWS"),
        (0, b"%PDF"),
        (700, b"%PDF"),
        (8, b"WEBP"),
        (0, b"\x00\x00\x01\xBA"),
        (0, b"\x00\x00\x01\xB3"),
        (0, b"\x00\x00\x01\xB7"),
    ];

    fn forced(len: usize, seed: u64, (at, magic): (usize, &[u8])) -> Vec<u8> {
        let mut v = crate::testing::pseudo_random(len, seed);
        v[at..at + magic.len()].copy_from_slice(magic);
        v
    }

    #[test]
    fn weak_magic_followed_by_random_bytes_is_octet_stream() {
        for &(at, magic) in WEAK {
            let bare = forced(SNIFF_WINDOW, 1, (at, magic));
            // Each magic really is one that `infer` matches on its own.
            assert!(
                infer::get(&bare).is_some(),
                "{magic:02x?}: infer does not match"
            );
            for (len, seed) in [(SNIFF_WINDOW, 1), (SNIFF_WINDOW, 2), (1500, 3), (64, 4)] {
                if at + magic.len() > len {
                    continue;
                }
                let buf = forced(len, seed, (at, magic));
                assert_eq!(
                    detect(&buf, "x.bin"),
                    "application/octet-stream",
                    "{magic:02x?} at {at}, {len} bytes, seed {seed}: infer says {:?}",
                    infer::get(&buf).map(|t| t.mime_type())
                );
            }
        }
    }

    /// Property: no pseudo-random 8 KiB buffer sniffs as anything but octet-stream, with or
    /// without a weak magic forced at its start. Most buffers carry a forced magic (about
    /// 5 000 per magic): bare random bytes hit a weak magic only once in ~3 000.
    #[test]
    fn random_buffers_sniff_as_octet_stream() {
        const N: u64 = 200_000;
        let slots = WEAK.len() as u64 + 1;
        let mut buf = vec![0; SNIFF_WINDOW];
        for seed in 0..N {
            fill_random(&mut buf, seed);
            let slot = seed % slots;
            if let Some(&(at, magic)) = WEAK.get(slot as usize) {
                buf[at..at + magic.len()].copy_from_slice(magic);
            }
            let got = detect(&buf, "x.bin");
            assert_eq!(got, "application/octet-stream", "seed {seed}, slot {slot}");
        }
    }

    /// `crate::testing::pseudo_random` into a reused buffer (same bytes, no allocation).
    fn fill_random(buf: &mut [u8], seed: u64) {
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
    }

    #[test]
    fn fill_random_is_pseudo_random() {
        let mut buf = vec![0; 1000];
        fill_random(&mut buf, 42);
        assert_eq!(buf, crate::testing::pseudo_random(1000, 42));
    }

    fn le16(v: u16) -> [u8; 2] {
        v.to_le_bytes()
    }

    fn le32(v: u32) -> [u8; 4] {
        v.to_le_bytes()
    }

    /// A minimal ELF64 header (x86-64 executable, no program or section headers).
    fn elf() -> Vec<u8> {
        let mut v = b"\x7fELF\x02\x01\x01\x00".to_vec();
        v.extend([0; 8]);
        v.extend(le16(2)); // e_type: EXEC
        v.extend(le16(0x3E)); // e_machine: x86-64
        v.extend(le32(1)); // e_version
        v.extend(0x40_1000u64.to_le_bytes()); // e_entry
        v.extend(64u64.to_le_bytes()); // e_phoff
        v.extend(0u64.to_le_bytes()); // e_shoff
        v.extend(le32(0)); // e_flags
        v.extend(le16(64)); // e_ehsize
        v.extend(le16(56)); // e_phentsize
        v.extend([0; 6]); // e_phnum, e_shentsize, e_shnum
        v.extend(le16(0)); // e_shstrndx
        assert_eq!(v.len(), 64);
        v
    }

    /// A DOS header (the usual PE stub's), `e_lfanew` = `lfanew`, padded to 128 bytes.
    fn dos_header(lfanew: u32) -> Vec<u8> {
        let mut v = b"MZ".to_vec();
        for f in [0x90, 3, 0, 4, 0, 0xFFFF, 0, 0xB8, 0, 0, 0, 0x40] {
            v.extend(le16(f)); // e_cblp … e_lfarlc
        }
        v.resize(0x3C, 0);
        v.extend(le32(lfanew));
        v.resize(128, 0);
        v
    }

    /// MZ + a PE header at 0x80 (AMD64, one section, a PE32+ optional header).
    fn pe() -> Vec<u8> {
        let mut v = dos_header(0x80);
        v.extend(b"PE\0\0");
        v.extend(le16(0x8664));
        v.extend(le16(1)); // sections
        v.extend([0; 12]); // time, symbols
        v.extend(le16(240)); // optional header size
        v.extend(le16(0x22)); // executable, large address aware
        v.extend(le16(0x20B)); // PE32+
        v.resize(1024, 0);
        v
    }

    /// A COFF object: AMD64, one `.text` section of 4 bytes, one symbol, an empty string table.
    fn coff_object(machine: u16) -> Vec<u8> {
        let mut v = le16(machine).to_vec();
        v.extend(le16(1)); // sections
        v.extend(le32(0x6500_0000)); // time stamp
        v.extend(le32(64)); // symbol table
        v.extend(le32(1)); // symbols
        v.extend(le16(0)); // no optional header
        v.extend(le16(0)); // characteristics
        v.extend(b".text\0\0\0");
        v.extend(le32(0)); // virtual size
        v.extend(le32(0)); // virtual address
        v.extend(le32(4)); // raw size
        v.extend(le32(60)); // raw data
        v.extend([0; 12]); // relocations, line numbers, their counts
        v.extend(le32(0x6050_0020)); // code, 16-byte aligned, execute, read
        v.extend([0xC3, 0x90, 0x90, 0x90]);
        v.extend(b"main\0\0\0\0");
        v.extend([0, 0, 0, 0, 1, 0, 0x20, 0, 2, 0]); // value, section, type, class, aux
        v.extend(le32(4)); // string table size
        v
    }

    /// A DER TLV.
    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        match content.len() {
            n if n < 0x80 => v.push(n as u8),
            n if n < 0x100 => v.extend([0x81, n as u8]),
            n => v.extend([0x82, (n >> 8) as u8, n as u8]),
        }
        v.extend(content);
        v
    }

    /// An X.509 v3 certificate's structure (RSA-2048 key and signature of zero bits).
    fn certificate() -> Vec<u8> {
        let oid = |o: &[u8]| tlv(0x06, o);
        let sha256_rsa = tlv(
            0x30,
            &[oid(b"\x2A\x86\x48\x86\xF7\x0D\x01\x01\x0B"), tlv(0x05, &[])].concat(),
        );
        let rsa = tlv(
            0x30,
            &[oid(b"\x2A\x86\x48\x86\xF7\x0D\x01\x01\x01"), tlv(0x05, &[])].concat(),
        );
        let cn = tlv(
            0x30,
            &[oid(b"\x55\x04\x03"), tlv(0x0C, b"example.test")].concat(),
        );
        let name = tlv(0x30, &tlv(0x31, &cn));
        let validity = tlv(
            0x30,
            &[tlv(0x17, b"250101000000Z"), tlv(0x17, b"260101000000Z")].concat(),
        );
        let key = tlv(
            0x30,
            &[tlv(0x02, &[0x5A; 257]), tlv(0x02, b"\x01\x00\x01")].concat(),
        );
        let spki = tlv(
            0x30,
            &[rsa, tlv(0x03, &[[0].as_slice(), &key].concat())].concat(),
        );
        let tbs = tlv(
            0x30,
            &[
                tlv(0xA0, &tlv(0x02, &[2])),
                tlv(0x02, &[0x11; 16]),
                sha256_rsa.clone(),
                name.clone(),
                validity,
                name,
                spki,
            ]
            .concat(),
        );
        tlv(0x30, &[tbs, sha256_rsa, tlv(0x03, &[0; 257])].concat())
    }

    /// Two MPEG-1 layer III frames (128 kbit/s, 44.1 kHz: 417 bytes each).
    fn mp3_frames() -> Vec<u8> {
        let mut frame = vec![0xFF, 0xFB, 0x90, 0x64];
        frame.resize(417, 0x55);
        frame.repeat(2)
    }

    /// Two ADTS frames (AAC LC, 44.1 kHz, stereo) of 100 bytes each.
    fn adts_frames() -> Vec<u8> {
        let len = 100usize;
        let mut frame = vec![
            0xFF,
            0xF1,
            0x50,
            0x80 | (len >> 11) as u8,
            (len >> 3) as u8,
            ((len & 7) << 5) as u8 | 0x1F,
            0xFC,
        ];
        frame.resize(len, 0x21);
        frame.repeat(2)
    }

    /// `ABABABA` compressed by compress(1) with block mode and 16-bit codes.
    fn lzw_abababa() -> Vec<u8> {
        let mut v = vec![0x1F, 0x9D, 0x90];
        let (mut acc, mut bits) = (0u32, 0);
        for code in [65u32, 66, 257, 259] {
            acc |= code << bits;
            bits += 9;
            while bits >= 8 {
                v.push(acc as u8);
                acc >>= 8;
                bits -= 8;
            }
        }
        v.push(acc as u8);
        v
    }

    /// An old binary (little-endian) cpio archive of `a.txt`, with its trailer.
    fn cpio() -> Vec<u8> {
        let entry = |mode: u16, name: &[u8], data: &[u8]| {
            let mut v = Vec::new();
            let name_len = name.len() as u16 + 1;
            for f in [0o070707, 0, 1, mode, 0, 0, 1, 0, 0x6500, 0, name_len, 0] {
                v.extend(le16(f));
            }
            v.extend(le16(data.len() as u16));
            v.extend(name);
            v.push(0);
            if v.len() % 2 == 1 {
                v.push(0);
            }
            v.extend(data);
            if v.len() % 2 == 1 {
                v.push(0);
            }
            v
        };
        [
            entry(0o100644, b"a.txt", b"hi\n"),
            entry(0, b"TRAILER!!!", b""),
        ]
        .concat()
    }

    /// An uncompressed SWF 10: a 550x400 stage, 24 fps, one frame (background, show, end).
    fn swf() -> Vec<u8> {
        let mut v = b"FWS\x0A\0\0\0\0".to_vec();
        let (mut acc, mut bits) = (0u128, 0);
        for (value, width) in [(15, 5), (0, 15), (11_000, 15), (0, 15), (8_000, 15)] {
            acc = acc << width | value;
            bits += width;
        }
        let pad = (8 - bits % 8) % 8;
        acc <<= pad;
        bits += pad;
        v.extend(&acc.to_be_bytes()[16 - bits / 8..]);
        v.extend([0, 24]); // frame rate 24.0
        v.extend(le16(1)); // frames
        v.extend(le16(9 << 6 | 3)); // SetBackgroundColor
        v.extend([0xFF, 0xFF, 0xFF]);
        v.extend(le16(1 << 6)); // ShowFrame
        v.extend(le16(0)); // End
        let len = v.len() as u32;
        v[4..8].copy_from_slice(&le32(len));
        v
    }

    /// (name, content, expected type): real-shaped files behind each weak magic.
    fn real_samples() -> Vec<(&'static str, Vec<u8>, &'static str)> {
        let exe = "application/vnd.microsoft.portable-executable";
        let mut pe_far_stub = pe();
        pe_far_stub[2..0x3C].fill(0xEE); // Windows reads only e_magic and e_lfanew
        let mut pe_big = pe();
        pe_big.resize(3 * SNIFF_WINDOW, 0xCC);
        let mut bmp = b"BM".to_vec();
        for f in [58, 0, 54, 40, 1, 1] {
            bmp.extend(le32(f)); // size, reserved, offset, DIB size, width, height
        }
        bmp.extend(le16(1)); // planes
        bmp.extend(le16(24)); // bits per pixel
        bmp.extend([0; 4]);
        bmp.extend(le32(4));
        bmp.extend([0x13, 0x0B, 0, 0, 0x13, 0x0B, 0, 0]);
        bmp.extend([0; 8]);
        bmp.extend([0, 0, 0xFF, 0]);
        let mut jxr = b"II\xBC\x01".to_vec();
        jxr.extend(le32(8));
        jxr.extend(le16(1));
        jxr.extend(le16(0xBC01));
        jxr.extend(le16(1)); // BYTE
        jxr.extend(le32(16));
        jxr.extend(le32(26));
        jxr.extend([0; 4]);
        jxr.extend([0x24; 16]);
        let mut mpeg_ps = b"\x00\x00\x01\xBA\x44\x00\x04\x00\x04\x01\x01\x89\xC3\xF8".to_vec();
        mpeg_ps.extend(b"\x00\x00\x01\xBB\x00\x0C");
        mpeg_ps.resize(2048, 0xFF);
        let mut mpeg_es = b"\x00\x00\x01\xB3\x2D\x01\xE0\x24\xFF\xFF\xE0\x18".to_vec();
        mpeg_es.extend(b"\x00\x00\x01\xB8\x00\x08\x00\x40");
        let mut bitcode = b"BC\xC0\xDE\x35\x14\x00\x00\x05\x00\x00\x00".to_vec();
        bitcode.resize(256, 0);
        let mut jpeg = b"\xFF\xD8\xFF\xE1\x00\x10Exif\x00\x00MM\x00\x2A\x00\x00\x00\x08".to_vec();
        jpeg.extend(b"\xFF\xDB\x00\x43\x00");
        let mut jpeg_raw = b"\xFF\xD8\xFF\xDB\x00\x04\x00\x01\xFF\xC0".to_vec();
        jpeg_raw.resize(64, 0);
        let mut gzip_named = b"\x1F\x8B\x08\x08\x00\x00\x00\x00\x00\x03notes.txt\x00".to_vec();
        gzip_named.extend(b"\x01\x02\x00\xFD\xFFhi"); // a stored block
        gzip_named.extend([0; 8]);
        let cws = b"CWS\x0A\x00\x10\x00\x00\x78\x9C\x01\x02\x03".to_vec();
        vec![
            ("tool", elf(), "application/x-executable"),
            ("setup.exe", pe(), exe),
            ("setup.exe", pe_far_stub, exe),
            ("big.exe", pe_big[..SNIFF_WINDOW].to_vec(), exe),
            ("old.exe", dos_header(0), exe),
            ("main.obj", coff_object(0x8664), "application/x-executable"),
            ("main.obj", coff_object(0x014C), "application/x-executable"),
            ("main.obj", coff_object(0x0200), "application/x-executable"),
            ("cert.der", certificate(), "application/x-x509-ca-cert"),
            ("pixel.bmp", bmp, "image/bmp"),
            ("song.mp3", mp3_frames(), "audio/mpeg"),
            ("song.aac", adts_frames(), "audio/aac"),
            ("a.Z", lzw_abababa(), "application/x-compress"),
            ("a.cpio", cpio(), "application/x-cpio"),
            ("movie.swf", swf(), "application/x-shockwave-flash"),
            ("movie.swf", cws, "application/x-shockwave-flash"),
            ("photo.jxr", jxr, "image/vnd.ms-photo"),
            ("a.mpg", mpeg_ps, "video/mpeg"),
            ("a.m2v", mpeg_es, "video/mpeg"),
            ("a.bc", bitcode, "application/x-llvm"),
            ("photo.jpg", jpeg, "image/jpeg"),
            ("raw.jpg", jpeg_raw, "image/jpeg"),
            ("notes.gz", gzip_named, "application/gzip"),
            (
                "i.jxl",
                b"\xFF\x0A\xFA\x7F\x01\x90\x08".to_vec(),
                "image/jxl",
            ),
            (
                "doc.ps",
                b"%!PS-Adobe-3.0\n%%EOF\n".to_vec(),
                "application/postscript",
            ),
            (
                "run",
                b"#!/bin/sh\necho hi\n".to_vec(),
                "text/x-shellscript",
            ),
            ("p", b"<p>hello</p>".to_vec(), "text/html"),
        ]
    }

    #[test]
    fn real_files_behind_weak_magics_are_still_detected() {
        for (name, bytes, mime) in real_samples() {
            assert_eq!(detect(&bytes, name), mime, "{name}");
        }
        // Text that happens to start like a weak magic is text.
        for text in [
            "BMW and BC are initials",
            "MZ is a prefix",
            "GIF is a format",
            "ID3 tags",
        ] {
            assert_eq!(detect(text.as_bytes(), "notes.txt"), "text/plain", "{text}");
        }
    }
}
