//! The model description every model runs as: a graph of named values. Nodes, in topological
//! order, read values by name and define one each; parameters are referenced by name too (an
//! imported model keeps its ONNX or PyTorch initializer names) and declared with their shapes in
//! [`Graph::params`]. [`Graph::check`] infers and checks every shape; [`ModelSpec::to_graph`]
//! lowers a layer sequence (every zoo model) to a graph with the same parameter names and labels.

use std::collections::{BTreeMap, BTreeSet};

use crate::error::{NnError, Result};
use crate::spec::{LayerKind, LayerSpec, ModelSpec, BN_EPS};

/// One computation of a graph.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// 2-D convolution of `[N, C, H, W]` with `weight` `[cout, C, kh, kw]` and optional `bias` `[cout]`.
    Conv2d {
        /// The weight's name.
        weight: String,
        /// The bias's name, if any.
        bias: Option<String>,
        /// Stride (height, width).
        stride: (usize, usize),
        /// Zero padding `[top, left, bottom, right]`.
        padding: [usize; 4],
    },
    /// `y = x W^T + b` on `[N, fin]`, `weight` `[fout, fin]`, optional `bias` `[fout]`.
    Linear {
        /// The weight's name.
        weight: String,
        /// The bias's name, if any.
        bias: Option<String>,
    },
    /// Rectified linear unit.
    Relu,
    /// Max pooling (padding never wins; ties go to the first position).
    MaxPool2d {
        /// Window.
        kernel: (usize, usize),
        /// Stride.
        stride: (usize, usize),
        /// Padding (symmetric).
        padding: (usize, usize),
    },
    /// Average pooling.
    AvgPool2d {
        /// Window.
        kernel: (usize, usize),
        /// Stride.
        stride: (usize, usize),
        /// Zero padding (symmetric).
        padding: (usize, usize),
        /// Whether the divisor counts padded positions (PyTorch's default) or only real ones.
        count_include_pad: bool,
    },
    /// Mean over the spatial axes: `[N, C, H, W]` to `[N, C]`.
    GlobalAvgPool,
    /// Batch normalisation over axis 1 of `[N, C, ...]` (2-D or 1-D inputs); parameters `[C]`.
    BatchNorm {
        /// Scale (gamma).
        weight: String,
        /// Shift (beta).
        bias: String,
        /// Running mean.
        running_mean: String,
        /// Running (unbiased) variance.
        running_var: String,
        /// Added to the variance.
        eps: f64,
    },
    /// Per-channel affine map `x·scale[c] + shift[c]` over axis 1 (a folded batch norm; inference only).
    Affine {
        /// Scale `[C]`.
        scale: String,
        /// Shift `[C]`.
        shift: String,
    },
    /// `[N, ...]` to `[N, prod(...)]`.
    Flatten,
    /// Sum of two values of one shape.
    Add,
    /// Zeros around the spatial axes of `[N, C, H, W]`: `[top, left, bottom, right]`.
    Pad {
        /// Rows and columns added on each side.
        pads: [usize; 4],
    },
}

impl Op {
    /// The parameter names the op reads, in declaration order.
    pub fn param_names(&self) -> Vec<&str> {
        match self {
            Op::Conv2d { weight, bias, .. } | Op::Linear { weight, bias } => {
                std::iter::once(weight.as_str()).chain(bias.as_deref()).collect()
            }
            Op::BatchNorm { weight, bias, running_mean, running_var, .. } => {
                vec![weight, bias, running_mean, running_var]
            }
            Op::Affine { scale, shift } => vec![scale, shift],
            _ => Vec::new(),
        }
    }

    /// The kind of computation, for cost reports (`None` for [`Op::Add`] and [`Op::Pad`], which
    /// communicate nothing).
    pub fn kind(&self) -> Option<LayerKind> {
        Some(match self {
            Op::Conv2d { .. } | Op::Linear { .. } => LayerKind::Linear,
            Op::BatchNorm { .. } | Op::Affine { .. } => LayerKind::BatchNorm,
            Op::Relu => LayerKind::Relu,
            Op::MaxPool2d { .. } | Op::AvgPool2d { .. } | Op::GlobalAvgPool => LayerKind::Pooling,
            Op::Flatten => LayerKind::Reshape,
            Op::Add | Op::Pad { .. } => return None,
        })
    }

