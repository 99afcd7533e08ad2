//! Content sniffing through the pipeline: real small files of every default-allowed type are
//! stored with the detected Content-Type; spoofed and active files are refused per file, as
//! `mime_not_allowed` when their content is not allowed whatever their name; random bytes that
//! happen to begin with a weak magic number are unrecognised binary.

use std::sync::Arc;

use uploader_core::{
    ErrorCode, FileOutcome, KeyPrefix, MemoryStore, ObjectStore as _, Uploader, WalkOptions,
};

/// A zip local-file header + data ("stored", no compression), as Office documents begin.
fn zip_entry(name: &str, data: &[u8]) -> Vec<u8> {
    let mut v = b"PK\x03\x04".to_vec();
    v.extend_from_slice(&[20, 0, 0, 0, 0, 0, 0, 0, 0, 0]); // version, flags, method, time, date
    v.extend_from_slice(&[0; 4]); // crc (not checked by sniffers)
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(&(name.len() as u16).to_le_bytes());
    v.extend_from_slice(&[0, 0]);
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(data);
    v
}

fn ooxml(dir: &str) -> Vec<u8> {
    let mut v = zip_entry("[Content_Types].xml", b"<Types/>");
    v.extend(zip_entry("_rels/.rels", b"<Relationships/>"));
    let xml = b"<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?><root/>";
    v.extend(zip_entry(&format!("{dir}/document.xml"), xml));
    v.extend(zip_entry(&format!("{dir}/styles.xml"), xml));
    v.extend_from_slice(b"PK\x05\x06");
    v.extend_from_slice(&[0; 18]);
    v
}

/// A minimal ELF64 header: an x86-64 executable with no program or section headers.
fn elf() -> Vec<u8> {
    let mut v = b"\x7fELF\x02\x01\x01\x00".to_vec();
    v.extend([0; 8]);
    v.extend(2u16.to_le_bytes()); // e_type: EXEC
    v.extend(0x3Eu16.to_le_bytes()); // e_machine: x86-64
    v.extend(1u32.to_le_bytes()); // e_version
    v.extend(0x40_1000u64.to_le_bytes()); // e_entry
    v.extend(64u64.to_le_bytes()); // e_phoff
    v.extend([0; 12]); // e_shoff, e_flags
    v.extend(64u16.to_le_bytes()); // e_ehsize
    v.extend(56u16.to_le_bytes()); // e_phentsize
    v.extend([0; 8]); // e_phnum, e_shentsize, e_shnum, e_shstrndx
    assert_eq!(v.len(), 64);
    v
}

/// A DOS header (the usual PE stub's) pointing at a PE header at 0x80.
fn pe() -> Vec<u8> {
    let mut v = b"MZ".to_vec();
    for f in [0x90u16, 3, 0, 4, 0, 0xFFFF, 0, 0xB8, 0, 0, 0, 0x40] {
        v.extend(f.to_le_bytes());
    }
    v.resize(0x3C, 0);
    v.extend(0x80u32.to_le_bytes());
    v.resize(0x80, 0);
    v.extend(b"PE\0\0\x64\x86\x01\x00");
    v.resize(1024, 0);
    v
}

