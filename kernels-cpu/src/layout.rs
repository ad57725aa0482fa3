//! Layout operations on dense row-major buffers: strided gathers, slices, concatenation, sums.

use rayon::prelude::*;

/// Elements per parallel task in the layout kernels.
const CHUNK: usize = 1 << 14;

/// Gathers `out[idx] = src[sum_d idx_d * strides[d]]` for every multi-index of `out_shape`.
/// Permutation and broadcasting are both such gathers (broadcast axes have stride 0).
pub fn strided_gather(src: &[u64], out_shape: &[usize], strides: &[usize]) -> Vec<u64> {
    let total: usize = out_shape.iter().product();
    let mut out = vec![0u64; total];
    if total == 0 {
        return out;
    }
    let rank = out_shape.len();
    if rank == 0 {
        out[0] = src[0];
        return out;
    }
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, chunk)| {
        // Multi-index of the chunk's first element.
        let mut idx = vec![0usize; rank];
        let mut rem = ci * CHUNK;
        for d in (0..rank).rev() {
            idx[d] = rem % out_shape[d];
            rem /= out_shape[d];
        }
        let mut off: usize = idx.iter().zip(strides).map(|(i, s)| i * s).sum();
        for v in chunk.iter_mut() {
            *v = src[off];
            // Odometer increment.
            for d in (0..rank).rev() {
                idx[d] += 1;
                off += strides[d];
                if idx[d] < out_shape[d] {
                    break;
                }
                off -= strides[d] * out_shape[d];
                idx[d] = 0;
            }
        }
    });
    out
}

/// Copies `[outer, len, inner]` blocks `start..end` along the middle axis.
pub fn slice(src: &[u64], outer: usize, len: usize, inner: usize, start: usize, end: usize) -> Vec<u64> {
    let w = (end - start) * inner;
    let mut out = vec![0u64; outer * w];
    if w == 0 {
        return out;
    }
    out.par_chunks_mut(w).enumerate().for_each(|(o, dst)| {
        dst.copy_from_slice(&src[(o * len + start) * inner..][..w]);
    });
    out
}

/// Concatenates `[outer, len_p, inner]` parts along the middle axis.
pub fn concat(parts: &[(&[u64], usize)], outer: usize, inner: usize) -> Vec<u64> {
    let total_len: usize = parts.iter().map(|p| p.1).sum();
    let row = total_len * inner;
    let mut out = vec![0u64; outer * row];
    if row == 0 {
        return out;
    }
    out.par_chunks_mut(row).enumerate().for_each(|(o, dst)| {
        let mut at = 0;
        for &(src, len) in parts {
            let w = len * inner;
            dst[at..at + w].copy_from_slice(&src[o * w..][..w]);
            at += w;
        }
    });
    out
}

/// Sums `[outer, len, inner]` over the middle axis into `[outer, inner]`.
pub fn sum_middle(src: &[u64], outer: usize, len: usize, inner: usize) -> Vec<u64> {
    let mut out = vec![0u64; outer * inner];
    if inner == 0 {
        return out;
    }
    out.par_chunks_mut(inner).enumerate().for_each(|(o, dst)| {
        for l in 0..len {
            let s = &src[(o * len + l) * inner..][..inner];
            for (d, &v) in dst.iter_mut().zip(s) {
                *d = d.wrapping_add(v);
            }
        }
    });
    out
}
