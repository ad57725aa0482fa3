//! Fixed-point functions: exp, reciprocal, inverse square root, softmax and the cross-entropy
//! gradient (and, off the hot path, the loss value). Nothing is opened inside any of them.
//!
//! All products are fixed-point products truncated as [`crate::trunc`] describes (error below one
//! LSB; in the default exact mode no wrap failures). Costs below are written with `P`, the cost of
//! one fixed-point product per element, and `T`, that of truncating a sharing
//! ([`crate::trunc::product_cost`], [`crate::trunc::truncation_cost`]): in exact mode `P` is
//! 2 rounds and 24 / 16 / 16 B (parties 0 / 1 / 2) and `T` 1 round and 24 / 8 / 8 B; in
//! probabilistic mode both are 2 rounds and 8 B. Comparisons inside (max-shift, exp guard, initial guesses) use the
//! exact protocols of [`crate::compare`].
//!
//! **Initial guesses from a private bit length.** For `a` in `[2^lo, 2^{hi+1})` the thermometer
//! bits `c_j = [a >= 2^j]`, `j = lo+1..=hi`, come from one batched MSB call and one batched
//! one-round bit injection ([`Party::b2a_bit_one_round`]): 8 rounds. With
//! `k = floor(log2 a) = lo + Σ c_j`, any per-octave guess `g(k)` is the linear combination
//! `g(lo) + Σ_j c_j·(g(j) - g(j-1))` of the injected bits with public integer weights: local, no
//! truncation. The reciprocal uses `g(k) = (2/3)·2^-k`, the inverse square root
//! `g(k) = sqrt(2/3)·2^{-k/2}`; both put `a·y_0` (resp. `a·y_0²`) in `[2/3, 4/3)`, so Newton-Raphson
//! starts with relative error at most 1/3 for every input in range, whatever its size (CryptGPU's
//! constant guess 1/200 diverges for inputs above 400).

use cryptgpu_net::Transport;
use cryptgpu_ring::shape::check_same;
use cryptgpu_ring::{Backend, BinaryOp, RingTensor};

use crate::ashare::{AShare, ShareKind, Shares};
use crate::compare::{max_axis_cost_with, relu_bytes};
use crate::convert::{b2a_bit_one_round_bytes, msb_bytes, MsbVariant, MSB_ROUNDS};
use crate::error::{Result, SharingError};
use crate::party::Party;
use crate::trunc::{product_cost, truncation_cost, TruncMode};

/// Settings of [`Party::exp`]: `exp(x) ≈ (1 + t + t²/2)^(2^n)` with `t = x/2^n`, `n = iters`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpConfig {
    /// Number of squarings `n` (1..=f). Default 8.
    pub iters: u32,
    /// Clamp `t = x/2^n` at -1 with a ReLU (9 more rounds), so inputs below `-2^n` give at most
    /// `2^{-2^n}` instead of a huge power ([`exp_domain`]). Default on.
    pub guard: bool,
}

/// The domain `[lo, hi)` of [`Party::exp`] with `frac_bits` fractional bits: inputs where the
/// documented accuracy holds and every truncation is inside its bound (`cryptgpu_ring::fixed`).
///
/// * `hi = (62 - 2f)·ln 2` (15.25 at f = 20): the last squaring's product is about `e^x`, which
///   must stay below the product bound `2^(62-2f)`. Past it the result is wrong, by `-2^(64-2f)`,
///   with a probability that rises from 0 to about 1/2 at `hi + ln 2`.
/// * Without the guard, `lo = -2^n`: below it `t < -1` and the base `1 + t + t²/2` grows again,
///   back to 1 at `x = -2^{n+1}` (the result then is about 1) and beyond 1 below that.
/// * With the guard, `lo = -2^(63-f)` (every encodable `x`) for `n >= 2`; for `n = 1`,
///   `-2^(62-f)`, the first truncation's bound (below it its error could wrap `t` positive).
pub fn exp_domain(frac_bits: u32, cfg: &ExpConfig) -> (f64, f64) {
    let f = frac_bits as f64;
    let hi = (62.0 - 2.0 * f) * std::f64::consts::LN_2;
    let lo = match (cfg.guard, cfg.iters) {
        (false, n) => -(n as f64).exp2(),
        (true, 1) => -(62.0 - f).exp2(),
        (true, _) => -(63.0 - f).exp2(),
    };
    (lo, hi)
}

