//! The plaintext f64 twin: [`PlainTensor`] and [`PlainEngine`], the same layer computations as the
//! private engine in the clear, so that a private run can be checked against it.
//!
//! The numerics are `ndarray`'s: matrix products are `dot` (matrixmultiply's f64 GEMM, with
//! transposes as strided views), sums and means are axis reductions, and biases and per-channel
//! scales broadcast along axis 1 of an `[N, C, inner]` view. Two things stay on slices, on purpose:
//!
//! * A tensor keeps its shape and row-major data as plain fields, the layout that the fixed-point
//!   codec, the weight files and every caller use; [`PlainTensor::view`] borrows it as an array
//!   and `From<Array>` takes an array back (without a copy when it is in standard layout).
//! * Convolution and pooling windows are unfolded by ring's generic [`im2col`]/[`col2im`] over
//!   slices: the one definition of the window layout, shared with the backends of the private
//!   engine, so that both engines see the same windows (ndarray's window iterators have neither
//!   padding nor the column order). Routing a max-pool gradient back to its arg-max is a scatter,
//!   which stays an indexed loop.
//!
//! Rounding: products, elementwise maps and broadcasts give the bits of the hand-written loops they
//! replaced. Reductions along a contiguous axis (the bias gradient of a convolution, channel sums,
//! global average pooling, the softmax denominator, the cross-entropy) sum in ndarray's order
//! (several partial sums), so they agree with sequential sums only to within f64 rounding;
//! reductions across rows (linear bias gradients, average pooling) still add row after row.

use cryptgpu_ring::conv::{col2im, im2col};
use cryptgpu_ring::shape::{pool2d_window, Window};
use cryptgpu_ring::{Conv2dParams, Pool2dParams};
use ndarray::{
    Array, Array1, Array2, ArrayView, ArrayView2, ArrayView3, ArrayViewD, ArrayViewMut1, Axis, Dimension, IxDyn,
    ShapeBuilder, ShapeError, StrideShape, Zip,
};

use crate::engine::{pool_inv_counts, Engine, LayerGrads, Product};
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

    /// The tensor as an ndarray view (fails when the data length does not match the shape).
    pub fn view(&self) -> Result<ArrayViewD<'_, f64>> {
        view(&self.data, IxDyn(&self.shape))
    }

    /// Rows `range` of the first axis (`[N, ...]` to `[range.len(), ...]`).
    pub fn rows(&self, range: std::ops::Range<usize>) -> Result<PlainTensor> {
        let n = self.shape.first().copied().unwrap_or(0);
        if range.start > range.end || range.end > n {
            return Err(NnError::Shape(format!("rows {range:?} of a tensor of shape {:?}", self.shape)));
        }
        let row: usize = self.shape[1..].iter().product();
        let mut shape = self.shape.clone();
        shape[0] = range.len();
        Ok(PlainTensor { shape, data: self.data[range.start * row..range.end * row].to_vec() })
    }

    /// The largest absolute difference between the elements of two tensors of one shape.
    pub fn max_abs_diff(&self, other: &PlainTensor) -> Result<f64> {
        if self.shape != other.shape {
            return Err(NnError::Shape(format!("compares {:?} with {:?}", self.shape, other.shape)));
        }
        Ok(self.data.iter().zip(&other.data).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max))
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

impl<D: Dimension> From<Array<f64, D>> for PlainTensor {
    /// Takes the array's buffer when it is in standard (row-major) layout, else copies.
    fn from(a: Array<f64, D>) -> Self {
        let shape = a.shape().to_vec();
        let data = if a.is_standard_layout() {
            let len = a.len();
            let (mut data, offset) = a.into_raw_vec_and_offset();
            data.drain(..offset.unwrap_or(0));
            data.truncate(len);
            data
        } else {
            let mut out = Array::zeros(a.raw_dim());
            out.assign(&a);
            return out.into();
        };
        PlainTensor { shape, data }
    }
}

fn shape_err(e: ShapeError) -> NnError {
    NnError::Shape(e.to_string())
}

