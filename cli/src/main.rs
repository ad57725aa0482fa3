//! `cryptgpu`: private machine learning with three-party secure computation.

mod bench;
mod device;
mod inspect;
mod keys;
mod learn;
mod matmul;
mod model;
mod net;
mod party;
mod prep;
mod relu;
mod selftest;
mod softmax;

use clap::{Parser, Subcommand};

/// mimalloc reuses freed memory instead of returning it to the OS: protocols allocate and free
/// many large tensors, and the default allocator's page faults cost about a fifth of the run time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc's option setter, from the static library that `mimalloc` links in.
extern "C" {
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` (the same index in mimalloc v2 and v3).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Keeps freed memory committed: by default mimalloc hands freed pages back to the OS after
/// 10 ms, and the next tensor of the same size faults them in again, zeroed by the kernel (a
/// private ReLU on 4 M values spent 60% of its time there: 8.0 s, about 3 s with this). The resident
/// size stays at its peak, which a party needs again at the next batch anyway.
fn keep_freed_memory() {
    // SAFETY: `mi_option_set` only stores an integer in mimalloc's option table (any value is
    // valid for an index below `_mi_option_last`); 15 is `purge_delay` in mimalloc's header.
    unsafe {
        mi_option_set(MI_OPTION_PURGE_DELAY, -1);
    }
}

/// Private three-party computation over Z_2^64 (replicated secret sharing), on the CPU or GPU.
#[derive(Parser)]
#[command(name = "cryptgpu", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Private LeNet training on the shipped MNIST sample, then private inference (no arguments needed).
    Demo(learn::DemoArgs),
    /// Private training of a zoo model, with its plaintext twin for comparison.
    Train(learn::TrainArgs),
    /// Private inference with given weights (safetensors), compared with the plaintext model.
    Infer(learn::InferArgs),
    /// A model's layers, shapes, parameters and the private cost of one forward pass (nothing runs).
    Inspect(inspect::Args),
    /// Private fixed-point matrix product: party 0 shares an M x K matrix, party 1 a K x N one.
    Matmul(matmul::Args),
    /// Private ReLU: party 0 shares N fixed-point values; reports rounds, bytes and mismatches.
    Relu(relu::Args),
    /// Private softmax over the last axis of an R x C matrix of logits shared by party 0.
    Softmax(softmax::Args),
    /// Runs every backend operation and protocol on a device and compares it with the CPU oracle.
    Selftest(selftest::Args),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(bench::Bench),
    /// Runs a job as one party of three processes or machines (TCP with mutual TLS).
    Party(party::Args),
    /// Key management for `party` runs.
    #[command(subcommand)]
    Keys(keys::Keys),
}

fn main() {
    keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => learn::demo(&args),
        Command::Train(args) => learn::train(&args),
        Command::Infer(args) => learn::infer(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Matmul(args) => matmul::run(&args),
        Command::Relu(args) => relu::run(&args),
        Command::Softmax(args) => softmax::run(&args),
        Command::Selftest(args) => selftest::run(&args),
        Command::Bench(b) => bench::run(&b),
        Command::Party(args) => party::run(&args),
        Command::Keys(k) => keys::run(&k),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every command's arguments are consistent (unique names, valid defaults).
    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
