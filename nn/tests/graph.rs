//! Graphs beyond the zoo's block shapes: an `Add` of two arbitrary branches (one from a value
//! several nodes back), a zero `Pad` and an asymmetrically padded convolution, average pooling
//! that divides by the real positions only, and a batch norm after a linear layer. The twin
//! against finite differences, the private engine against the twin, the checks' errors, and the
//! lowering of layer sequences.

#[allow(dead_code)]
mod common;

use common::max_diff;
use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_nn::engine::{layer_labels, Engine, Model, Sgd};
use cryptgpu_nn::error::NnError;
use cryptgpu_nn::graph::{Graph, Node, Op};
use cryptgpu_nn::plain::{cross_entropy, PlainEngine, PlainTensor};
use cryptgpu_nn::private::PrivateEngine;
use cryptgpu_nn::session::{reveal_model_to, reveal_to, share};
use cryptgpu_nn::weights::{fold_graph_batchnorm, init_graph_params, Params};
use cryptgpu_nn::zoo::{lenet, Pool};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn node(label: &str, op: Op, inputs: &[&str], output: &str) -> Node {
    Node { label: label.into(), op, inputs: inputs.iter().map(|s| s.to_string()).collect(), output: output.into() }
}

fn conv(w: &str, b: Option<&str>, padding: [usize; 4]) -> Op {
    Op::Conv2d { weight: w.into(), bias: b.map(Into::into), stride: (1, 1), padding }
}

/// `x -> c0 -> relu = a`; branch 1: `a -> pad -> c1 -> relu -> c2 (asymmetric padding)`;
/// branch 2: `a -> c3`; their sum, average pooling without counting padding, flatten, linear,
/// batch norm over features, ReLU, linear without bias.
fn branchy() -> Graph {
    let p = |n: &str, s: &[usize]| (n.to_string(), s.to_vec());
    Graph {
        name: "branchy".into(),
        input: "x".into(),
        input_shape: vec![2, 6, 6],
        output: "logits".into(),
        classes: 3,
        params: vec![
            p("c0.weight", &[3, 2, 3, 3]),
            p("c0.bias", &[3]),
            p("c1.weight", &[4, 3, 2, 2]),
            p("c2.weight", &[4, 4, 3, 3]),
            p("c3.weight", &[4, 3, 1, 1]),
            p("c3.bias", &[4]),
            p("fc1.weight", &[8, 36]),
            p("fc1.bias", &[8]),
            p("bn.weight", &[8]),
            p("bn.bias", &[8]),
            p("bn.running_mean", &[8]),
            p("bn.running_var", &[8]),
            p("fc2.weight", &[3, 8]),
        ],
        nodes: vec![
            node("c0", conv("c0.weight", Some("c0.bias"), [1, 1, 1, 1]), &["x"], "c0"),
            node("relu0", Op::Relu, &["c0"], "a"),
            node("pad", Op::Pad { pads: [1, 0, 0, 1] }, &["a"], "padded"),
            node("c1", conv("c1.weight", None, [0; 4]), &["padded"], "c1"),
            node("relu1", Op::Relu, &["c1"], "r1"),
            node("c2", conv("c2.weight", None, [1, 0, 1, 2]), &["r1"], "branch1"),
            node("c3", conv("c3.weight", Some("c3.bias"), [0; 4]), &["a"], "branch2"),
            node("add", Op::Add, &["branch1", "branch2"], "sum"),
            node(
                "avgpool",
                Op::AvgPool2d { kernel: (3, 3), stride: (2, 2), padding: (1, 1), count_include_pad: false },
                &["sum"],
                "pooled",
            ),
            node("flatten", Op::Flatten, &["pooled"], "flat"),
            node("fc1", Op::Linear { weight: "fc1.weight".into(), bias: Some("fc1.bias".into()) }, &["flat"], "h"),
            node(
                "bn",
                Op::BatchNorm {
                    weight: "bn.weight".into(),
                    bias: "bn.bias".into(),
                    running_mean: "bn.running_mean".into(),
                    running_var: "bn.running_var".into(),
                    eps: 1e-5,
                },
                &["h"],
                "hn",
            ),
            node("relu2", Op::Relu, &["hn"], "hr"),
            node("fc2", Op::Linear { weight: "fc2.weight".into(), bias: None }, &["hr"], "logits"),
        ],
    }
}

