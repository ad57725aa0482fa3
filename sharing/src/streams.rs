//! Correlated randomness: the pairwise AES-128-CTR keys, named streams and their lock-step
//! counters.
//!
//! Party `P_i` holds three keys ([`KeyRole`]):
//! * `Own` = `K_i`, drawn by `P_i` and sent to `P_{i-1}`: shared with [`Peer::Prev`](cryptgpu_net::Peer::Prev);
//! * `Next` = `K_{i+1}`, received from `P_{i+1}`: shared with [`Peer::Next`](cryptgpu_net::Peer::Next);
//! * `Local`, known to `P_i` alone.
//!
//! A draw from `(key, stream)` reads the AES-CTR stream whose stream id is the stream's and whose
//! counter starts where the previous draw from the same `(key, stream)` ended
//! (see `cryptgpu_ring::prg`). Both holders of a key draw the same sizes in the same order, so they
//! read identical values; distinct streams keep unrelated protocols from ever reading the same
//! keystream.
//!
//! The library's own protocols use built-in streams that code outside the crate cannot name.
//! Other protocols register named streams ([`Party::register_stream`](crate::Party::register_stream)):
//! the id is derived from the name alone, so every party gets the same [`Stream`] whatever the
//! order of registration, and it lies in an id space disjoint from the built-in streams.

use std::collections::BTreeMap;

use cryptgpu_ring::prg::{blocks_for, Key};
use cryptgpu_ring::shape::checked_numel;
use cryptgpu_ring::Backend;

use crate::error::{Result, SharingError};

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

/// A correlated-randomness stream: a built-in one, or one registered by name with
/// [`Party::register_stream`](crate::Party::register_stream). Opaque; only a party hands them out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Stream {
    id: u64,
}

/// Bit set in the id of every registered stream (built-in ids are small integers).
const REGISTERED: u64 = 1 << 63;

impl Stream {
    /// The stream id of a registered `name`: 64-bit FNV-1a of its UTF-8 bytes with the top bit set
    /// (stable across platforms and builds, so all parties agree).
    fn named(name: &str) -> Stream {
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
        Stream { id: hash | REGISTERED }
    }
}

/// The library's built-in streams; the value is the AES-CTR stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
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
    // 5 was party-private randomness, never used; left free so the ids below stay the same.
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

impl Purpose {
    /// The built-in stream.
    pub(crate) fn stream(self) -> Stream {
        Stream { id: self as u64 }
    }
}

/// A party's keys, registered stream names and per-(key, stream) block counters.
#[derive(Clone)]
pub(crate) struct Streams {
    keys: [Key; 3],
    /// Next block counter of each stream under each key role (streams absent: all at zero).
    counters: BTreeMap<u64, [u64; 3]>,
    /// Names of the registered streams, by id.
    names: BTreeMap<u64, String>,
}

impl std::fmt::Debug for Streams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Streams").field("counters", &self.counters).field("names", &self.names).finish_non_exhaustive()
    }
}

impl Streams {
    /// Streams over the three keys, all counters at zero, no names registered.
    pub(crate) fn new(own: Key, next: Key, local: Key) -> Self {
        Streams { keys: [own, next, local], counters: BTreeMap::new(), names: BTreeMap::new() }
    }

    /// Registers the stream `name`; an error if the name, or another name with the same id, is
    /// already registered, or if the name is empty.
    pub(crate) fn register(&mut self, name: &str) -> Result<Stream> {
        if name.is_empty() {
            return Err(SharingError::Invalid("a stream name must not be empty".into()));
        }
        let stream = Stream::named(name);
        if let Some(old) = self.names.get(&stream.id) {
            return Err(SharingError::Invalid(if old == name {
                format!("stream {name:?} is already registered")
            } else {
                format!("stream {name:?} has the same id as the registered stream {old:?}; choose another name")
            }));
        }
        self.names.insert(stream.id, name.to_owned());
        Ok(stream)
    }

    /// Draws a tensor of `shape` from `(role, stream)` and advances that counter. A registered
    /// stream must have been registered here.
    pub(crate) fn draw<B: Backend>(
        &mut self,
        backend: &B,
        role: KeyRole,
        stream: Stream,
        shape: &[usize],
    ) -> Result<B::Tensor> {
        if stream.id & REGISTERED != 0 && !self.names.contains_key(&stream.id) {
            return Err(SharingError::Invalid(format!("{stream:?} is not registered at this party")));
        }
        let n = checked_numel("prg draw", shape)?;
        let counter = &mut self.counters.entry(stream.id).or_default()[role as usize];
        let t = backend.prg_fill(&self.keys[role as usize], stream.id, *counter, shape)?;
        *counter += blocks_for(n);
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_give_fixed_ids_apart_from_the_built_in_ones() {
        // FNV-1a test vector ("a" -> 0xaf63dc4c8601ec8c), top bit set.
        assert_eq!(Stream::named("a").id, 0xaf63_dc4c_8601_ec8c | REGISTERED);
        assert_eq!(Purpose::ExactTruncation.stream().id, 10);
        let mut s = Streams::new([0; 16], [1; 16], [2; 16]);
        let a = s.register("a").unwrap();
        assert_eq!(a, Stream::named("a"));
        assert!(s.register("a").unwrap_err().to_string().contains("already registered"));
        assert!(s.register("").is_err());
        // A different name with a registered id (planted: real FNV collisions are hard to find).
        s.names.insert(Stream::named("b").id, "c".into());
        assert!(s.register("b").unwrap_err().to_string().contains("same id as the registered stream \"c\""));
        let unregistered = Stream::named("d");
        assert!(s.draw(&cryptgpu_kernels_cpu::CpuBackend, KeyRole::Own, unregistered, &[1]).is_err());
    }
}
