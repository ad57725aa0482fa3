//! The analytic cost of a private inference forward pass ([`forward_cost`]) against what a real
//! run of [`infer_private`] measures, label by label and party by party.

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_nn::cost::{forward_cost, CostConfig, StepCost};
use cryptgpu_nn::data::Images;
use cryptgpu_nn::engine::{Model, Phase};
use cryptgpu_nn::graph::{Graph, Node, Op};
use cryptgpu_nn::private::{PrivateEngine, Traffic};
use cryptgpu_nn::session::{share, Receivers, Roles};
use cryptgpu_nn::train::infer_private;
use cryptgpu_nn::weights::{fold_graph_batchnorm, init_graph_params};
use cryptgpu_nn::zoo::{lenet, resnet, vgg16, Dataset, Pool};
use cryptgpu_nn::NnError;
use cryptgpu_sharing::trunc::TruncMode;
use cryptgpu_sharing::{run_local, RunConfig};

#[allow(dead_code)]
mod onnx_common;

fn node(label: &str, op: Op, inputs: &[&str], output: &str) -> Node {
    Node { label: label.into(), op, inputs: inputs.iter().map(|s| s.to_string()).collect(), output: output.into() }
}

fn conv(w: &str, b: Option<&str>, padding: [usize; 4]) -> Op {
    Op::Conv2d { weight: w.into(), bias: b.map(Into::into), stride: (1, 1), padding }
}

fn batchnorm(name: &str) -> Op {
    let [weight, bias, running_mean, running_var] =
        ["weight", "bias", "running_mean", "running_var"].map(|p| format!("{name}.{p}"));
    Op::BatchNorm { weight, bias, running_mean, running_var, eps: 1e-5 }
}

/// Every op kind: a convolution with asymmetric padding and no bias, a batch norm over channels,
/// an unlabelled ReLU (counted with the next node), a zero pad, max pooling with padding (9
/// candidates, an odd tree), two branches joined by a labelled add, average pooling without and
/// with counted padding, flatten, global average pooling, a linear layer, a batch norm over
/// features and an unlabelled linear layer without bias at the end (counted with `reveal`).
fn every_op() -> Graph {
    let p = |n: &str, s: &[usize]| (n.to_string(), s.to_vec());
    let bn = |n: &str, c: usize| {
        ["weight", "bias", "running_mean", "running_var"].map(|q| p(&format!("{n}.{q}"), &[c])).to_vec()
    };
    let mut params = vec![p("c0.weight", &[3, 2, 3, 3])];
    params.extend(bn("bn0", 3));
    params.extend([
        p("c1.weight", &[4, 3, 3, 3]),
        p("c1.bias", &[4]),
        p("c2.weight", &[4, 3, 1, 1]),
        p("fc1.weight", &[4, 48]),
        p("fc1.bias", &[4]),
    ]);
    params.extend(bn("bn1", 4));
    params.push(p("fc2.weight", &[3, 4]));
    let avg = |k: usize, pad: usize, count_include_pad: bool| Op::AvgPool2d {
        kernel: (k, k),
        stride: (1, 1),
        padding: (pad, pad),
        count_include_pad,
    };
    Graph {
        name: "every-op".into(),
        input: "x".into(),
        input_shape: vec![2, 7, 7],
        output: "logits".into(),
        classes: 3,
        params,
        nodes: vec![
            node("conv0", conv("c0.weight", None, [1, 0, 2, 1]), &["x"], "c0"),
            node("bn0", batchnorm("bn0"), &["c0"], "b0"),
            node("", Op::Relu, &["b0"], "a"),
            node("pad", Op::Pad { pads: [0, 1, 1, 0] }, &["a"], "padded"),
            node("maxpool", Op::MaxPool2d { kernel: (3, 3), stride: (2, 2), padding: (1, 1) }, &["padded"], "m"),
            node("c1", conv("c1.weight", Some("c1.bias"), [1; 4]), &["m"], "c1"),
            node("relu1", Op::Relu, &["c1"], "r1"),
            node("c2", conv("c2.weight", None, [0; 4]), &["m"], "c2"),
            node("add", Op::Add, &["r1", "c2"], "sum"),
            node("avgpool", avg(3, 1, false), &["sum"], "p1"),
            node("avgpool2", avg(2, 0, true), &["p1"], "p2"),
            node("flatten", Op::Flatten, &["p2"], "flat"),
            node("fc1", Op::Linear { weight: "fc1.weight".into(), bias: Some("fc1.bias".into()) }, &["flat"], "h"),
            node("relu2", Op::Relu, &["h"], "hr"),
            node("gap", Op::GlobalAvgPool, &["p2"], "g"),
            node("add2", Op::Add, &["hr", "g"], "hg"),
            node("bn1", batchnorm("bn1"), &["hg"], "hn"),
            node("", Op::Linear { weight: "fc2.weight".into(), bias: None }, &["hn"], "logits"),
        ],
    }
}

