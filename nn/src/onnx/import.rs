//! Decoding, validation, shape inference and shape-chain evaluation behind [`super::read_onnx`].

use std::collections::{BTreeMap, BTreeSet, HashMap};

use prost::Message;

use super::proto::{
    AttributeProto, ModelProto, NodeProto, TensorProto, ATTR_FLOAT, ATTR_FLOATS, ATTR_INT, ATTR_INTS, ATTR_STRING,
    ATTR_TENSOR, DATA_LOCATION_EXTERNAL, DATA_TYPE_FLOAT, DATA_TYPE_INT64,
};
use super::{format_shape, Dim, OnnxGraph, OnnxInput, OnnxNode, OnnxOp, OnnxTensor, Window};
use crate::error::{NnError, Result};

/// The `ai.onnx` opsets accepted.
const OPSETS: std::ops::RangeInclusive<i64> = 11..=20;

/// An element of an integer constant: a number, or the symbolic batch size.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Int {
    Batch,
    Val(i64),
}

/// What is known about a value while the graph is read.
#[derive(Clone, Debug)]
enum Val {
    /// A FLOAT constant.
    Float(OnnxTensor),
    /// An INT64 constant (shape arithmetic).
    Int { dims: Vec<usize>, data: Vec<Int> },
    /// Computed at run time: only the shape is known.
    Dyn(Vec<Dim>),
}

impl Val {
    fn shape(&self) -> Vec<Dim> {
        match self {
            Val::Float(t) => t.dims.iter().map(|&d| Dim::Fixed(d)).collect(),
            Val::Int { dims, .. } => dims.iter().map(|&d| Dim::Fixed(d)).collect(),
            Val::Dyn(s) => s.clone(),
        }
    }
}

fn model_err(detail: impl Into<String>) -> NnError {
    NnError::OnnxModel(detail.into())
}

fn numel(dims: &[usize]) -> Option<usize> {
    dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

fn type_name(dt: i32) -> String {
    let name = match dt {
        0 => "UNDEFINED",
        1 => "FLOAT",
        2 => "UINT8",
        3 => "INT8",
        4 => "UINT16",
        5 => "INT16",
        6 => "INT32",
        7 => "INT64",
        8 => "STRING",
        9 => "BOOL",
        10 => "FLOAT16",
        11 => "DOUBLE",
        12 => "UINT32",
        13 => "UINT64",
        16 => "BFLOAT16",
        _ => return format!("data type {dt}"),
    };
    name.to_string()
}

/// A FLOAT or INT64 tensor's value; any other type, external data or a size mismatch is an
/// error naming the tensor.
fn tensor_value(t: &TensorProto, what: &str) -> std::result::Result<Val, String> {
    if t.data_location == DATA_LOCATION_EXTERNAL {
        return Err(format!("{what}: external data is not supported"));
    }
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("{what}: negative dimension {d}")))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let n = numel(&dims).ok_or_else(|| format!("{what}: shape {:?} overflows", t.dims))?;
    let size_err =
        |got: usize, unit: &str| format!("{what}: shape {:?} needs {n} elements, the data has {got} {unit}", t.dims);
    match t.data_type {
        DATA_TYPE_FLOAT => {
            let data: Vec<f32> = if !t.raw_data.is_empty() || t.float_data.is_empty() {
                if n.checked_mul(4) != Some(t.raw_data.len()) {
                    return Err(size_err(t.raw_data.len(), "bytes"));
                }
                t.raw_data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
            } else {
                if t.float_data.len() != n {
                    return Err(size_err(t.float_data.len(), "floats"));
                }
                t.float_data.clone()
            };
            Ok(Val::Float(OnnxTensor { dims, data }))
        }
        DATA_TYPE_INT64 => {
            let data: Vec<i64> = if !t.raw_data.is_empty() || t.int64_data.is_empty() {
                if n.checked_mul(8) != Some(t.raw_data.len()) {
                    return Err(size_err(t.raw_data.len(), "bytes"));
                }
                t.raw_data
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                    .collect()
            } else {
                if t.int64_data.len() != n {
                    return Err(size_err(t.int64_data.len(), "integers"));
                }
                t.int64_data.clone()
            };
            Ok(Val::Int { dims, data: data.into_iter().map(Int::Val).collect() })
        }
        dt => Err(format!("{what}: {} tensors are not supported (FLOAT or INT64 only)", type_name(dt))),
    }
}