impl Default for ExpConfig {
    fn default() -> Self {
        ExpConfig { iters: 8, guard: true }
    }
}

/// Settings of [`Party::softmax`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftmaxConfig {
    /// The exponential.
    pub exp: ExpConfig,
    /// Newton-Raphson iterations of the reciprocal of the row sums. Default 4.
    pub nr_iters: u32,
    /// Protocols of the max-shift tree: [`MsbVariant::Lean`] (default, 9 rounds per level) or
    /// [`MsbVariant::LowLatency`] (7 rounds per level, more bytes).
    pub max_variant: MsbVariant,
}

impl Default for SoftmaxConfig {
    fn default() -> Self {
        SoftmaxConfig { exp: ExpConfig::default(), nr_iters: 4, max_variant: MsbVariant::Lean }
    }
}

/// The shared first steps of softmax and log-softmax along the last axis.
struct Shifted<B: Backend> {
    /// `x - max`.
    u: AShare<B>,
    /// `exp(x - max)`.
    e: AShare<B>,
    /// Row sums of `e` (the last axis kept as 1).
    sums: AShare<B>,
    /// The last axis's length.
    classes: usize,
}

/// Rounds of [`Party::exp`] in truncation mode `mode`.
pub fn exp_rounds(mode: TruncMode, cfg: &ExpConfig) -> u64 {
    let (pr, tr) = (product_cost(mode, 0).0, truncation_cost(mode, 0).0);
    tr + (1 + cfg.iters as u64) * pr + if cfg.guard { MSB_ROUNDS + 2 } else { 0 }
}

/// Rounds and bytes sent by `party` for the initial guess of [`Party::reciprocal`] /
/// [`Party::inv_sqrt`] on `n` elements over `[2^lo, 2^{hi+1})`.
pub fn guess_cost(party: usize, n: usize, lo: i32, hi: i32) -> (u64, u64) {
    let k = (hi - lo).max(0) as usize * n;
    (MSB_ROUNDS + 1, msb_bytes(party, k) + b2a_bit_one_round_bytes(party, k))
}

/// Rounds and bytes sent by `party` in [`Party::exp`] of `n` elements.
pub fn exp_cost(mode: TruncMode, party: usize, n: usize, cfg: &ExpConfig) -> (u64, u64) {
    let guard = if cfg.guard { relu_bytes(MsbVariant::Lean, party, n) } else { 0 };
    let (pb, tb) = (product_cost(mode, party).1, truncation_cost(mode, party).1);
    (exp_rounds(mode, cfg), (tb + (1 + cfg.iters as u64) * pb) * n as u64 + guard)
}

/// Rounds and bytes sent by `party` in [`Party::reciprocal`] of `n` elements.
pub fn reciprocal_cost(mode: TruncMode, party: usize, n: usize, lo: i32, hi: i32, iters: u32) -> (u64, u64) {
    let (r, b) = guess_cost(party, n, lo, hi);
    let (pr, pb) = product_cost(mode, party);
    (r + 2 * pr * iters as u64, b + 2 * pb * iters as u64 * n as u64)
}

/// Rounds and bytes sent by `party` in [`Party::ln`] of `n` elements over `[2^lo, 2^{hi+1})`.
pub fn ln_cost(mode: TruncMode, party: usize, n: usize, lo: i32, hi: i32) -> (u64, u64) {
    let (gr, gb) = guess_cost(party, n, lo, hi);
    let (pr, pb) = product_cost(mode, party);
    let (tr, tb) = truncation_cost(mode, party);
    (gr + 4 * pr + tr, gb + (6 * pb + tb) * n as u64)
}

/// Rounds and bytes sent by `party` in [`Party::log_softmax`] of `rows` rows of `classes` logits.
pub fn log_softmax_cost(mode: TruncMode, party: usize, rows: usize, classes: usize, cfg: &SoftmaxConfig) -> (u64, u64) {
    let parts = [
        max_axis_cost_with(cfg.max_variant, party, rows, classes, false),
        exp_cost(mode, party, rows * classes, &cfg.exp),
        ln_cost(mode, party, rows, -1, ceil_log2(classes).max(0)),
    ];
    parts.iter().fold((0, 0), |(r, b), (pr, pb)| (r + pr, b + pb))
}

