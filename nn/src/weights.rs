//! Parameters: PyTorch-style initialisation, safetensors load/save with PyTorch `state_dict` names,
//! and batch-norm folding.
//!
//! **Ranges.** The private engine multiplies parameters with activations and truncates the
//! products, which is exact only below [`FixedPoint::max_product`] (`2^(62-2f)`). Loading and
//! folding therefore accept parameters up to [`param_limit`] (`2^(31-f)`, 2048 at f = 20) in
//! magnitude, so that a parameter times an activation no larger is safe, and batch-norm running
//! variances in `[0, 2^17 - eps)`, the private inverse square root's domain
//! ([`BN_INV_SQRT_RANGE`]). The default codec (f = 20, every job's) sets the limits.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use cryptgpu_ring::FixedPoint;

use crate::engine::BN_INV_SQRT_RANGE;
use crate::error::{NnError, Result};
use crate::graph::{folded_names, Graph, Op};
use crate::plain::PlainTensor;
use crate::spec::{ModelSpec, BN_EPS};

mod order;

/// Parameters by name, in the clear (held by the model owner).
pub type Params = BTreeMap<String, PlainTensor>;

/// PyTorch's default initialisation of a layer sequence: [`init_graph_params`] of its graph.
pub fn init_params(spec: &ModelSpec, seed: u64) -> Params {
    init_graph_params(&spec.to_graph(), seed)
}

/// PyTorch's default initialisation: weights and biases of convolutions and linear layers
/// uniform in `±1/sqrt(fan_in)` (kaiming-uniform with a = sqrt(5)); batch norms weight 1, bias 0,
/// mean 0, variance 1. Deterministic in `seed`.
pub fn init_graph_params(graph: &Graph, seed: u64) -> Params {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Params::new();
    for node in &graph.nodes {
        let names = node.op.param_names();
        let shape = |n: &str| graph.params.iter().find(|(m, _)| m == n).map(|(_, s)| s.clone());
        let Some(wshape) = names.first().and_then(|n| shape(n)) else { continue };
        let fan_in: usize = wshape[1..].iter().product();
        let b = 1.0 / (fan_in.max(1) as f64).sqrt();
        let bn = matches!(node.op, Op::BatchNorm { .. });
        for (i, name) in names.iter().enumerate() {
            let Some(shape) = shape(name) else { continue };
            let n: usize = shape.iter().product();
            let data = match (bn, i) {
                (false, _) => (0..n).map(|_| rng.gen_range(-b..b)).collect(),
                (true, 0) | (true, 3) => vec![1.0; n],
                (true, _) => vec![0.0; n],
            };
            out.insert(name.to_string(), PlainTensor { shape, data });
        }
    }
    out
}

/// The largest parameter magnitude [`load_safetensors`] and [`fold_batchnorm`] accept with
/// `codec`: `2^(31-f)`, the square root of [`FixedPoint::max_product`], so that a parameter times
/// an activation of at most the same magnitude is truncated exactly. A layer's sum of such
/// products can still exceed the bound: [`crate::ranges`] measures those on the plaintext twin.
pub fn param_limit(codec: &FixedPoint) -> f64 {
    codec.max_product().sqrt()
}

/// `i, j, ...` of the element at flat index `i` of `shape` (row-major).
fn unravel(mut i: usize, shape: &[usize]) -> String {
    let mut idx = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        idx[k] = i % d.max(1);
        i /= d.max(1);
    }
    idx.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
}

/// The first element of parameter `name` outside its range (see the module documentation), as a
/// message naming it `shown`; a name ending in `.running_var` is checked as a running variance.
pub(crate) fn out_of_range(name: &str, shown: &str, t: &PlainTensor) -> Option<String> {
    let limit = param_limit(&FixedPoint::default());
    let top = (BN_INV_SQRT_RANGE.1 as f64 + 1.0).exp2() - BN_EPS;
    let var = name.ends_with(".running_var");
    let ok = |v: f64| if var { (0.0..top).contains(&v) } else { v.abs() <= limit };
    let i = t.data.iter().position(|&v| !ok(v))?;
    let why = if !t.data[i].is_finite() {
        "not finite".to_string()
    } else if var {
        format!("outside [0, {top}), the running variances the private inverse square root accepts")
    } else {
        format!("beyond ±{limit}, the largest parameter magnitude (2^(31-f): its products with activations no larger stay below the truncation bound 2^(62-2f))")
    };
    Some(format!("{shown}[{}] = {} is {why}", unravel(i, &t.shape), t.data[i]))
}

