//! `cryptgpu party --config FILE --id I <job> ...`: one party of a three-process (three-machine) run.
//!
//! Each job of the in-process CLI is split into a party program, generic over
//! `Party<B, T: Transport>`, and drivers: the in-process one (`run_local`, three threads) and this
//! one (one process, [`TcpTransport`] to the two other parties). Both drivers run the same program,
//! so with the same seeds (and `--insecure-key-seed`) the results are bit-identical. A new job
//! (`train`, `infer`, ...) implements [`PartyJob`] and gets a variant in [`JobCommand`]; `matmul`
//! and `relu` are there.
//!
//! The configuration is a TOML file:
//!
//! ```toml
//! [[party]]
//! id = 0
//! address = "10.0.0.1:7100"        # where party 0 listens (host names are resolved)
//! certificate = "party0.crt"       # PEM; relative paths are relative to this file (not needed
//!                                  # with --insecure)
//! key = "party0.key"               # only read by party 0 (each machine needs only its own key)
//!
//! [[party]]
//! id = 1
//! # ...
//!
//! [network]                        # optional; defaults shown
//! timeout_secs = 60                # a silent neighbour fails the run after this long
//! connect_timeout_secs = 60        # all links must be up within this
//! nodelay = true
//! # send_buffer_bytes = 4194304
//! # recv_buffer_bytes = 4194304
//! # max_message_words = 2147483648
//! # max_read_ahead_bytes = 268435456
//! ```
//!
//! The lower id of each pair listens and the higher one connects: party 0 accepts parties 1 and 2,
//! party 1 connects to 0 and accepts 2, party 2 only connects (its address is not used). Each
//! listener must be reachable from the parties with higher ids.

use std::fs;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, Subcommand};
use cryptgpu_net::frame::DEFAULT_MAX_WORDS;
use cryptgpu_net::tcp::DEFAULT_MAX_READ_AHEAD;
use cryptgpu_net::{Security, TcpOptions, TcpSetup, TcpTransport, TlsIdentity, Transport};
use cryptgpu_ring::{Backend, FixedPoint};
use cryptgpu_sharing::{KeySource, Party};
use serde::Deserialize;

use crate::device::BackendChoice;
use crate::{learn, matmul, relu, with_backend};

/// Arguments of `cryptgpu party`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// The deployment's configuration (TOML: the three parties' addresses and certificates).
    #[arg(long)]
    config: PathBuf,
    /// This party's id: 0, 1 or 2.
    #[arg(long)]
    id: usize,
    /// This party's private key (PEM), instead of the `key` of its entry in the configuration.
    #[arg(long)]
    key: Option<PathBuf>,
    /// INSECURE: plain TCP without TLS. The PRG keys and every message cross the network in the
    /// clear; for benchmarks and debugging on a trusted host only.
    #[arg(long)]
    insecure: bool,
    /// Receive timeout in seconds (overrides the configuration).
    #[arg(long)]
    timeout: Option<f64>,
    /// Connect timeout in seconds (overrides the configuration).
    #[arg(long)]
    connect_timeout: Option<f64>,
    /// The job, with the same arguments as the in-process command.
    #[command(subcommand)]
    job: JobCommand,
}

/// Jobs that run as one party of three processes.
#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Private fixed-point matrix product (as `cryptgpu matmul`).
    Matmul(matmul::Args),
    /// Private ReLU (as `cryptgpu relu`).
    Relu(relu::Args),
    /// Private training (as `cryptgpu train`); party 0 owns the data and the model.
    Train(learn::TrainArgs),
    /// Private inference (as `cryptgpu infer`); party 0 owns the weights and the images.
    Infer(learn::InferArgs),
}

/// A job that one process can run as one of the three parties.
pub trait PartyJob {
    /// The job's name.
    fn name(&self) -> &'static str;
    /// Every public parameter the three parties must agree on. Its digest, together with the key
    /// source ([`key_label`]), is the job tag checked when the links come up, so parties started
    /// with different arguments or key sources refuse each other at once.
    fn public_params(&self) -> String;
    /// The fixed-point codec.
    fn codec(&self) -> FixedPoint;
    /// Where the PRG keys come from.
    fn keys(&self) -> KeySource;
    /// The device for the local computation (may differ between parties).
    fn backend(&self) -> BackendChoice;
    /// Runs the party program and prints this party's report.
    fn run_party<B: Backend, T: Transport>(&self, party: &mut Party<B, T>) -> Result<()>;
}

