//! Imported ONNX models lowered to graphs: the four PyTorch exports of ../shared/data/onnx
//! reproduce PyTorch's logits in the plaintext twin and in a private run, and hand-built graphs
//! check each mapping and the errors of what the engines cannot compute.

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_nn::graph::Op;
use cryptgpu_nn::onnx::proto::ModelProto;
use cryptgpu_nn::onnx::{load_onnx, read_onnx, Head, Lowering, OnnxModel};
use cryptgpu_nn::plain::PlainTensor;
use cryptgpu_nn::session::{plain_logits, plain_model, private_logits, share_model, Roles};
use cryptgpu_nn::weights::{fold_graph_batchnorm, Params};
use cryptgpu_nn::Result;
use cryptgpu_sharing::{run_local, RunConfig};
use prost::Message;

mod onnx_common;
use onnx_common::{attr_int, float_attr, ints_attr, io, model, node, onnx_dir, tensor, value, MODELS};

fn max_diff(a: &PlainTensor, b: &PlainTensor) -> f64 {
    assert_eq!(a.shape, b.shape);
    a.data.iter().zip(&b.data).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}

fn fixture(name: &str, lowering: Lowering) -> Option<(OnnxModel, PlainTensor, PlainTensor)> {
    let dir = onnx_dir()?;
    let m = load_onnx(dir.join(format!("{name}.onnx"))).unwrap().to_model(lowering).unwrap();
    let (x, logits) = io(&dir, name);
    Some((m, x, logits))
}

fn ops(m: &OnnxModel) -> Vec<&'static str> {
    m.graph
        .nodes
        .iter()
        .map(|n| match n.op {
            Op::Conv2d { .. } => "Conv2d",
            Op::Linear { .. } => "Linear",
            Op::Relu => "Relu",
            Op::MaxPool2d { .. } => "MaxPool2d",
            Op::AvgPool2d { .. } => "AvgPool2d",
            Op::GlobalAvgPool => "GlobalAvgPool",
            Op::BatchNorm { .. } => "BatchNorm",
            Op::Affine { .. } => "Affine",
            Op::Flatten => "Flatten",
            Op::Add => "Add",
            Op::Pad { .. } => "Pad",
        })
        .collect()
}

/// The plaintext twin's logits.
fn twin(m: &OnnxModel, params: Params, x: &PlainTensor) -> PlainTensor {
    plain_logits(&plain_model(&m.graph, params).unwrap(), x).unwrap()
}

/// Plaintext twin within 1e-5 of PyTorch, private run (batch norms folded, model and data at
/// party 0) within 1e-3; prints the worst private error.
fn reproduces_pytorch(name: &str) {
    let Some((m, x, want)) = fixture(name, Lowering::Inference) else { return };
    assert_eq!(m.graph.output, "logits");
    assert_eq!(m.graph.classes, 10);
    assert_eq!(m.head, None);
    let plain = max_diff(&twin(&m, m.params.clone(), &x), &want);
    assert!(plain < 1e-5, "{name}: plaintext twin off by {plain:e}");
    let folded = fold_graph_batchnorm(&m.graph, &m.params).unwrap();
    let out = run_local(CpuBackend, RunConfig::default(), |party| {
        let owner = party.id() == 0;
        let model = share_model(party, &m.graph, 0, owner.then_some(&folded))?;
        private_logits(party, &model, &Roles::default(), owner.then_some(&x), &x.shape)
    })
    .unwrap();
    let private = max_diff(out[0].value.as_ref().unwrap(), &want);
    let top = want.data.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    println!(
        "{name}: batch {}, max |private - PyTorch| = {private:.2e}, twin {plain:.2e} (max |logit| {top:.3})",
        x.shape[0]
    );
    assert!(private < 1e-3, "{name}: private logits off by {private:e}");
}

#[test]
fn lenet_maxpool_reproduces_pytorch() {
    reproduces_pytorch("lenet_maxpool");
}

#[test]
fn bn_cnn_reproduces_pytorch() {
    reproduces_pytorch("bn_cnn");
}

#[test]
fn tiny_resnet_reproduces_pytorch() {
    reproduces_pytorch("tiny_resnet");
}

#[test]
fn mlp_reproduces_pytorch() {
    reproduces_pytorch("mlp");
}

