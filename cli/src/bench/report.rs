//! The JSON record of a benchmark run (machine, build, settings, every figure) and its files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use cryptgpu::device::AnyBackend;
use cryptgpu_net::LinkModel;
use cryptgpu_ring::Backend;
use cryptgpu_sharing::timing::Runs;

use crate::device::gpu_info;

/// Version of the record's layout.
pub const SCHEMA: u32 = 1;

/// Where the figures were measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    /// CPU model name (`/proc/cpuinfo`).
    pub cpu_model: String,
    /// Logical CPUs listed in `/proc/cpuinfo`.
    pub cpu_logical_cores: usize,
    /// Threads the process may run at once (`available_parallelism`: cgroup and affinity limits).
    pub available_parallelism: usize,
    /// Physical memory (`/proc/meminfo`).
    pub memory_bytes: Option<u64>,
    /// Operating system, architecture and kernel.
    pub os: String,
    /// The GPU as the CUDA backend reports it (name, compute capability, memory, CUDA versions),
    /// when one was used.
    pub gpu: Option<serde_json::Value>,
    /// `/proc/loadavg` when the run started (the machine may be shared).
    pub load_average: Option<String>,
    /// The NVIDIA kernel driver's version line (`/proc/driver/nvidia/version`), when present.
    pub gpu_driver: Option<String>,
}

impl Machine {
    /// Facts about this machine and the opened devices.
    pub fn probe(devices: &[AnyBackend]) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let cpu_logical_cores = cpuinfo.lines().filter(|l| l.starts_with("processor")).count();
        let available_parallelism = std::thread::available_parallelism().map_or(1, |n| n.get());
        let memory_bytes = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kb| kb * 1024)
        });
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let os = format!("{} {} {}", std::env::consts::OS, std::env::consts::ARCH, kernel.trim()).trim().to_string();
        let gpu = devices.iter().find_map(gpu_info);
        let gpu_driver = gpu.as_ref().and_then(|_| {
            std::fs::read_to_string("/proc/driver/nvidia/version")
                .ok()
                .and_then(|v| v.lines().next().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")))
        });
        Machine {
            cpu_model,
            cpu_logical_cores: cpu_logical_cores.max(1),
            available_parallelism,
            memory_bytes,
            os,
            gpu,
            load_average: std::fs::read_to_string("/proc/loadavg").ok().map(|l| l.trim().to_string()),
            gpu_driver,
        }
    }
}

/// The least time one repetition of `runs` takes over links of `net`
/// ([`LinkModel::lower_bound`] of the three parties' counters of the first timed repetition).
pub fn lower_bound<R>(net: LinkModel, runs: [&Runs<R>; 3]) -> f64 {
    let counters = runs.map(|r| r.samples.first().map(|s| s.cost).unwrap_or_default());
    net.lower_bound(&counters).as_secs_f64()
}

/// Median and spread of the timed repetitions, in seconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Stats {
    /// Median repetition.
    pub median: f64,
    /// Fastest repetition.
    pub min: f64,
    /// Slowest repetition.
    pub max: f64,
    /// `(max - min) / median`.
    pub spread: f64,
    /// Every timed repetition, in order.
    pub samples: Vec<f64>,
    /// The untimed warm-up runs (they include one-off costs such as kernel compilation).
    pub warmup: Vec<f64>,
}

impl Stats {
    /// Statistics of `samples` (at least one).
    pub fn new(samples: Vec<f64>, warmup: Vec<f64>) -> Stats {
        let mut s = samples.clone();
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => s[n / 2],
            _ => 0.5 * (s[n / 2 - 1] + s[n / 2]),
        };
        let (min, max) = (s.first().copied().unwrap_or(f64::NAN), s.last().copied().unwrap_or(f64::NAN));
        let spread = if median > 0.0 { (max - min) / median } else { 0.0 };
        Stats { median, min, max, spread, samples, warmup }
    }
}

