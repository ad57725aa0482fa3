//! The plaintext f64 twin: [`PlainTensor`] and [`PlainEngine`], the same layer computations as the
//! private engine in the clear, so that a private run can be checked against it.

use cryptgpu_ring::conv::{col2im, im2col};
use cryptgpu_ring::shape::{pool2d_window, Window};
use cryptgpu_ring::{Conv2dParams, Pool2dParams};

use crate::engine::{Engine, LayerGrads};
use crate::error::{NnError, Result};

/// A dense row-major f64 tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct PlainTensor {
    /// The shape.
    pub shape: Vec<usize>,
    /// The elements.
    pub data: Vec<f64>,
}

impl PlainTensor {
    /// A tensor; the data length must match the shape.
    pub fn new(shape: &[usize], data: Vec<f64>) -> Result<Self> {
        if shape.iter().product::<usize>() != data.len() {
            return Err(NnError::Shape(format!("{} values for shape {shape:?}", data.len())));
        }
        Ok(PlainTensor { shape: shape.to_vec(), data })
    }

    /// Zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        PlainTensor { shape: shape.to_vec(), data: vec![0.0; shape.iter().product()] }
    }

    /// Index of the largest value of each row of a `[N, C]` tensor (first one on ties).
    pub fn argmax_rows(&self) -> Vec<usize> {
        let c = self.shape.last().copied().unwrap_or(1).max(1);
        self.data
            .chunks(c)
            .map(|r| r.iter().enumerate().fold(0, |best, (i, &v)| if v > r[best] { i } else { best }))
            .collect()
    }
}

/// `C[m x n] = op(A) op(B)` with strided operands (row stride, column stride).
fn gemm(
    m: usize,
    k: usize,
    n: usize,
    a: &[f64],
    (ars, acs): (usize, usize),
    b: &[f64],
    (brs, bcs): (usize, usize),
) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    if m * n * k == 0 {
        return c;
    }
    // SAFETY: every index i*rs + p*cs (i < rows, p < cols) is within the slices, which the callers
    // size from the same m, k, n; c holds m*n elements with row stride n.
    unsafe {
        matrixmultiply::dgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            ars as isize,
            acs as isize,
            b.as_ptr(),
            brs as isize,
            bcs as isize,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    c
}

/// `[N, O, H*W]` from `[O, N*H*W]` and back.
fn swap01(data: &[f64], a: usize, b: usize, inner: usize) -> Vec<f64> {
    let mut out = vec![0.0; data.len()];
    for i in 0..a {
        for j in 0..b {
            out[(j * a + i) * inner..][..inner].copy_from_slice(&data[(i * b + j) * inner..][..inner]);
        }
    }
    out
}

/// The f64 engine.
#[derive(Debug, Clone, Copy, Default)]
pub struct PlainEngine;

fn window(op: &'static str, x: &[usize], w: &[usize], p: &Conv2dParams) -> Result<Window> {
    Ok(cryptgpu_ring::shape::conv2d_window(op, x, w, p)?.0)
}

impl PlainEngine {
    /// The convolution without its bias: what the private engine truncates.
    pub(crate) fn conv2d_product(&self, x: &PlainTensor, w: &PlainTensor, p: &Conv2dParams) -> Result<PlainTensor> {
        let win = window("conv2d", &x.shape, &w.shape, p)?;
        let o = w.shape[0];
        let cols = im2col(&x.data, &win);
        let (rows, ncols) = (win.col_rows(), win.col_cols());
        let y = gemm(o, rows, ncols, &w.data, (rows, 1), &cols, (ncols, 1));
        PlainTensor::new(&[win.n, o, win.oh, win.ow], swap01(&y, o, win.n, win.oh * win.ow))
    }

    /// `x W^T` without the bias: what the private engine truncates.
    pub(crate) fn linear_product(&self, x: &PlainTensor, w: &PlainTensor) -> Result<PlainTensor> {
        let (n, fin, fout) = (x.shape[0], w.shape[1], w.shape[0]);
        if x.shape[1] != fin {
            return Err(NnError::Shape(format!("linear: input {:?} vs weight {:?}", x.shape, w.shape)));
        }
        PlainTensor::new(&[n, fout], gemm(n, fin, fout, &x.data, (fin, 1), &w.data, (1, fin)))
    }
}

