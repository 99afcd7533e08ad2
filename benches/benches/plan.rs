//! `Plan::new`: single PUT or multipart, and the part size, for every file of a job.
//!
//! `cargo bench -p benches --bench plan`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use uploader_core::Plan;

const MIB: u64 = 1024 * 1024;

/// 1 000 sizes from 0 B to 5 TiB: every power of two, its neighbours and values between them,
/// so both plans, the 10 000-part rule and the part-size clamps are all taken.
fn sizes() -> Vec<u64> {
    let mut v = Vec::new();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for shift in 0..=42u32 {
        let p = 1u64 << shift;
        v.extend([p - 1, p, p + 1]);
    }
    while v.len() < 1000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x % (5 * 1024 * 1024 * MIB + 1));
    }
    v
}

fn bench_plan(c: &mut Criterion) {
    let sizes = sizes();
    let (threshold, part_size) = (8 * MIB, 8 * MIB);
    let mut g = c.benchmark_group("plan");
    g.throughput(Throughput::Elements(sizes.len() as u64));
    g.bench_function("new_1000_sizes", |b| {
        b.iter(|| {
            let mut parts = 0u64;
            for &size in black_box(&sizes) {
                let plan = Plan::new(size, black_box(threshold), black_box(part_size));
                parts += plan.map_or(0, |p| u64::from(p.parts()));
            }
            parts
        })
    });
    g.finish();
}

criterion_group!(benches, bench_plan);
criterion_main!(benches);
