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

/// Corroboration of `infer`'s weak magic numbers.
///
/// Some of `infer`'s matchers rest on two or three bytes, so about one file of random bytes in
/// 3 400 matches one of them (one in 65 536 per two-byte magic): a user who allowed
/// `application/octet-stream` would see a random `.bin` refused as an executable or a
/// certificate, or stored as `image/bmp`. A match on one of these is trusted only when the
/// structure behind the magic checks out. Real files of these types pass; random bytes behind
/// the magic pass with a probability of about 2^-18 or less (the comments give the estimate).
///
/// The weak matchers of `infer` 0.22, and what corroborates each:
///
/// | magic | `infer` type | corroboration |
/// |---|---|---|
/// | `MZ` | PE (exe, dll) | `PE\0\0`/`NE`/`LE`/`LX` at `e_lfanew`, or a consistent DOS header |
/// | `BC` | LLVM bitcode | `BC C0 DE`, then the first block is IDENTIFICATION or MODULE |
/// | `30 82` | DER certificate | SEQUENCE { SEQUENCE { [0] version?, serial, SEQUENCE … } … } |
/// | `4C 01`, `64 86`, `00 02` | COFF | sections, optional header, symbols, first section |
/// | `BM` | BMP | DIB header size, planes = 1, bits per pixel, pixel offset |
/// | `FF FB`/`F3`/`F2` | MP3 frame | a valid frame header, and the next frame where it says |
/// | `ID3` | MP3 ID3v2 tag | version, flags, sizes, first frame ID or padding |
/// | `FF F1`/`F9` | AAC (ADTS) | a valid header, and the next frame where it says |
/// | `FF 0A` | JPEG XL codestream | nothing in its first bytes can: only with the `.jxl` extension |
/// | `1F 9D` | compress (LZW) | flags, then the first 64 codes name existing table entries |
/// | `1F A0` | compress (LZH) | never (no structure to check; nobody writes it) |
/// | `C7 71`, `71 C7` | cpio (binary) | file type in the mode, a NUL-terminated UTF-8 name |
/// | `%!`, `#!`, `<b>`… | PostScript, shell, HTML | the window is text |
/// | `FF D8 FF` | JPEG | a first segment that may start a JPEG, followed by a marker |
/// | `GIF` | GIF | `GIF87a` or `GIF89a` |
/// | `II BC` | JPEG XR | version 1, then an IFD in the window with a valid first entry |
/// | `1F 8B 08` | gzip | flags, XFL, OS, optional name/comment, first deflate block type |
/// | `BZh` | bzip2 | block size digit, then a block or end-of-stream magic |
/// | `FWS`, `CWS` | Flash | version; the stage rectangle, frame rate, first tag; or zlib |
/// | `%PDF` anywhere in 1 KiB | PDF | `%PDF-d.d` |
/// | `WEBP` at offset 8 | WebP | `RIFF` at 0 and a `VP8` chunk at 12 |
/// | `00 00 01 Bx` (28 bits) | MPEG | a pack header's marker bits or a sequence header, then the next start code |
///
/// The other matchers need four or more fixed bytes (one random file in four billion or fewer)
/// and are trusted as they are. A rejected match falls to the text rules rather than to
/// `infer`'s next matcher: no strong matcher shares these prefixes.
mod weak {
    use super::{SNIFF_WINDOW, as_text, extension};

