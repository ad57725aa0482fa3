//! One model walker for two engines: [`Engine`] abstracts the per-layer computations, and
//! [`Model`] runs forward, backward and SGD over a [`ModelSpec`] with any engine. The private
//! engine computes on secret shares; the plaintext engine is its f64 twin. Sharing the walker
//! means the twin performs exactly the same computation, layer for layer.

use std::collections::BTreeMap;

use cryptgpu_ring::{Conv2dParams, Pool2dParams};

use crate::error::{NnError, Result};
use crate::spec::{LayerKind, LayerSpec, ModelSpec, BN_EPS};

/// Where batch-norm variances (plus epsilon) must lie: `[2^-17, 2^17)`, that is a standard
/// deviation of the channel between about 0.003 and 362 (the private inverse square root, with 3
/// Newton steps, is accurate to 4e-4 relative there, see `cryptgpu_sharing::approx`; its error
/// outside is documented there too). `eps` = 1e-5 keeps the bottom; [`crate::ranges`] measures the
/// top on the plaintext twin.
pub const BN_INV_SQRT_RANGE: (i32, i32) = (-17, 16);

/// PyTorch's batch-norm momentum: `running = 0.9·running + 0.1·batch`.
pub const BN_MOMENTUM: f64 = 0.1;

/// Gradients of a layer with weights: (input, weight, bias when the layer has one).
pub type LayerGrads<T> = (T, T, Option<T>);

