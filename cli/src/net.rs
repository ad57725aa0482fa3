//! `--net`: the links between the three parties, one option shared by every command that runs
//! them (in-process runs, benchmarks and `cryptgpu party` jobs).
//!
//! In a `cryptgpu party` job the link model is a public job parameter: it enters the job tag
//! (with the other public parameters, see [`cryptgpu_sharing::run_tcp`]), so the three processes
//! must be started with the same `--net`. It adds the modelled delays on top of the real
//! network's, which is meant for three processes on one host (a network rehearsal without the
//! network); between machines, leave it at `none`.

use clap::Args as ClapArgs;
use cryptgpu_net::LinkModel;

/// The `--net` option.
#[derive(ClapArgs, Debug, Clone, Copy)]
pub struct NetArgs {
    /// Shape the links between the parties: `none` (free and instant), `lan` (0.2 ms one way,
    /// 5 Gbit/s), `wan` (35 ms one way, 320 Mbit/s; both Falcon's evaluation settings) or
    /// `LATENCY_MS,GBITPS` (one-way latency in milliseconds, bandwidth in Gbit/s).
    #[arg(id = "net", long = "net", value_name = "none|lan|wan|MS,GBITPS", default_value = "none")]
    pub link: LinkModel,
}
