//! Private training and inference jobs: `cryptgpu demo`, `cryptgpu train` and `cryptgpu infer`.
//!
//! Party 0 owns the model and the data and secret-shares both; the three parties train or infer on
//! shares only, and every result (test predictions, saved weights) is opened to party 0 alone.
//! Parties 1 and 2 receive nothing but the public dataset sizes. The plaintext f64 twin, computed
//! by the owner, runs the same computation in the clear with the same initialisation and data
//! order, so its accuracy is the reference for the private one.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use cryptgpu_net::Transport;
use cryptgpu_nn::data::{
    load_cifar10, load_mnist, mnist_from_bytes, sequential_batches, shuffled_batches, Images, Split,
};
use cryptgpu_nn::engine::{Engine, Model, Phase, Sgd};
use cryptgpu_nn::plain::{PlainEngine, PlainTensor};
use cryptgpu_nn::private::{PrivateEngine, Traffic};
use cryptgpu_nn::ranges::{RangeRecorder, RangeReport};
use cryptgpu_nn::session::{
    open_counts, private_logits, reveal_model_to, reveal_to, share, share_model, share_trainable_model, OWNER,
};
use cryptgpu_nn::spec::ModelSpec;
use cryptgpu_nn::weights::{fold_batchnorm, init_params, load_safetensors, save_safetensors, Params};
use cryptgpu_nn::zoo::{by_name, Dataset};
use cryptgpu_ring::{Backend, FixedPoint};
use cryptgpu_sharing::{run_local, KeySource, Party, RunConfig};
use indicatif::{ProgressBar, ProgressStyle};

use crate::device::BackendChoice;
use crate::party::{digest, key_label, key_source, PartyJob};

/// Datasets with readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataChoice {
    /// MNIST (IDX files).
    Mnist,
    /// CIFAR-10 (binary batches).
    Cifar10,
}

impl DataChoice {
    fn dataset(self) -> Dataset {
        match self {
            DataChoice::Mnist => Dataset::Mnist,
            DataChoice::Cifar10 => Dataset::Cifar10,
        }
    }

    fn load(self, dir: &std::path::Path, split: Split) -> Result<Images> {
        Ok(match self {
            DataChoice::Mnist => load_mnist(dir, split)?,
            DataChoice::Cifar10 => load_cifar10(dir, split)?,
        })
    }
}

/// The MNIST sample shipped in the binary (2,000 training and 500 test images).
fn embedded_mnist(split: Split) -> Result<Images> {
    const TRAIN_X: &[u8] = include_bytes!("../../data/mnist-sample/train-images-idx3-ubyte.gz");
    const TRAIN_Y: &[u8] = include_bytes!("../../data/mnist-sample/train-labels-idx1-ubyte.gz");
    const TEST_X: &[u8] = include_bytes!("../../data/mnist-sample/t10k-images-idx3-ubyte.gz");
    const TEST_Y: &[u8] = include_bytes!("../../data/mnist-sample/t10k-labels-idx1-ubyte.gz");
    Ok(match split {
        Split::Train => mnist_from_bytes(TRAIN_X, TRAIN_Y, "embedded MNIST sample (train)")?,
        Split::Test => mnist_from_bytes(TEST_X, TEST_Y, "embedded MNIST sample (test)")?,
    })
}

/// Arguments of `cryptgpu demo`.
#[derive(ClapArgs, Debug)]
pub struct DemoArgs {
    /// Device.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Passes over the 2,000 shipped training images.
    #[arg(long, default_value_t = 2)]
    epochs: usize,
    /// Print a JSON object as the last line of standard output.
    #[arg(long)]
    json: bool,
}