    /// The op's name in reports: `conv2d`, `linear`, `relu`, `maxpool2d`, `avgpool2d`,
    /// `globalavgpool`, `batchnorm`, `affine`, `flatten`, `add`, `pad`.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv2d { .. } => "conv2d",
            Op::Linear { .. } => "linear",
            Op::Relu => "relu",
            Op::MaxPool2d { .. } => "maxpool2d",
            Op::AvgPool2d { .. } => "avgpool2d",
            Op::GlobalAvgPool => "globalavgpool",
            Op::BatchNorm { .. } => "batchnorm",
            Op::Affine { .. } => "affine",
            Op::Flatten => "flatten",
            Op::Add => "add",
            Op::Pad { .. } => "pad",
        }
    }

    fn arity(&self) -> usize {
        if matches!(self, Op::Add) {
            2
        } else {
            1
        }
    }
}

/// One node: `output = op(inputs)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// The label its costs are reported under (`3:features.3`); empty: counted with the next
    /// labelled node (the residual joins of lowered layer sequences).
    pub label: String,
    /// The computation.
    pub op: Op,
    /// The values it reads (two for [`Op::Add`], one otherwise).
    pub inputs: Vec<String>,
    /// The value it defines.
    pub output: String,
}

/// A model as a graph of named values.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    /// Name, e.g. `"resnet18"`.
    pub name: String,
    /// The input value's name.
    pub input: String,
    /// The input's shape for one example (`[C, H, W]` or `[F]`).
    pub input_shape: Vec<usize>,
    /// The output value's name (logits `[N, classes]`).
    pub output: String,
    /// Output classes.
    pub classes: usize,
    /// Parameters `(name, shape)`, in `state_dict` order.
    pub params: Vec<(String, Vec<usize>)>,
    /// The nodes in topological order.
    pub nodes: Vec<Node>,
}

fn shape_err(node: &Node, what: String) -> NnError {
    let who = if node.label.is_empty() { &node.output } else { &node.label };
    NnError::Shape(format!("node {who}: {what}"))
}

/// Output size of a window along one axis (padding `lo` before, `hi` after).
fn window_out(size: usize, k: usize, s: usize, lo: usize, hi: usize) -> Option<usize> {
    (k > 0 && s > 0 && size + lo + hi >= k).then(|| (size + lo + hi - k) / s + 1)
}

/// The folded names of a batch norm whose weight is `weight`: `{prefix}.scale`, `{prefix}.shift`
/// with `prefix` the weight's name less `.weight`.
pub fn folded_names(weight: &str) -> (String, String) {
    let prefix = weight.strip_suffix(".weight").unwrap_or(weight);
    (format!("{prefix}.scale"), format!("{prefix}.shift"))
}

impl Graph {
    /// Infers every value's shape for `batch` examples and checks the graph: every input is
    /// defined before its use, no value is defined twice, every parameter is declared once, has
    /// the shape its op needs and is used by exactly one node, arities and shapes agree, and the
    /// output is `[batch, classes]`. Errors name the node.
    pub fn check(&self, batch: usize) -> Result<BTreeMap<String, Vec<usize>>> {
        let mut params: BTreeMap<&str, &[usize]> = BTreeMap::new();
        for (n, s) in &self.params {
            if params.insert(n, s).is_some() {
                return Err(NnError::Shape(format!("{}: parameter {n} declared twice", self.name)));
            }
        }
        let mut used = BTreeSet::new();
        let mut shapes = BTreeMap::new();
        let mut input = vec![batch];
        input.extend(&self.input_shape);
        shapes.insert(self.input.clone(), input);
        for node in &self.nodes {
            if node.inputs.len() != node.op.arity() {
                return Err(shape_err(node, format!("{} inputs, expected {}", node.inputs.len(), node.op.arity())));
            }
            let ins = node
                .inputs
                .iter()
                .map(|v| {
                    shapes.get(v).cloned().ok_or_else(|| {
                        shape_err(node, format!("value {v} is not defined before this node (unknown, or a cycle)"))
                    })
                })
                .collect::<Result<Vec<Vec<usize>>>>()?;
            let mut ps = Vec::new();
            for p in node.op.param_names() {
                let s = params.get(p).ok_or_else(|| shape_err(node, format!("parameter {p} is not declared")))?;
                if !used.insert(p) {
                    return Err(shape_err(node, format!("parameter {p} is used by more than one node")));
                }
                ps.push(s.to_vec());
            }
            let out = node_shape(node, &ins, &ps)?;
            if shapes.insert(node.output.clone(), out).is_some() {
                return Err(shape_err(node, format!("value {} is defined twice", node.output)));
            }
        }
        if let Some((n, _)) = self.params.iter().find(|(n, _)| !used.contains(n.as_str())) {
            return Err(NnError::Shape(format!("{}: parameter {n} is used by no node", self.name)));
        }
        match shapes.get(&self.output) {
            Some(s) if *s == [batch, self.classes] => Ok(shapes),
            Some(s) => Err(NnError::Shape(format!(
                "{}: output {} is {s:?}, expected [{batch}, {}]",
                self.name, self.output, self.classes
            ))),
            None => Err(NnError::Shape(format!("{}: output {} is not defined", self.name, self.output))),
        }
    }

