//! Private training and inference jobs: `cryptgpu demo`, `cryptgpu train` and `cryptgpu infer`.
//!
//! The roles (`--model-owner`, `--data-owner`, `--output-to`; everything at party 0 by default)
//! say who secret-shares the model, who secret-shares the data and who receives the predictions;
//! trained weights go to the model owner. The loops themselves are `cryptgpu_nn::train`; this
//! module loads files, runs them in-process or as one party, and prints. The plaintext f64 twin
//! runs the same computation in the clear with the same initialisation and data order, so its
//! accuracy is the reference for the private one; over TCP only a party that holds both the model
//! and the data can run it.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use cryptgpu_net::{LinkModel, Transport};
use cryptgpu_nn::data::{load_cifar10, load_mnist, mnist_from_bytes, Images, Split};
use cryptgpu_nn::engine::Sgd;
use cryptgpu_nn::graph::Graph;
use cryptgpu_nn::onnx::{save_onnx, Lowering};
use cryptgpu_nn::ranges::{RangeRecorder, RangeReport};
use cryptgpu_nn::session::{open_counts, plain_model, share_model, Receivers, Roles};
use cryptgpu_nn::train::{
    check_input, infer_private, logits_plain, logits_private, per_layer, plain_head, predict_plain, score, train_plain,
    train_private, LayerTraffic, Outputs, PrivateTraining, Progress, Scores, Stage, TrainOutcome, TrainSettings,
};
use cryptgpu_nn::weights::{fold_graph_batchnorm, init_graph_params, read_input, save_safetensors, Params};
use cryptgpu_nn::zoo::Dataset;
use cryptgpu_ring::{Backend, FixedPoint};
use cryptgpu_sharing::{run_local, KeySource, Party, RunConfig};
use indicatif::{ProgressBar, ProgressStyle};

use crate::device::BackendChoice;
use crate::model::NamedModel;
use crate::net::NetArgs;
use crate::party::{digest, key_label, key_source, PartyJob};
use crate::prep::{NormalizeArgs, WeightsArgs};

/// Datasets with readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DataChoice {
    /// MNIST (IDX files).
    Mnist,
    /// CIFAR-10 (binary batches).
    Cifar10,
}

impl DataChoice {
    /// The geometry zoo models are built for.
    pub(crate) fn dataset(self) -> Dataset {
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
    #[command(flatten)]
    net: NetArgs,
    /// Print a JSON object as the last line of standard output.
    #[arg(long)]
    json: bool,
}

/// Who holds and receives what (`--model-owner`, `--data-owner`, `--output-to`).
#[derive(ClapArgs, Debug, Clone, Copy)]
pub struct RoleArgs {
    /// The party that holds the model (initial or given weights) and secret-shares it.
    #[arg(long, default_value_t = 0)]
    model_owner: usize,
    /// The party that holds the images and labels and secret-shares them.
    #[arg(long, default_value_t = 0)]
    data_owner: usize,
    /// The parties that receive the predictions (e.g. `1` or `0,1`); trained weights go to the
    /// model owner.
    #[arg(long, default_value = "0")]
    output_to: Receivers,
}

impl RoleArgs {
    /// The roles, checked.
    pub(crate) fn roles(&self) -> Result<Roles> {
        Ok(Roles::new(self.model_owner, self.data_owner, self.output_to)?)
    }
}

/// Arguments of `cryptgpu train`.
#[derive(ClapArgs, Debug, Clone)]
pub struct TrainArgs {
    /// Zoo model (lenet, alexnet, vgg16, resnet18 ..., with optional -maxpool), or an ONNX file
    /// (FILE.onnx, e.g. from `torch.onnx.export`) trained from its weights, batch norms included.
    #[arg(long, default_value = "lenet")]
    model: String,
    /// Dataset format.
    #[arg(long, value_enum, default_value_t = DataChoice::Mnist)]
    dataset: DataChoice,
    /// Folder with the dataset files (the shipped MNIST sample when omitted); read by the data
    /// owner only.
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
    /// Save the trained weights, opened to the model owner only (only it writes the file):
    /// safetensors with the model's parameter names, or with a `.onnx` name an ONNX file (opset
    /// 13) of the model and its weights.
    #[arg(long)]
    save: Option<PathBuf>,
    #[command(flatten)]
    normalize: NormalizeArgs,
    #[command(flatten)]
    roles: RoleArgs,
    /// INSECURE: derive the PRG keys from this public seed (reproducibility tests only; needs
    /// CRYPTGPU_ALLOW_INSECURE_KEYS=1 in the environment of every party).
    #[arg(long)]
    insecure_key_seed: Option<u64>,
    /// Device.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    #[command(flatten)]
    net: NetArgs,
    /// Print a JSON object as the last line of standard output.
    #[arg(long)]
    json: bool,
}

impl TrainArgs {
    fn settings(&self) -> TrainSettings {
        TrainSettings {
            epochs: self.epochs,
            batch: self.batch,
            opt: Sgd { lr: self.lr, momentum: self.momentum, weight_decay: self.weight_decay },
            seed: self.seed,
            eval_batch: 100,
        }
    }

