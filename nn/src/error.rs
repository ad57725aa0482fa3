//! Errors of the nn crate.

use cryptgpu_sharing::SharingError;
use thiserror::Error;

/// Errors of models, data and weights.
#[derive(Debug, Error)]
pub enum NnError {
    /// Incompatible shapes between layers, inputs or parameters.
    #[error("shape error: {0}")]
    Shape(String),
    /// A protocol or tensor operation failed.
    #[error(transparent)]
    Sharing(#[from] SharingError),
    /// A file could not be read or written (the cause is the error's `source()`).
    #[error("cannot read or write {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// A data or weight file is malformed.
    #[error("{path}: {detail}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// Weights do not match the model.
    #[error("weights do not match the model: {0}")]
    Weights(String),
    /// Something the model cannot do (e.g. batch-norm training).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// Roles that name no valid party, or a party acting outside its role.
    #[error("roles: {0}")]
    Roles(String),
    /// An ONNX file that does not decode, or whose opset, initializers, inputs or outputs the
    /// import does not accept.
    #[error("ONNX model: {0}")]
    OnnxModel(String),
    /// An ONNX node the import does not support or that is inconsistent.
    #[error("ONNX node '{node}' ({op}): {detail}")]
    Onnx {
        /// The node's name.
        node: String,
        /// Its operator.
        op: String,
        /// What is unsupported or wrong.
        detail: String,
    },
}

impl From<cryptgpu_ring::RingError> for NnError {
    fn from(e: cryptgpu_ring::RingError) -> Self {
        NnError::Sharing(e.into())
    }
}

/// Result with [`NnError`].
pub type Result<T, E = NnError> = std::result::Result<T, E>;
