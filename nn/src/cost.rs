//! The private cost of one inference forward pass, computed from the graph alone (nothing runs):
//! rounds and bytes sent by each party, from the costs the protocols of `cryptgpu-sharing`
//! document, step by step as [`PrivateEngine`](crate::private::PrivateEngine) records them in its
//! traffic map during [`infer_private`](crate::train::infer_private): `input` (the data owner
//! secret-shares the batch), one entry per labelled node (an unlabelled node counts with the next
//! labelled one, or with `reveal` after the last), and `reveal` (the logits opened to their
//! receivers). Batch norms are folded ([`Graph::fold_batchnorm`]), as private inference runs them.
//! The costs below are those of each protocol's roles; with [`CostConfig::rotate_leads`] (the
//! engine's default) the `k`-th communicating node is led by party `k mod 3` (a ReLU after a held
//! product by the product's lead), and party `p` pays role [`role_of`]`(p, lead)`.
//!
//! Costs of each op, for the `n` elements of its output (`N·C·oh·ow` windows for max pooling):
//!
//! | op | protocol | rounds and bytes per party |
//! |---|---|---|
//! | conv2d, linear, affine | product with truncation | [`product_cost`] per element |
//! | the same, followed by a ReLU ([`Graph::relu_fusions`]) | product, truncation without its last round | [`product_held_cost`] per element |
//! | avgpool2d, globalavgpool | truncation of the window sums | [`truncation_cost`] per element |
//! | avgpool2d by `2^s` into a product ([`Graph::pool_folds`]) | window sums; the product truncates `s` bits more | none |
//! | relu | MSB and `x·[b]` | [`relu_cost`] (MSB of [`CostConfig::msb`]) |
//! | relu after a held product | the same, the product's last round in the MSB's first | [`relu_truncating_cost`] |
//! | maxpool2d | tournament over the `kh·kw` window with argmax | [`max_axis_cost_with`] |
//! | flatten, add, pad | local | none |

use std::collections::BTreeMap;

use cryptgpu_sharing::arith::{input_cost, reveal_to_cost};
use cryptgpu_sharing::compare::{max_axis_cost_with, relu_cost, relu_truncating_cost};
use cryptgpu_sharing::convert::MsbVariant;
use cryptgpu_sharing::party::role_of;
use cryptgpu_sharing::trunc::{product_cost, product_held_cost, truncation_cost, TruncMode};
use serde::Serialize;

use crate::error::{NnError, Result};
use crate::graph::{Graph, Op};
use crate::private::RELU_MSB;
use crate::session::{Roles, MAX_COUNT};

/// What changes the cost of a forward pass besides the graph and the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostConfig {
    /// How fixed-point products are truncated (`RunConfig::trunc`).
    pub trunc: TruncMode,
    /// Who shares the input (`data_owner`) and who receives the logits (`output_to`).
    pub roles: Roles,
    /// The MSB protocol of ReLUs and max pools ([`PrivateEngine::msb`](crate::private::PrivateEngine::msb)).
    pub msb: MsbVariant,
    /// Whether the lead of the asymmetric protocols rotates, one communicating node at a time,
    /// from party 0 ([`PrivateEngine::rotate_leads`](crate::private::PrivateEngine::rotate_leads)
    /// on a fresh engine); otherwise party 0 leads every node.
    pub rotate_leads: bool,
}

impl Default for CostConfig {
    /// Exact truncation, the default roles, the engine's default MSB ([`RELU_MSB`]) and rotating
    /// leads.
    fn default() -> Self {
        CostConfig { trunc: TruncMode::default(), roles: Roles::default(), msb: RELU_MSB, rotate_leads: true }
    }
}

/// Rounds and bytes sent by each party in one step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StepCost {
    /// Rounds (the same at every party).
    pub rounds: u64,
    /// Bytes sent by parties 0, 1 and 2.
    pub bytes_sent_per_party: [u64; 3],
}

impl StepCost {
    /// The cost of a protocol whose cost at party `p` is `f(p)` = (rounds, bytes).
    fn of(f: impl Fn(usize) -> (u64, u64)) -> StepCost {
        StepCost { rounds: f(0).0, bytes_sent_per_party: std::array::from_fn(|p| f(p).1) }
    }

    /// A protocol costing `f(p)` = (rounds, bytes per element) on each of `n` elements at once.
    fn per_element(n: usize, f: impl Fn(usize) -> (u64, u64)) -> StepCost {
        StepCost::of(|p| {
            let (r, b) = f(p);
            (r, b * n as u64)
        })
    }

