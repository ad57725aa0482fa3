//! `cryptgpu inspect`: a model's layers with their shapes and parameters, and the private cost of
//! one inference forward pass (rounds and bytes sent by each party, from the protocols'
//! documented costs, `cryptgpu_nn::cost`) before anything runs.

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use cryptgpu_nn::cost::{forward_cost, CostConfig, ForwardCost, StepCost};
use cryptgpu_nn::graph::Graph;
use cryptgpu_nn::onnx::{strip_weights, Lowering};
use cryptgpu_nn::zoo::by_name;

use crate::learn::{DataChoice, RoleArgs};
use crate::model::{is_onnx, NamedModel};

/// Pooling of a zoo model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolChoice {
    /// Average pooling everywhere (the paper's variant).
    Avg,
    /// Max pooling where the original architecture has it (as the `-maxpool` suffix).
    Max,
}

/// Arguments of `cryptgpu inspect`.
#[derive(ClapArgs, Debug)]
pub struct Args {
    /// A zoo model (lenet, alexnet, vgg16, resnet18/34/50/101/152, optionally -maxpool) or an
    /// ONNX file (`.onnx`).
    model: String,
    /// The dataset geometry a zoo model is built for.
    #[arg(long, value_enum, default_value_t = DataChoice::Mnist)]
    dataset: DataChoice,
    /// Pooling of a zoo model (default: as its name says).
    #[arg(long, value_enum)]
    pool: Option<PoolChoice>,
    /// Examples per forward pass.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Who shares the input and who receives the logits (the model owner does not change the
    /// cost of a forward pass).
    #[command(flatten)]
    roles: RoleArgs,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write the ONNX file with every weight set to zero to this path: the architecture
    /// for the parties other than the model owner of a three-machine run (`cryptgpu party`).
    #[arg(long)]
    strip_weights: Option<std::path::PathBuf>,
}

/// What `--json` prints.
#[derive(serde::Serialize)]
struct Report<'a> {
    op: &'static str,
    roles: String,
    #[serde(flatten)]
    cost: &'a ForwardCost,
}

/// The zoo name with the pooling asked for.
fn zoo_name(model: &str, pool: Option<PoolChoice>) -> Result<String> {
    match (pool, model.ends_with("-maxpool")) {
        (Some(PoolChoice::Max), false) => Ok(format!("{model}-maxpool")),
        (Some(PoolChoice::Avg), true) => bail!("{model} is a max-pool model; --pool avg contradicts it"),
        _ => Ok(model.to_string()),
    }
}

/// The graph of the model argument: a zoo model, or an ONNX file.
fn graph_for(args: &Args) -> Result<Graph> {
    if !is_onnx(&args.model) {
        return Ok(by_name(&zoo_name(&args.model, args.pool)?, args.dataset.dataset())?.to_graph());
    }
    if args.pool.is_some() {
        bail!("--pool applies to zoo models, not to {}", args.model);
    }
    let model = NamedModel::resolve(&args.model, args.dataset.dataset(), Lowering::Inference)?;
    if let Some(note) = model.head_note() {
        eprintln!("{note}");
    }
    Ok(model.graph)
}

/// `1.5 MiB`, `312 B`.
fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut unit) = (bytes as f64, 0);
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// One line of the table.
fn row(label: &str, op: &str, shape: &str, params: &str, c: &StepCost) -> String {
    let [b0, b1, b2] = c.bytes_sent_per_party.map(human);
    format!("{label:<34} {op:<14} {shape:<18} {params:>10} {:>7} {b0:>10} {b1:>10} {b2:>10}", c.rounds)
}

/// The table: input, one row per labelled node, reveal, totals.
fn table(c: &ForwardCost, roles: &str) -> String {
    let mut out = format!("{} at batch {} ({roles}), one private inference forward pass\n", c.model, c.batch);
    out.push_str(&format!(
        "{:<34} {:<14} {:<18} {:>10} {:>7} {:>10} {:>10} {:>10}\n",
        "label", "op", "output", "params", "rounds", "party 0", "party 1", "party 2"
    ));
    out.push_str(&row("input", "share", "", "", &c.input));
    out.push('\n');
    for n in &c.nodes {
        out.push_str(&row(&n.label, n.op, &format!("{:?}", n.output_shape), &n.params.to_string(), &n.cost));
        out.push('\n');
    }
    out.push_str(&row("reveal", "open", "", "", &c.reveal));
    out.push('\n');
    out.push_str(&row("total", "", "", &c.params.to_string(), &c.total));
    out.push('\n');
    out
}

/// `cryptgpu inspect`.
pub fn run(args: &Args) -> Result<()> {
    let graph = graph_for(args)?;
    if let Some(out) = &args.strip_weights {
        if !is_onnx(&args.model) {
            bail!("--strip-weights applies to ONNX files, not to the zoo model {}", args.model);
        }
        let bytes = std::fs::read(&args.model).with_context(|| format!("reading {}", args.model))?;
        std::fs::write(out, strip_weights(&bytes)?).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("wrote {} without its weights to {}", args.model, out.display());
    }
    let roles = args.roles.roles()?;
    let cost = forward_cost(&graph, args.batch, &CostConfig { roles, ..CostConfig::default() })?;
    if args.json {
        println!("{}", serde_json::to_string(&Report { op: "inspect", roles: roles.label(), cost: &cost })?);
    } else {
        print!("{}", table(&cost, &roles.label()));
    }
    Ok(())
}
