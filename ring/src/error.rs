//! The error type shared by the ring and by every backend.

use thiserror::Error;

/// Errors of ring tensors, the codec and backends.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum RingError {
    /// Operand shapes do not fit the operation.
    #[error("shape mismatch in {op}: {detail}")]
    Shape {
        /// The operation that failed.
        op: &'static str,
        /// What did not fit.
        detail: String,
    },
    /// A parameter is outside its allowed range (axis, shift amount, stride, ...).
    #[error("invalid argument to {op}: {detail}")]
    Invalid {
        /// The operation that failed.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A value cannot be encoded in fixed point.
    #[error("cannot encode {value} with {frac_bits} fractional bits: {why}")]
    Encode {
        /// The offending value.
        value: f64,
        /// The codec's fractional bits.
        frac_bits: u32,
        /// Non-finite or out of range.
        why: &'static str,
    },
    /// The device failed (driver, out of memory, kernel launch).
    #[error("device error: {0}")]
    Device(String),
}

/// Result with [`RingError`].
pub type Result<T, E = RingError> = std::result::Result<T, E>;

/// Shorthand for a [`RingError::Shape`].
pub fn shape_err(op: &'static str, detail: impl Into<String>) -> RingError {
    RingError::Shape { op, detail: detail.into() }
}

/// Shorthand for a [`RingError::Invalid`].
pub fn invalid(op: &'static str, detail: impl Into<String>) -> RingError {
    RingError::Invalid { op, detail: detail.into() }
}
