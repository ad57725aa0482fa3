//! One model walker for two engines: [`Engine`] abstracts the per-layer computations, and
//! [`Model`] runs forward, backward and SGD over a [`Graph`] (a [`ModelSpec`] runs as its
//! lowered graph) with any engine. The private
//! engine computes on secret shares; the plaintext engine is its f64 twin. Sharing the walker
//! means the twin performs exactly the same computation, layer for layer.

use std::collections::BTreeMap;

use cryptgpu_ring::{Conv2dParams, Pool2dParams};

use cryptgpu_sharing::norm::pow2_bits;

use crate::error::{NnError, Result};
use crate::graph::{Graph, Node, Op};
use crate::spec::{LayerKind, ModelSpec};

/// Where batch-norm running variances (plus epsilon) must lie for inference with trainable
/// (unfolded) batch norms: `[2^-17, 2^17)`, that is a standard deviation of the channel between
/// about 0.003 and 362 (the private inverse square root, with 3 Newton steps, is accurate to 4e-4
/// relative there, see `cryptgpu_sharing::approx`; its error outside is documented there too).
/// `eps` = 1e-5 keeps the bottom; [`crate::ranges`] measures the top on the plaintext twin.
/// Training normalises with the batch's variance, in [`BN_TRAIN_VAR_RANGE`].
pub const BN_INV_SQRT_RANGE: (i32, i32) = (-17, 16);

/// Where the batch variances (plus epsilon) of a training batch norm must lie: `[2^-17, 2^13)`,
/// a standard deviation between about 0.003 and 90.5 ([`cryptgpu_sharing::norm::BN_VAR_RANGE`],
/// where the choice is explained). Running variances, used by inference, keep the wider
/// [`BN_INV_SQRT_RANGE`].
pub const BN_TRAIN_VAR_RANGE: (i32, i32) = cryptgpu_sharing::norm::BN_VAR_RANGE;

/// PyTorch's batch-norm momentum: `running = 0.9·running + 0.1·batch`.
pub const BN_MOMENTUM: f64 = 0.1;

/// Gradients of a layer with weights: (input, weight, bias when the layer has one).
pub type LayerGrads<T> = (T, T, Option<T>);

/// A product layer with its operands: what [`Engine::product_held`] computes.
pub enum Product<'a, T> {
    /// [`Engine::conv2d`].
    Conv2d {
        /// Input.
        x: &'a T,
        /// Weight.
        w: &'a T,
        /// Bias.
        b: Option<&'a T>,
        /// Stride and (symmetric) padding.
        p: Conv2dParams,
        /// The input is `2^div` times the layer's (window sums of a folded average pooling,
        /// [`Graph::pool_folds`]): the product is divided by `2^div` before the bias.
        div: u32,
    },
    /// [`Engine::linear`].
    Linear {
        /// Input.
        x: &'a T,
        /// Weight.
        w: &'a T,
        /// Bias.
        b: Option<&'a T>,
        /// As for [`Product::Conv2d`].
        div: u32,
    },
    /// [`Engine::affine_channels`].
    Affine {
        /// Input.
        x: &'a T,
        /// Per-channel scale.
        scale: &'a T,
        /// Per-channel shift.
        shift: &'a T,
    },
}

impl<T> Product<'_, T> {
    /// The layer's output by the engine's own methods (the division by `2^div` with
    /// [`Engine::scale`]).
    pub fn apply<E: Engine<T = T>>(&self, e: &mut E) -> Result<T> {
        let (y, b, div) = match *self {
            Product::Conv2d { x, w, b, ref p, div: 0 } => return e.conv2d(x, w, b, p),
            Product::Linear { x, w, b, div: 0 } => return e.linear(x, w, b),
            Product::Affine { x, scale, shift } => return e.affine_channels(x, scale, shift),
            Product::Conv2d { x, w, b, ref p, div } => (e.conv2d(x, w, None, p)?, b, div),
            Product::Linear { x, w, b, div } => (e.linear(x, w, None)?, b, div),
        };
        let y = e.scale(&y, (-(div as f64)).exp2())?;
        match b {
            Some(b) => {
                let bb = e.broadcast_channels(b, &e.shape(&y))?;
                e.add(&y, &bb)
            }
            None => Ok(y),
        }
    }
}

/// The per-layer computations of a model.
pub trait Engine {
    /// Activations and parameters.
    type T: Clone;
    /// A product layer's output held back before its last round, for
    /// [`relu_held`](Self::relu_held) (the plaintext engines: the output itself).
    type Held;
    /// What ReLU keeps for its backward pass.
    type ReluSaved;
    /// What max pooling keeps for its backward pass.
    type PoolSaved;