/// Reads and validates a model.
pub(super) fn read(bytes: &[u8]) -> Result<OnnxGraph> {
    let model = ModelProto::decode(bytes).map_err(|e| model_err(format!("not a valid ONNX file: {e}")))?;
    let mut opset = None;
    for o in &model.opset_import {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            opset = Some(o.version);
        }
    }
    let opset = opset.ok_or_else(|| model_err("no ai.onnx operator set is imported"))?;
    if !OPSETS.contains(&opset) {
        return Err(model_err(format!("opset {opset} of ai.onnx is not supported (11 to 20 are)")));
    }
    let graph = model.graph.ok_or_else(|| model_err("the file has no graph"))?;

    let mut vals: HashMap<String, Val> = HashMap::new();
    for t in &graph.initializer {
        if t.name.is_empty() {
            return Err(model_err("an initializer has no name"));
        }
        let v = tensor_value(t, &format!("initializer '{}'", t.name)).map_err(model_err)?;
        if vals.insert(t.name.clone(), v).is_some() {
            return Err(model_err(format!("initializer '{}' is repeated", t.name)));
        }
    }

    // The data input: the one graph input that is not an initializer.
    let data_inputs: Vec<_> = graph.input.iter().filter(|i| !vals.contains_key(&i.name)).collect();
    let [inp] = data_inputs[..] else {
        return Err(model_err(format!("the graph has {} data inputs, import needs exactly one", data_inputs.len())));
    };
    let ty = inp
        .r#type
        .as_ref()
        .and_then(|t| t.tensor_type.as_ref())
        .ok_or_else(|| model_err(format!("input '{}' is not a tensor", inp.name)))?;
    if ty.elem_type != DATA_TYPE_FLOAT {
        return Err(model_err(format!("input '{}' is {}, import needs FLOAT", inp.name, type_name(ty.elem_type))));
    }
    let dims = ty.shape.as_ref().map(|s| &s.dim[..]).unwrap_or(&[]);
    if dims.is_empty() {
        return Err(model_err(format!("input '{}' has no shape (rank needed)", inp.name)));
    }
    let mut batch = None;
    let mut in_shape = vec![Dim::Batch];
    for (axis, d) in dims.iter().enumerate() {
        match (axis, d.dim_value) {
            (0, Some(b)) => {
                batch = Some(
                    usize::try_from(b)
                        .ok()
                        .filter(|&b| b > 0)
                        .ok_or_else(|| model_err(format!("input '{}' has batch size {b}", inp.name)))?,
                )
            }
            (0, None) => {}
            (_, Some(v)) if v > 0 => in_shape.push(Dim::Fixed(v as usize)),
            _ => {
                return Err(model_err(format!(
                    "input '{}' axis {axis} is not a positive constant: only the batch axis may be dynamic",
                    inp.name
                )))
            }
        }
    }
    vals.insert(inp.name.clone(), Val::Dyn(in_shape.clone()));

    let [out] = &graph.output[..] else {
        return Err(model_err(format!("the graph has {} outputs, import needs exactly one", graph.output.len())));
    };

    let mut cx = Reader { opset, batch, vals, aliases: HashMap::new(), nodes: Vec::new() };
    for (i, node) in graph.node.iter().enumerate() {
        cx.node(i, node)?;
    }

    // The output.
    let output = cx.resolve(&out.name);
    let out_shape = match cx.vals.get(&output) {
        Some(Val::Dyn(s)) => s.clone(),
        Some(_) => return Err(model_err(format!("output '{}' is a constant, not computed from the input", out.name))),
        None => return Err(model_err(format!("output '{}' is produced by no node", out.name))),
    };
    if out_shape.first() != Some(&Dim::Batch) {
        return Err(model_err(format!(
            "output '{}' has shape {}, without the batch axis first",
            out.name,
            format_shape(&out_shape)
        )));
    }
    if let Some(decl) = out.r#type.as_ref().and_then(|t| t.tensor_type.as_ref()).and_then(|t| t.shape.as_ref()) {
        let matches = decl.dim.len() == out_shape.len()
            && decl
                .dim
                .iter()
                .zip(&out_shape)
                .skip(1)
                .all(|(d, s)| d.dim_value.is_none() || d.dim_value.map(|v| Dim::Fixed(v as usize)) == Some(*s));
        if !matches {
            return Err(model_err(format!(
                "output '{}' is declared with {} axes, inferred shape {}",
                out.name,
                decl.dim.len(),
                format_shape(&out_shape)
            )));
        }
    }

    // Keep what the output depends on.
    let mut live: BTreeSet<String> = BTreeSet::from([output.clone()]);
    let mut nodes = Vec::new();
    for n in cx.nodes.into_iter().rev() {
        if live.contains(&n.output) {
            live.extend(n.inputs.iter().cloned());
            nodes.push(n);
        }
    }
    nodes.reverse();
    let mut initializers = BTreeMap::new();
    let mut shapes = BTreeMap::new();
    for (name, v) in cx.vals {
        if !live.contains(&name) {
            continue;
        }
        shapes.insert(name.clone(), v.shape());
        if let Val::Float(t) = v {
            initializers.insert(name, t);
        }
    }
    Ok(OnnxGraph {
        name: graph.name.clone(),
        opset,
        input: OnnxInput { name: inp.name.clone(), shape: in_shape, batch },
        output,
        nodes,
        initializers,
        shapes,
    })
}

/// The state of the node walk.
struct Reader {
    opset: i64,
    batch: Option<usize>,
    vals: HashMap<String, Val>,
    /// Outputs of removed nodes (Identity, Dropout, zero Pad) to the value they stand for.
    aliases: HashMap<String, String>,
    nodes: Vec<OnnxNode>,
}

/// The node being read, for errors and attributes.
struct Ctx<'a> {
    name: String,
    op: &'a str,
    attrs: BTreeMap<&'a str, &'a AttributeProto>,
}