/// One measured point of a sweep.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Point {
    /// The swept quantity (image side n, batch k, or elements).
    pub x: f64,
    /// What was computed, e.g. `input [1, 3, 64, 64], weights [64, 3, 11, 11]`.
    pub shape: String,
    /// Time of the private protocol; `None` when the point was skipped or failed.
    pub seconds: Option<Stats>,
    /// Rounds of one run.
    pub rounds: u64,
    /// Bytes each party sent in one run.
    pub bytes_sent_per_party: [u64; 3],
    /// The least time one run takes over the links of `settings.net`: rounds times the latency
    /// plus the busiest link's bytes over the bandwidth (0 without shaping).
    #[serde(default)]
    pub lower_bound_seconds: f64,
    /// Peak resident memory of the process after this point
    /// ([`peak_rss_bytes`](cryptgpu_sharing::timing::peak_rss_bytes)): the three
    /// in-process parties together, and the maximum over this and every earlier point of the run
    /// (the peak cannot be reset). `None` where it cannot be read (outside Linux).
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    /// Why the point has no time (skipped over the budget, or the error).
    pub note: Option<String>,
}

/// One device's points of a figure.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Series {
    /// `cpu` or `cuda`.
    pub backend: String,
    /// The points in sweep order.
    pub points: Vec<Point>,
}

/// GPU over CPU at one x.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Speedup {
    /// The swept quantity.
    pub x: f64,
    /// CPU median / GPU median.
    pub gpu_over_cpu: f64,
}

/// One figure: a sweep on one or two devices.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Figure {
    /// Short id (`fig1a`, `fig2`, ...), also the plot's file name stem.
    pub id: String,
    /// Title, as on the plot.
    pub title: String,
    /// Meaning of x.
    pub x_label: String,
    /// One series per device.
    pub series: Vec<Series>,
    /// GPU/CPU speedups where both were measured.
    pub speedup: Vec<Speedup>,
    /// What the paper reports for this figure.
    pub paper: String,
}

impl Figure {
    /// Fills [`speedup`](Self::speedup) from the `cpu` and `cuda` series.
    pub fn compute_speedup(&mut self) {
        let find = |b: &str| self.series.iter().find(|s| s.backend == b);
        self.speedup = match (find("cpu"), find("cuda")) {
            (Some(c), Some(g)) => c
                .points
                .iter()
                .filter_map(|pc| {
                    let pg = g.points.iter().find(|p| p.x == pc.x)?;
                    let (tc, tg) = (pc.seconds.as_ref()?.median, pg.seconds.as_ref()?.median);
                    (tg > 0.0).then(|| Speedup { x: pc.x, gpu_over_cpu: tc / tg })
                })
                .collect(),
            _ => Vec::new(),
        };
    }
}

/// Cost of one layer and phase in one network run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerCost {
    /// Layer label, e.g. `3:features.3`, `4:relu`, `softmax-cross-entropy`, `sgd`.
    pub label: String,
    /// `forward`, `backward`, `loss` or `update`.
    pub phase: String,
    /// `linear`, `pooling`, `relu`, `softmax`, `update` or `other`.
    pub kind: String,
    /// Party 0's time in the median repetition.
    pub seconds_party0: f64,
    /// Bytes each party sent.
    pub bytes_sent_per_party: [u64; 3],
    /// Rounds.
    pub rounds: u64,
}

/// One network measured on one device (a training iteration or an inference).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct NetRun {
    /// `model-dataset`, e.g. `alexnet-cifar10`.
    pub id: String,
    /// Zoo model name.
    pub model: String,
    /// Dataset geometry.
    pub dataset: String,
    /// Batch measured.
    pub batch: usize,
    /// The paper's batch for this configuration (training), when different from ours it is said here.
    pub paper_batch: Option<usize>,
    /// `cpu` or `cuda`.
    pub backend: String,
    /// The links between the parties in this run, one of `settings.net` (`none` in records made
    /// before it existed). Each configuration has one entry per device and link model.
    #[serde(default)]
    pub net: LinkModel,
    /// Parameters of the model.
    pub parameters: usize,
    /// Time of one iteration or inference over the links of `net`, measured (slowest party per
    /// repetition); the data owner's input sharing is excluded (see `input_seconds`). `None` when
    /// skipped or failed.
    pub seconds: Option<Stats>,
    /// Party 0's time per layer kind in its median repetition: linear (conv, linear, batch norm),
    /// pooling, relu, softmax (the loss), update (SGD with momentum), other (flatten, opening the
    /// logits, engine setup); the kinds add up to `party0_seconds`.
    pub split_party0: BTreeMap<String, f64>,
    /// Party 0's time in that repetition.
    pub party0_seconds: f64,
    /// Time to secret-share the batch (inputs and labels), once, outside the timing.
    pub input_seconds: f64,
    /// Bytes each party sent in one iteration or inference.
    pub bytes_sent_per_party: [u64; 3],
    /// Rounds of one iteration or inference.
    pub rounds: u64,
    /// The least time one iteration or inference takes over the links of `net`, computed from the
    /// rounds and bytes (as for a [`Point`]; at most `seconds.min`).
    #[serde(default)]
    pub lower_bound_seconds: f64,
    /// Peak resident memory of the process after this run (as for a [`Point`]: all three parties,
    /// and every earlier run of the record).
    #[serde(default)]
    pub peak_rss_bytes: Option<u64>,
    /// Bytes and rounds per kind (sums of `layers`).
    pub bytes_by_kind: BTreeMap<String, [u64; 3]>,
    /// Per layer and phase.
    pub layers: Vec<LayerCost>,
    /// Why there is no time (skipped, or the error).
    pub note: Option<String>,
}