    /// Shape of a tensor.
    fn shape(&self, x: &Self::T) -> Vec<usize>;
    /// Convolution plus optional bias.
    fn conv2d(&mut self, x: &Self::T, w: &Self::T, b: Option<&Self::T>, p: &Conv2dParams) -> Result<Self::T>;
    /// Gradients of a convolution: (input, weight, bias when `bias`).
    fn conv2d_grads(
        &mut self,
        x: &Self::T,
        w: &Self::T,
        gy: &Self::T,
        p: &Conv2dParams,
        bias: bool,
    ) -> Result<LayerGrads<Self::T>>;
    /// `x W^T + b` (`b` optional).
    fn linear(&mut self, x: &Self::T, w: &Self::T, b: Option<&Self::T>) -> Result<Self::T>;
    /// Gradients of a linear layer: (input, weight, bias when `bias`).
    fn linear_grads(&mut self, x: &Self::T, w: &Self::T, gy: &Self::T, bias: bool) -> Result<LayerGrads<Self::T>>;
    /// ReLU and its saved derivative.
    fn relu(&mut self, x: &Self::T) -> Result<(Self::T, Self::ReluSaved)>;
    /// The output of `layer` (the plaintext engines: [`Product::apply`]).
    fn product(&mut self, layer: &Product<'_, Self::T>) -> Result<Self::T>;
    /// `layer` held back before its last round (the private engine: its truncation's last message).
    fn product_held(&mut self, layer: &Product<'_, Self::T>) -> Result<Self::Held>;
    /// ReLU of a held product and its saved derivative (the private engine sends the held round
    /// with the first round of the ReLU's MSB).
    fn relu_held(&mut self, held: Self::Held) -> Result<(Self::T, Self::ReluSaved)>;
    /// ReLU backward.
    fn relu_backward(&mut self, gy: &Self::T, saved: &Self::ReluSaved) -> Result<Self::T>;
    /// Average pooling; the divisor is the window (`count_include_pad`) or its positions inside
    /// the input.
    fn avg_pool(&mut self, x: &Self::T, p: &Pool2dParams, count_include_pad: bool) -> Result<Self::T>;
    /// The window sums of average pooling (padding counts as zeros), for a layer that divides
    /// ([`Graph::pool_folds`]); by default the pooling times the window.
    fn pool_sums(&mut self, x: &Self::T, p: &Pool2dParams) -> Result<Self::T> {
        let y = self.avg_pool(x, p, true)?;
        self.scale(&y, (p.kernel.0 * p.kernel.1) as f64)
    }
    /// Average pooling backward.
    fn avg_pool_backward(
        &mut self,
        gy: &Self::T,
        in_shape: &[usize],
        p: &Pool2dParams,
        count_include_pad: bool,
    ) -> Result<Self::T>;
    /// Zeros around the spatial axes of `[N, C, H, W]`, `pads` = `[top, left, bottom, right]`.
    fn pad2d(&mut self, x: &Self::T, pads: [usize; 4]) -> Result<Self::T>;
    /// The backward of [`pad2d`](Self::pad2d): the rows and columns it added, removed.
    fn crop2d(&mut self, x: &Self::T, pads: [usize; 4]) -> Result<Self::T>;
    /// Max pooling and its saved argmax.
    fn max_pool(&mut self, x: &Self::T, p: &Pool2dParams) -> Result<(Self::T, Self::PoolSaved)>;
    /// Max pooling backward.
    fn max_pool_backward(
        &mut self,
        gy: &Self::T,
        saved: &Self::PoolSaved,
        in_shape: &[usize],
        p: &Pool2dParams,
    ) -> Result<Self::T>;
    /// Per-channel affine map `x * scale[c] + shift[c]` (folded batch norm).
    fn affine_channels(&mut self, x: &Self::T, scale: &Self::T, shift: &Self::T) -> Result<Self::T>;
    /// Mean over the spatial axes.
    fn global_avg_pool(&mut self, x: &Self::T) -> Result<Self::T>;
    /// Backward of the spatial mean.
    fn global_avg_pool_backward(&mut self, gy: &Self::T, in_shape: &[usize]) -> Result<Self::T>;
    /// Same elements, new shape.
    fn reshape(&mut self, x: &Self::T, shape: &[usize]) -> Result<Self::T>;
    /// `a + b`.
    fn add(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// `Σ c_i·x_i` for public reals `c_i` and tensors of one shape (the private engine rounds
    /// once for the whole sum).
    fn lincomb(&mut self, terms: &[(f64, &Self::T)]) -> Result<Self::T>;
    /// Gradient of the mean softmax cross-entropy with respect to the logits: `(softmax(z) - y) / N`.
    fn softmax_ce_grad(&mut self, logits: &Self::T, onehot: &Self::T) -> Result<Self::T>;
    /// `a - b`.
    fn sub(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// Elementwise product of two tensors of one shape.
    fn mul(&mut self, a: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// `c · x` for a public real `c`.
    fn scale(&mut self, x: &Self::T, c: f64) -> Result<Self::T> {
        self.lincomb(&[(c, x)])
    }
    /// Sum over every axis but axis 1: `[N, C, ...]` to `[C]`.
    fn channel_sum(&mut self, x: &Self::T) -> Result<Self::T>;
    /// A `[C]` vector broadcast along axis 1 of `shape` (`[N, C, ...]`).
    fn broadcast_channels(&mut self, v: &Self::T, shape: &[usize]) -> Result<Self::T>;
    /// `1 / sqrt(x + eps)` elementwise, for `x + eps` in [`BN_INV_SQRT_RANGE`] (batch-norm variances).
    fn inv_sqrt(&mut self, x: &Self::T, eps: f64) -> Result<Self::T>;
    /// A training batch norm of `x` (`[N, C, ...]`, more than one value per channel) with the
    /// batch statistics, for `σ² + eps` in [`BN_TRAIN_VAR_RANGE`]. The default composes the
    /// methods above ([`batch_norm_composed`]); the private engine runs
    /// `cryptgpu_sharing::norm` (15 rounds).
    fn batch_norm_train(&mut self, x: &Self::T, gamma: &Self::T, beta: &Self::T, eps: f64) -> Result<BnTrain<Self::T>>
    where
        Self: Sized,
    {
        batch_norm_composed(self, x, gamma, beta, eps)
    }

    /// Called after each layer's forward or backward pass and after the loss and the update, with a
    /// label such as `"3:features.3"`; engines that count communication attribute it here.
    fn step_done(&mut self, _label: &str, _phase: Phase) {}
}

/// Which part of a training step a cost belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Forward pass of a layer.
    Forward,
    /// Backward pass of a layer.
    Backward,
    /// The loss gradient.
    Loss,
    /// The parameter update.
    Update,
}

/// Values per channel of an `[N, C, ...]` shape.
fn per_channel(shape: &[usize]) -> usize {
    shape.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, d)| d).product()
}

/// The outputs of [`Engine::batch_norm_train`].
pub struct BnTrain<T> {
    /// `gamma·xhat + beta`.
    pub y: T,
    /// `(x - mean) / sqrt(σ² + eps)`.
    pub xhat: T,
    /// `gamma / sqrt(σ² + eps)` per channel.
    pub scale: T,
    /// The batch mean per channel.
    pub mean: T,
    /// `Σ (x - mean)² / 2^t` per channel, `t = ceil(log2 m)` for `m` values per channel
    /// ([`cryptgpu_sharing::norm::pow2_bits`]): `m / 2^t` times the biased variance `σ²`.
    pub var: T,
}

/// [`Engine::batch_norm_train`] composed from the other methods: the mean, `var` (of
/// [`BnTrain`]), `1/sqrt(σ² + eps)` by [`Engine::inv_sqrt`], then `xhat = xc·istd` and
/// `y = xc·(gamma·istd) + beta`, the private protocol's formulas.
pub fn batch_norm_composed<E: Engine>(
    e: &mut E,
    x: &E::T,
    gamma: &E::T,
    beta: &E::T,
    eps: f64,
) -> Result<BnTrain<E::T>> {
    let s = e.shape(x);
    let m = per_channel(&s);
    if m < 2 {
        return Err(NnError::Shape(format!(
            "training batch norm needs more than one value per channel, got input {s:?}"
        )));
    }
    let pow2 = (pow2_bits(m) as f64).exp2();
    let mean = e.channel_sum(x)?;
    let mean = e.scale(&mean, 1.0 / m as f64)?;
    let xc = e.broadcast_channels(&mean, &s)?;
    let xc = e.sub(x, &xc)?;
    let sq = e.mul(&xc, &xc)?;
    let sq = e.channel_sum(&sq)?;
    let var = e.scale(&sq, 1.0 / pow2)?;
    let biased = e.scale(&sq, 1.0 / m as f64)?;
    let istd = e.inv_sqrt(&biased, eps)?;
    let scale = e.mul(gamma, &istd)?;
    let b = e.broadcast_channels(&istd, &s)?;
    let xhat = e.mul(&xc, &b)?;
    let y = e.affine_channels(&xc, &scale, beta)?;
    Ok(BnTrain { y, xhat, scale, mean, var })
}

/// For an average pool that divides by the positions inside the input: `1 / count` per output
/// position `[oh·ow]` of an input `h x w`.
pub(crate) fn pool_inv_counts(h: usize, w: usize, p: &Pool2dParams) -> Vec<f64> {
    let axis = |size: usize, k: usize, s: usize, pad: usize| -> Vec<usize> {
        let out = (size + 2 * pad).saturating_sub(k) / s.max(1) + 1;
        (0..out)
            .map(|o| {
                let lo = (o * s).max(pad);
                let hi = (o * s + k).min(size + pad);
                hi.saturating_sub(lo)
            })
            .collect()
    };
    let (rows, cols) = (axis(h, p.kernel.0, p.stride.0, p.padding.0), axis(w, p.kernel.1, p.stride.1, p.padding.1));
    rows.iter().flat_map(|r| cols.iter().map(move |c| 1.0 / (r * c).max(1) as f64)).collect()
}

/// Every layer's label (as [`Engine::step_done`] receives it) and kind, in the order of the
/// forward pass (the backward pass runs in reverse): the labels of [`ModelSpec::to_graph`].
pub fn layer_labels(spec: &ModelSpec) -> Vec<(String, LayerKind)> {
    spec.to_graph().labels()
}

/// What a layer keeps from its forward pass for the backward pass.
pub enum Tape<E: Engine> {
    /// The layer's input (convolution, linear).
    Input(E::T),
    /// ReLU's derivative.
    Relu(E::ReluSaved),
    /// Max pooling's argmax and input shape.
    MaxPool(E::PoolSaved, Vec<usize>),
    /// The input shape (average pooling, flatten, global pooling).
    Shape(Vec<usize>),
    /// A training batch norm: the normalised input, `gamma/sqrt(σ² + eps)` and the batch
    /// statistics (as [`BnTrain`] holds them).
    BatchNorm {
        /// `(x - mean) / sqrt(σ² + eps)`.
        xhat: E::T,
        /// `gamma / sqrt(σ² + eps)` per channel.
        scale: E::T,
        /// The batch mean per channel.
        mean: E::T,
        /// `Σ (x - mean)² / 2^ceil(log2 m)` per channel.
        var: E::T,
    },
    /// Nothing (inference, additions, padding).
    None,
}

/// SGD settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f64,
    /// Momentum (0 for none).
    pub momentum: f64,
    /// L2 weight decay (0 for none).
    pub weight_decay: f64,
}

/// A model whose parameters are tensors of type `T` (secret shares or plaintext): its graph,
/// parameters, gradients and momentum buffers. Every method takes the engine that computes.
///
/// Batch norms come in one of two forms. *Folded* ([`Graph::fold_batchnorm`],
/// [`ModelSpec::engine_params`]): each is a per-channel affine map `{name}.scale`, `{name}.shift`,
/// for inference only. *Trainable* ([`Graph::params`], [`ModelSpec::params`], PyTorch's names):
/// `{name}.weight`, `.bias`, `.running_mean`, `.running_var`; a training forward pass normalises
/// with the batch statistics, and its backward pass updates the running statistics (momentum
/// [`BN_MOMENTUM`], unbiased variance, as PyTorch); an inference pass normalises with the running
/// statistics.
///
/// The walker runs the nodes in order, keeping each value until its last use and one [`Tape`]
/// entry per node; backward runs them in reverse and sums the gradients of a value read by
/// several nodes. Nodes whose output does not reach the model's output get no gradient.
pub struct Model<T> {
    /// The graph it computes (batch norms as [`Op::Affine`] when folded).
    pub graph: Graph,
    /// Parameters by name (see [`Graph::params`]).
    pub params: BTreeMap<String, T>,
    /// Gradients of the last backward pass.
    pub grads: BTreeMap<String, T>,
    velocity: BTreeMap<String, T>,
    folded_bn: bool,
}

fn conv_params(stride: (usize, usize), padding: (usize, usize)) -> Conv2dParams {
    Conv2dParams { stride, padding }
}

fn pool_params(kernel: (usize, usize), stride: (usize, usize), padding: (usize, usize)) -> Pool2dParams {
    Pool2dParams { kernel, stride, padding }
}

/// A convolution's symmetric padding, or `None` when `[top, left, bottom, right]` is not.
fn symmetric(p: [usize; 4]) -> Option<(usize, usize)> {
    (p[0] == p[2] && p[1] == p[3]).then_some((p[0], p[1]))
}

/// The graph that `params` are the parameters of: `graph` (checked with [`Graph::check`]) when
/// they are exactly its trainable ones, its [`Graph::fold_batchnorm`] when they are exactly the
/// folded ones (the two are the same for a graph without batch norm), with `true` for folded.
/// `shape` gives a parameter's shape; a missing, mis-shaped or unexpected parameter is an error
/// naming it.
pub(crate) fn graph_for_params<T>(
    graph: Graph,
    params: &BTreeMap<String, T>,
    shape: impl Fn(&T) -> Vec<usize>,
) -> Result<(Graph, bool)> {
    graph.check(1)?;
    let folded = graph.fold_batchnorm();
    let trainable = |n: &str| graph.params.iter().any(|(m, _)| m == n);
    let folded_bn =
        !graph.has_batchnorm() || folded.params.iter().any(|(n, _)| params.contains_key(n) && !trainable(n));
    let graph = if folded_bn { folded } else { graph };
    let want = &graph.params;
    for (name, want_shape) in want {
        match params.get(name) {
            None => return Err(NnError::Weights(format!("missing parameter {name}"))),
            Some(t) if shape(t) != *want_shape => {
                return Err(NnError::Weights(format!("{name} has shape {:?}, expected {want_shape:?}", shape(t))))
            }
            _ => {}
        }
    }
    if params.len() != want.len() {
        let extra: Vec<&String> = params.keys().filter(|k| !want.iter().any(|(n, _)| n == *k)).collect();
        return Err(NnError::Weights(format!("unexpected parameters {extra:?}")));
    }
    Ok((graph, folded_bn))
}

impl<T: Clone> Model<T> {
    /// A model of a layer sequence: [`Model::from_graph`] of [`ModelSpec::to_graph`].
    pub fn new<E: Engine<T = T>>(spec: ModelSpec, params: BTreeMap<String, T>, engine: &E) -> Result<Self> {
        Self::from_graph(spec.to_graph(), params, engine)
    }

