//! ONNX import and export: reading a model file (e.g. written by `torch.onnx.export`) into a
//! validated, typed operator graph, lowering that to the [`Graph`](crate::graph::Graph) every
//! model runs as ([`OnnxGraph::to_model`]), and writing a graph with its parameters back.
//!
//! **Import**, first half: reading a model file (e.g. written by `torch.onnx.export`) into a
//! validated, typed operator graph.
//! [`read_onnx`] decodes the protobuf, checks the operator set (`ai.onnx`, opset 11 to 20),
//! collects the FLOAT initializers, finds the single graph input and output, parses and checks
//! every node's attributes against the ONNX operator specification, infers the shape of every
//! value with a symbolic batch axis [`Dim::Batch`], and evaluates the shape-computing chains
//! (`Shape`, `Gather`, `Unsqueeze`, `Squeeze`, `Slice`, `Concat`, `Cast`, integer `Constant`s,
//! as `x.view(x.size(0), -1)` exports) into constants. What is left is an [`OnnxGraph`]: a
//! topologically ordered list of [`OnnxNode`]s whose [`OnnxOp`] is one of the operators the
//! import supports, with no shape operator, `Identity`, `Dropout` or zero `Pad` left, and no
//! node the output does not depend on. Anything else (another operator, an attribute value the
//! engines cannot compute, a dynamic axis other than the batch) is an [`NnError::Onnx`] naming
//! the node, its operator and what is unsupported; a malformed file is an
//! [`NnError::OnnxModel`]. No input bytes make it panic.
//!
//! **Export**: [`write_onnx`] and [`save_onnx`] write a [`Graph`](crate::graph::Graph) with its
//! parameters (trainable or folded) as an opset-13 model that `onnx`, onnxruntime and PyTorch
//! load and that [`read_onnx`] reads back; `scripts/check-onnx.py` validates a file with the
//! `onnx` checker and reference evaluator.
//!
//! **Why `prost` with a hand-written schema.** [`proto`] declares the subset of `onnx.proto`
//! that import and export need as `#[derive(prost::Message)]` structs with the official field
//! numbers: no `protoc`, no build script and no generated files; decoding is memory safe, bounded by the
//! input (a length past the end of the buffer is an error, nesting is limited) and skips the
//! fields the subset leaves out.

mod export;
mod import;
mod lower;
pub mod proto;

pub use export::{save_onnx, strip_weights, write_onnx};
pub use lower::{Head, Lowering, OnnxModel};

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use crate::error::{NnError, Result};

/// One axis of a value's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dim {
    /// The batch size, unknown until run time (`N`).
    Batch,
    /// A known size.
    Fixed(usize),
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Batch => write!(f, "N"),
            Dim::Fixed(n) => write!(f, "{n}"),
        }
    }
}

/// Writes a shape as `[N, 3, 32, 32]`.
pub fn format_shape(shape: &[Dim]) -> String {
    let dims: Vec<String> = shape.iter().map(Dim::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// A constant FLOAT tensor (an initializer or a float `Constant`), row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxTensor {
    /// Shape.
    pub dims: Vec<usize>,
    /// Elements, `dims` multiplied out of them.
    pub data: Vec<f32>,
}

/// Kernel, strides and padding of a 2-D convolution or pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Vertical and horizontal strides.
    pub strides: [usize; 2],
    /// Zero padding `[top, left, bottom, right]` (ONNX's `[x1_begin, x2_begin, x1_end, x2_end]`).
    pub pads: [usize; 4],
}

/// An operator the import supports, with its checked attributes. Inputs are in
/// [`OnnxNode::inputs`], in ONNX order, omitted optional inputs and resolved constant inputs
/// (shapes, pads) left out.
#[derive(Clone, Debug, PartialEq)]
pub enum OnnxOp {
    /// 2-D convolution, group 1, dilation 1; inputs `[x, weight, bias?]`.
    Conv(Window),
    /// `alpha * A * op(B) + beta * C` with `op` a transpose when `trans_b`; inputs `[A, B, C?]`.
    Gemm {
        /// `B` is transposed (PyTorch's `Linear` weight `[out, in]`).
        trans_b: bool,
        /// Scale of the product.
        alpha: f32,
        /// Scale of `C`.
        beta: f32,
    },
    /// Matrix product, numpy semantics, weight `[K, M]`; inputs `[A, B]`.
    MatMul,
    /// Elementwise sum with broadcasting; inputs `[A, B]`.
    Add,
    /// Elementwise product with broadcasting; inputs `[A, B]`.
    Mul,
    /// `max(x, 0)`.
    Relu,
    /// 2-D max pooling, floor mode, dilation 1.
    MaxPool(Window),
    /// 2-D average pooling, floor mode.
    AveragePool {
        /// The window.
        window: Window,
        /// Padded zeros count in the divisor.
        count_include_pad: bool,
    },
    /// Mean over the spatial axes, keeping them as `1 x 1`.
    GlobalAveragePool,
    /// Mean over the spatial axes 2 and 3.
    ReduceMean {
        /// The reduced axes are kept as size 1.
        keepdims: bool,
    },
    /// Inference batch normalization over axis 1; inputs `[x, scale, bias, mean, var]`.
    BatchNormalization {
        /// Added to the variance.
        epsilon: f32,
    },
    /// Flattens to 2-D: axes before `axis` into the first, the rest into the second.
    Flatten {
        /// The first axis of the second dimension (at least 1: the batch stays first).
        axis: usize,
    },
    /// Reshape to a target resolved from the constant shape input.
    Reshape {
        /// The output shape.
        shape: Vec<Dim>,
    },
    /// Zero padding of the spatial axes of an NCHW tensor.
    Pad {
        /// `[top, left, bottom, right]`.
        pads: [usize; 4],
    },
    /// Softmax along `axis`.
    Softmax {
        /// The (non-negative) axis.
        axis: usize,
    },
    /// Log of the softmax along `axis`.
    LogSoftmax {
        /// The (non-negative) axis.
        axis: usize,
    },
}