/// The environment variable that must be `1` at every party that passes `--insecure-key-seed`.
pub const ALLOW_INSECURE_KEYS: &str = "CRYPTGPU_ALLOW_INSECURE_KEYS";

/// The PRG key source for `--insecure-key-seed`. A known seed lets anyone who knows it remove
/// every mask, so it needs an explicit opt-in ([`ALLOW_INSECURE_KEYS`]`=1`) and is announced
/// with a warning; without the variable it is an error.
pub fn key_source(insecure_seed: Option<u64>) -> Result<KeySource> {
    let Some(seed) = insecure_seed else { return Ok(KeySource::Os) };
    if std::env::var_os(ALLOW_INSECURE_KEYS).is_none_or(|v| v != "1") {
        bail!(
            "--insecure-key-seed derives every PRG key from a public seed: anyone who knows it sees every \
             share. It is for reproducibility tests only; to use it anyway, set {ALLOW_INSECURE_KEYS}=1 in \
             the environment of every party"
        );
    }
    eprintln!(
        "warning: --insecure-key-seed ({ALLOW_INSECURE_KEYS}=1): the PRG keys derive from a public seed; \
         anyone who knows it sees every share. For reproducibility tests only."
    );
    Ok(KeySource::InsecureSeed(seed))
}

/// How a key source is recorded in reports and job tags: `os` or `insecure-seed:S`.
pub fn key_label(keys: KeySource) -> String {
    match keys {
        KeySource::Os => "os".into(),
        KeySource::InsecureSeed(s) => format!("insecure-seed:{s}"),
    }
}

/// The job tag: a digest of the job's public parameters and its key source.
fn job_tag<J: PartyJob>(job: &J) -> u64 {
    fnv1a(format!("{} keys={}", job.public_params(), key_label(job.keys())).bytes())
}

/// FNV-1a over the little-endian bytes of `words`, as 16 hex digits (compares results, not secret:
/// only revealed outputs are digested).
pub fn digest(words: &[u64]) -> String {
    format!("{:016x}", fnv1a(words.iter().flat_map(|w| w.to_le_bytes())))
}

fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// The configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The three parties.
    party: Vec<PartyEntry>,
    /// Network settings.
    #[serde(default)]
    network: Network,
}

/// One `[[party]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartyEntry {
    id: usize,
    address: String,
    certificate: Option<PathBuf>,
    key: Option<PathBuf>,
}

/// The `[network]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Network {
    #[serde(default = "default_secs")]
    timeout_secs: f64,
    #[serde(default = "default_secs")]
    connect_timeout_secs: f64,
    #[serde(default = "yes")]
    nodelay: bool,
    send_buffer_bytes: Option<usize>,
    recv_buffer_bytes: Option<usize>,
    max_message_words: Option<u64>,
    max_read_ahead_bytes: Option<usize>,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            timeout_secs: default_secs(),
            connect_timeout_secs: default_secs(),
            nodelay: true,
            send_buffer_bytes: None,
            recv_buffer_bytes: None,
            max_message_words: None,
            max_read_ahead_bytes: None,
        }
    }
}

fn default_secs() -> f64 {
    60.0
}

fn yes() -> bool {
    true
}