/// `data` viewed with `shape` (row-major).
fn view<D: Dimension>(data: &[f64], shape: impl Into<StrideShape<D>>) -> Result<ArrayView<'_, f64, D>> {
    ArrayView::from_shape(shape, data).map_err(shape_err)
}

/// An array as a tensor of the given shape (same number of elements).
fn shaped<D: Dimension>(shape: &[usize], a: Array<f64, D>) -> Result<PlainTensor> {
    PlainTensor::new(shape, PlainTensor::from(a).data)
}

/// A standard-layout array of `shape` filled from `v`, broadcast (a view of any strides).
fn filled<Sh: ShapeBuilder, E: Dimension>(shape: Sh, v: ArrayView<'_, f64, E>) -> Array<f64, Sh::Dim> {
    let mut out = Array::zeros(shape);
    out.assign(&v);
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
        let (rows, ncols) = (win.col_rows(), win.col_cols());
        let cols = im2col(&x.data, &win);
        let y = view(&w.data, (o, rows))?.dot(&view(&cols, (rows, ncols))?); // [O, N*oh*ow]
        let y = y.to_shape((o, win.n, win.oh, win.ow)).map_err(shape_err)?;
        Ok(filled((win.n, o, win.oh, win.ow), y.view().permuted_axes([1, 0, 2, 3])).into())
    }

    /// `x W^T` without the bias: what the private engine truncates.
    pub(crate) fn linear_product(&self, x: &PlainTensor, w: &PlainTensor) -> Result<PlainTensor> {
        let (n, fin, fout) = (x.shape[0], w.shape[1], w.shape[0]);
        if x.shape[1] != fin {
            return Err(NnError::Shape(format!("linear: input {:?} vs weight {:?}", x.shape, w.shape)));
        }
        Ok(view(&x.data, (n, fin))?.dot(&view(&w.data, (fout, fin))?.t()).into())
    }
}

/// `x` as `[N, C, inner]` (`inner` the product of the axes after 1).
fn channel_view<'a>(op: &str, x: &'a [f64], shape: &[usize]) -> Result<ArrayView3<'a, f64>> {
    let (c, inner) = channel_dims(op, shape)?;
    view(x, (shape[0], c, inner))
}

/// A per-channel vector `[C]` as a `[C, 1]` column that broadcasts over `[N, C, inner]`.
fn channel_column<'a>(op: &str, v: &'a PlainTensor, c: usize) -> Result<ArrayView2<'a, f64>> {
    if v.shape != [c] {
        return Err(NnError::Shape(format!("{op}: {:?} for {c} channels", v.shape)));
    }
    view(&v.data, (c, 1))
}

/// Adds a bias `[C]` along axis 1 of `y` (`[N, C, ...]`).
pub(crate) fn add_bias(mut y: PlainTensor, b: &PlainTensor) -> Result<PlainTensor> {
    let (c, inner) = channel_dims("bias", &y.shape)?;
    let col = channel_column("bias", b, c)?;
    let mut y3 = ndarray::ArrayViewMut3::from_shape((y.shape[0], c, inner), &mut y.data).map_err(shape_err)?;
    y3 += &col;
    Ok(y)
}

