//! The fixed-point codec: reals as ring elements scaled by 2^f.
//!
//! # Ranges
//!
//! One bound per operation, each exactly what the code guarantees (`z` is the ring value read as a
//! signed `i64`; the last column is for the default f = 20):
//!
//! | operation | ring value | real values | f = 20 |
//! |---|---|---|---|
//! | [`encode`](FixedPoint::encode) | `round(v·2^f)` in `[-2^63, 2^63)`, else an error | `\|v\| < 2^(63-f)` ([`max_abs`](FixedPoint::max_abs)) | 8.8e12 |
//! | [`decode`](FixedPoint::decode), exact | `\|z\| <= 2^53` | `\|v\| <= 2^(53-f)` | 8.6e9 |
//! | exact truncation of a product, or of a sum of products (matmul, convolution), by `2^f` | `-2^62 <= z < 2^62` at scale `2^(2f)` | `\|x·y\| < 2^(62-2f)` ([`max_product`](FixedPoint::max_product)) | 4.2e6 |
//! | exact truncation of a sharing at scale `2^f` | `-2^62 <= z < 2^62` | `\|x\| < 2^(62-f)` | 4.4e12 |
//! | probabilistic truncation by `2^d` (CryptGPU's) | wrong with probability below `(\|z\| + 2^d)/2^64`, for `\|z\| < 2^63` | about `\|x·y\|·2^(2f-64)` per product | 6e-8·`\|x·y\|` |
//! | comparisons, ReLU | `\|a - b\| < 2^63` | `\|a - b\| < 2^(63-f)` | 8.8e12 |
//! | max, max pooling | inputs in `(-2^62, 2^62)` | `\|x\| < 2^(62-f)` | 4.4e12 |
//!
//! The binding one is the product bound: a convolution or matrix product is truncated once, after
//! the sum, so the bound applies to the sum `Σ x_i·y_i` (the layer's output before the bias), not
//! to each term. Past it the exact truncation is silently wrong, by `2^(64-2f)` in real units
//! (1.7e7 at f = 20) against the sign of the product (a sign flip), with probability about
//! `(|z| - 2^62)/2^63` per element: 0 just past the bound, 1/2 at `|x·y| = 2^(63-2f)`, where the
//! product itself starts to wrap the ring. Nothing detects it, and encodable operands reach it:
//! `x = y = 2^(31-f)` (2048 at f = 20).

use crate::error::{Result, RingError};
use crate::tensor::RingTensor;

/// Fixed-point encoding with `frac_bits` fractional bits (default 20, as CryptGPU).
///
/// * `encode(v) = round_half_even(v * 2^f)` as a two's-complement `u64`; non-finite values and
///   values whose rounded scaled value lies outside `[-2^63, 2^63)` are rejected.
/// * `decode(u) = (u as i64) as f64 / 2^f`, exact while `|u as i64| <= 2^53`.
///
/// Encodable is not the same as safe to multiply: see the [module documentation](crate::fixed) for the
/// bound of every operation, in particular [`max_product`](Self::max_product).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FixedPoint {
    frac_bits: u32,
}

impl Default for FixedPoint {
    fn default() -> Self {
        FixedPoint { frac_bits: Self::DEFAULT_FRAC_BITS }
    }
}

impl FixedPoint {
    /// CryptGPU's default precision.
    pub const DEFAULT_FRAC_BITS: u32 = 20;

    /// A codec with `frac_bits` fractional bits; `frac_bits` must be below 62.
    pub fn new(frac_bits: u32) -> Result<Self> {
        if frac_bits >= 62 {
            return Err(RingError::Invalid {
                op: "FixedPoint::new",
                detail: format!("{frac_bits} fractional bits leave no integer part (max 61)"),
            });
        }
        Ok(FixedPoint { frac_bits })
    }

    /// Number of fractional bits f.
    pub fn frac_bits(&self) -> u32 {
        self.frac_bits
    }

    /// The scale 2^f as a float.
    pub fn scale(&self) -> f64 {
        (self.frac_bits as f64).exp2()
    }

    /// The encoding of 1.0, i.e. 2^f.
    pub fn one(&self) -> u64 {
        1u64 << self.frac_bits
    }

