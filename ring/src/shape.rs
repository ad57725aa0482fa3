//! Shape arithmetic shared by every backend: output shapes and argument checks.
//!
//! Keeping these here means the CPU and CUDA backends reject exactly the same inputs with
//! exactly the same errors.

use crate::backend::{Conv2dParams, Pool2dParams};
use crate::error::{invalid, shape_err, Result};

/// Number of elements of a shape (1 for the scalar shape `[]`).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Number of elements of a shape, or an error when it overflows `usize`.
pub fn checked_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| invalid(op, format!("shape {shape:?} has too many elements")))
}

/// Checks that two shapes are equal.
pub fn check_same(op: &'static str, a: &[usize], b: &[usize]) -> Result<()> {
    if a == b {
        Ok(())
    } else {
        Err(shape_err(op, format!("{a:?} vs {b:?}")))
    }
}

/// Dimensions of a (possibly transposed, possibly batched) matrix product.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatmulDims {
    /// Batch count (1 for plain 2-D products).
    pub batch: usize,
    /// Rows of the result.
    pub m: usize,
    /// Inner dimension.
    pub k: usize,
    /// Columns of the result.
    pub n: usize,
}

impl MatmulDims {
    /// Shape of the result: `[m, n]` or `[batch, m, n]` following the operands' rank.
    pub fn out_shape(&self, rank: usize) -> Vec<usize> {
        if rank == 3 {
            vec![self.batch, self.m, self.n]
        } else {
            vec![self.m, self.n]
        }
    }
}

/// Dimensions of `op(a) · op(b)` where `op` transposes the last two axes when its flag is set.
///
/// Both operands are 2-D, or both are 3-D with the same batch size.
pub fn matmul_dims(a: &[usize], b: &[usize], ta: bool, tb: bool) -> Result<MatmulDims> {
    const OP: &str = "matmul";
    if a.len() != b.len() || !(a.len() == 2 || a.len() == 3) {
        return Err(shape_err(OP, format!("operands must both be 2-D or both 3-D, got {a:?} and {b:?}")));
    }
    let r = a.len();
    let batch = if r == 3 {
        if a[0] != b[0] {
            return Err(shape_err(OP, format!("batch sizes differ: {a:?} vs {b:?}")));
        }
        a[0]
    } else {
        1
    };
    let (m, ka) = if ta { (a[r - 1], a[r - 2]) } else { (a[r - 2], a[r - 1]) };
    let (kb, n) = if tb { (b[r - 1], b[r - 2]) } else { (b[r - 2], b[r - 1]) };
    if ka != kb {
        return Err(shape_err(
            OP,
            format!(
                "inner dimensions differ: {a:?}{} x {b:?}{}",
                if ta { "^T" } else { "" },
                if tb { "^T" } else { "" }
            ),
        ));
    }
    Ok(MatmulDims { batch, m, k: ka, n })
}