/// Folds the batch norms of a layer sequence: [`fold_graph_batchnorm`] of its graph.
pub fn fold_batchnorm(spec: &ModelSpec, params: &Params) -> Result<Params> {
    fold_graph_batchnorm(&spec.to_graph(), params)
}

/// Folds every batch norm into `{name}.scale = weight / sqrt(var + eps)` and
/// `{name}.shift = bias - mean * scale` (names of [`folded_names`]), giving the parameters of
/// [`Graph::fold_batchnorm`]. Every folded parameter must lie within [`param_limit`]; the error
/// names the first that does not.
pub fn fold_graph_batchnorm(graph: &Graph, params: &Params) -> Result<Params> {
    let mut out = Params::new();
    for node in &graph.nodes {
        let ts = match &node.op {
            Op::BatchNorm { weight, bias, running_mean, running_var, eps } => {
                let (w, b) = (get(params, weight)?, get(params, bias)?);
                let (m, v) = (get(params, running_mean)?, get(params, running_var)?);
                let scale: Vec<f64> = w.data.iter().zip(&v.data).map(|(w, v)| w / (v + eps).sqrt()).collect();
                let shift = b.data.iter().zip(&m.data).zip(&scale).map(|((b, m), s)| b - m * s).collect();
                let (sn, hn) = folded_names(weight);
                let shape = w.shape.clone();
                vec![(sn, PlainTensor { shape: shape.clone(), data: scale }), (hn, PlainTensor { shape, data: shift })]
            }
            op => op
                .param_names()
                .into_iter()
                .map(|n| Ok((n.to_string(), get(params, n)?.clone())))
                .collect::<Result<_>>()?,
        };
        for (name, t) in ts {
            if let Some(bad) = out_of_range(&name, &name, &t) {
                return Err(NnError::Weights(format!("folding the batch norms: {bad}")));
            }
            out.insert(name, t);
        }
    }
    Ok(out)
}

fn get<'a>(p: &'a Params, name: &str) -> Result<&'a PlainTensor> {
    p.get(name).ok_or_else(|| NnError::Weights(format!("missing parameter {name}")))
}

/// How [`load_graph_safetensors_as`] pairs a file's tensors with a model's [`Graph::params`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Match {
    /// By name: the file's `state_dict` names are the model's.
    #[default]
    ByName,
    /// By order and shape, whatever the names. A safetensors file keeps no order (the format's
    /// writer, which `safetensors.torch.save_file` also calls, lays tensors out by dtype and name,
    /// and the reader indexes them by name), so the order is PyTorch's module order recovered from
    /// the names: tensors grouped by module path (the name less its last component), modules in
    /// natural order (components compared part by part, digits as numbers: `features.3` <
    /// `features.10`, `conv1` < `conv2` < `fc1`, a module before its children), and within a
    /// module PyTorch's registration order (`weight`, `bias`, `running_mean`, `running_var`, then
    /// anything else by name). This is the definition order of `nn.Sequential` models and of
    /// modules named in order (`conv1`, `conv2`, `fc1`); a model whose names sort otherwise
    /// (`bn1` before `conv1`, or the zoo's own `classifier` before `features`) pairs wrongly,
    /// which the shape checks usually catch: load such files by name. The `i`-th tensor is paired
    /// with the `i`-th parameter: counts and every pair's shape must agree.
    ByOrder,
}

/// The suggestion added to a by-name mismatch when matching by order would succeed.
const BY_ORDER_HINT: &str =
    "the tensors match the model by order and shape: load them by order (`--weights-by-order`, Match::ByOrder)";

/// Loads a safetensors file (as `safetensors.torch.save_file(model.state_dict(), path)` writes it:
/// F32, F64, F16 or BF16 tensors) and checks it against the model: every missing, unexpected or
/// mis-shaped tensor, and every tensor with a value out of range (non-finite, beyond
/// [`param_limit`], or a running variance outside `[0, 2^17 - eps)`, see the module
/// documentation), is named in the error, with the first offending element and its index.
/// Batch norms' `num_batches_tracked` is ignored.
pub fn load_safetensors(path: &Path, spec: &ModelSpec) -> Result<Params> {
    load_graph_safetensors(path, &spec.to_graph())
}