    /// For each node, whether it is a product layer (convolution, linear, folded batch norm)
    /// whose output is read by the next node, a ReLU, and nothing else: the engines then run
    /// the two together ([`Engine::relu_held`](crate::engine::Engine::relu_held)), the private one
    /// with one round fewer.
    pub fn relu_fusions(&self) -> Vec<bool> {
        let readers = |v: &str| self.nodes.iter().filter(|n| n.inputs.iter().any(|i| i == v)).count();
        let fuses = |(node, next): (&Node, &Node)| {
            matches!(node.op, Op::Conv2d { .. } | Op::Linear { .. } | Op::Affine { .. })
                && matches!(next.op, Op::Relu)
                && next.inputs == [node.output.as_str()]
                && node.output != self.output
                && readers(&node.output) == 1
        };
        let mut out: Vec<bool> = self.nodes.windows(2).map(|w| fuses((&w[0], &w[1]))).collect();
        out.push(false);
        out.truncate(self.nodes.len());
        out
    }

    /// For each node, the exponent `s` of an average pooling by a window of `2^s` positions
    /// (divisor the window: `count_include_pad` or no padding) whose output only a convolution or
    /// linear layer reads (directly or through a flatten), at the pooling and at that layer; 0
    /// elsewhere. Inference then moves the division into the layer's truncation (window sums in,
    /// output truncated by `2^s` more), which saves the pooling's own.
    pub fn pool_folds(&self) -> Vec<u32> {
        let readers = |v: &str| self.nodes.iter().filter(|n| n.inputs.iter().any(|i| i == v)).count();
        // The node at `j` reads `v` alone, and nothing else does.
        let only_reader = |v: &str, j: usize| {
            v != self.output && readers(v) == 1 && self.nodes.get(j).is_some_and(|n| n.inputs == [v])
        };
        let mut out = vec![0; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            let Op::AvgPool2d { kernel, padding, count_include_pad, .. } = &node.op else { continue };
            let k = kernel.0 * kernel.1;
            if k < 2 || !k.is_power_of_two() || !(*count_include_pad || *padding == (0, 0)) {
                continue;
            }
            let mut j = i + 1;
            if !only_reader(&node.output, j) {
                continue;
            }
            if matches!(self.nodes[j].op, Op::Flatten) {
                if !only_reader(&self.nodes[j].output, j + 1) {
                    continue;
                }
                j += 1;
            }
            if matches!(self.nodes[j].op, Op::Conv2d { .. } | Op::Linear { .. }) {
                out[i] = k.trailing_zeros();
                out[j] = out[i];
            }
        }
        out
    }

    /// True when the graph has batch norms.
    pub fn has_batchnorm(&self) -> bool {
        self.nodes.iter().any(|n| matches!(n.op, Op::BatchNorm { .. }))
    }

    /// The inference graph: every batch norm becomes an [`Op::Affine`] with the parameters of
    /// [`folded_names`] (`weights::fold_graph_batchnorm` computes their values).
    pub fn fold_batchnorm(&self) -> Graph {
        let shape = |n: &str| self.params.iter().find(|(m, _)| m == n).map(|(_, s)| s.clone());
        let mut g = Graph { params: Vec::new(), ..self.clone() };
        for node in &mut g.nodes {
            // A folded batch norm's parameters have its weight's shape.
            let like = match &node.op {
                Op::BatchNorm { weight, .. } => {
                    let weight = weight.clone();
                    let (scale, shift) = folded_names(&weight);
                    node.op = Op::Affine { scale, shift };
                    Some(weight)
                }
                _ => None,
            };
            for n in node.op.param_names() {
                if let Some(s) = shape(like.as_deref().unwrap_or(n)) {
                    g.params.push((n.to_string(), s));
                }
            }
        }
        g
    }