/// One private inference pass of `graph` over `batch` random images ([`infer_private`]), the
/// model shared by party 0: the traffic map of each party.
fn measure(graph: &Graph, batch: usize, config: &CostConfig) -> [Traffic; 3] {
    let params = fold_graph_batchnorm(graph, &init_graph_params(graph, 7)).unwrap();
    let folded = graph.fold_batchnorm();
    let [c, h, w] = <[usize; 3]>::try_from(graph.input_shape.as_slice()).expect("image input");
    let images = Images {
        shape: [c, h, w],
        pixels: (0..batch * c * h * w).map(|i| (i * 37 % 256) as u8).collect(),
        labels: vec![0; batch],
        classes: graph.classes,
        mean: vec![0.5; c],
        std: vec![0.25; c],
    };
    let roles = config.roles;
    let run = RunConfig { trunc: config.trunc, ..RunConfig::default() };
    let out = run_local(CpuBackend, run, |party| {
        let owner = party.id() == 0;
        let mut shared = std::collections::BTreeMap::new();
        for (name, shape) in &folded.params {
            shared.insert(name.clone(), share(party, 0, owner.then(|| &params[name]), shape)?);
        }
        let model = Model::from_graph(graph.clone(), shared, &PrivateEngine::new(party))?;
        let data = (party.id() == roles.data_owner).then_some(&images);
        Ok::<_, NnError>(infer_private(party, &model, &roles, data, batch, batch, &mut ())?.traffic)
    })
    .unwrap();
    out.map(|o| o.value)
}

/// The analytic costs equal the measured ones for every label and party, and nothing else was
/// measured.
fn check(graph: &Graph, batch: usize, config: CostConfig) {
    let cost = forward_cost(graph, batch, &config).unwrap();
    let want = cost.by_label();
    let got = measure(graph, batch, &config);
    for (p, traffic) in got.iter().enumerate() {
        let labels: Vec<&String> = traffic.keys().map(|(l, _)| l).collect();
        assert_eq!(labels, want.keys().collect::<Vec<_>>(), "{} batch {batch}: labels of party {p}", graph.name);
        for ((label, phase), c) in traffic {
            assert_eq!(*phase, Phase::Forward);
            let w = want[label];
            assert_eq!(
                (c.rounds, c.bytes_sent),
                (w.rounds, w.bytes_sent_per_party[p]),
                "{} batch {batch} {config:?}: {label} at party {p}",
                graph.name
            );
        }
    }
    let sum = want.values().fold(StepCost::default(), |a, c| a.then(*c));
    assert_eq!(sum, cost.total);
}

fn config(data_owner: usize, output_to: &[usize]) -> CostConfig {
    let roles = Roles::new(0, data_owner, Receivers::of(output_to).unwrap()).unwrap();
    CostConfig { roles, ..CostConfig::default() }
}

#[test]
fn lenet_costs_match_a_run() {
    for pool in [Pool::Avg, Pool::Max] {
        let g = lenet(pool).to_graph();
        check(&g, 1, CostConfig::default());
        check(&g, 3, config(1, &[1]));
    }
}

#[test]
fn every_op_costs_match_a_run() {
    let g = every_op();
    check(&g, 1, CostConfig::default());
    check(&g, 3, config(2, &[0, 1]));
    check(&g, 3, CostConfig { trunc: TruncMode::Probabilistic, ..config(1, &[2]) });
}

