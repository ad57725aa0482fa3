//! `cryptgpu keys gen --out DIR`: a self-signed certificate and key for each of the three parties,
//! and a sample configuration for a run on one host (127.0.0.1 by default).
//!
//! For a real deployment, run it once, copy `partyI.key` to machine I only (keys are written with
//! mode 0600), the three certificates to every machine, and edit the addresses in the configuration.

use anyhow::{bail, Result};
use clap::{Args as ClapArgs, Subcommand};
use cryptgpu_net::deploy::generate_local;
use cryptgpu_net::DeployError;

/// Key management.
#[derive(Subcommand, Debug)]
pub enum Keys {
    /// Writes party0..2.crt/.key (self-signed, ECDSA P-256) and a sample cryptgpu.toml.
    Gen(GenArgs),
}

/// Arguments of `cryptgpu keys gen`.
#[derive(ClapArgs, Debug)]
pub struct GenArgs {
    /// Directory to write into (created if missing).
    #[arg(long)]
    out: std::path::PathBuf,
    /// Host or IP address of all three parties in the sample configuration.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Party i listens on port base_port + i in the sample configuration.
    #[arg(long, default_value_t = 7100)]
    base_port: u16,
    /// Overwrite existing files.
    #[arg(long)]
    force: bool,
}

/// Runs `cryptgpu keys`.
pub fn run(k: &Keys) -> Result<()> {
    match k {
        Keys::Gen(args) => gen(args),
    }
}

fn gen(args: &GenArgs) -> Result<()> {
    if args.base_port > u16::MAX - 2 {
        bail!("--base-port must leave room for three ports");
    }
    let host = args.host.as_str();
    let config = match generate_local(&args.out, [host; 3], args.base_port, args.force) {
        Err(DeployError::Exists(path)) => bail!("{} exists (pass --force to overwrite)", path.display()),
        other => other?,
    };
    println!("wrote party0..2.crt, party0..2.key (mode 0600) and {}", config.display());
    println!(
        "run: cryptgpu party --config {} --id I matmul --m 256 --k 256 --n 256   (I = 0, 1, 2; one process each)",
        config.display()
    );
    Ok(())
}
