//! Ring GEMM over Z_2^64 at 512 x 512 x 512: the blocked parallel CPU GEMM against a naive triple
//! loop and against f64 GEMM of the same size (matrixmultiply, the engine under ndarray).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use cryptgpu_kernels_cpu::gemm::{gemm, gemm_naive, MatRef};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn bench(c: &mut Criterion) {
    let s = 512;
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let a: Vec<u64> = (0..s * s).map(|_| rng.gen()).collect();
    let b: Vec<u64> = (0..s * s).map(|_| rng.gen()).collect();
    let af: Vec<f64> = (0..s * s).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let bf: Vec<f64> = (0..s * s).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let av = MatRef { data: &a, rs: s, cs: 1 };
    let bv = MatRef { data: &b, rs: s, cs: 1 };

    let mut g = c.benchmark_group("gemm_512");
    g.sample_size(10);
    g.throughput(Throughput::Elements((s * s * s) as u64));
    g.bench_function(BenchmarkId::new("ring_u64", "blocked_parallel"), |bch| {
        let mut out = vec![0u64; s * s];
        bch.iter(|| gemm(s, s, s, av, bv, &mut out, false));
    });
    g.bench_function(BenchmarkId::new("ring_u64", "naive_triple_loop"), |bch| {
        bch.iter(|| gemm_naive(s, s, s, av, bv));
    });
    g.bench_function(BenchmarkId::new("f64", "matrixmultiply"), |bch| {
        let mut out = vec![0f64; s * s];
        bch.iter(|| {
            // SAFETY: all three buffers hold s*s elements, row-major with row stride s.
            unsafe {
                matrixmultiply::dgemm(
                    s,
                    s,
                    s,
                    1.0,
                    af.as_ptr(),
                    s as isize,
                    1,
                    bf.as_ptr(),
                    s as isize,
                    1,
                    0.0,
                    out.as_mut_ptr(),
                    s as isize,
                    1,
                )
            }
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