/// Arguments of `cryptgpu train`.
#[derive(ClapArgs, Debug, Clone)]
pub struct TrainArgs {
    /// Zoo model (lenet, alexnet, vgg16, with optional -maxpool).
    #[arg(long, default_value = "lenet")]
    model: String,
    /// Dataset format.
    #[arg(long, value_enum, default_value_t = DataChoice::Mnist)]
    dataset: DataChoice,
    /// Folder with the dataset files (the shipped MNIST sample when omitted).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Epochs.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// Batch size.
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Momentum (0 for plain SGD).
    #[arg(long, default_value_t = 0.9)]
    momentum: f64,
    /// L2 weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Use only the first N training images.
    #[arg(long)]
    limit: Option<usize>,
    /// Use only the first N test images.
    #[arg(long)]
    test_limit: Option<usize>,
    /// Seed of the initialisation and the shuffling.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Save the trained weights (safetensors, PyTorch names), opened to party 0 (the model owner) only.
    #[arg(long)]
    save: Option<PathBuf>,
    /// INSECURE: derive the PRG keys from this public seed (reproducibility tests only; needs
    /// CRYPTGPU_ALLOW_INSECURE_KEYS=1 in the environment of every party).
    #[arg(long)]
    insecure_key_seed: Option<u64>,
    /// Device.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Print a JSON object as the last line of standard output.
    #[arg(long)]
    json: bool,
}

/// Arguments of `cryptgpu infer`.
#[derive(ClapArgs, Debug, Clone)]
pub struct InferArgs {
    /// Zoo model.
    #[arg(long)]
    model: String,
    /// Weights (safetensors with PyTorch state_dict names).
    #[arg(long)]
    weights: PathBuf,
    /// Dataset format.
    #[arg(long, value_enum, default_value_t = DataChoice::Mnist)]
    dataset: DataChoice,
    /// Folder with the dataset files (the shipped MNIST sample when omitted).
    #[arg(long)]
    data: Option<PathBuf>,
    /// Use only the first N test images.
    #[arg(long)]
    limit: Option<usize>,
    /// Images per private forward pass.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Device.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Print a JSON object as the last line of standard output.
    #[arg(long)]
    json: bool,
}

