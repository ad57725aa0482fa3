//! Value ranges of the plaintext twin against the bounds of the private engine's fixed point.
//!
//! The private engine is right only while every value stays inside the bounds of
//! `cryptgpu_ring::fixed` (and of the approximations in `cryptgpu_sharing::approx`), and it cannot
//! check them: its values are secret. The plaintext twin computes the same values in the clear, so
//! [`RangeRecorder`], a [`PlainEngine`] that also records, measures them. Per step label (as
//! [`Engine::step_done`] receives it, e.g. `3:features.3`) and phase, it keeps the worst value of:
//!
//! * [`RangeOp::Truncation`]: the largest `|z|` reaching a truncation, in real units (the ring
//!   value over `2^(2f)`): a convolution's or linear layer's output before the bias, their input and
//!   weight gradients, an elementwise product (batch norm's), and `2^e·Σ c_i·x_i` for a
//!   [`Engine::lincomb`] (pooling means, SGD) whose constants the private engine encodes with `e`
//!   extra bits. Bound: [`FixedPoint::max_product`], `2^(62-2f)`.
//! * [`RangeOp::InvSqrt`]: the largest input `x + eps` of batch norm's inverse square root, against
//!   the top of [`BN_INV_SQRT_RANGE`], `2^17`, for running variances (inference), and of
//!   [`BN_TRAIN_VAR_RANGE`], `2^13`, for batch variances (training); the bottoms, `2^-17`, are
//!   below `eps`. A training batch norm also records its truncations (the mean's, `Σ (x - mean)²`,
//!   `xhat`, `y`, `gamma/sqrt(σ² + eps)`).
//! * [`RangeOp::ExpMax`], [`RangeOp::ExpMin`]: the largest and smallest input of the loss's exp
//!   (logits minus their row's max), against `cryptgpu_sharing::approx::exp_domain`.
//!
//! Products inside the softmax and the inverse square root stay below the class count by
//! construction (max shift, exp guard, normalisation) and are not recorded. Plain
//! [`PlainEngine`] records nothing and costs nothing extra.

use cryptgpu_ring::{Conv2dParams, FixedPoint, Pool2dParams};
use cryptgpu_sharing::approx::{exp_domain, SoftmaxConfig};
use serde::{Serialize, Serializer};

use cryptgpu_sharing::norm::pow2_bits;

use crate::engine::{
    batch_norm_composed, BnTrain, Engine, LayerGrads, Phase, Product, BN_INV_SQRT_RANGE, BN_TRAIN_VAR_RANGE,
};
use crate::error::Result;
use crate::plain::{add_bias, PlainEngine, PlainTensor};
use crate::private::lincomb_extra_bits;

/// Entries at or above this fraction of their bound are reported by [`RangeReport::warnings`].
pub const WARN_RATIO: f64 = 0.25;

/// What a [`RangeEntry`] measures (see the [module documentation](crate::ranges)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RangeOp {
    /// The largest `|z|` (real units) reaching a truncation; bound `2^(62-2f)`.
    Truncation,
    /// The largest input of the inverse square root; bound `2^17`.
    InvSqrt,
    /// The largest input of exp; bound the top of its domain.
    ExpMax,
    /// The smallest input of exp; bound the bottom of its domain (negative).
    ExpMin,
}

/// The worst value one operation saw in one step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RangeEntry {
    /// The step label (`3:features.3`, `softmax-cross-entropy`, `sgd`).
    pub layer: String,
    /// The phase of the step.
    #[serde(serialize_with = "phase_name")]
    pub phase: Phase,
    /// What was measured.
    pub op: RangeOp,
    /// The worst value seen: a magnitude for truncations, an input for the others.
    pub seen: f64,
    /// The bound it must stay inside (below it; above it for [`RangeOp::ExpMin`]).
    pub bound: f64,
    /// `seen / bound`: 1 or more is past the bound.
    pub ratio: f64,
}

fn phase_name<S: Serializer>(p: &Phase, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{p:?}").to_lowercase())
}

/// The worst values per step, operation and phase, in the order first seen; serialises as the
/// list of its entries.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct RangeReport {
    entries: Vec<RangeEntry>,
}

impl RangeReport {
    /// Every entry.
    pub fn entries(&self) -> &[RangeEntry] {
        &self.entries
    }

