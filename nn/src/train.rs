//! Private training and evaluation loops, their plaintext twins, and how they are scored.
//!
//! [`train_private`] is one party's program: the model owner secret-shares the initial
//! parameters, the data owner secret-shares every batch, the three parties run SGD on shares,
//! then [`infer_private`] classifies the test set and the predictions are opened to the
//! receivers named by the [`Roles`] (trained weights to `weights_to` when asked). The same
//! program runs in-process (`cryptgpu_sharing::run_local`) and over TCP, so with the same keys the
//! results are bit-identical. [`train_plain`] trains the f64 twin with the same initialisation and
//! data order, and [`score`] compares them.

use std::time::Instant;

use cryptgpu_net::Transport;
use cryptgpu_ring::{Backend, FixedPoint};
use cryptgpu_sharing::{AShare, Party};

use crate::data::{sequential_batches, shuffled_batches, Images};
use crate::engine::{Engine, Model, Phase, Sgd};
use crate::error::{NnError, Result};
use crate::graph::Graph;
use crate::onnx::Head;
use crate::plain::{softmax_rows, PlainEngine, PlainTensor};
use crate::private::{PrivateEngine, Traffic};
use crate::ranges::{RangeRecorder, RangeReport};
use crate::session::{reveal_model_to, reveal_to, share, share_trainable_model, Roles};
use crate::weights::Params;

/// The public settings of a training run (all parties use the same).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainSettings {
    /// Passes over the training set.
    pub epochs: usize,
    /// Images per SGD step.
    pub batch: usize,
    /// The optimiser.
    pub opt: Sgd,
    /// Seed of the data order (epoch `e` shuffles with `seed + e`).
    pub seed: u64,
    /// Images per private forward pass when classifying the test set.
    pub eval_batch: usize,
}

impl Default for TrainSettings {
    /// One epoch of batch 128, SGD with learning rate 0.05 and momentum 0.9, seed 1, test batches of 100.
    fn default() -> Self {
        TrainSettings {
            epochs: 1,
            batch: 128,
            opt: Sgd { lr: 0.05, momentum: 0.9, weight_decay: 0.0 },
            seed: 1,
            eval_batch: 100,
        }
    }
}

impl TrainSettings {
    /// Checks the settings against the model: positive counts, finite optimiser values, and a
    /// batch the model accepts.
    pub fn check(&self, graph: &Graph) -> Result<()> {
        if self.epochs == 0 || self.batch == 0 || self.eval_batch == 0 {
            return Err(NnError::Shape("epochs, batch and evaluation batch must be positive".into()));
        }
        let o = &self.opt;
        if !(o.lr.is_finite() && o.momentum.is_finite() && o.weight_decay.is_finite()) {
            return Err(NnError::Unsupported(format!("optimiser values must be finite, not {o:?}")));
        }
        graph.check(self.batch)?;
        Ok(())
    }
}

/// Where a loop is: for progress reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// SGD steps (counted in steps).
    Train,
    /// Classifying the test set (counted in images).
    Test,
}

/// Receives progress from the loops (e.g. to draw a progress bar). `()` ignores it.
pub trait Progress {
    /// `done` of `total` units of `stage` are finished.
    fn advance(&mut self, stage: Stage, done: usize, total: usize);
}

impl Progress for () {
    fn advance(&mut self, _: Stage, _: usize, _: usize) {}
}

/// One party's view of a private training run.
#[derive(Debug, Clone, Copy)]
pub struct PrivateTraining<'a> {
    /// The model (a zoo model's is [`ModelSpec::to_graph`](crate::spec::ModelSpec::to_graph)).
    pub graph: &'a Graph,
    /// Who holds and receives what.
    pub roles: Roles,
    /// The public settings.
    pub settings: TrainSettings,
    /// The public number of training images.
    pub n_train: usize,
    /// The public number of test images.
    pub n_test: usize,
    /// The initial trainable parameters (PyTorch names): `Some` at the model owner only.
    pub params: Option<&'a Params>,
    /// The training and test images: `Some` at the data owner only.
    pub data: Option<(&'a Images, &'a Images)>,
    /// Whether to open the trained weights to `roles.weights_to`.
    pub open_weights: bool,
}

