//! The forward pass of a batch norm in training ([`Party::batch_norm_train`]): batch statistics,
//! normalisation and the affine map in **15 rounds** (exact truncation; 17 in probabilistic mode),
//! where composing products, [`Party::inv_sqrt`] (3 Newton steps) and an affine map takes 54.
//! Nothing is opened.
//!
//! For `x` of shape `[N, C, ...]` with `m` values per channel, `t = ceil(log2 m)` and
//! `ρ = m / 2^t` (in `(1/2, 1]`), and `P`, `T` the per-element costs of a fixed-point product and
//! of a truncation ([`crate::trunc`]):
//!
//! 1. `mean = Σx / m` per channel: the channel sums times the encoded `1/m` (with the extra bits
//!    of `nn`'s `lincomb`), truncated once. **`T` on `C` elements.**
//! 2. `var = Σ (x - mean)² / 2^t`, that is `ρ·σ²` (`σ²` the biased batch variance): the product
//!    terms of `xc·xc` (`xc = x - mean`) are summed per channel before anything is sent, and the sum
//!    is truncated by `f + t`, a power of two, so no `1/m` rounding. **`P` on `C` elements.** The
//!    truncation bound asks `Σ xc² < 2^(62-2f)` (`2^22` at f = 20), as the composition did.
//! 3. `u = var + ρ·eps = ρ(σ² + eps)` against the `J - 1` inner edges `τ_j = 2^{lo - 1 + j/Q}` of
//!    `J = (hi - lo + 2)·Q` buckets over `[2^{lo-1}, 2^{hi+1})` (`(lo, hi)` = [`BN_VAR_RANGE`],
//!    `Q` = [`BN_SUB_OCTAVES`]), each edge rounded to the fixed-point grid: one batched MSB
//!    ([`MsbVariant::LowLatency`]), **6 rounds**, on `(J - 1)·C` elements. XORs of neighbouring
//!    bits give the one-hot bucket `o_j` (local).
//! 4. `1/sqrt(σ² + eps) = sqrt(ρ)·u^{-1/2}`, and `u^{-1/2}` on bucket `j` is its minimax line
//!    `α_j + β_j (u - τ_j)` over the grid points of the bucket. Every bucket's line
//!    `L_j = A_j + B_j·(u - τ_j)`, with the public integers `A_j = sqrt(ρ)·α_j·2^F`,
//!    `B_j = sqrt(ρ)·β_j·2^{F-f}` (`F` = [`ISTD_BITS`]), is local (and meaningless outside its
//!    bucket); one [`Party::mul_bit_one_round`] on `J·C` elements gives `o_j·L_j`, exactly
//!    (ring arithmetic), and their sum is `istd` at scale `2^F`. **1 round.**
//! 5. One truncation by `F - f` gives `istd`. **`T` on `C` elements.**
//! 6. `scale = gamma·istd`. **`P` on `C` elements.**
//! 7. `xhat = xc·istd` and `y = xc·scale + beta`, one product call. **`P` on `2·N·C·...` elements.**
//!
//! Rounds: `2T + 3P + 6 + 1`; bytes per party: [`batch_norm_cost`].
//!
//! **Accuracy.** A line over a bucket of ratio `r = 2^{1/Q}` is off by at most about
//! `(3/64)·(r - 1)²` relative (9.2e-5 for `Q = 16`; buckets of a few grid points are exact at
//! them); the rounding of `istd` to `f` bits adds `2^-f / istd` (8.6e-5 at the top, `σ² = 2^13`,
//! at f = 20). Outside the range: below it, `istd` is clamped at the bottom bucket's value; above
//! it, the top bucket's line is extrapolated and wrong.

use cryptgpu_net::Transport;
use cryptgpu_ring::{Backend, BinaryOp, RingTensor};

use crate::ashare::AShare;
use crate::convert::{msb_variant_bytes, msb_variant_rounds, mul_bit_one_round_bytes, MsbVariant};
use crate::error::{Result, SharingError};
use crate::party::Party;
use crate::trunc::{product_cost, truncation_cost, TruncMode};

/// Where `σ² + eps` of a training batch norm must lie: `[2^lo, 2^{hi+1})`, `(lo, hi) = (-17, 12)`:
/// a channel standard deviation between 0.003 and 90.5. The bottom is below PyTorch's default
/// `eps` (1e-5); the top is far above what normalised networks produce (PyTorch's ResNets keep
/// batch variances around 1 and below 10^2), and for large batches the truncation bound
/// `Σ (x - mean)² < 2^(62-2f)` (step 2) is the tighter limit anyway (`σ² < 32` at `m = 2^17`).
pub const BN_VAR_RANGE: (i32, i32) = (-17, 12);

/// Buckets per octave of the piecewise-linear inverse square root (see the module doc).
pub const BN_SUB_OCTAVES: i32 = 16;

