//! Layer-sequence model descriptions (the zoo's): layers, shapes and PyTorch parameter names.
//! A [`ModelSpec`] runs as its lowered [`Graph`](crate::graph::Graph) ([`ModelSpec::to_graph`]),
//! which also checks its shapes and lists its parameters.

use crate::error::Result;

/// One layer (or a residual block) of a model.
#[derive(Debug, Clone, PartialEq)]
pub enum LayerSpec {
    /// 2-D convolution; parameters `{name}.weight` `[cout, cin, kh, kw]` and, with `bias`, `{name}.bias` `[cout]`.
    Conv2d {
        /// Parameter prefix (PyTorch `state_dict` name of the module).
        name: String,
        /// Input channels.
        cin: usize,
        /// Output channels.
        cout: usize,
        /// Kernel (height, width).
        kernel: (usize, usize),
        /// Stride.
        stride: (usize, usize),
        /// Zero padding.
        padding: (usize, usize),
        /// Whether the layer has a bias.
        bias: bool,
    },
    /// Fully connected `y = x W^T + b`; parameters `{name}.weight` `[fout, fin]`, `{name}.bias` `[fout]`.
    Linear {
        /// Parameter prefix.
        name: String,
        /// Input features.
        fin: usize,
        /// Output features.
        fout: usize,
    },
    /// Rectified linear unit.
    Relu,
    /// Average pooling (the divisor is the full window, padding included).
    AvgPool2d {
        /// Window.
        kernel: (usize, usize),
        /// Stride.
        stride: (usize, usize),
        /// Zero padding.
        padding: (usize, usize),
    },
    /// Max pooling (padding never wins; ties go to the first position).
    MaxPool2d {
        /// Window.
        kernel: (usize, usize),
        /// Stride.
        stride: (usize, usize),
        /// Padding.
        padding: (usize, usize),
    },
    /// Batch normalisation; parameters `{name}.weight`, `.bias`, `.running_mean`, `.running_var`
    /// `[channels]`, or for inference only their folded affine map (see [`crate::engine::Model`]).
    BatchNorm2d {
        /// Parameter prefix.
        name: String,
        /// Channels.
        channels: usize,
    },
    /// Average over the spatial axes: `[N, C, H, W]` to `[N, C]`.
    GlobalAvgPool,
    /// `[N, ...]` to `[N, prod(...)]`.
    Flatten,
    /// `body(x) + shortcut(x)` (an empty shortcut is the identity).
    Residual {
        /// The main branch.
        body: Vec<LayerSpec>,
        /// The projection branch.
        shortcut: Vec<LayerSpec>,
    },
}

/// What kind of computation a layer is, for cost reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerKind {
    /// Convolution or fully connected layer.
    Linear,
    /// Batch normalisation.
    BatchNorm,
    /// ReLU.
    Relu,
    /// Average, max or global average pooling.
    Pooling,
    /// Flatten (no computation).
    Reshape,
}

impl LayerKind {
    /// Lower-case name: `linear`, `batchnorm`, `relu`, `pooling`, `reshape`.
    pub fn name(self) -> &'static str {
        match self {
            LayerKind::Linear => "linear",
            LayerKind::BatchNorm => "batchnorm",
            LayerKind::Relu => "relu",
            LayerKind::Pooling => "pooling",
            LayerKind::Reshape => "reshape",
        }
    }
}

/// A whole model: input shape (per example), classes and layers.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// Name, e.g. `"lenet"`.
    pub name: String,
    /// Input shape of one example, `[C, H, W]`.
    pub input: [usize; 3],
    /// Output classes.
    pub classes: usize,
    /// The layers.
    pub layers: Vec<LayerSpec>,
}

/// Batch-norm epsilon (PyTorch's default).
pub const BN_EPS: f64 = 1e-5;

impl ModelSpec {
    /// Checks the shapes end to end (through [`to_graph`](Self::to_graph) and
    /// [`Graph::check`](crate::graph::Graph::check)) and returns the output shape for `batch` examples.
    pub fn check(&self, batch: usize) -> Result<Vec<usize>> {
        self.to_graph().check(batch)?;
        Ok(vec![batch, self.classes])
    }

    /// Every parameter `(name, shape)` in layer order, as PyTorch's `state_dict` names them.
    pub fn params(&self) -> Vec<(String, Vec<usize>)> {
        self.to_graph().params
    }

    /// The parameters a model computes with: batch norms folded to `{name}.scale` / `{name}.shift`.
    pub fn engine_params(&self) -> Vec<(String, Vec<usize>)> {
        self.to_graph().fold_batchnorm().params
    }

    /// Total number of parameters.
    pub fn num_params(&self) -> usize {
        self.params().iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }

    /// True when the model has batch-norm layers.
    pub fn has_batchnorm(&self) -> bool {
        self.to_graph().has_batchnorm()
    }
}