    /// Records `seen` for `op` in step `layer` of `phase`, keeping the worst (largest ratio).
    pub fn record(&mut self, layer: &str, phase: Phase, op: RangeOp, seen: f64, bound: f64) {
        let ratio = seen / bound;
        match self.entries.iter_mut().find(|e| e.layer == layer && e.phase == phase && e.op == op) {
            // A NaN replaces a number, and stays.
            Some(e) => {
                if ratio > e.ratio || ratio.is_nan() {
                    (e.seen, e.bound, e.ratio) = (seen, bound, ratio);
                }
            }
            None => self.entries.push(RangeEntry { layer: layer.to_string(), phase, op, seen, bound, ratio }),
        }
    }

    /// One line per entry within 4x of its bound ([`WARN_RATIO`]) or past it (or NaN), such as
    /// `1:bn (forward): largest inverse square root input 3.1e5 is past its bound 1.3e5 (ratio 2.4)`.
    pub fn warnings(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.ratio >= WARN_RATIO || e.ratio.is_nan())
            .map(|e| {
                let what = match e.op {
                    RangeOp::Truncation => "largest value reaching a truncation",
                    RangeOp::InvSqrt => "largest inverse square root input",
                    RangeOp::ExpMax => "largest exp input",
                    RangeOp::ExpMin => "smallest exp input",
                };
                let status = if e.ratio < 1.0 { "within 4x of" } else { "past" };
                format!(
                    "{} ({}): {what} {:.4e} is {status} its bound {:.4e} (ratio {:.3})",
                    e.layer,
                    format!("{:?}", e.phase).to_lowercase(),
                    e.seen,
                    e.bound,
                    e.ratio
                )
            })
            .collect()
    }
}

/// A [`PlainEngine`] that records the ranges of the [module documentation](crate::ranges).
/// Values are attributed to a step when [`Engine::step_done`] is called.
#[derive(Debug, Clone)]
pub struct RangeRecorder {
    /// The private engine's softmax settings (its exp's domain); the default, as
    /// [`PrivateEngine`](crate::private::PrivateEngine)'s.
    pub softmax: SoftmaxConfig,
    codec: FixedPoint,
    pending: Vec<(RangeOp, f64, f64)>,
    report: RangeReport,
}

impl RangeRecorder {
    /// A recorder for the private engine's codec.
    pub fn new(codec: FixedPoint) -> Self {
        RangeRecorder { softmax: SoftmaxConfig::default(), codec, pending: Vec::new(), report: RangeReport::default() }
    }

    /// What was recorded up to the last [`Engine::step_done`].
    pub fn report(&self) -> &RangeReport {
        &self.report
    }

    /// Keeps the worst `seen` of `op` until the step ends.
    fn note(&mut self, op: RangeOp, seen: f64, bound: f64) {
        match self.pending.iter_mut().find(|p| p.0 == op) {
            Some(p) => {
                let ratio = seen / bound;
                if ratio > p.1 / p.2 || ratio.is_nan() {
                    (p.1, p.2) = (seen, bound);
                }
            }
            None => self.pending.push((op, seen, bound)),
        }
    }

    /// A truncation of `2^e·z` for the values `z` (largest magnitude; NaN propagates).
    fn truncation(&mut self, z: &[f64], e: u32) {
        let m = z.iter().fold(0.0f64, |m, v| if v.abs() > m || v.is_nan() { v.abs() } else { m });
        self.note(RangeOp::Truncation, m * (e as f64).exp2(), self.codec.max_product());
    }

    /// The extra bits of a lincomb whose largest constant is `big`.
    fn extra_bits(&self, big: f64) -> u32 {
        lincomb_extra_bits(big, self.codec.frac_bits())
    }
}