/// Rounds and bytes sent by `party` in [`Party::softmax`] of `rows` rows of `classes` logits.
pub fn softmax_cost(mode: TruncMode, party: usize, rows: usize, classes: usize, cfg: &SoftmaxConfig) -> (u64, u64) {
    let n = rows * classes;
    let (pr, pb) = product_cost(mode, party);
    let parts = [
        max_axis_cost_with(cfg.max_variant, party, rows, classes, false),
        exp_cost(mode, party, n, &cfg.exp),
        reciprocal_cost(mode, party, rows, -1, ceil_log2(classes).max(0), cfg.nr_iters),
        (pr, pb * n as u64),
    ];
    parts.iter().fold((0, 0), |(r, b), (pr, pb)| (r + pr, b + pb))
}

/// Smallest `h` with `c <= 2^h`.
fn ceil_log2(c: usize) -> i32 {
    (usize::BITS - c.saturating_sub(1).leading_zeros()) as i32
}

/// `ln(1 + w) ≈ Σ_j LN1P[j]·w^j` on `[0, 1]`: interpolation at the 7 Chebyshev nodes of the
/// interval (maximum error 1.7e-6).
const LN1P: [f64; 7] =
    [1.693663e-06, 0.999832594782, -0.49720333122, 0.315041279909, -0.189019548223, 0.081523177618, -0.017029610589];

/// Smallest probability [`Party::cross_entropy_loss`] takes the log of: `2^-16` (so each sample's
/// loss is at most `16·ln 2 ≈ 11.09`).
pub const LOSS_FLOOR_LOG2: i32 = -16;

impl<B: Backend, T: Transport> Party<B, T> {
    /// Elementwise `x * y / 2^bits` (a fixed-point product with `bits = f`, or with an extra
    /// power-of-two division folded in). **Cost `P` per element.**
    pub fn mul_shift(&mut self, x: &AShare<B>, y: &AShare<B>, bits: u32) -> Result<AShare<B>> {
        check_same("mul_shift", x.shape(), y.shape())?;
        let z = self.product_term(x, y, &|be, p, q| be.binary(BinaryOp::Mul, p, q))?;
        self.truncate_terms_by(z, bits)
    }

    /// `exp(x)` for fixed-point `x` as `(1 + t + t²/2)^(2^n)` with `t = x/2^n` (`n = cfg.iters`):
    /// a truncation by `2^n`, one product for `t²/2`, then `n` fixed-point squarings. The base is
    /// the second-order Taylor polynomial of `e^t`, so the approximation's relative error is about
    /// `|x|³/(6·4^n)` (3.2e-4 at `|x| = 5`, 8.6e-3 at 15.25, for n = 8) instead of the first-order
    /// limit's `x²/2^{n+1}`, whose bias (always negative) would add up in softmax sums.
    ///
    /// Domain: [`exp_domain`], `-2^n <= x < (62 - 2f)·ln 2` (15.25 at f = 20) without the guard;
    /// `cfg.guard` clamps `t` at -1 with a ReLU (9 rounds) so that every encodable `x` below the top
    /// works (at most `2^{-2^n}` below `-2^n`). Rounding adds about `2^{n-f}·e^x` (each squaring
    /// doubles the relative error of its input).
    /// **Cost `T + (1 + n)·P` per element** (+ 9 rounds and the ReLU's bytes with the guard). See
    /// [`exp_cost`].
    pub fn exp(&mut self, x: &AShare<B>, cfg: &ExpConfig) -> Result<AShare<B>> {
        let f = self.codec().frac_bits();
        if cfg.iters == 0 || cfg.iters > f {
            return Err(SharingError::Invalid(format!("exp: {} squarings (must be 1..={f})", cfg.iters)));
        }
        let one = self.codec().one();
        let mut t = self.truncate_by(x, cfg.iters)?;
        let mut y = self.add_scalar(&t, one)?;
        if cfg.guard {
            y = self.relu(&y)?.0;
            t = self.add_scalar(&y, one.wrapping_neg())?;
        }
        let half_sq = self.mul_shift(&t, &t, f + 1)?;
        y = self.add(&y, &half_sq)?;
        for _ in 0..cfg.iters {
            y = self.mul_shift(&y, &y, f)?;
        }
        Ok(y)
    }