#[test]
fn the_exports_lower_to_the_expected_graphs() {
    let Some(_) = onnx_dir() else { return };
    let lowered: Vec<OnnxModel> = MODELS.iter().map(|n| fixture(n, Lowering::Inference).unwrap().0).collect();
    let [lenet, bn_cnn, resnet, mlp] = &lowered[..] else { unreachable!() };
    assert_eq!(
        ops(lenet),
        [
            "Conv2d",
            "Relu",
            "MaxPool2d",
            "Conv2d",
            "Relu",
            "MaxPool2d",
            "Flatten",
            "Linear",
            "Relu",
            "Linear",
            "Relu",
            "Linear"
        ]
    );
    assert_eq!(lenet.graph.nodes[0].label, "/conv1/Conv");
    assert_eq!(lenet.graph.input_shape, [1, 28, 28]);
    assert_eq!(lenet.graph.params[..2], [("conv1.weight".into(), vec![6, 1, 5, 5]), ("conv1.bias".into(), vec![6])]);
    // The BatchNorm1d after the first linear layer is folded into it; the one after a ReLU stays.
    assert_eq!(
        ops(bn_cnn),
        ["Conv2d", "Relu", "Conv2d", "Relu", "BatchNorm", "AvgPool2d", "Flatten", "Linear", "Relu", "Linear"]
    );
    let Op::BatchNorm { running_var, .. } = &bn_cnn.graph.nodes[4].op else { unreachable!() };
    assert_eq!(running_var, "body.5.running_var");
    // The global average is [N, C]: the flatten after it is gone.
    let gap = resnet.graph.nodes.iter().position(|n| n.op == Op::GlobalAvgPool).unwrap();
    assert!(matches!(resnet.graph.nodes[gap + 1].op, Op::Linear { .. }));
    assert_eq!(ops(resnet).iter().filter(|o| **o == "Add").count(), 2);
    assert_eq!(ops(mlp), ["Flatten", "Linear", "Relu", "Linear"]);
    for m in &lowered {
        let declared: usize = m.graph.params.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(declared, m.params.values().map(|t| t.data.len()).sum::<usize>());
        assert_eq!(m.graph.name, "torch_jit", "the ONNX graph name");
    }
}

/// Training lowering keeps every BatchNormalization trainable; in inference mode (running
/// statistics, or folded) the model gives PyTorch's logits.
#[test]
fn bn_cnn_training_lowering_keeps_its_batch_norms() {
    let Some((m, x, want)) = fixture("bn_cnn", Lowering::Training) else { return };
    assert_eq!(ops(&m).iter().filter(|o| **o == "BatchNorm").count(), 2);
    assert!(m.params.contains_key("head.1.running_var"));
    let trainable = plain_model(&m.graph, m.params.clone()).unwrap();
    assert!(!trainable.bn_folded());
    let d = max_diff(&plain_logits(&trainable, &x).unwrap(), &want);
    assert!(d < 1e-5, "trainable, inference pass: {d:e}");
    let folded = fold_graph_batchnorm(&m.graph, &m.params).unwrap();
    let d = max_diff(&twin(&m, folded, &x), &want);
    assert!(d < 1e-5, "folded: {d:e}");
}

// Hand-built graphs.

fn lower(m: &ModelProto, lowering: Lowering) -> Result<OnnxModel> {
    read_onnx(&m.encode_to_vec())?.to_model(lowering)
}

fn lower_err(m: &ModelProto) -> String {
    lower(m, Lowering::Inference).unwrap_err().to_string()
}

fn ramp(n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|i| (i as f32 - n as f32 / 2.0) * scale).collect()
}

/// `x` `[N, 4]` through `Gemm(x, w [classes, 4], transB)` into `y`, after the nodes `pre`
/// (which read `x` and end in `h` `[N, 4]`).
fn linear_on(pre: Vec<cryptgpu_nn::onnx::proto::NodeProto>, w: Vec<f32>) -> ModelProto {
    let last = if pre.is_empty() { "x".to_string() } else { pre[pre.len() - 1].output[0].clone() };
    let mut nodes = pre;
    nodes.push(node("y", "Gemm", &[&last, "w"], vec![attr_int("transB", 1)]));
    model(nodes, vec![tensor("w", &[3, 4], w)], value("x", &[None, Some(4)]), value("y", &[None, Some(3)]))
}

