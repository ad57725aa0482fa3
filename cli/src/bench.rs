//! `cryptgpu bench`: the paper's measurements, one command each, with JSON results and plots.
//!
//! - `conv`: Fig. 1 of CryptGPU, private convolution (three sweeps: image size, batch, channels);
//! - `relu`: Fig. 2, private ReLU from 50,000 to 32,000,000 elements;
//! - `train`: Table V, one private training iteration per model, split into linear, pooling, ReLU,
//!   softmax, the SGD update and the rest, with bytes and rounds per layer;
//! - `infer`: private inference of every zoo model at batch 1 and 64;
//! - `gemm`: ring GEMM paths of the GPU (or the CPU).
//!
//! Every point runs the full protocol between three in-process parties (threads sharing one
//! device): warm-up runs first, then timed repetitions, each started by a one-element opening that
//! lines the parties up and ended by a device fence ([`cryptgpu_sharing::timing`]). A
//! repetition's time is the slowest party's; the median, minimum and maximum over repetitions are
//! reported; `--net` shapes the links (`train` and `infer` take several link models, one
//! measurement each, with the lower bound from rounds and bytes). `--out DIR` writes
//! `DIR/<bench>.json` and SVG and PNG plots; `--json` prints the same JSON as the last line.

mod gemm;
mod micro;
mod nets;
mod paper;
mod plot;
mod report;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, Subcommand, ValueEnum};
use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_kernels_cuda::CudaBackend;

use cryptgpu::device::AnyBackend;

use crate::net::NetListArgs;

pub use report::Record;

/// Benchmarks.
#[derive(Subcommand, Debug)]
pub enum Bench {
    /// Ring GEMM over Z_2^64 (n x n x n): the GPU's f64-limb, int8-limb and SIMT paths, or the CPU.
    Gemm(gemm::GemmArgs),
    /// Fig. 1: private convolution against image size (1a), batch (1b) and channels (1c).
    Conv(CommonArgs),
    /// Fig. 2: private ReLU against the number of elements.
    Relu(CommonArgs),
    /// Table V: one private training iteration per model, time split by layer kind.
    Train(CommonArgs),
    /// Private inference of every zoo model at batch 1 and 64.
    Infer(CommonArgs),
    /// Draws the plots of a JSON record again (e.g. after editing or merging results).
    Plot(PlotArgs),
}

/// Arguments of `cryptgpu bench plot`.
#[derive(ClapArgs, Debug, Clone)]
pub struct PlotArgs {
    /// A record written by `--out` (`relu.json`, `conv.json`, `train.json`, `infer.json`).
    pub record: PathBuf,
    /// Folder for the plots (default: the record's folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `cryptgpu bench plot`: reads a record and draws its plots.
fn replot(args: &PlotArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.record).with_context(|| format!("reading {}", args.record.display()))?;
    let record: Record =
        serde_json::from_str(&text).with_context(|| format!("{} is not a bench record", args.record.display()))?;
    let dir = match (&args.out, args.record.parent()) {
        (Some(d), _) => d.clone(),
        (None, Some(p)) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for path in plot::render(&record, &dir)? {
        println!("wrote {}", path.display());
    }
    Ok(())
}

/// Where `conv`, `relu`, `train` and `infer` run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BenchBackend {
    /// Both when a GPU is usable, else the CPU (with a note).
    Auto,
    /// The CPU only.
    Cpu,
    /// The GPU only (an error when none is usable).
    Cuda,
    /// The CPU and the GPU, on the same points (an error when no GPU is usable).
    Both,
}

/// Options shared by `conv`, `relu`, `train` and `infer`.
#[derive(ClapArgs, Debug, Clone)]
pub struct CommonArgs {
    /// Devices to measure.
    #[arg(long, value_enum, default_value_t = BenchBackend::Auto)]
    pub backend: BenchBackend,
    /// Fewer and smaller points (minutes on a 2-core CPU); see the README for what each covers.
    #[arg(long)]
    pub quick: bool,
    /// Timed repetitions per point (default 5, or 3 with --quick).
    #[arg(long)]
    pub reps: Option<usize>,
    /// Untimed warm-up runs per point.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Time budget per point in seconds: after the warm-up, fewer repetitions are run when they
    /// would not fit, and the larger points of a sweep are skipped once a warm-up alone exceeds it.
    #[arg(long, value_name = "SECONDS")]
    pub point_budget: Option<f64>,
    /// Only these figures or configurations (comma-separated ids, e.g. `fig1a,fig1c` for conv or
    /// `lenet-mnist,alexnet-cifar10` for train and infer).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Replace the swept sizes of `conv` and `relu` (n, k or elements; comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub points: Option<Vec<usize>>,
    /// Replace the batch of every `train` and `infer` configuration.
    #[arg(long)]
    pub batch: Option<usize>,
    /// Write `<bench>.json` and the plots (SVG and PNG) into this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The links between the parties (one or more).
    #[command(flatten)]
    pub net: NetListArgs,
    /// Print the JSON record as the last line of standard output.
    #[arg(long)]
    pub json: bool,
}

