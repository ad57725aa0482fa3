//! ONNX import, second half: lowering an [`OnnxGraph`] to the [`Graph`] every model runs as,
//! with its parameters.
//!
//! Each ONNX node becomes one graph node labelled with the node's name, or folds into the node
//! before it; values keep their ONNX names and parameters their initializer names (batch
//! normalizations excepted, see [`OnnxGraph::to_model`]).

use std::collections::{BTreeSet, HashMap};

use super::{format_shape, Dim, OnnxGraph, OnnxNode, OnnxOp, Window};
use crate::error::{NnError, Result};
use crate::graph::{Graph, Node, Op};
use crate::plain::PlainTensor;
use crate::weights::{out_of_range, Params};

/// What the lowered model is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lowering {
    /// Inference: a batch normalization that alone reads a convolution's or linear layer's
    /// output is folded into its weights.
    Inference,
    /// Training: every batch normalization stays a trainable [`Op::BatchNorm`].
    Training,
}

/// A trailing operator kept out of the graph (the logits are its input).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// `Softmax` over the classes.
    Softmax,
    /// `LogSoftmax` over the classes.
    LogSoftmax,
}

/// An imported model.
#[derive(Clone, Debug, PartialEq)]
pub struct OnnxModel {
    /// The model description, checked.
    pub graph: Graph,
    /// Its parameters, exactly [`Graph::params`] (batch norms trainable, unfolded).
    pub params: Params,
    /// The softmax the file ends with, if any: the graph's output is its input.
    pub head: Option<Head>,
}