/// [`load_safetensors`] for a graph: its [`Graph::params`], with the same checks.
pub fn load_graph_safetensors(path: &Path, graph: &Graph) -> Result<Params> {
    load_graph_safetensors_as(path, graph, Match::ByName)
}

/// [`load_graph_safetensors`] with the tensors paired to the parameters as `how` says; the result
/// is keyed by the model's names. The range checks apply to the model's parameter each tensor
/// becomes. A by-name mismatch that [`Match::ByOrder`] would resolve says so.
pub fn load_graph_safetensors_as(path: &Path, graph: &Graph, how: Match) -> Result<Params> {
    let pstr = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| NnError::Io { path: pstr.clone(), source })?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| NnError::Format { path: pstr.clone(), detail: format!("not a safetensors file: {e}") })?;
    let mut file: Vec<(String, TensorView<'_>)> =
        st.tensors().into_iter().filter(|(n, _)| !n.ends_with(".num_batches_tracked")).collect();
    file.sort_by(|a, b| order::torch_order(&a.0, &b.0));
    let pairs = match how {
        Match::ByName => pair_by_name(&file, graph).map_err(|mut problems| {
            if pair_by_order(&file, graph).is_ok() {
                problems.insert(0, BY_ORDER_HINT.to_string());
            }
            problems
        }),
        Match::ByOrder => pair_by_order(&file, graph).map_err(|p| vec![p]),
    };
    let mismatch =
        |problems: Vec<String>| NnError::Weights(format!("{pstr} for {}: {}", graph.name, problems.join("; ")));
    let pairs = pairs.map_err(mismatch)?;
    let mut out = Params::new();
    let (mut dtypes, mut bad) = (Vec::new(), Vec::new());
    for (file_name, model_name, view) in pairs {
        let Some(data) = to_f64(view) else {
            dtypes.push(format!("{file_name} has unsupported dtype {:?}", view.dtype()));
            continue;
        };
        let t = PlainTensor { shape: view.shape().to_vec(), data };
        let shown =
            if file_name == model_name { file_name.to_string() } else { format!("{file_name} (as {model_name})") };
        bad.extend(out_of_range(model_name, &shown, &t));
        out.insert(model_name.to_string(), t);
    }
    if !dtypes.is_empty() {
        return Err(mismatch(dtypes));
    }
    if !bad.is_empty() {
        return Err(NnError::Weights(format!("{pstr}: {}", bad.join("; "))));
    }
    Ok(out)
}

/// Every tensor of a safetensors file (F32, F64, F16 or BF16), by name, without checks (e.g. a
/// model's input and reference outputs).
pub fn read_safetensors(path: &Path) -> Result<Params> {
    let pstr = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| NnError::Io { path: pstr.clone(), source })?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| NnError::Format { path: pstr.clone(), detail: format!("not a safetensors file: {e}") })?;
    st.tensors()
        .into_iter()
        .map(|(name, view)| match to_f64(&view) {
            Some(data) => Ok((name, PlainTensor { shape: view.shape().to_vec(), data })),
            None => Err(NnError::Format {
                path: pstr.clone(),
                detail: format!("{name} has unsupported dtype {:?}", view.dtype()),
            }),
        })
        .collect()
}

/// A file tensor's name, the model parameter it becomes, and its data.
type Pair<'f, 'd> = (&'f str, &'f str, &'f TensorView<'d>);

/// Pairs tensors and parameters of the same name; else every unexpected, mis-shaped and missing one.
fn pair_by_name<'f, 'd>(
    file: &'f [(String, TensorView<'d>)],
    graph: &'f Graph,
) -> std::result::Result<Vec<Pair<'f, 'd>>, Vec<String>> {
    let want: HashMap<&str, &[usize]> = graph.params.iter().map(|(n, s)| (n.as_str(), s.as_slice())).collect();
    let mut problems = Vec::new();
    let mut pairs = Vec::new();
    for (name, view) in file {
        match want.get(name.as_str()) {
            None => problems.push(format!("unexpected tensor {name}")),
            Some(&shape) if view.shape() != shape => {
                problems.push(format!("{name} has shape {:?}, the model needs {shape:?}", view.shape()))
            }
            Some(_) => pairs.push((name.as_str(), name.as_str(), view)),
        }
    }
    let in_file: HashSet<&str> = file.iter().map(|(n, _)| n.as_str()).collect();
    let mut missing: Vec<&str> = want.keys().copied().filter(|n| !in_file.contains(n)).collect();
    missing.sort();
    problems.extend(missing.into_iter().map(|m| format!("missing tensor {m}")));
    if problems.is_empty() {
        Ok(pairs)
    } else {
        Err(problems)
    }
}