    /// Thermometer code of `a`: integer sharings of `c_j = [a >= 2^j]` for `j = lo+1..=hi`, as a
    /// `[hi - lo, n]` tensor (`n = a.len()`). **8 rounds; [`guess_cost`].**
    fn thermometer(&mut self, a: &AShare<B>, lo: i32, hi: i32) -> Result<AShare<B>> {
        let f = self.codec().frac_bits() as i32;
        if lo >= hi || lo + f < 0 || hi + f > 61 {
            return Err(SharingError::Invalid(format!(
                "bit-length range 2^{lo}..2^{hi} invalid for {f} fractional bits (need lo < hi, lo >= -f, hi + f <= 61)"
            )));
        }
        let be = self.backend().clone();
        let (k, n) = ((hi - lo) as usize, a.len());
        let rep = a.map(|t| be.broadcast_to(&be.reshape(t, &[1, n])?, &[k, n]))?;
        let thr: Vec<u64> = (lo + 1..=hi).map(|j| (1u64 << (j + f)).wrapping_neg()).collect();
        let thr = be.broadcast_to(&be.upload_owned(RingTensor::new(&[k, 1], thr)?)?, &[k, n])?;
        let d = self.add_public(&rep, &thr)?;
        let m = self.msb(&d)?;
        let ge = self.b_not_bit(&m)?;
        self.b2a_bit_one_round(&ge)
    }

    /// `g(lo) + Σ_j c_j·(g(j) - g(j-1))` in fixed point for thermometer bits `c` (local).
    fn octave_guess(&self, c: &AShare<B>, lo: i32, hi: i32, g: impl Fn(i32) -> f64) -> Result<AShare<B>> {
        let be = self.backend().clone();
        let codec = self.codec();
        let enc = |v: f64| codec.encode(v);
        let n = c.shape()[1];
        let w: Vec<u64> = (lo + 1..=hi).map(|j| Ok(enc(g(j))?.wrapping_sub(enc(g(j - 1))?))).collect::<Result<_>>()?;
        let k = w.len();
        let w = be.broadcast_to(&be.upload_owned(RingTensor::new(&[k, 1], w)?)?, &[k, n])?;
        let s = self.mul_public(c, &w)?.map(|t| be.sum_axis(t, 0, false))?;
        self.add_scalar(&s, enc(g(lo))?)
    }

    /// `1/a` for fixed-point `a` in `[2^lo, 2^{hi+1})` (for example `lo = 0`, `hi = 16`: every
    /// value in `[1, 2^16]`): the octave guess `(2/3)·2^-k` then `iters` Newton-Raphson steps
    /// `y <- y·(2 - a·y)`; the relative error after `t` steps is below `(1/3)^(2^t)` plus a few
    /// LSBs of rounding (4 steps: about `4·2^-f` absolute, so relative error below 1e-3 for
    /// `a <= 2^8` at f = 20). Inputs must be positive; values outside the range converge slowly
    /// (below) or diverge (above `3·2^hi`).
    /// **[`guess_cost`] + `2·iters` products `P`** ([`reciprocal_cost`])
    /// ([`reciprocal_cost`]).
    pub fn reciprocal(&mut self, a: &AShare<B>, lo: i32, hi: i32, iters: u32) -> Result<AShare<B>> {
        let be = self.backend().clone();
        let shape = a.shape().to_vec();
        let flat = a.map(|t| be.reshape(t, &[a.len()]))?;
        let c = self.thermometer(&flat, lo, hi)?;
        let mut y = self.octave_guess(&c, lo, hi, |k| (2.0 / 3.0) * (-k as f64).exp2())?;
        let f = self.codec().frac_bits();
        let two = 2 * self.codec().one();
        for _ in 0..iters {
            let t = self.mul_shift(&flat, &y, f)?;
            let h = self.add_scalar(&self.neg(&t)?, two)?;
            y = self.mul_shift(&y, &h, f)?;
        }
        y.map(|t| be.reshape(t, &shape))
    }