/// What one party got from [`train_private`].
#[derive(Debug)]
pub struct TrainOutcome {
    /// The test predictions: at the receivers (`roles.output_to`) only.
    pub predictions: Option<Vec<usize>>,
    /// The trained weights: at `roles.weights_to` only, when they were asked for.
    pub weights: Option<Params>,
    /// SGD steps run.
    pub steps: usize,
    /// Wall time of the training steps at this party.
    pub train_seconds: f64,
    /// Wall time of the test-set inference at this party.
    pub infer_seconds: f64,
    /// This party's training traffic per layer and phase.
    pub traffic: Traffic,
}

/// One party's private training and test-set inference (see the module docs). All three parties
/// call it with the same public values; the owners pass their model and data.
///
/// ```rust
/// use cryptgpu_kernels_cpu::CpuBackend;
/// use cryptgpu_nn::data::Images;
/// use cryptgpu_nn::session::{Receivers, Roles};
/// use cryptgpu_nn::spec::{LayerSpec, ModelSpec};
/// use cryptgpu_nn::train::{train_private, PrivateTraining, TrainSettings};
/// use cryptgpu_nn::weights::init_params;
/// use cryptgpu_sharing::{run_local, RunConfig};
///
/// let spec = ModelSpec {
///     name: "tiny".into(),
///     input: [1, 2, 2],
///     classes: 2,
///     layers: vec![LayerSpec::Flatten, LayerSpec::Linear { name: "fc".into(), fin: 4, fout: 2 }],
/// };
/// // Eight 2x2 images: label 1 where the first pixel is bright.
/// let pixels: Vec<u8> = (0..32).map(|i| if i % 4 == 0 && i % 8 == 0 { 250 } else { 10 }).collect();
/// let labels: Vec<u8> = (0..8).map(|i| (i % 2 == 0) as u8).collect();
/// let data = Images { shape: [1, 2, 2], pixels, labels, classes: 2, mean: vec![0.5], std: vec![0.5] };
/// let params = init_params(&spec, 1);
/// // The model at party 0, the data at party 1, the test predictions opened to party 1.
/// let roles = Roles::new(0, 1, Receivers::only(1))?;
/// let settings = TrainSettings { batch: 4, eval_batch: 8, ..TrainSettings::default() };
/// let out = run_local(CpuBackend, RunConfig::default(), |party| {
///     let id = party.id();
///     let job = PrivateTraining {
///         graph: &spec.to_graph(),
///         roles,
///         settings,
///         n_train: 8,
///         n_test: 8,
///         params: (id == 0).then_some(&params),
///         data: (id == 1).then_some((&data, &data)),
///         open_weights: false,
///     };
///     train_private(party, &job, &mut ())
/// })?;
/// assert_eq!(out[1].value.steps, 2);
/// assert_eq!(out[1].value.predictions.as_ref().map(Vec::len), Some(8));
/// assert!(out[0].value.predictions.is_none() && out[2].value.predictions.is_none());
/// # Ok::<(), cryptgpu_nn::NnError>(())
/// ```
pub fn train_private<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    job: &PrivateTraining<'_>,
    progress: &mut dyn Progress,
) -> Result<TrainOutcome> {
    let (graph, roles, s) = (job.graph, job.roles, job.settings);
    roles.check()?;
    s.check(graph)?;
    let me = party.id();
    if (me == roles.data_owner) != job.data.is_some() {
        return Err(NnError::Roles(format!(
            "party {me}: only the data owner (party {}) passes data",
            roles.data_owner
        )));
    }
    if let Some((train, _)) = job.data {
        if train.len() != job.n_train || train.shape[..] != graph.input_shape[..] {
            return Err(NnError::Shape(format!(
                "{} training images of shape {:?}, expected {} of shape {:?}",
                train.len(),
                train.shape,
                job.n_train,
                graph.input_shape
            )));
        }
    }
    let batches: Vec<Vec<Vec<usize>>> =
        (0..s.epochs).map(|e| shuffled_batches(job.n_train, s.batch, s.seed + e as u64)).collect();
    let steps: usize = batches.iter().map(Vec::len).sum();
    let mut model = share_trainable_model(party, graph, roles.model_owner, job.params)?;
    let start = Instant::now();
    let mut eng = PrivateEngine::new(party);
    let mut done = 0;
    for epoch in &batches {
        for idx in epoch {
            let xy = job.data.map(|(train, _)| train.batch(idx));
            let shape: Vec<usize> = std::iter::once(idx.len()).chain(graph.input_shape.iter().copied()).collect();
            let sx = share(eng.party, roles.data_owner, xy.as_ref().map(|b| &b.0), &shape)?;
            let sy = share(eng.party, roles.data_owner, xy.as_ref().map(|b| &b.1), &[idx.len(), graph.classes])?;
            eng.step_done("input", Phase::Forward);
            model.train_step(&mut eng, &sx, &sy, &s.opt)?;
            done += 1;
            progress.advance(Stage::Train, done, steps);
        }
    }
    let traffic = std::mem::take(&mut eng.traffic);
    drop(eng);
    let train_seconds = start.elapsed().as_secs_f64();
    let test = infer_private(party, &model, &roles, job.data.map(|(_, t)| t), job.n_test, s.eval_batch, progress)?;
    let weights = if job.open_weights { reveal_model_to(party, &model, roles.weights_to)? } else { None };
    Ok(TrainOutcome {
        predictions: test.predictions,
        weights,
        steps,
        train_seconds,
        infer_seconds: test.seconds,
        traffic,
    })
}