#[test]
fn rows_carry_shapes_params_and_the_unlabelled_nodes() {
    let g = every_op();
    let c = forward_cost(&g, 3, &CostConfig::default()).unwrap();
    let row = |l: &str| c.nodes.iter().find(|n| n.label == l).unwrap();
    assert_eq!(c.nodes.len(), 16);
    assert_eq!(
        (row("conv0").op, row("conv0").output_shape.as_slice(), row("conv0").params),
        ("conv2d", &[3, 3, 8, 6][..], 54)
    );
    // The folded batch norms: a scale and a shift per channel.
    assert_eq!((row("bn0").op, row("bn1").op, row("bn1").params), ("affine", "affine", 8));
    assert_eq!(row("maxpool").output_shape, [3, 3, 5, 4]);
    assert_eq!((row("add").cost, row("flatten").cost), (StepCost::default(), StepCost::default()));
    // The unlabelled ReLU after bn0 counts with pad (7 rounds: the low-latency MSB and `x·[b]`,
    // bn0's last round in the MSB's first), the unlabelled fc2 with reveal (2 product rounds and
    // one opening; fc2's product led by party 1, the lead rotating node by node).
    assert_eq!(row("pad").cost.rounds, 7);
    assert_eq!(row("relu1").cost.rounds, 7);
    assert_eq!(c.reveal.rounds, 3);
    assert_eq!(c.reveal.bytes_sent_per_party, [16 * 9, 24 * 9, 16 * 9 + 8 * 9]);
    assert_eq!(c.params, 54 + 6 + 112 + 12 + 196 + 8 + 12);
    assert_eq!(c.params, g.fold_batchnorm().params.iter().map(|(_, s)| s.iter().product::<usize>()).sum::<usize>());
}

#[test]
fn zoo_costs_without_a_run() {
    let r18 = forward_cost(&resnet(18, Pool::Avg).unwrap().to_graph(), 1, &CostConfig::default()).unwrap();
    let vgg = forward_cost(&vgg16(Dataset::Cifar10, Pool::Max).unwrap().to_graph(), 2, &CostConfig::default()).unwrap();
    for c in [&r18, &vgg] {
        assert!(c.total.rounds > 0 && c.total.bytes_sent_per_party.iter().all(|&b| b > 0), "{}", c.model);
        assert!(c.nodes.iter().all(|n| n.label.contains(':')), "{}", c.model);
    }
    assert_eq!(r18.params, 11_689_512);
    // Pinned (computed once; 282 rounds before the truncations held into the ReLUs' first round
    // and the low-latency MSB, 239 before the one-round exact truncation). The lead rotating per
    // node and each ReLU's `x·[b]` led by the party after its MSB's lead spread the asymmetric
    // protocols' traffic: the busiest party sends 29% less than when party 0 led everything
    // (341,735,520 / 206,945,568 / 152,241,248 B), 16% less than with a fixed lead (below), the
    // same bytes in all.
    assert_eq!(r18.total, StepCost { rounds: 196, bytes_sent_per_party: [235_248_416, 242_538_784, 223_135_136] });
    let fixed = CostConfig { rotate_leads: false, ..CostConfig::default() };
    let r18_fixed = forward_cost(&resnet(18, Pool::Avg).unwrap().to_graph(), 1, &fixed).unwrap();
    assert_eq!(
        r18_fixed.total,
        StepCost { rounds: 196, bytes_sent_per_party: [287_023_200, 206_945_568, 206_953_568] }
    );
    let sum = |c: &StepCost| c.bytes_sent_per_party.iter().sum::<u64>();
    assert_eq!(sum(&r18.total), sum(&r18_fixed.total));
}

#[test]
fn bad_requests_are_errors() {
    let g = lenet(Pool::Avg).to_graph();
    let err = |b: usize, c: CostConfig| forward_cost(&g, b, &c).unwrap_err().to_string();
    assert!(err(0, CostConfig::default()).contains("batch"));
    assert!(err(1 << 30, CostConfig::default()).contains("batch"));
    let roles = Roles { data_owner: 3, ..Roles::default() };
    assert!(err(1, CostConfig { roles, ..CostConfig::default() }).contains("data owner"));
    let mut bad = g.clone();
    bad.nodes[3].inputs = vec!["nowhere".into()];
    let e = forward_cost(&bad, 1, &CostConfig::default()).unwrap_err().to_string();
    assert!(e.contains("nowhere") && e.contains("3:features.3"), "{e}");
}