/// Adds a bias `[C]` along axis 1 of `y` (`[N, C, ...]`).
pub(crate) fn add_bias(mut y: PlainTensor, b: &PlainTensor) -> Result<PlainTensor> {
    let (c, inner) = channel_dims("bias", &y.shape)?;
    if b.shape != [c] {
        return Err(NnError::Shape(format!("bias {:?} for output {:?}", b.shape, y.shape)));
    }
    for (i, v) in y.data.iter_mut().enumerate() {
        *v += b.data[(i / inner) % c];
    }
    Ok(y)
}

impl Engine for PlainEngine {
    type T = PlainTensor;
    type ReluSaved = Vec<bool>;
    type PoolSaved = Vec<usize>;

    fn shape(&self, x: &PlainTensor) -> Vec<usize> {
        x.shape.clone()
    }

    fn conv2d(
        &mut self,
        x: &PlainTensor,
        w: &PlainTensor,
        b: Option<&PlainTensor>,
        p: &Conv2dParams,
    ) -> Result<PlainTensor> {
        let y = self.conv2d_product(x, w, p)?;
        match b {
            Some(b) => add_bias(y, b),
            None => Ok(y),
        }
    }

    fn conv2d_grads(
        &mut self,
        x: &PlainTensor,
        w: &PlainTensor,
        gy: &PlainTensor,
        p: &Conv2dParams,
        bias: bool,
    ) -> Result<LayerGrads<PlainTensor>> {
        let win = window("conv2d backward", &x.shape, &w.shape, p)?;
        let o = w.shape[0];
        let (rows, ncols, hw) = (win.col_rows(), win.col_cols(), win.oh * win.ow);
        let g = swap01(&gy.data, win.n, o, hw); // [O, N*oh*ow]
        let cols = im2col(&x.data, &win);
        let dw = gemm(o, ncols, rows, &g, (ncols, 1), &cols, (1, ncols));
        let dcols = gemm(rows, o, ncols, &w.data, (1, rows), &g, (ncols, 1));
        let dx = col2im(&dcols, &win);
        let db = bias.then(|| PlainTensor { shape: vec![o], data: g.chunks(ncols).map(|r| r.iter().sum()).collect() });
        Ok((PlainTensor::new(&x.shape, dx)?, PlainTensor::new(&w.shape, dw)?, db))
    }

    fn linear(&mut self, x: &PlainTensor, w: &PlainTensor, b: &PlainTensor) -> Result<PlainTensor> {
        add_bias(self.linear_product(x, w)?, b)
    }

    fn linear_grads(
        &mut self,
        x: &PlainTensor,
        w: &PlainTensor,
        gy: &PlainTensor,
    ) -> Result<(PlainTensor, PlainTensor, PlainTensor)> {
        let (n, fin, fout) = (x.shape[0], w.shape[1], w.shape[0]);
        let dx = gemm(n, fout, fin, &gy.data, (fout, 1), &w.data, (fin, 1));
        let dw = gemm(fout, n, fin, &gy.data, (1, fout), &x.data, (fin, 1));
        let mut db = vec![0.0; fout];
        for r in gy.data.chunks(fout) {
            for (d, v) in db.iter_mut().zip(r) {
                *d += v;
            }
        }
        Ok((PlainTensor::new(&x.shape, dx)?, PlainTensor::new(&w.shape, dw)?, PlainTensor::new(&[fout], db)?))
    }

    fn relu(&mut self, x: &PlainTensor) -> Result<(PlainTensor, Vec<bool>)> {
        // The derivative at 0 is 1, as the private DReLU (NOT msb) gives.
        let mask: Vec<bool> = x.data.iter().map(|&v| v >= 0.0).collect();
        let y = x.data.iter().map(|&v| v.max(0.0)).collect();
        Ok((PlainTensor::new(&x.shape, y)?, mask))
    }

    fn relu_backward(&mut self, gy: &PlainTensor, mask: &Vec<bool>) -> Result<PlainTensor> {
        PlainTensor::new(&gy.shape, gy.data.iter().zip(mask).map(|(&g, &m)| if m { g } else { 0.0 }).collect())
    }

    fn avg_pool(&mut self, x: &PlainTensor, p: &Pool2dParams) -> Result<PlainTensor> {
        let (win, cols) = pool_cols(x, p)?;
        let k = (p.kernel.0 * p.kernel.1) as f64;
        let m = win.col_cols();
        let data = (0..m).map(|j| (0..win.col_rows()).map(|r| cols[r * m + j]).sum::<f64>() / k).collect();
        PlainTensor::new(&[x.shape[0], x.shape[1], win.oh, win.ow], data)
    }