    /// A model of a graph (checked with [`Graph::check`]) with its parameters: exactly the
    /// folded ones ([`Graph::fold_batchnorm`]) or exactly the trainable ones ([`Graph::params`]);
    /// the two are the same for a graph without batch norm.
    pub fn from_graph<E: Engine<T = T>>(graph: Graph, params: BTreeMap<String, T>, engine: &E) -> Result<Self> {
        let (graph, folded_bn) = graph_for_params(graph, &params, |t| engine.shape(t))?;
        Ok(Model { graph, params, grads: BTreeMap::new(), velocity: BTreeMap::new(), folded_bn })
    }

    /// True when the batch norms are folded (inference only) or there are none; false when they
    /// are trainable.
    pub fn bn_folded(&self) -> bool {
        self.folded_bn
    }

    fn param(&self, name: &str) -> Result<&T> {
        self.params.get(name).ok_or_else(|| NnError::Weights(format!("missing parameter {name}")))
    }

    /// Forward pass; with `train`, also the tape (one entry per node) for
    /// [`backward`](Self::backward).
    pub fn forward<E: Engine<T = T>>(&self, e: &mut E, x: &T, train: bool) -> Result<(T, Vec<Tape<E>>)> {
        let g = &self.graph;
        let mut last: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, n) in g.nodes.iter().enumerate() {
            for v in &n.inputs {
                last.insert(v, i);
            }
        }
        let mut vals: BTreeMap<&str, T> = BTreeMap::new();
        vals.insert(&g.input, x.clone());
        let mut tape = Vec::new();
        let fusions = g.relu_fusions();
        // Training keeps the pooled values (the layer after needs them for its weight gradient).
        let folds = if train { vec![0; g.nodes.len()] } else { g.pool_folds() };
        let mut held: Option<E::Held> = None;
        for (i, node) in g.nodes.iter().enumerate() {
            let (y, t) = if let Some(h) = held.take() {
                // The ReLU after a held product (the only reader of its output).
                let (y, s) = e.relu_held(h)?;
                (Some(y), Tape::Relu(s))
            } else {
                let ins = node
                    .inputs
                    .iter()
                    .map(|v| vals.get(v.as_str()).ok_or_else(|| NnError::Shape(format!("value {v} is not defined"))))
                    .collect::<Result<Vec<&T>>>()?;
                if fusions[i] {
                    let (h, t) = self.with_product(e, node, ins[0], train, folds[i], |e, l| e.product_held(l))?;
                    held = Some(h);
                    (None, t)
                } else {
                    let (y, t) = self.node_forward(e, node, &ins, train, folds[i])?;
                    (Some(y), t)
                }
            };
            if !node.label.is_empty() {
                e.step_done(&node.label, Phase::Forward);
            }
            if train {
                tape.push(t);
            }
            for v in &node.inputs {
                if last.get(v.as_str()) == Some(&i) && *v != g.output {
                    vals.remove(v.as_str());
                }
            }
            if let Some(y) = y {
                vals.insert(&node.output, y);
            }
        }
        let y = vals
            .remove(g.output.as_str())
            .ok_or_else(|| NnError::Shape(format!("output {} is not defined", g.output)))?;
        Ok((y, tape))
    }

