//! ONNX export: a [`Graph`] and its parameters as an ONNX model that `onnx`, onnxruntime and
//! PyTorch load (see [`write_onnx`] for the operator mapping).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use prost::Message;

use super::proto::{
    AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, TypeProtoTensor, ValueInfoProto, ATTR_FLOAT, ATTR_INT, ATTR_INTS, ATTR_STRING, DATA_TYPE_FLOAT,
    DATA_TYPE_INT64,
};
use crate::engine::graph_for_params;
use crate::error::{NnError, Result};
use crate::graph::{Graph, Node, Op};
use crate::weights::Params;

/// The IR version written (ONNX 1.8, the first with opset 13).
const IR_VERSION: i64 = 7;
/// The `ai.onnx` operator set written.
const OPSET: i64 = 13;
/// The symbolic name of the batch axis.
const BATCH: &str = "N";

/// The model as ONNX protobuf bytes: IR version 7, `ai.onnx` opset 13, producer `cryptgpu`.
///
/// `params` must be exactly the graph's parameters, trainable or folded, with their shapes (as
/// [`Model::from_graph`](crate::engine::Model::from_graph) accepts them); the graph is checked
/// with [`Graph::check`]. The input is FLOAT `[N, ...input_shape]` and the output FLOAT
/// `[N, classes]` with a symbolic batch axis `N`; every other value gets its shape in
/// `value_info`. Parameters become FLOAT initializers (little-endian `raw_data`) under their
/// names; value names are kept unless taken (by a parameter), node names are the labels, made
/// unique. Each node becomes: `Conv2d` a `Conv` (bias input only when present), `Linear` a `Gemm`
/// with `transB = 1` (`C` only with a bias), `Relu` a `Relu`, `MaxPool2d` a `MaxPool`,
/// `AvgPool2d` an `AveragePool` with `count_include_pad`, `GlobalAvgPool` a `GlobalAveragePool`
/// then a `Flatten` (to `[N, C]`), `BatchNorm` a `BatchNormalization`, `Affine` a `Mul` and an
/// `Add` by its parameters shaped `[C, 1, ...]` to broadcast over axis 1, `Flatten` a `Flatten`
/// (axis 1), `Add` an `Add`, and `Pad` a constant `Pad` with an INT64 `pads` initializer
/// (`{output}.pads`).
pub fn write_onnx(graph: &Graph, params: &Params) -> Result<Vec<u8>> {
    let (graph, _) = graph_for_params(graph.clone(), params, |t| t.shape.clone())?;
    for (name, t) in params {
        let n: usize = t.shape.iter().product();
        if t.data.len() != n {
            return Err(NnError::Weights(format!(
                "{name} has {} values, its shape {:?} needs {n}",
                t.data.len(),
                t.shape
            )));
        }
    }
    if graph.output == graph.input {
        return Err(NnError::Unsupported(format!(
            "{}: the output is the input; an ONNX graph needs a node computing it",
            graph.name
        )));
    }
    let shapes = graph.check(1)?;
    let mut w = Writer {
        shapes: &shapes,
        params,
        values: BTreeSet::new(),
        node_names: BTreeSet::new(),
        rename: BTreeMap::new(),
        nodes: Vec::new(),
        initializers: Vec::new(),
        value_info: Vec::new(),
    };

    // Affine parameters broadcast over axis 1: `[C, 1, ...]` for an input of rank r.
    let mut dims: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for node in &graph.nodes {
        if let Op::Affine { scale, shift } = &node.op {
            let rank = shapes[&node.inputs[0]].len();
            for p in [scale, shift] {
                let mut d = params[p].shape.clone();
                d.resize(rank - 1, 1);
                dims.insert(p, d);
            }
        }
    }
    for (name, _) in &graph.params {
        w.values.insert(name.clone());
        let t = &params[name];
        let d = dims.get(name.as_str()).unwrap_or(&t.shape);
        let raw = t.data.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect();
        w.initializers.push(tensor(name, d, DATA_TYPE_FLOAT, raw));
    }
    let input = w.value(&graph.input);
    for node in &graph.nodes {
        w.node(node);
    }
    let output = w.renamed(&graph.output);
    // The output is declared in `output`, not `value_info`.
    w.value_info.retain(|v| v.name != output);

    let mut in_shape = vec![1];
    in_shape.extend(&graph.input_shape);
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "cryptgpu".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(GraphProto {
            node: w.nodes,
            name: graph.name.clone(),
            initializer: w.initializers,
            input: vec![value_info(&input, &in_shape)],
            output: vec![value_info(&output, &[1, graph.classes])],
            value_info: w.value_info,
        }),
    };
    Ok(model.encode_to_vec())
}