    /// The bound of [`encode`](Self::encode), `2^(63-f)`: `encode` accepts `v` when `v·2^f` rounds
    /// into `[-2^63, 2^63)`, so `-2^(63-f)` is accepted and `2^(63-f)` is not.
    pub fn max_abs(&self) -> f64 {
        ((63 - self.frac_bits) as f64).exp2()
    }

    /// The bound of the exact truncation in real units: a product (or a sum of products) `p` of
    /// fixed-point values is truncated correctly when `-2^(62-2f) <= p < 2^(62-2f)`, that is
    /// `|p| < 2^(62-2f)` (4194304 for f = 20); see the [module documentation](crate::fixed).
    pub fn max_product(&self) -> f64 {
        (62.0 - 2.0 * self.frac_bits as f64).exp2()
    }

    /// Encodes one real.
    pub fn encode(&self, v: f64) -> Result<u64> {
        if !v.is_finite() {
            return Err(RingError::Encode { value: v, frac_bits: self.frac_bits, why: "not finite" });
        }
        let scaled = (v * self.scale()).round_ties_even();
        // i64 covers [-2^63, 2^63); 2^63 itself is exactly representable as f64.
        if !(-(63f64.exp2())..63f64.exp2()).contains(&scaled) {
            return Err(RingError::Encode { value: v, frac_bits: self.frac_bits, why: "out of range" });
        }
        Ok(scaled as i64 as u64)
    }

    /// Decodes one ring element.
    pub fn decode(&self, u: u64) -> f64 {
        (u as i64) as f64 / self.scale()
    }

    /// Encodes a slice into a tensor of the given shape.
    pub fn encode_tensor(&self, shape: &[usize], values: &[f64]) -> Result<RingTensor> {
        let data = values.iter().map(|&v| self.encode(v)).collect::<Result<Vec<_>>>()?;
        RingTensor::new(shape, data)
    }

    /// Decodes every element of a tensor.
    pub fn decode_tensor(&self, t: &RingTensor) -> Vec<f64> {
        t.data().iter().map(|&u| self.decode(u)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rounding() {
        let c = FixedPoint::default();
        assert_eq!(c.encode(1.0).unwrap(), 1 << 20);
        assert_eq!(c.encode(-1.5).unwrap(), 0xFFFF_FFFF_FFE8_0000);
        assert_eq!(c.decode(c.encode(-1.5).unwrap()), -1.5);
        // Half-way cases round to even.
        let lsb = 1.0 / c.scale();
        assert_eq!(c.encode(0.5 * lsb).unwrap(), 0);
        assert_eq!(c.encode(1.5 * lsb).unwrap(), 2);
        assert_eq!(c.encode(2.5 * lsb).unwrap(), 2);
        assert_eq!(c.encode(-0.5 * lsb).unwrap(), 0);
        assert_eq!(c.encode(-1.5 * lsb).unwrap() as i64, -2);
        for v in [0.0, 3.25, -7.0625, 123456.5, -0.000_976_562_5] {
            assert_eq!(c.decode(c.encode(v).unwrap()), v);
        }
    }

    #[test]
    fn rejects_bad_values() {
        let c = FixedPoint::default();
        assert!(c.encode(f64::NAN).is_err());
        assert!(c.encode(f64::INFINITY).is_err());
        assert!(c.encode(c.max_abs()).is_err());
        assert!(c.encode(-c.max_abs()).is_ok());
        assert!(c.encode(1e300).is_err());
        // The largest accepted value: 2^63 - 1024 is the last f64 below 2^63.
        let top = c.max_abs() - 1024.0 / c.scale();
        assert_eq!(c.encode(top).unwrap(), (i64::MAX - 1023) as u64);
        assert!(c.encode(-c.max_abs() - 2048.0 / c.scale()).is_err());
        assert!(FixedPoint::new(62).is_err());
        assert_eq!(FixedPoint::new(16).unwrap().one(), 65536);
    }

    #[test]
    fn product_bound() {
        let c = FixedPoint::default();
        assert_eq!(c.max_product(), 4194304.0);
        assert_eq!(c.max_product() * c.scale() * c.scale(), 62f64.exp2());
        assert_eq!(FixedPoint::new(40).unwrap().max_product(), 2f64.powi(-18));
        // 2^(31-f) squared is exactly the bound: encodable operands far below max_abs reach it.
        let x = c.encode(2048.0).unwrap() as i64 as i128;
        assert_eq!(x * x, 1i128 << 62);
    }
}