/// A 1x1 24-bit BMP.
fn bmp() -> Vec<u8> {
    let mut v = b"BM".to_vec();
    for f in [58u32, 0, 54, 40, 1, 1] {
        v.extend(f.to_le_bytes()); // size, reserved, pixel offset, DIB size, width, height
    }
    v.extend(1u16.to_le_bytes()); // planes
    v.extend(24u16.to_le_bytes()); // bits per pixel
    v.extend([0; 4]); // no compression
    v.extend(4u32.to_le_bytes()); // image size
    v.extend([0x13, 0x0B, 0, 0, 0x13, 0x0B, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    v.extend([0, 0, 0xFF, 0]);
    v
}

fn tar() -> Vec<u8> {
    let mut v = vec![0u8; 1024];
    v[..8].copy_from_slice(b"file.txt");
    v[257..263].copy_from_slice(b"ustar\0");
    v
}

/// (file name, content, expected Content-Type)
fn allowed() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89".to_vec();
    png.extend_from_slice(b"\x00\x00\x00\x00IEND\xaeB`\x82");
    vec![
        ("img/pixel.png", png, "image/png"),
        ("img/photo.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00\xff\xd9".to_vec(), "image/jpeg"),
        ("img/anim.gif", b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;".to_vec(), "image/gif"),
        ("img/pic.webp", b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00".to_vec(), "image/webp"),
        ("img/old.bmp", bmp(), "image/bmp"),
        ("img/scan.tiff", b"II*\x00\x08\x00\x00\x00\x00\x00".to_vec(), "image/tiff"),
        ("doc/report.pdf", b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n".to_vec(), "application/pdf"),
        ("doc/notes.txt", "plain text, ünïcode\n".as_bytes().to_vec(), "text/plain"),
        ("doc/table.csv", b"id,name\n1,a\n2,b\n".to_vec(), "text/csv"),
        ("doc/data.json", b"{\"k\": [1, 2, {\"x\": null}]}\n".to_vec(), "application/json"),
        ("arc/bundle.zip", [zip_entry("a.txt", b"hi"), b"PK\x05\x06".to_vec(), vec![0; 18]].concat(), "application/zip"),
        ("arc/logs.gz", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00".to_vec(), "application/gzip"),
        ("arc/tree.tar", tar(), "application/x-tar"),
        ("arc/x.bz2", b"BZh91AY&SY\x00\x00".to_vec(), "application/x-bzip2"),
        ("arc/x.xz", b"\xfd7zXZ\x00\x00\x04".to_vec(), "application/x-xz"),
        ("arc/x.zst", b"\x28\xb5\x2f\xfd\x00\x00".to_vec(), "application/zstd"),
        ("office/letter.docx", ooxml("word"), "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
        ("office/sheet.xlsx", ooxml("xl"), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        ("office/deck.pptx", ooxml("ppt"), "application/vnd.openxmlformats-officedocument.presentationml.presentation"),
        ("media/song.mp3", b"ID3\x03\x00\x00\x00\x00\x00\x00".to_vec(), "audio/mpeg"),
        ("media/clip.mp4", b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom".to_vec(), "video/mp4"),
    ]
}

/// (file name, content, expected error code)
fn refused() -> Vec<(&'static str, Vec<u8>, ErrorCode)> {
    let mut png_zip = allowed()[0].1.clone();
    png_zip.extend(vec![0u8; 9000]);
    png_zip.extend(
        [
            zip_entry("evil.jsp", b"<% x %>"),
            b"PK\x05\x06".to_vec(),
            vec![0; 18],
        ]
        .concat(),
    );
    let pdf = allowed()
        .into_iter()
        .find_map(|(name, bytes, _)| name.ends_with(".pdf").then_some(bytes))
        .unwrap();
    vec![
        // Content that is not allowed is refused for what it is, whatever its name.
        (
            "spoof/html.png",
            b"<html><script>alert(1)</script></html>".to_vec(),
            ErrorCode::MimeNotAllowed,
        ),
        ("spoof/elf.pdf", elf(), ErrorCode::MimeNotAllowed),
        ("spoof/evil.png", elf(), ErrorCode::MimeNotAllowed),
        ("spoof/tool", elf(), ErrorCode::MimeNotAllowed),
        (
            "spoof/script.svg",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>".to_vec(),
            ErrorCode::MimeNotAllowed,
        ),
        (
            "spoof/prolog.svg",
            b"<?xml version=\"1.0\"?>\n<svg onload=\"alert(1)\"/>".to_vec(),
            ErrorCode::MimeNotAllowed,
        ),
        (
            "spoof/page.html",
            b"\n\n   <!DOCTYPE html><html></html>".to_vec(),
            ErrorCode::MimeNotAllowed,
        ),
        (
            "spoof/run.sh",
            b"#!/bin/sh\necho pwned\n".to_vec(),
            ErrorCode::MimeNotAllowed,
        ),
        (
            "spoof/sh-as.png",
            b"#!/bin/sh\necho pwned\n".to_vec(),
            ErrorCode::MimeNotAllowed,
        ),
        ("spoof/win.exe", pe(), ErrorCode::MimeNotAllowed),
        ("spoof/win.png", pe(), ErrorCode::MimeNotAllowed),
        // An allowed type under another type's extension is a mismatch.
        ("spoof/pdf.png", pdf, ErrorCode::MimeMismatch),
        (
            "spoof/plainzip.docx",
            [
                zip_entry("a.txt", b"hi"),
                b"PK\x05\x06".to_vec(),
                vec![0; 18],
            ]
            .concat(),
            ErrorCode::MimeMismatch,
        ),
        ("spoof/polyglot.png", png_zip, ErrorCode::MimeMismatch),
        (
            "spoof/random.bin",
            vec![0x00, 0xff, 0x13, 0x37, 0x00, 0x42],
            ErrorCode::MimeNotAllowed,
        ),
    ]
}

#[tokio::test]
async fn allowed_types_are_stored_with_the_detected_type_and_spoofs_are_refused() {
    let src = tempfile::tempdir().unwrap();
    for (name, bytes, _) in allowed() {
        crate::common::write_bytes(src.path(), name, &bytes);
    }
    for (name, bytes, _) in refused() {
        crate::common::write_bytes(src.path(), name, &bytes);
    }
    let store = Arc::new(MemoryStore::new());
    let up = Uploader::builder()
        .with_store(store.clone())
        .build()
        .unwrap();
    let report = up
        .upload_dir(
            src.path(),
            &KeyPrefix::new("s").unwrap(),
            WalkOptions::default(),
        )
        .wait()
        .await;
    let by_key = |k: &str| {
        report
            .files
            .iter()
            .find(|f| f.key.as_deref() == Some(k))
            .unwrap_or_else(|| panic!("{k} not reported"))
    };
    for (name, bytes, mime) in allowed() {
        let key = format!("s/{name}");
        let f = by_key(&key);
        match &f.outcome {
            FileOutcome::Uploaded { content_type, .. } => {
                assert_eq!(content_type.as_deref(), Some(mime), "{name}")
            }
            other => panic!("{name}: {other:?}"),
        }
        let meta = store.head(&key).await.unwrap().unwrap();
        assert_eq!(meta.content_type.as_deref(), Some(mime), "{name}");
        assert_eq!(store.get(&key).await.unwrap().unwrap(), bytes);
    }
    for (name, _, code) in refused() {
        let key = format!("s/{name}");
        let err = by_key(&key)
            .error()
            .unwrap_or_else(|| panic!("{name} was not refused"));
        assert_eq!(err.code, code, "{name}: {}", err.message);
        assert!(
            err.message.contains("is "),
            "the message names what was detected: {}",
            err.message
        );
        assert!(
            store.head(&key).await.unwrap().is_none(),
            "{name} was stored"
        );
    }
}

#[tokio::test]
async fn content_type_override_relabels_but_never_admits() {
    let src = tempfile::tempdir().unwrap();
    crate::common::write_bytes(src.path(), "a.txt", b"hello");
    crate::common::write_bytes(src.path(), "b.html", b"<html></html>");
    let store = Arc::new(MemoryStore::new());
    let config = uploader_core::UploadConfig {
        content_type: Some("text/csv".into()),
        ..Default::default()
    };
    let up = Uploader::builder()
        .with_store(store.clone())
        .with_config(config)
        .build()
        .unwrap();
    let report = up
        .upload_dir(src.path(), &KeyPrefix::root(), WalkOptions::default())
        .wait()
        .await;
    assert!(report.files[0].is_uploaded());
    assert_eq!(
        store
            .head("a.txt")
            .await
            .unwrap()
            .unwrap()
            .content_type
            .as_deref(),
        Some("text/csv")
    );
    assert_eq!(
        report.files[1].error().unwrap().code,
        ErrorCode::MimeNotAllowed
    );
    // An override that is itself not allowed is a configuration error.
    let bad = uploader_core::UploadConfig {
        content_type: Some("text/html".into()),
        ..Default::default()
    };
    assert!(
        Uploader::builder()
            .with_store(store)
            .with_config(bad)
            .build()
            .is_err()
    );
}

/// Through the public API: an ELF called `evil.png` is refused as an executable even when
/// unrecognised binary is allowed, while random `.bin` files that begin with a weak magic
/// number (a DER SEQUENCE `30 82`, an i386 COFF machine `4C 01`, `MZ`, `BM`) are stored as the
/// unrecognised binary they are.
#[tokio::test]
async fn executables_are_refused_by_content_and_random_bins_with_weak_magics_are_stored() {
    let src = tempfile::tempdir().unwrap();
    crate::common::write_bytes(src.path(), "evil.png", &elf());
    let prefixes: [&[u8]; 4] = [b"\x30\x82", b"\x4C\x01", b"MZ", b"BM"];
    for (i, prefix) in prefixes.iter().enumerate() {
        let mut bytes = crate::common::data(64 * 1024, 1000 + i as u64);
        bytes[..prefix.len()].copy_from_slice(prefix);
        crate::common::write_bytes(src.path(), &format!("random-{i}.bin"), &bytes);
    }
    let store = Arc::new(MemoryStore::new());
    let up = Uploader::builder()
        .with_store(store.clone())
        .with_mime_policy(crate::common::binary_ok())
        .build()
        .unwrap();
    let report = up
        .upload_dir(src.path(), &KeyPrefix::root(), WalkOptions::default())
        .wait()
        .await;
    let by_key = |k: &str| {
        report
            .files
            .iter()
            .find(|f| f.key.as_deref() == Some(k))
            .unwrap_or_else(|| panic!("{k} not reported"))
    };

    let err = by_key("evil.png").error().expect("evil.png was refused");
    assert_eq!(err.code, ErrorCode::MimeNotAllowed, "{}", err.message);
    assert_eq!(err.code.as_str(), "mime_not_allowed");
    assert!(
        err.message.contains("application/x-executable"),
        "the message names the detected type: {}",
        err.message
    );
    assert!(store.head("evil.png").await.unwrap().is_none());

    for i in 0..prefixes.len() {
        let key = format!("random-{i}.bin");
        match &by_key(&key).outcome {
            FileOutcome::Uploaded { content_type, .. } => {
                assert_eq!(
                    content_type.as_deref(),
                    Some("application/octet-stream"),
                    "{key}"
                )
            }
            other => panic!("{key}: {other:?}"),
        }
        let meta = store.head(&key).await.unwrap().expect("stored");
        assert_eq!(
            meta.content_type.as_deref(),
            Some("application/octet-stream")
        );
    }
}