/// The PyTorch exports of ../shared/data/onnx, lowered for inference, cost what they measure.
#[test]
fn onnx_fixture_costs_match_a_run() {
    let Some(dir) = onnx_common::onnx_dir() else { return };
    for name in onnx_common::MODELS {
        let onnx = cryptgpu_nn::onnx::load_onnx(dir.join(format!("{name}.onnx"))).unwrap();
        let graph = onnx.to_model(cryptgpu_nn::onnx::Lowering::Inference).unwrap().graph;
        check(&graph, 2, config(1, &[2]));
    }
}

/// The round targets of issue 15, measured: LeNet inference at batch 1 in at most 30 rounds
/// (45 before the cuts, 32 before the one-round exact truncation), VGG-16 (CIFAR-10) in at most
/// 140 (195, then 140), counted by the counters of a real run (LeNet) or by the analytic model
/// that `lenet_costs_match_a_run` and `every_op_costs_match_a_run` hold to the counters (VGG-16).
#[test]
fn inference_round_targets() {
    let g = lenet(Pool::Avg).to_graph();
    let measured: u64 = measure(&g, 1, &CostConfig::default())[0].values().map(|c| c.rounds).sum();
    assert_eq!(measured, 28);
    assert_eq!(forward_cost(&g, 1, &CostConfig::default()).unwrap().total.rounds, measured);
    let vgg = forward_cost(&vgg16(Dataset::Cifar10, Pool::Avg).unwrap().to_graph(), 1, &CostConfig::default()).unwrap();
    assert_eq!(vgg.total.rounds, 124);
}

/// With the lead rotation off, party 0 leads every node, in the engine as in the model; the
/// same bytes in all as with it on.
#[test]
fn a_fixed_lead_matches_its_model() {
    let g = lenet(Pool::Avg).to_graph();
    let fixed = forward_cost(&g, 2, &CostConfig { rotate_leads: false, ..CostConfig::default() }).unwrap();
    let rotating = forward_cost(&g, 2, &CostConfig::default()).unwrap();
    let params = init_graph_params(&g, 7);
    let x =
        cryptgpu_nn::plain::PlainTensor::new(&[2, 1, 28, 28], (0..2 * 784).map(|i| (i % 17) as f64 / 17.0).collect())
            .unwrap();
    let out = run_local(CpuBackend, RunConfig::default(), |party| {
        let owner = party.id() == 0;
        let mut shared = std::collections::BTreeMap::new();
        for (name, shape) in &g.params {
            shared.insert(name.clone(), share(party, 0, owner.then(|| &params[name]), shape)?);
        }
        let sx = share(party, 0, owner.then_some(&x), &x.shape)?;
        let mut eng = PrivateEngine::new(party);
        eng.rotate_leads = false;
        let model = Model::from_graph(g.clone(), shared, &eng)?;
        model.forward(&mut eng, &sx, false)?;
        Ok::<_, NnError>((eng.party.lead(), eng.traffic))
    })
    .unwrap();
    for (p, o) in out.iter().enumerate() {
        let (lead, traffic) = &o.value;
        assert_eq!(*lead, 0);
        for node in &fixed.nodes {
            let c = traffic[&(node.label.clone(), Phase::Forward)];
            assert_eq!(
                (c.rounds, c.bytes_sent),
                (node.cost.rounds, node.cost.bytes_sent_per_party[p]),
                "{}",
                node.label
            );
        }
    }
    let nodes = |c: &cryptgpu_nn::cost::ForwardCost| c.nodes.iter().fold(StepCost::default(), |a, n| a.then(n.cost));
    let (f, r) = (nodes(&fixed), nodes(&rotating));
    assert_eq!(f.bytes_sent_per_party.iter().sum::<u64>(), r.bytes_sent_per_party.iter().sum::<u64>());
    assert!(r.bytes_sent_per_party.iter().max() < f.bytes_sent_per_party.iter().max(), "{r:?} vs {f:?}");
}
