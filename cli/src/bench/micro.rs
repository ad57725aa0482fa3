//! `bench conv` (the paper's Fig. 1) and `bench relu` (Fig. 2): sweeps of one private protocol.

use anyhow::{bail, Result};
use cryptgpu::device::AnyBackend;
use cryptgpu_net::LinkModel;
use cryptgpu_ring::{Backend, Conv2dParams, FixedPoint, RingTensor};
use cryptgpu_sharing::timing::{cost, peak_rss_bytes, repeat, runs_of, slowest, Plan};
use cryptgpu_sharing::{run_local, RunConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::report::{self, Figure, Point, Record, Series, Stats};
use super::{open_devices, paper, CommonArgs};

/// One convolution of a sweep: input `[k, c, n, n]`, `f` filters of `r x r`.
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    /// Batch.
    pub k: usize,
    /// Input channels.
    pub c: usize,
    /// Image side.
    pub n: usize,
    /// Filters.
    pub f: usize,
    /// Filter side.
    pub r: usize,
    /// Stride.
    pub stride: usize,
    /// Padding.
    pub pad: usize,
}

/// A sweep of the paper's Fig. 1 or 2: the swept values and what each computes.
struct Sweep {
    id: &'static str,
    title: &'static str,
    x_label: &'static str,
    xs: Vec<usize>,
    job: fn(usize) -> Job,
}

/// What one point computes.
#[derive(Debug, Clone, Copy)]
enum Job {
    Conv(ConvShape),
    Relu(usize),
}

impl Job {
    fn describe(&self) -> String {
        match self {
            Job::Conv(s) => format!(
                "input [{}, {}, {}, {}], weights [{}, {}, {}, {}], stride {}, padding {}",
                s.k, s.c, s.n, s.n, s.f, s.c, s.r, s.r, s.stride, s.pad
            ),
            Job::Relu(n) => format!("{n} elements"),
        }
    }
}

/// Fig. 1a and 1b's convolution: 64 filters 11x11x3, stride 4, padding 2, on k images n x n.
fn alex(k: usize, n: usize) -> Job {
    Job::Conv(ConvShape { k, c: 3, n, f: 64, r: 11, stride: 4, pad: 2 })
}

/// The three sweeps of Fig. 1 (`quick`: fewer and smaller points).
fn conv_sweeps(quick: bool) -> Vec<Sweep> {
    let pick = |full: &[usize], q: &[usize]| if quick { q.to_vec() } else { full.to_vec() };
    vec![
        Sweep {
            id: "fig1a",
            title: "Fig. 1a: private convolution, n x n x 3 input, 64 filters 11x11, stride 4",
            x_label: "image side n",
            xs: pick(&[32, 64, 128, 256, 512], &[32, 64, 128, 256]),
            job: |n| alex(1, n),
        },
        Sweep {
            id: "fig1b",
            title: "Fig. 1b: private convolution, batch of k 32x32x3 inputs, 64 filters 11x11",
            x_label: "batch size k",
            xs: pick(&[1, 4, 16, 64, 128, 256, 512], &[1, 4, 16, 64, 256]),
            job: |k| alex(k, 32),
        },
        Sweep {
            id: "fig1c",
            title: "Fig. 1c: private convolution, n x n x 512 input, 512 filters 3x3, stride 1",
            x_label: "image side n",
            xs: pick(&[1, 2, 4, 8, 16, 32, 64], &[1, 2, 4, 8, 16, 32]),
            job: |n| Job::Conv(ConvShape { k: 1, c: 512, n, f: 512, r: 3, stride: 1, pad: 1 }),
        },
    ]
}

/// Fig. 2's sweep.
fn relu_sweep(quick: bool) -> Vec<Sweep> {
    let full = [50_000, 100_000, 250_000, 500_000, 1_000_000, 2_000_000, 4_000_000, 8_000_000, 16_000_000, 32_000_000];
    vec![Sweep {
        id: "fig2",
        title: "Fig. 2: private ReLU (exact, 9 rounds per 2^20 elements)",
        x_label: "elements",
        xs: if quick { full[..8].to_vec() } else { full.to_vec() },
        job: Job::Relu,
    }]
}

/// `cryptgpu bench conv`.
pub fn conv(args: &CommonArgs) -> Result<Record> {
    run_sweeps("conv", args, conv_sweeps(args.quick), paper::conv())
}

/// `cryptgpu bench relu`.
pub fn relu(args: &CommonArgs) -> Result<Record> {
    run_sweeps("relu", args, relu_sweep(args.quick), paper::relu())
}

fn run_sweeps(bench: &str, args: &CommonArgs, mut sweeps: Vec<Sweep>, paper: serde_json::Value) -> Result<Record> {
    args.check_only(&sweeps.iter().map(|s| s.id.to_string()).collect::<Vec<_>>())?;
    if let Some(xs) = &args.points {
        if xs.is_empty() || xs.contains(&0) {
            bail!("--points must list positive sizes");
        }
        for s in &mut sweeps {
            s.xs.clone_from(xs);
        }
    }
    let net = match args.net.links[..] {
        [one] => one,
        _ => bail!("--net: `{bench}` takes one link model (lists are for `train` and `infer`)"),
    };
    let devices = open_devices(args.backend)?;
    let mut record = Record::new(bench, args, &devices);
    record.paper = paper;
    let plan = Plan { warmup: args.warmup, reps: args.reps(), budget: args.point_budget };
    for sweep in sweeps.iter().filter(|s| args.selected(s.id)) {
        let mut fig = Figure {
            id: sweep.id.into(),
            title: sweep.title.into(),
            x_label: sweep.x_label.into(),
            series: Vec::new(),
            speedup: Vec::new(),
            paper: record.paper.get(sweep.id).and_then(|v| v.as_str()).unwrap_or_default().to_string(),
        };
        for device in &devices {
            let points = run_series(device, sweep, &plan, net);
            fig.series.push(Series { backend: device.name().into(), points });
        }
        fig.compute_speedup();
        record.figures.push(fig);
    }
    Ok(record)
}