    /// The cost when `lead` leads the asymmetric protocols: party `p` pays what role
    /// [`role_of`]`(p, lead)` pays under lead 0.
    fn led_by(self, lead: usize) -> StepCost {
        StepCost {
            rounds: self.rounds,
            bytes_sent_per_party: std::array::from_fn(|p| self.bytes_sent_per_party[role_of(p, lead)]),
        }
    }

    /// The cost of this step followed by `other`.
    pub fn then(self, other: StepCost) -> StepCost {
        StepCost {
            rounds: self.rounds + other.rounds,
            bytes_sent_per_party: std::array::from_fn(|p| self.bytes_sent_per_party[p] + other.bytes_sent_per_party[p]),
        }
    }
}

/// One labelled node of the forward pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeCost {
    /// The node's label, as in the engine's traffic map.
    pub label: String,
    /// The op's name ([`Op::name`]).
    pub op: &'static str,
    /// The output shape at the given batch.
    pub output_shape: Vec<usize>,
    /// Parameters the node computes with (and those of the unlabelled nodes counted with it).
    pub params: usize,
    /// Its communication (with that of the unlabelled nodes counted with it).
    #[serde(flatten)]
    pub cost: StepCost,
}

/// The private cost of one inference forward pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ForwardCost {
    /// The graph's name.
    pub model: String,
    /// Examples per pass.
    pub batch: usize,
    /// Secret-sharing the input batch (by the data owner).
    pub input: StepCost,
    /// The labelled nodes in order.
    pub nodes: Vec<NodeCost>,
    /// Opening the logits to their receivers (and any unlabelled nodes after the last labelled one).
    pub reveal: StepCost,
    /// Parameters of the inference graph (batch norms folded: scale and shift per channel).
    pub params: usize,
    /// The whole pass: input, nodes and reveal.
    pub total: StepCost,
}

impl ForwardCost {
    /// The cost per label (`input`, node labels, `reveal`), summed over nodes that share a label:
    /// what the engine's traffic map holds for the pass.
    pub fn by_label(&self) -> BTreeMap<String, StepCost> {
        let mut out = BTreeMap::new();
        let steps = std::iter::once(("input", self.input))
            .chain(self.nodes.iter().map(|n| (n.label.as_str(), n.cost)))
            .chain(std::iter::once(("reveal", self.reveal)));
        for (label, c) in steps {
            let e: &mut StepCost = out.entry(label.to_string()).or_default();
            *e = e.then(c);
        }
        out
    }
}

/// How a node runs with its neighbours ([`Graph::relu_fusions`]).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fusion {
    /// On its own.
    None,
    /// A product whose truncation's last round the next node (a ReLU) sends.
    Held,
    /// A ReLU sending the held round of the product before it.
    AfterHeld,
}

/// The communication of one node computing `out` (the output shape).
fn op_cost(op: &Op, out: &[usize], config: &CostConfig, fusion: Fusion) -> StepCost {
    let (trunc, msb) = (config.trunc, config.msb);
    let n: usize = out.iter().product();
    match op {
        Op::Conv2d { .. } | Op::Linear { .. } | Op::BatchNorm { .. } | Op::Affine { .. } => match fusion {
            Fusion::Held => StepCost::per_element(n, |p| product_held_cost(trunc, p)),
            _ => StepCost::per_element(n, |p| product_cost(trunc, p)),
        },
        Op::AvgPool2d { .. } | Op::GlobalAvgPool => StepCost::per_element(n, |p| truncation_cost(trunc, p)),
        Op::Relu => match fusion {
            Fusion::AfterHeld => StepCost::of(|p| relu_truncating_cost(msb, trunc, p, n)),
            _ => StepCost::of(|p| relu_cost(msb, p, n)),
        },
        Op::MaxPool2d { kernel, .. } => StepCost::of(|p| max_axis_cost_with(msb, p, n, kernel.0 * kernel.1, true)),
        Op::Flatten | Op::Add | Op::Pad { .. } => StepCost::default(),
    }
}