/// What one party got from [`infer_private`].
#[derive(Debug)]
pub struct InferOutcome {
    /// The predicted classes: at the receivers (`roles.output_to`) only.
    pub predictions: Option<Vec<usize>>,
    /// Wall time at this party.
    pub seconds: f64,
    /// This party's traffic per layer (plus `input` and `reveal`).
    pub traffic: Traffic,
}

/// Classifies `n` images held by `roles.data_owner` (`Some` there, `None` elsewhere) with a shared
/// model, `batch` images per private forward pass; the predicted classes are opened to
/// `roles.output_to` only.
pub fn infer_private<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    model: &Model<AShare<B>>,
    roles: &Roles,
    images: Option<&Images>,
    n: usize,
    batch: usize,
    progress: &mut dyn Progress,
) -> Result<InferOutcome> {
    roles.check()?;
    let me = party.id();
    if (me == roles.data_owner) != images.is_some() {
        return Err(NnError::Roles(format!(
            "party {me}: only the data owner (party {}) passes images",
            roles.data_owner
        )));
    }
    if let Some(im) = images {
        if im.len() != n || im.shape[..] != model.graph.input_shape[..] {
            return Err(NnError::Shape(format!(
                "{} images of shape {:?}, expected {n} of shape {:?}",
                im.len(),
                im.shape,
                model.graph.input_shape
            )));
        }
    }
    if batch == 0 {
        return Err(NnError::Shape("the inference batch must be positive".into()));
    }
    let start = Instant::now();
    let receiver = roles.output_to.contains(me);
    let mut preds = receiver.then(|| Vec::with_capacity(n));
    let mut eng = PrivateEngine::new(party);
    let mut done = 0;
    for idx in &sequential_batches(n, batch) {
        let x = images.map(|im| im.batch(idx).0);
        let shape: Vec<usize> = std::iter::once(idx.len()).chain(model.graph.input_shape.iter().copied()).collect();
        let sx = share(eng.party, roles.data_owner, x.as_ref(), &shape)?;
        eng.step_done("input", Phase::Forward);
        let (y, _) = model.forward(&mut eng, &sx, false)?;
        if let (Some(p), Some(l)) = (preds.as_mut(), reveal_to(eng.party, &y, roles.output_to)?) {
            p.extend(l.argmax_rows());
        }
        eng.step_done("reveal", Phase::Forward);
        done += idx.len();
        progress.advance(Stage::Test, done, n);
    }
    Ok(InferOutcome { predictions: preds, seconds: start.elapsed().as_secs_f64(), traffic: eng.traffic })
}

/// What one party got from [`logits_private`].
#[derive(Debug)]
pub struct LogitsOutcome {
    /// The outputs `[n, classes]`: at the receivers (`roles.output_to`) only.
    pub logits: Option<PlainTensor>,
    /// Wall time at this party.
    pub seconds: f64,
    /// This party's traffic per layer (plus `input` and `reveal`).
    pub traffic: Traffic,
}

/// Checks that `shape` is `[N, ...graph.input_shape]` with `N` positive.
fn check_input_shape(graph: &Graph, shape: &[usize]) -> Result<()> {
    if shape.len() != graph.input_shape.len() + 1 || shape[1..] != graph.input_shape[..] || shape[0] == 0 {
        let dims: Vec<String> = graph.input_shape.iter().map(ToString::to_string).collect();
        return Err(NnError::Shape(format!(
            "input of shape {shape:?}: {} takes [N, {}] with N > 0",
            graph.name,
            dims.join(", ")
        )));
    }
    Ok(())
}