impl CommonArgs {
    /// Repetitions after the defaults are applied.
    pub fn reps(&self) -> usize {
        self.reps.unwrap_or(if self.quick { 3 } else { 5 })
    }

    fn check(&self) -> Result<()> {
        if self.reps() == 0 {
            bail!("--reps must be positive");
        }
        if self.batch == Some(0) {
            bail!("--batch must be positive");
        }
        self.net.check()?;
        if let Some(b) = self.point_budget {
            if !(b.is_finite() && b > 0.0) {
                bail!("--point-budget must be a positive number of seconds");
            }
        }
        // Fail before measuring, not after, when the results cannot be written.
        if let Some(dir) = &self.out {
            std::fs::create_dir_all(dir).with_context(|| format!("--out: creating {}", dir.display()))?;
        }
        Ok(())
    }

    /// Whether the id passes `--only`.
    pub fn selected(&self, id: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == id)
    }

    /// Fails when an `--only` id names nothing among `known`.
    pub fn check_only(&self, known: &[String]) -> Result<()> {
        for o in &self.only {
            if !known.contains(o) {
                bail!("--only {o:?}: unknown id (known: {})", known.join(", "));
            }
        }
        Ok(())
    }
}

/// Opens the devices `choice` names, CPU first. `both` and `cuda` fail with a clear error when no
/// GPU is usable; `auto` then runs on the CPU only, with a note.
pub fn open_devices(choice: BenchBackend) -> Result<Vec<AnyBackend>> {
    let cuda =
        |why: &str| CudaBackend::new().with_context(|| format!("--backend {why}: the GPU backend is unavailable"));
    Ok(match choice {
        BenchBackend::Cpu => vec![AnyBackend::Cpu(CpuBackend)],
        BenchBackend::Cuda => vec![AnyBackend::Cuda(cuda("cuda")?)],
        BenchBackend::Both => {
            let gpu = cuda("both (use --backend cpu on a machine without a GPU)")?;
            vec![AnyBackend::Cpu(CpuBackend), AnyBackend::Cuda(gpu)]
        }
        BenchBackend::Auto => match CudaBackend::new() {
            Ok(gpu) => vec![AnyBackend::Cpu(CpuBackend), AnyBackend::Cuda(gpu)],
            Err(e) => {
                eprintln!("note: no usable GPU ({e}); measuring the CPU only");
                vec![AnyBackend::Cpu(CpuBackend)]
            }
        },
    })
}

/// Runs a benchmark.
pub fn run(b: &Bench) -> Result<()> {
    let (args, bench): (&CommonArgs, fn(&CommonArgs) -> Result<Record>) = match b {
        Bench::Gemm(args) => return gemm::gemm(args),
        Bench::Plot(args) => return replot(args),
        Bench::Conv(a) => (a, micro::conv),
        Bench::Relu(a) => (a, micro::relu),
        Bench::Train(a) => (a, nets::train),
        Bench::Infer(a) => (a, nets::infer),
    };
    args.check()?;
    let record = bench(args)?;
    finish(args, &record)
}

