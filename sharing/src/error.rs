//! The error type of the protocol layer.

use cryptgpu_net::NetError;
use cryptgpu_ring::RingError;
use thiserror::Error;

/// Errors of protocols and parties.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum SharingError {
    /// A tensor operation failed (shape mismatch, device error, ...).
    #[error(transparent)]
    Ring(#[from] RingError),
    /// Communication with a neighbour failed.
    #[error(transparent)]
    Net(#[from] NetError),
    /// A protocol was called with inconsistent arguments.
    #[error("invalid protocol call: {0}")]
    Invalid(String),
    /// A party's thread panicked (in-process runs only).
    #[error("party {party} panicked: {message}")]
    Panic {
        /// The party whose thread panicked.
        party: usize,
        /// The panic message.
        message: String,
    },
}

/// Result with [`SharingError`].
pub type Result<T, E = SharingError> = std::result::Result<T, E>;