impl Engine for RangeRecorder {
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
        let y = PlainEngine.conv2d_product(x, w, p)?;
        self.truncation(&y.data, 0);
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
        let (dx, dw, db) = PlainEngine.conv2d_grads(x, w, gy, p, bias)?;
        self.truncation(&dx.data, 0);
        self.truncation(&dw.data, 0);
        Ok((dx, dw, db))
    }

    fn linear(&mut self, x: &PlainTensor, w: &PlainTensor, b: Option<&PlainTensor>) -> Result<PlainTensor> {
        let y = PlainEngine.linear_product(x, w)?;
        self.truncation(&y.data, 0);
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
        let (dx, dw, db) = PlainEngine.linear_grads(x, w, gy, bias)?;
        self.truncation(&dx.data, 0);
        self.truncation(&dw.data, 0);
        Ok((dx, dw, db))
    }

    fn relu(&mut self, x: &PlainTensor) -> Result<(PlainTensor, Vec<bool>)> {
        PlainEngine.relu(x)
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

    fn relu_backward(&mut self, gy: &PlainTensor, saved: &Vec<bool>) -> Result<PlainTensor> {
        PlainEngine.relu_backward(gy, saved)
    }

    /// The private engine scales the window sums by `1/k` with one lincomb, or multiplies them
    /// by the public `1/count` of each position (truncated, no extra bits).
    fn avg_pool(&mut self, x: &PlainTensor, p: &Pool2dParams, count_include_pad: bool) -> Result<PlainTensor> {
        let y = PlainEngine.avg_pool(x, p, count_include_pad)?;
        let e = if count_include_pad || p.padding == (0, 0) {
            self.extra_bits(1.0 / (p.kernel.0 * p.kernel.1) as f64)
        } else {
            0
        };
        self.truncation(&y.data, e);
        Ok(y)
    }

    /// The private engine scales the output gradient by its divisor before spreading it.
    fn avg_pool_backward(
        &mut self,
        gy: &PlainTensor,
        in_shape: &[usize],
        p: &Pool2dParams,
        count_include_pad: bool,
    ) -> Result<PlainTensor> {
        let k = (p.kernel.0 * p.kernel.1) as f64;
        let scaled: Vec<f64> = gy.data.iter().map(|g| g / k).collect();
        let e = if count_include_pad || p.padding == (0, 0) { self.extra_bits(1.0 / k) } else { 0 };
        self.truncation(&scaled, e);
        PlainEngine.avg_pool_backward(gy, in_shape, p, count_include_pad)
    }

    fn pad2d(&mut self, x: &PlainTensor, pads: [usize; 4]) -> Result<PlainTensor> {
        PlainEngine.pad2d(x, pads)
    }

    fn crop2d(&mut self, x: &PlainTensor, pads: [usize; 4]) -> Result<PlainTensor> {
        PlainEngine.crop2d(x, pads)
    }

    fn max_pool(&mut self, x: &PlainTensor, p: &Pool2dParams) -> Result<(PlainTensor, Vec<usize>)> {
        PlainEngine.max_pool(x, p)
    }

    fn max_pool_backward(
        &mut self,
        gy: &PlainTensor,
        saved: &Vec<usize>,
        in_shape: &[usize],
        p: &Pool2dParams,
    ) -> Result<PlainTensor> {
        PlainEngine.max_pool_backward(gy, saved, in_shape, p)
    }

    /// The private engine multiplies by the scale (truncated), then adds the shift.
    fn affine_channels(&mut self, x: &PlainTensor, scale: &PlainTensor, shift: &PlainTensor) -> Result<PlainTensor> {
        let zero = PlainTensor::zeros(&shift.shape);
        let product = PlainEngine.affine_channels(x, scale, &zero)?;
        self.truncation(&product.data, 0);
        add_bias(product, shift)
    }

    /// The private engine scales the spatial sums by `1/(H·W)` with one lincomb.
    fn global_avg_pool(&mut self, x: &PlainTensor) -> Result<PlainTensor> {
        let y = PlainEngine.global_avg_pool(x)?;
        if let [_, _, h, w] = x.shape[..] {
            let e = self.extra_bits(1.0 / (h * w) as f64);
            self.truncation(&y.data, e);
        }
        Ok(y)
    }

    /// The private engine scales the gradient by `1/(H·W)` before spreading it.
    fn global_avg_pool_backward(&mut self, gy: &PlainTensor, in_shape: &[usize]) -> Result<PlainTensor> {
        if let [_, _, h, w] = in_shape[..] {
            let k = (h * w) as f64;
            let scaled: Vec<f64> = gy.data.iter().map(|g| g / k).collect();
            let e = self.extra_bits(1.0 / k);
            self.truncation(&scaled, e);
        }
        PlainEngine.global_avg_pool_backward(gy, in_shape)
    }

    fn reshape(&mut self, x: &PlainTensor, shape: &[usize]) -> Result<PlainTensor> {
        PlainEngine.reshape(x, shape)
    }

    fn add(&mut self, a: &PlainTensor, b: &PlainTensor) -> Result<PlainTensor> {
        PlainEngine.add(a, b)
    }

    fn lincomb(&mut self, terms: &[(f64, &PlainTensor)]) -> Result<PlainTensor> {
        let y = PlainEngine.lincomb(terms)?;
        let big = terms.iter().fold(0.0f64, |m, (c, _)| m.max(c.abs()));
        let e = self.extra_bits(big);
        self.truncation(&y.data, e);
        Ok(y)
    }

    /// Records the exp's inputs, the logits minus their row's max.
    fn softmax_ce_grad(&mut self, logits: &PlainTensor, onehot: &PlainTensor) -> Result<PlainTensor> {
        let c = logits.shape.last().copied().unwrap_or(1).max(1);
        let (mut hi, mut lo) = (f64::NEG_INFINITY, f64::INFINITY);
        for row in logits.data.chunks(c) {
            let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            for v in row {
                hi = hi.max(v - m);
                lo = lo.min(v - m);
            }
        }
        let (dlo, dhi) = exp_domain(self.codec.frac_bits(), &self.softmax.exp);
        if !logits.data.is_empty() {
            self.note(RangeOp::ExpMax, hi, dhi);
            self.note(RangeOp::ExpMin, lo, dlo);
        }
        PlainEngine.softmax_ce_grad(logits, onehot)
    }

    fn sub(&mut self, a: &PlainTensor, b: &PlainTensor) -> Result<PlainTensor> {
        PlainEngine.sub(a, b)
    }

    fn mul(&mut self, a: &PlainTensor, b: &PlainTensor) -> Result<PlainTensor> {
        let y = PlainEngine.mul(a, b)?;
        self.truncation(&y.data, 0);
        Ok(y)
    }

    fn channel_sum(&mut self, x: &PlainTensor) -> Result<PlainTensor> {
        PlainEngine.channel_sum(x)
    }

    fn broadcast_channels(&mut self, v: &PlainTensor, shape: &[usize]) -> Result<PlainTensor> {
        PlainEngine.broadcast_channels(v, shape)
    }

    fn inv_sqrt(&mut self, x: &PlainTensor, eps: f64) -> Result<PlainTensor> {
        let top = (BN_INV_SQRT_RANGE.1 as f64 + 1.0).exp2();
        let m = x.data.iter().fold(f64::NEG_INFINITY, |m, v| if v + eps > m || v.is_nan() { v + eps } else { m });
        if !x.data.is_empty() {
            self.note(RangeOp::InvSqrt, m, top);
        }
        PlainEngine.inv_sqrt(x, eps)
    }

    /// Records the private protocol's truncations (the mean's `2^e·mean`, `Σ (x - mean)²`, the
    /// products `xhat`, `y` and `gamma·istd`) and `σ² + eps` against the top of
    /// [`BN_TRAIN_VAR_RANGE`].
    fn batch_norm_train(
        &mut self,
        x: &PlainTensor,
        gamma: &PlainTensor,
        beta: &PlainTensor,
        eps: f64,
    ) -> Result<BnTrain<PlainTensor>> {
        let out = batch_norm_composed(&mut PlainEngine, x, gamma, beta, eps)?;
        let m = (x.data.len() / gamma.data.len().max(1)) as f64;
        let pow2 = (pow2_bits(m as usize) as f64).exp2();
        let e = self.extra_bits(1.0 / m);
        self.truncation(&out.mean.data, e);
        let sums: Vec<f64> = out.var.data.iter().map(|v| v * pow2).collect();
        self.truncation(&sums, 0);
        let top = (BN_TRAIN_VAR_RANGE.1 as f64 + 1.0).exp2();
        let worst =
            sums.iter().fold(f64::NEG_INFINITY, |w, s| if s / m + eps > w || s.is_nan() { s / m + eps } else { w });
        if !sums.is_empty() {
            self.note(RangeOp::InvSqrt, worst, top);
        }
        for t in [&out.xhat, &out.y, &out.scale] {
            self.truncation(&t.data, 0);
        }
        Ok(out)
    }

    fn step_done(&mut self, label: &str, phase: Phase) {
        for (op, seen, bound) in std::mem::take(&mut self.pending) {
            self.report.record(label, phase, op, seen, bound);
        }
    }
}