    /// Whether `infer`'s verdict `mime` on `h` stands.
    pub(super) fn corroborated(mime: &str, h: &[u8], name: &str) -> bool {
        // Shorter than the window: `h` is the whole file, so lengths can be checked exactly.
        let whole = h.len() < SNIFF_WINDOW;
        match mime {
            "application/vnd.microsoft.portable-executable" => mz(h),
            "application/x-llvm" => llvm(h),
            "application/x-x509-ca-cert" => !h.starts_with(&[0x30, 0x82]) || der(h, whole),
            "application/x-executable" => h.starts_with(b"\x7fELF") || coff(h, whole),
            "image/bmp" => bmp(h),
            "audio/mpeg" if h.starts_with(b"ID3") => id3(h),
            // MPEG audio: the same sampling rate (the bit rate may vary); ADTS: profile and rate.
            "audio/mpeg" => frames(h, whole, mpeg_audio_frame, 0x0C),
            "audio/aac" => frames(h, whole, adts_frame, 0xFC),
            "image/jxl" => h[0] != 0xFF || extension(name).as_deref() == Some("jxl"),
            "application/x-compress" => h.starts_with(&[0x1F, 0x9D]) && lzw(h),
            "application/x-cpio" => h.starts_with(b"070701") || cpio(h),
            "application/postscript" | "text/html" | "text/x-shellscript" => as_text(h).is_some(),
            "image/jpeg" => jpeg(h, whole),
            "image/gif" => h.starts_with(b"GIF87a") || h.starts_with(b"GIF89a"),
            "image/vnd.ms-photo" => jxr(h),
            "application/gzip" => gzip(h),
            "application/x-bzip2" => bzip2(h),
            "application/x-shockwave-flash" => swf(h, whole),
            "application/pdf" => h[..h.len().min(1024)].windows(8).any(|w| {
                w.starts_with(b"%PDF-")
                    && w[5].is_ascii_digit()
                    && w[6] == b'.'
                    && w[7].is_ascii_digit()
            }),
            "image/webp" => h.starts_with(b"RIFF") && h.get(12..15) == Some(b"VP8"),
            "video/mpeg" => mpeg_video(h),
            _ => true,
        }
    }