/// Checks a tensor to classify against the model: shape `[N, ...input]` with `N` positive, and
/// finite values.
pub fn check_input(graph: &Graph, x: &PlainTensor) -> Result<()> {
    check_input_shape(graph, &x.shape)?;
    match x.data.iter().find(|v| !v.is_finite()) {
        Some(v) => Err(NnError::Shape(format!("the input has a non-finite value ({v})"))),
        None => Ok(()),
    }
}

/// The plaintext twin's logits of `x`, `batch` rows at a time (as [`logits_private`] runs them),
/// recording value ranges in `rec`.
pub fn logits_plain(
    model: &Model<PlainTensor>,
    x: &PlainTensor,
    batch: usize,
    rec: &mut RangeRecorder,
) -> Result<PlainTensor> {
    check_input(&model.graph, x)?;
    if batch == 0 {
        return Err(NnError::Shape("the inference batch must be positive".into()));
    }
    let (n, classes) = (x.shape[0], model.graph.classes);
    let mut data = Vec::with_capacity(n * classes);
    for lo in (0..n).step_by(batch) {
        data.extend(model.forward(rec, &x.rows(lo..(lo + batch).min(n))?, false)?.0.data);
    }
    PlainTensor::new(&[n, classes], data)
}

/// How [`logits_private`] computes its outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outputs {
    /// Rows per private forward pass.
    pub batch: usize,
    /// A head applied privately to the logits before they are opened (e.g. an ONNX file's
    /// trailing softmax); `None` opens the logits.
    pub head: Option<Head>,
}

/// The head applied to the plaintext twin's logits (`[N, C]`), as [`logits_private`] applies it
/// privately.
pub fn plain_head(head: Option<Head>, logits: PlainTensor) -> Result<PlainTensor> {
    let Some(head) = head else { return Ok(logits) };
    let p = softmax_rows(logits.view()?.into_dimensionality().map_err(|e| NnError::Shape(format!("head: {e}")))?);
    let data = match head {
        Head::Softmax => p.iter().copied().collect(),
        Head::LogSoftmax => p.iter().map(|v| v.ln()).collect(),
    };
    PlainTensor::new(&logits.shape, data)
}

/// The outputs (logits, or the head of `outputs` applied to them) of a tensor `x` of shape
/// `shape` (`[n, ...]`, the model's input shape after the first axis) held by
/// `roles.data_owner` (`Some` there, `None` elsewhere), `outputs.batch` rows per private forward
/// pass, opened to `roles.output_to` only.
pub fn logits_private<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    model: &Model<AShare<B>>,
    roles: &Roles,
    x: Option<&PlainTensor>,
    shape: &[usize],
    outputs: Outputs,
    progress: &mut dyn Progress,
) -> Result<LogitsOutcome> {
    let batch = outputs.batch;
    roles.check()?;
    let me = party.id();
    if (me == roles.data_owner) != x.is_some() {
        return Err(NnError::Roles(format!(
            "party {me}: only the data owner (party {}) passes the input",
            roles.data_owner
        )));
    }
    check_input_shape(&model.graph, x.map_or(shape, |x| &x.shape[..]))?;
    if let Some(x) = x {
        check_input(&model.graph, x)?;
        if x.shape != shape {
            return Err(NnError::Shape(format!("input of shape {:?}, announced as {shape:?}", x.shape)));
        }
    } else {
        check_input_shape(&model.graph, shape)?;
    }
    if batch == 0 {
        return Err(NnError::Shape("the inference batch must be positive".into()));
    }
    let (n, classes) = (shape[0], model.graph.classes);
    let start = Instant::now();
    let mut out = roles.output_to.contains(me).then(|| Vec::with_capacity(n * classes));
    let mut eng = PrivateEngine::new(party);
    for lo in (0..n).step_by(batch) {
        let hi = (lo + batch).min(n);
        let xb = x.map(|x| x.rows(lo..hi)).transpose()?;
        let mut bshape = shape.to_vec();
        bshape[0] = hi - lo;
        let sx = share(eng.party, roles.data_owner, xb.as_ref(), &bshape)?;
        eng.step_done("input", Phase::Forward);
        let (mut y, _) = model.forward(&mut eng, &sx, false)?;
        match outputs.head {
            Some(Head::Softmax) => y = eng.party.softmax(&y, &eng.softmax)?,
            Some(Head::LogSoftmax) => y = eng.party.log_softmax(&y, &eng.softmax)?,
            None => {}
        }
        if outputs.head.is_some() {
            eng.step_done("head", Phase::Forward);
        }
        if let (Some(o), Some(l)) = (out.as_mut(), reveal_to(eng.party, &y, roles.output_to)?) {
            o.extend(l.data);
        }
        eng.step_done("reveal", Phase::Forward);
        progress.advance(Stage::Test, hi, n);
    }
    let logits = out.map(|d| PlainTensor::new(&[n, classes], d)).transpose()?;
    Ok(LogitsOutcome { logits, seconds: start.elapsed().as_secs_f64(), traffic: eng.traffic })
}