impl OnnxOp {
    /// The ONNX operator name (`Conv`, `Gemm` ...).
    pub fn name(&self) -> &'static str {
        match self {
            OnnxOp::Conv(_) => "Conv",
            OnnxOp::Gemm { .. } => "Gemm",
            OnnxOp::MatMul => "MatMul",
            OnnxOp::Add => "Add",
            OnnxOp::Mul => "Mul",
            OnnxOp::Relu => "Relu",
            OnnxOp::MaxPool(_) => "MaxPool",
            OnnxOp::AveragePool { .. } => "AveragePool",
            OnnxOp::GlobalAveragePool => "GlobalAveragePool",
            OnnxOp::ReduceMean { .. } => "ReduceMean",
            OnnxOp::BatchNormalization { .. } => "BatchNormalization",
            OnnxOp::Flatten { .. } => "Flatten",
            OnnxOp::Reshape { .. } => "Reshape",
            OnnxOp::Pad { .. } => "Pad",
            OnnxOp::Softmax { .. } => "Softmax",
            OnnxOp::LogSoftmax { .. } => "LogSoftmax",
        }
    }
}

/// One computing node of the graph.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxNode {
    /// The node's name in the file (`OpType#index` where it had none).
    pub name: String,
    /// The operator.
    pub op: OnnxOp,
    /// Input value names: the graph input, initializers or earlier nodes' outputs.
    pub inputs: Vec<String>,
    /// The output value name.
    pub output: String,
}

/// The graph's data input.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxInput {
    /// Value name.
    pub name: String,
    /// Shape, axis 0 the batch.
    pub shape: Vec<Dim>,
    /// The batch size the file declares, if it is fixed there (an export without dynamic axes).
    pub batch: Option<usize>,
}

/// A validated ONNX model: typed nodes in topological order, FLOAT initializers, every value's
/// shape.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxGraph {
    /// The graph's name in the file (empty when it has none).
    pub name: String,
    /// The `ai.onnx` operator set version.
    pub opset: i64,
    /// The data input.
    pub input: OnnxInput,
    /// The output value name.
    pub output: String,
    /// The computing nodes, each after the producers of its inputs.
    pub nodes: Vec<OnnxNode>,
    /// Constant tensors by name: the initializers the nodes use, and float `Constant`s.
    pub initializers: BTreeMap<String, OnnxTensor>,
    shapes: BTreeMap<String, Vec<Dim>>,
}

impl OnnxGraph {
    /// The inferred shape of every value (the input, initializers, node outputs).
    pub fn shapes(&self) -> &BTreeMap<String, Vec<Dim>> {
        &self.shapes
    }

    /// The inferred shape of one value.
    pub fn shape(&self, value: &str) -> Option<&[Dim]> {
        self.shapes.get(value).map(Vec::as_slice)
    }

    /// The output's inferred shape.
    pub fn output_shape(&self) -> &[Dim] {
        self.shape(&self.output).unwrap_or(&[])
    }

    /// The operator names of the nodes, in order.
    pub fn op_names(&self) -> Vec<&'static str> {
        self.nodes.iter().map(|n| n.op.name()).collect()
    }

    /// The number of constant elements (parameters) the nodes use.
    pub fn param_count(&self) -> usize {
        self.initializers.values().map(|t| t.data.len()).sum()
    }

    /// A table of the nodes: name, operator, output shape and parameter count, one a line,
    /// then the total (for `cryptgpu inspect`).
    pub fn summary(&self) -> String {
        let mut out = format!("input {} {}\n", self.input.name, format_shape(&self.input.shape));
        for n in &self.nodes {
            let params: usize = n.inputs.iter().filter_map(|i| self.initializers.get(i)).map(|t| t.data.len()).sum();
            let shape = self.shape(&n.output).map(format_shape).unwrap_or_default();
            out.push_str(&format!("{:<40} {:<20} {:<18} {params}\n", n.name, n.op.name(), shape));
        }
        out.push_str(&format!(
            "output {} {}, {} parameters\n",
            self.output,
            format_shape(self.output_shape()),
            self.param_count()
        ));
        out
    }
}

/// Reads an ONNX model from its bytes; see the [module docs](self).
pub fn read_onnx(bytes: &[u8]) -> Result<OnnxGraph> {
    import::read(bytes)
}

/// Reads an ONNX model file; see [`read_onnx`].
pub fn load_onnx(path: impl AsRef<Path>) -> Result<OnnxGraph> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| NnError::Io { path: path.display().to_string(), source })?;
    read_onnx(&bytes)
}
