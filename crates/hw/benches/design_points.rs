//! Design points evaluated per second on one core (issue 5 aims for >= 100,000/s): the cost of
//! one `Space::point` call (mapping + allocation-free simulation) over a realistic space.

use std::hint::black_box;

use adalbert_hw::dse::Space;
use adalbert_hw::{Accelerator, MemoryTable};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const SPACE: &str = include_str!("../../../configs/hw/dse-example.toml");

fn design_points(c: &mut Criterion) {
    let arch = Accelerator::builtin().expect("built-in arch");
    let tech = MemoryTable::builtin().expect("built-in memory table");
    let space =
        Space::from_toml_str(SPACE, "dse-example.toml", &arch, &tech).expect("example space");
    // a strided sample that visits every policy, workload and platform
    let stride = 7919;
    let sample: Vec<usize> = (0..10_000).map(|i| (i * stride) % space.len()).collect();
    let mut group = c.benchmark_group("dse");
    group.throughput(Throughput::Elements(sample.len() as u64));
    group.bench_function("design_points_single_core", |b| {
        b.iter(|| {
            for &i in &sample {
                black_box(space.point(black_box(i)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, design_points);
criterion_main!(benches);