#[test]
fn gemm_with_a_computed_weight_is_an_error() {
    let nodes = vec![node("r", "Relu", &["x"], vec![]), node("y", "Gemm", &["x", "r"], vec![])];
    let m = model(nodes, vec![], value("x", &[None, Some(4)]), value("y", &[None, Some(4)]));
    let e = read_onnx(&m.encode_to_vec()).unwrap_err().to_string();
    assert_eq!(e, "ONNX node 'y' (Gemm): the weight 'r' must be a FLOAT initializer");
    // The same check in the lowering, for a graph edited after reading.
    let mut g = read_onnx(&linear_on(vec![], ramp(12, 0.1)).encode_to_vec()).unwrap();
    g.initializers.clear();
    let e = g.to_model(Lowering::Inference).unwrap_err().to_string();
    assert_eq!(e, "ONNX node 'y' (Gemm): the weight 'w' must be an initializer (a constant)");
}

#[test]
fn max_pool_with_asymmetric_pads_is_an_error() {
    let pool = node(
        "pool",
        "MaxPool",
        &["x"],
        vec![ints_attr("kernel_shape", &[2, 2]), ints_attr("strides", &[2, 2]), ints_attr("pads", &[0, 0, 1, 1])],
    );
    let nodes = vec![pool, node("flat", "Flatten", &["pool"], vec![]), node("y", "Gemm", &["flat", "w"], vec![])];
    let m = model(
        nodes,
        vec![tensor("w", &[4, 3], ramp(12, 0.1))],
        value("x", &[None, Some(1), Some(3), Some(3)]),
        value("y", &[None, Some(3)]),
    );
    assert_eq!(
        lower_err(&m),
        "ONNX node 'pool' (MaxPool): pads=[0, 0, 1, 1] are asymmetric: pooling pads top = bottom and left = right only"
    );
}

#[test]
fn adding_two_values_that_broadcast_is_an_error() {
    let nodes = vec![node("col", "MatMul", &["x", "v"], vec![]), node("y", "Add", &["x", "col"], vec![])];
    let m = model(
        nodes,
        vec![tensor("v", &[3, 1], vec![1.0; 3])],
        value("x", &[None, Some(3)]),
        value("y", &[None, Some(3)]),
    );
    assert_eq!(
        lower_err(&m),
        "ONNX node 'y' (Add): adds 'x' [N, 3] and 'col' [N, 1]: two computed values must have one shape (no broadcasting)"
    );
}

#[test]
fn softmax_before_the_end_is_an_error_and_at_the_end_the_head() {
    let m = linear_on(vec![node("s", "Softmax", &["x"], vec![])], ramp(12, 0.1));
    assert_eq!(
        lower_err(&m),
        "ONNX node 's' (Softmax): only supported as the model's last operator, over the classes of [N, classes] logits"
    );
    let mut m = linear_on(vec![], ramp(12, 0.1));
    let g = m.graph.as_mut().unwrap();
    g.node.push(node("p", "LogSoftmax", &["y"], vec![]));
    g.output[0] = value("p", &[None, Some(3)]);
    let lowered = lower(&m, Lowering::Inference).unwrap();
    assert_eq!(lowered.head, Some(Head::LogSoftmax));
    assert_eq!(lowered.graph.output, "y");
    assert_eq!(lowered.graph.name, "onnx");
}

#[test]
fn out_of_range_weights_are_errors_naming_the_initializer() {
    let mut w = ramp(12, 0.1);
    w[1] = f32::NAN;
    assert_eq!(lower_err(&linear_on(vec![], w)), "ONNX node 'y' (Gemm): w[0, 1] = NaN is not finite");
    let mut w = ramp(12, 0.1);
    w[6] = 1e4;
    let e = lower_err(&linear_on(vec![], w));
    assert!(e.starts_with("ONNX node 'y' (Gemm): w[1, 2] = 10000 is beyond ±2048"), "{e}");
    // A running variance under its own name is range-checked as one.
    let bn = node("bn", "BatchNormalization", &["x", "g", "b", "m", "v"], vec![float_attr("epsilon", 1e-5)]);
    let mut m = linear_on(vec![bn], ramp(12, 0.1));
    let inits = &mut m.graph.as_mut().unwrap().initializer;
    for (n, v) in [("g", 1.0), ("b", 0.0), ("m", 0.0), ("v", -1.0)] {
        inits.push(tensor(n, &[4], vec![v; 4]));
    }
    assert_eq!(
        lower_err(&m),
        "ONNX node 'bn' (BatchNormalization): bn.running_var[0] = -1 is outside [0, 131071.99999), the running \
         variances the private inverse square root accepts (initializer 'v')"
    );
}