/// Trains the plaintext twin from `params` with the same data order as [`train_private`] and
/// classifies `test`: the predictions and the twin's value ranges (training and test inference)
/// against the fixed-point bounds of `codec`.
pub fn train_plain(
    graph: &Graph,
    params: &Params,
    train: &Images,
    test: &Images,
    settings: &TrainSettings,
    codec: FixedPoint,
) -> Result<(Vec<usize>, RangeReport)> {
    settings.check(graph)?;
    let mut model = Model::from_graph(graph.clone(), params.clone(), &PlainEngine)?;
    let mut rec = RangeRecorder::new(codec);
    for e in 0..settings.epochs {
        for idx in shuffled_batches(train.len(), settings.batch, settings.seed + e as u64) {
            let (x, y) = train.batch(&idx);
            model.train_step(&mut rec, &x, &y, &settings.opt)?;
        }
    }
    let preds = predict_plain(&model, test, settings.eval_batch, &mut rec)?;
    Ok((preds, rec.report().clone()))
}

/// The twin's predicted classes for `images`, `batch` at a time, recording value ranges in `rec`.
pub fn predict_plain(
    model: &Model<PlainTensor>,
    images: &Images,
    batch: usize,
    rec: &mut RangeRecorder,
) -> Result<Vec<usize>> {
    if batch == 0 {
        return Err(NnError::Shape("the inference batch must be positive".into()));
    }
    let mut preds = Vec::with_capacity(images.len());
    for idx in sequential_batches(images.len(), batch) {
        let (x, _) = images.batch(&idx);
        preds.extend(model.forward(rec, &x, false)?.0.argmax_rows());
    }
    Ok(preds)
}

/// Accuracies of a private run and its twin on the same images.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Scores {
    /// Fraction of private predictions equal to the label.
    pub accuracy: f64,
    /// Fraction of plaintext predictions equal to the label.
    pub plaintext_accuracy: f64,
    /// Fraction of images where the private and plaintext predictions agree.
    pub agreement: f64,
}

/// Scores private and plaintext predictions against `labels` (all of the same length).
pub fn score(labels: &[usize], private: &[usize], plain: &[usize]) -> Result<Scores> {
    if private.len() != labels.len() || plain.len() != labels.len() {
        return Err(NnError::Shape(format!(
            "{} private and {} plaintext predictions for {} labels",
            private.len(),
            plain.len(),
            labels.len()
        )));
    }
    Ok(Scores {
        accuracy: accuracy(private, labels),
        plaintext_accuracy: accuracy(plain, labels),
        agreement: accuracy(private, plain),
    })
}

/// Fraction of positions where `a` and `b` agree (0 for empty slices).
pub fn accuracy(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len().min(b.len());
    if n == 0 {
        return 0.0;
    }
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / n as f64
}

/// Communication of one layer and phase over a run, at the three parties.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerTraffic {
    /// The layer's label (or `input`, `reveal`, `loss`, `sgd`).
    pub layer: String,
    /// `forward`, `backward`, ...
    pub phase: String,
    /// Bytes sent by parties 0, 1 and 2.
    pub bytes_sent_per_party: [u64; 3],
    /// Rounds (the same at every party).
    pub rounds: u64,
}

/// Per-layer traffic of the three parties, in the layer order of party 0's map.
pub fn per_layer(maps: [&Traffic; 3]) -> Vec<LayerTraffic> {
    maps[0]
        .iter()
        .map(|((layer, phase), c)| LayerTraffic {
            layer: layer.clone(),
            phase: format!("{phase:?}").to_lowercase(),
            bytes_sent_per_party: std::array::from_fn(|i| {
                maps[i].get(&(layer.clone(), *phase)).map_or(0, |c| c.bytes_sent)
            }),
            rounds: c.rounds,
        })
        .collect()
}
