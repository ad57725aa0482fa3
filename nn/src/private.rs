//! [`PrivateEngine`]: the layer computations on 2-out-of-3 replicated shares, through the protocols
//! of `cryptgpu-sharing`. Weights, activations, labels and gradients all stay secret-shared;
//! nothing is opened.

use cryptgpu_net::Transport;
use cryptgpu_ring::{Backend, BinaryOp, Conv2dParams, Pool2dParams, ScalarOp};
use cryptgpu_sharing::approx::SoftmaxConfig;
use cryptgpu_sharing::binary::BShare;
use cryptgpu_sharing::convert::MsbVariant;
use cryptgpu_sharing::trunc::Truncating;
use cryptgpu_sharing::{AShare, Party};

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use cryptgpu_net::Counters;

use crate::engine::{pool_inv_counts, BnTrain, Engine, LayerGrads, Phase, Product, BN_INV_SQRT_RANGE};
use crate::error::{NnError, Result};

/// Communication per (layer label, phase), summed over every pass through it.
pub type Traffic = BTreeMap<(String, Phase), Counters>;

/// Wall-clock time per (layer label, phase), summed over every pass through it.
pub type Timing = BTreeMap<(String, Phase), Duration>;

/// The extra fractional bits `e` with which [`PrivateEngine`]'s `lincomb` encodes its constants
/// when the largest magnitude among them is `big` (see there): the value it truncates is then
/// `Σ c_i·x_i` at scale `2^(2f+e)`.
pub(crate) fn lincomb_extra_bits(big: f64, f: u32) -> u32 {
    if big > 0.0 && big < 1.0 {
        ((-big.log2()).floor() as u32).min(61 - f)
    } else {
        0
    }
}

/// The MSB protocol of [`PrivateEngine`]'s ReLUs and max pools by default:
/// [`MsbVariant::LowLatency`], 7 rounds per ReLU (or tree level) instead of 9 for 24 B more per
/// element at the lead (71.6 / 55.6 / 55.6 B per element and role against 47.6 for each),
/// and a 1-round ReLU backward instead of 2: fewer rounds pay wherever latency times rounds
/// outweighs the extra bytes over the bandwidth (a WAN; on a fast LAN at large batches,
/// [`MsbVariant::Lean`] sends less).
pub const RELU_MSB: MsbVariant = MsbVariant::LowLatency;

/// The private engine of one party.
pub struct PrivateEngine<'p, B: Backend, T: Transport> {
    /// The party running the protocols.
    pub party: &'p mut Party<B, T>,
    /// The MSB protocol of ReLUs and max pools (and the matching `x·[b]`); [`RELU_MSB`] by
    /// default. Every party must use the same.
    pub msb: MsbVariant,
    /// Softmax settings of the loss gradient and of an inference head: the default, with the
    /// max-shift tree on [`RELU_MSB`].
    pub softmax: SoftmaxConfig,
    /// This party's communication per layer and phase.
    pub traffic: Traffic,
    /// This party's time per layer and phase (computation and waiting for the others).
    pub timing: Timing,
    /// Whether the lead of the asymmetric protocols ([`Party::lead`]) rotates over the parties,
    /// one protocol call at a time (true by default): the MSBs, truncations and `x·[b]` give their
    /// lead more to send, so a fixed lead makes its links the bottleneck. Every party must use the
    /// same setting.
    pub rotate_leads: bool,
    /// Protocol calls that took a lead so far.
    leads: usize,
    mark: Counters,
    since: Instant,
}

impl<'p, B: Backend, T: Transport> PrivateEngine<'p, B, T> {
    /// An engine on `party` with default settings.
    pub fn new(party: &'p mut Party<B, T>) -> Self {
        let mark = party.counters();
        let softmax = SoftmaxConfig { max_variant: RELU_MSB, ..SoftmaxConfig::default() };
        let (traffic, timing, since) = (Traffic::new(), Timing::new(), Instant::now());
        PrivateEngine { party, softmax, msb: RELU_MSB, traffic, timing, rotate_leads: true, leads: 0, mark, since }
    }

