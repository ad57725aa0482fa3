//! The protocol checks: whole protocols on three in-process parties with seeded keys, on the
//! candidate and on the CPU oracle; every party's shares and every revealed value must agree.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_net::Transport;
use cryptgpu_ring::{Backend, Conv2dParams, FixedPoint, Pool2dParams, RingTensor};
use cryptgpu_sharing::{run_local, KeySource, Party, PartyOutput, RunConfig};

use crate::suite::{first_mismatch, panic_message};
use crate::{random_fixed, Check};

/// Runs every protocol program on `dev` and on the CPU.
pub(crate) fn run<D: Backend>(dev: &D, seed: u64) -> Vec<Check> {
    let codec = FixedPoint::default();
    let inputs = match Inputs::new(seed, codec) {
        Ok(i) => i,
        Err(e) => {
            let detail = format!("the inputs could not be encoded: {e}");
            return vec![Check { name: "protocols: inputs".into(), passed: false, detail, seconds: 0.0 }];
        }
    };
    let cfg = RunConfig { codec, keys: KeySource::InsecureSeed(seed), ..RunConfig::default() };
    [Program::Arith, Program::Relu, Program::MaxPool]
        .into_iter()
        .map(|prog| {
            let start = Instant::now();
            let got = catch_unwind(AssertUnwindSafe(|| run_local(dev.clone(), cfg, |party| prog.run(party, &inputs))));
            let seconds = start.elapsed().as_secs_f64();
            let want = run_local(CpuBackend, cfg, |party| prog.run(party, &inputs));
            let detail = match (got, want) {
                (Ok(Ok(g)), Ok(w)) => compare_outputs(&g, &w),
                (Ok(Err(e)), _) => format!("candidate run failed: {e}"),
                (Err(p), _) => format!("candidate panicked: {}", panic_message(p.as_ref())),
                (_, Err(e)) => format!("CPU run failed: {e}"),
            };
            Check { name: format!("protocol {}", prog.name()), passed: detail.is_empty(), detail, seconds }
        })
        .collect()
}

/// Labelled outputs of one party.
type Outputs = Vec<(String, RingTensor)>;

/// The first output where the candidate's parties differ from the CPU's; empty when none does.
fn compare_outputs(got: &[PartyOutput<Outputs>; 3], want: &[PartyOutput<Outputs>; 3]) -> String {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if g.value.len() != w.value.len() {
            return format!("party {i}: {} outputs vs CPU {}", g.value.len(), w.value.len());
        }
        for ((label, gt), (_, wt)) in g.value.iter().zip(&w.value) {
            let d = first_mismatch(gt, wt);
            if !d.is_empty() {
                return format!("party {i}, {label}: {d}");
            }
        }
    }
    String::new()
}

/// The fixed-point inputs of the programs.
struct Inputs {
    a: RingTensor,
    b: RingTensor,
    x: RingTensor,
    w: RingTensor,
    conv: Conv2dParams,
    r: RingTensor,
    pool: Pool2dParams,
}

impl Inputs {
    fn new(seed: u64, codec: FixedPoint) -> cryptgpu_ring::Result<Self> {
        let enc = |i: u64, shape: &[usize]| random_fixed(seed ^ (0x5eed + i), shape, 2.0, codec).map(|(_, t)| t);
        Ok(Inputs {
            a: enc(0, &[33, 70])?,
            b: enc(1, &[70, 19])?,
            x: enc(2, &[2, 3, 10, 10])?,
            w: enc(3, &[4, 3, 3, 3])?,
            conv: Conv2dParams { stride: (1, 1), padding: (1, 1) },
            r: enc(4, &[3, 337])?,
            pool: Pool2dParams { kernel: (3, 2), stride: (2, 2), padding: (1, 0) },
        })
    }
}

/// A protocol program run by the three parties.
#[derive(Debug, Clone, Copy)]
enum Program {
    /// Input from all three owners, integer and fixed-point products, convolution, truncation.
    Arith,
    /// ReLU and its comparison bit (MSB extraction, binary circuits, bit injection).
    Relu,
    /// Max pooling with its one-hot argmax.
    MaxPool,
}

impl Program {
    fn name(self) -> &'static str {
        match self {
            Program::Arith => "arith: input, mul, matmul_fp, conv2d_fp, truncate, reveal (all shares)",
            Program::Relu => "relu: drelu bit and output, b_reveal (all shares)",
            Program::MaxPool => "max_pool2d: output and argmax (all shares)",
        }
    }

    /// Runs the program; returns every share and every revealed value, labelled.
    fn run<B: Backend, T: Transport>(self, party: &mut Party<B, T>, i: &Inputs) -> cryptgpu_sharing::Result<Outputs> {
        let mut out = Outputs::new();
        let input = |party: &mut Party<B, T>, owner: usize, t: &RingTensor| {
            let own = (party.id() == owner).then_some(t);
            party.input(owner, own, t.shape())
        };
        match self {
            Program::Arith => {
                let sa = input(party, 0, &i.a)?;
                let sb = input(party, 1, &i.b)?;
                let sx = input(party, 2, &i.x)?;
                let sw = input(party, 0, &i.w)?;
                let mm = party.matmul_fp(&sa, &sb)?;
                let prod = party.mul_int(&sa, &sa)?;
                let cv = party.conv2d_fp(&sx, &sw, &i.conv)?;
                let tr = party.truncate(&prod)?;
                for (label, s) in [("matmul_fp", &mm), ("mul", &prod), ("conv2d_fp", &cv), ("truncate", &tr)] {
                    let revealed = party.reveal(s)?;
                    push(party, &mut out, label, [s.first(), s.second()], revealed)?;
                }
            }
            Program::Relu => {
                let sr = input(party, 1, &i.r)?;
                let (y, bit) = party.relu(&sr)?;
                let revealed = party.reveal(&y)?;
                push(party, &mut out, "relu", [y.first(), y.second()], revealed)?;
                let revealed = party.b_reveal(&bit)?;
                push(party, &mut out, "drelu", [bit.first(), bit.second()], revealed)?;
            }
            Program::MaxPool => {
                let sx = input(party, 2, &i.x)?;
                let (y, onehot) = party.max_pool2d(&sx, &i.pool)?;
                for (label, s) in [("max_pool2d", &y), ("argmax", &onehot)] {
                    let revealed = party.reveal(s)?;
                    push(party, &mut out, label, [s.first(), s.second()], revealed)?;
                }
            }
        }
        Ok(out)
    }
}

/// Appends a party's two shares of a sharing and its revealed value to `out`.
fn push<B: Backend, T: Transport>(
    party: &Party<B, T>,
    out: &mut Outputs,
    label: &str,
    shares: [&B::Tensor; 2],
    revealed: RingTensor,
) -> cryptgpu_sharing::Result<()> {
    for (j, s) in shares.into_iter().enumerate() {
        out.push((format!("{label} share {}", j + 1), party.download(s)?));
    }
    out.push((format!("{label} revealed"), revealed));
    Ok(())
}