fn progress(len: usize, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(len as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {elapsed_precise} (eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

/// What a training run measured.
#[derive(serde::Serialize)]
struct TrainReport {
    op: &'static str,
    model: String,
    backend: &'static str,
    train_images: usize,
    test_images: usize,
    epochs: usize,
    batch: usize,
    steps: usize,
    seconds_per_step: f64,
    train_seconds: f64,
    /// Test accuracy of the private model.
    accuracy: f64,
    /// Test accuracy of the plaintext twin (same initialisation and data order).
    plaintext_accuracy: f64,
    /// Fraction of test images where the private and plaintext predictions agree.
    agreement: f64,
    seconds_per_image: f64,
    bytes_sent_per_party: [u64; 3],
    rounds: u64,
    /// Where the PRG keys came from (`os`, or `insecure-seed:S`).
    keys: String,
    /// Training traffic per layer and phase (inputs, forward, backward, loss, update).
    per_layer: Vec<LayerTraffic>,
    /// Digest of the private test predictions (compares runs, e.g. over TCP).
    predictions_digest: String,
    /// The plaintext twin's largest values per layer against the fixed-point bounds.
    ranges: RangeReport,
}

/// A training run: public parameters, plus the data and initial model at their owner.
struct Job<'a> {
    spec: ModelSpec,
    /// The owner's initial parameters (trainable: PyTorch names); empty at the other parties.
    params: Params,
    /// The owner's training and test images (`None` at the other parties).
    data: Option<(&'a Images, &'a Images)>,
    n_train: usize,
    n_test: usize,
    epochs: usize,
    batch: usize,
    opt: Sgd,
    seed: u64,
    save: bool,
}

/// Output of one party's private run.
struct PrivateOut {
    /// The test predictions: at the owner only (they are opened to it alone).
    preds: Option<Vec<usize>>,
    /// The trained weights, when saving: at the owner only.
    saved: Option<Params>,
    train_seconds: f64,
    steps: usize,
    infer_seconds: f64,
    /// This party's training traffic per layer.
    traffic: Traffic,
}

/// What party `id` received from the private run: the owner the predictions (and the weights when
/// saving), the others nothing beyond the public sizes (listed in party-mode reports).
fn received(id: usize, save: bool) -> Vec<&'static str> {
    let mut r = vec!["dataset sizes (public)"];
    if id == OWNER {
        r.push("test predictions");
        if save {
            r.push("trained weights");
        }
    }
    r
}

/// Communication of one layer and phase, summed over the run.
#[derive(serde::Serialize)]
struct LayerTraffic {
    layer: String,
    phase: String,
    bytes_sent_per_party: [u64; 3],
    rounds: u64,
}

/// Per-layer traffic of the three parties, in layer order of the first party's map.
fn per_layer(maps: [&Traffic; 3]) -> Vec<LayerTraffic> {
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

/// Prints the heaviest entries of a per-layer report.
fn print_layers(rows: &[LayerTraffic]) {
    let mut sorted: Vec<&LayerTraffic> = rows.iter().collect();
    sorted.sort_by_key(|r| std::cmp::Reverse(r.bytes_sent_per_party.iter().sum::<u64>()));
    println!("  heaviest layers (bytes sent by parties 0/1/2, rounds):");
    for r in sorted.iter().take(6) {
        println!("    {:<28} {:<8} {:?} {}", r.layer, r.phase, r.bytes_sent_per_party, r.rounds);
    }
}

/// One party's private training and test-set inference (the same program in-process and over TCP).
fn train_program<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    job: &Job<'_>,
) -> cryptgpu_sharing::Result<PrivateOut> {
    let [c, h, w] = job.spec.input;
    let batches: Vec<Vec<Vec<usize>>> =
        (0..job.epochs).map(|e| shuffled_batches(job.n_train, job.batch, job.seed + e as u64)).collect();
    let steps: usize = batches.iter().map(Vec::len).sum();
    let owner = party.id() == OWNER;
    let pb = if owner { progress(steps, "train") } else { ProgressBar::hidden() };
    let mut model = share_trainable_model(party, &job.spec, owner.then_some(&job.params))?;
    let start = Instant::now();
    let mut eng = PrivateEngine::new(party);
    for epoch in &batches {
        for idx in epoch {
            let xy = if owner { job.data.map(|(train, _)| train.batch(idx)) } else { None };
            let sx = share(eng.party, OWNER, xy.as_ref().map(|b| &b.0), &[idx.len(), c, h, w])?;
            let sy = share(eng.party, OWNER, xy.as_ref().map(|b| &b.1), &[idx.len(), job.spec.classes])?;
            eng.step_done("input", Phase::Forward);
            model.train_step(&mut eng, &sx, &sy, &job.opt)?;
            pb.inc(1);
        }
    }
    let traffic = std::mem::take(&mut eng.traffic);
    drop(eng);
    pb.finish_and_clear();
    let train_seconds = start.elapsed().as_secs_f64();
    let pb = if owner { progress(job.n_test, "infer") } else { ProgressBar::hidden() };
    let start = Instant::now();
    let mut preds = owner.then(|| Vec::with_capacity(job.n_test));
    for idx in &sequential_batches(job.n_test, 100) {
        let x = if owner { job.data.map(|(_, test)| test.batch(idx).0) } else { None };
        let logits = private_logits(party, &model, x.as_ref(), &[idx.len(), c, h, w], OWNER)?;
        if let (Some(p), Some(l)) = (preds.as_mut(), logits) {
            p.extend(l.argmax_rows());
        }
        pb.inc(idx.len() as u64);
    }
    pb.finish_and_clear();
    let infer_seconds = start.elapsed().as_secs_f64();
    let saved = if job.save { reveal_model_to(party, &model, OWNER)? } else { None };
    Ok(PrivateOut { preds, saved, train_seconds, steps, infer_seconds, traffic })
}

fn private_train<B: Backend>(
    be: B,
    job: &Job<'_>,
    keys: KeySource,
) -> Result<[cryptgpu_sharing::PartyOutput<PrivateOut>; 3]> {
    Ok(run_local(be, RunConfig { keys, ..RunConfig::default() }, |party| train_program(party, job))?)
}

/// Trains the plaintext twin with the same initialisation and data order; returns test predictions
/// and the twin's value ranges (training and test inference).
fn plain_train(job: &Job<'_>) -> Result<(Vec<usize>, RangeReport)> {
    let Some((train, test)) = job.data else { bail!("only the data owner can train the plaintext twin") };
    let mut model = Model::new(job.spec.clone(), job.params.clone(), &PlainEngine)?;
    let mut rec = RangeRecorder::new(FixedPoint::default());
    for e in 0..job.epochs {
        for idx in shuffled_batches(train.len(), job.batch, job.seed + e as u64) {
            let (x, y) = train.batch(&idx);
            model.train_step(&mut rec, &x, &y, &job.opt)?;
        }
    }
    let preds = plain_predict(&model, test, 100, &mut rec)?;
    Ok((preds, rec.report().clone()))
}

fn plain_predict(
    model: &Model<PlainTensor>,
    test: &Images,
    batch: usize,
    rec: &mut RangeRecorder,
) -> Result<Vec<usize>> {
    let mut preds = Vec::with_capacity(test.len());
    for idx in sequential_batches(test.len(), batch) {
        let (x, _) = test.batch(&idx);
        preds.extend(model.forward(rec, &x, false)?.0.argmax_rows());
    }
    Ok(preds)
}

/// Prints a warning to standard error for every twin value within 4x of its fixed-point bound.
fn warn_ranges(ranges: &RangeReport) {
    for w in ranges.warnings() {
        eprintln!("warning: {w}");
    }
}

/// Private accuracy, plaintext accuracy and their agreement on `test`.
fn score(test: &Images, private: &[usize], plain: &[usize]) -> (f64, f64, f64) {
    let labels = test.labels_at(&(0..test.len()).collect::<Vec<_>>());
    let same = |a: &[usize], b: &[usize]| a.iter().zip(b).filter(|(x, y)| x == y).count();
    let n = test.len();
    (fraction(same(private, &labels), n), fraction(same(plain, &labels), n), fraction(same(private, plain), n))
}

fn fraction(hits: usize, total: usize) -> f64 {
    if total == 0 {
        0.0
    } else {
        hits as f64 / total as f64
    }
}

#[allow(clippy::too_many_arguments)]
fn run_training(
    keys: KeySource,
    spec: ModelSpec,
    train: Images,
    test: Images,
    epochs: usize,
    batch: usize,
    opt: Sgd,
    seed: u64,
    save: Option<PathBuf>,
    backend: BackendChoice,
    json: bool,
) -> Result<()> {
    if batch == 0 || epochs == 0 {
        bail!("--batch and --epochs must be positive");
    }
    if train.shape != spec.input || test.shape != spec.input {
        bail!("{} expects {:?} images, the data has {:?}", spec.name, spec.input, train.shape);
    }
    spec.check(batch)?;
    let params = init_params(&spec, seed);
    let job = Job {
        spec,
        params,
        data: Some((&train, &test)),
        n_train: train.len(),
        n_test: test.len(),
        epochs,
        batch,
        opt,
        seed,
        save: save.is_some(),
    };
    eprintln!(
        "{}: private training on {} images ({} epochs, batch {}), then private inference on {} test images",
        job.spec.name,
        train.len(),
        epochs,
        batch,
        test.len()
    );
    let (plain_preds, ranges) = plain_train(&job)?;
    warn_ranges(&ranges);
    let device = backend.open()?;
    let backend_name = device.name();
    let out = private_train(device, &job, keys)?;
    let PrivateOut { preds, saved, train_seconds, steps, infer_seconds, .. } = &out[0].value;
    let preds = preds.as_ref().context("the owner received no predictions")?;
    let (accuracy, plaintext_accuracy, agreement) = score(&test, preds, &plain_preds);
    let report = TrainReport {
        op: "train",
        model: job.spec.name.clone(),
        backend: backend_name,
        train_images: train.len(),
        test_images: test.len(),
        epochs,
        batch,
        steps: *steps,
        seconds_per_step: train_seconds / (*steps).max(1) as f64,
        train_seconds: *train_seconds,
        accuracy,
        plaintext_accuracy,
        agreement,
        seconds_per_image: infer_seconds / test.len().max(1) as f64,
        bytes_sent_per_party: std::array::from_fn(|i| out[i].counters.bytes_sent),
        rounds: out[0].counters.rounds,
        keys: key_label(keys),
        per_layer: per_layer([&out[0].value.traffic, &out[1].value.traffic, &out[2].value.traffic]),
        predictions_digest: digest(&preds.iter().map(|&v| v as u64).collect::<Vec<_>>()),
        ranges,
    };
    if let (Some(path), Some(p)) = (save, saved.as_ref()) {
        save_safetensors(&path, p)?;
        eprintln!("saved the trained weights to {}", path.display());
    }
    println!(
        "private training of {} on {} ({} steps of batch {})",
        report.model, report.backend, report.steps, report.batch
    );
    println!("  time per step         {:.3} s", report.seconds_per_step);
    println!(
        "  test accuracy         private {:.2}%, plaintext twin {:.2}%",
        100.0 * report.accuracy,
        100.0 * report.plaintext_accuracy
    );
    println!("  prediction agreement  {:.2}% of {} test images", 100.0 * report.agreement, report.test_images);
    println!("  private inference     {:.4} s per image", report.seconds_per_image);
    println!("  bytes sent per party  {:?} over {} rounds", report.bytes_sent_per_party, report.rounds);
    print_layers(&report.per_layer);
    if json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// `cryptgpu demo`: private LeNet training on the shipped MNIST sample, then private inference.
pub fn demo(args: &DemoArgs) -> Result<()> {
    let train = embedded_mnist(Split::Train)?;
    let test = embedded_mnist(Split::Test)?;
    let spec = by_name("lenet", Dataset::Mnist)?;
    let opt = Sgd { lr: 0.05, momentum: 0.9, weight_decay: 0.0 };
    run_training(KeySource::Os, spec, train, test, args.epochs, 64, opt, 1, None, args.backend, args.json)
}

fn load_data(choice: DataChoice, dir: &Option<PathBuf>, split: Split) -> Result<Images> {
    match dir {
        Some(d) => choice.load(d, split).with_context(|| format!("reading {choice:?} from {}", d.display())),
        None if choice == DataChoice::Mnist => embedded_mnist(split),
        None => bail!("--data DIR is needed for {choice:?}"),
    }
}

/// `cryptgpu train`.
pub fn train(args: &TrainArgs) -> Result<()> {
    let spec = by_name(&args.model, args.dataset.dataset())?;
    let mut train = load_data(args.dataset, &args.data, Split::Train)?;
    let mut test = load_data(args.dataset, &args.data, Split::Test)?;
    if let Some(n) = args.limit {
        train = train.take(n);
    }
    if let Some(n) = args.test_limit {
        test = test.take(n);
    }
    let opt = Sgd { lr: args.lr, momentum: args.momentum, weight_decay: args.weight_decay };
    let keys = key_source(args.insecure_key_seed)?;
    run_training(
        keys,
        spec,
        train,
        test,
        args.epochs,
        args.batch,
        opt,
        args.seed,
        args.save.clone(),
        args.backend,
        args.json,
    )
}

/// What an inference run measured.
#[derive(serde::Serialize)]
struct InferReport {
    op: &'static str,
    model: String,
    backend: &'static str,
    images: usize,
    accuracy: f64,
    plaintext_accuracy: f64,
    agreement: f64,
    seconds_per_image: f64,
    bytes_sent_per_party: [u64; 3],
    rounds: u64,
    /// Where the PRG keys came from (always `os`).
    keys: String,
    /// Inference traffic per layer.
    per_layer: Vec<LayerTraffic>,
    /// The plaintext twin's largest values per layer against the fixed-point bounds.
    ranges: RangeReport,
}

/// `cryptgpu infer`: private inference with given weights, compared with the plaintext twin.
pub fn infer(args: &InferArgs) -> Result<()> {
    let spec = by_name(&args.model, args.dataset.dataset())?;
    let mut test = load_data(args.dataset, &args.data, Split::Test)?;
    if let Some(n) = args.limit {
        test = test.take(n);
    }
    if test.shape != spec.input {
        bail!("{} expects {:?} images, the data has {:?}", spec.name, spec.input, test.shape);
    }
    if args.batch == 0 {
        bail!("--batch must be positive");
    }
    let params = fold_batchnorm(&spec, &load_safetensors(&args.weights, &spec)?)?;
    let twin = Model::new(spec.clone(), params.clone(), &PlainEngine)?;
    let mut rec = RangeRecorder::new(FixedPoint::default());
    let plain_preds = plain_predict(&twin, &test, args.batch, &mut rec)?;
    warn_ranges(rec.report());
    let device = args.backend.open()?;
    let backend_name = device.name();
    let [c, h, w] = spec.input;
    let batches = sequential_batches(test.len(), args.batch);
    let out = run_local(device, RunConfig::default(), |party| {
        let owner = party.id() == OWNER;
        let model = share_model(party, &spec, owner.then_some(&params))?;
        let pb = if owner { progress(test.len(), "infer") } else { ProgressBar::hidden() };
        let start = Instant::now();
        let mut preds = owner.then(Vec::new);
        let mut eng = PrivateEngine::new(party);
        for idx in &batches {
            let (x, _) = test.batch(idx);
            let sx = share(eng.party, OWNER, owner.then_some(&x), &[idx.len(), c, h, w])?;
            eng.step_done("input", Phase::Forward);
            let (y, _) = model.forward(&mut eng, &sx, false)?;
            if let (Some(p), Some(l)) = (preds.as_mut(), reveal_to(eng.party, &y, OWNER)?) {
                p.extend(l.argmax_rows());
            }
            eng.step_done("reveal", Phase::Forward);
            pb.inc(idx.len() as u64);
        }
        pb.finish_and_clear();
        Ok((preds, start.elapsed().as_secs_f64(), eng.traffic))
    })?;
    let (preds, seconds, _) = &out[0].value;
    let preds = preds.as_ref().context("the owner received no predictions")?;
    let (accuracy, plaintext_accuracy, agreement) = score(&test, preds, &plain_preds);
    let report = InferReport {
        op: "infer",
        model: spec.name.clone(),
        backend: backend_name,
        images: test.len(),
        accuracy,
        plaintext_accuracy,
        agreement,
        seconds_per_image: seconds / test.len().max(1) as f64,
        bytes_sent_per_party: std::array::from_fn(|i| out[i].counters.bytes_sent),
        rounds: out[0].counters.rounds,
        keys: key_label(KeySource::Os),
        per_layer: per_layer([&out[0].value.2, &out[1].value.2, &out[2].value.2]),
        ranges: rec.report().clone(),
    };
    println!("private inference of {} on {} ({} images)", report.model, report.backend, report.images);
    println!(
        "  accuracy   private {:.2}%, plaintext {:.2}%, agreement {:.2}%",
        100.0 * report.accuracy,
        100.0 * report.plaintext_accuracy,
        100.0 * report.agreement
    );
    println!("  time       {:.4} s per image", report.seconds_per_image);
    print_layers(&report.per_layer);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// `train` as one party of three processes (`cryptgpu party ... train ...`). Party 0 owns the data
/// and the model: it alone reads `--data`, and it opens the dataset sizes (public) to the others
/// before training. The test predictions and the saved weights are opened to party 0 alone, which
/// also trains the plaintext twin and reports the accuracies; parties 1 and 2 report costs only.
pub struct TrainJob {
    args: TrainArgs,
    spec: ModelSpec,
    keys: KeySource,
}

impl TrainJob {
    /// Checks the arguments.
    pub fn prepare(args: &TrainArgs) -> Result<TrainJob> {
        let spec = by_name(&args.model, args.dataset.dataset())?;
        if args.batch == 0 || args.epochs == 0 {
            bail!("--batch and --epochs must be positive");
        }
        spec.check(args.batch)?;
        Ok(TrainJob { args: args.clone(), spec, keys: key_source(args.insecure_key_seed)? })
    }
}

impl PartyJob for TrainJob {
    fn name(&self) -> &'static str {
        "train"
    }

    fn public_params(&self) -> String {
        let a = &self.args;
        format!(
            "train model={} dataset={:?} epochs={} batch={} lr={} momentum={} wd={} limit={:?} test_limit={:?} seed={} save={}",
            a.model, a.dataset, a.epochs, a.batch, a.lr, a.momentum, a.weight_decay, a.limit, a.test_limit, a.seed, a.save.is_some()
        )
    }

    fn codec(&self) -> FixedPoint {
        FixedPoint::default()
    }

    fn keys(&self) -> KeySource {
        self.keys
    }

    fn backend(&self) -> BackendChoice {
        self.args.backend
    }

    fn run_party<B: Backend, T: Transport>(&self, p: &mut Party<B, T>) -> Result<()> {
        let a = &self.args;
        let owner = p.id() == OWNER;
        let data = if owner {
            let mut train = load_data(a.dataset, &a.data, Split::Train)?;
            let mut test = load_data(a.dataset, &a.data, Split::Test)?;
            if let Some(n) = a.limit {
                train = train.take(n);
            }
            if let Some(n) = a.test_limit {
                test = test.take(n);
            }
            if train.shape != self.spec.input {
                bail!("{} expects {:?} images, the data has {:?}", self.spec.name, self.spec.input, train.shape);
            }
            Some((train, test))
        } else {
            None
        };
        let sizes = data.as_ref().map(|(tr, te)| [tr.len(), te.len()]);
        let sizes = open_counts(p, sizes.as_ref().map(|s| &s[..]), &["training images", "test images"])?;
        let params = if owner { init_params(&self.spec, a.seed) } else { Params::new() };
        let job = Job {
            spec: self.spec.clone(),
            params,
            data: data.as_ref().map(|(tr, te)| (tr, te)),
            n_train: sizes[0],
            n_test: sizes[1],
            epochs: a.epochs,
            batch: a.batch,
            opt: Sgd { lr: a.lr, momentum: a.momentum, weight_decay: a.weight_decay },
            seed: a.seed,
            save: a.save.is_some(),
        };
        let out = train_program(p, &job)?;
        let mut report = serde_json::json!({
            "op": "train",
            "party": p.id(),
            "model": self.spec.name,
            "backend": p.backend().name(),
            "keys": key_label(self.keys),
            "received": received(p.id(), job.save),
            "train_images": job.n_train,
            "test_images": job.n_test,
            "steps": out.steps,
            "seconds_per_step": out.train_seconds / out.steps.max(1) as f64,
            "seconds_per_image": out.infer_seconds / job.n_test.max(1) as f64,
            "bytes_sent": p.counters().bytes_sent,
            "rounds": p.counters().rounds,
        });
        println!("party {}: private training of {} ({} steps)", p.id(), self.spec.name, out.steps);
        if let (Some((_, test)), Some(preds)) = (&data, &out.preds) {
            let (plain, ranges) = plain_train(&job)?;
            warn_ranges(&ranges);
            report["ranges"] = serde_json::to_value(&ranges)?;
            let (acc, plain_acc, agree) = score(test, preds, &plain);
            if let (Some(path), Some(w)) = (&a.save, &out.saved) {
                save_safetensors(path, w)?;
                eprintln!("saved the trained weights to {}", path.display());
            }
            let words: Vec<u64> = preds.iter().map(|&v| v as u64).collect();
            report["accuracy"] = acc.into();
            report["plaintext_accuracy"] = plain_acc.into();
            report["agreement"] = agree.into();
            report["predictions_digest"] = digest(&words).into();
            println!("  test accuracy  private {:.2}%, plaintext twin {:.2}%", 100.0 * acc, 100.0 * plain_acc);
        } else {
            println!(
                "  received only the public dataset sizes ({} training, {} test images); predictions, accuracy \
                 and weights went to party {OWNER} alone",
                job.n_train, job.n_test
            );
        }
        if a.json {
            println!("{report}");
        }
        Ok(())
    }
}

/// `infer` as one party of three processes (`cryptgpu party ... infer ...`): party 0 owns the
/// weights and the images, opens the (public) image count, receives the predictions alone and
/// reports the accuracies; parties 1 and 2 report costs only.
pub struct InferJob {
    args: InferArgs,
    spec: ModelSpec,
}

impl InferJob {
    /// Checks the arguments.
    pub fn prepare(args: &InferArgs) -> Result<InferJob> {
        if args.batch == 0 {
            bail!("--batch must be positive");
        }
        Ok(InferJob { args: args.clone(), spec: by_name(&args.model, args.dataset.dataset())? })
    }
}

impl PartyJob for InferJob {
    fn name(&self) -> &'static str {
        "infer"
    }

    fn public_params(&self) -> String {
        let a = &self.args;
        format!("infer model={} dataset={:?} limit={:?} batch={}", a.model, a.dataset, a.limit, a.batch)
    }

    fn codec(&self) -> FixedPoint {
        FixedPoint::default()
    }

    fn keys(&self) -> KeySource {
        KeySource::Os
    }

    fn backend(&self) -> BackendChoice {
        self.args.backend
    }

    fn run_party<B: Backend, T: Transport>(&self, p: &mut Party<B, T>) -> Result<()> {
        let a = &self.args;
        let owner = p.id() == OWNER;
        let owned = if owner {
            let mut test = load_data(a.dataset, &a.data, Split::Test)?;
            if let Some(n) = a.limit {
                test = test.take(n);
            }
            if test.shape != self.spec.input {
                bail!("{} expects {:?} images, the data has {:?}", self.spec.name, self.spec.input, test.shape);
            }
            let params = fold_batchnorm(&self.spec, &load_safetensors(&a.weights, &self.spec)?)?;
            Some((test, params))
        } else {
            None
        };
        let count = owned.as_ref().map(|(t, _)| [t.len()]);
        let n = open_counts(p, count.as_ref().map(|c| &c[..]), &["images"])?[0];
        let model = share_model(p, &self.spec, owned.as_ref().map(|(_, w)| w))?;
        let [c, h, w] = self.spec.input;
        let start = Instant::now();
        let mut preds = owner.then(|| Vec::with_capacity(n));
        for idx in &sequential_batches(n, a.batch) {
            let x = owned.as_ref().map(|(t, _)| t.batch(idx).0);
            let logits = private_logits(p, &model, x.as_ref(), &[idx.len(), c, h, w], OWNER)?;
            if let (Some(p), Some(l)) = (preds.as_mut(), logits) {
                p.extend(l.argmax_rows());
            }
        }
        let seconds = start.elapsed().as_secs_f64();
        let mut report = serde_json::json!({
            "op": "infer",
            "party": p.id(),
            "model": self.spec.name,
            "backend": p.backend().name(),
            "keys": key_label(KeySource::Os),
            "received": if owner { vec!["image count (public)", "predictions"] } else { vec!["image count (public)"] },
            "images": n,
            "seconds_per_image": seconds / n.max(1) as f64,
            "bytes_sent": p.counters().bytes_sent,
            "rounds": p.counters().rounds,
        });
        println!("party {}: private inference of {} on {n} images", p.id(), self.spec.name);
        if let (Some((test, params)), Some(preds)) = (&owned, &preds) {
            let twin = Model::new(self.spec.clone(), params.clone(), &PlainEngine)?;
            let mut rec = RangeRecorder::new(FixedPoint::default());
            let plain = plain_predict(&twin, test, a.batch, &mut rec)?;
            warn_ranges(rec.report());
            report["ranges"] = serde_json::to_value(rec.report())?;
            let (acc, plain_acc, agree) = score(test, preds, &plain);
            report["accuracy"] = acc.into();
            report["plaintext_accuracy"] = plain_acc.into();
            report["agreement"] = agree.into();
            println!("  accuracy {:.2}%, agreement with the plaintext model {:.2}%", 100.0 * acc, 100.0 * agree);
        } else {
            println!("  received only the public image count; the predictions went to party {OWNER} alone");
        }
        if a.json {
            println!("{report}");
        }
        Ok(())
    }
}