impl OnnxGraph {
    /// Lowers the graph to a [`Graph`] and its parameters.
    ///
    /// `Conv` becomes [`Op::Conv2d`]; `Gemm` and `MatMul` with constant weights [`Op::Linear`]
    /// (the weight transposed to `[out, in]` where needed, scaled by `alpha`, the bias by
    /// `beta`); an `Add` of a constant to the output of a bias-less linear layer or convolution
    /// that nothing else reads becomes its bias, another per-channel constant `Add` an
    /// [`Op::Affine`] (scale `{node}.scale`, all ones; inference only), an `Add` of two values
    /// of one shape [`Op::Add`]; `Relu`, `MaxPool`, `AveragePool` (symmetric pads), `GlobalAveragePool` and
    /// `ReduceMean` over the spatial axes (both [`Op::GlobalAvgPool`], `[N, C]`: a following
    /// flatten is dropped), `Flatten` and `Pad` map one to one. A `BatchNormalization` is folded
    /// into the convolution or linear layer it alone reads with [`Lowering::Inference`], and an
    /// [`Op::BatchNorm`] otherwise, with parameters `{prefix}.weight`, `.bias`, `.running_mean`,
    /// `.running_var` (`prefix`: the scale initializer's name less `.weight`, else the node's
    /// name). A final `Softmax` or `LogSoftmax` over the classes becomes [`OnnxModel::head`].
    ///
    /// Every parameter passes the range checks of loaded weights
    /// ([`crate::weights::load_graph_safetensors`]). Anything else is an [`NnError::Onnx`]
    /// naming the node (an operator or attribute the engines cannot compute, broadcasting
    /// between two values, a softmax before the end), an output other than `[N, classes]` an
    /// [`NnError::OnnxModel`].
    ///
    /// ```rust
    /// use cryptgpu_nn::onnx::proto::*;
    /// use cryptgpu_nn::onnx::{read_onnx, Head, Lowering};
    /// use cryptgpu_nn::plain::PlainTensor;
    /// use cryptgpu_nn::session::{plain_logits, plain_model};
    /// use prost::Message;
    ///
    /// // y = softmax(x W^T + b) for x of shape [N, 2], W = [[1, 2], [3, 4], [5, 6]], b = 0.5.
    /// let value = |name: &str, dims: &[Option<i64>]| ValueInfoProto {
    ///     name: name.into(),
    ///     r#type: Some(TypeProto {
    ///         tensor_type: Some(TypeProtoTensor {
    ///             elem_type: DATA_TYPE_FLOAT,
    ///             shape: Some(TensorShapeProto {
    ///                 dim: dims.iter().map(|&d| Dimension { dim_value: d, dim_param: None }).collect(),
    ///             }),
    ///         }),
    ///     }),
    /// };
    /// let tensor = |name: &str, dims: &[i64], v: Vec<f32>| TensorProto {
    ///     name: name.into(),
    ///     dims: dims.to_vec(),
    ///     data_type: DATA_TYPE_FLOAT,
    ///     float_data: v,
    ///     ..Default::default()
    /// };
    /// let node = |name: &str, op: &str, inputs: &[&str], output: &str| NodeProto {
    ///     name: name.into(),
    ///     op_type: op.into(),
    ///     input: inputs.iter().map(|s| s.to_string()).collect(),
    ///     output: vec![output.into()],
    ///     ..Default::default()
    /// };
    /// let mut gemm = node("fc", "Gemm", &["x", "fc.weight", "fc.bias"], "logits");
    /// gemm.attribute.push(AttributeProto { name: "transB".into(), r#type: ATTR_INT, i: 1, ..Default::default() });
    /// let file = ModelProto {
    ///     ir_version: 8,
    ///     opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
    ///     graph: Some(GraphProto {
    ///         name: "tiny".into(),
    ///         node: vec![gemm, node("softmax", "Softmax", &["logits"], "probs")],
    ///         initializer: vec![
    ///             tensor("fc.weight", &[3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]),
    ///             tensor("fc.bias", &[3], vec![0.5; 3]),
    ///         ],
    ///         input: vec![value("x", &[None, Some(2)])],
    ///         output: vec![value("probs", &[None, Some(3)])],
    ///         ..Default::default()
    ///     }),
    ///     ..Default::default()
    /// };
    /// let m = read_onnx(&file.encode_to_vec())?.to_model(Lowering::Inference)?;
    /// assert_eq!((m.graph.name.as_str(), m.graph.output.as_str(), m.graph.classes), ("tiny", "logits", 3));
    /// assert_eq!(m.head, Some(Head::Softmax));
    /// let twin = plain_model(&m.graph, m.params)?;
    /// let y = plain_logits(&twin, &PlainTensor::new(&[1, 2], vec![1.0, -1.0])?)?;
    /// assert_eq!(y.data, [-0.5, -0.5, -0.5]);
    /// # Ok::<(), cryptgpu_nn::NnError>(())
    /// ```
    pub fn to_model(&self, lowering: Lowering) -> Result<OnnxModel> {
        let mut input_shape = Vec::new();
        for (axis, d) in self.input.shape.iter().enumerate() {
            match (axis, d) {
                (0, Dim::Batch) => {}
                (1.., Dim::Fixed(n)) => input_shape.push(*n),
                _ => {
                    return Err(NnError::OnnxModel(format!(
                        "input '{}' has shape {}: the batch must be axis 0 and only there",
                        self.input.name,
                        format_shape(&self.input.shape)
                    )))
                }
            }
        }
        let name = if self.name.is_empty() { "onnx".to_string() } else { self.name.clone() };
        let graph = Graph {
            name,
            input: self.input.name.clone(),
            input_shape,
            output: String::new(),
            classes: 0,
            params: Vec::new(),
            nodes: Vec::new(),
        };
        let mut readers: HashMap<&str, usize> = HashMap::from([(self.output.as_str(), 1)]);
        for v in self.nodes.iter().flat_map(|n| &n.inputs) {
            *readers.entry(v.as_str()).or_default() += 1;
        }
        let held = Held { name: self.input.name.clone(), shape: self.input.shape.clone() };
        let mut cx = Lower {
            onnx: self,
            lowering,
            graph,
            params: Params::new(),
            values: HashMap::from([(self.input.name.clone(), held)]),
            producer: HashMap::new(),
            readers,
            taken: BTreeSet::new(),
            head: None,
        };
        for n in &self.nodes {
            cx.node(n)?;
        }
        cx.finish()
    }
}

/// An ONNX value as the lowered graph holds it: the graph value and its shape there (that of
/// the ONNX value, except `[N, C]` for a global average's `[N, C, 1, 1]`).
#[derive(Clone, Debug)]
struct Held {
    name: String,
    shape: Vec<Dim>,
}