impl Engine for PlainEngine {
    type T = PlainTensor;
    type Held = PlainTensor;
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
        let (rows, ncols) = (win.col_rows(), win.col_cols());
        let gy = view(&gy.data, (win.n, o, win.oh * win.ow))?;
        let g = filled((o, win.n, win.oh * win.ow), gy.permuted_axes([1, 0, 2]));
        let g = g.into_shape_with_order((o, ncols)).map_err(shape_err)?; // [O, N*oh*ow]
        let cols = im2col(&x.data, &win);
        let dw = g.dot(&view(&cols, (rows, ncols))?.t());
        let dcols = view(&w.data, (o, rows))?.t().dot(&g);
        let dx = col2im(&PlainTensor::from(dcols).data, &win);
        let db = bias.then(|| g.sum_axis(Axis(1)).into());
        Ok((PlainTensor::new(&x.shape, dx)?, shaped(&w.shape, dw)?, db))
    }

    fn linear(&mut self, x: &PlainTensor, w: &PlainTensor, b: Option<&PlainTensor>) -> Result<PlainTensor> {
        let y = self.linear_product(x, w)?;
        match b {
            Some(b) => add_bias(y, b),
            None => Ok(y),
        }
    }

    fn linear_grads(
        &mut self,
        x: &PlainTensor,
        w: &PlainTensor,
        gy: &PlainTensor,
        bias: bool,
    ) -> Result<LayerGrads<PlainTensor>> {
        let (n, fin, fout) = (x.shape[0], w.shape[1], w.shape[0]);
        let (x2, w2, gy) = (view(&x.data, (n, fin))?, view(&w.data, (fout, fin))?, view(&gy.data, (n, fout))?);
        Ok((gy.dot(&w2).into(), gy.t().dot(&x2).into(), bias.then(|| gy.sum_axis(Axis(0)).into())))
    }

    fn relu(&mut self, x: &PlainTensor) -> Result<(PlainTensor, Vec<bool>)> {
        // The derivative at 0 is 1, as the private DReLU (NOT msb) gives.
        let mask: Vec<bool> = x.data.iter().map(|&v| v >= 0.0).collect();
        Ok((x.view()?.mapv(|v| v.max(0.0)).into(), mask))
    }

    fn product(&mut self, layer: &Product<'_, PlainTensor>) -> Result<PlainTensor> {
        layer.apply(self)
    }

    fn product_held(&mut self, layer: &Product<'_, PlainTensor>) -> Result<PlainTensor> {
        layer.apply(self)
    }

    fn relu_held(&mut self, held: PlainTensor) -> Result<(PlainTensor, Vec<bool>)> {
        self.relu(&held)
    }

    fn relu_backward(&mut self, gy: &PlainTensor, mask: &Vec<bool>) -> Result<PlainTensor> {
        let mask = ArrayView::from_shape(IxDyn(&gy.shape), &mask[..]).map_err(shape_err)?;
        Ok(Zip::from(&gy.view()?).and(&mask).map_collect(|&g, &m| if m { g } else { 0.0 }).into())
    }

    fn avg_pool(&mut self, x: &PlainTensor, p: &Pool2dParams, count_include_pad: bool) -> Result<PlainTensor> {
        let (win, cols) = pool_cols(x, p)?;
        // The window's positions are the rows; padding counts, as zeros.
        let mean = view(&cols, (win.col_rows(), win.col_cols()))?
            .mean_axis(Axis(0))
            .ok_or_else(|| NnError::Shape("an empty pooling window".into()))?;
        let mut y = shaped(&[x.shape[0], x.shape[1], win.oh, win.ow], mean)?;
        if let Some(c) = real_divisors(&x.shape, p, count_include_pad) {
            let k = (p.kernel.0 * p.kernel.1) as f64;
            y.data.iter_mut().zip(c.iter().cycle()).for_each(|(v, c)| *v *= k * c);
        }
        Ok(y)
    }

    fn avg_pool_backward(
        &mut self,
        gy: &PlainTensor,
        in_shape: &[usize],
        p: &Pool2dParams,
        count_include_pad: bool,
    ) -> Result<PlainTensor> {
        let win = pool2d_window("avg_pool backward", &[in_shape[0] * in_shape[1], 1, in_shape[2], in_shape[3]], p)?;
        let k = p.kernel.0 * p.kernel.1;
        let mut g = view(&gy.data, win.col_cols())?.mapv(|g| g / k as f64);
        if let Some(c) = real_divisors(in_shape, p, count_include_pad) {
            g.iter_mut().zip(c.iter().cycle()).for_each(|(v, c)| *v *= k as f64 * c);
        }
        let cols = filled((k, win.col_cols()), g.view());
        PlainTensor::new(in_shape, col2im(&PlainTensor::from(cols).data, &win))
    }

    fn pad2d(&mut self, x: &PlainTensor, pads: [usize; 4]) -> Result<PlainTensor> {
        let [n, c, h, w] = x.shape[..] else {
            return Err(NnError::Shape(format!("pad2d expects [N, C, H, W], got {:?}", x.shape)));
        };
        let (oh, ow) = (h + pads[0] + pads[2], w + pads[1] + pads[3]);
        let mut out = Array::zeros((n, c, oh, ow));
        out.slice_mut(ndarray::s![.., .., pads[0]..pads[0] + h, pads[1]..pads[1] + w])
            .assign(&view(&x.data, (n, c, h, w))?);
        Ok(out.into())
    }

    fn crop2d(&mut self, x: &PlainTensor, pads: [usize; 4]) -> Result<PlainTensor> {
        match x.shape[..] {
            [n, c, h, w] if h >= pads[0] + pads[2] && w >= pads[1] + pads[3] => {
                let v = view(&x.data, (n, c, h, w))?;
                let v = v.slice(ndarray::s![.., .., pads[0]..h - pads[2], pads[1]..w - pads[3]]);
                Ok(filled(v.raw_dim(), v).into())
            }
            _ => Err(NnError::Shape(format!("crop2d of {pads:?} from {:?}", x.shape))),
        }
    }

    fn max_pool(&mut self, x: &PlainTensor, p: &Pool2dParams) -> Result<(PlainTensor, Vec<usize>)> {
        let (win, cols) = pool_cols(x, p)?;
        let (rows, m) = (win.col_rows(), win.col_cols());
        let valid = pool_valid(&win);
        let valid = ArrayView2::from_shape((rows, m), &valid).map_err(shape_err)?;
        let mut best = Array1::<f64>::zeros(m);
        let mut arg = vec![usize::MAX; m]; // MAX: no real input position seen yet
        for (r, (vals, ok)) in view(&cols, (rows, m))?.outer_iter().zip(valid.outer_iter()).enumerate() {
            Zip::from(&mut best).and(ArrayViewMut1::from(&mut arg[..])).and(&vals).and(&ok).for_each(
                |b, a, &v, &ok| {
                    if ok && (*a == usize::MAX || v > *b) {
                        (*b, *a) = (v, r);
                    }
                },
            );
        }
        if arg.contains(&usize::MAX) {
            return Err(NnError::Shape("a pooling window lies entirely in the padding".into()));
        }
        Ok((shaped(&[x.shape[0], x.shape[1], win.oh, win.ow], best)?, arg))
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
        let x3 = channel_view("affine_channels", &x.data, &x.shape)?;
        let c = x3.dim().1;
        let (scale, shift) =
            (channel_column("affine_channels", scale, c)?, channel_column("affine_channels", shift, c)?);
        let y = &x3 * &scale + shift;
        shaped(&x.shape, y)
    }

    fn global_avg_pool(&mut self, x: &PlainTensor) -> Result<PlainTensor> {
        let mean = channel_view("global_avg_pool", &x.data, &x.shape)?
            .mean_axis(Axis(2))
            .ok_or_else(|| NnError::Shape(format!("global_avg_pool of empty planes {:?}", x.shape)))?;
        Ok(mean.into())
    }

    fn global_avg_pool_backward(&mut self, gy: &PlainTensor, in_shape: &[usize]) -> Result<PlainTensor> {
        let (c, hw) = channel_dims("global_avg_pool backward", in_shape)?;
        let g = view(&gy.data, (in_shape[0], c, 1))?.mapv(|g| g / hw as f64);
        shaped(in_shape, filled((in_shape[0], c, hw), g.view()))
    }

    fn reshape(&mut self, x: &PlainTensor, shape: &[usize]) -> Result<PlainTensor> {
        PlainTensor::new(shape, x.data.clone())
    }

    fn add(&mut self, a: &PlainTensor, b: &PlainTensor) -> Result<PlainTensor> {
        zip_same("add", a, b, |x, y| x + y)
    }

    fn lincomb(&mut self, terms: &[(f64, &PlainTensor)]) -> Result<PlainTensor> {
        let (_, first) = terms.first().ok_or_else(|| NnError::Shape("lincomb of no terms".into()))?;
        let mut out = Array::zeros(IxDyn(&first.shape));
        for (c, x) in terms {
            if x.shape != first.shape {
                return Err(NnError::Shape(format!("lincomb: {:?} vs {:?}", x.shape, first.shape)));
            }
            out.scaled_add(*c, &x.view()?);
        }
        Ok(out.into())
    }

    fn softmax_ce_grad(&mut self, logits: &PlainTensor, onehot: &PlainTensor) -> Result<PlainTensor> {
        let (logits2, onehot2) = rows_pair("softmax_ce_grad", logits, onehot)?;
        let n = logits2.nrows() as f64;
        Ok(((softmax_rows(logits2) - onehot2) / n).into())
    }

    fn sub(&mut self, a: &PlainTensor, b: &PlainTensor) -> Result<PlainTensor> {
        zip_same("sub", a, b, |x, y| x - y)
    }

    fn mul(&mut self, a: &PlainTensor, b: &PlainTensor) -> Result<PlainTensor> {
        zip_same("mul", a, b, |x, y| x * y)
    }

    fn channel_sum(&mut self, x: &PlainTensor) -> Result<PlainTensor> {
        let x3 = channel_view("channel_sum", &x.data, &x.shape)?;
        Ok(x3.sum_axis(Axis(2)).sum_axis(Axis(0)).into())
    }

    fn broadcast_channels(&mut self, v: &PlainTensor, shape: &[usize]) -> Result<PlainTensor> {
        let (c, inner) = channel_dims("broadcast_channels", shape)?;
        shaped(shape, filled((shape[0], c, inner), channel_column("broadcast_channels", v, c)?))
    }

    fn inv_sqrt(&mut self, x: &PlainTensor, eps: f64) -> Result<PlainTensor> {
        Ok(x.view()?.mapv(|v| 1.0 / (v + eps).sqrt()).into())
    }
}

