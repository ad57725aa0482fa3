//! The kernels that use shared memory, barriers and warp ballots (`ring_gemm_simt`, `aes_ctr_fill`,
//! `pack_bits`), compiled for the host through the shim, against the CPU backend bit for bit at the
//! geometry `kernels-cuda` launches them with, over partial and full tiles and blocks; and the
//! grid-stride kernels over a small odd grid, so that their loops take several turns. The shim's
//! warp ballots are checked at other whole-warp geometries, and a ballot over a partial warp fails.

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_kernels_cuda::abi::{binary_code, Dims};
use cryptgpu_kernels_cuda::geometry::{self, Geometry, SIMT_TILE};
use cryptgpu_ring::shape::Window;
use cryptgpu_ring::{Backend, BinaryOp, RingTensor};
use cryptgpu_tests::host;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn rand_vec(rng: &mut ChaCha8Rng, n: usize) -> Vec<u64> {
    (0..n).map(|_| rng.gen()).collect()
}

fn t(shape: &[usize], v: Vec<u64>) -> RingTensor {
    RingTensor::new(shape, v).unwrap()
}

#[test]
fn simt_gemm_matches_the_cpu_on_partial_and_full_tiles() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let be = CpuBackend;
    let tile = SIMT_TILE;
    // (m, k, n): single elements, exact tiles, one past and one short of a tile, several tiles.
    for (m, k, n) in [(1, 1, 1), (tile, 16, tile), (tile + 1, 17, tile - 1), (70, 33, 2 * tile + 1), (3, 100, 130)] {
        for special in [None, Some(u64::MAX)] {
            let a: Vec<u64> = (0..m * k).map(|_| special.unwrap_or_else(|| rng.gen())).collect();
            let b: Vec<u64> = (0..k * n).map(|_| special.unwrap_or_else(|| rng.gen())).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                // The operand strides CudaBackend::matmul passes.
                let ast = if ta { (1, m) } else { (k, 1) };
                let bst = if tb { (1, k) } else { (n, 1) };
                let a_shape = if ta { [k, m] } else { [m, k] };
                let b_shape = if tb { [n, k] } else { [k, n] };
                let want = be.matmul(&t(&a_shape, a.clone()), &t(&b_shape, b.clone()), ta, tb).unwrap();
                let got = host::ring_gemm_simt(m, k, n, &a, ast, &b, bst);
                assert_eq!(got, want.into_data(), "{m}x{k}x{n} ta={ta} tb={tb} special {special:?}");
            }
        }
    }
}

#[test]
fn aes_keystream_matches_prg_fill() {
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let be = CpuBackend;
    let nist = [0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c];
    let keys = [nist, [0x5a; 16], rng.gen(), rng.gen()];
    // Lengths: odd, within one block, exactly one and two blocks of threads (two elements each),
    // and partial last blocks; counters that carry into the stream word mid-launch.
    let block = 2 * geometry::BLOCK as usize;
    let draws = [
        (0u64, 0u64, 1usize),
        (1, 2, 3),
        (0xf0f1f2f3f4f5f6f7, 0xf8f9fafbfcfdfeff, block),
        (7, u64::MAX - 300, block + 1),
        (u64::MAX, u64::MAX, 2 * block),
        (3, 1 << 40, 4 * block + 37),
    ];
    // Consecutive launches use different keys, so a kernel reading the shared round keys before
    // they are set would see the previous key's.
    for &(stream, counter, n) in &draws {
        for key in &keys {
            let got = host::aes_ctr_fill(key, stream, counter, n);
            let want = be.prg_fill(key, stream, counter, &[n]).unwrap().into_data();
            assert_eq!(got, want, "key {key:02x?} stream {stream} counter {counter} n {n}");
        }
    }
}