fn finish(args: &CommonArgs, record: &Record) -> Result<()> {
    record.print_summary();
    if let Some(dir) = &args.out {
        for path in record.write(dir)? {
            println!("wrote {}", path.display());
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(record)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::report::{Figure, LayerCost, NetRun, Point, Record, Series, Stats};
    use super::*;
    use cryptgpu_net::LinkModel;

    fn args() -> CommonArgs {
        CommonArgs {
            backend: BenchBackend::Cpu,
            quick: true,
            reps: None,
            warmup: 1,
            point_budget: None,
            only: Vec::new(),
            points: None,
            batch: None,
            out: None,
            net: NetListArgs { links: vec![LinkModel::NONE] },
            json: false,
        }
    }

    fn point(x: f64, t: f64) -> Point {
        Point {
            x,
            shape: format!("{x} elements"),
            seconds: Some(Stats::new(vec![t, t * 1.1, t * 0.95], vec![t * 2.0])),
            rounds: 9,
            bytes_sent_per_party: [56, 48, 40],
            lower_bound_seconds: 0.0,
            peak_rss_bytes: Some(1 << 30),
            note: None,
        }
    }

    fn net(backend: &str, id: &str, scale: f64) -> NetRun {
        let split: std::collections::BTreeMap<String, f64> =
            nets::KINDS.iter().zip([1.5, 0.3, 1.6, 0.05, 0.1, 0.01]).map(|(k, v)| (k.to_string(), v * scale)).collect();
        NetRun {
            id: id.into(),
            model: "lenet".into(),
            dataset: "mnist".into(),
            batch: 128,
            paper_batch: Some(128),
            backend: backend.into(),
            net: LinkModel::NONE,
            parameters: 431_080,
            seconds: Some(Stats::new(vec![3.6 * scale, 3.5 * scale, 3.7 * scale], vec![4.0 * scale])),
            party0_seconds: split.values().sum(),
            split_party0: split,
            input_seconds: 0.01,
            bytes_sent_per_party: [300_000_000, 280_000_000, 260_000_000],
            rounds: 220,
            lower_bound_seconds: 0.0,
            peak_rss_bytes: Some(1 << 30),
            bytes_by_kind: Default::default(),
            layers: vec![LayerCost {
                label: "0:features.0".into(),
                phase: "forward".into(),
                kind: "linear".into(),
                seconds_party0: 0.2 * scale,
                bytes_sent_per_party: [1, 2, 3],
                rounds: 3,
            }],
            note: None,
        }
    }

    /// A synthetic record of each kind, with a CPU and a GPU series, goes to JSON and back and
    /// is drawn as SVG and PNG.
    #[test]
    fn records_write_json_and_plots() {
        let dir = std::env::temp_dir().join(format!("cryptgpu-bench-test-{}", std::process::id()));
        let devices = [AnyBackend::Cpu(CpuBackend)];
        let mut relu = Record::new("relu", &args(), &devices);
        relu.settings.backends = vec!["cpu".into(), "cuda".into()];
        let xs = [5e4, 1e5, 1e6, 8e6];
        let mut fig = Figure {
            id: "fig2".into(),
            title: "Fig. 2: private ReLU".into(),
            x_label: "elements".into(),
            series: vec![
                Series { backend: "cpu".into(), points: xs.iter().map(|&x| point(x, x * 6e-7)).collect() },
                Series { backend: "cuda".into(), points: xs.iter().map(|&x| point(x, 2e-3 + x * 3e-8)).collect() },
            ],
            speedup: Vec::new(),
            paper: String::new(),
        };
        fig.compute_speedup();
        assert_eq!(fig.speedup.len(), 4);
        assert!(fig.speedup[3].gpu_over_cpu > 10.0);
        relu.figures.push(fig);
        let mut train = Record::new("train", &args(), &devices);
        train.settings.backends = vec!["cpu".into(), "cuda".into()];
        train.settings.net = vec![LinkModel::NONE, LinkModel::LAN];
        let lan = |mut n: NetRun| {
            n.net = LinkModel::LAN;
            n.lower_bound_seconds = 0.3;
            n
        };
        train.nets = vec![
            net("cpu", "lenet-mnist", 1.0),
            lan(net("cpu", "lenet-mnist", 1.2)),
            net("cuda", "lenet-mnist", 0.05),
            lan(net("cuda", "lenet-mnist", 0.1)),
        ];
        let mut infer = Record::new("infer", &args(), &devices);
        infer.nets = vec![net("cpu", "lenet-mnist", 0.01), net("cpu", "alexnet-cifar10", 0.1)];
        for (record, files) in [
            (&relu, vec!["relu.json", "fig2-relu.svg", "fig2-relu.png"]),
            (&train, vec!["train.json", "table5-train.svg", "table5-train.png"]),
            (&infer, vec!["infer.json", "infer.svg", "infer.png"]),
        ] {
            let written = record.write(&dir).unwrap();
            for f in files {
                let path = dir.join(f);
                assert!(written.contains(&path), "{f} not written");
                assert!(std::fs::metadata(&path).unwrap().len() > 1000, "{f} is too small");
            }
            let back: Record =
                serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{}.json", record.bench))).unwrap())
                    .unwrap();
            // Floats go through text (serde_json's default parser may differ in the last bit).
            assert_eq!(
                (&back.bench, &back.machine, &back.settings),
                (&record.bench, &record.machine, &record.settings)
            );
            assert_eq!(back.figures.len(), record.figures.len());
            assert_eq!(
                back.nets.iter().map(|n| &n.id).collect::<Vec<_>>(),
                record.nets.iter().map(|n| &n.id).collect::<Vec<_>>()
            );
            let med = |r: &Record| {
                r.figures
                    .iter()
                    .flat_map(|f| &f.series)
                    .flat_map(|s| &s.points)
                    .map(|p| p.seconds.as_ref().unwrap().median)
                    .sum::<f64>()
            };
            approx::assert_abs_diff_eq!(med(&back), med(record), epsilon = 1e-12);
        }
        assert_eq!(&std::fs::read(dir.join("fig2-relu.png")).unwrap()[1..4], b"PNG");
        let again = dir.join("again");
        replot(&PlotArgs { record: dir.join("train.json"), out: Some(again.clone()) }).unwrap();
        assert!(again.join("table5-train.svg").exists());
        let junk = dir.join("junk.json");
        std::fs::write(&junk, "{}").unwrap();
        let e = replot(&PlotArgs { record: junk, out: None }).unwrap_err();
        assert!(format!("{e:#}").contains("not a bench record"), "{e:#}");
        if std::env::var_os("CRYPTGPU_KEEP_TEST_PLOTS").is_none() {
            std::fs::remove_dir_all(&dir).ok();
        }
    }

    /// The whole path of a point (three parties, warm-up, repetitions, costs) on 1,000 elements.
    #[test]
    fn tiny_relu_point_measures_three_reps_and_exact_costs() {
        let micro::Measured { stats, bytes, rounds, lower_bound } =
            micro::tiny_relu_point(1000, 3, LinkModel::NONE).unwrap();
        assert_eq!(lower_bound, 0.0);
        assert_eq!(stats.samples.len(), 3);
        assert_eq!(stats.warmup.len(), 1);
        assert!(stats.min > 0.0 && stats.min <= stats.median && stats.median <= stats.max);
        assert_eq!(rounds, 9);
        for (i, b) in bytes.into_iter().enumerate() {
            let formula = cryptgpu_sharing::compare::relu_cost(cryptgpu_sharing::convert::MsbVariant::Lean, i, 1000).1;
            assert_eq!(b, formula, "party {i}");
        }
    }

    /// Over shaped links (20 ms, 0.01 Gbit/s) every repetition takes at least the lower bound
    /// computed from its counters, and not much more.
    #[test]
    fn a_shaped_relu_point_takes_its_lower_bound() {
        let net: LinkModel = "20,0.01".parse().unwrap();
        let plain = micro::tiny_relu_point(1000, 2, LinkModel::NONE).unwrap();
        let m = micro::tiny_relu_point(1000, 2, net).unwrap();
        assert_eq!((m.bytes, m.rounds), (plain.bytes, plain.rounds), "shaping changes no count");
        let expected = net.lower_bound(&[cryptgpu_net::Counters {
            rounds: 9,
            bytes_to_next: m.bytes.into_iter().max().unwrap(),
            ..Default::default()
        }]);
        assert!(m.lower_bound >= 0.18 && m.lower_bound <= expected.as_secs_f64(), "{}", m.lower_bound);
        assert!(m.stats.min >= m.lower_bound, "{} < {}", m.stats.min, m.lower_bound);
        let slack = (m.lower_bound + plain.stats.max + 0.05) * 1.3;
        assert!(m.stats.max < slack, "{} >= {slack}", m.stats.max);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let mut a = args();
        a.reps = Some(0);
        assert!(a.check().is_err());
        let mut a = args();
        a.point_budget = Some(-1.0);
        assert!(a.check().is_err());
        let mut a = args();
        a.only = vec!["fig9".into()];
        let e = a.check_only(&["fig2".into()]).unwrap_err().to_string();
        assert!(e.contains("fig9") && e.contains("fig2"), "{e}");
    }
}