    /// The training and test images, limited as asked, checked against the model.
    fn load(&self, model: &NamedModel) -> Result<(Images, Images)> {
        let mut train = self.normalize.apply(load_data(self.dataset, &self.data, Split::Train)?)?;
        let mut test = self.normalize.apply(load_data(self.dataset, &self.data, Split::Test)?)?;
        if let Some(n) = self.limit {
            train = train.take(n);
        }
        if let Some(n) = self.test_limit {
            test = test.take(n);
        }
        model.check_images(&train)?;
        model.check_images(&test)?;
        Ok((train, test))
    }
}

/// Arguments of `cryptgpu infer`.
#[derive(ClapArgs, Debug, Clone)]
pub struct InferArgs {
    /// Zoo model (lenet, alexnet, vgg16, resnet18 ..., with optional -maxpool), or an ONNX file
    /// (FILE.onnx, e.g. from `torch.onnx.export`) with its weights.
    #[arg(long)]
    model: String,
    /// Weights (safetensors with the model's parameter names; PyTorch state_dict names for the
    /// zoo); needed by the model owner only, and only for a zoo model (an ONNX file has its own).
    #[arg(long)]
    weights: Option<PathBuf>,
    /// Classify this tensor instead of a dataset: a safetensors file with a tensor named `input`
    /// (or a single tensor) of shape [N, ...the model's input]; read by the data owner only,
    /// taken as is (no normalisation). A `logits` tensor next to it is taken as reference
    /// outputs (e.g. PyTorch's) and compared. The other parties of a `cryptgpu party` run pass
    /// `--input` alone, without a file.
    #[arg(long, conflicts_with_all = ["data", "limit"], num_args = 0..=1, value_name = "FILE")]
    input: Option<Option<PathBuf>>,
    /// Write the opened logits (safetensors, tensor `logits`, f32) here; written by the first
    /// receiver of the outputs (`--output-to`). Needs `--input`.
    #[arg(long, requires = "input")]
    output: Option<PathBuf>,
    /// Apply the ONNX file's trailing Softmax or LogSoftmax privately before opening (with
    /// `--input`): the outputs are then probabilities or log-probabilities, not logits.
    #[arg(long, requires = "input")]
    apply_head: bool,
    #[command(flatten)]
    weights_match: WeightsArgs,
    /// Dataset format.
    #[arg(long, value_enum, default_value_t = DataChoice::Mnist)]
    dataset: DataChoice,
    /// Folder with the dataset files (the shipped MNIST sample when omitted); read by the data
    /// owner only.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Use only the first N test images.
    #[arg(long)]
    limit: Option<usize>,
    /// Images per private forward pass.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    #[command(flatten)]
    normalize: NormalizeArgs,
    #[command(flatten)]
    roles: RoleArgs,
    /// Device.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    #[command(flatten)]
    net: NetArgs,
    /// Print a JSON object as the last line of standard output.
    #[arg(long)]
    json: bool,
}

impl InferArgs {
    fn model(&self) -> Result<NamedModel> {
        NamedModel::resolve(&self.model, self.dataset.dataset(), Lowering::Inference)
    }

    fn images(&self, model: &NamedModel) -> Result<Images> {
        let mut test = self.normalize.apply(load_data(self.dataset, &self.data, Split::Test)?)?;
        if let Some(n) = self.limit {
            test = test.take(n);
        }
        model.check_images(&test)?;
        Ok(test)
    }

    /// What `--input` runs output: the logits, or with `--apply-head` the file's head of them.
    fn outputs(&self, model: &NamedModel) -> Result<Outputs> {
        let head = match (self.apply_head, model.head) {
            (false, _) => None,
            (true, Some(h)) => Some(h),
            (true, None) => bail!("--apply-head: {} has no trailing Softmax or LogSoftmax", model.name),
        };
        Ok(Outputs { batch: self.batch, head })
    }

