//! Launch geometry of every kernel, as [`CudaBackend`](crate::CudaBackend) launches them; public so
//! that the host-side tests run the kernels at exactly these grids and blocks. No kernel takes
//! dynamic shared memory.

use cudarc::driver::LaunchConfig;

/// Threads per block of the grid-stride kernels (a multiple of [`WARP`]).
pub const BLOCK: u32 = 256;
const _: () = assert!(BLOCK % WARP == 0, "pack_bits needs whole warps");
/// Upper bound on blocks per launch (kernels use grid-stride loops).
pub const MAX_BLOCKS: usize = 16 * 1024;
/// Threads per warp.
pub const WARP: u32 = 32;
/// Output tile of `ring_gemm_simt` (`SIMT_BM` x `SIMT_BN` in `gemm.cu`).
pub const SIMT_TILE: usize = 64;
/// Thread block of `ring_gemm_simt` (16 x 16, each thread computing a 4 x 4 sub-tile).
pub const SIMT_BLOCK: (u32, u32) = (16, 16);

/// Grid and block dimensions (x, y, z) of one launch.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Blocks per grid.
    pub grid: [u32; 3],
    /// Threads per block.
    pub block: [u32; 3],
}

impl From<Geometry> for LaunchConfig {
    fn from(g: Geometry) -> Self {
        let [gx, gy, gz] = g.grid;
        let [bx, by, bz] = g.block;
        LaunchConfig { grid_dim: (gx, gy, gz), block_dim: (bx, by, bz), shared_mem_bytes: 0 }
    }
}

/// A grid-stride kernel over `n` items: one thread per item, at most [`MAX_BLOCKS`] blocks.
pub fn grid_stride(n: usize) -> Geometry {
    let blocks = n.div_ceil(BLOCK as usize).clamp(1, MAX_BLOCKS) as u32;
    Geometry { grid: [blocks, 1, 1], block: [BLOCK, 1, 1] }
}

/// `pack_bits` of `n` elements: one warp per 64-bit output word.
pub fn pack_bits(n: usize) -> Geometry {
    grid_stride(n.div_ceil(64) * WARP as usize)
}

/// `aes_ctr_fill` of `n` elements: one thread per 128-bit block (two elements).
pub fn aes_ctr_fill(n: usize) -> Geometry {
    grid_stride(n.div_ceil(2))
}

/// `ring_gemm_simt` of an `m x n` output: one block per [`SIMT_TILE`]-square tile, columns along x.
pub fn ring_gemm_simt(m: usize, n: usize) -> Geometry {
    let tiles = |v: usize| v.div_ceil(SIMT_TILE) as u32;
    Geometry { grid: [tiles(n), tiles(m), 1], block: [SIMT_BLOCK.0, SIMT_BLOCK.1, 1] }
}