impl Ctx<'_> {
    fn err(&self, detail: impl Into<String>) -> NnError {
        NnError::Onnx { node: self.name.clone(), op: self.op.to_string(), detail: detail.into() }
    }

    fn attr(&self, name: &str, ty: i32, ty_name: &str) -> Result<Option<&AttributeProto>> {
        match self.attrs.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == ty => Ok(Some(a)),
            Some(_) => Err(self.err(format!("attribute {name} must be {ty_name}"))),
        }
    }

    fn int(&self, name: &str, default: i64) -> Result<i64> {
        Ok(self.attr(name, ATTR_INT, "an INT")?.map_or(default, |a| a.i))
    }

    fn float(&self, name: &str, default: f32) -> Result<f32> {
        Ok(self.attr(name, ATTR_FLOAT, "a FLOAT")?.map_or(default, |a| a.f))
    }

    fn ints(&self, name: &str) -> Result<Option<Vec<i64>>> {
        Ok(self.attr(name, ATTR_INTS, "INTS")?.map(|a| a.ints.clone()))
    }

    fn string(&self, name: &str) -> Result<Option<String>> {
        Ok(self.attr(name, ATTR_STRING, "a STRING")?.map(|a| String::from_utf8_lossy(&a.s).into_owned()))
    }

    /// An INT attribute that must be absent or have the value `want` (its default).
    fn int_is(&self, name: &str, want: i64) -> Result<()> {
        let v = self.int(name, want)?;
        if v != want {
            return Err(self.err(format!("{name}={v} is not supported (only {want})")));
        }
        Ok(())
    }

    /// `auto_pad` must be absent or NOTSET.
    fn no_auto_pad(&self) -> Result<()> {
        match self.string("auto_pad")?.as_deref() {
            None | Some("NOTSET") | Some("") => Ok(()),
            Some(v) => Err(self.err(format!("auto_pad={v} is not supported (only NOTSET with explicit pads)"))),
        }
    }

    /// `dilations` must be absent or all 1.
    fn no_dilation(&self) -> Result<()> {
        if let Some(d) = self.ints("dilations")? {
            if d.iter().any(|&v| v != 1) {
                return Err(self.err(format!("dilations={d:?} are not supported (only 1)")));
            }
        }
        Ok(())
    }

    /// The kernel, strides and pads of a 2-D window.
    fn window(&self, kernel: Option<[usize; 2]>) -> Result<Window> {
        let pos = |name: &str, v: Vec<i64>, len: usize, min: i64| -> Result<Vec<usize>> {
            if v.len() != len || v.iter().any(|&x| x < min) {
                return Err(self.err(format!("{name}={v:?} is not supported (2-D, {len} values >= {min})")));
            }
            Ok(v.into_iter().map(|x| x as usize).collect())
        };
        let kernel = match (self.ints("kernel_shape")?, kernel) {
            (Some(k), w) => {
                let k = pos("kernel_shape", k, 2, 1)?;
                let k = [k[0], k[1]];
                if w.is_some_and(|w| w != k) {
                    return Err(
                        self.err(format!("kernel_shape={k:?} does not match the weight's {:?}", w.unwrap_or_default()))
                    );
                }
                k
            }
            (None, Some(w)) => w,
            (None, None) => return Err(self.err("kernel_shape is missing")),
        };
        let s = pos("strides", self.ints("strides")?.unwrap_or(vec![1, 1]), 2, 1)?;
        let p = pos("pads", self.ints("pads")?.unwrap_or(vec![0; 4]), 4, 0)?;
        Ok(Window { kernel, strides: [s[0], s[1]], pads: [p[0], p[1], p[2], p[3]] })
    }
}

/// The attributes each operator may carry (others are an error).
fn allowed_attrs(op: &str) -> Option<&'static [&'static str]> {
    Some(match op {
        "Conv" => &["kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"],
        "Gemm" => &["transA", "transB", "alpha", "beta"],
        "MatMul" | "Add" | "Mul" | "Relu" | "GlobalAveragePool" | "Identity" | "Slice" => &[],
        "Gather" | "Concat" => &["axis"],
        "MaxPool" => &["kernel_shape", "strides", "pads", "dilations", "ceil_mode", "storage_order", "auto_pad"],
        "AveragePool" => {
            &["kernel_shape", "strides", "pads", "dilations", "ceil_mode", "count_include_pad", "auto_pad"]
        }
        "ReduceMean" => &["axes", "keepdims", "noop_with_empty_axes"],
        "BatchNormalization" => &["epsilon", "momentum", "training_mode"],
        "Flatten" | "Softmax" | "LogSoftmax" => &["axis"],
        "Reshape" => &["allowzero"],
        "Pad" => &["mode"],
        "Dropout" => &["seed", "ratio"],
        "Constant" => &["value", "value_float", "value_floats", "value_int", "value_ints"],
        "Shape" => &["start", "end"],
        "Unsqueeze" | "Squeeze" => &["axes"],
        "Cast" => &["to", "saturate"],
        _ => return None,
    })
}

/// `axis` in `[-rank, rank + extra)` made non-negative.
fn norm_axis(axis: i64, rank: usize, extra: usize) -> Option<usize> {
    let r = i64::try_from(rank + extra).ok()?;
    let a = if axis < 0 { axis.checked_add(i64::try_from(rank).ok()?)? } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

/// The product of dims, where the batch times ones is the batch.
fn dim_product(dims: &[Dim]) -> Option<Dim> {
    let mut batch = false;
    let mut p = 1usize;
    for d in dims {
        match d {
            Dim::Batch if batch => return None,
            Dim::Batch => batch = true,
            Dim::Fixed(n) => p = p.checked_mul(*n)?,
        }
    }
    match (batch, p) {
        (true, 1) => Some(Dim::Batch),
        (true, _) => None,
        (false, p) => Some(Dim::Fixed(p)),
    }
}

/// Numpy broadcasting of two shapes.
fn broadcast(a: &[Dim], b: &[Dim]) -> Option<Vec<Dim>> {
    let r = a.len().max(b.len());
    let at = |s: &[Dim], i: usize| (i + s.len()).checked_sub(r).map_or(Dim::Fixed(1), |j| s[j]);
    (0..r)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Some(x),
            (Dim::Fixed(1), y) => Some(y),
            (x, Dim::Fixed(1)) => Some(x),
            _ => None,
        })
        .collect()
}