/// The state of the lowering.
struct Lower<'a> {
    onnx: &'a OnnxGraph,
    lowering: Lowering,
    graph: Graph,
    params: Params,
    /// Every ONNX value computed so far.
    values: HashMap<String, Held>,
    /// The index in `graph.nodes` of the node defining each graph value.
    producer: HashMap<String, usize>,
    /// How many node inputs, and the graph output, read each ONNX value.
    readers: HashMap<&'a str, usize>,
    /// Initializers turned into parameters.
    taken: BTreeSet<&'a str>,
    head: Option<Head>,
}

fn err(n: &OnnxNode, detail: impl Into<String>) -> NnError {
    NnError::Onnx { node: n.name.clone(), op: n.op.name().to_string(), detail: detail.into() }
}

/// `s`'s features per example when it is `[N, ...]`.
fn features(s: &[Dim]) -> Option<usize> {
    match s.split_first()? {
        (Dim::Batch, rest) => rest.iter().try_fold(1usize, |p, d| match d {
            Dim::Fixed(n) => p.checked_mul(*n),
            Dim::Batch => None,
        }),
        _ => None,
    }
}

/// `[M, K]` to `[K, M]`, each element times `alpha`.
fn transposed(t: &PlainTensor, alpha: f64) -> PlainTensor {
    let (m, k) = (t.shape[0], t.shape[1]);
    let data = (0..k).flat_map(|j| (0..m).map(move |i| (i, j))).map(|(i, j)| alpha * t.data[i * k + j]).collect();
    PlainTensor { shape: vec![k, m], data }
}

/// The symmetric padding `(rows, columns)` of a pooling window.
fn symmetric(n: &OnnxNode, w: &Window) -> Result<(usize, usize)> {
    let p = w.pads;
    if p[0] != p[2] || p[1] != p[3] {
        return Err(err(n, format!("pads={p:?} are asymmetric: pooling pads top = bottom and left = right only")));
    }
    Ok((p[0], p[1]))
}

