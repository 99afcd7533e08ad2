//! `Checksum::of_bytes`: the per-request body checksum (CRC32C by default, MD5 as the fallback)
//! over an 8 MiB buffer, the default part size.
//!
//! `cargo bench -p benches --bench checksum`

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use uploader_core::{Checksum, ChecksumAlgorithm};

const LEN: usize = 8 * 1024 * 1024;

fn bench_checksum(c: &mut Criterion) {
    let mut data = Vec::with_capacity(LEN);
    let mut x: u64 = 0x853c_49e6_748f_ea9b;
    while data.len() < LEN {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }

    let mut g = c.benchmark_group("checksum/of_bytes_8MiB");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(30);
    for alg in [ChecksumAlgorithm::Crc32c, ChecksumAlgorithm::Md5] {
        g.bench_with_input(BenchmarkId::from_parameter(alg), &data, |b, data| {
            b.iter(|| Checksum::of_bytes(alg, black_box(data)))
        });
    }
    g.finish();
}

criterion_group!(benches, bench_checksum);
criterion_main!(benches);
