//! [`AShare`]: one party's view of a 2-out-of-3 replicated arithmetic sharing.

use cryptgpu_ring::{Backend, DeviceTensor};

use crate::error::{Result, SharingError};

/// Party `i`'s pair `(x_i, x_{i+1})` of a value `x = x_0 + x_1 + x_2 mod 2^64`.
///
/// Any two parties together hold all three shares; any single party's pair is uniformly random
/// and independent of `x` (for values produced by the protocols).
pub struct AShare<B: Backend> {
    first: B::Tensor,
    second: B::Tensor,
}

impl<B: Backend> Clone for AShare<B> {
    fn clone(&self) -> Self {
        AShare { first: self.first.clone(), second: self.second.clone() }
    }
}

impl<B: Backend> std::fmt::Debug for AShare<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Shares are not printed, only their shape.
        write!(f, "AShare{:?}", self.shape())
    }
}

impl<B: Backend> AShare<B> {
    /// A sharing from this party's two shares; their shapes must agree.
    pub fn from_parts(first: B::Tensor, second: B::Tensor) -> Result<Self> {
        if first.shape() != second.shape() {
            return Err(SharingError::Invalid(format!(
                "share shapes differ: {:?} vs {:?}",
                first.shape(),
                second.shape()
            )));
        }
        Ok(AShare { first, second })
    }

    /// The shape of the shared tensor.
    pub fn shape(&self) -> &[usize] {
        self.first.shape()
    }

    /// Number of shared elements.
    pub fn len(&self) -> usize {
        self.first.len()
    }

    /// True when the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `x_i`, the share this party holds with the previous party.
    pub fn first(&self) -> &B::Tensor {
        &self.first
    }

    /// `x_{i+1}`, the share this party holds with the next party.
    pub fn second(&self) -> &B::Tensor {
        &self.second
    }

    /// Both shares, by value.
    pub fn into_parts(self) -> (B::Tensor, B::Tensor) {
        (self.first, self.second)
    }

    /// Applies a local, linear, shape-changing map to both shares (reshape, permute, slice, ...).
    pub fn map(&self, mut f: impl FnMut(&B::Tensor) -> cryptgpu_ring::Result<B::Tensor>) -> Result<Self> {
        Self::from_parts(f(&self.first)?, f(&self.second)?)
    }
}
