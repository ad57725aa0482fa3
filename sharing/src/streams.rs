//! Correlated randomness: the pairwise AES-128-CTR keys and their lock-step stream counters.
//!
//! Party `P_i` holds three keys:
//! * `own` = `K_i`, drawn by `P_i` and sent to `P_{i-1}`: shared with [`Peer::Prev`](cryptgpu_net::Peer::Prev);
//! * `next` = `K_{i+1}`, received from `P_{i+1}`: shared with [`Peer::Next`](cryptgpu_net::Peer::Next);
//! * `local`, known to `P_i` alone.
//!
//! A draw from `(key, purpose)` reads the AES-CTR stream whose stream id is the purpose and whose
//! counter starts where the previous draw from the same `(key, purpose)` ended
//! (see `cryptgpu_ring::prg`). Both holders of a key draw the same sizes in the same order, so they
//! read identical values; the purposes keep unrelated protocols from ever sharing a stream.

use cryptgpu_ring::prg::{blocks_for, Key};
use cryptgpu_ring::shape::checked_numel;
use cryptgpu_ring::Backend;

use crate::error::Result;

/// Which of a party's keys a draw uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// `K_i`, shared with the previous party.
    Own = 0,
    /// `K_{i+1}`, shared with the next party.
    Next = 1,
    /// Known to this party only.
    Local = 2,
}

/// What a draw is for; the value is the AES-CTR stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Arithmetic zero sharings.
    ZeroShare = 0,
    /// Binary (XOR) zero sharings.
    BinaryZeroShare = 1,
    /// Input sharing masks.
    Input = 2,
    /// Random replicated shares.
    RandomShare = 3,
    /// Truncation masks.
    Truncation = 4,
    /// Party-private randomness.
    Private = 5,
    /// Binary input masks (`b_input` and the input step of MSB / A2B).
    BinaryInput = 6,
    /// Masks of the fused input-and-generate round of MSB / A2B.
    CarryGenerate = 7,
    /// One-time pads of the three-party OTs (bit injection, `x * [b]`).
    OtMask = 8,
    /// Output randomness of the three-party OTs.
    OtOutput = 9,
    /// Masks of the exact truncation (OT masks, output re-randomisation).
    ExactTruncation = 10,
}

const PURPOSES: usize = 11;

/// A party's keys and per-(key, purpose) block counters.
#[derive(Clone)]
pub struct Streams {
    keys: [Key; 3],
    counters: [[u64; PURPOSES]; 3],
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Streams").field("counters", &self.counters).finish_non_exhaustive()
    }
}

impl Streams {
    /// Streams over the three keys, all counters at zero.
    pub fn new(own: Key, next: Key, local: Key) -> Self {
        Streams { keys: [own, next, local], counters: [[0; PURPOSES]; 3] }
    }

    /// Draws a tensor of `shape` from `(role, purpose)` and advances that counter.
    pub fn draw<B: Backend>(
        &mut self,
        backend: &B,
        role: KeyRole,
        purpose: Purpose,
        shape: &[usize],
    ) -> Result<B::Tensor> {
        let n = checked_numel("prg draw", shape)?;
        let counter = &mut self.counters[role as usize][purpose as usize];
        let t = backend.prg_fill(&self.keys[role as usize], purpose as u64, *counter, shape)?;
        *counter += blocks_for(n);
        Ok(t)
    }
}