    /// Before each protocol call that communicates: with [`rotate_leads`](Self::rotate_leads),
    /// the next party in turn leads it (party `k mod 3` for the engine's `k`-th such call, from 0).
    /// In an inference pass each communicating node makes one call (a ReLU after a held product
    /// runs under the product's lead), as [`forward_cost`](crate::cost::forward_cost) assumes.
    fn next_lead(&mut self) -> Result<()> {
        if self.rotate_leads {
            self.party.set_lead(self.leads % 3)?;
            self.leads += 1;
        }
        Ok(())
    }

    /// Restarts the attribution of traffic and time (what happened since the last mark is not counted).
    pub fn mark(&mut self) {
        self.mark = self.party.counters();
        self.since = Instant::now();
    }

    /// For an average pool dividing by real positions only (and padded): the public fixed-point
    /// `1/count` of each output position, broadcast to `out` (`[N, C, oh, ow]`); `None` when
    /// the divisor is the window everywhere.
    fn inv_counts(
        &self,
        in_shape: &[usize],
        out: &[usize],
        p: &Pool2dParams,
        count_include_pad: bool,
    ) -> Result<Option<B::Tensor>> {
        if count_include_pad || p.padding == (0, 0) {
            return Ok(None);
        }
        if in_shape.len() != 4 || out.len() != 4 {
            return Err(NnError::Shape(format!("average pooling of {in_shape:?}")));
        }
        let c = pool_inv_counts(in_shape[2], in_shape[3], p);
        let t = self.party.codec().encode_tensor(&[1, 1, out[2], out[3]], &c)?;
        let be = self.party.backend();
        Ok(Some(be.broadcast_to(&be.upload_owned(t)?, out)?))
    }

    /// A per-channel vector `[C]` broadcast to the NCHW shape `to`, or a bias `[F]` to `[N, F]`.
    fn broadcast(&self, v: &AShare<B>, to: &[usize]) -> Result<AShare<B>> {
        if to.len() < 2 || v.shape() != [to[1]] {
            return Err(NnError::Shape(format!("broadcast of {:?} along axis 1 of {to:?}", v.shape())));
        }
        let be = self.party.backend().clone();
        let mut shape = vec![1; to.len()];
        shape[1] = v.len();
        Ok(v.map(|t| be.broadcast_to(&be.reshape(t, &shape)?, to))?)
    }
}

