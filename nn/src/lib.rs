//! Private neural networks on replicated secret sharing.
//!
//! * [`spec`]: model descriptions (layers, shapes, PyTorch parameter names); [`zoo`]: LeNet,
//!   AlexNet, VGG-16 and the ResNets exactly as the CryptGPU paper benchmarks them, in average-pool
//!   and original max-pool variants.
//! * [`graph`]: the graph of named values every model runs as (layer sequences lower to it).
//! * [`engine`]: one [`Model`](engine::Model) walker (forward, backward, SGD with momentum and weight
//!   decay) over an [`Engine`](engine::Engine): [`private::PrivateEngine`] computes on secret shares,
//!   [`plain::PlainEngine`] is its f64 twin, so accuracy can be checked layer for layer.
//! * [`cost`]: the private cost (rounds, bytes per party) of a forward pass, before anything runs.
//! * [`ranges`]: the twin's values against the fixed-point bounds of the private engine.
//! * [`data`]: MNIST and CIFAR-10 readers; [`weights`]: initialisation, safetensors (with range
//!   checks), batch-norm folding.
//! * [`session`]: roles (who holds the model, the data, who receives each output), secret-sharing
//!   models and batches from their owners, openings to named receivers.
//! * [`onnx`]: ONNX import of PyTorch exports into a validated, typed operator graph with inferred
//!   shapes, lowered to a [`graph::Graph`] with its parameters; export of a graph and its
//!   parameters.
//! * [`train`]: the private training and evaluation loops, their plaintext twins and scores.
#![deny(missing_docs)]

pub mod cost;
pub mod data;
pub mod engine;
pub mod error;
pub mod graph;
pub mod onnx;
pub mod plain;
pub mod private;
pub mod ranges;
pub mod session;
pub mod spec;
pub mod train;
pub mod weights;
pub mod zoo;

pub use error::{NnError, Result};