/// Settings of the run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    /// `--quick` was given.
    pub quick: bool,
    /// Untimed runs per point.
    pub warmup: usize,
    /// Timed repetitions per point (fewer where `point_budget_seconds` cut them).
    pub reps: usize,
    /// `--point-budget`.
    pub point_budget_seconds: Option<f64>,
    /// Devices measured.
    pub backends: Vec<String>,
    /// The links between the parties (`--net`, each measured in turn; one for `conv` and
    /// `relu`; `[none]` in records made before it existed, one object in those made before lists).
    #[serde(default = "unshaped", deserialize_with = "one_or_more")]
    pub net: Vec<LinkModel>,
    /// How a time is taken.
    pub timing: String,
}

/// `[none]`: the links of records made before `--net`.
fn unshaped() -> Vec<LinkModel> {
    vec![LinkModel::NONE]
}

/// `settings.net` as a list, or as the one link model of records made before lists.
fn one_or_more<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<LinkModel>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Links {
        One(LinkModel),
        More(Vec<LinkModel>),
    }
    Ok(match Links::deserialize(d)? {
        Links::One(l) => vec![l],
        Links::More(v) => v,
    })
}

/// Everything one `cryptgpu bench` run measured.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// `conv`, `relu`, `train` or `infer`.
    pub bench: String,
    /// Layout version ([`SCHEMA`]).
    pub schema: u32,
    /// Start of the run, UTC, ISO 8601.
    pub date_utc: String,
    /// Git commit of the build (`-dirty` with uncommitted changes; `unknown` without git).
    pub git_commit: String,
    /// Version of the `cryptgpu` binary.
    pub version: String,
    /// The machine.
    pub machine: Machine,
    /// The run's settings.
    pub settings: Settings,
    /// Sweeps (`conv`, `relu`).
    pub figures: Vec<Figure>,
    /// Networks (`train`, `infer`).
    pub nets: Vec<NetRun>,
    /// The paper's numbers for comparison (its hardware, not ours).
    pub paper: serde_json::Value,
}

/// How every time in a record is taken.
pub const TIMING: &str = "three in-process parties (threads) sharing one device; each repetition starts after a \
     one-element opening that lines the parties up and stops after a device fence; its time is the slowest party's; \
     median, min and max over the repetitions";

impl Record {
    /// An empty record for `bench`, stamped with the machine, build and date.
    pub fn new(bench: &str, args: &super::CommonArgs, devices: &[AnyBackend]) -> Record {
        Record {
            bench: bench.into(),
            schema: SCHEMA,
            date_utc: utc_now(),
            git_commit: env!("CRYPTGPU_GIT_COMMIT").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            machine: Machine::probe(devices),
            settings: Settings {
                quick: args.quick,
                warmup: args.warmup,
                reps: args.reps(),
                point_budget_seconds: args.point_budget,
                backends: devices.iter().map(|d| d.name().to_string()).collect(),
                net: args.net.links.clone(),
                timing: TIMING.into(),
            },
            figures: Vec::new(),
            nets: Vec::new(),
            paper: serde_json::Value::Null,
        }
    }