/// The private cost of one inference forward pass of `graph` on `batch` examples, with the
/// input shared by `config.roles.data_owner` and the logits opened to `config.roles.output_to`
/// (see the [module docs](self)). Errors: a batch of 0 or above [`MAX_COUNT`], invalid roles, or
/// a graph that fails [`Graph::check`].
///
/// ```rust
/// use cryptgpu_nn::cost::{forward_cost, CostConfig};
/// use cryptgpu_nn::session::{Receivers, Roles};
/// use cryptgpu_nn::zoo::{lenet, Pool};
///
/// let graph = lenet(Pool::Avg).to_graph();
/// let cost = forward_cost(&graph, 1, &CostConfig::default())?;
/// // The first convolution: 20x24x24 outputs, each a product with exact truncation whose last
/// // round (24, 8 and 8 B per element) the ReLU after it sends with its MSB's first round (1
/// // round; 0, 8 and 8 B).
/// let conv = &cost.nodes[0];
/// assert_eq!((conv.label.as_str(), conv.op, conv.params), ("0:features.0", "conv2d", 520));
/// assert_eq!(conv.cost.rounds, 1);
/// assert_eq!(conv.cost.bytes_sent_per_party, [0, 8 * 11520, 8 * 11520]);
/// // The average pooling's division by 4 joins the next convolution's truncation.
/// assert_eq!(cost.nodes[2].cost.rounds, 0);
/// assert_eq!(cost.total.rounds, 28);
/// // Everything at party 0: party 0 sends the 784 pixels, party 2 opens the 10 logits to it.
/// assert_eq!(cost.input.bytes_sent_per_party, [8 * 784, 0, 0]);
/// assert_eq!(cost.reveal.bytes_sent_per_party, [0, 0, 8 * 10]);
/// // A client (party 1) that shares the image and alone receives the logits.
/// let client = CostConfig { roles: Roles::new(0, 1, Receivers::only(1))?, ..CostConfig::default() };
/// let c = forward_cost(&graph, 1, &client)?;
/// assert_eq!((c.input.bytes_sent_per_party, c.reveal.bytes_sent_per_party), ([0, 6272, 0], [80, 0, 0]));
/// assert_eq!(c.total.rounds, cost.total.rounds);
/// # Ok::<(), cryptgpu_nn::NnError>(())
/// ```
pub fn forward_cost(graph: &Graph, batch: usize, config: &CostConfig) -> Result<ForwardCost> {
    if batch == 0 || batch as u64 > MAX_COUNT {
        return Err(NnError::Shape(format!("the batch must be 1 to {MAX_COUNT}, got {batch}")));
    }
    config.roles.check()?;
    let g = graph.fold_batchnorm();
    let shapes = g.check(batch)?;
    let sizes: BTreeMap<&str, usize> = g.params.iter().map(|(n, s)| (n.as_str(), s.iter().product())).collect();
    let shape = |v: &str| shapes.get(v).map(Vec::as_slice).unwrap_or_default();
    let roles = config.roles;
    let input = StepCost::of(|p| input_cost(roles.data_owner, p, shape(&g.input).iter().product()));
    let (mut pending, mut pending_params) = (StepCost::default(), 0);
    let mut nodes = Vec::new();
    let (fusions, folds) = (g.relu_fusions(), g.pool_folds());
    // The engine's lead rotation: each communicating node takes the next lead, a ReLU after a held
    // product that product's.
    let (mut leads, mut held_lead) = (0usize, 0usize);
    for (i, node) in g.nodes.iter().enumerate() {
        let out = shape(&node.output);
        let fusion = match (fusions[i], i > 0 && fusions[i - 1]) {
            (true, _) => Fusion::Held,
            (false, true) => Fusion::AfterHeld,
            (false, false) => Fusion::None,
        };
        let folded = folds[i] > 0 && matches!(node.op, Op::AvgPool2d { .. });
        let mut cost = if folded { StepCost::default() } else { op_cost(&node.op, out, config, fusion) };
        if config.rotate_leads && cost.rounds > 0 {
            let lead = if fusion == Fusion::AfterHeld {
                held_lead
            } else {
                leads += 1;
                (leads - 1) % 3
            };
            held_lead = lead;
            cost = cost.led_by(lead);
        }
        pending = pending.then(cost);
        pending_params += node.op.param_names().iter().map(|p| sizes[p]).sum::<usize>();
        if !node.label.is_empty() {
            nodes.push(NodeCost {
                label: node.label.clone(),
                op: node.op.name(),
                output_shape: out.to_vec(),
                params: std::mem::take(&mut pending_params),
                cost: std::mem::take(&mut pending),
            });
        }
    }
    let logits: usize = shape(&g.output).iter().product();
    let reveal = roles.output_to.iter().fold(pending, |c, to| c.then(StepCost::of(|p| reveal_to_cost(to, p, logits))));
    let total = nodes.iter().fold(input, |t, n| t.then(n.cost)).then(reveal);
    Ok(ForwardCost { model: g.name.clone(), batch, input, nodes, reveal, params: sizes.values().sum(), total })
}