    /// `1/sqrt(a)` for fixed-point `a` in `[2^lo, 2^{hi+1})` with `-f <= lo < hi <= f` (batch
    /// norm: `lo = -17`, `hi = 16`). With `k = floor(log2 a)` from the thermometer code and
    /// `h = floor(k/2)`, the input is normalised to `m = a·2^{-2h}` in `[1, 4)` (one product with
    /// the exact power of two), `1/sqrt(m)` is found from the guess `sqrt(2/3)·2^{-(k-2h)/2}` by
    /// `iters` Newton steps `y <- y·(3 - m·y²)/2` (the halving folded into the truncation; the
    /// relative error `e` maps to `-(3e² + e³)/2` from `e_0` in `[-0.184, 0.155]`: 3 steps reach
    /// 2e-5, 4 steps 5e-10), and the result is `y·2^{-h}`. Every intermediate product stays below
    /// 4, far inside the truncation bound. Relative error below 1e-3 over the whole range at f = 20
    /// with 3 or more steps (the rounding of the last product, below one LSB, dominates at the top).
    ///
    /// Domain `[2^lo, 2^{hi+1})`; outside it `k` is clamped to `[lo, hi]` and the guess is off by
    /// the factor `c^{1/2}` for `a = c·2^{hi+1}` (or `a = c·2^lo`), so with 3 steps the relative
    /// error is about 1e-3 at `c = 1.25`, 2e-2 at 1.5 and 0.4 at 2 (Newton diverges from about
    /// `c = 2.25`), and 8e-3 at `c = 1/2`, 7e-2 at `c = 1/4` below. Inputs `a <= 0` give garbage.
    /// **[`guess_cost`] + `(2 + 3·iters)` products `P` per element.**
    pub fn inv_sqrt(&mut self, a: &AShare<B>, lo: i32, hi: i32, iters: u32) -> Result<AShare<B>> {
        let f = self.codec().frac_bits();
        if hi > f as i32 {
            return Err(SharingError::Invalid(format!("inv_sqrt: range top 2^{hi} above 2^f = 2^{f}")));
        }
        let be = self.backend().clone();
        let shape = a.shape().to_vec();
        let flat = a.map(|t| be.reshape(t, &[a.len()]))?;
        let c = self.thermometer(&flat, lo, hi)?;
        let half = |k: i32| k.div_euclid(2);
        let norm = self.octave_guess(&c, lo, hi, |k| (-2.0 * half(k) as f64).exp2())?;
        let scale = self.octave_guess(&c, lo, hi, |k| (-half(k) as f64).exp2())?;
        let mut y =
            self.octave_guess(&c, lo, hi, |k| (2.0f64 / 3.0).sqrt() * (-(k - 2 * half(k)) as f64 / 2.0).exp2())?;
        let m = self.mul_shift(&flat, &norm, f)?;
        let three = 3 * self.codec().one();
        for _ in 0..iters {
            let y2 = self.mul_shift(&y, &y, f)?;
            let t = self.mul_shift(&m, &y2, f)?;
            let h = self.add_scalar(&self.neg(&t)?, three)?;
            y = self.mul_shift(&y, &h, f + 1)?;
        }
        let y = self.mul_shift(&y, &scale, f)?;
        y.map(|t| be.reshape(t, &shape))
    }

    /// Softmax along the last axis of fixed-point logits: `m = max` (tree, [`Party::max_axis`]),
    /// `e = exp(x - m)`, `p = e · 1/Σe` with the reciprocal over `[2^-1, 2^{ceil(log2 C)+1})`.
    /// Logits must satisfy `max - min <= 2^n` (n = exp squarings; 256 by default) unless the exp
    /// guard is on (the default), and `|x| < 2^{62-f}` (the max protocols' bound). The exp's
    /// inputs `x - max` are at most 0, so its top edge is never reached. Absolute error below 1e-3 (tested for
    /// logits in [-30, 30] and C up to 1000).
    /// **Rounds: `L·ceil(log2 C)` (`L` = 9, or 7 with `max_variant` `LowLatency`) + the exp's +
    /// the reciprocal's + one product's**; rounds and bytes per party: [`softmax_cost`].
    pub fn softmax(&mut self, x: &AShare<B>, cfg: &SoftmaxConfig) -> Result<AShare<B>> {
        let be = self.backend().clone();
        let Shifted { e, sums, classes, .. } = self.shifted_exp("softmax", x, cfg)?;
        let inv = self.reciprocal(&sums, -1, ceil_log2(classes).max(0), cfg.nr_iters)?;
        let inv = inv.map(|t| be.broadcast_to(t, x.shape()))?;
        let f = self.codec().frac_bits();
        self.mul_shift(&e, &inv, f)
    }

