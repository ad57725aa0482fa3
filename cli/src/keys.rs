//! `cryptgpu keys gen --out DIR`: a self-signed certificate and key for each of the three parties,
//! and a sample configuration for a run on one host (127.0.0.1 by default).
//!
//! For a real deployment, run it once, copy `partyI.key` to machine I only (keys are written with
//! mode 0600), the three certificates to every machine, and edit the addresses in the configuration.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, Subcommand};

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

/// Writes `contents` to `path`; when `secret`, the file has mode 0600 (owner only) before anything
/// is written to it, whether it is created or overwritten (`force`).
fn write_file(path: &Path, contents: &str, secret: bool, force: bool) -> Result<()> {
    let mut opts = fs::OpenOptions::new();
    opts.write(true);
    if force {
        opts.create(true).truncate(true);
    } else {
        opts.create_new(true);
    }
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let _ = secret;
    let mut f = opts.open(path).with_context(|| {
        if path.exists() && !force {
            format!("{} exists (pass --force to overwrite)", path.display())
        } else {
            format!("cannot write {}", path.display())
        }
    })?;
    // An overwritten file keeps its old mode: set 0600 before the key is written.
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .with_context(|| format!("cannot make {} private (mode 0600)", path.display()))?;
    }
    f.write_all(contents.as_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// The sample configuration for three parties on `host`.
pub fn sample_config(host: &str, base_port: u16) -> String {
    let mut s = String::from(
        "# cryptgpu party configuration: the three parties of one deployment.\n\
         # Paths are relative to this file. Each party reads only its own `key`: on separate\n\
         # machines, give machine i only partyI.key (and all three certificates).\n",
    );
    for i in 0..3u16 {
        s += &format!(
            "\n[[party]]\nid = {i}\naddress = \"{host}:{}\"\ncertificate = \"party{i}.crt\"\nkey = \"party{i}.key\"\n",
            base_port + i
        );
    }
    s += "\n[network]\ntimeout_secs = 60\nconnect_timeout_secs = 60\nnodelay = true\n";
    s
}

fn gen(args: &GenArgs) -> Result<()> {
    if args.base_port > u16::MAX - 2 {
        bail!("--base-port must leave room for three ports");
    }
    fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    for i in 0..3 {
        let ck = rcgen::generate_simple_self_signed(vec![format!("party{i}.cryptgpu")])
            .context("generating a certificate")?;
        write_file(&args.out.join(format!("party{i}.crt")), &ck.cert.pem(), false, args.force)?;
        write_file(&args.out.join(format!("party{i}.key")), &ck.key_pair.serialize_pem(), true, args.force)?;
    }
    let config = args.out.join("cryptgpu.toml");
    write_file(&config, &sample_config(&args.host, args.base_port), false, args.force)?;
    println!("wrote party0..2.crt, party0..2.key (mode 0600) and {}", config.display());
    println!(
        "run: cryptgpu party --config {} --id I matmul --m 256 --k 256 --n 256   (I = 0, 1, 2; one process each)",
        config.display()
    );
    Ok(())
}