fn seconds(s: f64, what: &str) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0 && s < 1e9) {
        bail!("{what} must be a positive number of seconds, not {s}");
    }
    Ok(Duration::from_secs_f64(s))
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<(Config, PathBuf)> {
        let text =
            fs::read_to_string(path).with_context(|| format!("cannot read the configuration {}", path.display()))?;
        let config: Config =
            toml::from_str(&text).with_context(|| format!("invalid configuration {}", path.display()))?;
        let mut ids: Vec<usize> = config.party.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        if ids != [0, 1, 2] {
            bail!(
                "{}: the configuration must list parties 0, 1 and 2 exactly once (found ids {ids:?})",
                path.display()
            );
        }
        let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((config, dir))
    }

    fn entry(&self, id: usize) -> &PartyEntry {
        // `load` checked that ids 0, 1 and 2 are present.
        self.party.iter().find(|p| p.id == id).unwrap_or(&self.party[0])
    }

    /// The resolved listening addresses of the three parties.
    fn addrs(&self) -> Result<[SocketAddr; 3]> {
        let mut out = Vec::with_capacity(3);
        for id in 0..3 {
            let a = &self.entry(id).address;
            let addr = a
                .to_socket_addrs()
                .with_context(|| format!("party {id}'s address {a:?} (expected host:port)"))?
                .next()
                .with_context(|| format!("party {id}'s address {a:?} resolves to nothing"))?;
            out.push(addr);
        }
        Ok([out[0], out[1], out[2]])
    }

    fn options(&self) -> Result<TcpOptions> {
        let n = &self.network;
        Ok(TcpOptions {
            timeout: seconds(n.timeout_secs, "network.timeout_secs")?,
            connect_timeout: seconds(n.connect_timeout_secs, "network.connect_timeout_secs")?,
            nodelay: n.nodelay,
            send_buffer: n.send_buffer_bytes,
            recv_buffer: n.recv_buffer_bytes,
            max_words: n.max_message_words.unwrap_or(DEFAULT_MAX_WORDS),
            max_read_ahead: n.max_read_ahead_bytes.unwrap_or(DEFAULT_MAX_READ_AHEAD),
            job_tag: 0,
        })
    }
}

fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// Builds this party's TLS identity from the configured certificates and its key.
fn tls_identity(config: &Config, dir: &Path, id: usize, key_override: Option<&Path>) -> Result<TlsIdentity> {
    let mut certs = Vec::with_capacity(3);
    for p in 0..3 {
        let cert = config.entry(p).certificate.as_deref().with_context(|| {
            format!("no certificate for party {p}: add `certificate = \"...\"` to its [[party]] entry")
        })?;
        let path = resolve(dir, cert);
        certs.push(fs::read(&path).with_context(|| format!("party {p}'s certificate {}", path.display()))?);
    }
    let key_path = match key_override {
        Some(k) => k.to_path_buf(),
        None => resolve(
            dir,
            config.entry(id).key.as_deref().with_context(|| {
                format!("no key for party {id}: add `key = \"...\"` to its [[party]] entry or pass --key")
            })?,
        ),
    };
    // The key's contents are never printed, only its path.
    let key = fs::read(&key_path).with_context(|| format!("party {id}'s private key {}", key_path.display()))?;
    TlsIdentity::from_pem(id, [&certs[0], &certs[1], &certs[2]], &key)
        .with_context(|| format!("party {id}'s TLS identity"))
}

/// Runs `cryptgpu party`.
pub fn run(args: &Args) -> Result<()> {
    if args.id > 2 {
        bail!("--id must be 0, 1 or 2");
    }
    match &args.job {
        JobCommand::Matmul(a) => run_job(args, &matmul::Job::prepare(a)?),
        JobCommand::Relu(a) => run_job(args, &relu::Job::prepare(a)?),
        JobCommand::Train(a) => run_job(args, &learn::TrainJob::prepare(a)?),
        JobCommand::Infer(a) => run_job(args, &learn::InferJob::prepare(a)?),
    }
}