fn params(g: &Graph, seed: u64) -> Params {
    let mut p = init_graph_params(g, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 50);
    for (name, t) in p.iter_mut() {
        if name.starts_with("bn.") {
            let (lo, hi) = if name.ends_with("var") || name.ends_with("weight") { (0.5, 2.0) } else { (-0.5, 0.5) };
            t.data.iter_mut().for_each(|v| *v = rng.gen_range(lo..hi));
        }
    }
    p
}

fn data(seed: u64, n: usize) -> (PlainTensor, PlainTensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = PlainTensor { shape: vec![n, 2, 6, 6], data: (0..n * 72).map(|_| rng.gen_range(-1.5..1.5)).collect() };
    let mut y = vec![0.0; n * 3];
    for i in 0..n {
        y[i * 3 + rng.gen_range(0..3)] = 1.0;
    }
    (x, PlainTensor { shape: vec![n, 3], data: y })
}

#[test]
fn check_infers_shapes_and_names_the_failing_node() {
    let g = branchy();
    let shapes = g.check(4).unwrap();
    assert_eq!(shapes["padded"], [4, 3, 7, 7]);
    assert_eq!(shapes["branch1"], [4, 4, 6, 6]);
    assert_eq!(shapes["pooled"], [4, 4, 3, 3]);
    assert_eq!(shapes["logits"], [4, 3]);
    let fails = |g: Graph, want: &str| match g.check(2) {
        Err(NnError::Shape(m)) => assert!(m.contains(want), "{m} lacks {want:?}"),
        other => panic!("expected a shape error with {want:?}, got {other:?}"),
    };
    let mut unknown = branchy();
    unknown.nodes[7].inputs[1] = "nowhere".into();
    fails(unknown, "node add: value nowhere is not defined");
    let mut twice = branchy();
    twice.nodes[6].output = "branch1".into();
    twice.nodes[7].inputs[1] = "a".into();
    fails(twice, "node c3: value branch1 is defined twice");
    let mut order = branchy();
    order.nodes.swap(0, 1);
    fails(order, "node relu0: value c0 is not defined before this node");
    let mut mismatch = branchy();
    mismatch.nodes[7].inputs[1] = "a".into();
    mismatch.nodes.remove(6);
    mismatch.params.retain(|(n, _)| !n.starts_with("c3"));
    fails(mismatch, "node add: adds [2, 4, 6, 6] and [2, 3, 6, 6]");
    let mut bad_param = branchy();
    bad_param.params[1].1 = vec![4];
    fails(bad_param, "node c0: parameter c0.bias has shape [4], expected [3]");
    let mut unused = branchy();
    unused.params.push(("spare".into(), vec![1]));
    fails(unused, "parameter spare is used by no node");
    // A pooling window that could lie wholly in the padding.
    let mut wide = branchy();
    let Op::AvgPool2d { padding, .. } = &mut wide.nodes[8].op else { panic!("node 8 pools: {:?}", wide.nodes[8]) };
    *padding = (2, 0);
    fails(wide, "padding (2, 0) is more than half of the kernel (3, 3)");
}

#[test]
fn twin_gradients_of_a_branchy_graph_match_finite_differences() {
    let g = branchy();
    let mut model = Model::from_graph(g.clone(), params(&g, 1), &PlainEngine).unwrap();
    assert!(!model.bn_folded());
    let (x, y) = data(2, 3);
    let mut e = PlainEngine;
    let (logits, tape) = model.forward(&mut e, &x, true).unwrap();
    let gl = e.softmax_ce_grad(&logits, &y).unwrap();
    let dx = model.backward(&mut e, tape, &gl).unwrap();
    assert_eq!(model.grads.len(), 11, "every parameter but the running statistics");
    let loss =
        |m: &Model<PlainTensor>, x: &PlainTensor| cross_entropy(&m.forward(&mut PlainEngine, x, true).unwrap().0, &y);
    let h = 1e-6;
    let check = |what: &str, numeric: f64, analytic: f64| {
        assert!(
            approx::relative_eq!(numeric, analytic, epsilon = 1e-6, max_relative = 1e-4),
            "{what}: numeric {numeric}, backward {analytic}"
        )
    };
    let base = Model::from_graph(g.clone(), params(&g, 1), &PlainEngine).unwrap();
    for (name, grad) in &model.grads {
        for idx in [0, grad.data.len() / 2, grad.data.len() - 1] {
            let (mut plus, mut minus) = (base.params.clone(), base.params.clone());
            plus.get_mut(name).unwrap().data[idx] += h;
            minus.get_mut(name).unwrap().data[idx] -= h;
            let (plus, minus) = (
                Model::from_graph(g.clone(), plus, &PlainEngine).unwrap(),
                Model::from_graph(g.clone(), minus, &PlainEngine).unwrap(),
            );
            check(&format!("{name}[{idx}]"), (loss(&plus, &x) - loss(&minus, &x)) / (2.0 * h), grad.data[idx]);
        }
    }
    // Inputs at the corners feel the asymmetric padding and the pooling's edge divisors.
    for idx in [0, 5, 30, 35, 71, 100, x.data.len() - 1] {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp.data[idx] += h;
        xm.data[idx] -= h;
        check(&format!("x[{idx}]"), (loss(&base, &xp) - loss(&base, &xm)) / (2.0 * h), dx.data[idx]);
    }
    // Inference with the running statistics equals the folded graph's.
    let folded = Model::from_graph(g.clone(), fold_graph_batchnorm(&g, &base.params).unwrap(), &PlainEngine).unwrap();
    assert!(folded.bn_folded());
    let a = base.forward(&mut PlainEngine, &x, false).unwrap().0;
    let b = folded.forward(&mut PlainEngine, &x, false).unwrap().0;
    assert!(max_diff(&a.data, &b.data) < 1e-12);
}

