//! Criterion micro-benches for regression tracking of the CPU building blocks under the paper's
//! figures: the ring convolution of Fig. 1a (one party's local product), AES-128-CTR share
//! generation (the PRG every zero-sharing and input uses), the three-party MSB (the core of ReLU,
//! Fig. 2), and one round of the in-process transport. The full private protocols with their
//! JSON and plots are `cryptgpu bench conv|relu|train|infer`; the TCP/TLS transport has its own
//! bench (`--bench transport`), the ring GEMM `--bench ring_gemm`.
//!
//! `cargo bench -p cryptgpu-benches --bench protocols`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_net::{LocalTransport, Round, Transport};
use cryptgpu_ring::{Backend, Conv2dParams, RingTensor};
use cryptgpu_sharing::{run_local, KeySource, RunConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random(shape: &[usize], seed: u64) -> RingTensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    RingTensor::from_fn(shape, |_| rng.gen())
}

/// Fig. 1a's layer at n = 128: 64 filters 11x11x3, stride 4, padding 2 (one local ring conv).
fn conv(c: &mut Criterion) {
    let be = CpuBackend;
    let mut g = c.benchmark_group("ring_conv2d");
    g.sample_size(10);
    for n in [64usize, 128] {
        let x = be.upload(&random(&[1, 3, n, n], 1)).unwrap();
        let w = be.upload(&random(&[64, 3, 11, 11], 2)).unwrap();
        let p = Conv2dParams { stride: (4, 4), padding: (2, 2) };
        let out = (n + 4 - 11) / 4 + 1;
        g.throughput(Throughput::Elements((out * out * 64 * 3 * 121) as u64));
        g.bench_function(BenchmarkId::new("fig1a_11x11x3x64_s4", n), |b| b.iter(|| be.conv2d(&x, &w, &p).unwrap()));
    }
    g.finish();
}

/// AES-128-CTR keystream into ring elements (AES-NI where present), 2^20 elements = 8 MB.
fn prg(c: &mut Criterion) {
    let be = CpuBackend;
    let n = 1 << 20;
    let mut g = c.benchmark_group("prg_aes128_ctr");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(8 * n as u64));
    g.bench_function("fill_1M_u64", |b| b.iter(|| be.prg_fill(&[7u8; 16], 3, 0, &[n]).unwrap()));
    g.finish();
}

/// The three-party MSB of 2^16 shared values (7 rounds), key setup and input included.
fn msb(c: &mut Criterion) {
    let n = 1 << 16;
    let x = random(&[n], 3);
    let config = RunConfig { keys: KeySource::InsecureSeed(1), ..RunConfig::default() };
    let mut g = c.benchmark_group("msb_three_parties");
    g.sample_size(10);
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function("lean_64k", |b| {
        b.iter(|| {
            run_local(CpuBackend, config, |p| {
                let xs = p.input(0, (p.id() == 0).then_some(&x), &[n])?;
                p.msb(&xs)
            })
            .unwrap()
        })
    });
    g.finish();
}

/// One round of the in-process transport: every party sends 1 MB to its next neighbour.
fn transport(c: &mut Criterion) {
    let words = 1 << 17;
    let mut g = c.benchmark_group("local_transport_round");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(3 * 8 * words as u64));
    g.bench_function("ring_1MB", |b| {
        b.iter(|| {
            let parties = LocalTransport::triple();
            std::thread::scope(|s| {
                for mut t in parties {
                    s.spawn(move || {
                        let round = Round { to_next: Some(vec![1u64; words]), from_prev: Some(words), ..Round::new() };
                        t.round(round).unwrap()
                    });
                }
            })
        })
    });
    g.finish();
}

criterion_group!(benches, conv, prg, msb, transport);
criterion_main!(benches);