    /// Log of the softmax along the last axis: `(x - m) - ln Σ exp(x - m)` with `m` the max, the
    /// sums (in `[1, C]`) through [`ln`](Self::ln) over `[2^-1, 2^{ceil(log2 C)+1})`. The same
    /// bounds on the logits as [`softmax`](Self::softmax); absolute error below 1e-3 (tested for
    /// logits in [-30, 30]). **Rounds and bytes per party: [`log_softmax_cost`].**
    pub fn log_softmax(&mut self, x: &AShare<B>, cfg: &SoftmaxConfig) -> Result<AShare<B>> {
        let be = self.backend().clone();
        let Shifted { u, sums, classes, .. } = self.shifted_exp("log_softmax", x, cfg)?;
        let l = self.ln(&sums, -1, ceil_log2(classes).max(0))?;
        let l = l.map(|t| be.broadcast_to(t, x.shape()))?;
        self.sub(&u, &l)
    }

    /// `x - max` along the last axis, its exponential and the exponential's row sums.
    fn shifted_exp(&mut self, what: &str, x: &AShare<B>, cfg: &SoftmaxConfig) -> Result<Shifted<B>> {
        let be = self.backend().clone();
        let shape = x.shape().to_vec();
        let Some(&c) = shape.last() else {
            return Err(SharingError::Invalid(format!("{what} of a scalar")));
        };
        if c == 0 {
            return Err(SharingError::Invalid(format!("{what} over an empty last axis: {shape:?}")));
        }
        let last = shape.len() - 1;
        let mut kept = shape.clone();
        kept[last] = 1;
        let (m, _) = self.max_axis_with(x, last, false, cfg.max_variant)?;
        let m = m.map(|t| be.broadcast_to(&be.reshape(t, &kept)?, &shape))?;
        let u = self.sub(x, &m)?;
        let e = self.exp(&u, &cfg.exp)?;
        let sums = e.map(|t| be.sum_axis(t, last, true))?;
        Ok(Shifted { u, e, sums, classes: c })
    }

    /// Gradient of the mean cross-entropy of softmax outputs `p` (`[N, C]`) against one-hot
    /// labels `y` (fixed point): `(p - y) / N`, a division by a power of two exactly as a
    /// truncation, otherwise a product with the encoded `1/N`. **Cost `T` per element.**
    pub fn cross_entropy_grad(&mut self, p: &AShare<B>, y: &AShare<B>) -> Result<AShare<B>> {
        check_same("cross_entropy_grad", p.shape(), y.shape())?;
        let n = match p.shape() {
            [n, _] if *n > 0 => *n,
            s => return Err(SharingError::Invalid(format!("cross_entropy_grad expects [N, C] with N > 0, got {s:?}"))),
        };
        let d = self.sub(p, y)?;
        if n.is_power_of_two() {
            if n == 1 {
                return Ok(d);
            }
            return self.truncate_by(&d, n.trailing_zeros());
        }
        let inv = self.codec().encode(1.0 / n as f64)?;
        let scaled = self.mul_scalar(&d, inv)?;
        let f = self.codec().frac_bits();
        self.truncate_by(&scaled, f)
    }

    /// Concatenation of sharings (arithmetic or binary) along `axis` (local).
    pub(crate) fn cat<K: ShareKind>(&self, parts: &[&Shares<B, K>], axis: usize) -> Result<Shares<B, K>> {
        let be = self.backend();
        let firsts: Vec<&B::Tensor> = parts.iter().map(|p| p.first()).collect();
        let seconds: Vec<&B::Tensor> = parts.iter().map(|p| p.second()).collect();
        Shares::from_parts(be.concat(&firsts, axis)?, be.concat(&seconds, axis)?)
    }