    /// Writes `DIR/<bench>.json` and the plots; returns the paths written. A plot that cannot be
    /// drawn is reported on stderr and skipped (the JSON is always written).
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = dir.join(format!("{}.json", self.bench));
        std::fs::write(&json, serde_json::to_string_pretty(self)? + "\n")
            .with_context(|| format!("writing {}", json.display()))?;
        let mut written = vec![json];
        // Plots are a convenience on top of the JSON: neither an error nor a panic inside the
        // plotting library may lose the measurements.
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| super::plot::render(self, dir))) {
            Ok(Ok(paths)) => written.extend(paths),
            Ok(Err(e)) => eprintln!("warning: plots not drawn: {e:#}"),
            Err(_) => eprintln!("warning: plots not drawn: the plotting library panicked (see above)"),
        }
        Ok(written)
    }

    /// Prints a table of the results.
    pub fn print_summary(&self) {
        println!(
            "{} on {} ({} logical CPUs{}), commit {}",
            self.bench,
            self.settings.backends.join(" and "),
            self.machine.cpu_logical_cores,
            self.machine
                .gpu
                .as_ref()
                .and_then(|g| g.get("name"))
                .map(|n| format!(", GPU {}", n.as_str().unwrap_or("?")))
                .unwrap_or_default(),
            self.git_commit
        );
        for f in &self.figures {
            println!("{}: {}", f.id, f.title);
            for s in &f.series {
                for p in &s.points {
                    let t = p.seconds.as_ref().map_or_else(
                        || p.note.clone().unwrap_or_default(),
                        |t| format!("{:.4} s (min {:.4}, max {:.4})", t.median, t.min, t.max),
                    );
                    println!(
                        "  {:<5} {:>10} {}  {} rounds, {} B sent by party 0",
                        s.backend, p.x, t, p.rounds, p.bytes_sent_per_party[0]
                    );
                }
            }
            for s in &f.speedup {
                println!("  speedup at {}: GPU {:.1}x faster", s.x, s.gpu_over_cpu);
            }
        }
        for n in &self.nets {
            let t = n.seconds.as_ref().map_or_else(
                || n.note.clone().unwrap_or_default(),
                |t| {
                    let bound = if n.net.is_none() {
                        String::new()
                    } else {
                        format!("; lower bound {:.3} s", n.lower_bound_seconds)
                    };
                    format!("{:.3} s (min {:.3}, max {:.3}){bound}", t.median, t.min, t.max)
                },
            );
            println!("  {:<5} {:<22} batch {:<4} net {:<6} {}", n.backend, n.id, n.batch, n.net.to_string(), t);
            if n.seconds.is_some() {
                let split: Vec<String> = n.split_party0.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
                let peak = n.peak_rss_bytes.map(|b| format!("; process peak memory {:.2} GB", b as f64 / 1e9));
                println!(
                    "        party 0 split: {}; {:.1} MB sent by party 0, {} rounds{}",
                    split.join(", "),
                    n.bytes_sent_per_party[0] as f64 / 1e6,
                    n.rounds,
                    peak.unwrap_or_default()
                );
            }
        }
    }
}

/// The current time in UTC as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    utc_from_unix(secs)
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time (proleptic Gregorian calendar).
pub fn utc_from_unix(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc_from_unix(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc_from_unix(1_795_000_000), "2026-11-18T11:06:40Z");
    }

    /// `settings.net` reads as a list, as the one object of records made before lists, and as
    /// `[none]` when absent.
    #[test]
    fn link_settings_of_every_layout() {
        let settings = |net: &str| {
            let text = format!(
                r#"{{"quick": true, "warmup": 1, "reps": 3, "point_budget_seconds": null, "backends": ["cpu"],
                    "timing": "t"{net}}}"#
            );
            serde_json::from_str::<Settings>(&text).map(|s| s.net)
        };
        assert_eq!(settings("").unwrap(), [LinkModel::NONE]);
        let lan = r#"{"name": "lan", "latency_ms": 0.2, "gbit_per_s": 5.0}"#;
        assert_eq!(settings(&format!(r#", "net": {lan}"#)).unwrap(), [LinkModel::LAN]);
        let none = r#"{"name": "none", "latency_ms": 0.0, "gbit_per_s": null}"#;
        assert_eq!(settings(&format!(r#", "net": [{none}, {lan}]"#)).unwrap(), [LinkModel::NONE, LinkModel::LAN]);
        assert!(settings(r#", "net": "lan""#).is_err());
    }

    #[test]
    fn stats_median_and_spread() {
        let s = Stats::new(vec![3.0, 1.0, 2.0], vec![9.0]);
        assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
        approx::assert_abs_diff_eq!(s.spread, 1.0, epsilon = 1e-12);
        assert_eq!(Stats::new(vec![1.0, 3.0], vec![]).median, 2.0);
    }
}