impl<'a> Lower<'a> {
    /// The name of input `k` of `n`.
    fn name(&self, n: &'a OnnxNode, k: usize) -> Result<&'a str> {
        n.inputs.get(k).map(String::as_str).ok_or_else(|| err(n, format!("input {k} is missing")))
    }

    /// The inferred ONNX shape of value `v`.
    fn shape(&self, n: &OnnxNode, v: &str) -> Result<Vec<Dim>> {
        self.onnx.shape(v).map(<[Dim]>::to_vec).ok_or_else(|| err(n, format!("value '{v}' has no inferred shape")))
    }

    /// Computed input `k` of `n`.
    fn input(&self, n: &'a OnnxNode, k: usize) -> Result<Held> {
        let v = self.name(n, k)?;
        match self.values.get(v) {
            Some(h) => Ok(h.clone()),
            None if self.onnx.initializers.contains_key(v) => {
                Err(err(n, format!("input '{v}' is a constant: only computed values are supported here")))
            }
            None => Err(err(n, format!("input '{v}' is not defined before the node"))),
        }
    }

    /// Computed input `k` of `n`, `[N, C, H, W]`.
    fn input4(&self, n: &'a OnnxNode, k: usize) -> Result<Held> {
        let x = self.input(n, k)?;
        if x.shape.len() != 4 {
            let v = self.name(n, k)?;
            let onnx = self.shape(n, v)?;
            return Err(err(
                n,
                if onnx.len() == 4 {
                    format!(
                        "input '{v}' {} is a global average pool's output, held as [N, C]: only a \
                         flatten or an elementwise operator may read it",
                        format_shape(&onnx)
                    )
                } else {
                    format!("input '{v}' is {}, not [N, C, H, W]", format_shape(&onnx))
                },
            ));
        }
        Ok(x)
    }

    /// Computed input `k` of `n`, `[N, K]`.
    fn input2(&self, n: &'a OnnxNode, k: usize) -> Result<Held> {
        let x = self.input(n, k)?;
        let v = self.name(n, k)?;
        let onnx = self.shape(n, v)?;
        if onnx.len() != 2 || x.shape != onnx {
            return Err(err(n, format!("input '{v}' is {}: only [N, K] is supported", format_shape(&onnx))));
        }
        Ok(x)
    }

    /// Constant input `k` of `n`, once only.
    fn take(&mut self, n: &'a OnnxNode, k: usize, what: &str) -> Result<(&'a str, PlainTensor)> {
        let v = self.name(n, k)?;
        let t = self
            .onnx
            .initializers
            .get(v)
            .ok_or_else(|| err(n, format!("the {what} '{v}' must be an initializer (a constant)")))?;
        if !self.taken.insert(v) {
            return Err(err(n, format!("initializer '{v}' is read by another node too: parameters cannot be shared")));
        }
        let data = t.data.iter().map(|&v| f64::from(v)).collect();
        let t = PlainTensor::new(&t.dims, data).map_err(|e| err(n, format!("initializer '{v}': {e}")))?;
        Ok((v, t))
    }

    /// Checks parameter `name` against the ranges of loaded weights; `note` says where it comes
    /// from when that is not the initializer of its name.
    fn check(&self, n: &OnnxNode, name: &str, t: &PlainTensor, note: Option<&str>) -> Result<()> {
        match (out_of_range(name, name, t), note) {
            (None, _) => Ok(()),
            (Some(bad), None) => Err(err(n, bad)),
            (Some(bad), Some(note)) => Err(err(n, format!("{bad} ({note})"))),
        }
    }

    /// Adds parameter `name` (see [`Self::check`] for `note`), declared after `after` if given.
    fn put(&mut self, n: &OnnxNode, name: &str, t: PlainTensor, note: Option<&str>, after: Option<&str>) -> Result<()> {
        self.check(n, name, &t, note)?;
        if self.params.contains_key(name) {
            return Err(err(n, format!("parameter '{name}' is defined twice")));
        }
        let at = after.and_then(|a| self.graph.params.iter().position(|(p, _)| p == a)).map_or(usize::MAX, |i| i + 1);
        let entry = (name.to_string(), t.shape.clone());
        if at < self.graph.params.len() {
            self.graph.params.insert(at, entry);
        } else {
            self.graph.params.push(entry);
        }
        self.params.insert(name.to_string(), t);
        Ok(())
    }

    /// Adds the node for `n`, with output shape `shape` there.
    fn emit(&mut self, n: &OnnxNode, op: Op, inputs: Vec<String>, shape: Vec<Dim>) {
        let mut label = n.name.clone();
        if self.graph.nodes.iter().any(|m| m.label == label) {
            label = format!("{}#{}", n.name, self.graph.nodes.len());
        }
        self.producer.insert(n.output.clone(), self.graph.nodes.len());
        self.graph.nodes.push(Node { label, op, inputs, output: n.output.clone() });
        self.values.insert(n.output.clone(), Held { name: n.output.clone(), shape });
    }

    /// The bias-less (when `bias_less`) linear layer or convolution defining `x` (input `k` of
    /// `n`) that nothing else reads: its index in the graph's nodes.
    fn foldable(&self, n: &OnnxNode, k: usize, x: &Held, bias_less: bool) -> Option<usize> {
        let v = n.inputs.get(k)?;
        let i = *self.producer.get(&x.name)?;
        let ok = match &self.graph.nodes[i].op {
            Op::Conv2d { bias, .. } | Op::Linear { bias, .. } => !bias_less || bias.is_none(),
            _ => false,
        };
        (ok && x.name == *v && self.readers.get(v.as_str()) == Some(&1)).then_some(i)
    }

    /// Node `i` of the graph now defines `n`'s output.
    fn redefine(&mut self, n: &OnnxNode, i: usize, shape: Vec<Dim>) {
        self.graph.nodes[i].output = n.output.clone();
        self.producer.insert(n.output.clone(), i);
        self.values.insert(n.output.clone(), Held { name: n.output.clone(), shape });
    }

    fn node(&mut self, n: &'a OnnxNode) -> Result<()> {
        let out = self.shape(n, &n.output)?;
        match &n.op {
            OnnxOp::Conv(w) => {
                let x = self.input4(n, 0)?;
                let (wn, wt) = self.take(n, 1, "weight")?;
                self.put(n, wn, wt, None, None)?;
                let bias = if n.inputs.len() > 2 {
                    let (bn, bt) = self.take(n, 2, "bias")?;
                    self.put(n, bn, bt, None, None)?;
                    Some(bn.to_string())
                } else {
                    None
                };
                let op =
                    Op::Conv2d { weight: wn.to_string(), bias, stride: (w.strides[0], w.strides[1]), padding: w.pads };
                self.emit(n, op, vec![x.name], out);
            }
            &OnnxOp::Gemm { trans_b, alpha, beta } => {
                let x = self.input2(n, 0)?;
                let (wn, wt) = self.take(n, 1, "weight")?;
                if wt.shape.len() != 2 {
                    return Err(err(n, format!("weight shape {:?} is not 2-D", wt.shape)));
                }
                let w = if trans_b {
                    PlainTensor { data: wt.data.iter().map(|v| f64::from(alpha) * v).collect(), ..wt }
                } else {
                    transposed(&wt, f64::from(alpha))
                };
                let fout = w.shape[0];
                self.put(n, wn, w, None, None)?;
                let bias = if n.inputs.len() > 2 {
                    let (bn, bt) = self.take(n, 2, "bias")?;
                    let data = match bt.shape[..] {
                        [o] | [1, o] if o == fout => bt.data,
                        _ if bt.data.len() == 1 => vec![bt.data[0]; fout],
                        _ => {
                            return Err(err(
                                n,
                                format!(
                                    "bias shape {:?} is not supported (only [{fout}], [1, {fout}] or one value)",
                                    bt.shape
                                ),
                            ))
                        }
                    };
                    let b = PlainTensor { shape: vec![fout], data: data.iter().map(|v| f64::from(beta) * v).collect() };
                    self.put(n, bn, b, None, None)?;
                    Some(bn.to_string())
                } else {
                    None
                };
                self.emit(n, Op::Linear { weight: wn.to_string(), bias }, vec![x.name], out);
            }
            OnnxOp::MatMul => {
                let x = self.input2(n, 0)?;
                let (wn, wt) = self.take(n, 1, "weight")?;
                if wt.shape.len() != 2 {
                    return Err(err(n, format!("weight shape {:?} is not 2-D", wt.shape)));
                }
                self.put(n, wn, transposed(&wt, 1.0), None, None)?;
                self.emit(n, Op::Linear { weight: wn.to_string(), bias: None }, vec![x.name], out);
            }
            OnnxOp::Add => self.add(n)?,
            OnnxOp::Mul => self.mul(n)?,
            OnnxOp::Relu => {
                let x = self.input(n, 0)?;
                self.emit(n, Op::Relu, vec![x.name], x.shape);
            }
            OnnxOp::MaxPool(w) => {
                let x = self.input4(n, 0)?;
                let op = Op::MaxPool2d {
                    kernel: (w.kernel[0], w.kernel[1]),
                    stride: (w.strides[0], w.strides[1]),
                    padding: symmetric(n, w)?,
                };
                self.emit(n, op, vec![x.name], out);
            }
            &OnnxOp::AveragePool { window: ref w, count_include_pad } => {
                let x = self.input4(n, 0)?;
                let op = Op::AvgPool2d {
                    kernel: (w.kernel[0], w.kernel[1]),
                    stride: (w.strides[0], w.strides[1]),
                    padding: symmetric(n, w)?,
                    count_include_pad,
                };
                self.emit(n, op, vec![x.name], out);
            }
            OnnxOp::GlobalAveragePool | OnnxOp::ReduceMean { .. } => {
                let x = self.input4(n, 0)?;
                let shape = x.shape[..2].to_vec();
                self.emit(n, Op::GlobalAvgPool, vec![x.name], shape);
            }
            &OnnxOp::BatchNormalization { epsilon } => self.batch_norm(n, f64::from(epsilon))?,
            OnnxOp::Flatten { .. } => {
                let x = self.input(n, 0)?;
                if out.len() != 2 || features(&out).is_none() || features(&out) != features(&x.shape) {
                    return Err(err(n, format!("flattens {} to {}", format_shape(&x.shape), format_shape(&out))));
                }
                if x.shape == out {
                    self.values.insert(n.output.clone(), x);
                } else {
                    self.emit(n, Op::Flatten, vec![x.name], out);
                }
            }
            OnnxOp::Reshape { shape } => {
                return Err(err(
                    n,
                    format!("a reshape to {} is not supported (only to [N, features])", format_shape(shape)),
                ))
            }
            &OnnxOp::Pad { pads } => {
                let x = self.input4(n, 0)?;
                self.emit(n, Op::Pad { pads }, vec![x.name], out);
            }
            &OnnxOp::Softmax { axis } | &OnnxOp::LogSoftmax { axis } => {
                let x = self.input(n, 0)?;
                if n.output != self.onnx.output || x.shape.len() != 2 || axis != 1 {
                    return Err(err(
                        n,
                        "only supported as the model's last operator, over the classes of [N, classes] logits",
                    ));
                }
                self.head = Some(if matches!(n.op, OnnxOp::Softmax { .. }) { Head::Softmax } else { Head::LogSoftmax });
                self.values.insert(n.output.clone(), x);
            }
        }
        Ok(())
    }

    /// `Add`: of two values, or of a constant (a bias, else an affine map).
    fn add(&mut self, n: &'a OnnxNode) -> Result<()> {
        let is_const = |k: usize| n.inputs.get(k).is_some_and(|v| self.onnx.initializers.contains_key(v));
        let k = match (is_const(0), is_const(1)) {
            (true, true) => return Err(err(n, "adds two constants")),
            (false, false) => {
                let (a, b) = (self.input(n, 0)?, self.input(n, 1)?);
                let (sa, sb) = (self.shape(n, self.name(n, 0)?)?, self.shape(n, self.name(n, 1)?)?);
                if sa != sb || a.shape != b.shape {
                    return Err(err(
                        n,
                        format!(
                            "adds '{}' {} and '{}' {}: two computed values must have one shape (no broadcasting)",
                            n.inputs[0],
                            format_shape(&sa),
                            n.inputs[1],
                            format_shape(&sb)
                        ),
                    ));
                }
                self.emit(n, Op::Add, vec![a.name, b.name], a.shape);
                return Ok(());
            }
            (true, false) => 0,
            (false, true) => 1,
        };
        let x = self.input(n, 1 - k)?;
        let (cn, shift) = self.per_channel(n, k, "adds")?;
        let channels = shift.data.len();
        if let Some(i) = self.single_reader(n, 1 - k, &x) {
            if let Op::Affine { shift: t, .. } = &self.graph.nodes[i].op {
                // x·s + t + c: the constant joins the affine map's shift.
                let t = t.clone();
                let old = self.params.get_mut(&t).ok_or_else(|| err(n, format!("parameter '{t}' is missing")))?;
                old.data.iter_mut().zip(&shift.data).for_each(|(a, b)| *a += b);
                let merged = old.clone();
                self.check(n, &t, &merged, Some(&format!("with '{cn}' added")))?;
                self.redefine(n, i, x.shape);
                return Ok(());
            }
        }
        if let Some(i) = self.foldable(n, 1 - k, &x, true) {
            let weight = self.graph.nodes[i].op.param_names()[0].to_string();
            self.put(n, cn, shift, None, Some(&weight))?;
            if let Op::Conv2d { bias, .. } | Op::Linear { bias, .. } = &mut self.graph.nodes[i].op {
                *bias = Some(cn.to_string());
            }
            self.redefine(n, i, x.shape);
            return Ok(());
        }
        if self.lowering == Lowering::Training {
            return Err(err(
                n,
                format!("adding constant '{cn}' here is an affine map, which is not trainable (only a bias is)"),
            ));
        }
        let scale = format!("{}.scale", n.name);
        self.put(n, &scale, PlainTensor { shape: vec![channels], data: vec![1.0; channels] }, None, None)?;
        self.put(n, cn, shift, None, None)?;
        self.emit(n, Op::Affine { scale, shift: cn.to_string() }, vec![x.name], x.shape);
        Ok(())
    }

    /// `Mul` by a constant per channel: an affine map with no shift (a following constant `Add`
    /// becomes its shift).
    fn mul(&mut self, n: &'a OnnxNode) -> Result<()> {
        let is_const = |k: usize| n.inputs.get(k).is_some_and(|v| self.onnx.initializers.contains_key(v));
        let k = match (is_const(0), is_const(1)) {
            (false, true) => 1,
            (true, false) => 0,
            (true, true) => return Err(err(n, "multiplies two constants")),
            (false, false) => {
                return Err(err(n, "multiplies two computed values (only a constant factor is supported)"))
            }
        };
        let x = self.input(n, 1 - k)?;
        let (cn, scale) = self.per_channel(n, k, "multiplies by")?;
        if self.lowering == Lowering::Training {
            return Err(err(n, format!("multiplying by constant '{cn}' is an affine map, which is not trainable")));
        }
        let channels = scale.data.len();
        let shift = format!("{}.shift", n.name);
        self.put(n, cn, scale, None, None)?;
        self.put(n, &shift, PlainTensor { shape: vec![channels], data: vec![0.0; channels] }, None, None)?;
        self.emit(n, Op::Affine { scale: cn.to_string(), shift }, vec![x.name], x.shape);
        Ok(())
    }

    /// Input `k` of `n` as a constant with one value per channel (axis 1) of the other input
    /// (every other axis 1, or a single value): its name and the `[C]` values.
    fn per_channel(&mut self, n: &'a OnnxNode, k: usize, what: &str) -> Result<(&'a str, PlainTensor)> {
        let xs = self.shape(n, self.name(n, 1 - k)?)?;
        let (cn, c) = self.take(n, k, "constant")?;
        let lead = xs.len().checked_sub(c.shape.len());
        let per_channel = lead.is_some_and(|lead| {
            c.shape.iter().enumerate().all(|(j, &d)| d == 1 || lead + j == 1 && Dim::Fixed(d) == xs[1])
        });
        let channels = match xs.get(1) {
            Some(&Dim::Fixed(ch)) if per_channel => ch,
            _ => {
                return Err(err(
                    n,
                    format!(
                        "{what} constant '{cn}' {:?} on {}: only a constant per channel (axis 1) is supported",
                        c.shape,
                        format_shape(&xs)
                    ),
                ))
            }
        };
        let data = if c.data.len() == channels { c.data } else { vec![c.data[0]; channels] };
        Ok((cn, PlainTensor { shape: vec![channels], data }))
    }

    /// The node defining input `k` of `n` (held as `x`) when `n` is its only reader.
    fn single_reader(&self, n: &OnnxNode, k: usize, x: &Held) -> Option<usize> {
        let v = n.inputs.get(k)?;
        let i = *self.producer.get(&x.name)?;
        (x.name == *v && self.readers.get(v.as_str()) == Some(&1)).then_some(i)
    }

    /// `BatchNormalization`: folded into the layer before, or an [`Op::BatchNorm`].
    fn batch_norm(&mut self, n: &'a OnnxNode, eps: f64) -> Result<()> {
        let x = self.input(n, 0)?;
        let mut ts = Vec::new();
        for (k, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")] {
            ts.push(self.take(n, k, what)?);
        }
        let prefix = ts[0].0.strip_suffix(".weight").unwrap_or(&n.name).to_string();
        let names = ["weight", "bias", "running_mean", "running_var"].map(|p| format!("{prefix}.{p}"));
        let notes: Vec<Option<String>> = ts
            .iter()
            .zip(&names)
            .map(|((init, _), name)| (init != name).then(|| format!("initializer '{init}'")))
            .collect();
        let channels = x.shape.get(1).copied();
        for (((init, t), name), note) in ts.iter().zip(&names).zip(&notes) {
            if channels != Some(Dim::Fixed(t.data.len())) || t.shape.len() != 1 {
                return Err(err(n, format!("initializer '{init}' {:?} is not one value per channel", t.shape)));
            }
            self.check(n, name, t, note.as_deref())?;
        }
        let fold = match self.lowering {
            Lowering::Inference => self.foldable(n, 0, &x, false),
            Lowering::Training => None,
        };
        let Some(i) = fold else {
            for (((_, t), name), note) in ts.into_iter().zip(&names).zip(&notes) {
                self.put(n, name, t, note.as_deref(), None)?;
            }
            let [weight, bias, running_mean, running_var] = names;
            self.emit(n, Op::BatchNorm { weight, bias, running_mean, running_var, eps }, vec![x.name], x.shape);
            return Ok(());
        };
        // w' = w * s per output channel, b' = (b - mean) * s + beta, s = gamma / sqrt(var + eps).
        let [gamma, beta, mean, var] = [0, 1, 2, 3].map(|j| &ts[j].1.data);
        let s: Vec<f64> = gamma.iter().zip(var).map(|(g, v)| g / (v + eps).sqrt()).collect();
        let (wn, bn) = match &self.graph.nodes[i].op {
            Op::Conv2d { weight, bias, .. } | Op::Linear { weight, bias } => (weight.clone(), bias.clone()),
            _ => return Err(err(n, "folds into a node that is no linear layer")),
        };
        let param = |p: &str| self.params.get(p).cloned().ok_or_else(|| err(n, format!("parameter '{p}' is missing")));
        let mut w = param(&wn)?;
        let b0 = match &bn {
            Some(b) => param(b)?.data,
            None => vec![0.0; s.len()],
        };
        if w.shape.first() != Some(&s.len()) || b0.len() != s.len() {
            return Err(err(n, format!("{} channels do not match weight '{wn}' {:?}", s.len(), w.shape)));
        }
        let per = (w.data.len() / s.len().max(1)).max(1);
        w.data.chunks_mut(per).zip(&s).for_each(|(row, s)| row.iter_mut().for_each(|v| *v *= s));
        let data = (0..s.len()).map(|o| (b0[o] - mean[o]) * s[o] + beta[o]).collect();
        let b = PlainTensor { shape: vec![s.len()], data };
        let note = format!("folded into '{}'", self.graph.nodes[i].label);
        self.check(n, &wn, &w, Some(&note))?;
        self.params.insert(wn.clone(), w);
        match bn {
            Some(bn) => {
                self.check(n, &bn, &b, Some(&note))?;
                self.params.insert(bn, b);
            }
            None => {
                let bn = names[1].clone();
                self.put(n, &bn, b, Some(&note), Some(&wn))?;
                if let Op::Conv2d { bias, .. } | Op::Linear { bias, .. } = &mut self.graph.nodes[i].op {
                    *bias = Some(bn);
                }
            }
        }
        self.redefine(n, i, x.shape);
        Ok(())
    }

    /// The checked graph and its parameters.
    fn finish(mut self) -> Result<OnnxModel> {
        let out = &self.onnx.output;
        let x = self
            .values
            .get(out)
            .cloned()
            .ok_or_else(|| NnError::OnnxModel(format!("output '{out}' is computed by no node")))?;
        let shape = self.onnx.shape(out).unwrap_or(&[]);
        let classes = match shape {
            [Dim::Batch, Dim::Fixed(c)] if x.shape == shape => *c,
            _ => {
                return Err(NnError::OnnxModel(format!(
                    "output '{out}' has shape {}, expected [N, classes]",
                    format_shape(shape)
                )))
            }
        };
        self.graph.output = x.name;
        self.graph.classes = classes;
        self.graph.check(1)?;
        let covered = self.graph.params.len() == self.params.len()
            && self.graph.params.iter().all(|(p, s)| self.params.get(p).is_some_and(|t| t.shape == *s));
        if !covered {
            return Err(NnError::Weights(format!(
                "{}: the lowered parameters do not match the graph's",
                self.graph.name
            )));
        }
        Ok(OnnxModel { graph: self.graph, params: self.params, head: self.head })
    }
}
