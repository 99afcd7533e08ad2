//! `sniff::check`: content-type detection on the first 8 KiB of every file, then the extension
//! cross-check and the allowlist.
//!
//! `cargo bench -p benches --bench sniff`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use uploader_core::MimePolicy;
use uploader_core::sniff::{self, SNIFF_WINDOW, TAIL_WINDOW};

use uploader_core::testing::pseudo_random as random_bytes;

/// 8 KiB of plain prose (the text path scans the whole window for markup).
fn text() -> Vec<u8> {
    let line = "The quick brown fox jumps over the lazy dog; 0123456789, naïve café (UTF-8).\n";
    line.repeat(SNIFF_WINDOW / line.len() + 1).into_bytes()[..SNIFF_WINDOW].to_vec()
}

/// A PNG signature and IHDR chunk followed by compressed-looking bytes, 8 KiB in all.
fn png() -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x04\x00\x00\x00\x03\x00\x08\x06\x00\x00\x00"
        .to_vec();
    v.extend_from_slice(&[0x5d, 0x1e, 0x6b, 0x4d]); // IHDR CRC (not checked by the sniffer)
    v.extend_from_slice(&random_bytes(SNIFF_WINDOW - v.len(), 0x9e37_79b9_7f4a_7c15));
    v
}

/// One sniffed file: its first bytes, its name, its last bytes, and the type it must get.
struct Case<'a> {
    label: &'static str,
    head: Vec<u8>,
    name: &'static str,
    tail: Option<&'a [u8]>,
    want: &'static str,
}

fn bench_check(c: &mut Criterion) {
    // As the peer harness runs the CLI: the default allowlist plus application/octet-stream, so
    // every case below takes the accepting path.
    let policy = MimePolicy::new(&["application/octet-stream".to_owned()], &[]).expect("policy");
    let tail = random_bytes(TAIL_WINDOW, 0x0123_4567_89ab_cdef);
    let cases = [
        Case {
            label: "text",
            head: text(),
            name: "notes.txt",
            tail: None,
            want: "text/plain",
        },
        Case {
            label: "png",
            head: png(),
            name: "photo.png",
            tail: None,
            want: "image/png",
        },
        // An image longer than the window: the last 64 KiB are searched for a ZIP trailer.
        Case {
            label: "png_with_tail",
            head: png(),
            name: "photo.png",
            tail: Some(&tail),
            want: "image/png",
        },
        Case {
            label: "random",
            head: random_bytes(SNIFF_WINDOW, 0xdead_beef_cafe_f00d),
            name: "blob.bin",
            tail: None,
            want: "application/octet-stream",
        },
    ];

    let mut g = c.benchmark_group("sniff/check");
    g.throughput(Throughput::Bytes(SNIFF_WINDOW as u64));
    for case in &cases {
        assert_eq!(case.head.len(), SNIFF_WINDOW);
        let got = sniff::check(&policy, &case.head, case.tail, case.name);
        assert_eq!(got.ok(), Some(case.want), "{}", case.label);
        g.bench_with_input(BenchmarkId::from_parameter(case.label), case, |b, case| {
            b.iter(|| {
                sniff::check(
                    black_box(&policy),
                    black_box(&case.head),
                    case.tail,
                    black_box(case.name),
                )
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_check);
criterion_main!(benches);
