//! Generic im2col and col2im over dense NCHW slices, with the column layout specified on
//! [`Backend::im2col`](crate::Backend::im2col): the CPU backend runs them on ring elements and the
//! plaintext twins of the `nn` crate on reals, so both unfold windows in exactly one way.

use crate::shape::Window;
use rayon::prelude::*;

/// An element im2col/col2im can move and sum: ring elements (wrapping) or reals (for the f64
/// plaintext twins of the `nn` crate).
pub trait Element: Copy + Default + Send + Sync {
    /// The sum used by col2im where windows overlap.
    fn add(self, other: Self) -> Self;
}

impl Element for u64 {
    fn add(self, other: Self) -> Self {
        self.wrapping_add(other)
    }
}

impl Element for f64 {
    fn add(self, other: Self) -> Self {
        self + other
    }
}

/// Unfolds `x` (NCHW, dense) into the `[c*kh*kw, n*oh*ow]` column matrix.
pub fn im2col<T: Element>(x: &[T], win: &Window) -> Vec<T> {
    let cols = win.col_cols();
    let mut out = vec![T::default(); win.col_rows() * cols];
    if cols == 0 {
        return out;
    }
    out.par_chunks_mut(cols).enumerate().for_each(|(r, row)| {
        let c = r / (win.kh * win.kw);
        let i = (r / win.kw) % win.kh;
        let j = r % win.kw;
        for n in 0..win.n {
            let plane = &x[(n * win.c + c) * win.h * win.w..][..win.h * win.w];
            for y in 0..win.oh {
                let dst = &mut row[(n * win.oh + y) * win.ow..][..win.ow];
                let iy = (y * win.sh + i) as isize - win.ph as isize;
                if iy < 0 || iy >= win.h as isize {
                    continue; // stays zero: padding
                }
                let src = &plane[iy as usize * win.w..][..win.w];
                for (xo, d) in dst.iter_mut().enumerate() {
                    let ix = (xo * win.sw + j) as isize - win.pw as isize;
                    if ix >= 0 && ix < win.w as isize {
                        *d = src[ix as usize];
                    }
                }
            }
        }
    });
    out
}

/// Folds a `[c*kh*kw, n*oh*ow]` column matrix back into NCHW, summing overlaps.
pub fn col2im<T: Element>(cols: &[T], win: &Window) -> Vec<T> {
    let plane_len = win.h * win.w;
    let mut out = vec![T::default(); win.n * win.c * plane_len];
    if plane_len == 0 {
        return out;
    }
    let ncols = win.col_cols();
    out.par_chunks_mut(plane_len).enumerate().for_each(|(nc, plane)| {
        let (n, c) = (nc / win.c, nc % win.c);
        for i in 0..win.kh {
            for j in 0..win.kw {
                let row = &cols[((c * win.kh + i) * win.kw + j) * ncols..][..ncols];
                for y in 0..win.oh {
                    let iy = (y * win.sh + i) as isize - win.ph as isize;
                    if iy < 0 || iy >= win.h as isize {
                        continue;
                    }
                    let src = &row[(n * win.oh + y) * win.ow..][..win.ow];
                    let dst = &mut plane[iy as usize * win.w..][..win.w];
                    for (xo, &v) in src.iter().enumerate() {
                        let ix = (xo * win.sw + j) as isize - win.pw as isize;
                        if ix >= 0 && ix < win.w as isize {
                            dst[ix as usize] = dst[ix as usize].add(v);
                        }
                    }
                }
            }
        }
    });
    out
}