/// Writes [`write_onnx`]'s bytes to `path`.
pub fn save_onnx(path: impl AsRef<Path>, graph: &Graph, params: &Params) -> Result<()> {
    let bytes = write_onnx(graph, params)?;
    let path = path.as_ref();
    std::fs::write(path, bytes).map_err(|source| NnError::Io { path: path.display().to_string(), source })
}

/// The model of `bytes` (a file [`read_onnx`](super::read_onnx) accepts) with every FLOAT
/// constant, initializers and `Constant` values alike, set to zero: the architecture without the
/// weights. The parties of a three-machine run other than the model owner need a model's shapes
/// but must not see its parameters; the stripped file lowers to the same graph (so all three
/// agree on the job) and every weight is used only at the model owner.
pub fn strip_weights(bytes: &[u8]) -> Result<Vec<u8>> {
    super::read_onnx(bytes)?;
    let mut model = ModelProto::decode(bytes).map_err(|e| NnError::OnnxModel(format!("not an ONNX model: {e}")))?;
    let zero = |t: &mut TensorProto| {
        if t.data_type == DATA_TYPE_FLOAT {
            t.raw_data.iter_mut().for_each(|b| *b = 0);
            t.float_data.iter_mut().for_each(|v| *v = 0.0);
        }
    };
    if let Some(g) = model.graph.as_mut() {
        g.initializer.iter_mut().for_each(zero);
        for n in g.node.iter_mut().filter(|n| n.op_type == "Constant") {
            n.attribute.iter_mut().filter_map(|a| a.t.as_mut()).for_each(zero);
            n.attribute.iter_mut().for_each(|a| {
                a.f = 0.0;
                a.floats.iter_mut().for_each(|v| *v = 0.0);
            });
        }
    }
    Ok(model.encode_to_vec())
}

/// The ONNX graph being written.
struct Writer<'a> {
    /// Every graph value's shape at batch 1.
    shapes: &'a BTreeMap<String, Vec<usize>>,
    /// The (checked) parameters.
    params: &'a Params,
    /// ONNX value names taken (initializers, the input, node outputs).
    values: BTreeSet<String>,
    /// ONNX node names taken.
    node_names: BTreeSet<String>,
    /// Graph value name to ONNX value name.
    rename: BTreeMap<String, String>,
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    value_info: Vec<ValueInfoProto>,
}

/// `want` if it is non-empty and not in `taken`, else `want_1`, `want_2` ...; taken.
fn fresh(taken: &mut BTreeSet<String>, want: &str) -> String {
    let want = if want.is_empty() { "value" } else { want };
    let mut name = want.to_string();
    let mut k = 0;
    while taken.contains(&name) {
        k += 1;
        name = format!("{want}_{k}");
    }
    taken.insert(name.clone());
    name
}