/// `f` elementwise over two tensors of one shape.
fn zip_same(op: &str, a: &PlainTensor, b: &PlainTensor, f: impl Fn(f64, f64) -> f64) -> Result<PlainTensor> {
    if a.shape != b.shape {
        return Err(NnError::Shape(format!("{op}: {:?} vs {:?}", a.shape, b.shape)));
    }
    Ok(Zip::from(&a.view()?).and(&b.view()?).map_collect(|&x, &y| f(x, y)).into())
}

/// Channels and values per channel position (product of the axes after 1) of `[N, C, ...]`.
fn channel_dims(op: &str, shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(NnError::Shape(format!("{op} expects [N, C, ...], got {shape:?}")));
    }
    Ok((shape[1], shape[2..].iter().product()))
}

/// Logits and one-hot labels, both `[N, C]`, as matrices.
fn rows_pair<'a>(
    op: &str,
    logits: &'a PlainTensor,
    onehot: &'a PlainTensor,
) -> Result<(ArrayView2<'a, f64>, ArrayView2<'a, f64>)> {
    match logits.shape[..] {
        [n, c] if onehot.shape == logits.shape => Ok((view(&logits.data, (n, c))?, view(&onehot.data, (n, c))?)),
        _ => Err(NnError::Shape(format!("{op}: logits {:?} and labels {:?}", logits.shape, onehot.shape))),
    }
}

