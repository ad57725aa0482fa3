//! [`AShare`] and [`BShare`]: one party's view of a 2-out-of-3 replicated sharing, arithmetic
//! (`x = x_0 + x_1 + x_2 mod 2^64`) or binary (`x = x_0 ^ x_1 ^ x_2` per `u64` word). Both are the
//! same pair of tensors, [`Shares`], told apart by a marker type so the two cannot be mixed up.

use std::marker::PhantomData;

use cryptgpu_ring::{Backend, DeviceTensor};

use crate::error::{Result, SharingError};

/// What a sharing's three shares combine with.
pub trait ShareKind: Send + Sync + 'static {
    /// Name used when printing (never the shares themselves).
    const NAME: &'static str;
}

/// Arithmetic sharing: the shares add up modulo 2^64.
#[derive(Debug, Clone, Copy)]
pub struct Arith;

/// Binary sharing: the shares XOR together, bit by bit.
#[derive(Debug, Clone, Copy)]
pub struct Xor;

impl ShareKind for Arith {
    const NAME: &'static str = "AShare";
}

impl ShareKind for Xor {
    const NAME: &'static str = "BShare";
}

/// Party `i`'s pair `(x_i, x_{i+1})` of a shared value.
///
/// Any two parties together hold all three shares; any single party's pair is uniformly random
/// and independent of `x` (for values produced by the protocols).
pub struct Shares<B: Backend, K: ShareKind> {
    first: B::Tensor,
    second: B::Tensor,
    kind: PhantomData<K>,
}

/// An arithmetic sharing.
pub type AShare<B> = Shares<B, Arith>;

/// A binary (XOR) sharing on `u64` words.
pub type BShare<B> = Shares<B, Xor>;

impl<B: Backend, K: ShareKind> Clone for Shares<B, K> {
    fn clone(&self) -> Self {
        Shares { first: self.first.clone(), second: self.second.clone(), kind: PhantomData }
    }
}

impl<B: Backend, K: ShareKind> std::fmt::Debug for Shares<B, K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Shares are not printed, only their shape.
        write!(f, "{}{:?}", K::NAME, self.shape())
    }
}

impl<B: Backend, K: ShareKind> Shares<B, K> {
    /// A sharing from this party's two shares; their shapes must agree.
    pub fn from_parts(first: B::Tensor, second: B::Tensor) -> Result<Self> {
        if first.shape() != second.shape() {
            return Err(SharingError::Invalid(format!(
                "{} share shapes differ: {:?} vs {:?}",
                K::NAME,
                first.shape(),
                second.shape()
            )));
        }
        Ok(Shares { first, second, kind: PhantomData })
    }

    /// The shape of the shared tensor.
    pub fn shape(&self) -> &[usize] {
        self.first.shape()
    }

    /// Number of shared elements (words, for binary sharings).
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

    /// Applies a local map to both shares. It must be linear for the sharing's kind: reshape,
    /// permute, slice and sums for arithmetic sharings; shifts, bit permutations and AND with a
    /// public mask for binary ones.
    pub fn map(&self, mut f: impl FnMut(&B::Tensor) -> cryptgpu_ring::Result<B::Tensor>) -> Result<Self> {
        Self::from_parts(f(&self.first)?, f(&self.second)?)
    }
}
