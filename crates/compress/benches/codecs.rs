//! Throughput of the codecs and fault injection, in weights per second on one core.
//!
//! Run with `cargo bench -p adalbert-compress` (pin to one core with `taskset -c 0`).
//! Every benchmark processes `N` weights; Criterion reports elements/s.

use std::hint::black_box;

use adalbert_compress::bitmask::BitmaskTensor;
use adalbert_compress::bits::PackedBits;
use adalbert_compress::faults::bitflip::inject_bitflips;
use adalbert_compress::faults::mlc::{LevelCoding, MlcModel, Threshold};
use adalbert_compress::formats::int::IntSpec;
use adalbert_compress::formats::{Codec, Format, ZeroCodes};
use adalbert_compress::prune::magnitude_prune;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const N: usize = 1 << 22;

/// Roughly Gaussian weights (sum of four uniforms), sd ~0.05, seed 1.
fn weights() -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    (0..N)
        .map(|_| {
            let s: f32 = (0..4)
                .map(|_| rng.next_u32() as f32 / u32::MAX as f32 - 0.5)
                .sum();
            s * 0.087
        })
        .collect()
}

fn bench_format(c: &mut Criterion, name: &str, format: Format, data: &[f32]) {
    let codec = Codec::fit(&format, data, 1024).expect("valid format");
    let mut codes = vec![0u32; data.len()];
    let mut out = vec![0f32; data.len()];
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(data.len() as u64));
    g.bench_function("encode", |b| {
        b.iter(|| {
            codec
                .encode(black_box(data), &mut codes)
                .expect("lengths match")
        })
    });
    codec.encode(data, &mut codes).expect("lengths match");
    g.bench_function("decode", |b| {
        b.iter(|| {
            codec
                .decode(black_box(&codes), &mut out)
                .expect("lengths match")
        })
    });
    g.finish();
}

fn formats(c: &mut Criterion) {
    let data = weights();
    let int8 = IntSpec {
        bits: 8,
        symmetric: true,
        per_channel: false,
    };
    bench_format(c, "int8", Format::Int(int8), &data);
    let int4pc = IntSpec {
        bits: 4,
        symmetric: false,
        per_channel: true,
    };
    bench_format(c, "int4-per-channel-asym", Format::Int(int4pc), &data);
    bench_format(
        c,
        "af8e3",
        Format::AdaptivFloat {
            bits: 8,
            exp_bits: 3,
        },
        &data,
    );
}

fn bitmask(c: &mut Criterion) {
    let mut data = weights();
    magnitude_prune(&mut data, 0.5).expect("valid sparsity");
    let codec = Codec::fit(
        &Format::AdaptivFloat {
            bits: 8,
            exp_bits: 3,
        },
        &data,
        1024,
    )
    .expect("valid");
    let mut codes = vec![0u32; N];
    codec.encode(&data, &mut codes).expect("lengths match");
    let zero = ZeroCodes::uniform(0, N);
    let mut g = c.benchmark_group("bitmask-8bit-50pct");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("encode", |b| {
        b.iter(|| BitmaskTensor::encode(black_box(&codes), 8, &zero).expect("valid"))
    });
    let t = BitmaskTensor::encode(&codes, 8, &zero).expect("valid");
    let mut out = vec![0u32; N];
    g.bench_function("decode", |b| {
        b.iter(|| t.decode(&zero, black_box(&mut out)).expect("lengths match"))
    });
    g.bench_function("dense-pack", |b| {
        b.iter(|| PackedBits::pack(black_box(&codes), 8))
    });
    let p = PackedBits::pack(&codes, 8);
    g.bench_function("dense-unpack", |b| {
        b.iter(|| p.unpack(8, black_box(&mut out)))
    });
    g.finish();
}

fn faults(c: &mut Criterion) {
    let codes: Vec<u32> = (0..N as u32)
        .map(|i| i.wrapping_mul(2_654_435_761) >> 24)
        .collect();
    let packed = PackedBits::pack(&codes, 8);
    let mut g = c.benchmark_group("faults-8bit-words");
    g.throughput(Throughput::Elements(N as u64));
    for bpc in [2u8, 3] {
        let model = MlcModel::rram(bpc, Threshold::Intersection).expect("valid bpc");
        g.bench_function(format!("mlc-{bpc}bpc"), |b| {
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            b.iter_batched_ref(
                || packed.clone(),
                |bits| model.inject(bits, LevelCoding::Gray, &mut rng),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.bench_function("bitflip-1e-6", |b| {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        b.iter_batched_ref(
            || packed.clone(),
            |bits| inject_bitflips(bits, 1e-6, &mut rng).expect("valid rate"),
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).warm_up_time(std::time::Duration::from_millis(300)).measurement_time(std::time::Duration::from_secs(1));
    targets = formats, bitmask, faults
}
criterion_main!(benches);
