//! Corroboration of `infer`'s weak magic numbers.
//!
//! Some of `infer`'s matchers rest on two or three bytes, so about one file of random bytes in
//! 3 400 matches one of them (one in 65 536 per two-byte magic): a user who allowed
//! `application/octet-stream` would see a random `.bin` refused as an executable or a
//! certificate, or stored as `image/bmp`. A match on one of these is trusted only when the
//! structure behind the magic checks out. Real files of these types pass; random bytes behind
//! the magic pass with a probability of about 2^-18 or less (the comments give the estimate).
//!
//! The weak matchers of `infer` 0.22, and what corroborates each:
//!
//! | magic | `infer` type | corroboration |
//! |---|---|---|
//! | `MZ` | PE (exe, dll) | `PE\0\0`/`NE`/`LE`/`LX` at `e_lfanew`, or a consistent DOS header |
//! | `BC` | LLVM bitcode | `BC C0 DE`, then the first block is IDENTIFICATION or MODULE |
//! | `30 82` | DER certificate | SEQUENCE { SEQUENCE { [0] version?, serial, SEQUENCE … } … } |
//! | `4C 01`, `64 86`, `00 02` | COFF | sections, optional header, symbols, first section |
//! | `BM` | BMP | DIB header size, planes = 1, bits per pixel, pixel offset |
//! | `FF FB`/`F3`/`F2` | MP3 frame | a valid frame header, and the next frame where it says |
//! | `ID3` | MP3 ID3v2 tag | version, flags, sizes, first frame ID or padding |
//! | `FF F1`/`F9` | AAC (ADTS) | a valid header, and the next frame where it says |
//! | `FF 0A` | JPEG XL codestream | nothing in its first bytes can: only with the `.jxl` extension |
//! | `1F 9D` | compress (LZW) | flags, then the first 64 codes name existing table entries |
//! | `1F A0` | compress (LZH) | never (no structure to check; nobody writes it) |
//! | `C7 71`, `71 C7` | cpio (binary) | file type in the mode, a NUL-terminated UTF-8 name |
//! | `%!`, `#!`, `<b>`… | PostScript, shell, HTML | the window is text |
//! | `FF D8 FF` | JPEG | a first segment that may start a JPEG, followed by a marker |
//! | `GIF` | GIF | `GIF87a` or `GIF89a` |
//! | `II BC` | JPEG XR | version 1, then an IFD in the window with a valid first entry |
//! | `1F 8B 08` | gzip | flags, XFL, OS, optional name/comment, first deflate block type |
//! | `BZh` | bzip2 | block size digit, then a block or end-of-stream magic |
//! | `FWS`, `CWS` | Flash | version; the stage rectangle, frame rate, first tag; or zlib |
//! | `%PDF` anywhere in 1 KiB | PDF | `%PDF-d.d` |
//! | `WEBP` at offset 8 | WebP | `RIFF` at 0 and a `VP8` chunk at 12 |
//! | `00 00 01 Bx` (28 bits) | MPEG | a pack header's marker bits or a sequence header, then the next start code |
//!
//! The other matchers need four or more fixed bytes (one random file in four billion or fewer)
//! and are trusted as they are. A rejected match falls to the text rules rather than to
//! `infer`'s next matcher: no strong matcher shares these prefixes.

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
    let (Some(min_alloc), Some(max_alloc), Some(reloc_at)) = (field(5), field(6), field(12)) else {
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
    let raw_ok = raw_at == 0 || (raw_at >= headers_end && (!whole || raw_at + raw_size <= h.len()));
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
        let pair = usize::from(data[byte]) | usize::from(*data.get(byte + 1).unwrap_or(&0)) << 8;
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
            let named =
                n >= 3 && id[..3].iter().all(u8::is_ascii_alphanumeric) && id.get(n) == Some(&0);
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
    let (Some(x_min), Some(x_max), Some(y_min), Some(y_max)) = (read(n), read(n), read(n), read(n))
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