/// Geometry of a 2-D sliding window (convolution or pooling) over an NCHW input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Batch size.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Vertical stride.
    pub sh: usize,
    /// Horizontal stride.
    pub sw: usize,
    /// Zero padding on top and bottom.
    pub ph: usize,
    /// Zero padding left and right.
    pub pw: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl Window {
    /// Builds and checks the geometry of a `kh x kw` window over the NCHW `input` shape.
    pub fn new(
        op: &'static str,
        input: &[usize],
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Window> {
        if input.len() != 4 {
            return Err(shape_err(op, format!("input must be NCHW (4-D), got {input:?}")));
        }
        let (kh, kw) = kernel;
        let (sh, sw) = stride;
        let (ph, pw) = padding;
        if kh == 0 || kw == 0 || sh == 0 || sw == 0 {
            return Err(invalid(op, format!("kernel {kernel:?} and stride {stride:?} must be positive")));
        }
        let (h, w) = (input[2], input[3]);
        if h + 2 * ph < kh || w + 2 * pw < kw {
            return Err(shape_err(
                op,
                format!("kernel {kernel:?} larger than padded input {}x{}", h + 2 * ph, w + 2 * pw),
            ));
        }
        let oh = (h + 2 * ph - kh) / sh + 1;
        let ow = (w + 2 * pw - kw) / sw + 1;
        Ok(Window { n: input[0], c: input[1], h, w, kh, kw, sh, sw, ph, pw, oh, ow })
    }

    /// Rows of the im2col matrix: `c * kh * kw`.
    pub fn col_rows(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Columns of the im2col matrix: `n * oh * ow`.
    pub fn col_cols(&self) -> usize {
        self.n * self.oh * self.ow
    }

    /// The input shape `[n, c, h, w]`.
    pub fn input_shape(&self) -> Vec<usize> {
        vec![self.n, self.c, self.h, self.w]
    }
}

/// Geometry of a convolution of NCHW `input` with OIHW `weight`; returns the window and `O`.
pub fn conv2d_window(op: &'static str, input: &[usize], weight: &[usize], p: &Conv2dParams) -> Result<(Window, usize)> {
    if weight.len() != 4 {
        return Err(shape_err(op, format!("weight must be OIHW (4-D), got {weight:?}")));
    }
    if input.len() == 4 && input[1] != weight[1] {
        return Err(shape_err(
            op,
            format!("input channels {} != weight channels {} ({input:?} vs {weight:?})", input[1], weight[1]),
        ));
    }
    let win = Window::new(op, input, (weight[2], weight[3]), p.stride, p.padding)?;
    Ok((win, weight[0]))
}

/// Geometry of a pooling window over NCHW `input`.
pub fn pool2d_window(op: &'static str, input: &[usize], p: &Pool2dParams) -> Result<Window> {
    if p.padding.0 >= p.kernel.0.max(1) || p.padding.1 >= p.kernel.1.max(1) {
        return Err(invalid(op, format!("padding {:?} must be smaller than the kernel {:?}", p.padding, p.kernel)));
    }
    Window::new(op, input, p.kernel, p.stride, p.padding)
}

/// Checks an axis index against a rank.
pub fn check_axis(op: &'static str, shape: &[usize], axis: usize) -> Result<()> {
    if axis < shape.len() {
        Ok(())
    } else {
        Err(invalid(op, format!("axis {axis} out of range for shape {shape:?}")))
    }
}

/// Output shape of a permutation; checks that `perm` is a permutation of `0..rank`.
pub fn permute_shape(shape: &[usize], perm: &[usize]) -> Result<Vec<usize>> {
    const OP: &str = "permute";
    if perm.len() != shape.len() {
        return Err(invalid(OP, format!("permutation {perm:?} has wrong rank for shape {shape:?}")));
    }
    let mut seen = vec![false; perm.len()];
    for &p in perm {
        if p >= perm.len() || seen[p] {
            return Err(invalid(OP, format!("{perm:?} is not a permutation")));
        }
        seen[p] = true;
    }
    Ok(perm.iter().map(|&p| shape[p]).collect())
}

/// Checks that `shape` broadcasts to `target` (numpy rules, leading axes may be added).
pub fn check_broadcast(shape: &[usize], target: &[usize]) -> Result<()> {
    let ok =
        shape.len() <= target.len() && shape.iter().rev().zip(target.iter().rev()).all(|(&s, &t)| s == t || s == 1);
    if ok {
        Ok(())
    } else {
        Err(shape_err("broadcast_to", format!("{shape:?} does not broadcast to {target:?}")))
    }
}

/// Row-major strides of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1];
    }
    s
}

/// Output shape of a concatenation along `axis`.
pub fn concat_shape(shapes: &[&[usize]], axis: usize) -> Result<Vec<usize>> {
    const OP: &str = "concat";
    let first = shapes.first().ok_or_else(|| invalid(OP, "nothing to concatenate"))?;
    check_axis(OP, first, axis)?;
    let mut out = first.to_vec();
    out[axis] = 0;
    for s in shapes {
        let same_elsewhere =
            s.len() == first.len() && s.iter().zip(first.iter()).enumerate().all(|(i, (a, b))| i == axis || a == b);
        if !same_elsewhere {
            return Err(shape_err(OP, format!("{s:?} vs {first:?} along axis {axis}")));
        }
        out[axis] += s[axis];
    }
    Ok(out)
}

/// Checks a shift amount (below 64).
pub fn check_shift(bits: u32) -> Result<()> {
    if bits < 64 {
        Ok(())
    } else {
        Err(invalid("shift", format!("shift amount {bits} must be below 64")))
    }
}