    /// The model owner's parameters, batch norms folded.
    fn params(&self, model: &NamedModel) -> Result<Params> {
        Ok(fold_graph_batchnorm(&model.graph, &model.weights(self.weights.as_deref(), self.weights_match.how())?)?)
    }
}

/// Saves trained weights: an ONNX file of the model for a `.onnx` path, else safetensors.
fn save_weights(path: &std::path::Path, graph: &Graph, weights: &Params) -> Result<()> {
    if crate::model::is_onnx(&path.to_string_lossy()) {
        save_onnx(path, graph, weights)?;
    } else {
        save_safetensors(path, weights)?;
    }
    Ok(())
}

/// Progress bars for the training steps and the test images (hidden at parties that do not
/// print).
struct Bars {
    train: ProgressBar,
    test: ProgressBar,
}

impl Bars {
    fn new(visible: bool) -> Bars {
        let bar = |what: &str| {
            if !visible {
                return ProgressBar::hidden();
            }
            let pb = ProgressBar::new(0);
            pb.set_style(
                ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} {elapsed_precise} (eta {eta})")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            pb.set_message(what.to_string());
            pb
        };
        Bars { train: bar("train"), test: bar("infer") }
    }
}

impl Progress for Bars {
    fn advance(&mut self, stage: Stage, done: usize, total: usize) {
        let pb = match stage {
            Stage::Train => &self.train,
            Stage::Test => &self.test,
        };
        pb.set_length(total as u64);
        pb.set_position(done as u64);
        if done == total {
            pb.finish_and_clear();
        }
    }
}

/// What a training run measured.
#[derive(serde::Serialize)]
struct TrainReport {
    op: &'static str,
    model: String,
    backend: &'static str,
    roles: String,
    train_images: usize,
    test_images: usize,
    epochs: usize,
    batch: usize,
    steps: usize,
    seconds_per_step: f64,
    train_seconds: f64,
    /// Private and plaintext test accuracy (same initialisation and data order) and their agreement.
    #[serde(flatten)]
    scores: Scores,
    seconds_per_image: f64,
    bytes_sent_per_party: [u64; 3],
    rounds: u64,
    /// Where the PRG keys came from (`os`, or `insecure-seed:S`).
    keys: String,
    /// The links' model (`--net`).
    net: LinkModel,
    /// Training traffic per layer and phase (inputs, forward, backward, loss, update).
    per_layer: Vec<LayerTraffic>,
    /// Digest of the private test predictions (compares runs, e.g. over TCP).
    predictions_digest: String,
    /// The plaintext twin's largest values per layer against the fixed-point bounds.
    ranges: RangeReport,
}

/// What party `id` receives in a training run with `roles`.
fn train_received(roles: &Roles, id: usize, save: bool) -> Vec<&'static str> {
    let mut r = vec!["dataset sizes (public)"];
    if roles.output_to.contains(id) {
        r.push("test predictions");
    }
    if save && roles.weights_to.contains(id) {
        r.push("trained weights");
    }
    r
}

/// What party `id` receives in an inference run with `roles`.
fn infer_received(roles: &Roles, id: usize) -> Vec<&'static str> {
    let mut r = vec!["image count (public)"];
    if roles.output_to.contains(id) {
        r.push("predictions");
    }
    r
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

/// Prints a warning to standard error for every twin value within 4x of its fixed-point bound.
fn warn_ranges(ranges: &RangeReport) {
    for w in ranges.warnings() {
        eprintln!("warning: {w}");
    }
}

fn labels(images: &Images) -> Vec<usize> {
    images.labels_at(&(0..images.len()).collect::<Vec<_>>())
}

fn prediction_digest(preds: &[usize]) -> String {
    digest(&preds.iter().map(|&v| v as u64).collect::<Vec<_>>())
}

/// A training run in one process: the three parties on threads, with every role's inputs at hand.
struct InProcess {
    keys: KeySource,
    model: NamedModel,
    roles: Roles,
    settings: TrainSettings,
    save: Option<PathBuf>,
    backend: BackendChoice,
    net: LinkModel,
    json: bool,
}