/// Measures a sweep's points on one device; once a warm-up exceeds the budget, the larger points
/// are skipped. A failing point (e.g. out of device memory) is recorded and the sweep goes on.
fn run_series(device: &AnyBackend, sweep: &Sweep, plan: &Plan, net: LinkModel) -> Vec<Point> {
    let mut over: Option<f64> = None;
    let mut points = Vec::new();
    for &xv in &sweep.xs {
        let (x, job) = (xv as f64, (sweep.job)(xv));
        let mut point = Point {
            x,
            shape: job.describe(),
            seconds: None,
            rounds: 0,
            bytes_sent_per_party: [0; 3],
            lower_bound_seconds: 0.0,
            peak_rss_bytes: None,
            note: None,
        };
        if let Some(t) = over {
            point.note = Some(format!("skipped: a smaller point's warm-up took {t:.1} s, over --point-budget"));
            points.push(point);
            continue;
        }
        let started = std::time::Instant::now();
        let measured = measure(device, job, plan, net);
        point.peak_rss_bytes = peak_rss_bytes();
        match measured {
            Ok(Measured { stats, bytes, rounds, lower_bound }) => {
                eprintln!(
                    "{} {:<4} x={:<9} median {:.4} s (min {:.4}, max {:.4}, {} reps; {:.0} s with warm-up and setup)",
                    sweep.id,
                    device.name(),
                    x,
                    stats.median,
                    stats.min,
                    stats.max,
                    stats.samples.len(),
                    started.elapsed().as_secs_f64()
                );
                let warm = stats.warmup.iter().copied().fold(0.0, f64::max);
                if plan.budget.is_some_and(|b| warm > b) {
                    over = Some(warm);
                }
                (point.seconds, point.bytes_sent_per_party, point.rounds) = (Some(stats), bytes, rounds);
                point.lower_bound_seconds = lower_bound;
            }
            Err(e) => {
                eprintln!("{} {} x={x}: failed: {e:#}", sweep.id, device.name());
                point.note = Some(format!("failed: {e:#}"));
            }
        }
        points.push(point);
    }
    points
}

/// Random fixed-point values uniform in `[-range, range]`.
fn random_fixed(shape: &[usize], range: f64, seed: u64) -> Result<RingTensor> {
    let codec = FixedPoint::default();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let vals: Vec<f64> = (0..n).map(|_| rng.gen_range(-range..=range)).collect();
    Ok(codec.encode_tensor(shape, &vals)?)
}

/// What one point measured.
pub struct Measured {
    /// The repetitions' times.
    pub stats: Stats,
    /// Bytes each party sent in one run.
    pub bytes: [u64; 3],
    /// Rounds of one run.
    pub rounds: u64,
    /// The least time of one run over the links ([`report::lower_bound`]).
    pub lower_bound: f64,
}

/// Runs one point with three in-process parties over links of `net`.
/// Conv: party 0 shares the input, party 1 the weights; the timed protocol is the fixed-point
/// convolution with its truncation. ReLU: party 0 shares the values; the timed protocol is the
/// exact ReLU (MSB, then `x * [x >= 0]`).
fn measure<B: Backend>(be: &B, job: Job, plan: &Plan, net: LinkModel) -> Result<Measured> {
    let config = RunConfig { net, ..RunConfig::default() };
    let out = match job {
        Job::Conv(s) => {
            let x = random_fixed(&[s.k, s.c, s.n, s.n], 1.0, 1)?;
            let w = random_fixed(&[s.f, s.c, s.r, s.r], 0.5, 2)?;
            let p = Conv2dParams { stride: (s.stride, s.stride), padding: (s.pad, s.pad) };
            run_local(be.clone(), config, |party| {
                let id = party.id();
                let xs = party.input(0, (id == 0).then_some(&x), x.shape())?;
                let ws = party.input(1, (id == 1).then_some(&w), w.shape())?;
                repeat(party, plan, |party| party.conv2d_fp(&xs, &ws, &p).map(drop))
            })?
        }
        Job::Relu(n) => {
            let x = random_fixed(&[n], 8.0, 3)?;
            run_local(be.clone(), config, |party| {
                let xs = party.input(0, (party.id() == 0).then_some(&x), x.shape())?;
                repeat(party, plan, |party| party.relu(&xs).map(drop))
            })?
        }
    };
    let (samples, warmup) = slowest(runs_of(&out));
    let (bytes, rounds) = cost(runs_of(&out));
    Ok(Measured {
        stats: Stats::new(samples, warmup),
        bytes,
        rounds,
        lower_bound: report::lower_bound(net, runs_of(&out)),
    })
}

/// A tiny ReLU point, for tests of the whole path (CPU).
#[cfg(test)]
pub fn tiny_relu_point(n: usize, reps: usize, net: LinkModel) -> Result<Measured> {
    measure(&cryptgpu_kernels_cpu::CpuBackend, Job::Relu(n), &Plan { warmup: 1, reps, budget: None }, net)
}