#[test]
fn private_training_of_a_branchy_graph_matches_the_twin() {
    let g = branchy();
    let p = params(&g, 7);
    let (x, y) = data(8, 4);
    let opt = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 1e-3 };
    let mut twin = Model::from_graph(g.clone(), p.clone(), &PlainEngine).unwrap();
    let l1 = twin.train_step(&mut PlainEngine, &x, &y, &opt).unwrap();
    twin.train_step(&mut PlainEngine, &x, &y, &opt).unwrap();
    let eval = twin.forward(&mut PlainEngine, &x, false).unwrap().0;

    let out = cryptgpu_sharing::run_local(CpuBackend, cryptgpu_sharing::RunConfig::default(), |party| {
        let owner = party.id() == 0;
        let mut shared = std::collections::BTreeMap::new();
        for (name, shape) in &g.params {
            shared.insert(name.clone(), share(party, 0, owner.then(|| &p[name]), shape)?);
        }
        let sx = share(party, 0, owner.then_some(&x), &x.shape)?;
        let sy = share(party, 0, owner.then_some(&y), &y.shape)?;
        let mut pe = PrivateEngine::new(party);
        let mut model = Model::from_graph(g.clone(), shared, &pe)?;
        let first = model.train_step(&mut pe, &sx, &sy, &opt)?;
        model.train_step(&mut pe, &sx, &sy, &opt)?;
        let (ev, _) = model.forward(&mut pe, &sx, false)?;
        let party = pe.party;
        Ok::<_, NnError>((reveal_to(party, &first, 0)?, reveal_to(party, &ev, 0)?, reveal_model_to(party, &model, 0)?))
    })
    .unwrap();
    let (Some(p_l1), Some(p_eval), Some(p_params)) = out.into_iter().next().unwrap().value else {
        panic!("party 0 receives every output")
    };
    // The batch norm over 8 features of 4 examples divides by the private inverse square root
    // (accurate to about 4e-4 relative), which dominates the differences.
    let worst = twin.params.iter().map(|(n, t)| max_diff(&p_params[n].data, &t.data)).fold(0.0, f64::max);
    eprintln!(
        "private vs twin: first logits {:.2e}, parameters {worst:.2e}, inference logits {:.2e}",
        max_diff(&p_l1.data, &l1.data),
        max_diff(&p_eval.data, &eval.data)
    );
    let d = max_diff(&p_l1.data, &l1.data);
    assert!(d < 5e-3, "first logits differ by {d}");
    for (name, t) in &twin.params {
        let d = max_diff(&p_params[name].data, &t.data);
        assert!(d < 5e-3, "{name} differs by {d}");
    }
    let d = max_diff(&p_eval.data, &eval.data);
    assert!(d < 1e-2, "inference logits differ by {d}");
}

