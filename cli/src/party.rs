//! `cryptgpu party --config FILE --id I <job> ...`: one party of a three-process (three-machine) run.
//!
//! Each job of the in-process CLI is split into a party program, generic over
//! `Party<B, T: Transport>`, and drivers: the in-process one (`run_local`, three threads) and this
//! one ([`run_tcp`]: one process, TCP to the two other parties). Both drivers run the same
//! program, so with the same seeds (and `--insecure-key-seed`) the results are bit-identical. A
//! new job implements [`PartyJob`] and gets a variant in [`JobCommand`].
//!
//! The configuration is a TOML file (see [`cryptgpu_net::deploy`]): the three parties' addresses,
//! certificates and keys, and an optional `[network]` table. The deployment itself (loading the
//! configuration, the TLS identity, the job tag, key setup) is [`run_tcp`]; this module parses the
//! arguments and prints.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, Subcommand};
use cryptgpu_net::deploy::seconds;
use cryptgpu_net::{Deployment, LinkModel, Protection, Transport};
use cryptgpu_ring::{Backend, FixedPoint};
pub use cryptgpu_sharing::deploy::{digest, key_label, ALLOW_INSECURE_KEYS};
use cryptgpu_sharing::{run_tcp, KeySource, Party, RunConfig};

use crate::device::BackendChoice;
use crate::{learn, matmul, relu};

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
    /// The links' model (`--net`): a public parameter, part of the job tag (see [`crate::net`]).
    fn net(&self) -> LinkModel;
    /// Runs the party program and prints this party's report.
    fn run_party<B: Backend, T: Transport>(&self, party: &mut Party<B, T>) -> Result<()>;
}

/// The PRG key source for `--insecure-key-seed` ([`cryptgpu_sharing::deploy::key_source`]): a
/// known seed needs the opt-in [`ALLOW_INSECURE_KEYS`]`=1` and is announced with a warning.
pub fn key_source(insecure_seed: Option<u64>) -> Result<KeySource> {
    let keys = cryptgpu_sharing::deploy::key_source(insecure_seed).context("--insecure-key-seed")?;
    if keys != KeySource::Os {
        eprintln!(
            "warning: --insecure-key-seed ({ALLOW_INSECURE_KEYS}=1): the PRG keys derive from a public seed; \
             anyone who knows it sees every share. For reproducibility tests only."
        );
    }
    Ok(keys)
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
    let deployment = Deployment::load(&args.config)?;
    let protection = if args.insecure {
        eprintln!(
            "warning: --insecure: plain TCP without TLS; the PRG keys and every message cross the network \
             in the clear. Use only for benchmarks or debugging on a trusted host."
        );
        Protection::InsecurePlaintext
    } else {
        Protection::Tls { key: args.key.clone() }
    };
    let mut setup = deployment.setup(id, &protection)?;
    if let Some(t) = args.timeout {
        setup.options.timeout = seconds(t, "--timeout")?;
    }
    if let Some(t) = args.connect_timeout {
        setup.options.connect_timeout = seconds(t, "--connect-timeout")?;
    }
    // Open the device first: a GPU takes a while to initialise, and the links have a deadline.
    let device = job.backend().open()?;
    let config = RunConfig { codec: job.codec(), keys: job.keys(), net: job.net(), ..RunConfig::default() };
    run_tcp(device, setup, config, &job.public_params(), |party| {
        eprintln!(
            "party {id}: connected to parties {} and {} ({})",
            (id + 1) % 3,
            (id + 2) % 3,
            if args.insecure { "INSECURE plain TCP" } else { "mutual TLS" }
        );
        job.run_party(party)
    })
    .with_context(|| format!("party {id}: {}", job.name()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use cryptgpu_kernels_cpu::CpuBackend;
    use cryptgpu_net::tcp::on_loopback;
    use cryptgpu_net::{Security, TcpOptions, TcpSetup};
    use cryptgpu_sharing::{run_local, PartyOutput, TcpLink};

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        job: JobCommand,
    }

    /// Runs `program` as three parties over plain TCP on 127.0.0.1 (threads) with [`run_tcp`]:
    /// results and counters.
    fn over_tcp<R: Send>(
        config: RunConfig,
        program: impl Fn(&mut Party<CpuBackend, TcpLink>) -> cryptgpu_sharing::Result<R> + Sync,
    ) -> Vec<PartyOutput<R>> {
        let addrs = ["127.0.0.1:9".parse().unwrap(); 3];
        let mut setups = [0, 1, 2].map(|id| TcpSetup {
            id,
            addrs,
            listener: None,
            security: Security::InsecurePlaintext,
            options: TcpOptions::default(),
        });
        on_loopback(&mut setups).unwrap();
        std::thread::scope(|s| {
            let hs: Vec<_> = setups
                .into_iter()
                .map(|setup| {
                    let program = &program;
                    s.spawn(move || run_tcp(CpuBackend, setup, config, "test", program).unwrap())
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    #[test]
    fn programs_over_tcp_match_run_local_results_and_counters() {
        // The seeded keys make both runs reproducible; they need the opt-in.
        std::env::set_var(ALLOW_INSECURE_KEYS, "1");
        let cli = Cli::parse_from(["t", "matmul", "--m", "24", "--k", "16", "--n", "8", "--insecure-key-seed", "3"]);
        let JobCommand::Matmul(args) = cli.job else { unreachable!() };
        let job = matmul::Job::prepare(&args).unwrap();
        let config = RunConfig { codec: job.codec(), keys: job.keys(), ..RunConfig::default() };
        let local = run_local(CpuBackend, config, |p| matmul::program(p, &job)).unwrap();
        let tcp = over_tcp(config, |p| matmul::program(p, &job));
        for (l, t) in local.iter().zip(&tcp) {
            assert_eq!(l.value.0, t.value.0);
            assert_eq!(l.value.2, t.value.2);
            assert_eq!(l.counters, t.counters);
        }

        let cli = Cli::parse_from(["t", "relu", "--n", "500", "--insecure-key-seed", "3"]);
        let JobCommand::Relu(args) = cli.job else { unreachable!() };
        let job = relu::Job::prepare(&args).unwrap();
        let config = RunConfig { codec: job.codec(), keys: job.keys(), ..RunConfig::default() };
        let local = run_local(CpuBackend, config, |p| relu::program(p, &job)).unwrap();
        let tcp = over_tcp(config, |p| relu::program(p, &job));
        for (l, t) in local.iter().zip(&tcp) {
            assert_eq!(l.value.0, t.value.0);
            assert_eq!(l.value.2, t.value.2);
            assert_eq!(l.counters, t.counters);
        }
    }
}
