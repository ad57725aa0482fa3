//! [`RingTensor`]: a host-resident tensor over Z_2^64.

use crate::error::{shape_err, Result};
use crate::shape::{checked_numel, numel};

/// A row-major tensor of ring elements held in host memory.
///
/// This is the exchange format between the host and every backend (upload/download) and the
/// payload of network messages. The invariant `data.len() == shape.iter().product()` always holds.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RingTensor {
    shape: Vec<usize>,
    data: Vec<u64>,
}

impl RingTensor {
    /// Builds a tensor; fails when `data` does not have exactly `prod(shape)` elements.
    pub fn new(shape: &[usize], data: Vec<u64>) -> Result<Self> {
        let n = checked_numel("RingTensor::new", shape)?;
        if n != data.len() {
            return Err(shape_err(
                "RingTensor::new",
                format!("shape {shape:?} needs {n} elements, got {}", data.len()),
            ));
        }
        Ok(RingTensor { shape: shape.to_vec(), data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        RingTensor { shape: shape.to_vec(), data: vec![0; numel(shape)] }
    }

    /// A tensor whose element at flat index `i` is `f(i)`.
    pub fn from_fn(shape: &[usize], f: impl FnMut(usize) -> u64) -> Self {
        RingTensor { shape: shape.to_vec(), data: (0..numel(shape)).map(f).collect() }
    }

    /// A tensor of signed integers, stored in two's complement.
    pub fn from_i64(shape: &[usize], values: &[i64]) -> Result<Self> {
        Self::new(shape, values.iter().map(|&v| v as u64).collect())
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[u64] {
        &self.data
    }

    /// The elements, mutable (the shape cannot change through this).
    pub fn data_mut(&mut self) -> &mut [u64] {
        &mut self.data
    }

    /// Consumes the tensor, returning its elements.
    pub fn into_data(self) -> Vec<u64> {
        self.data
    }

    /// Splits the tensor into its shape and elements.
    pub fn into_parts(self) -> (Vec<usize>, Vec<u64>) {
        (self.shape, self.data)
    }

    /// The same elements under another shape with the same element count.
    pub fn reshape(self, shape: &[usize]) -> Result<Self> {
        Self::new(shape, self.data)
    }

    /// The signed (two's-complement) view of the elements.
    pub fn to_i64(&self) -> Vec<i64> {
        self.data.iter().map(|&v| v as i64).collect()
    }
}

impl std::fmt::Debug for RingTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 8;
        write!(f, "RingTensor{:?}[", self.shape)?;
        for (i, v) in self.data.iter().take(SHOWN).enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            write!(f, "{v:#x}")?;
        }
        if self.data.len() > SHOWN {
            write!(f, ", ... ({} more)", self.data.len() - SHOWN)?;
        }
        write!(f, "]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construction_checks_length() {
        assert!(RingTensor::new(&[2, 3], vec![0; 6]).is_ok());
        assert!(RingTensor::new(&[2, 3], vec![0; 5]).is_err());
        assert!(RingTensor::new(&[usize::MAX, 3], vec![]).is_err());
        assert_eq!(RingTensor::zeros(&[]).len(), 1);
        let t = RingTensor::from_i64(&[2], &[-1, 2]).unwrap();
        assert_eq!(t.data(), &[u64::MAX, 2]);
        assert_eq!(t.to_i64(), vec![-1, 2]);
        assert!(t.reshape(&[3]).is_err());
    }
}