#[test]
fn layer_sequences_lower_with_their_names_and_labels() {
    let spec = lenet(Pool::Max);
    let g = spec.to_graph();
    let labels: Vec<&str> = g.nodes.iter().map(|n| n.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "0:features.0",
            "1:relu",
            "2:maxpool",
            "3:features.3",
            "4:relu",
            "5:maxpool",
            "6:flatten",
            "7:classifier.0",
            "8:relu",
            "9:classifier.2"
        ]
    );
    assert_eq!(g.params, spec.params());
    assert_eq!(g.output, "9:classifier.2");
    let r18 = cryptgpu_nn::zoo::by_name("resnet18", cryptgpu_nn::zoo::Dataset::Cifar10).unwrap();
    let g = r18.to_graph();
    // Each residual join is an unlabelled Add of the block's two branches (identity: its input).
    let adds: Vec<&Node> = g.nodes.iter().filter(|n| n.op == Op::Add).collect();
    assert_eq!(adds.len(), 8);
    assert!(adds.iter().all(|n| n.label.is_empty()));
    assert_eq!(adds[0].inputs, ["3.b4:layer1.0.bn2", "2:relu"]);
    assert_eq!(adds[2].inputs, ["7.b4:layer2.0.bn2", "7.s1:layer2.0.downsample.1"]);
    assert_eq!(g.labels(), layer_labels(&r18));
    assert_eq!(g.fold_batchnorm().params, r18.engine_params());
}

#[test]
fn real_position_divisors_and_zero_padding_are_exact() {
    use cryptgpu_ring::Pool2dParams;
    let p = Pool2dParams { kernel: (3, 3), stride: (2, 2), padding: (1, 1) };
    let ones = PlainTensor::new(&[1, 1, 4, 5], vec![1.0; 20]).unwrap();
    let mut e = PlainEngine;
    // Every window averages only ones when padding is not counted; corners see 4 of 9 otherwise.
    assert!(max_diff(&e.avg_pool(&ones, &p, false).unwrap().data, &[1.0; 6]) < 1e-12);
    assert!((e.avg_pool(&ones, &p, true).unwrap().data[0] - 4.0 / 9.0).abs() < 1e-12);
    // The backward spreads each output gradient over its real positions, each 1/count.
    let g = e.avg_pool_backward(&PlainTensor::new(&[1, 1, 2, 3], vec![1.0; 6]).unwrap(), &[1, 1, 4, 5], &p, false);
    assert!((g.unwrap().data.iter().sum::<f64>() - 6.0).abs() < 1e-12);
    let x = PlainTensor::new(&[1, 1, 1, 2], vec![3.0, 4.0]).unwrap();
    let padded = e.pad2d(&x, [1, 0, 0, 2]).unwrap();
    assert_eq!(padded.shape, [1, 1, 2, 4]);
    assert_eq!(padded.data, [0.0, 0.0, 0.0, 0.0, 3.0, 4.0, 0.0, 0.0]);
    assert_eq!(e.crop2d(&padded, [1, 0, 0, 2]).unwrap(), x);
}

#[test]
fn relu_fusions_and_pool_folds_pick_single_reader_chains() {
    let g = lenet(Pool::Avg).to_graph();
    let ops: Vec<&str> = g.nodes.iter().map(|n| n.op.name()).collect();
    let fused: Vec<&str> = g.relu_fusions().iter().zip(&ops).filter(|(f, _)| **f).map(|(_, o)| *o).collect();
    assert_eq!(fused, ["conv2d", "conv2d", "linear"], "{ops:?}");
    let folds: Vec<(u32, &str)> = g.pool_folds().into_iter().zip(ops.iter().copied()).filter(|(s, _)| *s > 0).collect();
    assert_eq!(folds, [(2, "avgpool2d"), (2, "conv2d"), (2, "avgpool2d"), (2, "linear")]);
    // A second reader, a window of 9 or a divisor counting real positions only: no fold; the
    // graph's output is never held.
    let pool = |k: usize, count_include_pad: bool| Op::AvgPool2d {
        kernel: (k, k),
        stride: (k, k),
        padding: (1, 1),
        count_include_pad,
    };
    for (op, second_reader) in [(pool(2, true), true), (pool(3, true), false), (pool(2, false), false)] {
        let mut g = Graph {
            name: "t".into(),
            input: "x".into(),
            input_shape: vec![1, 4, 4],
            output: "y".into(),
            classes: 1,
            params: vec![("w".into(), vec![1, 1, 1, 1])],
            nodes: vec![node("p", op, &["x"], "p"), node("c", conv("w", None, [0; 4]), &["p"], "y")],
        };
        if second_reader {
            g.nodes.push(node("a", Op::Add, &["p", "y"], "z"));
        }
        assert_eq!(g.pool_folds(), vec![0; g.nodes.len()]);
        assert_eq!(g.relu_fusions(), vec![false; g.nodes.len()]);
    }
}