    /// The forward pass of one node; `fold` as [`Graph::pool_folds`] gives it.
    fn node_forward<E: Engine<T = T>>(
        &self,
        e: &mut E,
        node: &Node,
        ins: &[&T],
        train: bool,
        fold: u32,
    ) -> Result<(T, Tape<E>)> {
        let x = ins[0];
        Ok(match &node.op {
            Op::Conv2d { .. } | Op::Linear { .. } | Op::Affine { .. } => {
                self.with_product(e, node, x, train, fold, |e, layer| e.product(layer))?
            }
            Op::AvgPool2d { kernel, stride, padding, .. } if fold > 0 => {
                (e.pool_sums(x, &pool_params(*kernel, *stride, *padding))?, Tape::Shape(e.shape(x)))
            }
            Op::Relu => {
                let (y, s) = e.relu(x)?;
                (y, Tape::Relu(s))
            }
            Op::AvgPool2d { kernel, stride, padding, count_include_pad } => {
                (e.avg_pool(x, &pool_params(*kernel, *stride, *padding), *count_include_pad)?, Tape::Shape(e.shape(x)))
            }
            Op::MaxPool2d { kernel, stride, padding } => {
                let (y, s) = e.max_pool(x, &pool_params(*kernel, *stride, *padding))?;
                (y, Tape::MaxPool(s, e.shape(x)))
            }
            Op::BatchNorm { weight, bias, running_mean, running_var, eps } => {
                self.batch_norm(e, [weight, bias, running_mean, running_var], *eps, x, train)?
            }
            Op::GlobalAvgPool => (e.global_avg_pool(x)?, Tape::Shape(e.shape(x))),
            Op::Flatten => {
                let s = e.shape(x);
                (e.reshape(x, &[s[0], s[1..].iter().product()])?, Tape::Shape(s))
            }
            Op::Add => (e.add(x, ins[1])?, Tape::None),
            Op::Pad { pads } => (e.pad2d(x, *pads)?, Tape::None),
        })
    }