    fn le16(h: &[u8], at: usize) -> Option<usize> {
        h.get(at..at + 2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])))
    }

    fn be16(h: &[u8], at: usize) -> Option<usize> {
        h.get(at..at + 2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }

    fn le32(h: &[u8], at: usize) -> Option<usize> {
        let b = h.get(at..at + 4)?;
        usize::try_from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])).ok()
    }

    fn be32(h: &[u8], at: usize) -> Option<usize> {
        let b = h.get(at..at + 4)?;
        usize::try_from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])).ok()
    }

    /// `MZ`: a PE (or NE, LE, LX) header where `e_lfanew` points, or else a DOS executable
    /// whose header is consistent. Random bytes: about 2^-24.
    ///
    /// A PE whose header lies beyond the window and whose DOS fields are garbage (Windows reads
    /// only `e_magic` and `e_lfanew`) is not recognised: that needs more than the window.
    fn mz(h: &[u8]) -> bool {
        if let Some(at) = le32(h, 0x3C)
            && at >= 0x40
            && let Some(sig) = h.get(at..at + 4)
            && (sig == b"PE\0\0" || matches!(&sig[..2], b"NE" | b"LE" | b"LX"))
        {
            return true;
        }
        let field = |i: usize| le16(h, 2 * i);
        let (Some(last_page), Some(pages), Some(relocs), Some(paragraphs)) =
            (field(1), field(2), field(3), field(4))
        else {
            return false;
        };
        let (Some(min_alloc), Some(max_alloc), Some(reloc_at)) = (field(5), field(6), field(12))
        else {
            return false;
        };
        let header = paragraphs * 16;
        let image = pages.saturating_sub(1) * 512 + if last_page == 0 { 512 } else { last_page };
        last_page < 512
            && pages >= 1
            && (0x20..=h.len()).contains(&header)
            && header <= image
            && min_alloc <= max_alloc
            // The relocation table lies inside the header.
            && (relocs == 0 || (reloc_at >= 0x1C && reloc_at + 4 * relocs <= header))
    }

    /// `BC`: the bitcode magic is `BC C0 DE`, and the stream opens with ENTER_SUBBLOCK of the
    /// IDENTIFICATION (13) or MODULE (8) block. Random bytes: 2^-23.
    fn llvm(h: &[u8]) -> bool {
        h.starts_with(b"BC\xC0\xDE") && matches!(h.get(4), Some(0x35 | 0x21))
    }

    /// A DER TLV with `tag` at `at`: where its content starts and ends (minimal lengths only).
    fn tlv(h: &[u8], at: usize, tag: u8) -> Option<(usize, usize)> {
        if *h.get(at)? != tag {
            return None;
        }
        let (start, len) = match *h.get(at + 1)? {
            n @ 0..=0x7F => (at + 2, usize::from(n)),
            0x81 => (at + 3, usize::from(*h.get(at + 2)?)),
            0x82 => (at + 4, be16(h, at + 2)?),
            _ => return None,
        };
        // DER lengths are minimal: the long forms only for what the short ones cannot hold.
        let minimal = match h[at + 1] {
            0x81 => len >= 0x80,
            0x82 => len >= 0x100,
            _ => true,
        };
        if !minimal {
            return None;
        }
        Some((start, start + len))
    }

    /// `30 82`: a certificate, `SEQUENCE { tbsCertificate SEQUENCE { [0] version?, serial
    /// INTEGER, signature SEQUENCE, … }, … }`, whose length is the file's. Random bytes behind
    /// `30 82`: about 2^-28.
    fn der(h: &[u8], whole: bool) -> bool {
        let Some((start, end)) = tlv(h, 0, 0x30) else {
            return false;
        };
        let length_ok = if whole {
            end == h.len()
        } else {
            end >= h.len()
        };
        let Some((tbs, tbs_end)) = tlv(h, start, 0x30) else {
            return false;
        };
        let mut at = tbs;
        if h.get(at..at + 4) == Some(&[0xA0, 0x03, 0x02, 0x01]) {
            if h.get(at + 4).is_none_or(|&v| v > 2) {
                return false;
            }
            at += 5;
        }
        let Some((serial, serial_end)) = tlv(h, at, 0x02) else {
            return false;
        };
        length_ok
            && tbs_end <= end
            && (1..=21).contains(&(serial_end - serial))
            && tlv(h, serial_end, 0x30).is_some_and(|(_, e)| e <= tbs_end)
            // The signatureAlgorithm SEQUENCE follows the tbsCertificate.
            && h.get(tbs_end).is_none_or(|&b| b == 0x30)
    }

    /// `4C 01`, `64 86`, `00 02`: a COFF file header with 1 to 96 sections, an optional header
    /// that is absent (an object, not an image) or a known one, a symbol table after the headers,
    /// and a first section header with a name and its data after the headers. Random bytes
    /// behind the machine type: about 2^-35.
    fn coff(h: &[u8], whole: bool) -> bool {
        let (Some(sections), Some(symbols_at), Some(symbols), Some(optional), Some(flags)) = (
            le16(h, 2),
            le32(h, 8),
            le32(h, 12),
            le16(h, 16),
            le16(h, 18),
        ) else {
            return false;
        };
        let headers_end = 20 + optional + 40 * sections;
        let optional_ok = match optional {
            // An object file: not an executable image (0x0002), not a DLL (0x2000).
            0 => flags & 0x2002 == 0,
            // A System V a.out header (OMAGIC, NMAGIC, ZMAGIC).
            28 => matches!(le16(h, 20), Some(0x107 | 0x108 | 0x10B)),
            // A PE32 / PE32+ optional header.
            224 | 240 => matches!(le16(h, 20), Some(0x10B | 0x20B)),
            _ => false,
        };
        let symbols_ok = if symbols_at == 0 {
            symbols == 0
        } else {
            symbols_at >= headers_end && (!whole || symbols_at + 18 * symbols <= h.len())
        };
        (1..=96).contains(&sections)
            && optional_ok
            && symbols_ok
            && coff_section(h, 20 + optional, headers_end, whole)
    }

    /// A COFF section header at `at`: a NUL-padded printable name (or `/n`, a string-table
    /// offset), raw data absent or after the headers.
    fn coff_section(h: &[u8], at: usize, headers_end: usize, whole: bool) -> bool {
        let (Some(name), Some(raw_size), Some(raw_at)) =
            (h.get(at..at + 8), le32(h, at + 16), le32(h, at + 20))
        else {
            return false;
        };
        let len = name.iter().position(|&b| b == 0).unwrap_or(8);
        let name_ok = len > 0
            && name[..len].iter().all(u8::is_ascii_graphic)
            && name[len..].iter().all(|&b| b == 0);
        let raw_ok =
            raw_at == 0 || (raw_at >= headers_end && (!whole || raw_at + raw_size <= h.len()));
        name_ok && raw_ok
    }

    /// `BM`: a known DIB header size, one colour plane, a valid bit depth, pixels after the
    /// headers. Random bytes: about 2^-60.
    fn bmp(h: &[u8]) -> bool {
        let (Some(pixels_at), Some(dib)) = (le32(h, 10), le32(h, 14)) else {
            return false;
        };
        // BITMAPCOREHEADER has 16-bit dimensions; the others 32-bit.
        let (planes, bits) = if dib == 12 { (22, 24) } else { (26, 28) };
        matches!(dib, 12 | 40 | 52 | 56 | 64 | 108 | 124)
            && le16(h, planes) == Some(1)
            && matches!(le16(h, bits), Some(1 | 2 | 4 | 8 | 16 | 24 | 32 | 64))
            && pixels_at >= 14 + dib
    }

    /// `ID3`: an ID3v2 tag header (version 2 to 4, no undefined flags, synchsafe size), then an
    /// extended header of a valid size, a frame ID or padding. Random bytes: about 2^-23.
    fn id3(h: &[u8]) -> bool {
        let Some(&[major, minor, flags, ref size @ ..]) = h.get(3..10) else {
            return false;
        };
        if !(2..=4).contains(&major) || minor == 0xFF || flags & 0x0F != 0 {
            return false;
        }
        if size.iter().any(|&b| b >= 0x80) {
            return false;
        }
        if size == [0; 4] {
            return true;
        }
        let mut at = 10;
        if flags & 0x40 != 0 {
            let ext = match major {
                3 => be32(h, 10).filter(|&n| n == 6 || n == 10).map(|n| n + 4),
                4 => h
                    .get(10..14)
                    .filter(|s| s.iter().all(|&b| b < 0x80))
                    .map(|s| s.iter().fold(0, |n, &b| n << 7 | usize::from(b)))
                    .filter(|&n| n >= 6),
                _ => None,
            };
            let Some(ext) = ext else {
                return false;
            };
            at += ext;
        }
        let id_len = if major == 2 { 3 } else { 4 };
        match h.get(at..at + id_len) {
            Some(id) => {
                id[0] == 0
                    || id
                        .iter()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            }
            None => true,
        }
    }

    /// A frame of `frame` at the start of `h`, and the next one where its length says (with the
    /// same second byte, and the same third byte under `same`), or the end of the file. Random
    /// bytes: about 2^-18.
    fn frames(h: &[u8], whole: bool, frame: fn(&[u8]) -> Option<usize>, same: u8) -> bool {
        let Some(len) = frame(h) else {
            return false;
        };
        match h.get(len..) {
            Some([]) => whole,
            Some(next) if next.len() >= 4 => {
                frame(next).is_some() && next[1] == h[1] && (next[2] ^ h[2]) & same == 0
            }
            _ => false,
        }
    }

    /// An MPEG audio layer III frame header: its length in bytes.
    fn mpeg_audio_frame(h: &[u8]) -> Option<usize> {
        const MPEG1: [usize; 15] = [
            0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
        ];
        const MPEG2: [usize; 15] = [0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160];
        let &[0xFF, b1, b2, b3] = h.get(..4)? else {
            return None;
        };
        let version = (b1 >> 3) & 3; // 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5, 1: reserved
        let bitrate = usize::from(b2 >> 4);
        let rate = usize::from((b2 >> 2) & 3);
        if b1 & 0xE0 != 0xE0 || (b1 >> 1) & 3 != 1 || version == 1 {
            return None;
        }
        if bitrate == 0 || bitrate == 15 || rate == 3 || b3 & 3 == 2 {
            return None;
        }
        let hz = [44_100, 48_000, 32_000][rate] >> [2, 0, 1, 0][usize::from(version)];
        let pad = usize::from((b2 >> 1) & 1);
        Some(if version == 3 {
            144_000 * MPEG1[bitrate] / hz + pad
        } else {
            72_000 * MPEG2[bitrate] / hz + pad
        })
    }

    /// An ADTS (AAC) frame header: its length in bytes.
    fn adts_frame(h: &[u8]) -> Option<usize> {
        let &[0xFF, b1, b2, b3, b4, b5, _] = h.get(..7)? else {
            return None;
        };
        let len = (usize::from(b3 & 3) << 11) | (usize::from(b4) << 3) | usize::from(b5 >> 5);
        let header = if b1 & 1 == 1 { 7 } else { 9 };
        (b1 & 0xF6 == 0xF0 && (b2 >> 2) & 0xF < 13 && len > header).then_some(len)
    }

    /// `1F 9D`: compress flags (9 to 16 bits, reserved bits clear), then the first 64 LZW codes
    /// (9 bits each, least significant bit first) each name a table entry that exists or is
    /// being defined; compress never emits CLEAR that early. Random bytes: about 2^-50.
    fn lzw(h: &[u8]) -> bool {
        let Some(&flags) = h.get(2) else {
            return false;
        };
        if !(9..=16).contains(&(flags & 0x1F)) || flags & 0x60 != 0 {
            return false;
        }
        let block = flags & 0x80 != 0;
        let data = &h[3..];
        let mut next = if block { 257 } else { 256 };
        for i in 0..(data.len() * 8 / 9).min(64) {
            let (byte, shift) = (i * 9 / 8, i * 9 % 8);
            let pair =
                usize::from(data[byte]) | usize::from(*data.get(byte + 1).unwrap_or(&0)) << 8;
            let code = (pair >> shift) & 0x1FF;
            if i == 0 {
                if code >= 256 {
                    return false;
                }
                continue;
            }
            if code > next || (block && code == 256) {
                return false;
            }
            next += 1;
        }
        true
    }

    /// `C7 71` / `71 C7`: an old binary cpio header with a file type in its mode (or the
    /// trailer) and a NUL-terminated UTF-8 name. Random bytes: about 2^-25.
    fn cpio(h: &[u8]) -> bool {
        let field = |at| {
            if h[0] == 0xC7 {
                le16(h, at)
            } else {
                be16(h, at)
            }
        };
        let (Some(mode), Some(name_len)) = (field(6), field(20)) else {
            return false;
        };
        let Some(name) = h.get(26..26 + name_len).filter(|n| n.len() >= 2) else {
            return false;
        };
        let (last, name) = name.split_last().expect("at least two bytes");
        let kind_ok = matches!(mode & 0o170000, 0o010000 | 0o020000 | 0o040000 | 0o060000)
            || matches!(mode & 0o170000, 0o100000 | 0o120000 | 0o140000)
            || (mode == 0 && name == b"TRAILER!!!");
        kind_ok && *last == 0 && !name.contains(&0) && std::str::from_utf8(name).is_ok()
    }

    /// `FF D8 FF`: a first segment that may start a JPEG, followed by a marker where its length
    /// says: an APPn with an identifier (`JFIF`, `Exif`…; only a known one may run past the
    /// window, as Exif and ICC segments do), or a table, frame, restart or comment segment with
    /// plausible first bytes. Random bytes behind the magic: about 2^-25.
    fn jpeg(h: &[u8], whole: bool) -> bool {
        const LONG: [&[u8]; 6] = [
            b"Exif\0",
            b"http://ns.adobe.com/",
            b"ICC_PROFILE\0",
            b"MPF\0",
            b"FPXR\0",
            b"Photoshop 3.0\0",
        ];
        let (Some(&marker), Some(len)) = (h.get(3), be16(h, 4)) else {
            return false;
        };
        let end = 4 + len;
        let next = match h.get(end..end + 2) {
            Some(&[0xFF, m]) => Some(m >= 0xC0),
            Some(_) => Some(false),
            None => None,
        };
        let first = h.get(6).copied();
        match marker {
            0xE0..=0xEF => {
                let id = h.get(6..).unwrap_or_default();
                let n = id
                    .iter()
                    .take(32)
                    .take_while(|&&b| (0x20..0x7F).contains(&b))
                    .count();
                let named = n >= 3
                    && id[..3].iter().all(u8::is_ascii_alphanumeric)
                    && id.get(n) == Some(&0);
                let long_ok = !whole && LONG.iter().any(|k| id.starts_with(k));
                len >= 2 && named && next.unwrap_or(long_ok)
            }
            // DQT, DHT: precision/class and table number; SOF0-2: sample precision.
            0xDB | 0xC4 => first.is_some_and(|b| b >> 4 <= 1 && b & 0xF <= 3) && next == Some(true),
            0xC0..=0xC2 => matches!(first, Some(8 | 12)) && next == Some(true),
            // DRI has a fixed length; a comment starts with text.
            0xDD => len == 4 && next == Some(true),
            0xFE => {
                let text = |b: &u8| (0x20..0x7F).contains(b) || b"\t\r\n".contains(b);
                let comment = h.get(6..end).unwrap_or_default();
                len >= 2 && comment.iter().take(8).all(text) && next == Some(true)
            }
            _ => false,
        }
    }

    /// `II BC`: JPEG XR version 1, the first IFD in the window with 1 to 256 entries, the first
    /// of a valid TIFF field type. Random bytes behind the magic: about 2^-40.
    fn jxr(h: &[u8]) -> bool {
        let Some(ifd) = le32(h, 4) else {
            return false;
        };
        h.get(3) == Some(&1)
            && ifd >= 8
            && le16(h, ifd).is_some_and(|n| (1..=256).contains(&n))
            && le16(h, ifd + 4).is_some_and(|t| (1..=12).contains(&t))
    }

    /// `1F 8B 08`: no reserved flags, a known XFL and OS, NUL-terminated Latin-1 name and
    /// comment when flagged, and a first deflate block of a defined type (a stored block's
    /// length checked against its complement). Random bytes behind the magic: about 2^-16.
    fn gzip(h: &[u8]) -> bool {
        let Some(&[flags, _, _, _, _, xfl, os]) = h.get(3..10) else {
            return false;
        };
        if flags & 0xE0 != 0 || !matches!(xfl, 0 | 2 | 4) || !(os <= 13 || os == 255) {
            return false;
        }
        let mut at = 10;
        if flags & 0x04 != 0 {
            let Some(extra) = le16(h, at) else {
                return false;
            };
            at += 2 + extra;
        }
        for flag in [0x08, 0x10] {
            if flags & flag != 0 {
                let rest = h.get(at..).unwrap_or_default();
                let latin1 = |b: &u8| (0x20..0x7F).contains(b) || *b >= 0xA0 || *b == b'\n';
                match rest.iter().take(1024).position(|&b| !latin1(&b)) {
                    Some(n) if rest[n] == 0 => at += n + 1,
                    _ => return false,
                }
            }
        }
        if flags & 0x02 != 0 {
            at += 2;
        }
        match h.get(at).map(|b| (b >> 1) & 3) {
            Some(0) => {
                matches!((le16(h, at + 1), le16(h, at + 3)), (Some(n), Some(c)) if n ^ c == 0xFFFF)
            }
            Some(kind) => kind != 3,
            None => false,
        }
    }

    /// `BZh`: a block size digit, then the first block's magic (the digits of pi) or the
    /// end-of-stream magic (those of its square root). Random bytes: 2^-51.
    fn bzip2(h: &[u8]) -> bool {
        matches!(h.get(3), Some(b'1'..=b'9'))
            && matches!(
                h.get(4..10),
                Some(b"\x31\x41\x59\x26\x53\x59" | b"\x17\x72\x45\x38\x50\x90")
            )
    }

    /// `FWS` / `CWS`: a Flash version; compressed, a zlib header; uncompressed, the declared
    /// length, a stage rectangle at the origin with a positive size, a frame rate and a known
    /// first tag. Random bytes behind the magic: about 2^-21.
    fn swf(h: &[u8], whole: bool) -> bool {
        let (Some(&version), Some(length)) = (h.get(3), le32(h, 4)) else {
            return false;
        };
        // The declared (uncompressed) length: under 256 MiB.
        if length >= 1 << 28 {
            return false;
        }
        if h[0] == b'C' {
            // zlib from byte 8 on (SWF 6 and later): deflate, no preset dictionary, FCHECK.
            return (6..=50).contains(&version)
                && h.get(8) == Some(&0x78)
                && h.get(9)
                    .is_some_and(|&f| f & 0x20 == 0 && (0x7800 + usize::from(f)) % 31 == 0)
                // The first deflate block is of a defined type.
                && h.get(10).is_some_and(|&b| (b >> 1) & 3 != 3);
        }
        let length_ok = if whole {
            length == h.len()
        } else {
            length >= h.len()
        };
        let mut bit = 64;
        let mut read = |n: usize| -> Option<usize> {
            let mut v = 0;
            for _ in 0..n {
                let byte = *h.get(bit / 8)?;
                v = v << 1 | usize::from((byte >> (7 - bit % 8)) & 1);
                bit += 1;
            }
            Some(v)
        };
        let Some(n) = read(5).filter(|&n| n >= 2) else {
            return false;
        };
        let (Some(x_min), Some(x_max), Some(y_min), Some(y_max)) =
            (read(n), read(n), read(n), read(n))
        else {
            return false;
        };
        let positive = |v: usize| v > 0 && v < 1 << (n - 1);
        let after = (64 + 5 + 4 * n).div_ceil(8);
        (1..=50).contains(&version)
            && length_ok
            && x_min == 0
            && y_min == 0
            && positive(x_max)
            && positive(y_max)
            && h.get(after + 1)
                .is_some_and(|&fps| (1..=120).contains(&fps))
            && le16(h, after + 2).is_some_and(|frames| frames >= 1)
            && le16(h, after + 4).is_some_and(|tag| tag >> 6 <= 93)
    }

    /// `00 00 01 Bx`: a program stream pack header (MPEG-1 or MPEG-2 marker bits) or a video
    /// sequence header (size, aspect ratio, frame rate, marker bit), then the next start code.
    /// Other start codes are not how a file begins. Random bytes behind `00 00 01 BA`: 2^-30.
    fn mpeg_video(h: &[u8]) -> bool {
        let bit = |at: usize, mask: u8| h.get(at).is_some_and(|&b| b & mask == mask);
        let start_code_at = |at: usize| h.get(at..at + 3) == Some(&[0, 0, 1]);
        match (h.get(3), h.get(4)) {
            (Some(0xBA), Some(&b4)) if b4 & 0xC4 == 0x44 => {
                let stuffing = h.get(13).map_or(0, |&b| usize::from(b & 7));
                bit(6, 0x04)
                    && bit(8, 0x04)
                    && bit(9, 0x01)
                    && bit(12, 0x03)
                    && start_code_at(14 + stuffing)
            }
            (Some(0xBA), Some(&b4)) if b4 & 0xF1 == 0x21 => {
                bit(6, 0x01) && bit(8, 0x01) && bit(9, 0x80) && bit(11, 0x01) && start_code_at(12)
            }
            (Some(0xB3), Some(_)) => {
                let (Some(&b5), Some(&b6), Some(&b7)) = (h.get(5), h.get(6), h.get(7)) else {
                    return false;
                };
                let width = usize::from(h[4]) << 4 | usize::from(b5 >> 4);
                let height = usize::from(b5 & 0xF) << 8 | usize::from(b6);
                width > 0
                    && height > 0
                    && (1..=14).contains(&(b7 >> 4))
                    && (1..=8).contains(&(b7 & 0xF))
                    && bit(10, 0x20)
                    && (12..12 + 130).any(start_code_at)
            }
            _ => false,
        }
    }
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
