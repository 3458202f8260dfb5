//! Throughput of the inference kernels on one thread, at MiniLM's shapes (hidden 384, FFN 1536,
//! 32-dim heads) for 1x32 and 8x128 token batches.
//!
//! Run with `cargo bench -p adalbert-kernels --bench kernels` (pin with `taskset -c 0`). Matrix
//! multiplies report elements = floating-point operations (so Criterion's "elem/s" reads as
//! FLOP/s); elementwise kernels report elements processed.

use std::hint::black_box;

use adalbert_kernels::act::{self, Act};
use adalbert_kernels::attention::{attention, AttentionShape};
use adalbert_kernels::bf16::{self, Bf16Isa, PackedBf16};
use adalbert_kernels::gemm::{gemm, Epilogue, PackedB};
use adalbert_kernels::int8::{self, Int8Isa, PackedI8};
use adalbert_kernels::Isa;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            ((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32
                / (1u32 << 24) as f32
                - 0.5
        })
        .collect()
}

fn bench_gemm(c: &mut Criterion) {
    let isa = Isa::detect();
    let name = |k: &dyn Fn() -> Vec<&'static str>| k().join(", ");
    eprintln!(
        "CPU: {}; fp32 {}; int8 kernels here: {}; bf16 kernels here: {}",
        adalbert_kernels::cpu_model_name(),
        isa.name(),
        name(&|| Int8Isa::ALL
            .into_iter()
            .filter(|k| k.available())
            .map(Int8Isa::name)
            .collect()),
        name(&|| Bf16Isa::ALL
            .into_iter()
            .filter(|k| k.available())
            .map(Bf16Isa::name)
            .collect()),
    );
    let mut g = c.benchmark_group("gemm");
    g.sample_size(10);
    for &(m, k, n) in &[
        (32, 384, 1152),
        (1024, 384, 1152),
        (1024, 384, 1536),
        (1024, 1536, 384),
    ] {
        let a = data(m * k, 1);
        let w = data(n * k, 2);
        let bias = data(n, 3);
        let mut out = vec![0.0f32; m * n];
        let ep = Epilogue::bias(&bias);
        g.throughput(Throughput::Elements((2 * m * k * n) as u64));
        let packed = PackedB::from_weight(&w, n, k);
        g.bench_function(format!("f32 {m}x{k}x{n}"), |b| {
            b.iter(|| gemm(isa, m, black_box(&a), k, &packed, &mut out, n, &ep))
        });
        for kernel in Bf16Isa::ALL.into_iter().filter(|k| k.available()) {
            if kernel == Bf16Isa::Widened {
                continue; // the fp32 product above, on rounded weights
            }
            let p16 = PackedBf16::for_kernel(kernel, &w, n, k);
            g.bench_function(format!("bf16-{} {m}x{k}x{n}", kernel.name()), |b| {
                b.iter(|| bf16::gemm(isa, m, black_box(&a), k, &p16, &mut out, n, &ep))
            });
        }
        let p8 = PackedI8::from_weight(&w, n, k);
        for kernel in Int8Isa::ALL.into_iter().filter(|k| k.available()) {
            g.bench_function(format!("int8-{} {m}x{k}x{n}", kernel.name()), |b| {
                b.iter(|| int8::gemm(kernel, m, black_box(&a), k, &p8, &mut out, n, &ep))
            });
        }
    }
    g.finish();
}

fn bench_elementwise(c: &mut Criterion) {
    let isa = Isa::detect();
    let mut g = c.benchmark_group("elementwise");
    // 64 KiB: the size of a GEMM block's output, which the epilogue activates in cache.
    let x = data(16 * 1024, 4);
    g.throughput(Throughput::Elements(x.len() as u64));
    for (name, a) in [("gelu", Act::GeluErf), ("gelu_new", Act::GeluTanh)] {
        let mut y = x.clone();
        // GELU maps its own output to finite values, so repeating it in place is fair.
        g.bench_function(name, |b| b.iter(|| act::apply(isa, a, black_box(&mut y))));
    }
    g.finish();
}

fn bench_attention(c: &mut Criterion) {
    let isa = Isa::detect();
    let mut g = c.benchmark_group("attention");
    g.sample_size(10);
    let shape = AttentionShape {
        batch: 8,
        seq: 128,
        heads: 12,
        head_dim: 32,
    };
    let tokens = shape.batch * shape.seq;
    let h = shape.heads * shape.head_dim;
    let qkv = data(tokens * 3 * h, 5);
    let mask = vec![0.0f32; tokens];
    let mut out = vec![0.0f32; tokens * h];
    g.throughput(Throughput::Elements(
        (4 * tokens * shape.seq * h) as u64, // QK^T and PV
    ));
    g.bench_function("f32 8x128 12 heads", |b| {
        b.iter(|| attention(isa, black_box(&qkv), &mask, shape, &mut out))
    });
    g.finish();
}

criterion_group!(benches, bench_gemm, bench_elementwise, bench_attention);
criterion_main!(benches);