    /// Runs `f` on the product layer of a convolution, linear or folded batch-norm node on `x`
    /// (padded first when the padding is asymmetric; `div` as in [`Product::Conv2d`]); returns its
    /// result and the node's tape.
    fn with_product<E: Engine<T = T>, R>(
        &self,
        e: &mut E,
        node: &Node,
        x: &T,
        train: bool,
        div: u32,
        f: impl FnOnce(&mut E, &Product<'_, T>) -> Result<R>,
    ) -> Result<(R, Tape<E>)> {
        let bias = |b: &Option<String>| b.as_deref().map(|b| self.param(b)).transpose();
        match &node.op {
            Op::Conv2d { weight, bias: b, stride, padding } => {
                let (b, w) = (bias(b)?, self.param(weight)?);
                let (padded, p) = match symmetric(*padding) {
                    Some(p) => (None, conv_params(*stride, p)),
                    None => (Some(e.pad2d(x, *padding)?), conv_params(*stride, (0, 0))),
                };
                let input = padded.as_ref().unwrap_or(x);
                let r = f(e, &Product::Conv2d { x: input, w, b, p, div })?;
                let t = if train { Tape::Input(padded.unwrap_or_else(|| x.clone())) } else { Tape::None };
                Ok((r, t))
            }
            Op::Linear { weight, bias: b } => {
                let r = f(e, &Product::Linear { x, w: self.param(weight)?, b: bias(b)?, div })?;
                Ok((r, if train { Tape::Input(x.clone()) } else { Tape::None }))
            }
            Op::Affine { scale, shift } => {
                if train {
                    let name = scale.strip_suffix(".scale").unwrap_or(scale);
                    return Err(NnError::Unsupported(format!(
                        "training through the folded batch norm {name}: start from trainable (unfolded) parameters"
                    )));
                }
                Ok((f(e, &Product::Affine { x, scale: self.param(scale)?, shift: self.param(shift)? })?, Tape::None))
            }
            op => Err(NnError::Unsupported(format!("{} is not a product layer", op.name()))),
        }
    }

    /// Batch norm with parameters `[weight, bias, running_mean, running_var]`.
    fn batch_norm<E: Engine<T = T>>(
        &self,
        e: &mut E,
        names: [&String; 4],
        eps: f64,
        x: &T,
        train: bool,
    ) -> Result<(T, Tape<E>)> {
        let [w, b, rm, rv] = names;
        let (gamma, beta) = (self.param(w)?, self.param(b)?);
        if !train {
            // scale = gamma / sqrt(running_var + eps), shift = beta - running_mean · scale.
            let istd = e.inv_sqrt(self.param(rv)?, eps)?;
            let scale = e.mul(gamma, &istd)?;
            let ms = e.mul(self.param(rm)?, &scale)?;
            let shift = e.sub(beta, &ms)?;
            return Ok((e.affine_channels(x, &scale, &shift)?, Tape::None));
        }
        let s = e.shape(x);
        if per_channel(&s) < 2 {
            let name = w.strip_suffix(".weight").unwrap_or(w);
            return Err(NnError::Shape(format!(
                "{name}: training batch norm needs more than one value per channel, got input {s:?}"
            )));
        }
        let BnTrain { y, xhat, scale, mean, var } = e.batch_norm_train(x, gamma, beta, eps)?;
        Ok((y, Tape::BatchNorm { xhat, scale, mean, var }))
    }

    /// Batch-norm backward: `dbeta = Σ g`, `dgamma = Σ g·xhat`, and
    /// `dx = gamma·istd·(g - mean(g) - xhat·mean(g·xhat))` (means and sums per channel); then the
    /// running statistics move towards the batch's.
    fn batch_norm_backward<E: Engine<T = T>>(
        &mut self,
        e: &mut E,
        names: [&String; 4],
        t: Tape<E>,
        g: &T,
    ) -> Result<T> {
        let [w, b, rm, rv] = names;
        let Tape::BatchNorm { xhat, scale: k, mean, var } = t else {
            return Err(NnError::Unsupported(format!("backward through batch norm {w} without its forward tape")));
        };
        let s = e.shape(g);
        let m = per_channel(&s) as f64;
        let dbeta = e.channel_sum(g)?;
        let gx = e.mul(g, &xhat)?;
        let dgamma = e.channel_sum(&gx)?;
        let mg = e.scale(&dbeta, 1.0 / m)?;
        let mg = e.broadcast_channels(&mg, &s)?;
        let mgx = e.scale(&dgamma, 1.0 / m)?;
        let mgx = e.broadcast_channels(&mgx, &s)?;
        let t = e.sub(g, &mg)?;
        let xm = e.mul(&xhat, &mgx)?;
        let t = e.sub(&t, &xm)?;
        let k = e.broadcast_channels(&k, &s)?;
        let dx = e.mul(&t, &k)?;
        self.grads.insert(w.clone(), dgamma);
        self.grads.insert(b.clone(), dbeta);
        let new_rm = e.lincomb(&[(1.0 - BN_MOMENTUM, self.param(rm)?), (BN_MOMENTUM, &mean)])?;
        // `var` is Σ (x - mean)² / 2^t: the unbiased variance is `var · 2^t / (m - 1)`.
        let unbiased = BN_MOMENTUM * (pow2_bits(m as usize) as f64).exp2() / (m - 1.0);
        let new_rv = e.lincomb(&[(1.0 - BN_MOMENTUM, self.param(rv)?), (unbiased, &var)])?;
        self.params.insert(rm.clone(), new_rm);
        self.params.insert(rv.clone(), new_rv);
        Ok(dx)
    }

    /// Backward pass from the gradient of the output; fills [`grads`](Self::grads) and returns the
    /// gradient with respect to the input.
    pub fn backward<E: Engine<T = T>>(&mut self, e: &mut E, tape: Vec<Tape<E>>, gy: &T) -> Result<T> {
        self.grads.clear();
        if tape.len() != self.graph.nodes.len() {
            return Err(NnError::Unsupported("backward needs the tape of a training forward pass".into()));
        }
        let nodes = std::mem::take(&mut self.graph.nodes);
        let out = self.back_nodes(e, &nodes, tape, gy);
        self.graph.nodes = nodes;
        out
    }

    fn back_nodes<E: Engine<T = T>>(&mut self, e: &mut E, nodes: &[Node], tape: Vec<Tape<E>>, gy: &T) -> Result<T> {
        let mut grads: BTreeMap<String, T> = BTreeMap::new();
        grads.insert(self.graph.output.clone(), gy.clone());
        for (node, t) in nodes.iter().zip(tape).rev() {
            let Some(g) = grads.remove(&node.output) else { continue };
            let gins = self.node_backward(e, node, t, &g)?;
            if !node.label.is_empty() {
                e.step_done(&node.label, Phase::Backward);
            }
            for (v, gi) in node.inputs.iter().zip(gins) {
                let sum = match grads.remove(v) {
                    Some(prev) => e.add(&prev, &gi)?,
                    None => gi,
                };
                grads.insert(v.clone(), sum);
            }
        }
        grads
            .remove(&self.graph.input)
            .ok_or_else(|| NnError::Shape(format!("the input {} does not reach the output", self.graph.input)))
    }

    fn node_backward<E: Engine<T = T>>(&mut self, e: &mut E, node: &Node, t: Tape<E>, g: &T) -> Result<Vec<T>> {
        let no_tape = || NnError::Unsupported(format!("backward through {} without its forward tape", node.output));
        Ok(vec![match (&node.op, t) {
            (Op::Conv2d { weight, bias, stride, padding }, Tape::Input(x)) => {
                let w = self.param(weight)?.clone();
                let p = conv_params(*stride, symmetric(*padding).unwrap_or((0, 0)));
                let (dx, dw, db) = e.conv2d_grads(&x, &w, g, &p, bias.is_some())?;
                self.grads.insert(weight.clone(), dw);
                if let (Some(b), Some(db)) = (bias, db) {
                    self.grads.insert(b.clone(), db);
                }
                match symmetric(*padding) {
                    Some(_) => dx,
                    None => e.crop2d(&dx, *padding)?,
                }
            }
            (Op::Linear { weight, bias }, Tape::Input(x)) => {
                let w = self.param(weight)?.clone();
                let (dx, dw, db) = e.linear_grads(&x, &w, g, bias.is_some())?;
                self.grads.insert(weight.clone(), dw);
                if let (Some(b), Some(db)) = (bias, db) {
                    self.grads.insert(b.clone(), db);
                }
                dx
            }
            (Op::Relu, Tape::Relu(s)) => e.relu_backward(g, &s)?,
            (Op::AvgPool2d { kernel, stride, padding, count_include_pad }, Tape::Shape(s)) => {
                e.avg_pool_backward(g, &s, &pool_params(*kernel, *stride, *padding), *count_include_pad)?
            }
            (Op::MaxPool2d { kernel, stride, padding }, Tape::MaxPool(saved, s)) => {
                e.max_pool_backward(g, &saved, &s, &pool_params(*kernel, *stride, *padding))?
            }
            (Op::BatchNorm { weight, bias, running_mean, running_var, .. }, t @ Tape::BatchNorm { .. }) => {
                self.batch_norm_backward(e, [weight, bias, running_mean, running_var], t, g)?
            }
            (Op::GlobalAvgPool, Tape::Shape(s)) => e.global_avg_pool_backward(g, &s)?,
            (Op::Flatten, Tape::Shape(s)) => e.reshape(g, &s)?,
            (Op::Add, _) => return Ok(vec![g.clone(), g.clone()]),
            (Op::Pad { pads }, _) => e.crop2d(g, *pads)?,
            _ => return Err(no_tape()),
        }])
    }

    /// One SGD step with the gradients of the last backward pass, as PyTorch's `SGD`:
    /// `v = momentum·v + g + wd·w` (`v = g + wd·w` at the first step), `w -= lr·v`; without
    /// momentum `w -= lr·g + lr·wd·w`. The private engine rounds once per [`Engine::lincomb`]: one
    /// truncation per parameter without momentum, two with it.
    pub fn sgd_step<E: Engine<T = T>>(&mut self, e: &mut E, opt: &Sgd) -> Result<()> {
        let names: Vec<String> = self.grads.keys().cloned().collect();
        for name in names {
            let w = self.params[&name].clone();
            let g = &self.grads[&name];
            let step = if opt.momentum != 0.0 {
                let mut terms = Vec::new();
                if let Some(v) = self.velocity.get(&name) {
                    terms.push((opt.momentum, v));
                }
                if opt.weight_decay != 0.0 {
                    terms.push((opt.weight_decay, &w));
                }
                let v = if terms.is_empty() {
                    g.clone()
                } else {
                    let t = e.lincomb(&terms)?;
                    e.add(g, &t)?
                };
                let step = e.lincomb(&[(opt.lr, &v)])?;
                self.velocity.insert(name.clone(), v);
                step
            } else if opt.weight_decay != 0.0 {
                e.lincomb(&[(opt.lr, g), (opt.lr * opt.weight_decay, &w)])?
            } else {
                e.lincomb(&[(opt.lr, g)])?
            };
            let w = e.sub(&w, &step)?;
            self.params.insert(name, w);
        }
        Ok(())
    }

    /// Forward, loss gradient, backward and SGD on one batch (`onehot` holds the labels).
    pub fn train_step<E: Engine<T = T>>(&mut self, e: &mut E, x: &T, onehot: &T, opt: &Sgd) -> Result<T> {
        let (logits, tape) = self.forward(e, x, true)?;
        let g = e.softmax_ce_grad(&logits, onehot)?;
        e.step_done("softmax-cross-entropy", Phase::Loss);
        self.backward(e, tape, &g)?;
        self.sgd_step(e, opt)?;
        e.step_done("sgd", Phase::Update);
        Ok(logits)
    }
}