fn run_job<J: PartyJob>(args: &Args, job: &J) -> Result<()> {
    let id = args.id;
    let (config, dir) = Config::load(&args.config)?;
    let mut options = config.options()?;
    if let Some(t) = args.timeout {
        options.timeout = seconds(t, "--timeout")?;
    }
    if let Some(t) = args.connect_timeout {
        options.connect_timeout = seconds(t, "--connect-timeout")?;
    }
    options.job_tag = job_tag(job);
    let security = if args.insecure {
        eprintln!(
            "warning: --insecure: plain TCP without TLS; the PRG keys and every message cross the network \
             in the clear. Use only for benchmarks or debugging on a trusted host."
        );
        Security::InsecurePlaintext
    } else {
        Security::Tls(Box::new(tls_identity(&config, &dir, id, args.key.as_deref())?))
    };
    let addrs = config.addrs()?;
    // Open the device first: a GPU takes a while to initialise, and the links have a deadline.
    let device = job.backend().open()?;
    let transport =
        TcpTransport::connect(TcpSetup { id, addrs, listener: None, security, options }).with_context(|| {
            format!(
                "party {id}: setting up the links (all parties must run the same job with the same public \
                 arguments and the same key source, {})",
                key_label(job.keys())
            )
        })?;
    eprintln!(
        "party {id}: connected to parties {} and {} ({})",
        (id + 1) % 3,
        (id + 2) % 3,
        if args.insecure { "INSECURE plain TCP" } else { "mutual TLS" }
    );
    with_backend!(device, be => {
        let mut party = Party::setup(be, transport, job.codec(), job.keys())
            .with_context(|| format!("party {id}: key setup"))?;
        job.run_party(&mut party).with_context(|| format!("party {id}: {}", job.name()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use cryptgpu_kernels_cpu::CpuBackend;
    use cryptgpu_net::tcp::bind;
    use cryptgpu_net::Counters;
    use cryptgpu_sharing::{run_local, RunConfig};

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        job: JobCommand,
    }

    /// Runs `program` as three parties over TCP on 127.0.0.1 (threads): results and counters.
    fn over_tcp<R: Send + 'static>(
        codec: FixedPoint,
        keys: KeySource,
        program: impl Fn(&mut Party<CpuBackend, TcpTransport>) -> cryptgpu_sharing::Result<R> + Send + Sync + 'static,
    ) -> Vec<(R, Counters)> {
        let options = TcpOptions::default();
        let l0 = bind("127.0.0.1:0".parse().unwrap(), &options).unwrap();
        let l1 = bind("127.0.0.1:0".parse().unwrap(), &options).unwrap();
        let addrs = [l0.local_addr().unwrap(), l1.local_addr().unwrap(), "127.0.0.1:9".parse().unwrap()];
        let mut ls = [Some(l0), Some(l1), None];
        let program = std::sync::Arc::new(program);
        let hs: Vec<_> = (0..3)
            .map(|id| {
                let setup = TcpSetup {
                    id,
                    addrs,
                    listener: ls[id].take(),
                    security: Security::InsecurePlaintext,
                    options: options.clone(),
                };
                let program = program.clone();
                std::thread::spawn(move || {
                    let t = TcpTransport::connect(setup).unwrap();
                    let mut p = Party::setup(CpuBackend, t, codec, keys).unwrap();
                    let r = program(&mut p).unwrap();
                    (r, p.counters())
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn programs_over_tcp_match_run_local_results_and_counters() {
        // The seeded keys make both runs reproducible; they need the opt-in.
        std::env::set_var(ALLOW_INSECURE_KEYS, "1");
        let cli = Cli::parse_from(["t", "matmul", "--m", "24", "--k", "16", "--n", "8", "--insecure-key-seed", "3"]);
        let JobCommand::Matmul(args) = cli.job else { unreachable!() };
        let job = std::sync::Arc::new(matmul::Job::prepare(&args).unwrap());
        let config = RunConfig { codec: job.codec(), keys: job.keys(), ..RunConfig::default() };
        let local = run_local(CpuBackend, config, |p| matmul::program(p, &job)).unwrap();
        let j = job.clone();
        let tcp = over_tcp(job.codec(), job.keys(), move |p| matmul::program(p, &j));
        for (l, (t, c)) in local.iter().zip(&tcp) {
            assert_eq!(l.value.0, t.0);
            assert_eq!(l.value.2, t.2);
            assert_eq!(l.counters, *c);
        }

        let cli = Cli::parse_from(["t", "relu", "--n", "500", "--insecure-key-seed", "3"]);
        let JobCommand::Relu(args) = cli.job else { unreachable!() };
        let job = std::sync::Arc::new(relu::Job::prepare(&args).unwrap());
        let config = RunConfig { codec: job.codec(), keys: job.keys(), ..RunConfig::default() };
        let local = run_local(CpuBackend, config, |p| relu::program(p, &job)).unwrap();
        let j = job.clone();
        let tcp = over_tcp(job.codec(), job.keys(), move |p| relu::program(p, &j));
        for (l, (t, c)) in local.iter().zip(&tcp) {
            assert_eq!(l.value.0, t.0);
            assert_eq!((l.value.3, l.value.4), (t.3, t.4));
            assert_eq!(l.counters, *c);
        }
    }
}