#[test]
fn a_global_average_feeds_no_4d_operator() {
    let gap = node("gap", "GlobalAveragePool", &["x"], vec![]);
    let conv = node("conv", "Conv", &["gap", "k"], vec![]);
    let nodes = vec![gap, conv, node("y", "Flatten", &["conv"], vec![])];
    let x = value("x", &[None, Some(2), Some(4), Some(4)]);
    let m = model(nodes, vec![tensor("k", &[3, 2, 1, 1], ramp(6, 0.1))], x.clone(), value("y", &[None, Some(3)]));
    assert_eq!(
        lower_err(&m),
        "ONNX node 'conv' (Conv): input 'gap' [N, 2, 1, 1] is a global average pool's output, held as [N, C]: only a \
         flatten or an elementwise operator may read it"
    );
    // Elementwise operators and a flatten may: the flatten is dropped.
    let nodes = vec![
        node("gap", "GlobalAveragePool", &["x"], vec![]),
        node("r", "Relu", &["gap"], vec![]),
        node("y", "Flatten", &["r"], vec![]),
    ];
    let m = lower(&model(nodes, vec![], x, value("y", &[None, Some(2)])), Lowering::Inference).unwrap();
    assert_eq!(ops(&m), ["GlobalAvgPool", "Relu"]);
    assert_eq!(m.graph.output, "r");
}

