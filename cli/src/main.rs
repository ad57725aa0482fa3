//! `cryptgpu`: private machine learning with three-party secure computation.

mod matmul;

use clap::{Parser, Subcommand, ValueEnum};

/// Private three-party computation over Z_2^64 (replicated secret sharing), on the CPU or GPU.
#[derive(Parser)]
#[command(name = "cryptgpu", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Private fixed-point matrix product: party 0 shares an M x K matrix, party 1 a K x N one.
    Matmul(matmul::Args),
}

/// Which device runs the parties' local computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendChoice {
    /// The GPU when one is usable, else the CPU.
    Auto,
    /// The rayon CPU backend.
    Cpu,
}

impl BackendChoice {
    /// The backend actually used (only the CPU backend exists in this build).
    pub fn resolve(self) -> &'static str {
        "cpu"
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Matmul(args) => matmul::run(&args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