/// Fractional bits `F` of the inverse square root before its truncation: `2^F` times the largest
/// value, `2^9` (`u = 2^-18`), stays below `2^60`.
pub const ISTD_BITS: u32 = 51;

/// The MSB protocol of the bucket comparisons (6 rounds; the bytes are per channel, not per value).
const VARIANT: MsbVariant = MsbVariant::LowLatency;

/// Outputs of [`Party::batch_norm_train`].
pub struct BatchNormOut<B: Backend> {
    /// `gamma·xhat + beta`.
    pub y: AShare<B>,
    /// `(x - mean) / sqrt(σ² + eps)`.
    pub xhat: AShare<B>,
    /// `gamma / sqrt(σ² + eps)` per channel.
    pub scale: AShare<B>,
    /// The batch mean per channel.
    pub mean: AShare<B>,
    /// `Σ (x - mean)² / 2^t` per channel ([`pow2_bits`]): `m / 2^t` times the biased variance.
    pub var: AShare<B>,
}

/// `t = ceil(log2 m)`, the power of two that [`BatchNormOut::var`] divides by.
pub fn pow2_bits(m: usize) -> u32 {
    usize::BITS - m.saturating_sub(1).leading_zeros()
}

/// The bucket count `J` of step 3.
fn buckets() -> usize {
    let (lo, hi) = BN_VAR_RANGE;
    ((hi - lo + 2) * BN_SUB_OCTAVES) as usize
}

/// Channels and values per channel of an `[N, C, ...]` shape.
fn dims(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(SharingError::Invalid(format!("batch norm expects [N, C, ...], got {shape:?}")));
    }
    let c = shape[1];
    let m = shape.iter().product::<usize>() / c.max(1);
    if m < 2 {
        return Err(SharingError::Invalid(format!("batch norm needs more than one value per channel, got {shape:?}")));
    }
    Ok((c, m))
}

/// Rounds and bytes sent by `party` in [`Party::batch_norm_train`] of an input of `shape`.
pub fn batch_norm_cost(mode: TruncMode, party: usize, shape: &[usize]) -> Result<(u64, u64)> {
    let (c, _) = dims(shape)?;
    let n: usize = shape.iter().product();
    let (pr, pb) = product_cost(mode, party);
    let (tr, tb) = truncation_cost(mode, party);
    let j = buckets();
    let rounds = 2 * tr + 3 * pr + msb_variant_rounds(VARIANT) + 1;
    let bytes = (2 * tb + 2 * pb) * c as u64
        + msb_variant_bytes(VARIANT, party, (j - 1) * c)
        + mul_bit_one_round_bytes(party, j * c)
        + 2 * pb * n as u64;
    Ok((rounds, bytes))
}

/// The bucket edges on the grid (`J + 1` integers, `T_0 = 2^{lo-1}`, `T_J = 2^{hi+1}` at scale
/// `2^f`) and each bucket's line `(A_j, B_j)` of step 4 (wrapping integers).
fn bucket_lines(f: u32, rho: f64) -> (Vec<u64>, Vec<u64>, Vec<u64>) {
    let (lo, q) = (BN_VAR_RANGE.0 - 1, BN_SUB_OCTAVES);
    let j = buckets();
    let one = (f as f64).exp2();
    let edges: Vec<u64> = (0..=j).map(|i| ((lo as f64 + i as f64 / q as f64).exp2() * one).round() as u64).collect();
    let g = |u: f64| u.powf(-0.5);
    let s = rho.sqrt();
    let (mut a, mut b) = (Vec::with_capacity(j), Vec::with_capacity(j));
    for w in edges.windows(2) {
        // The grid points of the bucket are w[0] ..= w[1] - 1.
        let (lo_u, hi_u) = (w[0] as f64 / one, (w[1].max(w[0] + 1) - 1) as f64 / one);
        let (alpha, beta) = if hi_u <= lo_u {
            (g(lo_u), 0.0)
        } else {
            // Secant, lowered by half its largest gap (where g' equals its slope): minimax.
            let slope = (g(hi_u) - g(lo_u)) / (hi_u - lo_u);
            let at = (-2.0 * slope).powf(-2.0 / 3.0);
            let gap = g(lo_u) + slope * (at - lo_u) - g(at);
            (g(lo_u) - gap / 2.0, slope)
        };
        a.push((s * alpha * (ISTD_BITS as f64).exp2()).round() as i64 as u64);
        b.push((s * beta * ((ISTD_BITS - f) as f64).exp2()).round() as i64 as u64);
    }
    (edges, a, b)
}