/// The per-layer computations of a model.
pub trait Engine {
    /// Activations and parameters.
    type T: Clone;
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
    /// `x W^T + b`.
    fn linear(&mut self, x: &Self::T, w: &Self::T, b: &Self::T) -> Result<Self::T>;
    /// Gradients of a linear layer: (input, weight, bias).
    fn linear_grads(&mut self, x: &Self::T, w: &Self::T, gy: &Self::T) -> Result<(Self::T, Self::T, Self::T)>;
    /// ReLU and its saved derivative.
    fn relu(&mut self, x: &Self::T) -> Result<(Self::T, Self::ReluSaved)>;
    /// ReLU backward.
    fn relu_backward(&mut self, gy: &Self::T, saved: &Self::ReluSaved) -> Result<Self::T>;
    /// Average pooling.
    fn avg_pool(&mut self, x: &Self::T, p: &Pool2dParams) -> Result<Self::T>;
    /// Average pooling backward.
    fn avg_pool_backward(&mut self, gy: &Self::T, in_shape: &[usize], p: &Pool2dParams) -> Result<Self::T>;
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

/// True for the name of a folded batch-norm parameter.
fn is_folded(name: &str) -> bool {
    name.ends_with(".scale") || name.ends_with(".shift")
}

/// Values per channel of an `[N, C, ...]` shape.
fn per_channel(shape: &[usize]) -> usize {
    shape.iter().enumerate().filter(|(i, _)| *i != 1).map(|(_, d)| d).product()
}

/// The label of the layer at position `idx` of the sequence at `path`: `3:features.3`, `4:relu`
/// at the top level; inside the residual block at top-level position 5, `5.b2:relu` (body) and
/// `5.s0:layer2.0.downsample.0` (shortcut), so every layer's label is unique.
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

/// The paths of a residual block's branches, for the block at position `idx` of `path`.
fn branch_paths(path: &str, idx: usize) -> (String, String) {
    (format!("{path}{idx}.b"), format!("{path}{idx}.s"))
}

/// Every layer's label (as [`Engine::step_done`] receives it) and kind, in the order of the
/// forward pass (the backward pass runs in reverse).
pub fn layer_labels(spec: &ModelSpec) -> Vec<(String, LayerKind)> {
    fn walk(layers: &[LayerSpec], path: &str, out: &mut Vec<(String, LayerKind)>) {
        for (i, l) in layers.iter().enumerate() {
            if let LayerSpec::Residual { body, shortcut } = l {
                let (b, s) = branch_paths(path, i);
                walk(body, &b, out);
                walk(shortcut, &s, out);
            } else if let Some(k) = l.kind() {
                out.push((label(path, i, l), k));
            }
        }
    }
    let mut out = Vec::new();
    walk(&spec.layers, "", &mut out);
    out
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
    /// Both branches of a residual block.
    Residual(Vec<Tape<E>>, Vec<Tape<E>>),
    /// A training batch norm: the normalised input, `1/sqrt(var + eps)` and the batch statistics.
    BatchNorm {
        /// `(x - mean) / sqrt(var + eps)`.
        xhat: E::T,
        /// `1 / sqrt(var + eps)` per channel.
        istd: E::T,
        /// The batch mean per channel.
        mean: E::T,
        /// The (biased) batch variance per channel.
        var: E::T,
    },
    /// Nothing (inference).
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

/// A model whose parameters are tensors of type `T` (secret shares or plaintext): its spec,
/// parameters, gradients and momentum buffers. Every method takes the engine that computes.
///
/// Batch norms come in one of two forms. *Folded* ([`ModelSpec::engine_params`]): each is a
/// per-channel affine map `{name}.scale`, `{name}.shift`, for inference only. *Trainable*
/// ([`ModelSpec::params`], PyTorch's names): `{name}.weight`, `.bias`, `.running_mean`,
/// `.running_var`; a training forward pass normalises with the batch statistics, and its backward
/// pass updates the running statistics (momentum [`BN_MOMENTUM`], unbiased variance, as PyTorch);
/// an inference pass normalises with the running statistics.
pub struct Model<T> {
    /// The architecture.
    pub spec: ModelSpec,
    /// Parameters by name (see [`ModelSpec::engine_params`] and [`ModelSpec::params`]).
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

impl<T: Clone> Model<T> {
    /// A model from its parameters, which must be exactly [`ModelSpec::engine_params`] (batch norms
    /// folded) or exactly [`ModelSpec::params`] (batch norms trainable); the two are the same for a
    /// model without batch norm.
    pub fn new<E: Engine<T = T>>(spec: ModelSpec, params: BTreeMap<String, T>, engine: &E) -> Result<Self> {
        let folded = spec.engine_params();
        let folded_bn = !spec.has_batchnorm() || folded.iter().any(|(n, _)| params.contains_key(n) && is_folded(n));
        let want = if folded_bn { folded } else { spec.params() };
        for (name, shape) in &want {
            match params.get(name) {
                None => return Err(NnError::Weights(format!("missing parameter {name}"))),
                Some(t) if engine.shape(t) != *shape => {
                    return Err(NnError::Weights(format!("{name} has shape {:?}, expected {shape:?}", engine.shape(t))))
                }
                _ => {}
            }
        }
        if params.len() != want.len() {
            let extra: Vec<&String> = params.keys().filter(|k| !want.iter().any(|(n, _)| n == *k)).collect();
            return Err(NnError::Weights(format!("unexpected parameters {extra:?}")));
        }
        Ok(Model { spec, params, grads: BTreeMap::new(), velocity: BTreeMap::new(), folded_bn })
    }

    /// True when the batch norms are folded (inference only) or there are none; false when they
    /// are trainable.
    pub fn bn_folded(&self) -> bool {
        self.folded_bn
    }

    fn param(&self, name: &str) -> Result<&T> {
        self.params.get(name).ok_or_else(|| NnError::Weights(format!("missing parameter {name}")))
    }

    /// Forward pass; with `train`, also the tape for [`backward`](Self::backward).
    pub fn forward<E: Engine<T = T>>(&self, e: &mut E, x: &T, train: bool) -> Result<(T, Vec<Tape<E>>)> {
        let mut tape = Vec::new();
        let y = self.run(e, &self.spec.layers, "", x, train, &mut tape)?;
        Ok((y, tape))
    }

    fn run<E: Engine<T = T>>(
        &self,
        e: &mut E,
        layers: &[LayerSpec],
        path: &str,
        x: &T,
        train: bool,
        tape: &mut Vec<Tape<E>>,
    ) -> Result<T> {
        let mut x = x.clone();
        for (i, l) in layers.iter().enumerate() {
            let (y, t) = self.layer_forward(e, l, path, i, &x, train)?;
            if !matches!(l, LayerSpec::Residual { .. }) {
                e.step_done(&label(path, i, l), Phase::Forward);
            }
            if train {
                tape.push(t);
            }
            x = y;
        }
        Ok(x)
    }

    fn layer_forward<E: Engine<T = T>>(
        &self,
        e: &mut E,
        l: &LayerSpec,
        path: &str,
        idx: usize,
        x: &T,
        train: bool,
    ) -> Result<(T, Tape<E>)> {
        let keep = |t: T| if train { Tape::Input(t) } else { Tape::None };
        Ok(match l {
            LayerSpec::Conv2d { name, stride, padding, bias, .. } => {
                let b = if *bias { Some(self.param(&format!("{name}.bias"))?) } else { None };
                let y = e.conv2d(x, self.param(&format!("{name}.weight"))?, b, &conv_params(*stride, *padding))?;
                (y, keep(x.clone()))
            }
            LayerSpec::Linear { name, .. } => {
                let y = e.linear(x, self.param(&format!("{name}.weight"))?, self.param(&format!("{name}.bias"))?)?;
                (y, keep(x.clone()))
            }
            LayerSpec::Relu => {
                let (y, s) = e.relu(x)?;
                (y, Tape::Relu(s))
            }
            LayerSpec::AvgPool2d { kernel, stride, padding } => {
                (e.avg_pool(x, &pool_params(*kernel, *stride, *padding))?, Tape::Shape(e.shape(x)))
            }
            LayerSpec::MaxPool2d { kernel, stride, padding } => {
                let (y, s) = e.max_pool(x, &pool_params(*kernel, *stride, *padding))?;
                (y, Tape::MaxPool(s, e.shape(x)))
            }
            LayerSpec::BatchNorm2d { name, .. } => self.batch_norm(e, name, x, train)?,
            LayerSpec::GlobalAvgPool => (e.global_avg_pool(x)?, Tape::Shape(e.shape(x))),
            LayerSpec::Flatten => {
                let s = e.shape(x);
                (e.reshape(x, &[s[0], s[1..].iter().product()])?, Tape::Shape(s))
            }
            LayerSpec::Residual { body, shortcut } => {
                let (mut tb, mut ts) = (Vec::new(), Vec::new());
                let (pb, ps) = branch_paths(path, idx);
                let a = self.run(e, body, &pb, x, train, &mut tb)?;
                let b = self.run(e, shortcut, &ps, x, train, &mut ts)?;
                (e.add(&a, &b)?, Tape::Residual(tb, ts))
            }
        })
    }

    fn batch_norm<E: Engine<T = T>>(&self, e: &mut E, name: &str, x: &T, train: bool) -> Result<(T, Tape<E>)> {
        let p = |s: &str| self.param(&format!("{name}.{s}"));
        if self.folded_bn {
            if train {
                return Err(NnError::Unsupported(format!(
                    "training through the folded batch norm {name}: start from trainable (unfolded) parameters"
                )));
            }
            return Ok((e.affine_channels(x, p("scale")?, p("shift")?)?, Tape::None));
        }
        let (gamma, beta) = (p("weight")?, p("bias")?);
        if !train {
            // scale = gamma / sqrt(running_var + eps), shift = beta - running_mean · scale.
            let istd = e.inv_sqrt(p("running_var")?, BN_EPS)?;
            let scale = e.mul(gamma, &istd)?;
            let ms = e.mul(p("running_mean")?, &scale)?;
            let shift = e.sub(beta, &ms)?;
            return Ok((e.affine_channels(x, &scale, &shift)?, Tape::None));
        }
        let s = e.shape(x);
        let m = per_channel(&s);
        if m < 2 {
            return Err(NnError::Shape(format!(
                "{name}: training batch norm needs more than one value per channel, got input {s:?}"
            )));
        }
        let mean = e.channel_sum(x)?;
        let mean = e.scale(&mean, 1.0 / m as f64)?;
        let xc = e.broadcast_channels(&mean, &s)?;
        let xc = e.sub(x, &xc)?;
        let var = e.mul(&xc, &xc)?;
        let var = e.channel_sum(&var)?;
        let var = e.scale(&var, 1.0 / m as f64)?;
        let istd = e.inv_sqrt(&var, BN_EPS)?;
        let xhat = e.broadcast_channels(&istd, &s)?;
        let xhat = e.mul(&xc, &xhat)?;
        let y = e.affine_channels(&xhat, gamma, beta)?;
        Ok((y, Tape::BatchNorm { xhat, istd, mean, var }))
    }

    /// Batch-norm backward: `dbeta = Σ g`, `dgamma = Σ g·xhat`, and
    /// `dx = gamma·istd·(g - mean(g) - xhat·mean(g·xhat))` (means and sums per channel); then the
    /// running statistics move towards the batch's.
    fn batch_norm_backward<E: Engine<T = T>>(&mut self, e: &mut E, name: &str, t: Tape<E>, g: &T) -> Result<T> {
        let Tape::BatchNorm { xhat, istd, mean, var } = t else {
            return Err(NnError::Unsupported(format!("backward through batch norm {name} without its forward tape")));
        };
        let s = e.shape(g);
        let m = per_channel(&s) as f64;
        let key = |p: &str| format!("{name}.{p}");
        let dbeta = e.channel_sum(g)?;
        let gx = e.mul(g, &xhat)?;
        let dgamma = e.channel_sum(&gx)?;
        let k = e.mul(self.param(&key("weight"))?, &istd)?;
        let mg = e.scale(&dbeta, 1.0 / m)?;
        let mg = e.broadcast_channels(&mg, &s)?;
        let mgx = e.scale(&dgamma, 1.0 / m)?;
        let mgx = e.broadcast_channels(&mgx, &s)?;
        let t = e.sub(g, &mg)?;
        let xm = e.mul(&xhat, &mgx)?;
        let t = e.sub(&t, &xm)?;
        let k = e.broadcast_channels(&k, &s)?;
        let dx = e.mul(&t, &k)?;
        self.grads.insert(key("weight"), dgamma);
        self.grads.insert(key("bias"), dbeta);
        let rm = e.lincomb(&[(1.0 - BN_MOMENTUM, self.param(&key("running_mean"))?), (BN_MOMENTUM, &mean)])?;
        let unbiased = BN_MOMENTUM * m / (m - 1.0);
        let rv = e.lincomb(&[(1.0 - BN_MOMENTUM, self.param(&key("running_var"))?), (unbiased, &var)])?;
        self.params.insert(key("running_mean"), rm);
        self.params.insert(key("running_var"), rv);
        Ok(dx)
    }

    /// Backward pass from the gradient of the output; fills [`grads`](Self::grads) and returns the
    /// gradient with respect to the input.
    pub fn backward<E: Engine<T = T>>(&mut self, e: &mut E, tape: Vec<Tape<E>>, gy: &T) -> Result<T> {
        self.grads.clear();
        let layers = self.spec.layers.clone();
        self.back_seq(e, &layers, "", tape, gy)
    }

    fn back_seq<E: Engine<T = T>>(
        &mut self,
        e: &mut E,
        layers: &[LayerSpec],
        path: &str,
        tape: Vec<Tape<E>>,
        gy: &T,
    ) -> Result<T> {
        if tape.len() != layers.len() {
            return Err(NnError::Unsupported("backward needs the tape of a training forward pass".into()));
        }
        let mut g = gy.clone();
        for (i, (l, t)) in layers.iter().zip(tape).enumerate().rev() {
            g = self.layer_backward(e, l, path, i, t, &g)?;
            if !matches!(l, LayerSpec::Residual { .. }) {
                e.step_done(&label(path, i, l), Phase::Backward);
            }
        }
        Ok(g)
    }

    fn layer_backward<E: Engine<T = T>>(
        &mut self,
        e: &mut E,
        l: &LayerSpec,
        path: &str,
        idx: usize,
        t: Tape<E>,
        g: &T,
    ) -> Result<T> {
        Ok(match (l, t) {
            (LayerSpec::Conv2d { name, stride, padding, bias, .. }, Tape::Input(x)) => {
                let w = self.param(&format!("{name}.weight"))?.clone();
                let (dx, dw, db) = e.conv2d_grads(&x, &w, g, &conv_params(*stride, *padding), *bias)?;
                self.grads.insert(format!("{name}.weight"), dw);
                if let Some(db) = db {
                    self.grads.insert(format!("{name}.bias"), db);
                }
                dx
            }
            (LayerSpec::Linear { name, .. }, Tape::Input(x)) => {
                let w = self.param(&format!("{name}.weight"))?.clone();
                let (dx, dw, db) = e.linear_grads(&x, &w, g)?;
                self.grads.insert(format!("{name}.weight"), dw);
                self.grads.insert(format!("{name}.bias"), db);
                dx
            }
            (LayerSpec::Relu, Tape::Relu(s)) => e.relu_backward(g, &s)?,
            (LayerSpec::AvgPool2d { kernel, stride, padding }, Tape::Shape(s)) => {
                e.avg_pool_backward(g, &s, &pool_params(*kernel, *stride, *padding))?
            }
            (LayerSpec::MaxPool2d { kernel, stride, padding }, Tape::MaxPool(saved, s)) => {
                e.max_pool_backward(g, &saved, &s, &pool_params(*kernel, *stride, *padding))?
            }
            (LayerSpec::BatchNorm2d { name, .. }, t @ Tape::BatchNorm { .. }) => {
                self.batch_norm_backward(e, name, t, g)?
            }
            (LayerSpec::GlobalAvgPool, Tape::Shape(s)) => e.global_avg_pool_backward(g, &s)?,
            (LayerSpec::Flatten, Tape::Shape(s)) => e.reshape(g, &s)?,
            (LayerSpec::Residual { body, shortcut }, Tape::Residual(tb, ts)) => {
                let (pb, ps) = branch_paths(path, idx);
                let a = self.back_seq(e, body, &pb, tb, g)?;
                let b = self.back_seq(e, shortcut, &ps, ts, g)?;
                e.add(&a, &b)?
            }
            (l, _) => return Err(NnError::Unsupported(format!("backward through {l:?} without its forward tape"))),
        })
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