impl Writer<'_> {
    /// The ONNX name of graph value `v`, new.
    fn value(&mut self, v: &str) -> String {
        let name = fresh(&mut self.values, v);
        self.rename.insert(v.to_string(), name.clone());
        name
    }

    /// The ONNX name given to graph value `v` (defined before, as [`Graph::check`] ensures).
    fn renamed(&self, v: &str) -> String {
        self.rename.get(v).cloned().unwrap_or_else(|| v.to_string())
    }

    /// Appends a node `name` and records `output`'s shape (`shape`, at batch 1).
    fn push(
        &mut self,
        name: String,
        op: &str,
        inputs: Vec<String>,
        output: &str,
        attrs: Vec<AttributeProto>,
        shape: &[usize],
    ) {
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![output.to_string()],
            name,
            op_type: op.into(),
            domain: String::new(),
            attribute: attrs,
        });
        self.value_info.push(value_info(output, shape));
    }

    /// The ONNX nodes of one graph node.
    fn node(&mut self, node: &Node) {
        let base = if node.label.is_empty() { &node.output } else { &node.label };
        let name = fresh(&mut self.node_names, base);
        let mut inputs: Vec<String> = node.inputs.iter().map(|v| self.renamed(v)).collect();
        let shape = self.shapes[&node.output].clone();
        let in_shape = self.shapes[&node.inputs[0]].clone();
        let out = self.value(&node.output);
        let window = |k: (usize, usize), s: (usize, usize), p: [usize; 4]| {
            vec![ints("kernel_shape", &[k.0, k.1]), ints("strides", &[s.0, s.1]), ints("pads", &p)]
        };
        let sym = |p: (usize, usize)| [p.0, p.1, p.0, p.1];
        match &node.op {
            Op::Conv2d { weight, bias, stride, padding } => {
                let k = &self.params[weight].shape;
                let k = (k[2], k[3]);
                inputs.push(weight.clone());
                inputs.extend(bias.clone());
                self.push(name, "Conv", inputs, &out, window(k, *stride, *padding), &shape);
            }
            Op::Linear { weight, bias } => {
                inputs.push(weight.clone());
                inputs.extend(bias.clone());
                self.push(name, "Gemm", inputs, &out, vec![int("transB", 1)], &shape);
            }
            Op::Relu => self.push(name, "Relu", inputs, &out, vec![], &shape),
            Op::MaxPool2d { kernel, stride, padding } => {
                self.push(name, "MaxPool", inputs, &out, window(*kernel, *stride, sym(*padding)), &shape)
            }
            Op::AvgPool2d { kernel, stride, padding, count_include_pad } => {
                let mut attrs = window(*kernel, *stride, sym(*padding));
                attrs.push(int("count_include_pad", i64::from(*count_include_pad)));
                self.push(name, "AveragePool", inputs, &out, attrs, &shape);
            }
            Op::GlobalAvgPool => {
                let pooled = fresh(&mut self.values, &format!("{out}/GlobalAveragePool"));
                self.push(name.clone(), "GlobalAveragePool", inputs, &pooled, vec![], &[shape[0], shape[1], 1, 1]);
                let flat = fresh(&mut self.node_names, &format!("{name}/Flatten"));
                self.push(flat, "Flatten", vec![pooled], &out, vec![int("axis", 1)], &shape);
            }
            Op::BatchNorm { weight, bias, running_mean, running_var, eps } => {
                inputs.extend([weight, bias, running_mean, running_var].map(String::clone));
                self.push(name, "BatchNormalization", inputs, &out, vec![float("epsilon", *eps as f32)], &shape);
            }
            Op::Affine { scale, shift } => {
                let scaled = fresh(&mut self.values, &format!("{out}/Mul"));
                inputs.push(scale.clone());
                self.push(name.clone(), "Mul", inputs, &scaled, vec![], &in_shape);
                let add = fresh(&mut self.node_names, &format!("{name}/Add"));
                self.push(add, "Add", vec![scaled, shift.clone()], &out, vec![], &shape);
            }
            Op::Flatten => self.push(name, "Flatten", inputs, &out, vec![int("axis", 1)], &shape),
            Op::Add => self.push(name, "Add", inputs, &out, vec![], &shape),
            Op::Pad { pads } => {
                let p = [0, 0, pads[0], pads[1], 0, 0, pads[2], pads[3]];
                let pname = fresh(&mut self.values, &format!("{out}.pads"));
                let raw = p.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect();
                self.initializers.push(tensor(&pname, &[8], DATA_TYPE_INT64, raw));
                inputs.push(pname);
                self.push(name, "Pad", inputs, &out, vec![string("mode", "constant")], &shape);
            }
        }
    }
}

/// A tensor `name` of shape `dims` and element type `data_type` with `raw` little-endian data.
fn tensor(name: &str, dims: &[usize], data_type: i32, raw: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type,
        name: name.into(),
        raw_data: raw,
        ..TensorProto::default()
    }
}

/// A FLOAT value `name` of `shape` (at batch 1), axis 0 the symbolic batch.
fn value_info(name: &str, shape: &[usize]) -> ValueInfoProto {
    let dim = shape
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            if i == 0 {
                Dimension { dim_value: None, dim_param: Some(BATCH.into()) }
            } else {
                Dimension { dim_value: Some(d as i64), dim_param: None }
            }
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor { elem_type: DATA_TYPE_FLOAT, shape: Some(TensorShapeProto { dim }) }),
        }),
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: ATTR_INT, i, ..AttributeProto::default() }
}

fn ints(name: &str, v: &[usize]) -> AttributeProto {
    let ints = v.iter().map(|&x| x as i64).collect();
    AttributeProto { name: name.into(), r#type: ATTR_INTS, ints, ..AttributeProto::default() }
}

fn float(name: &str, f: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: ATTR_FLOAT, f, ..AttributeProto::default() }
}

fn string(name: &str, s: &str) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: ATTR_STRING, s: s.as_bytes().to_vec(), ..AttributeProto::default() }
}