impl<B: Backend, T: Transport> Party<B, T> {
    /// Training batch norm of fixed-point `x` (`[N, C, ...]`) with per-channel `gamma`, `beta`
    /// (`[C]`): the steps, costs and accuracy of the [module documentation](crate::norm); `σ² + eps`
    /// must lie in [`BN_VAR_RANGE`]. Needs `18 <= f <= 40` fractional bits.
    pub fn batch_norm_train(
        &mut self,
        x: &AShare<B>,
        gamma: &AShare<B>,
        beta: &AShare<B>,
        eps: f64,
    ) -> Result<BatchNormOut<B>> {
        let shape = x.shape().to_vec();
        let (c, m) = dims(&shape)?;
        for (what, p) in [("gamma", gamma), ("beta", beta)] {
            if p.shape() != [c] {
                return Err(SharingError::Invalid(format!(
                    "batch norm {what} has shape {:?}, expected [{c}] for input {shape:?}",
                    p.shape()
                )));
            }
        }
        let f = self.codec().frac_bits();
        if !(18..=40).contains(&f) {
            return Err(SharingError::Invalid(format!("batch norm needs 18..=40 fractional bits, not {f}")));
        }
        if !(eps.is_finite() && eps >= 0.0) {
            return Err(SharingError::Invalid(format!("batch norm eps {eps} is not a finite non-negative value")));
        }
        let be = self.backend().clone();
        let inner = shape.iter().product::<usize>() / (shape[0] * c);
        let per_channel = |t: &B::Tensor| -> cryptgpu_ring::Result<B::Tensor> {
            let t = be.reshape(t, &[shape[0], c, inner])?;
            be.sum_axis(&be.sum_axis(&t, 2, false)?, 0, false)
        };
        let mut col = vec![1; shape.len()];
        col[1] = c;
        let spread = |v: &AShare<B>| v.map(|t| be.broadcast_to(&be.reshape(t, &col)?, &shape));

        // 1. The mean, with the extra bits of `nn`'s lincomb for the constant 1/m.
        let e = ((m as f64).log2().floor() as u32).min(61 - f);
        let k = (((f + e) as f64).exp2() / m as f64).round() as u64;
        let mean = self.truncate_by(&self.mul_scalar(&x.map(per_channel)?, k)?, f + e)?;
        let xc = self.sub(x, &spread(&mean)?)?;

        // 2. Σ xc² / 2^t, summed before it is sent.
        let t = pow2_bits(m);
        let z = self.product_term(&xc, &xc, &|be, p, q| be.binary(BinaryOp::Mul, p, q))?;
        let var = self.truncate_terms_by(per_channel(&z)?, f + t)?;

        // 3. The one-hot bucket of u = var + ρ·eps.
        let rho = m as f64 / (t as f64).exp2();
        let u = self.add_scalar(&var, self.codec().encode(rho * eps)?)?;
        let (edges, a, b) = bucket_lines(f, rho);
        let j = a.len();
        let rep = |v: &AShare<B>, rows: usize| v.map(|t| be.broadcast_to(&be.reshape(t, &[1, c])?, &[rows, c]));
        let column = |w: &[u64]| -> Result<B::Tensor> {
            Ok(be.broadcast_to(&be.upload_owned(RingTensor::new(&[w.len(), 1], w.to_vec())?)?, &[w.len(), c])?)
        };
        let neg_edges: Vec<u64> = edges[..j].iter().map(|v| v.wrapping_neg()).collect();
        let dev = self.add_public(&rep(&u, j)?, &column(&neg_edges)?)?;
        let d = dev.map(|t| be.slice(t, 0, 1, j))?;
        let ge = self.msb_with(&d, VARIANT)?;
        let ge = self.b_not_bit(&ge)?;
        let ones = self.b_public(&be.upload_owned(RingTensor::new(&[1, c], vec![1; c])?)?)?;
        let zeros = self.b_public(&be.zeros(&[1, c])?)?;
        let above = self.cat(&[&ones, &ge], 0)?;
        let below = self.cat(&[&ge, &zeros], 0)?;
        let onehot = self.b_xor(&above, &below)?;

        // 4, 5. Every bucket's line A_j + B_j (u - τ_j) (local; wrong outside its bucket), times
        // o_j, summed, truncated by F - f.
        let lines = self.add_public(&self.mul_public(&dev, &column(&b)?)?, &column(&a)?)?;
        let raw = self.mul_bit_one_round(&lines, &onehot)?.map(|t| be.sum_axis(t, 0, false))?;
        let istd = self.truncate_by(&raw, ISTD_BITS - f)?;

        // 6, 7. gamma·istd; xc·istd and xc·scale in one call.
        let scale = self.mul_fp(gamma, &istd)?;
        let prod = self.mul_fp(&self.cat(&[&xc, &xc], 0)?, &self.cat(&[&spread(&istd)?, &spread(&scale)?], 0)?)?;
        let n0 = shape[0];
        let xhat = prod.map(|t| be.slice(t, 0, 0, n0))?;
        let y = self.add(&prod.map(|t| be.slice(t, 0, n0, 2 * n0))?, &spread(beta)?)?;
        Ok(BatchNormOut { y, xhat, scale, mean, var })
    }
}