/// Pairs the file's tensors (in [`Match::ByOrder`]'s order) one to one with the graph's
/// parameters; else the count mismatch and the first pair whose shapes differ.
fn pair_by_order<'f, 'd>(
    file: &'f [(String, TensorView<'d>)],
    graph: &'f Graph,
) -> std::result::Result<Vec<Pair<'f, 'd>>, String> {
    let first_bad = file.iter().zip(&graph.params).enumerate().find(|(_, ((_, v), (_, s)))| v.shape() != s.as_slice());
    let differ = first_bad.map(|(i, ((f, v), (m, s)))| {
        format!("tensor {i} in order, {f} {:?} in the file, is the model's {m} {s:?}", v.shape())
    });
    let counts = (file.len() != graph.params.len()).then(|| {
        format!(
            "by order, the file's {} tensors (num_batches_tracked aside) cannot pair with the model's {} parameters",
            file.len(),
            graph.params.len()
        )
    });
    match (counts, differ) {
        (None, None) => {
            Ok(file.iter().zip(&graph.params).map(|((f, v), (m, _))| (f.as_str(), m.as_str(), v)).collect())
        }
        (Some(c), Some(d)) => Err(format!("{c}; the first pair that differs: {d}")),
        (Some(c), None) => Err(c),
        (None, Some(d)) => Err(format!("by order, {d}")),
    }
}

/// A tensor to classify from a safetensors file: the one named `input`, or the only one; and a
/// `logits` tensor next to `input`, if any, as reference outputs (e.g. PyTorch's).
pub fn read_input(path: &Path) -> Result<(PlainTensor, Option<PlainTensor>)> {
    let mut tensors = read_safetensors(path)?;
    let x = match tensors.remove("input") {
        Some(x) => x,
        None if tensors.len() == 1 => tensors.pop_first().expect("one tensor").1,
        None => {
            return Err(NnError::Format {
                path: path.display().to_string(),
                detail: format!(
                    "no tensor named `input`, and {} tensors to choose from ({})",
                    tensors.len(),
                    tensors.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            })
        }
    };
    Ok((x, tensors.remove("logits")))
}

fn to_f64(v: &TensorView<'_>) -> Option<Vec<f64>> {
    let d = v.data();
    Some(match v.dtype() {
        Dtype::F32 => d.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().expect("4")) as f64).collect(),
        Dtype::F64 => d.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().expect("8"))).collect(),
        Dtype::F16 => d.chunks_exact(2).map(|b| half_to_f64(u16::from_le_bytes([b[0], b[1]]))).collect(),
        Dtype::BF16 => {
            d.chunks_exact(2).map(|b| f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16) as f64).collect()
        }
        _ => return None,
    })
}

fn half_to_f64(h: u16) -> f64 {
    let sign = if h >> 15 == 1 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 => {
            if frac == 0.0 {
                f64::INFINITY
            } else {
                f64::NAN
            }
        }
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Saves parameters as F32 safetensors with PyTorch `state_dict` names (loadable with
/// `model.load_state_dict(safetensors.torch.load_file(path))`).
pub fn save_safetensors(path: &Path, params: &Params) -> Result<()> {
    let bufs: Vec<(String, Vec<usize>, Vec<u8>)> = params
        .iter()
        .map(|(n, t)| (n.clone(), t.shape.clone(), t.data.iter().flat_map(|&v| (v as f32).to_le_bytes()).collect()))
        .collect();
    let views = bufs
        .iter()
        .map(|(n, s, b)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| NnError::Weights(format!("cannot serialise: {e}")))?;
    let bytes = safetensors::serialize(views, None).map_err(|e| NnError::Weights(format!("cannot serialise: {e}")))?;
    std::fs::write(path, bytes).map_err(|source| NnError::Io { path: path.display().to_string(), source })
}