/// `(size + pad_begin + pad_end - kernel) / stride + 1`, floor mode.
fn window_out(size: Dim, k: usize, s: usize, pb: usize, pe: usize) -> Option<usize> {
    let Dim::Fixed(size) = size else { return None };
    let padded = size.checked_add(pb)?.checked_add(pe)?;
    Some(padded.checked_sub(k)? / s + 1)
}

impl Reader {
    fn resolve(&self, name: &str) -> String {
        self.aliases.get(name).cloned().unwrap_or_else(|| name.to_string())
    }

    fn node(&mut self, index: usize, node: &NodeProto) -> Result<()> {
        let op = node.op_type.as_str();
        let name = if node.name.is_empty() { format!("{op}#{index}") } else { node.name.clone() };
        let mut cx = Ctx { name, op, attrs: BTreeMap::new() };
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(cx.err(format!("domain '{}' is not supported", node.domain)));
        }
        let allowed = allowed_attrs(op).ok_or_else(|| cx.err(format!("operator {op} is not supported")))?;
        for a in &node.attribute {
            if !allowed.contains(&a.name.as_str()) {
                return Err(cx.err(format!("attribute '{}' is not supported", a.name)));
            }
            if cx.attrs.insert(a.name.as_str(), a).is_some() {
                return Err(cx.err(format!("attribute '{}' is repeated", a.name)));
            }
        }
        let output = match node.output.first() {
            Some(o) if !o.is_empty() => o.clone(),
            _ => return Err(cx.err("the node has no output")),
        };
        if op != "Dropout" {
            if let Some(extra) = node.output.iter().skip(1).find(|o| !o.is_empty()) {
                return Err(cx.err(format!("a second output ('{extra}') is not supported")));
            }
        }
        for o in node.output.iter().filter(|o| !o.is_empty()) {
            if self.vals.contains_key(o) || self.aliases.contains_key(o) {
                return Err(cx.err(format!("value '{o}' is defined twice")));
            }
        }
        // Inputs, resolved; an empty name is an omitted optional input.
        let names: Vec<Option<String>> = node.input.iter().map(|i| (!i.is_empty()).then(|| self.resolve(i))).collect();
        let mut inputs: Vec<Option<(&str, &Val)>> = Vec::new();
        for (given, name) in node.input.iter().zip(&names) {
            inputs.push(match name {
                None => None,
                Some(n) => Some((
                    n.as_str(),
                    self.vals
                        .get(n)
                        .ok_or_else(|| cx.err(format!("input '{given}' is not defined before the node")))?,
                )),
            });
        }
        let result = self.eval(&cx, &inputs)?;
        match result {
            Step::Alias(to) => {
                self.aliases.insert(output, to);
            }
            Step::Const(v) => {
                self.vals.insert(output, v);
            }
            Step::Node(op, used, shape) => {
                if shape.iter().skip(1).any(|d| *d == Dim::Batch) {
                    return Err(cx.err(format!("the output shape {} moves the batch axis", format_shape(&shape))));
                }
                let inputs = used.into_iter().filter_map(|k| names.get(k).cloned().flatten()).collect();
                self.vals.insert(output.clone(), Val::Dyn(shape));
                self.nodes.push(OnnxNode { name: cx.name.clone(), op, inputs, output });
            }
        }
        Ok(())
    }

    /// What a node becomes.
    fn eval(&self, cx: &Ctx<'_>, inputs: &[Option<(&str, &Val)>]) -> Result<Step> {
        let arity = |min: usize, max: usize| -> Result<()> {
            if inputs.len() < min || inputs.len() > max || inputs[..min].iter().any(Option::is_none) {
                return Err(cx.err(format!("{} inputs given, {min} to {max} expected", inputs.len())));
            }
            Ok(())
        };
        let val = |k: usize| inputs.get(k).copied().flatten().map(|(_, v)| v);
        let name = |k: usize| inputs.get(k).copied().flatten().map_or("", |(n, _)| n);
        // Shape of input k of a computing node: no integer constants there.
        let shape = |k: usize| -> Result<Vec<Dim>> {
            match val(k) {
                Some(Val::Int { .. }) => {
                    Err(cx.err(format!("integer constant '{}' as a tensor input is not supported", name(k))))
                }
                Some(v) => Ok(v.shape()),
                None => Err(cx.err(format!("input {k} is missing"))),
            }
        };
        let weight = |k: usize, what: &str| -> Result<Vec<usize>> {
            match val(k) {
                Some(Val::Float(t)) => Ok(t.dims.clone()),
                _ => Err(cx.err(format!("the {what} '{}' must be a FLOAT initializer", name(k)))),
            }
        };
        let ints = |k: usize, what: &str| -> Result<(Vec<usize>, Vec<Int>)> {
            match val(k) {
                Some(Val::Int { dims, data }) => Ok((dims.clone(), data.clone())),
                _ => Err(cx.err(format!("the {what} '{}' must be an INT64 constant", name(k)))),
            }
        };
        let numbers = |k: usize, what: &str| -> Result<Vec<i64>> {
            let (dims, data) = ints(k, what)?;
            if dims.len() > 1 {
                return Err(cx.err(format!("the {what} must be a list")));
            }
            data.into_iter()
                .map(|x| match x {
                    Int::Val(v) => Ok(v),
                    Int::Batch => Err(cx.err(format!("the {what} depends on the batch size"))),
                })
                .collect()
        };
        let nchw = |s: &[Dim]| -> Result<()> {
            if s.len() != 4 {
                return Err(cx.err(format!("input shape {} is not NCHW", format_shape(s))));
            }
            Ok(())
        };
        let bad_shape = |s: &[Dim], why: &str| cx.err(format!("input shape {}: {why}", format_shape(s)));

        let op = cx.op;
        Ok(match op {
            "Conv" => {
                arity(2, 3)?;
                cx.int_is("group", 1)?;
                cx.no_auto_pad()?;
                cx.no_dilation()?;
                let x = shape(0)?;
                nchw(&x)?;
                let w = weight(1, "weight")?;
                let [m, c, kh, kw] = w[..] else {
                    return Err(cx.err(format!("weight shape {w:?} is not [M, C, kH, kW]")));
                };
                if x[1] != Dim::Fixed(c) {
                    return Err(bad_shape(&x, &format!("{c} channels expected by the weight")));
                }
                if val(2).is_some() && weight(2, "bias")? != [m] {
                    return Err(cx.err(format!("bias shape is not [{m}]")));
                }
                let win = cx.window(Some([kh, kw]))?;
                let out = |a: usize| {
                    window_out(x[2 + a], win.kernel[a], win.strides[a], win.pads[a], win.pads[2 + a])
                        .ok_or_else(|| bad_shape(&x, "smaller than the kernel"))
                };
                let shape = vec![x[0], Dim::Fixed(m), Dim::Fixed(out(0)?), Dim::Fixed(out(1)?)];
                Step::Node(OnnxOp::Conv(win), vec![0, 1, 2], shape)
            }
            "Gemm" => {
                arity(2, 3)?;
                cx.int_is("transA", 0)?;
                let trans_b = match cx.int("transB", 0)? {
                    0 => false,
                    1 => true,
                    v => return Err(cx.err(format!("transB={v} is not 0 or 1"))),
                };
                let (alpha, beta) = (cx.float("alpha", 1.0)?, cx.float("beta", 1.0)?);
                let a = shape(0)?;
                let b = weight(1, "weight")?;
                let [b0, b1] = b[..] else {
                    return Err(cx.err(format!("weight shape {b:?} is not 2-D")));
                };
                let (k, n) = if trans_b { (b1, b0) } else { (b0, b1) };
                if a.len() != 2 || a[1] != Dim::Fixed(k) {
                    return Err(bad_shape(&a, &format!("not [M, {k}]")));
                }
                let out = vec![a[0], Dim::Fixed(n)];
                if val(2).is_some() {
                    let c: Vec<Dim> = weight(2, "bias")?.into_iter().map(Dim::Fixed).collect();
                    if c.len() > 2 || broadcast(&out, &c).as_ref() != Some(&out) {
                        return Err(cx.err(format!(
                            "bias shape {} does not broadcast to {}",
                            format_shape(&c),
                            format_shape(&out)
                        )));
                    }
                }
                Step::Node(OnnxOp::Gemm { trans_b, alpha, beta }, vec![0, 1, 2], out)
            }
            "MatMul" => {
                arity(2, 2)?;
                let a = shape(0)?;
                let b = weight(1, "weight")?;
                let [k, n] = b[..] else {
                    return Err(cx.err(format!("weight shape {b:?} is not 2-D")));
                };
                if a.len() < 2 || a.last() != Some(&Dim::Fixed(k)) {
                    return Err(bad_shape(&a, &format!("not [.., M, {k}]")));
                }
                let mut out = a.clone();
                out.pop();
                out.push(Dim::Fixed(n));
                Step::Node(OnnxOp::MatMul, vec![0, 1], out)
            }
            "Add" | "Mul" => {
                arity(2, 2)?;
                let (a, b) = (shape(0)?, shape(1)?);
                let out = broadcast(&a, &b).ok_or_else(|| {
                    cx.err(format!("shapes {} and {} do not broadcast", format_shape(&a), format_shape(&b)))
                })?;
                Step::Node(if op == "Add" { OnnxOp::Add } else { OnnxOp::Mul }, vec![0, 1], out)
            }
            "Relu" => {
                arity(1, 1)?;
                Step::Node(OnnxOp::Relu, vec![0], shape(0)?)
            }
            "MaxPool" | "AveragePool" => {
                arity(1, 1)?;
                cx.int_is("ceil_mode", 0)?;
                cx.no_auto_pad()?;
                cx.no_dilation()?;
                let x = shape(0)?;
                nchw(&x)?;
                let win = cx.window(None)?;
                let out = |a: usize| {
                    window_out(x[2 + a], win.kernel[a], win.strides[a], win.pads[a], win.pads[2 + a])
                        .ok_or_else(|| bad_shape(&x, "smaller than the window"))
                };
                let shape = vec![x[0], x[1], Dim::Fixed(out(0)?), Dim::Fixed(out(1)?)];
                let op = if op == "MaxPool" {
                    cx.int_is("storage_order", 0)?;
                    OnnxOp::MaxPool(win)
                } else {
                    let count_include_pad = match cx.int("count_include_pad", 0)? {
                        0 => false,
                        1 => true,
                        v => return Err(cx.err(format!("count_include_pad={v} is not 0 or 1"))),
                    };
                    OnnxOp::AveragePool { window: win, count_include_pad }
                };
                Step::Node(op, vec![0], shape)
            }
            "GlobalAveragePool" => {
                arity(1, 1)?;
                let x = shape(0)?;
                nchw(&x)?;
                Step::Node(OnnxOp::GlobalAveragePool, vec![0], vec![x[0], x[1], Dim::Fixed(1), Dim::Fixed(1)])
            }
            "ReduceMean" => {
                let axes = if self.opset >= 18 {
                    arity(1, 2)?;
                    if val(1).is_some() {
                        Some(numbers(1, "axes")?)
                    } else {
                        None
                    }
                } else {
                    arity(1, 1)?;
                    cx.ints("axes")?
                };
                let x = shape(0)?;
                nchw(&x)?;
                let mut axes: Vec<usize> = axes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|a| norm_axis(a, 4, 0))
                    .collect::<Option<_>>()
                    .ok_or_else(|| cx.err("axes out of range"))?;
                axes.sort_unstable();
                if axes != [2, 3] {
                    return Err(cx.err(format!("axes={axes:?} are not supported (only the spatial axes [2, 3])")));
                }
                let keepdims = cx.int("keepdims", 1)? != 0;
                let shape = if keepdims { vec![x[0], x[1], Dim::Fixed(1), Dim::Fixed(1)] } else { vec![x[0], x[1]] };
                Step::Node(OnnxOp::ReduceMean { keepdims }, vec![0], shape)
            }
            "BatchNormalization" => {
                arity(5, 5)?;
                cx.int_is("training_mode", 0)?;
                let epsilon = cx.float("epsilon", 1e-5)?;
                let x = shape(0)?;
                if x.len() < 2 {
                    return Err(bad_shape(&x, "no channel axis"));
                }
                let Dim::Fixed(c) = x[1] else {
                    return Err(bad_shape(&x, "no channel axis"));
                };
                for (k, what) in [(1, "scale"), (2, "bias"), (3, "mean"), (4, "variance")] {
                    if weight(k, what)? != [c] {
                        return Err(cx.err(format!("the {what} is not of shape [{c}]")));
                    }
                }
                Step::Node(OnnxOp::BatchNormalization { epsilon }, vec![0, 1, 2, 3, 4], x)
            }
            "Flatten" => {
                arity(1, 1)?;
                let x = shape(0)?;
                let axis = norm_axis(cx.int("axis", 1)?, x.len(), 1).ok_or_else(|| cx.err("axis out of range"))?;
                let (a, b) = (dim_product(&x[..axis]), dim_product(&x[axis..]));
                let (Some(a), Some(b)) = (a, b) else {
                    return Err(cx.err(format!("axis={axis} would merge the batch axis")));
                };
                if axis == 0 || a != Dim::Batch && x.first() == Some(&Dim::Batch) {
                    return Err(cx.err(format!("axis={axis} would merge the batch axis")));
                }
                Step::Node(OnnxOp::Flatten { axis }, vec![0], vec![a, b])
            }
            "Reshape" => {
                arity(2, 2)?;
                let x = shape(0)?;
                let (dims, target) = ints(1, "shape")?;
                if dims.len() != 1 {
                    return Err(cx.err("the shape is not a list"));
                }
                let out = self.reshape(cx, &x, &target, cx.int("allowzero", 0)? != 0)?;
                if out.len() == 2 && out[0] == Dim::Batch && x.len() >= 2 && x[0] == Dim::Batch {
                    Step::Node(OnnxOp::Flatten { axis: 1 }, vec![0], out)
                } else {
                    Step::Node(OnnxOp::Reshape { shape: out.clone() }, vec![0], out)
                }
            }
            "Pad" => {
                arity(2, 4)?;
                match cx.string("mode")?.as_deref() {
                    None | Some("constant") => {}
                    Some(m) => return Err(cx.err(format!("mode={m} is not supported (only constant)"))),
                }
                if val(3).is_some() {
                    return Err(cx.err("the axes input is not supported"));
                }
                match val(2) {
                    None => {}
                    Some(Val::Float(t)) if t.data.len() == 1 && t.data[0] == 0.0 => {}
                    Some(_) => return Err(cx.err("constant_value must be 0 (a float constant)")),
                }
                let x = shape(0)?;
                nchw(&x)?;
                let p = numbers(1, "pads")?;
                if p.len() != 8 {
                    return Err(cx.err(format!("pads={p:?} are not 8 values")));
                }
                if p[0] != 0 || p[1] != 0 || p[4] != 0 || p[5] != 0 || p.iter().any(|&v| v < 0) {
                    return Err(cx.err(format!("pads={p:?} are not supported (non-negative, on H and W only)")));
                }
                let pads = [p[2], p[3], p[6], p[7]].map(|v| v as usize);
                if pads == [0; 4] {
                    return Ok(Step::Alias(name(0).to_string()));
                }
                let grow = |d: Dim, a: usize, b: usize| match d {
                    Dim::Fixed(n) => n.checked_add(a)?.checked_add(b).map(Dim::Fixed),
                    Dim::Batch => None,
                };
                let h = grow(x[2], pads[0], pads[2]);
                let w = grow(x[3], pads[1], pads[3]);
                let (Some(h), Some(w)) = (h, w) else {
                    return Err(bad_shape(&x, "the padded size overflows"));
                };
                Step::Node(OnnxOp::Pad { pads }, vec![0], vec![x[0], x[1], h, w])
            }
            "Softmax" | "LogSoftmax" => {
                arity(1, 1)?;
                let x = shape(0)?;
                let default = if self.opset >= 13 { -1 } else { 1 };
                let axis =
                    norm_axis(cx.int("axis", default)?, x.len(), 0).ok_or_else(|| cx.err("axis out of range"))?;
                // Before opset 13 the axis coerces to 2-D: the same only on the last axis.
                if self.opset < 13 && axis + 1 != x.len() {
                    return Err(cx.err(format!("axis={axis} before opset 13 is only supported as the last axis")));
                }
                if axis == 0 {
                    return Err(cx.err("axis=0 would mix the batch"));
                }
                let op = if op == "Softmax" { OnnxOp::Softmax { axis } } else { OnnxOp::LogSoftmax { axis } };
                Step::Node(op, vec![0], x)
            }
            "Identity" => {
                arity(1, 1)?;
                Step::Alias(name(0).to_string())
            }
            "Dropout" => {
                arity(1, 3)?;
                if let Some(v) = val(2) {
                    let zero = matches!(v, Val::Int { data, .. } if data == &[Int::Val(0)]);
                    if !zero {
                        return Err(cx.err("training_mode must be a constant false"));
                    }
                }
                Step::Alias(name(0).to_string())
            }
            "Constant" => {
                arity(0, 0)?;
                let [(key, a)] = cx.attrs.iter().collect::<Vec<_>>()[..] else {
                    return Err(cx.err("exactly one value attribute expected"));
                };
                let bad = || cx.err(format!("attribute {key} has the wrong type"));
                Step::Const(match *key {
                    "value" if a.r#type == ATTR_TENSOR => {
                        let t = a.t.as_ref().ok_or_else(bad)?;
                        tensor_value(t, "value").map_err(|e| cx.err(e))?
                    }
                    "value_float" if a.r#type == ATTR_FLOAT => Val::Float(OnnxTensor { dims: vec![], data: vec![a.f] }),
                    "value_floats" if a.r#type == ATTR_FLOATS => {
                        Val::Float(OnnxTensor { dims: vec![a.floats.len()], data: a.floats.clone() })
                    }
                    "value_int" if a.r#type == ATTR_INT => Val::Int { dims: vec![], data: vec![Int::Val(a.i)] },
                    "value_ints" if a.r#type == ATTR_INTS => {
                        Val::Int { dims: vec![a.ints.len()], data: a.ints.iter().map(|&i| Int::Val(i)).collect() }
                    }
                    _ => return Err(bad()),
                })
            }
            "Shape" => {
                arity(1, 1)?;
                let x = val(0).map(Val::shape).unwrap_or_default();
                let r = x.len() as i64;
                let clamp = |v: i64| (if v < 0 { v.saturating_add(r) } else { v }).clamp(0, r) as usize;
                let (s, e) = (clamp(cx.int("start", 0)?), clamp(cx.int("end", r)?));
                let data: Vec<Int> = x[s..e.max(s)]
                    .iter()
                    .map(|d| match d {
                        Dim::Batch => Int::Batch,
                        Dim::Fixed(n) => Int::Val(*n as i64),
                    })
                    .collect();
                Step::Const(Val::Int { dims: vec![data.len()], data })
            }
            "Gather" => {
                arity(2, 2)?;
                let (dims, data) = ints(0, "data")?;
                if dims.len() != 1 || norm_axis(cx.int("axis", 0)?, 1, 0) != Some(0) {
                    return Err(cx.err("only gathers from a 1-D integer constant are supported"));
                }
                let (idims, idx) = ints(1, "indices")?;
                let picked = idx
                    .iter()
                    .map(|i| match i {
                        Int::Val(i) => norm_axis(*i, data.len(), 0).map(|i| data[i]),
                        Int::Batch => None,
                    })
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| cx.err("indices out of range"))?;
                Step::Const(Val::Int { dims: idims, data: picked })
            }
            "Unsqueeze" | "Squeeze" => {
                let axes = if self.opset >= 13 {
                    arity(1, 2)?;
                    if val(1).is_some() {
                        Some(numbers(1, "axes")?)
                    } else {
                        None
                    }
                } else {
                    arity(1, 1)?;
                    cx.ints("axes")?
                };
                let (mut dims, data) = ints(0, "data")?;
                let axes = axes.unwrap_or_default();
                if op == "Unsqueeze" {
                    let r = dims.len() + axes.len();
                    let mut axes: Vec<usize> = axes
                        .iter()
                        .map(|&a| norm_axis(a, r, 0))
                        .collect::<Option<_>>()
                        .ok_or_else(|| cx.err("axes out of range"))?;
                    axes.sort_unstable();
                    axes.dedup();
                    if axes.is_empty() || axes.len() + dims.len() != r {
                        return Err(cx.err("axes are empty or repeated"));
                    }
                    for a in axes {
                        dims.insert(a, 1);
                    }
                } else {
                    let r = dims.len();
                    let axes: BTreeSet<usize> = axes
                        .iter()
                        .map(|&a| norm_axis(a, r, 0))
                        .collect::<Option<_>>()
                        .ok_or_else(|| cx.err("axes out of range"))?;
                    if axes.iter().any(|&a| dims[a] != 1) {
                        return Err(cx.err("a squeezed axis is not of size 1"));
                    }
                    dims = dims
                        .iter()
                        .enumerate()
                        .filter(|&(i, &d)| !(axes.contains(&i) || axes.is_empty() && d == 1))
                        .map(|(_, &d)| d)
                        .collect();
                }
                Step::Const(Val::Int { dims, data })
            }
            "Concat" => {
                if inputs.is_empty() || inputs.iter().any(Option::is_none) {
                    return Err(cx.err("no inputs, or an empty one"));
                }
                let mut data = Vec::new();
                for k in 0..inputs.len() {
                    let (dims, d) = ints(k, "input")?;
                    if dims.len() != 1 {
                        return Err(cx.err("only 1-D integer constants are concatenated"));
                    }
                    data.extend(d);
                }
                if norm_axis(cx.int("axis", 0)?, 1, 0) != Some(0) {
                    return Err(cx.err("axis out of range"));
                }
                Step::Const(Val::Int { dims: vec![data.len()], data })
            }
            "Cast" => {
                arity(1, 1)?;
                match (cx.int("to", 0)?, val(0)) {
                    (7, Some(v @ Val::Int { .. })) | (1, Some(v @ Val::Float(_))) => Step::Const(v.clone()),
                    (to, _) => {
                        return Err(cx.err(format!(
                            "only casts of constants to their own type are supported (to {})",
                            type_name(i32::try_from(to).unwrap_or(-1))
                        )))
                    }
                }
            }
            "Slice" => {
                arity(3, 5)?;
                let (dims, data) = ints(0, "data")?;
                if dims.len() != 1 {
                    return Err(cx.err("only slices of 1-D integer constants are supported"));
                }
                let one = |k: usize, what: &str, default: i64| -> Result<i64> {
                    if val(k).is_none() {
                        return Ok(default);
                    }
                    match numbers(k, what)?[..] {
                        [v] => Ok(v),
                        _ => Err(cx.err(format!("the {what} must have one value"))),
                    }
                };
                let (start, end) = (one(1, "starts", 0)?, one(2, "ends", 0)?);
                if norm_axis(one(3, "axes", 0)?, 1, 0) != Some(0) {
                    return Err(cx.err("axes out of range"));
                }
                let step = one(4, "steps", 1)?;
                let n = data.len() as i64;
                let fix = |v: i64, lo: i64, hi: i64| (if v < 0 { v.saturating_add(n) } else { v }).clamp(lo, hi);
                let mut out = Vec::new();
                if step == 0 {
                    return Err(cx.err("steps must not be 0"));
                } else if n == 0 {
                    // Nothing to take.
                } else if step > 0 {
                    let (mut i, e) = (fix(start, 0, n), fix(end, 0, n));
                    while i < e {
                        out.push(data[i as usize]);
                        i = i.saturating_add(step);
                    }
                } else {
                    let (mut i, e) = (fix(start, 0, n - 1), fix(end, -1, n - 1));
                    while i > e {
                        out.push(data[i as usize]);
                        i = i.saturating_add(step);
                    }
                }
                Step::Const(Val::Int { dims: vec![out.len()], data: out })
            }
            _ => return Err(cx.err(format!("operator {op} is not supported"))),
        })
    }

    /// The output shape of a Reshape of `x` to `target` (0 copies an axis unless `allowzero`,
    /// -1 is inferred, the batch stays first).
    fn reshape(&self, cx: &Ctx<'_>, x: &[Dim], target: &[Int], allowzero: bool) -> Result<Vec<Dim>> {
        let bad = |why: &str| cx.err(format!("reshape of {} to {:?}: {why}", format_shape(x), target));
        let mut out: Vec<Option<Dim>> = Vec::new();
        for (i, t) in target.iter().enumerate() {
            out.push(match *t {
                Int::Batch => Some(Dim::Batch),
                Int::Val(0) if allowzero => return Err(bad("zero-sized axes")),
                Int::Val(0) => Some(*x.get(i).ok_or_else(|| bad("0 past the input's rank"))?),
                Int::Val(-1) => None,
                Int::Val(v) if v > 0 => Some(Dim::Fixed(v as usize)),
                Int::Val(_) => return Err(bad("negative size")),
            });
        }
        if out.iter().filter(|d| d.is_none()).count() > 1 {
            return Err(bad("more than one -1"));
        }
        let batched = x.first() == Some(&Dim::Batch);
        // A fixed batch written into the file stands for the batch.
        if batched && !out.contains(&Some(Dim::Batch)) {
            if let (Some(b), Some(Some(Dim::Fixed(t0)))) = (self.batch, out.first()) {
                if *t0 == b {
                    out[0] = Some(Dim::Batch);
                }
            }
        }
        let Some(Dim::Fixed(total)) = dim_product(&x[usize::from(batched)..]) else {
            return Err(bad("the input size overflows"));
        };
        let known: Vec<Dim> = out.iter().flatten().copied().collect();
        let has_batch = known.contains(&Dim::Batch);
        let Some(Dim::Fixed(k)) = dim_product(&known.iter().filter(|d| **d != Dim::Batch).copied().collect::<Vec<_>>())
        else {
            return Err(bad("the target size overflows"));
        };
        let fill = match (batched, has_batch) {
            (true, true) | (false, false) => {
                if k == 0 || total % k != 0 {
                    return Err(bad("the sizes do not match"));
                }
                Dim::Fixed(total / k)
            }
            (true, false) => {
                if out.first() != Some(&None) || k != total {
                    return Err(bad("the batch axis must stay first"));
                }
                Dim::Batch
            }
            (false, true) => return Err(bad("the input has no batch axis")),
        };
        let out: Vec<Dim> = out.into_iter().map(|d| d.unwrap_or(fill)).collect();
        let rest = dim_product(&out[usize::from(batched)..]);
        if rest != Some(Dim::Fixed(total)) || (batched && out.first() != Some(&Dim::Batch)) {
            return Err(bad("the sizes do not match or the batch axis moves"));
        }
        Ok(out)
    }
}

/// What a node becomes.
enum Step {
    /// A computing node, the indices of the inputs it keeps, its output shape.
    Node(OnnxOp, Vec<usize>, Vec<Dim>),
    /// A constant (shape arithmetic, `Constant`).
    Const(Val),
    /// Nothing: the output is another name for this value.
    Alias(String),
}