    fn avg_pool_backward(&mut self, gy: &PlainTensor, in_shape: &[usize], p: &Pool2dParams) -> Result<PlainTensor> {
        let win = pool2d_window("avg_pool backward", &[in_shape[0] * in_shape[1], 1, in_shape[2], in_shape[3]], p)?;
        let k = p.kernel.0 * p.kernel.1;
        let cols: Vec<f64> = (0..k).flat_map(|_| gy.data.iter().map(|&g| g / k as f64)).collect();
        PlainTensor::new(in_shape, col2im(&cols, &win))
    }

    fn max_pool(&mut self, x: &PlainTensor, p: &Pool2dParams) -> Result<(PlainTensor, Vec<usize>)> {
        let (win, cols) = pool_cols(x, p)?;
        let valid = pool_valid(&win);
        let m = win.col_cols();
        let mut out = Vec::with_capacity(m);
        let mut arg = Vec::with_capacity(m);
        for j in 0..m {
            let mut best: Option<usize> = None;
            for r in 0..win.col_rows() {
                if valid[r * m + j] && best.is_none_or(|b| cols[r * m + j] > cols[b * m + j]) {
                    best = Some(r);
                }
            }
            let b = best.ok_or_else(|| NnError::Shape("a pooling window lies entirely in the padding".into()))?;
            out.push(cols[b * m + j]);
            arg.push(b);
        }
        Ok((PlainTensor::new(&[x.shape[0], x.shape[1], win.oh, win.ow], out)?, arg))
    }

    fn max_pool_backward(
        &mut self,
        gy: &PlainTensor,
        arg: &Vec<usize>,
        in_shape: &[usize],
        p: &Pool2dParams,
    ) -> Result<PlainTensor> {
        let win = pool2d_window("max_pool backward", &[in_shape[0] * in_shape[1], 1, in_shape[2], in_shape[3]], p)?;
        let m = win.col_cols();
        let mut cols = vec![0.0; win.col_rows() * m];
        for (j, (&a, &g)) in arg.iter().zip(&gy.data).enumerate() {
            cols[a * m + j] = g;
        }
        PlainTensor::new(in_shape, col2im(&cols, &win))
    }

    fn affine_channels(&mut self, x: &PlainTensor, scale: &PlainTensor, shift: &PlainTensor) -> Result<PlainTensor> {
        let (c, hw) = (x.shape[1], x.shape[2] * x.shape[3]);
        let data =
            x.data.iter().enumerate().map(|(i, &v)| v * scale.data[(i / hw) % c] + shift.data[(i / hw) % c]).collect();
        PlainTensor::new(&x.shape, data)
    }

    fn global_avg_pool(&mut self, x: &PlainTensor) -> Result<PlainTensor> {
        let hw = x.shape[2] * x.shape[3];
        PlainTensor::new(&x.shape[..2], x.data.chunks(hw).map(|c| c.iter().sum::<f64>() / hw as f64).collect())
    }

    fn global_avg_pool_backward(&mut self, gy: &PlainTensor, in_shape: &[usize]) -> Result<PlainTensor> {
        let hw = in_shape[2] * in_shape[3];
        PlainTensor::new(in_shape, gy.data.iter().flat_map(|&g| std::iter::repeat_n(g / hw as f64, hw)).collect())
    }

    fn reshape(&mut self, x: &PlainTensor, shape: &[usize]) -> Result<PlainTensor> {
        PlainTensor::new(shape, x.data.clone())
    }

    fn add(&mut self, a: &PlainTensor, b: &PlainTensor) -> Result<PlainTensor> {
        zip_same("add", a, b, |x, y| x + y)
    }

    fn lincomb(&mut self, terms: &[(f64, &PlainTensor)]) -> Result<PlainTensor> {
        let (_, first) = terms.first().ok_or_else(|| NnError::Shape("lincomb of no terms".into()))?;
        let mut out = PlainTensor::zeros(&first.shape);
        for (c, x) in terms {
            if x.shape != first.shape {
                return Err(NnError::Shape(format!("lincomb: {:?} vs {:?}", x.shape, first.shape)));
            }
            out.data.iter_mut().zip(&x.data).for_each(|(o, v)| *o += c * v);
        }
        Ok(out)
    }

