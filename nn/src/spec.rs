//! Model descriptions: the layer sequence, shapes and parameter names shared by the private model
//! and its plaintext twin.

use crate::error::{NnError, Result};

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

/// Output size of a window along one axis, or an error.
fn window_out(what: &str, size: usize, k: usize, s: usize, p: usize) -> Result<usize> {
    if k == 0 || s == 0 || size + 2 * p < k {
        return Err(NnError::Shape(format!(
            "{what}: window {k} (stride {s}, padding {p}) does not fit input size {size}"
        )));
    }
    Ok((size + 2 * p - k) / s + 1)
}

impl LayerSpec {
    /// Output shape for an input of `shape` (batch axis first), checking compatibility.
    pub fn out_shape(&self, shape: &[usize]) -> Result<Vec<usize>> {
        let need4 = |what: &str| -> Result<()> {
            if shape.len() == 4 {
                Ok(())
            } else {
                Err(NnError::Shape(format!("{what} expects NCHW input, got {shape:?}")))
            }
        };
        Ok(match self {
            LayerSpec::Conv2d { name, cin, cout, kernel, stride, padding, .. } => {
                need4(name)?;
                if shape[1] != *cin {
                    return Err(NnError::Shape(format!("{name}: expects {cin} input channels, got {shape:?}")));
                }
                let h = window_out(name, shape[2], kernel.0, stride.0, padding.0)?;
                let w = window_out(name, shape[3], kernel.1, stride.1, padding.1)?;
                vec![shape[0], *cout, h, w]
            }
            LayerSpec::Linear { name, fin, fout } => {
                if shape.len() != 2 || shape[1] != *fin {
                    return Err(NnError::Shape(format!("{name}: expects [N, {fin}], got {shape:?}")));
                }
                vec![shape[0], *fout]
            }
            LayerSpec::Relu => shape.to_vec(),
            LayerSpec::AvgPool2d { kernel, stride, padding } | LayerSpec::MaxPool2d { kernel, stride, padding } => {
                need4("pooling")?;
                let h = window_out("pooling", shape[2], kernel.0, stride.0, padding.0)?;
                let w = window_out("pooling", shape[3], kernel.1, stride.1, padding.1)?;
                vec![shape[0], shape[1], h, w]
            }
            LayerSpec::BatchNorm2d { name, channels } => {
                need4(name)?;
                if shape[1] != *channels {
                    return Err(NnError::Shape(format!("{name}: expects {channels} channels, got {shape:?}")));
                }
                shape.to_vec()
            }
            LayerSpec::GlobalAvgPool => {
                need4("global average pool")?;
                vec![shape[0], shape[1]]
            }
            LayerSpec::Flatten => vec![shape[0], shape[1..].iter().product()],
            LayerSpec::Residual { body, shortcut } => {
                let a = sequence_out_shape(body, shape)?;
                let b = sequence_out_shape(shortcut, shape)?;
                if a != b {
                    return Err(NnError::Shape(format!("residual branches disagree: {a:?} vs {b:?}")));
                }
                a
            }
        })
    }

    /// The layer's kind; `None` for a residual block (its layers have kinds).
    pub fn kind(&self) -> Option<LayerKind> {
        Some(match self {
            LayerSpec::Conv2d { .. } | LayerSpec::Linear { .. } => LayerKind::Linear,
            LayerSpec::BatchNorm2d { .. } => LayerKind::BatchNorm,
            LayerSpec::Relu => LayerKind::Relu,
            LayerSpec::AvgPool2d { .. } | LayerSpec::MaxPool2d { .. } | LayerSpec::GlobalAvgPool => LayerKind::Pooling,
            LayerSpec::Flatten => LayerKind::Reshape,
            LayerSpec::Residual { .. } => return None,
        })
    }

    /// The parameters this layer (and its sub-layers) owns: `(name, shape)`. With `folded_bn`,
    /// a batch norm contributes its folded affine map `{name}.scale` and `{name}.shift` instead of
    /// its four PyTorch tensors.
    pub fn params(&self, folded_bn: bool, out: &mut Vec<(String, Vec<usize>)>) {
        match self {
            LayerSpec::Conv2d { name, cin, cout, kernel, bias, .. } => {
                out.push((format!("{name}.weight"), vec![*cout, *cin, kernel.0, kernel.1]));
                if *bias {
                    out.push((format!("{name}.bias"), vec![*cout]));
                }
            }
            LayerSpec::Linear { name, fin, fout } => {
                out.push((format!("{name}.weight"), vec![*fout, *fin]));
                out.push((format!("{name}.bias"), vec![*fout]));
            }
            LayerSpec::BatchNorm2d { name, channels } => {
                let names: &[&str] =
                    if folded_bn { &["scale", "shift"] } else { &["weight", "bias", "running_mean", "running_var"] };
                for p in names {
                    out.push((format!("{name}.{p}"), vec![*channels]));
                }
            }
            LayerSpec::Residual { body, shortcut } => {
                for l in body.iter().chain(shortcut) {
                    l.params(folded_bn, out);
                }
            }
            _ => {}
        }
    }
}

/// Output shape of a layer sequence.
pub fn sequence_out_shape(layers: &[LayerSpec], shape: &[usize]) -> Result<Vec<usize>> {
    layers.iter().try_fold(shape.to_vec(), |s, l| l.out_shape(&s))
}

impl ModelSpec {
    /// Checks the layer shapes end to end and returns the output shape for `batch` examples.
    pub fn check(&self, batch: usize) -> Result<Vec<usize>> {
        let out = sequence_out_shape(&self.layers, &[batch, self.input[0], self.input[1], self.input[2]])?;
        if out != [batch, self.classes] {
            return Err(NnError::Shape(format!("{}: output {out:?}, expected [{batch}, {}]", self.name, self.classes)));
        }
        Ok(out)
    }

    /// Every parameter `(name, shape)` in layer order, as PyTorch's `state_dict` names them.
    pub fn params(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        for l in &self.layers {
            l.params(false, &mut out);
        }
        out
    }

    /// The parameters a model computes with: batch norms folded to `{name}.scale` / `{name}.shift`.
    pub fn engine_params(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        for l in &self.layers {
            l.params(true, &mut out);
        }
        out
    }

    /// Total number of parameters.
    pub fn num_params(&self) -> usize {
        self.params().iter().map(|(_, s)| s.iter().product::<usize>()).sum()
    }

    /// True when the model has batch-norm layers.
    pub fn has_batchnorm(&self) -> bool {
        fn any(ls: &[LayerSpec]) -> bool {
            ls.iter().any(|l| match l {
                LayerSpec::BatchNorm2d { .. } => true,
                LayerSpec::Residual { body, shortcut } => any(body) || any(shortcut),
                _ => false,
            })
        }
        any(&self.layers)
    }
}