impl InProcess {
    fn run(&self, train: &Images, test: &Images) -> Result<()> {
        let (graph, roles, s) = (&self.model.graph, self.roles, self.settings);
        s.check(graph)?;
        let params = self.model.file_params.clone().unwrap_or_else(|| init_graph_params(graph, s.seed));
        eprintln!(
            "{}: private training on {} images ({} epochs, batch {}), then private inference on {} test images ({})",
            self.model.name,
            train.len(),
            s.epochs,
            s.batch,
            test.len(),
            roles.label()
        );
        let (plain_preds, ranges) = train_plain(graph, &params, train, test, &s, FixedPoint::default())?;
        warn_ranges(&ranges);
        let device = self.backend.open()?;
        let backend_name = device.name();
        let config = RunConfig { keys: self.keys, net: self.net, ..RunConfig::default() };
        let receiver = roles.output_to.iter().next().expect("roles have a receiver");
        let out = run_local(device, config, |party| {
            let id = party.id();
            let job = PrivateTraining {
                graph,
                roles,
                settings: s,
                n_train: train.len(),
                n_test: test.len(),
                params: (id == roles.model_owner).then_some(&params),
                data: (id == roles.data_owner).then_some((train, test)),
                open_weights: self.save.is_some(),
            };
            let mut bars = Bars::new(id == receiver);
            train_private(party, &job, &mut bars)
        })?;
        let TrainOutcome { predictions, steps, train_seconds, infer_seconds, .. } = &out[receiver].value;
        let preds = predictions.as_ref().context("the receiver got no predictions")?;
        let report = TrainReport {
            op: "train",
            model: self.model.name.clone(),
            backend: backend_name,
            roles: roles.label(),
            train_images: train.len(),
            test_images: test.len(),
            epochs: s.epochs,
            batch: s.batch,
            steps: *steps,
            seconds_per_step: train_seconds / (*steps).max(1) as f64,
            train_seconds: *train_seconds,
            scores: score(&labels(test), preds, &plain_preds)?,
            seconds_per_image: infer_seconds / test.len().max(1) as f64,
            bytes_sent_per_party: std::array::from_fn(|i| out[i].counters.bytes_sent),
            rounds: out[0].counters.rounds,
            keys: key_label(self.keys),
            net: self.net,
            per_layer: per_layer([&out[0].value.traffic, &out[1].value.traffic, &out[2].value.traffic]),
            predictions_digest: prediction_digest(preds),
            ranges,
        };
        if let Some(path) = &self.save {
            let owner = roles.weights_to.iter().next().expect("roles have a receiver");
            let w = out[owner].value.weights.as_ref().context("the model owner got no weights")?;
            save_weights(path, graph, w)?;
            eprintln!("saved the trained weights (opened to party {owner}) to {}", path.display());
        }
        println!(
            "private training of {} on {} ({} steps of batch {}; {})",
            report.model, report.backend, report.steps, report.batch, report.roles
        );
        println!("  time per step         {:.3} s", report.seconds_per_step);
        println!(
            "  test accuracy         private {:.2}%, plaintext twin {:.2}%",
            100.0 * report.scores.accuracy,
            100.0 * report.scores.plaintext_accuracy
        );
        println!(
            "  prediction agreement  {:.2}% of {} test images",
            100.0 * report.scores.agreement,
            report.test_images
        );
        println!("  private inference     {:.4} s per image", report.seconds_per_image);
        println!("  bytes sent per party  {:?} over {} rounds", report.bytes_sent_per_party, report.rounds);
        print_layers(&report.per_layer);
        if self.json {
            println!("{}", serde_json::to_string(&report)?);
        }
        Ok(())
    }
}

/// `cryptgpu demo`: private LeNet training on the shipped MNIST sample, then private inference.
pub fn demo(args: &DemoArgs) -> Result<()> {
    let train = embedded_mnist(Split::Train)?;
    let test = embedded_mnist(Split::Test)?;
    let run = InProcess {
        keys: KeySource::Os,
        model: NamedModel::resolve("lenet", Dataset::Mnist, Lowering::Training)?,
        roles: Roles::default(),
        settings: TrainSettings { epochs: args.epochs, batch: 64, ..TrainSettings::default() },
        save: None,
        backend: args.backend,
        net: args.net.link,
        json: args.json,
    };
    run.run(&train, &test)
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
    let model = NamedModel::resolve(&args.model, args.dataset.dataset(), Lowering::Training)?;
    let roles = args.roles.roles()?;
    let settings = args.settings();
    settings.check(&model.graph)?;
    let (train, test) = args.load(&model)?;
    let run = InProcess {
        keys: key_source(args.insecure_key_seed)?,
        model,
        roles,
        settings,
        save: args.save.clone(),
        backend: args.backend,
        net: args.net.link,
        json: args.json,
    };
    run.run(&train, &test)
}

/// What an inference run measured.
#[derive(serde::Serialize)]
struct InferReport {
    op: &'static str,
    model: String,
    backend: &'static str,
    roles: String,
    images: usize,
    #[serde(flatten)]
    scores: Scores,
    seconds_per_image: f64,
    bytes_sent_per_party: [u64; 3],
    rounds: u64,
    /// Where the PRG keys came from (always `os`).
    keys: String,
    /// The links' model (`--net`).
    net: LinkModel,
    /// Inference traffic per layer.
    per_layer: Vec<LayerTraffic>,
    /// Digest of the private predictions.
    predictions_digest: String,
    /// The plaintext twin's largest values per layer against the fixed-point bounds.
    ranges: RangeReport,
}

