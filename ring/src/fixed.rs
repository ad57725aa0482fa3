//! The fixed-point codec: reals as ring elements scaled by 2^f.

use crate::error::{Result, RingError};
use crate::tensor::RingTensor;

/// Fixed-point encoding with `frac_bits` fractional bits (default 20, as CryptGPU).
///
/// * `encode(v) = round_half_even(v * 2^f)` as a two's-complement `u64`; non-finite values and
///   values whose scaled magnitude does not fit in `i64` are rejected.
/// * `decode(u) = (u as i64) as f64 / 2^f`, exact while `|u as i64| < 2^53`.
///
/// The representable range is `[-2^(63-f), 2^(63-f))`, but a product of two encoded values
/// carries `2f` fractional bits before truncation, so operands of secure products should stay
/// far below it: `|x * y| < 2^(63-2f)` (about 8.4e6 for f = 20).
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

    /// Largest magnitude accepted by [`encode`](Self::encode): 2^(63-f).
    pub fn max_abs(&self) -> f64 {
        ((63 - self.frac_bits) as f64).exp2()
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
        assert!(FixedPoint::new(62).is_err());
        assert_eq!(FixedPoint::new(16).unwrap().one(), 65536);
    }
}
