//! How to write a protocol outside this crate.
//!
//! A protocol is a function that every party calls with the same public arguments, in the same
//! order relative to the other protocols. It works on one party's view of the sharings and uses
//! three things besides local ring operations on the shares (through [`Party::backend`](crate::Party::backend)):
//!
//! * **Communication**: [`Party::round`](crate::Party::round) sends to and receives from the two neighbours in one
//!   round. All three parties must call it the same number of times, in the same order; every
//!   round is counted in [`Party::counters`](crate::Party::counters), so the protocol's cost can be checked exactly.
//! * **Correlated randomness**: [`Party::register_stream`](crate::Party::register_stream) gives the protocol its own named
//!   [`Stream`](crate::Stream); [`Party::draw`](crate::Party::draw) reads it under `K_i` ([`KeyRole::Own`](crate::KeyRole::Own), shared with the previous
//!   party), `K_{i+1}` ([`KeyRole::Next`](crate::KeyRole::Next), shared with the next) or the local key, and
//!   [`Party::zero_share_from`](crate::Party::zero_share_from) / [`Party::zero_share_binary_from`](crate::Party::zero_share_binary_from) make zero sharings from it.
//!   Streams are registered once per party (typically when the protocol's state is made) and
//!   never collide with the library's own streams or with each other.
//! * **Shares**: [`AShare::from_parts`](crate::AShare::from_parts) builds this party's pair
//!   `(x_i, x_{i+1})`; [`first`](crate::ashare::Shares::first) and
//!   [`second`](crate::ashare::Shares::second) read it.
//!
//! Every value a party sends must be masked by fresh randomness its receiver does not know
//! (typically a term of a zero sharing); [`crate::audit`] checks this statistically.
//!
//! The example re-randomises a sharing: party `i` adds its term `α_i` of a fresh zero sharing to
//! `x_i` and sends the sum to party `i-1`, which makes new shares of the same value
//! (**1 round, 8 B per element per party**).
//!
//! ```rust
//! use cryptgpu_kernels_cpu::CpuBackend;
//! use cryptgpu_net::{Peer, Round, Transport};
//! use cryptgpu_ring::{Backend, BinaryOp, RingTensor};
//! use cryptgpu_sharing::{run_local, AShare, Party, Result, RunConfig, SharingError, Stream};
//!
//! /// Fresh shares of `x`; `masks` registered with `register_stream` at every party.
//! fn refresh<B: Backend, T: Transport>(p: &mut Party<B, T>, masks: Stream, x: &AShare<B>) -> Result<AShare<B>> {
//!     let alpha = p.zero_share_from(masks, x.shape())?;
//!     let z = p.backend().binary(BinaryOp::Add, x.first(), &alpha)?;
//!     let mut got = p.round(Round::new().send(Peer::Prev, p.download(&z)?.into_data()).recv(Peer::Next, x.len()))?;
//!     let z_next = p.upload(&RingTensor::new(x.shape(), got.take(Peer::Next)?)?)?;
//!     AShare::from_parts(z, z_next)
//! }
//!
//! let outs = run_local(CpuBackend, RunConfig::default(), |p| {
//!     let masks = p.register_stream("refresh")?;
//!     let v = RingTensor::new(&[2], vec![3, 4])?;
//!     let x = p.input(0, (p.id() == 0).then_some(&v), &[2])?;
//!     let before = p.counters();
//!     let y = refresh(p, masks, &x)?;
//!     let cost = p.counters().since(&before);
//!     Ok::<_, SharingError>((p.reveal(&y)?.into_data(), cost.rounds, cost.bytes_sent))
//! })?;
//! assert!(outs.iter().all(|o| o.value == (vec![3, 4], 1, 16)));
//! # Ok::<(), SharingError>(())
//! ```