    /// Every reported node's label and kind, in the order of the forward pass.
    pub fn labels(&self) -> Vec<(String, LayerKind)> {
        self.nodes
            .iter()
            .filter(|n| !n.label.is_empty())
            .filter_map(|n| n.op.kind().map(|k| (n.label.clone(), k)))
            .collect()
    }
}

/// The output shape of `node` for input shapes `ins` and parameter shapes `ps`.
fn node_shape(node: &Node, ins: &[Vec<usize>], ps: &[Vec<usize>]) -> Result<Vec<usize>> {
    let x = &ins[0];
    let err = |what: String| shape_err(node, what);
    let need4 = || if x.len() == 4 { Ok(()) } else { Err(err(format!("expects [N, C, H, W], got {x:?}"))) };
    let param = |i: usize, want: &[usize]| {
        if ps[i] == want {
            Ok(())
        } else {
            Err(err(format!("parameter {} has shape {:?}, expected {want:?}", node.op.param_names()[i], ps[i])))
        }
    };
    let window = |k: (usize, usize), s: (usize, usize), p: [usize; 4]| {
        let h = window_out(x[2], k.0, s.0, p[0], p[2]);
        let w = window_out(x[3], k.1, s.1, p[1], p[3]);
        match (h, w) {
            (Some(h), Some(w)) => Ok((h, w)),
            _ => Err(err(format!("window {k:?} (stride {s:?}, padding {p:?}) does not fit input {x:?}"))),
        }
    };
    Ok(match &node.op {
        Op::Conv2d { bias, stride, padding, .. } => {
            need4()?;
            let w = &ps[0];
            if w.len() != 4 || w[1] != x[1] {
                return Err(err(format!("weight {w:?} does not take input {x:?}")));
            }
            if bias.is_some() {
                param(1, &[w[0]])?;
            }
            let (h, ow) = window((w[2], w[3]), *stride, *padding)?;
            vec![x[0], w[0], h, ow]
        }
        Op::Linear { bias, .. } => {
            let w = &ps[0];
            if x.len() != 2 || w.len() != 2 || w[1] != x[1] {
                return Err(err(format!(
                    "weight {w:?} does not take input {x:?} (expects [N, {}])",
                    w.get(1).unwrap_or(&0)
                )));
            }
            if bias.is_some() {
                param(1, &[w[0]])?;
            }
            vec![x[0], w[0]]
        }
        Op::Relu => x.clone(),
        Op::MaxPool2d { kernel, stride, padding } | Op::AvgPool2d { kernel, stride, padding, .. } => {
            need4()?;
            // PyTorch's rule: a window never lies wholly in the padding (which would leave a max
            // pool without a real position and an average without a divisor).
            if 2 * padding.0 > kernel.0 || 2 * padding.1 > kernel.1 {
                return Err(err(format!("padding {padding:?} is more than half of the kernel {kernel:?}")));
            }
            let (h, w) = window(*kernel, *stride, [padding.0, padding.1, padding.0, padding.1])?;
            vec![x[0], x[1], h, w]
        }
        Op::GlobalAvgPool => {
            need4()?;
            vec![x[0], x[1]]
        }
        Op::BatchNorm { eps, .. } => {
            if x.len() < 2 {
                return Err(err(format!("expects [N, C, ...], got {x:?}")));
            }
            if !(*eps > 0.0 && eps.is_finite()) {
                return Err(err(format!("eps {eps} is not a positive number")));
            }
            (0..4).try_for_each(|i| param(i, &[x[1]]))?;
            x.clone()
        }
        Op::Affine { .. } => {
            if x.len() < 2 {
                return Err(err(format!("expects [N, C, ...], got {x:?}")));
            }
            (0..2).try_for_each(|i| param(i, &[x[1]]))?;
            x.clone()
        }
        Op::Flatten => {
            if x.is_empty() {
                return Err(err("flatten of a scalar".into()));
            }
            vec![x[0], x[1..].iter().product()]
        }
        Op::Add => {
            if ins[0] != ins[1] {
                return Err(err(format!("adds {:?} and {:?}", ins[0], ins[1])));
            }
            x.clone()
        }
        Op::Pad { pads } => {
            need4()?;
            vec![x[0], x[1], x[2] + pads[0] + pads[2], x[3] + pads[1] + pads[3]]
        }
    })
}

