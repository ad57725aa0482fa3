//! Replicated secret sharing over Z_2^64 among three parties, and the protocols on it.
//!
//! * [`Party`]: a party's id, backend, transport and PRG streams ([`streams`]); key setup.
//! * [`AShare`]: 2-out-of-3 replicated arithmetic shares (ABY3 layout: party `i` holds `(x_i, x_{i+1})`).
//! * [`arith`]: input, reveal, linear operations, products (elementwise, matmul, conv), truncation.
//! * [`BShare`] and [`binary`]: replicated XOR sharings, AND with re-randomisation.
//! * [`convert`]: MSB, A2B, bit injection and `x * [b]`.
//! * [`compare`]: DReLU, ReLU, comparisons, sign, abs, max / argmax, max pooling.
//! * [`approx`]: exp, reciprocal, inverse square root, softmax, cross-entropy gradient.
//! * [`norm`]: the forward pass of a training batch norm (batch statistics, normalisation).
//! * [`protocol`]: how to write a protocol outside the crate (rounds, named streams, shares).
//! * [`runner`]: runs a closure as three in-process parties and collects outputs and counters.
//! * [`deploy`]: runs a closure as one party of a TCP deployment ([`run_tcp`]); job tags, key sources.
//! * [`timing`]: timing a protocol inside the parties (warm-up, lined-up repetitions).
//! * [`audit`]: statistical checks that every message a party receives looks uniformly random.
//!
//! Protocols are generic over [`cryptgpu_ring::Backend`] and [`cryptgpu_net::Transport`]; they
//! never name a device or a network. Semi-honest security with an honest majority: every value
//! that leaves a party is masked by fresh correlated randomness.
#![deny(missing_docs)]

pub mod approx;
pub mod arith;
pub mod ashare;
pub mod audit;
pub mod binary;
pub mod compare;
pub mod convert;
pub mod deploy;
pub mod error;
mod io;
pub mod norm;
pub mod party;
pub mod protocol;
pub mod runner;
pub mod streams;
pub mod timing;
pub mod trunc;

pub use ashare::AShare;
pub use binary::BShare;
pub use deploy::{run_tcp, TcpLink};
pub use error::{Result, SharingError};
pub use party::{KeySource, Party};
pub use runner::{run_local, run_local_keyed, run_local_with, LocalLink, PartyOutput, RunConfig};
pub use streams::{KeyRole, Stream};
pub use trunc::TruncMode;
