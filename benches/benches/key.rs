//! `ObjectKey::derive`: the key rules (NFC normalisation, NFKC confusable check, forbidden
//! characters) run once per uploaded file and once per daemon part.
//!
//! `cargo bench -p benches --bench key`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use uploader_core::{KeyPrefix, ObjectKey};

/// Realistic relative names: ASCII, nested, long, and Unicode (NFC, NFD, CJK, emoji, RTL text).
const NAMES: &[(&str, &str)] = &[
    ("ascii", "report.pdf"),
    ("nested", "photos/2024/06/IMG_20240614_181502.jpg"),
    ("spaces", "Quarterly Reports/Q3 2024 - final (v2).xlsx"),
    (
        "deep",
        "projects/uploader/target/release/build/aws-lc-sys-0f3e1c9a/out/include/openssl/evp.h",
    ),
    ("accents_nfc", "clients/Société Générale/résumé été.docx"),
    (
        "accents_nfd",
        "clients/Socie\u{301}te\u{301}/re\u{301}sume\u{301}.docx",
    ),
    ("cjk", "文档/二〇二四年/会议纪要 第三季度.txt"),
    ("emoji", "phone backup/📷 Camera/🎉 party 2024.heic"),
    ("arabic", "تقارير/التقرير السنوي.pdf"),
    ("fullwidth", "ｄａｔａ/ｆｉｌｅ－０１.csv"),
    ("cyrillic", "Документы/Отчёт за 2024 год.odt"),
];

fn bench_derive(c: &mut Criterion) {
    let prefix = KeyPrefix::new("uploads/2024-06").expect("valid prefix");
    for (label, name) in NAMES {
        // Every name here is accepted: the bench measures the full path, not an early refusal.
        ObjectKey::derive(&prefix, name).unwrap_or_else(|e| panic!("{label}: {name:?}: {e}"));
    }

    let mut g = c.benchmark_group("key/derive");
    for (label, name) in NAMES {
        g.throughput(Throughput::Bytes(name.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(label), name, |b, name| {
            b.iter(|| ObjectKey::derive(black_box(&prefix), black_box(name)))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("key/derive_batch");
    g.throughput(Throughput::Elements(NAMES.len() as u64));
    g.bench_function("all_names", |b| {
        b.iter(|| {
            for (_, name) in NAMES {
                let _ = black_box(ObjectKey::derive(&prefix, black_box(name)));
            }
        })
    });
    // The refusal path, e.g. a hostile daemon filename.
    g.bench_function("refused_dot_segment", |b| {
        b.iter(|| ObjectKey::derive(&prefix, black_box("docs/../../etc/passwd")))
    });
    g.finish();
}

criterion_group!(benches, bench_derive);
criterion_main!(benches);