#[test]
fn gemm_without_trans_b_scales_by_alpha_and_beta() {
    // y = 0.5 · x B + 2 · C with B [in 2, out 3] and C [1, 3].
    let gemm = node("y", "Gemm", &["x", "B", "C"], vec![float_attr("alpha", 0.5), float_attr("beta", 2.0)]);
    let inits =
        vec![tensor("B", &[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), tensor("C", &[1, 3], vec![0.1, 0.2, 0.3])];
    let m = lower(
        &model(vec![gemm], inits, value("x", &[None, Some(2)]), value("y", &[None, Some(3)])),
        Lowering::Inference,
    )
    .unwrap();
    assert_eq!(m.params["B"].shape, [3, 2]);
    let x = PlainTensor::new(&[2, 2], vec![1.0, -1.0, 0.5, 2.0]).unwrap();
    let y = twin(&m, m.params.clone(), &x);
    // Row 1: x B = [1 - 4, 2 - 5, 3 - 6]; row 2: [0.5 + 8, 1 + 10, 1.5 + 12].
    let want = [-1.5 + 0.2, -1.5 + 0.4, -1.5 + 0.6, 4.25 + 0.2, 5.5 + 0.4, 6.75 + 0.6];
    for (a, b) in y.data.iter().zip(want) {
        assert!((a - b).abs() < 1e-6, "{:?} vs {want:?}", y.data);
    }
}

#[test]
fn matmul_and_add_become_one_linear_layer_with_a_bias() {
    let nodes = vec![node("mm", "MatMul", &["x", "W"], vec![]), node("y", "Add", &["b", "mm"], vec![])];
    let inits = vec![tensor("W", &[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), tensor("b", &[3], vec![0.5, -0.5, 1.0])];
    let m = model(nodes, inits, value("x", &[None, Some(2)]), value("y", &[None, Some(3)]));
    let lowered = lower(&m, Lowering::Training).unwrap();
    assert_eq!(lowered.graph.nodes.len(), 1);
    assert_eq!(lowered.graph.nodes[0].op, Op::Linear { weight: "W".into(), bias: Some("b".into()) });
    assert_eq!(lowered.graph.nodes[0].output, "y");
    let x = PlainTensor::new(&[1, 2], vec![1.0, 2.0]).unwrap();
    assert_eq!(twin(&lowered, lowered.params.clone(), &x).data, [9.0 + 0.5, 12.0 - 0.5, 15.0 + 1.0]);
}

#[test]
fn a_constant_added_per_channel_is_an_affine_map_for_inference_only() {
    let nodes = vec![
        node("r", "Relu", &["x"], vec![]),
        node("a", "Add", &["r", "c"], vec![]),
        node("y", "Flatten", &["a"], vec![]),
    ];
    let x = value("x", &[None, Some(2), Some(1), Some(2)]);
    let m = model(nodes, vec![tensor("c", &[2, 1, 1], vec![1.0, -1.0])], x, value("y", &[None, Some(4)]));
    let lowered = lower(&m, Lowering::Inference).unwrap();
    assert_eq!(ops(&lowered), ["Relu", "Affine", "Flatten"]);
    let y =
        twin(&lowered, lowered.params.clone(), &PlainTensor::new(&[1, 2, 1, 2], vec![1.0, -2.0, 3.0, 4.0]).unwrap());
    assert_eq!(y.data, [2.0, 1.0, 2.0, 3.0]);
    let e = lower(&m, Lowering::Training).unwrap_err().to_string();
    assert!(
        e.starts_with("ONNX node 'a' (Add): adding constant 'c' here is an affine map, which is not trainable"),
        "{e}"
    );
}

#[test]
fn a_batch_norm_after_a_bias_less_conv_folds_into_it_for_inference() {
    let bn = node("bn", "BatchNormalization", &["conv", "bn.weight", "bn.b", "bn.m", "bn.v"], vec![]);
    let nodes = vec![node("conv", "Conv", &["x", "k"], vec![]), bn, node("y", "Flatten", &["bn"], vec![])];
    let inits = vec![
        tensor("k", &[2, 1, 1, 1], vec![2.0, -1.0]),
        tensor("bn.weight", &[2], vec![1.5, 0.5]),
        tensor("bn.b", &[2], vec![0.25, -0.25]),
        tensor("bn.m", &[2], vec![0.5, 1.0]),
        tensor("bn.v", &[2], vec![4.0, 0.25]),
    ];
    let m = model(nodes, inits, value("x", &[None, Some(1), Some(1), Some(2)]), value("y", &[None, Some(4)]));
    let x = PlainTensor::new(&[1, 1, 1, 2], vec![1.0, -2.0]).unwrap();
    let inference = lower(&m, Lowering::Inference).unwrap();
    assert_eq!(ops(&inference), ["Conv2d", "Flatten"]);
    let Op::Conv2d { bias, .. } = &inference.graph.nodes[0].op else { unreachable!() };
    assert_eq!(bias.as_deref(), Some("bn.bias"));
    assert_eq!(inference.graph.params.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["k", "bn.bias"]);
    let training = lower(&m, Lowering::Training).unwrap();
    assert_eq!(ops(&training), ["Conv2d", "BatchNorm", "Flatten"]);
    assert!(training.params.contains_key("bn.running_var"));
    // (k x - mean) * gamma / sqrt(var + eps) + beta, per channel.
    let s = [1.5 / (4.0f64 + 1e-5).sqrt(), 0.5 / (0.25f64 + 1e-5).sqrt()];
    let want =
        [(2.0 - 0.5) * s[0] + 0.25, (-4.0 - 0.5) * s[0] + 0.25, (-1.0 - 1.0) * s[1] - 0.25, (2.0 - 1.0) * s[1] - 0.25];
    for y in [twin(&inference, inference.params.clone(), &x), twin(&training, training.params.clone(), &x)] {
        for (a, b) in y.data.iter().zip(want) {
            assert!((a - b).abs() < 1e-6, "{:?} vs {want:?}", y.data);
        }
    }
}

/// A fixture with its weights stripped lowers to the same graph (both ways) with every
/// parameter zero: what the parties other than the model owner read.
#[test]
fn stripped_fixtures_keep_the_architecture_and_lose_the_weights() {
    let Some(dir) = onnx_dir() else { return };
    for name in MODELS {
        let bytes = std::fs::read(dir.join(format!("{name}.onnx"))).unwrap();
        let stripped = read_onnx(&cryptgpu_nn::onnx::strip_weights(&bytes).unwrap()).unwrap();
        let full = read_onnx(&bytes).unwrap();
        for lowering in [Lowering::Inference, Lowering::Training] {
            let (a, b) = (full.to_model(lowering).unwrap(), stripped.to_model(lowering).unwrap());
            assert_eq!(a.graph, b.graph, "{name} {lowering:?}");
            assert!(b.params.values().all(|t| t.data.iter().all(|&v| v == 0.0)), "{name}: weights left");
            assert!(a.params.values().any(|t| t.data.iter().any(|&v| v != 0.0)), "{name}");
        }
    }
    assert!(cryptgpu_nn::onnx::strip_weights(b"not a model").is_err());
}
