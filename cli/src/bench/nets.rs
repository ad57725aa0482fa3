//! `bench train` (the paper's Table V) and `bench infer`: whole networks, split by layer kind.
//!
//! Inputs are random images of the dataset's geometry with random labels: the protocols' time and
//! traffic do not depend on the values, so no dataset is needed (and Tiny ImageNet and ImageNet
//! are not shipped). Party 0 owns the model and the batch. Each configuration is measured once
//! per device and per link model of `--net`, over the shaped links, with the lower bound its
//! rounds and bytes give.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use anyhow::Result;
use cryptgpu::device::AnyBackend;
use cryptgpu_net::{Counters, LinkModel};
use cryptgpu_nn::engine::{layer_labels, Engine, Phase, Sgd};
use cryptgpu_nn::plain::PlainTensor;
use cryptgpu_nn::private::{PrivateEngine, Timing, Traffic};
use cryptgpu_nn::session::{reveal_to, share, share_model, share_trainable_model};
use cryptgpu_nn::spec::{LayerKind, ModelSpec};
use cryptgpu_nn::weights::{fold_batchnorm, init_params};
use cryptgpu_nn::zoo::{by_name, Dataset};
use cryptgpu_ring::Backend;
use cryptgpu_sharing::timing::{cost, peak_rss_bytes, repeat, slowest, Plan, Runs};
use cryptgpu_sharing::{run_local, RunConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::report::{lower_bound, LayerCost, NetRun, Record, Stats};
use super::{open_devices, paper, CommonArgs};

/// The layer kinds of the split, in report order.
pub const KINDS: [&str; 7] = ["linear", "batchnorm", "pooling", "relu", "softmax", "update", "other"];

/// One network configuration.
#[derive(Debug, Clone)]
struct NetConfig {
    model: &'static str,
    dataset: Dataset,
    dataset_name: &'static str,
    batch: usize,
    paper_batch: Option<usize>,
}

impl NetConfig {
    fn id(&self) -> String {
        format!("{}-{}", self.model, self.dataset_name)
    }
}

fn net(model: &'static str, dataset: Dataset, batch: usize, paper_batch: Option<usize>) -> NetConfig {
    let dataset_name = match dataset {
        Dataset::Mnist => "mnist",
        Dataset::Cifar10 => "cifar10",
        Dataset::TinyImageNet => "tiny",
        Dataset::ImageNet => "imagenet",
    };
    NetConfig { model, dataset, dataset_name, batch, paper_batch }
}

/// Table V's five configurations at the paper's batches, plus ResNet-18 (CIFAR-10, batch 32) with
/// batch-norm training, which the paper does not have; `quick`: LeNet and AlexNet (CIFAR-10) at
/// the paper's batch 128, VGG-16 (CIFAR-10) at batch 8 instead of 32.
fn train_configs(quick: bool) -> Vec<NetConfig> {
    use Dataset::*;
    if quick {
        return vec![
            net("lenet", Mnist, 128, Some(128)),
            net("alexnet", Cifar10, 128, Some(128)),
            net("vgg16", Cifar10, 8, Some(32)),
        ];
    }
    vec![
        net("lenet", Mnist, 128, Some(128)),
        net("alexnet", Cifar10, 128, Some(128)),
        net("vgg16", Cifar10, 32, Some(32)),
        net("alexnet", TinyImageNet, 128, Some(128)),
        net("vgg16", TinyImageNet, 8, Some(8)),
        net("resnet18", Cifar10, 32, None),
    ]
}

/// Every zoo model at batch 1 and 64; `quick`: LeNet (MNIST), AlexNet and VGG-16 (CIFAR-10).
fn infer_configs(quick: bool) -> Vec<NetConfig> {
    use Dataset::*;
    let models: Vec<(&'static str, Dataset)> = if quick {
        vec![("lenet", Mnist), ("alexnet", Cifar10), ("vgg16", Cifar10)]
    } else {
        vec![
            ("lenet", Mnist),
            ("alexnet", Cifar10),
            ("alexnet", TinyImageNet),
            ("alexnet", ImageNet),
            ("vgg16", Cifar10),
            ("vgg16", TinyImageNet),
            ("vgg16", ImageNet),
            ("resnet18", ImageNet),
            ("resnet34", ImageNet),
            ("resnet50", ImageNet),
            ("resnet101", ImageNet),
            ("resnet152", ImageNet),
        ]
    };
    let mut out = Vec::new();
    for (m, d) in models {
        for b in [1, 64] {
            out.push(net(m, d, b, (b == 1).then_some(1)));
        }
    }
    out
}

/// `cryptgpu bench train`.
pub fn train(args: &CommonArgs) -> Result<Record> {
    run_nets("train", args, train_configs(args.quick), paper::train(), true)
}

/// `cryptgpu bench infer`.
pub fn infer(args: &CommonArgs) -> Result<Record> {
    run_nets("infer", args, infer_configs(args.quick), paper::infer(), false)
}

fn run_nets(
    bench: &str,
    args: &CommonArgs,
    configs: Vec<NetConfig>,
    paper: serde_json::Value,
    train: bool,
) -> Result<Record> {
    let mut configs = configs;
    if let Some(b) = args.batch {
        for c in &mut configs {
            c.batch = b;
        }
        configs.dedup_by(|a, b| a.id() == b.id());
    }
    let mut ids: Vec<String> = configs.iter().map(NetConfig::id).collect();
    ids.dedup();
    args.check_only(&ids)?;
    let devices = open_devices(args.backend)?;
    let mut record = Record::new(bench, args, &devices);
    record.paper = paper;
    let plan = Plan { warmup: args.warmup, reps: args.reps(), budget: args.point_budget };
    for cfg in configs.iter().filter(|c| args.selected(&c.id())) {
        for device in &devices {
            for &net in &args.net.links {
                record.nets.push(run_config(device, cfg, &plan, train, net));
            }
        }
    }
    Ok(record)
}

/// Measures one configuration on one device over links of `net`; a failure is recorded in the
/// result's note.
fn run_config(device: &AnyBackend, cfg: &NetConfig, plan: &Plan, train: bool, net: LinkModel) -> NetRun {
    let mut run = NetRun {
        id: cfg.id(),
        model: cfg.model.into(),
        dataset: cfg.dataset_name.into(),
        batch: cfg.batch,
        paper_batch: cfg.paper_batch,
        backend: device.name().into(),
        net,
        parameters: 0,
        seconds: None,
        split_party0: BTreeMap::new(),
        party0_seconds: 0.0,
        input_seconds: 0.0,
        bytes_sent_per_party: [0; 3],
        rounds: 0,
        lower_bound_seconds: 0.0,
        peak_rss_bytes: None,
        bytes_by_kind: BTreeMap::new(),
        layers: Vec::new(),
        note: None,
    };
    let what = if train { "training iteration" } else { "inference" };
    eprintln!("{} {} batch {} net {net}: private {what}...", device.name(), run.id, run.batch);
    let started = Instant::now();
    let result = by_name(cfg.model, cfg.dataset).map_err(anyhow::Error::from).and_then(|spec| {
        run.parameters = spec.num_params();
        measure(device, &spec, cfg.batch, train, plan, net, &mut run)
    });
    run.peak_rss_bytes = peak_rss_bytes();
    match result {
        Ok(()) => {
            if let Some(s) = &run.seconds {
                eprintln!(
                    "  median {:.3} s (min {:.3}, max {:.3}, {} reps; lower bound {:.3} s; {:.0} s in all)",
                    s.median,
                    s.min,
                    s.max,
                    s.samples.len(),
                    run.lower_bound_seconds,
                    started.elapsed().as_secs_f64()
                );
            }
        }
        Err(e) => {
            eprintln!("  failed: {e:#}");
            run.note = Some(format!("failed: {e:#}"));
        }
    }
    run
}

/// The report kind and execution position of each step label: the model's layers (from
/// [`layer_labels`], so labels inside residual blocks are told apart) and the engine's extra
/// steps (loss, update, input, reveal).
struct Steps(HashMap<String, (usize, &'static str)>);

impl Steps {
    fn new(spec: &ModelSpec) -> Self {
        let map = layer_labels(spec)
            .into_iter()
            .enumerate()
            .map(|(i, (l, k))| (l, (i, if k == LayerKind::Reshape { "other" } else { k.name() })))
            .collect();
        Steps(map)
    }

    /// The kind a step's time and bytes count under.
    fn kind(&self, label: &str) -> &'static str {
        match label {
            "softmax-cross-entropy" => "softmax",
            "sgd" => "update",
            _ => self.0.get(label).map_or("other", |&(_, k)| k),
        }
    }

    /// Order of execution: forward by layer, loss, backward in reverse, update.
    fn order(&self, label: &str, phase: Phase) -> (u8, i64) {
        let idx = self.0.get(label).map_or(-1, |&(i, _)| i as i64);
        match phase {
            Phase::Forward => (0, idx),
            Phase::Loss => (1, 0),
            Phase::Backward => (2, -idx),
            Phase::Update => (3, 0),
        }
    }
}

type StepCosts = (Timing, Traffic);

/// Runs the configuration with three in-process parties and fills `run`.
fn measure<B: Backend>(
    be: &B,
    spec: &ModelSpec,
    batch: usize,
    train: bool,
    plan: &Plan,
    net: LinkModel,
    run: &mut NetRun,
) -> Result<()> {
    spec.check(batch)?;
    // Training keeps batch norms whole (batch statistics); inference folds them.
    let params = if train { init_params(spec, 1) } else { fold_batchnorm(spec, &init_params(spec, 1))? };
    let steps = Steps::new(spec);
    let [c, h, w] = spec.input;
    let shape = [batch, c, h, w];
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let x = PlainTensor::new(&shape, (0..batch * c * h * w).map(|_| rng.gen_range(-1.0..1.0)).collect())?;
    let mut onehot = vec![0.0; batch * spec.classes];
    for row in onehot.chunks_mut(spec.classes) {
        row[rng.gen_range(0..spec.classes)] = 1.0;
    }
    let y = PlainTensor::new(&[batch, spec.classes], onehot)?;
    let opt = Sgd { lr: 0.01, momentum: 0.9, weight_decay: 0.0 };
    let out = run_local(be.clone(), RunConfig { net, ..RunConfig::default() }, |party| {
        let owner = party.id() == 0;
        let mut model = if train {
            share_trainable_model(party, spec, 0, owner.then_some(&params))?
        } else {
            share_model(party, spec, 0, owner.then_some(&params))?
        };
        let start = Instant::now();
        let sx = share(party, 0, owner.then_some(&x), &shape)?;
        let sy = if train { Some(share(party, 0, owner.then_some(&y), &[batch, spec.classes])?) } else { None };
        party.backend().synchronize()?;
        let input_seconds = start.elapsed().as_secs_f64();
        let runs = repeat(party, plan, |party| -> cryptgpu_nn::Result<StepCosts> {
            let mut eng = PrivateEngine::new(party);
            match &sy {
                Some(sy) => {
                    model.train_step(&mut eng, &sx, sy, &opt)?;
                }
                None => {
                    let (logits, _) = model.forward(&mut eng, &sx, false)?;
                    reveal_to(eng.party, &logits, 0)?;
                    eng.step_done("reveal", Phase::Forward);
                }
            }
            Ok((std::mem::take(&mut eng.timing), std::mem::take(&mut eng.traffic)))
        })?;
        Ok::<_, cryptgpu_nn::NnError>((input_seconds, runs))
    })?;
    let runs: [&Runs<StepCosts>; 3] = [&out[0].value.1, &out[1].value.1, &out[2].value.1];
    let (samples, warmup) = slowest(runs);
    (run.bytes_sent_per_party, run.rounds) = cost(runs);
    run.lower_bound_seconds = lower_bound(net, runs);
    run.input_seconds = out[0].value.0;
    // The repetition whose (slowest-party) time is the median gives the split.
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.sort_by(|&a, &b| samples[a].total_cmp(&samples[b]));
    let Some(&mid) = order.get(order.len() / 2) else {
        anyhow::bail!("no timed repetition");
    };
    let p0 = &runs[0].samples[mid];
    run.party0_seconds = p0.seconds;
    let (timing, _) = &p0.value;
    let traffic = |i: usize, key: &(String, Phase)| -> Counters {
        runs[i].samples[mid].value.1.get(key).copied().unwrap_or_default()
    };
    let mut keys: Vec<&(String, Phase)> = timing.keys().collect();
    keys.sort_by_key(|(l, p)| steps.order(l, *p));
    run.split_party0 = KINDS.iter().map(|k| (k.to_string(), 0.0)).collect();
    for key in keys {
        let (label, phase) = key;
        let k = steps.kind(label);
        let secs = timing[key].as_secs_f64();
        let bytes = [0, 1, 2].map(|i| traffic(i, key).bytes_sent);
        *run.split_party0.entry(k.into()).or_default() += secs;
        let b = run.bytes_by_kind.entry(k.into()).or_insert([0; 3]);
        for i in 0..3 {
            b[i] += bytes[i];
        }
        run.layers.push(LayerCost {
            label: label.clone(),
            phase: format!("{phase:?}").to_lowercase(),
            kind: k.into(),
            seconds_party0: secs,
            bytes_sent_per_party: bytes,
            rounds: traffic(0, key).rounds,
        });
    }
    // What the engine did not attribute (engine setup, the final fence) goes to "other", so the
    // kinds add up to party 0's time.
    let attributed: f64 = run.split_party0.values().sum();
    *run.split_party0.entry("other".into()).or_default() += (p0.seconds - attributed).max(0.0);
    run.seconds = Some(Stats::new(samples, warmup));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_kinds_and_order() {
        let lenet = Steps::new(&by_name("lenet", Dataset::Mnist).unwrap());
        assert_eq!(lenet.kind("0:features.0"), "linear");
        assert_eq!(lenet.kind("9:classifier.2"), "linear");
        assert_eq!(lenet.kind("1:relu"), "relu");
        assert_eq!(lenet.kind("2:avgpool"), "pooling");
        assert_eq!(lenet.kind("6:flatten"), "other");
        assert_eq!(lenet.kind("softmax-cross-entropy"), "softmax");
        assert_eq!(lenet.kind("sgd"), "update");
        assert_eq!(lenet.kind("reveal"), "other");
        assert!(lenet.order("1:relu", Phase::Forward) < lenet.order("2:avgpool", Phase::Forward));
        assert!(lenet.order("2:avgpool", Phase::Backward) < lenet.order("1:relu", Phase::Backward));
        let r18 = Steps::new(&by_name("resnet18", Dataset::Cifar10).unwrap());
        assert_eq!(r18.kind("3.b1:layer1.0.bn1"), "batchnorm");
        assert_eq!(r18.kind("3.b2:relu"), "relu");
        assert!(r18.order("3.b2:relu", Phase::Forward) < r18.order("5.b2:relu", Phase::Forward));
    }

    #[test]
    fn configs_have_unique_ids_per_batch() {
        for quick in [false, true] {
            let c = train_configs(quick);
            assert!(c.iter().all(|n| by_name(n.model, n.dataset).is_ok()));
            let i = infer_configs(quick);
            assert!(i.iter().all(|n| by_name(n.model, n.dataset).is_ok()));
        }
    }
}