/// The label of the layer at position `idx` of the sequence at `path`: `3:features.3`, `4:relu`
/// at the top level; inside the residual block at top-level position 5, `5.b2:relu` (body) and
/// `5.s0:layer2.0.downsample.0` (shortcut).
fn label(path: &str, idx: usize, l: &LayerSpec) -> String {
    let what = match l {
        LayerSpec::Conv2d { name, .. } | LayerSpec::Linear { name, .. } | LayerSpec::BatchNorm2d { name, .. } => {
            name.as_str()
        }
        LayerSpec::Relu => "relu",
        LayerSpec::AvgPool2d { .. } => "avgpool",
        LayerSpec::MaxPool2d { .. } => "maxpool",
        LayerSpec::GlobalAvgPool => "globalavgpool",
        LayerSpec::Flatten => "flatten",
        LayerSpec::Residual { .. } => "residual",
    };
    format!("{path}{idx}:{what}")
}

/// Lowers a layer sequence at `path` reading value `x`; returns the last value.
fn lower(layers: &[LayerSpec], path: &str, mut x: String, g: &mut Graph) -> String {
    for (i, l) in layers.iter().enumerate() {
        let lab = label(path, i, l);
        let op = match l {
            LayerSpec::Conv2d { name, cin, cout, kernel, stride, padding, bias } => {
                let weight = format!("{name}.weight");
                g.params.push((weight.clone(), vec![*cout, *cin, kernel.0, kernel.1]));
                let bias = bias.then(|| format!("{name}.bias"));
                if let Some(b) = &bias {
                    g.params.push((b.clone(), vec![*cout]));
                }
                Op::Conv2d { weight, bias, stride: *stride, padding: [padding.0, padding.1, padding.0, padding.1] }
            }
            LayerSpec::Linear { name, fin, fout } => {
                let (weight, bias) = (format!("{name}.weight"), format!("{name}.bias"));
                g.params.push((weight.clone(), vec![*fout, *fin]));
                g.params.push((bias.clone(), vec![*fout]));
                Op::Linear { weight, bias: Some(bias) }
            }
            LayerSpec::Relu => Op::Relu,
            LayerSpec::AvgPool2d { kernel, stride, padding } => {
                Op::AvgPool2d { kernel: *kernel, stride: *stride, padding: *padding, count_include_pad: true }
            }
            LayerSpec::MaxPool2d { kernel, stride, padding } => {
                Op::MaxPool2d { kernel: *kernel, stride: *stride, padding: *padding }
            }
            LayerSpec::BatchNorm2d { name, channels } => {
                let [weight, bias, running_mean, running_var] =
                    ["weight", "bias", "running_mean", "running_var"].map(|p| format!("{name}.{p}"));
                for p in [&weight, &bias, &running_mean, &running_var] {
                    g.params.push((p.clone(), vec![*channels]));
                }
                Op::BatchNorm { weight, bias, running_mean, running_var, eps: BN_EPS }
            }
            LayerSpec::GlobalAvgPool => Op::GlobalAvgPool,
            LayerSpec::Flatten => Op::Flatten,
            LayerSpec::Residual { body, shortcut } => {
                let a = lower(body, &format!("{path}{i}.b"), x.clone(), g);
                let b = lower(shortcut, &format!("{path}{i}.s"), x.clone(), g);
                g.nodes.push(Node { label: String::new(), op: Op::Add, inputs: vec![a, b], output: lab.clone() });
                x = lab;
                continue;
            }
        };
        g.nodes.push(Node { label: lab.clone(), op, inputs: vec![x], output: lab.clone() });
        x = lab;
    }
    x
}

impl From<&ModelSpec> for Graph {
    /// [`ModelSpec::to_graph`].
    fn from(spec: &ModelSpec) -> Graph {
        spec.to_graph()
    }
}

impl From<&Graph> for Graph {
    /// A copy.
    fn from(g: &Graph) -> Graph {
        g.clone()
    }
}

impl ModelSpec {
    /// The model as a graph: one node per layer, labelled and named as the layer's reports
    /// (`3:features.3`, `5.b1:layer1.0.bn1`), parameters with the layers' PyTorch names in the
    /// same order, each residual block's join an unlabelled [`Op::Add`] of its two branches.
    pub fn to_graph(&self) -> Graph {
        let mut g = Graph {
            name: self.name.clone(),
            input: "input".into(),
            input_shape: self.input.to_vec(),
            output: String::new(),
            classes: self.classes,
            params: Vec::new(),
            nodes: Vec::new(),
        };
        g.output = lower(&self.layers, "", g.input.clone(), &mut g);
        g
    }
}