/// Row-wise softmax of `[N, C]` logits, with max-shift.
pub fn softmax_rows(logits: ArrayView2<'_, f64>) -> Array2<f64> {
    let mut out = logits.to_owned();
    for mut r in out.rows_mut() {
        let m = r.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        r.mapv_inplace(|v| (v - m).exp());
        let s = r.sum();
        r /= s;
    }
    out
}

/// Mean cross-entropy of `[N, C]` logits against one-hot labels (NaN unless both are `[N, C]`).
pub fn cross_entropy(logits: &PlainTensor, onehot: &PlainTensor) -> f64 {
    let Ok((logits, onehot)) = rows_pair("cross_entropy", logits, onehot) else {
        return f64::NAN;
    };
    let logp = softmax_rows(logits).mapv(|p| p.max(1e-300).ln());
    -(&onehot * &logp).sum() / logits.nrows() as f64
}

/// `1/count` per output position `[oh·ow]` for an average pool that divides by the real
/// positions only and has padding; `None` when the divisor is the whole window.
fn real_divisors(in_shape: &[usize], p: &Pool2dParams, count_include_pad: bool) -> Option<Vec<f64>> {
    (!count_include_pad && p.padding != (0, 0) && in_shape.len() == 4)
        .then(|| pool_inv_counts(in_shape[2], in_shape[3], p))
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