    fn softmax_ce_grad(&mut self, logits: &PlainTensor, onehot: &PlainTensor) -> Result<PlainTensor> {
        let c = logits.shape[1];
        let n = logits.shape[0] as f64;
        let p = softmax_rows(&logits.data, c);
        PlainTensor::new(&logits.shape, p.iter().zip(&onehot.data).map(|(p, y)| (p - y) / n).collect())
    }

    fn sub(&mut self, a: &PlainTensor, b: &PlainTensor) -> Result<PlainTensor> {
        zip_same("sub", a, b, |x, y| x - y)
    }

    fn mul(&mut self, a: &PlainTensor, b: &PlainTensor) -> Result<PlainTensor> {
        zip_same("mul", a, b, |x, y| x * y)
    }

    fn channel_sum(&mut self, x: &PlainTensor) -> Result<PlainTensor> {
        let (c, inner) = channel_dims("channel_sum", &x.shape)?;
        let mut out = vec![0.0; c];
        for (i, v) in x.data.iter().enumerate() {
            out[(i / inner) % c] += v;
        }
        PlainTensor::new(&[c], out)
    }

    fn broadcast_channels(&mut self, v: &PlainTensor, shape: &[usize]) -> Result<PlainTensor> {
        let (c, inner) = channel_dims("broadcast_channels", shape)?;
        if v.shape != [c] {
            return Err(NnError::Shape(format!("broadcast_channels: {:?} onto {shape:?}", v.shape)));
        }
        let n: usize = shape.iter().product();
        PlainTensor::new(shape, (0..n).map(|i| v.data[(i / inner) % c]).collect())
    }

    fn inv_sqrt(&mut self, x: &PlainTensor, eps: f64) -> Result<PlainTensor> {
        PlainTensor::new(&x.shape, x.data.iter().map(|v| 1.0 / (v + eps).sqrt()).collect())
    }
}

/// `f` elementwise over two tensors of one shape.
fn zip_same(op: &str, a: &PlainTensor, b: &PlainTensor, f: impl Fn(f64, f64) -> f64) -> Result<PlainTensor> {
    if a.shape != b.shape {
        return Err(NnError::Shape(format!("{op}: {:?} vs {:?}", a.shape, b.shape)));
    }
    PlainTensor::new(&a.shape, a.data.iter().zip(&b.data).map(|(&x, &y)| f(x, y)).collect())
}

/// Channels and values per channel position (product of the axes after 1) of `[N, C, ...]`.
fn channel_dims(op: &str, shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(NnError::Shape(format!("{op} expects [N, C, ...], got {shape:?}")));
    }
    Ok((shape[1], shape[2..].iter().product()))
}

/// Row-wise softmax of `[N, c]` data, with max-shift.
pub fn softmax_rows(data: &[f64], c: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(data.len());
    for r in data.chunks(c) {
        let m = r.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = r.iter().map(|v| (v - m).exp()).collect();
        let s: f64 = e.iter().sum();
        out.extend(e.iter().map(|v| v / s));
    }
    out
}

/// Mean cross-entropy of logits against one-hot labels.
pub fn cross_entropy(logits: &PlainTensor, onehot: &PlainTensor) -> f64 {
    let c = logits.shape[1];
    let p = softmax_rows(&logits.data, c);
    -p.iter().zip(&onehot.data).map(|(p, y)| y * p.max(1e-300).ln()).sum::<f64>() / logits.shape[0] as f64
}

/// Pooling windows of `[N, C, H, W]` as columns of the `[N*C, 1, H, W]` view.
fn pool_cols(x: &PlainTensor, p: &Pool2dParams) -> Result<(Window, Vec<f64>)> {
    let s = &x.shape;
    if s.len() != 4 {
        return Err(NnError::Shape(format!("pooling expects NCHW, got {s:?}")));
    }
    let win = pool2d_window("pool", &[s[0] * s[1], 1, s[2], s[3]], p)?;
    Ok((win, im2col(&x.data, &win)))
}

/// Which column entries of a pooling window are real input positions (not padding).
fn pool_valid(win: &Window) -> Vec<bool> {
    let ones = vec![1u64; win.n * win.h * win.w];
    im2col(&ones, win).into_iter().map(|v| v == 1).collect()
}
