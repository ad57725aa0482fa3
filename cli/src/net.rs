//! `--net`: the links between the three parties, one option shared by every command that runs
//! them (in-process runs, benchmarks and `cryptgpu party` jobs).
//!
//! In a `cryptgpu party` job the link model is a public job parameter: it enters the job tag
//! (with the other public parameters, see [`cryptgpu_sharing::run_tcp`]), so the three processes
//! must be started with the same `--net`. It adds the modelled delays on top of the real
//! network's, which is meant for three processes on one host (a network rehearsal without the
//! network); between machines, leave it at `none`. The benchmarks take a list ([`NetListArgs`]).

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

/// The `--net` option of the benchmarks: one or more link models, each measured in turn.
#[derive(ClapArgs, Debug, Clone)]
pub struct NetListArgs {
    /// Shape the links between the parties, as for the other commands: `none`, `lan` (0.2 ms one
    /// way, 5 Gbit/s), `wan` (35 ms, 320 Mbit/s) or `LATENCY_MS,GBITPS`. `train` and `infer`
    /// measure every point once per model given: repeat the option, e.g. `--net none --net lan
    /// --net wan` (`conv` and `relu` take one). Default `none` only: shaped runs really wait out
    /// every modelled delay (a quick `train` under `wan` takes several times as long).
    #[arg(
        id = "net",
        long = "net",
        value_name = "none|lan|wan|MS,GBITPS",
        default_value = "none",
        action = clap::ArgAction::Append,
        value_parser = parse_link
    )]
    pub links: Vec<LinkModel>,
}

impl NetListArgs {
    /// Fails when a link model is given twice.
    pub fn check(&self) -> anyhow::Result<()> {
        for (i, l) in self.links.iter().enumerate() {
            if self.links[..i].contains(l) {
                anyhow::bail!("--net {l} is given twice");
            }
        }
        Ok(())
    }
}

/// A [`LinkModel`], with a hint when a list was written with commas (a comma belongs to the
/// `LATENCY_MS,GBITPS` form).
fn parse_link(s: &str) -> Result<LinkModel, String> {
    s.parse::<LinkModel>().map_err(|e| {
        let names = ["none", "lan", "wan"];
        if s.split(',').any(|p| names.contains(&p.trim())) {
            let repeated: Vec<String> = s.split(',').map(|p| format!("--net {}", p.trim())).collect();
            format!("{e}; to measure several link models, repeat the option: {}", repeated.join(" "))
        } else {
            e.to_string()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        net: NetListArgs,
    }

    fn parse(args: &[&str]) -> Result<Vec<LinkModel>, String> {
        let cli = Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied())).map_err(|e| e.to_string())?;
        cli.net.check().map_err(|e| e.to_string())?;
        Ok(cli.net.links)
    }

    #[test]
    fn link_lists() {
        assert_eq!(parse(&[]).unwrap(), [LinkModel::NONE]);
        assert_eq!(parse(&["--net", "lan"]).unwrap(), [LinkModel::LAN]);
        let custom = LinkModel::new(std::time::Duration::from_millis(20), 1.0).unwrap();
        assert_eq!(
            parse(&["--net", "none", "--net", "lan", "--net", "wan", "--net", "20,1"]).unwrap(),
            [LinkModel::NONE, LinkModel::LAN, LinkModel::WAN, custom]
        );
    }

    #[test]
    fn bad_link_lists() {
        let e = parse(&["--net", "lan,wan"]).unwrap_err();
        assert!(e.contains("repeat the option: --net lan --net wan"), "{e}");
        let e = parse(&["--net", "lan", "--net", "lan"]).unwrap_err();
        assert!(e.contains("--net lan is given twice"), "{e}");
        let e = parse(&["--net", "fast"]).unwrap_err();
        assert!(e.contains("bad link model") && !e.contains("repeat"), "{e}");
    }
}