    /// Natural logarithm of fixed-point `x` in `[2^lo, 2^{hi+1})` (`hi <= f`): with
    /// `k = floor(log2 x)` from the thermometer code, `ln x = k·ln 2 + ln(1 + w)`, `1 + w = x·2^-k`
    /// in `[1, 2)` (one product with the exact power of two), and `ln(1 + w)` a degree-6 polynomial
    /// (error 1.7e-6) whose powers take three product rounds. Absolute error below 1e-5 in range;
    /// outside it the polynomial is extrapolated (wrong).
    /// **[`guess_cost`] + four products `P` (on 1, 1, 2 and 2 elements per input element) + `T`.**
    pub fn ln(&mut self, x: &AShare<B>, lo: i32, hi: i32) -> Result<AShare<B>> {
        let f = self.codec().frac_bits();
        if hi > f as i32 {
            return Err(SharingError::Invalid(format!("ln: range top 2^{hi} above 2^f = 2^{f}")));
        }
        let be = self.backend().clone();
        let shape = x.shape().to_vec();
        let n = x.len();
        let flat = x.map(|t| be.reshape(t, &[n]))?;
        let c = self.thermometer(&flat, lo, hi)?;
        let norm = self.octave_guess(&c, lo, hi, |k| (-k as f64).exp2())?;
        let k_ln2 = self.octave_guess(&c, lo, hi, |k| k as f64 * std::f64::consts::LN_2)?;
        let m = self.mul_shift(&flat, &norm, f)?;
        let w = self.add_scalar(&m, self.codec().one().wrapping_neg())?;
        let w2 = self.mul_shift(&w, &w, f)?;
        let both = self.mul_shift(&self.cat(&[&w, &w2], 0)?, &self.cat(&[&w2, &w2], 0)?, f)?;
        let w3 = both.map(|t| be.slice(t, 0, 0, n))?;
        let w4 = both.map(|t| be.slice(t, 0, n, 2 * n))?;
        let both = self.mul_shift(&self.cat(&[&w, &w2], 0)?, &self.cat(&[&w4, &w4], 0)?, f)?;
        let w5 = both.map(|t| be.slice(t, 0, 0, n))?;
        let w6 = both.map(|t| be.slice(t, 0, n, 2 * n))?;
        // Σ_j c_j·w^j at scale 2^{2f}, then one truncation.
        let codec = self.codec();
        let mut acc = self.public_share(&[n], codec.encode(LN1P[0])?.wrapping_mul(codec.one()))?;
        for (wj, cj) in [&w, &w2, &w3, &w4, &w5, &w6].into_iter().zip(&LN1P[1..]) {
            let term = self.mul_scalar(wj, codec.encode(*cj)?)?;
            acc = self.add(&acc, &term)?;
        }
        let poly = self.truncate_by(&acc, f)?;
        let y = self.add(&k_ln2, &poly)?;
        y.map(|t| be.reshape(t, &shape))
    }

    /// The mean cross-entropy loss `-(1/N) Σ_i ln(Σ_c y_ic·p_ic)` of softmax outputs `p` against
    /// one-hot labels `y` (`[N, C]`, fixed point), as a shared scalar of shape `[1]` (reveal it only
    /// if and when it should be reported). Off the training hot path: the gradient
    /// ([`cross_entropy_grad`](Self::cross_entropy_grad)) does not need it. Each sample's
    /// probability is floored at `2^-16` ([`LOSS_FLOOR_LOG2`]) with a private max.
    /// **Cost:** a product `P` on `N·C` elements, the floor (9 rounds, `M(N) + X(N)` B: MSB and
    /// `x * [b]` bytes), [`ln`](Self::ln) of `N` elements, and `T` on one element (the mean).
    pub fn cross_entropy_loss(&mut self, p: &AShare<B>, y: &AShare<B>) -> Result<AShare<B>> {
        check_same("cross_entropy_loss", p.shape(), y.shape())?;
        let n = match p.shape() {
            [n, _] if *n > 0 => *n,
            s => return Err(SharingError::Invalid(format!("cross_entropy_loss expects [N, C] with N > 0, got {s:?}"))),
        };
        let be = self.backend().clone();
        let f = self.codec().frac_bits();
        if (f as i32) < -LOSS_FLOOR_LOG2 {
            return Err(SharingError::Invalid(format!(
                "cross_entropy_loss needs at least 16 fractional bits, not {f}"
            )));
        }
        let py = self.mul_shift(p, y, f)?;
        let q = py.map(|t| be.sum_axis(t, 1, false))?;
        let floor = self.public_share(&[n], 1u64 << (f as i32 + LOSS_FLOOR_LOG2))?;
        let q = self.max2(&q, &floor)?;
        let l = self.ln(&q, LOSS_FLOOR_LOG2, 0)?;
        let total = l.map(|t| be.sum_axis(&be.reshape(t, &[1, n])?, 1, false))?;
        let scaled = self.mul_scalar(&total, self.codec().encode(-1.0 / n as f64)?)?;
        self.truncate_by(&scaled, f)
    }
}