#[test]
fn pack_bits_matches_the_cpu() {
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let be = CpuBackend;
    // One warp per word and 8 warps per block: partial words, a partial and a full block, and
    // 40 blocks for 20000 elements.
    let lengths = [1usize, 31, 32, 33, 63, 64, 65, 127, 129, 511, 512, 513, 4096, 4097, 20000];
    for n in lengths {
        for pattern in 0..3 {
            let x: Vec<u64> = match pattern {
                0 => rand_vec(&mut rng, n),
                1 => vec![u64::MAX; n],
                _ => (0..n as u64).map(|i| (i * 0x9e37_79b9) ^ (i >> 1)).collect(),
            };
            let want = be.pack_bits(&t(&[n], x.clone())).unwrap().into_data();
            assert_eq!(host::pack_bits(&x), want, "n {n} pattern {pattern}");
            assert_eq!(host::with_small_grid(|| host::pack_bits(&x)), want, "small grid, n {n} pattern {pattern}");
            let bits: Vec<u64> = x.iter().map(|v| v & 1).collect();
            assert_eq!(host::unpack_bits(&want, n), bits, "unpack n {n}");
        }
    }
    let g = geometry::pack_bits(20000);
    assert_eq!((g.grid, g.block), ([40, 1, 1], [geometry::BLOCK, 1, 1]));
}

#[test]
fn pack_bits_ballots_at_any_whole_warp_geometry() {
    let mut rng = ChaCha8Rng::seed_from_u64(15);
    let x = rand_vec(&mut rng, 3000);
    let want = CpuBackend.pack_bits(&t(&[x.len()], x.clone())).unwrap().into_data();
    for (blocks, threads) in [(1, 32), (5, 96), (2, 1024)] {
        let g = Geometry { grid: [blocks, 1, 1], block: [threads, 1, 1] };
        assert_eq!(host::pack_bits_at(g, &x), want, "{blocks} blocks of {threads}");
    }
}

#[test]
#[should_panic(expected = "deadlock")]
fn a_ballot_over_a_partial_warp_is_a_deadlock() {
    host::pack_bits_at(Geometry { grid: [1, 1, 1], block: [40, 1, 1] }, &[1; 100]);
}

#[test]
fn grid_stride_kernels_take_several_turns_on_a_small_grid() {
    let mut rng = ChaCha8Rng::seed_from_u64(14);
    let be = CpuBackend;
    host::with_small_grid(|| {
        let n = 1000;
        let (x, y) = (rand_vec(&mut rng, n), rand_vec(&mut rng, n));
        let (xt, yt) = (t(&[n], x.clone()), t(&[n], y.clone()));
        let want = be.binary(BinaryOp::Mul, &xt, &yt).unwrap().into_data();
        assert_eq!(host::ew_binary(binary_code(BinaryOp::Mul), &x, &y), want);
        assert_eq!(host::bit_extract(&x, 5), be.bit_extract(&xt, 5).unwrap().into_data());
        let shape = [4, 5, 50];
        let got = host::gather_strided(&x, Dims::new(&[50, 5, 4], &[1, 50, 250]).unwrap());
        assert_eq!(got, be.permute(&t(&shape, x.clone()), &[2, 1, 0]).unwrap().into_data());
        assert_eq!(host::sum_middle(&x, 4, 5, 50), be.sum_axis(&t(&shape, x.clone()), 1, false).unwrap().into_data());
        let xs = [2, 2, 9, 7];
        let img = rand_vec(&mut rng, xs.iter().product());
        let win = Window::new("test", &xs, (3, 2), (2, 1), (1, 1)).unwrap();
        let cols = host::im2col(&img, &win);
        assert_eq!(cols, be.im2col(&t(&xs, img), (3, 2), (2, 1), (1, 1)).unwrap().into_data());
        let want = be.col2im(&t(&[win.col_rows(), win.col_cols()], cols.clone()), &xs, (3, 2), (2, 1), (1, 1));
        assert_eq!(host::col2im(&cols, &win), want.unwrap().into_data());
        let key = [7; 16];
        assert_eq!(host::aes_ctr_fill(&key, 1, 2, 555), be.prg_fill(&key, 1, 2, &[555]).unwrap().into_data());
    });
}