/// `(outer, len, inner)` around `axis`: the products of the axes before it, its length, and the
/// product of the axes after it.
pub fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (shape[..axis].iter().product(), shape[axis], shape[axis + 1..].iter().product())
}

/// Output shape of a sum along `axis` (kept with length 1 when `keepdim`).
pub fn reduced_shape(op: &'static str, shape: &[usize], axis: usize, keepdim: bool) -> Result<Vec<usize>> {
    check_axis(op, shape, axis)?;
    let mut out = shape.to_vec();
    if keepdim {
        out[axis] = 1;
    } else {
        out.remove(axis);
    }
    Ok(out)
}

/// Checks `start..end` along `axis` and returns the output shape of the slice.
pub fn slice_shape(shape: &[usize], axis: usize, start: usize, end: usize) -> Result<Vec<usize>> {
    check_axis("slice", shape, axis)?;
    if start > end || end > shape[axis] {
        return Err(invalid("slice", format!("range {start}..{end} out of bounds for axis {axis} of {shape:?}")));
    }
    let mut out = shape.to_vec();
    out[axis] = end - start;
    Ok(out)
}

/// Checks that a tensor of `from` can be viewed as `to` (same element count).
pub fn check_reshape(from: &[usize], to: &[usize]) -> Result<()> {
    let n = checked_numel("reshape", to)?;
    if n != numel(from) {
        return Err(shape_err("reshape", format!("{from:?} ({} elements) to {to:?} ({n})", numel(from))));
    }
    Ok(())
}

/// Source strides, per output axis, of a permutation: `(output shape, strides)`.
pub fn permute_strides(shape: &[usize], perm: &[usize]) -> Result<(Vec<usize>, Vec<usize>)> {
    let out = permute_shape(shape, perm)?;
    let s = strides(shape);
    Ok((out, perm.iter().map(|&p| s[p]).collect()))
}

/// Source strides, per output axis, of broadcasting `shape` to `target` (0 on repeated axes).
pub fn broadcast_strides(shape: &[usize], target: &[usize]) -> Result<Vec<usize>> {
    check_broadcast(shape, target)?;
    checked_numel("broadcast_to", target)?;
    let src = strides(shape);
    let lead = target.len() - shape.len();
    Ok((0..target.len()).map(|d| if d < lead || shape[d - lead] == 1 { 0 } else { src[d - lead] }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_dims_transposes_and_errors() {
        let d = matmul_dims(&[3, 4], &[5, 4], false, true).unwrap();
        assert_eq!((d.m, d.k, d.n), (3, 4, 5));
        let d = matmul_dims(&[2, 4, 3], &[2, 4, 5], true, false).unwrap();
        assert_eq!((d.batch, d.m, d.k, d.n), (2, 3, 4, 5));
        assert!(matmul_dims(&[3, 4], &[5, 4], false, false).is_err());
        assert!(matmul_dims(&[3, 4], &[2, 4, 4], false, false).is_err());
    }

    #[test]
    fn conv_window_sizes() {
        let p = Conv2dParams { stride: (4, 4), padding: (2, 2) };
        let (w, o) = conv2d_window("conv2d", &[1, 3, 32, 32], &[64, 3, 11, 11], &p).unwrap();
        assert_eq!((o, w.oh, w.ow), (64, 7, 7));
        assert!(conv2d_window("conv2d", &[1, 4, 32, 32], &[64, 3, 11, 11], &p).is_err());
        assert!(conv2d_window("conv2d", &[1, 3, 4, 4], &[64, 3, 11, 11], &p).is_err());
    }

    #[test]
    fn broadcast_and_permute() {
        assert!(check_broadcast(&[3, 1], &[2, 3, 4]).is_ok());
        assert!(check_broadcast(&[3, 2], &[2, 3, 4]).is_err());
        assert_eq!(permute_shape(&[2, 3, 4], &[2, 0, 1]).unwrap(), vec![4, 2, 3]);
        assert!(permute_shape(&[2, 3, 4], &[0, 0, 1]).is_err());
        assert_eq!(strides(&[2, 3, 4]), vec![12, 4, 1]);
    }
}