/// `cryptgpu infer`: private inference with given weights, compared with the plaintext twin.
pub fn infer(args: &InferArgs) -> Result<()> {
    if args.batch == 0 {
        bail!("--batch must be positive");
    }
    let model = args.model()?;
    if let Some(note) = model.head_note() {
        eprintln!("{note}");
    }
    let roles = args.roles.roles()?;
    let params = args.params(&model)?;
    if let Some(input) = &args.input {
        return infer_tensor(args, &model, roles, params, input_file(input.as_deref())?);
    }
    let test = args.images(&model)?;
    let twin = plain_model(&model.graph, params.clone())?;
    let mut rec = RangeRecorder::new(FixedPoint::default());
    let plain_preds = predict_plain(&twin, &test, args.batch, &mut rec)?;
    warn_ranges(rec.report());
    let device = args.backend.open()?;
    let backend_name = device.name();
    let receiver = roles.output_to.iter().next().expect("roles have a receiver");
    let out = run_local(device, RunConfig { net: args.net.link, ..RunConfig::default() }, |party| {
        let id = party.id();
        let shared = share_model(party, &model.graph, roles.model_owner, (id == roles.model_owner).then_some(&params))?;
        let images = (id == roles.data_owner).then_some(&test);
        let mut bars = Bars::new(id == receiver);
        infer_private(party, &shared, &roles, images, test.len(), args.batch, &mut bars)
    })?;
    let preds = out[receiver].value.predictions.as_ref().context("the receiver got no predictions")?;
    let report = InferReport {
        op: "infer",
        model: model.name.clone(),
        backend: backend_name,
        roles: roles.label(),
        images: test.len(),
        scores: score(&labels(&test), preds, &plain_preds)?,
        seconds_per_image: out[receiver].value.seconds / test.len().max(1) as f64,
        bytes_sent_per_party: std::array::from_fn(|i| out[i].counters.bytes_sent),
        rounds: out[0].counters.rounds,
        keys: key_label(KeySource::Os),
        net: args.net.link,
        per_layer: per_layer([&out[0].value.traffic, &out[1].value.traffic, &out[2].value.traffic]),
        predictions_digest: prediction_digest(preds),
        ranges: rec.report().clone(),
    };
    println!(
        "private inference of {} on {} ({} images; {})",
        report.model, report.backend, report.images, report.roles
    );
    println!(
        "  accuracy   private {:.2}%, plaintext {:.2}%, agreement {:.2}%",
        100.0 * report.scores.accuracy,
        100.0 * report.scores.plaintext_accuracy,
        100.0 * report.scores.agreement
    );
    println!("  time       {:.4} s per image", report.seconds_per_image);
    print_layers(&report.per_layer);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// What an inference run on a given tensor measured.
#[derive(serde::Serialize)]
struct TensorReport {
    op: &'static str,
    model: String,
    backend: &'static str,
    roles: String,
    /// Shape of the classified tensor.
    input_shape: Vec<usize>,
    /// Shape of the opened outputs.
    logits_shape: Vec<usize>,
    /// The head applied privately before opening (`--apply-head`), if any.
    applied_head: Option<String>,
    /// Largest difference between the private logits and the plaintext twin's (f64).
    max_abs_error: f64,
    /// Largest difference between the private logits and the reference `logits` of the input
    /// file (e.g. PyTorch's), when it has them.
    reference_max_abs_error: Option<f64>,
    /// Fraction of rows whose private argmax equals the twin's.
    agreement: f64,
    seconds_per_input: f64,
    bytes_sent_per_party: [u64; 3],
    rounds: u64,
    keys: String,
    net: LinkModel,
    per_layer: Vec<LayerTraffic>,
    predictions_digest: String,
    ranges: RangeReport,
}

/// The file of `--input`: an error for `--input` given alone (which only the parties other than
/// the data owner may do).
fn input_file(input: Option<&std::path::Path>) -> Result<&std::path::Path> {
    input.context(
        "--input needs a file (FILE.safetensors) where the input is read: in one process, or at the data owner",
    )
}

/// `cryptgpu infer --input X.safetensors [--output Y.safetensors]`, in one process.
fn infer_tensor(
    args: &InferArgs,
    model: &NamedModel,
    roles: Roles,
    params: Params,
    input: &std::path::Path,
) -> Result<()> {
    let (x, reference) = read_input(input)?;
    check_input(&model.graph, &x)?;
    let outputs = args.outputs(model)?;
    let twin = plain_model(&model.graph, params.clone())?;
    let mut rec = RangeRecorder::new(FixedPoint::default());
    let plain = plain_head(outputs.head, logits_plain(&twin, &x, args.batch, &mut rec)?)?;
    warn_ranges(rec.report());
    let device = args.backend.open()?;
    let backend_name = device.name();
    let receiver = roles.output_to.iter().next().expect("roles have a receiver");
    let out = run_local(device, RunConfig { net: args.net.link, ..RunConfig::default() }, |party| {
        let id = party.id();
        let shared = share_model(party, &model.graph, roles.model_owner, (id == roles.model_owner).then_some(&params))?;
        let mine = (id == roles.data_owner).then_some(&x);
        let mut bars = Bars::new(id == receiver);
        logits_private(party, &shared, &roles, mine, &x.shape, outputs, &mut bars)
    })?;
    let logits = out[receiver].value.logits.as_ref().context("the receiver got no logits")?;
    let reference_max_abs_error = match &reference {
        Some(r) => Some(logits.max_abs_diff(r).context("the reference logits of the input file")?),
        None => None,
    };
    let preds = logits.argmax_rows();
    let report = TensorReport {
        op: "infer",
        model: model.name.clone(),
        backend: backend_name,
        roles: roles.label(),
        input_shape: x.shape.clone(),
        logits_shape: logits.shape.clone(),
        applied_head: outputs.head.map(|h| format!("{h:?}")),
        max_abs_error: logits.max_abs_diff(&plain)?,
        reference_max_abs_error,
        agreement: cryptgpu_nn::train::accuracy(&preds, &plain.argmax_rows()),
        seconds_per_input: out[receiver].value.seconds / x.shape[0] as f64,
        bytes_sent_per_party: std::array::from_fn(|i| out[i].counters.bytes_sent),
        rounds: out[0].counters.rounds,
        keys: key_label(KeySource::Os),
        net: args.net.link,
        per_layer: per_layer([&out[0].value.traffic, &out[1].value.traffic, &out[2].value.traffic]),
        predictions_digest: prediction_digest(&preds),
        ranges: rec.report().clone(),
    };
    if let Some(path) = &args.output {
        save_safetensors(path, &Params::from([("logits".to_string(), logits.clone())]))?;
        eprintln!("wrote the logits (opened to party {receiver}) to {}", path.display());
    }
    println!(
        "private inference of {} on {} ({} inputs of shape {:?}; {})",
        report.model,
        report.backend,
        x.shape[0],
        &x.shape[1..],
        report.roles
    );
    println!("  max abs error   {:.2e} against the plaintext model", report.max_abs_error);
    if let Some(e) = report.reference_max_abs_error {
        println!("                  {e:.2e} against the reference logits in {}", input.display());
    }
    println!("  argmax agrees   {:.2}% with the plaintext model", 100.0 * report.agreement);
    println!("  time            {:.4} s per input", report.seconds_per_input);
    print_layers(&report.per_layer);
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(())
}

/// `train` as one party of three processes (`cryptgpu party ... train ...`). The data owner alone
/// reads `--data` and opens the dataset sizes (public); the model owner initialises the model;
/// the test predictions go to `--output-to` and the saved weights to the model owner alone. A
/// receiver that also holds the labels reports the accuracy; one that holds the model and the data
/// also trains the plaintext twin. Everyone reports costs and what it received.
pub struct TrainJob {
    args: TrainArgs,
    model: NamedModel,
    roles: Roles,
    keys: KeySource,
}

impl TrainJob {
    /// Checks the arguments.
    pub fn prepare(args: &TrainArgs) -> Result<TrainJob> {
        let model = NamedModel::resolve(&args.model, args.dataset.dataset(), Lowering::Training)?;
        args.settings().check(&model.graph)?;
        let roles = args.roles.roles()?;
        Ok(TrainJob { args: args.clone(), model, roles, keys: key_source(args.insecure_key_seed)? })
    }
}

impl PartyJob for TrainJob {
    fn name(&self) -> &'static str {
        "train"
    }

    fn public_params(&self) -> String {
        let a = &self.args;
        format!(
            "train model={} dataset={:?} epochs={} batch={} lr={} momentum={} wd={} limit={:?} test_limit={:?} seed={} save={} normalize={} {}",
            self.model.architecture(), a.dataset, a.epochs, a.batch, a.lr, a.momentum, a.weight_decay, a.limit, a.test_limit, a.seed,
            a.save.is_some(), a.normalize.how(), self.roles.label()
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

    fn net(&self) -> LinkModel {
        self.args.net.link
    }

    fn run_party<B: Backend, T: Transport>(&self, p: &mut Party<B, T>) -> Result<()> {
        let (a, roles, id) = (&self.args, self.roles, p.id());
        let settings = a.settings();
        let data = if id == roles.data_owner { Some(a.load(&self.model)?) } else { None };
        let sizes = data.as_ref().map(|(tr, te)| [tr.len(), te.len()]);
        let sizes =
            open_counts(p, roles.data_owner, sizes.as_ref().map(|s| &s[..]), &["training images", "test images"])?;
        let graph = &self.model.graph;
        let params = (id == roles.model_owner)
            .then(|| self.model.file_params.clone().unwrap_or_else(|| init_graph_params(graph, a.seed)));
        let job = PrivateTraining {
            graph,
            roles,
            settings,
            n_train: sizes[0],
            n_test: sizes[1],
            params: params.as_ref(),
            data: data.as_ref().map(|(tr, te)| (tr, te)),
            open_weights: a.save.is_some(),
        };
        let mut bars = Bars::new(roles.output_to.contains(id));
        let out = train_private(p, &job, &mut bars)?;
        let mut report = serde_json::json!({
            "op": "train",
            "party": id,
            "model": self.model.name,
            "backend": p.backend().name(),
            "keys": key_label(self.keys),
            "net": self.net(),
            "roles": roles.label(),
            "received": train_received(&roles, id, job.open_weights),
            "train_images": job.n_train,
            "test_images": job.n_test,
            "steps": out.steps,
            "seconds_per_step": out.train_seconds / out.steps.max(1) as f64,
            "seconds_per_image": out.infer_seconds / job.n_test.max(1) as f64,
            "bytes_sent": p.counters().bytes_sent,
            "rounds": p.counters().rounds,
        });
        println!("party {id}: private training of {} ({} steps; {})", self.model.name, out.steps, roles.label());
        if let (Some(path), Some(w)) = (&a.save, &out.weights) {
            save_weights(path, graph, w)?;
            eprintln!("saved the trained weights to {}", path.display());
        }
        match (&out.predictions, &data, &params) {
            (Some(preds), Some((train, test)), Some(params)) => {
                let (plain, ranges) = train_plain(graph, params, train, test, &settings, FixedPoint::default())?;
                warn_ranges(&ranges);
                report["ranges"] = serde_json::to_value(&ranges)?;
                let s = score(&labels(test), preds, &plain)?;
                report["accuracy"] = s.accuracy.into();
                report["plaintext_accuracy"] = s.plaintext_accuracy.into();
                report["agreement"] = s.agreement.into();
                report["predictions_digest"] = prediction_digest(preds).into();
                println!(
                    "  test accuracy  private {:.2}%, plaintext twin {:.2}%",
                    100.0 * s.accuracy,
                    100.0 * s.plaintext_accuracy
                );
            }
            (Some(preds), Some((_, test)), None) => {
                let acc = cryptgpu_nn::train::accuracy(preds, &labels(test));
                report["accuracy"] = acc.into();
                report["predictions_digest"] = prediction_digest(preds).into();
                println!(
                    "  test accuracy  private {:.2}% (no plaintext twin: the model is at party {})",
                    100.0 * acc,
                    roles.model_owner
                );
            }
            (Some(preds), None, _) => {
                report["predictions_digest"] = prediction_digest(preds).into();
                println!("  received {} test predictions (the labels are at party {})", preds.len(), roles.data_owner);
            }
            (None, _, _) => println!(
                "  received only the public dataset sizes ({} training, {} test images); the predictions went to \
                 party {}",
                job.n_train, job.n_test, roles.output_to
            ),
        }
        if a.json {
            println!("{report}");
        }
        Ok(())
    }
}

/// `infer` as one party of three processes (`cryptgpu party ... infer ...`): the model owner alone
/// reads `--weights`, the data owner alone reads `--data` and opens the (public) image count, and
/// the predictions go to `--output-to` alone. A receiver that holds the labels reports the
/// accuracy (and, holding the model too, the plaintext twin's); the others report costs only.
pub struct InferJob {
    args: InferArgs,
    model: NamedModel,
    roles: Roles,
}

impl InferJob {
    /// Checks the arguments.
    pub fn prepare(args: &InferArgs) -> Result<InferJob> {
        if args.batch == 0 {
            bail!("--batch must be positive");
        }
        let roles = args.roles.roles()?;
        Ok(InferJob { args: args.clone(), model: args.model()?, roles })
    }
}

impl PartyJob for InferJob {
    fn name(&self) -> &'static str {
        "infer"
    }

    fn public_params(&self) -> String {
        let a = &self.args;
        format!(
            "infer model={} dataset={:?} limit={:?} input={} batch={} normalize={} {}",
            self.model.architecture(),
            a.dataset,
            a.limit,
            a.input.is_some(),
            a.batch,
            a.normalize.how(),
            self.roles.label()
        )
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

    fn net(&self) -> LinkModel {
        self.args.net.link
    }

    fn run_party<B: Backend, T: Transport>(&self, p: &mut Party<B, T>) -> Result<()> {
        let (a, roles, id) = (&self.args, self.roles, p.id());
        let params = if id == roles.model_owner { Some(a.params(&self.model)?) } else { None };
        if let Some(input) = &a.input {
            return self.run_tensor(p, params.as_ref(), input.as_deref());
        }
        let images = if id == roles.data_owner { Some(a.images(&self.model)?) } else { None };
        let count = images.as_ref().map(|t| [t.len()]);
        let n = open_counts(p, roles.data_owner, count.as_ref().map(|c| &c[..]), &["images"])?[0];
        let model = share_model(p, &self.model.graph, roles.model_owner, params.as_ref())?;
        let mut bars = Bars::new(roles.output_to.contains(id));
        let out = infer_private(p, &model, &roles, images.as_ref(), n, a.batch, &mut bars)?;
        let mut report = serde_json::json!({
            "op": "infer",
            "party": id,
            "model": self.model.name,
            "backend": p.backend().name(),
            "keys": key_label(KeySource::Os),
            "net": self.net(),
            "roles": roles.label(),
            "received": infer_received(&roles, id),
            "images": n,
            "seconds_per_image": out.seconds / n.max(1) as f64,
            "bytes_sent": p.counters().bytes_sent,
            "rounds": p.counters().rounds,
        });
        println!("party {id}: private inference of {} on {n} images ({})", self.model.name, roles.label());
        match (&out.predictions, &images) {
            (Some(preds), Some(test)) => {
                report["predictions_digest"] = prediction_digest(preds).into();
                let acc = cryptgpu_nn::train::accuracy(preds, &labels(test));
                report["accuracy"] = acc.into();
                if let Some(params) = &params {
                    let twin = plain_model(&self.model.graph, params.clone())?;
                    let mut rec = RangeRecorder::new(FixedPoint::default());
                    let plain = predict_plain(&twin, test, a.batch, &mut rec)?;
                    warn_ranges(rec.report());
                    report["ranges"] = serde_json::to_value(rec.report())?;
                    let s = score(&labels(test), preds, &plain)?;
                    report["plaintext_accuracy"] = s.plaintext_accuracy.into();
                    report["agreement"] = s.agreement.into();
                    println!(
                        "  accuracy {:.2}%, agreement with the plaintext model {:.2}%",
                        100.0 * acc,
                        100.0 * s.agreement
                    );
                } else {
                    println!("  accuracy {:.2}% (the model stayed at party {})", 100.0 * acc, roles.model_owner);
                }
            }
            (Some(preds), None) => {
                report["predictions_digest"] = prediction_digest(preds).into();
                println!("  received {} predictions (the labels are at party {})", preds.len(), roles.data_owner);
            }
            (None, _) => {
                println!("  received only the public image count; the predictions went to party {}", roles.output_to)
            }
        }
        if a.json {
            println!("{report}");
        }
        Ok(())
    }
}

impl InferJob {
    /// `infer --input` as one party: the data owner reads the tensor and opens its (public) row
    /// count; the logits go to `--output-to`, the first receiver writes `--output`. A receiver that
    /// holds the model compares with the plaintext twin; one that holds the input file too, with its
    /// reference logits.
    fn run_tensor<B: Backend, T: Transport>(
        &self,
        p: &mut Party<B, T>,
        params: Option<&Params>,
        input: Option<&std::path::Path>,
    ) -> Result<()> {
        let (a, roles, id) = (&self.args, self.roles, p.id());
        let file = if id == roles.data_owner {
            let (x, reference) = read_input(input_file(input)?)?;
            check_input(&self.model.graph, &x)?;
            Some((x, reference))
        } else {
            None
        };
        let count = file.as_ref().map(|(x, _)| [x.shape[0]]);
        let n = open_counts(p, roles.data_owner, count.as_ref().map(|c| &c[..]), &["input rows"])?[0];
        let shape: Vec<usize> = std::iter::once(n).chain(self.model.graph.input_shape.iter().copied()).collect();
        let outputs = a.outputs(&self.model)?;
        let model = share_model(p, &self.model.graph, roles.model_owner, params)?;
        let mut bars = Bars::new(roles.output_to.contains(id));
        let out = logits_private(p, &model, &roles, file.as_ref().map(|f| &f.0), &shape, outputs, &mut bars)?;
        let mut report = serde_json::json!({
            "op": "infer",
            "party": id,
            "model": self.model.name,
            "backend": p.backend().name(),
            "keys": key_label(KeySource::Os),
            "net": self.net(),
            "roles": roles.label(),
            "input_shape": shape,
            "seconds_per_input": out.seconds / n as f64,
            "bytes_sent": p.counters().bytes_sent,
            "rounds": p.counters().rounds,
        });
        println!("party {id}: private inference of {} on {n} inputs ({})", self.model.name, roles.label());
        let Some(logits) = &out.logits else {
            println!("  received only the public row count; the logits went to party {}", roles.output_to);
            if a.json {
                println!("{report}");
            }
            return Ok(());
        };
        report["logits_shape"] = serde_json::to_value(&logits.shape)?;
        report["predictions_digest"] = prediction_digest(&logits.argmax_rows()).into();
        if let (Some(params), Some((x, _))) = (params, &file) {
            let twin = plain_model(&self.model.graph, params.clone())?;
            let mut rec = RangeRecorder::new(FixedPoint::default());
            let plain = plain_head(outputs.head, logits_plain(&twin, x, a.batch, &mut rec)?)?;
            report["max_abs_error"] = logits.max_abs_diff(&plain)?.into();
            println!("  max abs error {:.2e} against the plaintext model", logits.max_abs_diff(&plain)?);
        }
        if let Some((_, Some(r))) = &file {
            let e = logits.max_abs_diff(r).context("the reference logits of the input file")?;
            report["reference_max_abs_error"] = e.into();
            println!("  max abs error {e:.2e} against the reference logits");
        }
        if let (Some(path), Some(first)) = (&a.output, roles.output_to.iter().next()) {
            if first == id {
                save_safetensors(path, &Params::from([("logits".to_string(), logits.clone())]))?;
                eprintln!("wrote the logits to {}", path.display());
            }
        }
        if a.json {
            println!("{report}");
        }
        Ok(())
    }
}
