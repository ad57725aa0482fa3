//! The conformance suite for [`Backend`] implementations: every operation of the trait and whole
//! three-party protocol runs on a candidate backend, compared bit for bit with the CPU oracle
//! ([`CpuBackend`](cryptgpu_kernels_cpu::CpuBackend)) on random inputs drawn from a fixed seed.
//!
//! # For backend authors
//!
//! A new backend conforms when [`check_backend`] passes on it ([`Sizes::Standard`], seed
//! [`Config::DEFAULT_SEED`]). Put `cryptgpu-testkit` in your `[dev-dependencies]` and call
//! [`assert_conforms`]`(&your_backend)` from a `#[test]` (or [`check_backend_with`] and
//! [`Report::assert_passed`] for another seed or size, e.g. [`Sizes::Full`] on a GPU); a failure panics with the seed and, for every failed check, the operation, the
//! shapes and the first mismatching element. The [`Report`] itself can be printed (one line per
//! check) or serialised with serde, e.g. for a self-test of a release binary (`cryptgpu selftest`
//! does this for the CUDA backend). An error returned by the candidate where the CPU succeeds, or
//! a panic inside the candidate, is a failed check; both rejecting the same input is agreement.
//!
//! ```rust
//! use cryptgpu_kernels_cpu::CpuBackend;
//! use cryptgpu_testkit::{check_backend_with, Config, Sizes};
//!
//! // In a backend's own tests: `CpuBackend` stands for the candidate.
//! cryptgpu_testkit::assert_conforms(&CpuBackend);
//!
//! // Another seed and size, and the report itself.
//! let report = check_backend_with(&CpuBackend, &Config { seed: 42, sizes: Sizes::Quick });
//! assert!(report.passed(), "{report}");
//! println!("{}", report.summary());
//! ```
#![deny(missing_docs)]

mod protocols;
mod suite;

use std::fmt;

use cryptgpu_ring::error::invalid;
use cryptgpu_ring::shape::checked_numel;
use cryptgpu_ring::{Backend, FixedPoint, RingTensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// How large the suite's inputs are; each size runs the checks of the smaller ones too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sizes {
    /// Small shapes only (still of odd sizes that are multiples of no block size): a fraction of
    /// a second on a CPU, for examples and quick `#[test]`s.
    Quick,
    /// Adds tensors of 65,537 elements, a 513×1000×257 GEMM, one with K = 40,000 and a PRG fill
    /// of 100,001 elements: about a second on a CPU.
    #[default]
    Standard,
    /// Adds the large cases as well: a GEMM with K > 2^21, tensors of more than 4M elements (a few
    /// seconds on a CPU).
    Full,
}

/// What [`check_backend_with`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Seed of every random input (printed in reports).
    pub seed: u64,
    /// Input sizes.
    pub sizes: Sizes,
}

impl Config {
    /// The seed of [`Config::default`].
    pub const DEFAULT_SEED: u64 = 7;
}

impl Default for Config {
    /// Seed [`Config::DEFAULT_SEED`], [`Sizes::Standard`].
    fn default() -> Self {
        Config { seed: Self::DEFAULT_SEED, sizes: Sizes::default() }
    }
}

/// The outcome of one comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Check {
    /// What was compared: the operation and its shapes or parameters.
    pub name: String,
    /// True when the candidate's result equals the CPU result bit for bit (or both rejected the input).
    pub passed: bool,
    /// Why it failed (first mismatch, error or panic); empty when it passed.
    pub detail: String,
    /// Wall time of the candidate's side, in seconds.
    pub seconds: f64,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed {
            write!(f, "ok   {} ({:.3} s)", self.name, self.seconds)
        } else {
            write!(f, "FAIL {} ({:.3} s): {}", self.name, self.seconds, self.detail)
        }
    }
}

/// The outcome of a run of the suite. `Display` prints one line per check, then a summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The candidate's [`Backend::name`].
    pub backend: String,
    /// The configuration that ran (its seed reproduces every input).
    pub config: Config,
    /// Every check, in the order run.
    pub checks: Vec<Check>,
}

impl Report {
    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The failed checks.
    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|c| !c.passed)
    }

    /// One line: the numbers of checks and failures, the backend, seed and sizes.
    pub fn summary(&self) -> String {
        format!(
            "{} checks, {} failed (backend {}, seed {}, sizes {:?})",
            self.checks.len(),
            self.failures().count(),
            self.backend,
            self.config.seed,
            self.config.sizes
        )
    }

    /// Panics, listing the failed checks and the seed, unless every check passed.
    #[track_caller]
    pub fn assert_passed(&self) {
        if !self.passed() {
            let failed: Vec<String> = self.failures().map(Check::to_string).collect();
            panic!("the backend does not conform: {}\n{}", self.summary(), failed.join("\n"));
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            writeln!(f, "{c}")?;
        }
        write!(f, "{}", self.summary())
    }
}

/// Runs the suite on `backend` with [`Config::default`].
pub fn check_backend<D: Backend>(backend: &D) -> Report {
    check_backend_with(backend, &Config::default())
}

/// Runs the suite on `backend`: every [`Backend`] operation on several shapes (including
/// rejected inputs), then whole protocol runs on three in-process parties, each compared with
/// [`CpuBackend`](cryptgpu_kernels_cpu::CpuBackend) on the same inputs.
pub fn check_backend_with<D: Backend>(backend: &D, config: &Config) -> Report {
    let mut checks = suite::run(backend, config);
    checks.extend(protocols::run(backend, config.seed));
    Report { backend: backend.name().to_string(), config: *config, checks }
}

/// Panics with the failed checks and the seed unless `backend` passes [`check_backend`]; for a
/// backend's own `#[test]`.
#[track_caller]
pub fn assert_conforms<D: Backend>(backend: &D) {
    check_backend(backend).assert_passed();
}

/// `prod(shape)` reals drawn uniformly from `[-bound, bound]` by a generator seeded with `seed`,
/// and their encoding under `codec`. Fails when `bound` is negative or not finite, when the shape
/// overflows, or when the bound is beyond what `codec` encodes.
pub fn random_fixed(
    seed: u64,
    shape: &[usize],
    bound: f64,
    codec: FixedPoint,
) -> cryptgpu_ring::Result<(Vec<f64>, RingTensor)> {
    if !(bound.is_finite() && bound >= 0.0) {
        return Err(invalid("random_fixed", format!("bound {bound} (must be finite and non-negative)")));
    }
    let n = checked_numel("random_fixed", shape)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v: Vec<f64> = (0..n).map(|_| rng.gen_range(-bound..=bound)).collect();
    let t = codec.encode_tensor(shape, &v)?;
    Ok((v, t))
}