impl<B: Backend, T: Transport> Engine for PrivateEngine<'_, B, T> {
    type T = AShare<B>;
    type Held = Truncating<B>;
    type ReluSaved = BShare<B>;
    type PoolSaved = AShare<B>;

    fn shape(&self, x: &AShare<B>) -> Vec<usize> {
        x.shape().to_vec()
    }

    fn conv2d(&mut self, x: &AShare<B>, w: &AShare<B>, b: Option<&AShare<B>>, p: &Conv2dParams) -> Result<AShare<B>> {
        let held = self.product_held(&Product::Conv2d { x, w, b, p: *p, div: 0 })?;
        Ok(self.party.finish_truncation(held)?)
    }

    /// The product, its truncation (by `2^(f + div)`) and the bias or shift.
    fn product(&mut self, layer: &Product<'_, AShare<B>>) -> Result<AShare<B>> {
        let held = self.product_held(layer)?;
        Ok(self.party.finish_truncation(held)?)
    }

    /// The product with its truncation's last round held back, plus the bias or shift (local).
    fn product_held(&mut self, layer: &Product<'_, AShare<B>>) -> Result<Truncating<B>> {
        self.next_lead()?;
        let f = self.party.codec().frac_bits();
        let (held, add) = match *layer {
            Product::Conv2d { x, w, b, p, div } => {
                (self.party.bilinear_held(x, w, &move |be, s, t| be.conv2d(s, t, &p), f + div)?, b)
            }
            Product::Linear { x, w, b, div } => {
                (self.party.bilinear_held(x, w, &|be, x, w| be.matmul(x, w, false, true), f + div)?, b)
            }
            Product::Affine { x, scale, shift } => {
                let a = self.broadcast(scale, x.shape())?;
                (self.party.bilinear_held(x, &a, &|be, p, q| be.binary(BinaryOp::Mul, p, q), f)?, Some(shift))
            }
        };
        match add {
            Some(b) => {
                let bb = self.broadcast(b, held.shape())?;
                Ok(self.party.add_to_truncating(held, &bb)?)
            }
            None => Ok(held),
        }
    }

    fn relu_held(&mut self, held: Truncating<B>) -> Result<(AShare<B>, BShare<B>)> {
        Ok(self.party.relu_truncating(held, self.msb)?)
    }

    fn conv2d_grads(
        &mut self,
        x: &AShare<B>,
        w: &AShare<B>,
        gy: &AShare<B>,
        p: &Conv2dParams,
        bias: bool,
    ) -> Result<LayerGrads<AShare<B>>> {
        let (xs, k, p) = (x.shape().to_vec(), (w.shape()[2], w.shape()[3]), *p);
        self.next_lead()?;
        let dx = self.party.bilinear(gy, w, &|be, g, w| be.conv2d_input_grad(g, w, &xs, &p), true)?;
        self.next_lead()?;
        let dw = self.party.bilinear(x, gy, &|be, x, g| be.conv2d_weight_grad(x, g, k, &p), true)?;
        let db = if bias { Some(self.channel_sum(gy)?) } else { None };
        Ok((dx, dw, db))
    }

    fn linear(&mut self, x: &AShare<B>, w: &AShare<B>, b: Option<&AShare<B>>) -> Result<AShare<B>> {
        let held = self.product_held(&Product::Linear { x, w, b, div: 0 })?;
        Ok(self.party.finish_truncation(held)?)
    }

    fn linear_grads(
        &mut self,
        x: &AShare<B>,
        w: &AShare<B>,
        gy: &AShare<B>,
        bias: bool,
    ) -> Result<LayerGrads<AShare<B>>> {
        self.next_lead()?;
        let dx = self.party.bilinear(gy, w, &|be, g, w| be.matmul(g, w, false, false), true)?;
        self.next_lead()?;
        let dw = self.party.bilinear(gy, x, &|be, g, x| be.matmul(g, x, true, false), true)?;
        let be = self.party.backend().clone();
        let db = if bias { Some(gy.map(|t| be.sum_axis(t, 0, false))?) } else { None };
        Ok((dx, dw, db))
    }

    fn relu(&mut self, x: &AShare<B>) -> Result<(AShare<B>, BShare<B>)> {
        self.next_lead()?;
        Ok(self.party.relu_with(x, self.msb)?)
    }

    fn relu_backward(&mut self, gy: &AShare<B>, saved: &BShare<B>) -> Result<AShare<B>> {
        self.next_lead()?;
        Ok(self.party.relu_backward_with(gy, saved, self.msb)?)
    }

    /// Window sums, scaled by `1/k` with one lincomb, or (`count_include_pad` false, with
    /// padding) multiplied by the public `1/count` of each position and truncated.
    fn avg_pool(&mut self, x: &AShare<B>, p: &Pool2dParams, count_include_pad: bool) -> Result<AShare<B>> {
        let be = self.party.backend().clone();
        let s = x.map(|t| be.sum_pool2d(t, p))?;
        match self.inv_counts(x.shape(), s.shape(), p, count_include_pad)? {
            Some(c) => {
                self.next_lead()?;
                Ok(self.party.mul_public_fp(&s, &c)?)
            }
            None => self.scale(&s, 1.0 / (p.kernel.0 * p.kernel.1) as f64),
        }
    }

    /// The window sums alone (local).
    fn pool_sums(&mut self, x: &AShare<B>, p: &Pool2dParams) -> Result<AShare<B>> {
        let be = self.party.backend().clone();
        Ok(x.map(|t| be.sum_pool2d(t, p))?)
    }

    fn avg_pool_backward(
        &mut self,
        gy: &AShare<B>,
        in_shape: &[usize],
        p: &Pool2dParams,
        count_include_pad: bool,
    ) -> Result<AShare<B>> {
        // Scale before spreading: the truncation then runs on the (k times smaller) output gradient.
        let g = match self.inv_counts(in_shape, gy.shape(), p, count_include_pad)? {
            Some(c) => {
                self.next_lead()?;
                self.party.mul_public_fp(gy, &c)?
            }
            None => self.scale(gy, 1.0 / (p.kernel.0 * p.kernel.1) as f64)?,
        };
        let be = self.party.backend().clone();
        Ok(g.map(|t| be.sum_pool2d_backward(t, in_shape, p))?)
    }

    fn pad2d(&mut self, x: &AShare<B>, pads: [usize; 4]) -> Result<AShare<B>> {
        let be = self.party.backend().clone();
        let s = x.shape().to_vec();
        if s.len() != 4 {
            return Err(NnError::Shape(format!("pad2d expects [N, C, H, W], got {s:?}")));
        }
        Ok(x.map(|t| {
            let (n, c, w) = (s[0], s[1], s[3]);
            let (top, bottom) = (be.zeros(&[n, c, pads[0], w])?, be.zeros(&[n, c, pads[2], w])?);
            let t = be.concat(&[&top, t, &bottom], 2)?;
            let h = s[2] + pads[0] + pads[2];
            let (left, right) = (be.zeros(&[n, c, h, pads[1]])?, be.zeros(&[n, c, h, pads[3]])?);
            be.concat(&[&left, &t, &right], 3)
        })?)
    }

    fn crop2d(&mut self, x: &AShare<B>, pads: [usize; 4]) -> Result<AShare<B>> {
        let be = self.party.backend().clone();
        let s = x.shape().to_vec();
        if s.len() != 4 || s[2] < pads[0] + pads[2] || s[3] < pads[1] + pads[3] {
            return Err(NnError::Shape(format!("crop2d of {pads:?} from {s:?}")));
        }
        Ok(x.map(|t| {
            let t = be.slice(t, 2, pads[0], s[2] - pads[2])?;
            be.slice(&t, 3, pads[1], s[3] - pads[3])
        })?)
    }

    fn max_pool(&mut self, x: &AShare<B>, p: &Pool2dParams) -> Result<(AShare<B>, AShare<B>)> {
        self.next_lead()?;
        Ok(self.party.max_pool2d_with(x, p, self.msb)?)
    }

    fn max_pool_backward(
        &mut self,
        gy: &AShare<B>,
        saved: &AShare<B>,
        in_shape: &[usize],
        p: &Pool2dParams,
    ) -> Result<AShare<B>> {
        self.next_lead()?;
        Ok(self.party.max_pool2d_backward(gy, saved, in_shape, p)?)
    }

    fn affine_channels(&mut self, x: &AShare<B>, scale: &AShare<B>, shift: &AShare<B>) -> Result<AShare<B>> {
        let held = self.product_held(&Product::Affine { x, scale, shift })?;
        Ok(self.party.finish_truncation(held)?)
    }

    fn global_avg_pool(&mut self, x: &AShare<B>) -> Result<AShare<B>> {
        let be = self.party.backend().clone();
        let s = x.shape().to_vec();
        let hw = s[2] * s[3];
        let sum = x.map(|t| be.sum_axis(&be.reshape(t, &[s[0], s[1], hw])?, 2, false))?;
        self.scale(&sum, 1.0 / hw as f64)
    }

    fn global_avg_pool_backward(&mut self, gy: &AShare<B>, in_shape: &[usize]) -> Result<AShare<B>> {
        let hw = in_shape[2] * in_shape[3];
        let g = self.scale(gy, 1.0 / hw as f64)?;
        let be = self.party.backend().clone();
        Ok(g.map(|t| {
            be.reshape(
                &be.broadcast_to(&be.reshape(t, &[in_shape[0], in_shape[1], 1])?, &[in_shape[0], in_shape[1], hw])?,
                in_shape,
            )
        })?)
    }

    fn reshape(&mut self, x: &AShare<B>, shape: &[usize]) -> Result<AShare<B>> {
        let be = self.party.backend().clone();
        Ok(x.map(|t| be.reshape(t, shape))?)
    }

    fn add(&mut self, a: &AShare<B>, b: &AShare<B>) -> Result<AShare<B>> {
        Ok(self.party.add(a, b)?)
    }

    fn softmax_ce_grad(&mut self, logits: &AShare<B>, onehot: &AShare<B>) -> Result<AShare<B>> {
        let cfg = self.softmax;
        self.next_lead()?;
        let p = self.party.softmax(logits, &cfg)?;
        Ok(self.party.cross_entropy_grad(&p, onehot)?)
    }

    fn sub(&mut self, a: &AShare<B>, b: &AShare<B>) -> Result<AShare<B>> {
        Ok(self.party.sub(a, b)?)
    }

    fn mul(&mut self, a: &AShare<B>, b: &AShare<B>) -> Result<AShare<B>> {
        self.next_lead()?;
        Ok(self.party.mul_fp(a, b)?)
    }

    /// `Σ c_i·x_i`, truncated once (2 rounds). The constants are encoded with `f + e` fractional
    /// bits, `e = floor(-log2 max|c_i|)` when every `|c_i| < 1`, so the largest keeps `f`
    /// significant bits (the plain `f`-bit encoding of `1/100352` would be 4% off; `lr·wd` keeps
    /// `e` more bits) while each product stays below `|x_i|·2^f`.
    fn lincomb(&mut self, terms: &[(f64, &AShare<B>)]) -> Result<AShare<B>> {
        let f = self.party.codec().frac_bits();
        let limit = (1u64 << (62 - 2 * f)) as f64;
        let (_, first) = terms.first().ok_or_else(|| NnError::Shape("lincomb of no terms".into()))?;
        let mut big = 0.0f64;
        for (c, x) in terms {
            if !c.is_finite() || c.abs() >= limit {
                return Err(NnError::Shape(format!("lincomb: constant {c} is not a finite value below {limit}")));
            }
            if x.shape() != first.shape() {
                return Err(NnError::Shape(format!("lincomb: {:?} vs {:?}", x.shape(), first.shape())));
            }
            big = big.max(c.abs());
        }
        let e = lincomb_extra_bits(big, f);
        let be = self.party.backend().clone();
        let term = |(c, x): &(f64, &AShare<B>)| {
            let k = (c * ((f + e) as f64).exp2()).round() as i64 as u64;
            x.map(|t| be.scalar(ScalarOp::Mul, t, k))
        };
        let mut acc = term(&terms[0])?;
        for t in &terms[1..] {
            acc = self.party.add(&acc, &term(t)?)?;
        }
        self.next_lead()?;
        Ok(self.party.truncate_by(&acc, f + e)?)
    }

    fn channel_sum(&mut self, x: &AShare<B>) -> Result<AShare<B>> {
        let be = self.party.backend().clone();
        let s = x.shape().to_vec();
        if s.len() < 2 {
            return Err(NnError::Shape(format!("channel_sum expects [N, C, ...], got {s:?}")));
        }
        let inner: usize = s[2..].iter().product();
        Ok(x.map(|t| {
            let t = be.reshape(t, &[s[0], s[1], inner])?;
            let t = be.sum_axis(&t, 2, false)?;
            be.sum_axis(&t, 0, false)
        })?)
    }

    fn broadcast_channels(&mut self, v: &AShare<B>, shape: &[usize]) -> Result<AShare<B>> {
        self.broadcast(v, shape)
    }

    /// `1/sqrt(x + eps)` by [`Party::inv_sqrt`] over [`BN_INV_SQRT_RANGE`] with 3 Newton steps
    /// (relative error about 3e-5 from the iteration, plus rounding).
    fn inv_sqrt(&mut self, x: &AShare<B>, eps: f64) -> Result<AShare<B>> {
        let e = self.party.codec().encode(eps)?;
        let y = self.party.add_scalar(x, e)?;
        let (lo, hi) = BN_INV_SQRT_RANGE;
        self.next_lead()?;
        Ok(self.party.inv_sqrt(&y, lo, hi, 3)?)
    }

    /// [`Party::batch_norm_train`]: 15 rounds (see `cryptgpu_sharing::norm`).
    fn batch_norm_train(
        &mut self,
        x: &AShare<B>,
        gamma: &AShare<B>,
        beta: &AShare<B>,
        eps: f64,
    ) -> Result<BnTrain<AShare<B>>> {
        self.next_lead()?;
        let o = self.party.batch_norm_train(x, gamma, beta, eps)?;
        Ok(BnTrain { y: o.y, xhat: o.xhat, scale: o.scale, mean: o.mean, var: o.var })
    }

    fn step_done(&mut self, label: &str, phase: Phase) {
        let now = self.party.counters();
        let delta = now.since(&self.mark);
        let e = self.traffic.entry((label.to_string(), phase)).or_default();
        e.bytes_sent += delta.bytes_sent;
        e.bytes_received += delta.bytes_received;
        e.bytes_to_next += delta.bytes_to_next;
        e.bytes_to_prev += delta.bytes_to_prev;
        e.messages_sent += delta.messages_sent;
        e.rounds += delta.rounds;
        self.mark = now;
        let t = Instant::now();
        *self.timing.entry((label.to_string(), phase)).or_default() += t - self.since;
        self.since = t;
    }
}
