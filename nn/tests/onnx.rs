//! ONNX import: the real `torch.onnx.export` files of ../shared/data/onnx read into typed
//! graphs, and malformed or unsupported files rejected with errors naming what is wrong.

use std::path::{Path, PathBuf};

use cryptgpu_nn::onnx::proto::{AttributeProto, ModelProto, NodeProto, ATTR_INT};
use cryptgpu_nn::onnx::{load_onnx, read_onnx, Dim, OnnxGraph, OnnxOp, Window};
use proptest::prelude::*;
use prost::Message;

const MODELS: [&str; 4] = ["lenet_maxpool", "bn_cnn", "tiny_resnet", "mlp"];

/// The shared ONNX fixtures' folder; `None` (said loudly) when it is missing, a failure then
/// if CRYPTGPU_REQUIRE_DATA=1.
fn onnx_dir() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/onnx");
    if p.is_dir() {
        return Some(p);
    }
    if std::env::var("CRYPTGPU_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!("CRYPTGPU_REQUIRE_DATA=1 but {} is missing", p.display());
    }
    eprintln!("SKIPPED: {} is missing (set CRYPTGPU_REQUIRE_DATA=1 to fail)", p.display());
    None
}

fn bytes(dir: &Path, name: &str) -> Vec<u8> {
    std::fs::read(dir.join(format!("{name}.onnx"))).unwrap()
}

fn graph(dir: &Path, name: &str) -> OnnxGraph {
    load_onnx(dir.join(format!("{name}.onnx"))).unwrap_or_else(|e| panic!("{name}: {e}"))
}

const N: Dim = Dim::Batch;
const fn f(n: usize) -> Dim {
    Dim::Fixed(n)
}

#[test]
fn the_four_exports_read_with_their_ops_and_shapes() {
    let Some(dir) = onnx_dir() else { return };
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    for name in MODELS {
        let g = graph(&dir, name);
        assert_eq!(g.opset, 13);
        assert_eq!(g.input.name, "input");
        assert_eq!(g.output, "logits");
        assert_eq!(g.output_shape(), [N, f(10)], "{name}");
        let declared: Vec<usize> =
            index[name]["input_shape"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
        let shape: Vec<Dim> = std::iter::once(N).chain(declared[1..].iter().map(|&d| f(d))).collect();
        assert_eq!(g.input.shape, shape, "{name}");
        // Every op left is one index.json lists; no shape op survives.
        let listed: Vec<&str> = index[name]["ops"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        for op in g.op_names() {
            assert!(listed.contains(&op) || op == "Flatten", "{name}: {op}");
            assert!(!["Shape", "Gather", "Unsqueeze", "Concat", "Constant", "Reshape"].contains(&op));
        }
        // Every node input is defined, every value has a shape.
        for n in &g.nodes {
            for i in &n.inputs {
                assert!(g.shape(i).is_some(), "{name}: {i}");
            }
            assert!(g.shape(&n.output).is_some());
        }
        assert!(g.summary().contains("parameters"));
    }
}

#[test]
fn lenet_maxpool_is_conv_relu_pool_twice_then_three_linears() {
    let Some(dir) = onnx_dir() else { return };
    let g = graph(&dir, "lenet_maxpool");
    assert_eq!(g.input.batch, Some(4));
    assert_eq!(
        g.op_names(),
        ["Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Flatten", "Gemm", "Relu", "Gemm", "Relu", "Gemm"]
    );
    let dims = |n: &str| g.initializers[n].dims.clone();
    assert_eq!(dims("conv1.weight"), [6, 1, 5, 5]);
    assert_eq!(dims("conv1.bias"), [6]);
    assert_eq!(dims("conv2.weight"), [16, 6, 5, 5]);
    assert_eq!(dims("fc1.weight"), [120, 400]);
    assert_eq!(dims("fc3.weight"), [10, 84]);
    assert_eq!(g.initializers.len(), 10);
    assert_eq!(g.param_count(), 6 * 25 + 6 + 16 * 150 + 16 + 400 * 120 + 120 + 120 * 84 + 84 + 840 + 10);
    assert_eq!(g.nodes[0].op, OnnxOp::Conv(Window { kernel: [5, 5], strides: [1, 1], pads: [2, 2, 2, 2] }));
    assert_eq!(g.nodes[0].inputs, ["input", "conv1.weight", "conv1.bias"]);
    assert_eq!(g.shape(&g.nodes[0].output).unwrap(), [N, f(6), f(28), f(28)]);
    assert_eq!(g.shape(&g.nodes[5].output).unwrap(), [N, f(16), f(5), f(5)]);
    assert_eq!(g.shape(&g.nodes[6].output).unwrap(), [N, f(400)]);
    assert_eq!(g.nodes[7].op, OnnxOp::Gemm { trans_b: true, alpha: 1.0, beta: 1.0 });
}

#[test]
fn bn_cnn_view_chain_becomes_a_flatten_and_the_bn_after_relu_is_kept() {
    let Some(dir) = onnx_dir() else { return };
    let g = graph(&dir, "bn_cnn");
    assert_eq!(g.input.batch, None);
    // The zero Pad before the average pool and the Shape chain are gone.
    assert_eq!(
        g.op_names(),
        [
            "Conv",
            "Relu",
            "Conv",
            "Relu",
            "BatchNormalization",
            "AveragePool",
            "Flatten",
            "Gemm",
            "BatchNormalization",
            "Relu",
            "Gemm"
        ]
    );
    let flat = &g.nodes[6];
    assert_eq!(flat.op, OnnxOp::Flatten { axis: 1 });
    assert_eq!(flat.inputs, [g.nodes[5].output.clone()]);
    assert_eq!(g.shape(&flat.output).unwrap(), [N, f(1024)]);
    assert_eq!(g.nodes[4].op, OnnxOp::BatchNormalization { epsilon: 1e-5 });
    assert_eq!(g.nodes[4].inputs[1..], ["body.5.weight", "body.5.bias", "body.5.running_mean", "body.5.running_var"]);
    assert_eq!(g.shape(&g.nodes[8].output).unwrap(), [N, f(32)]);
    assert_eq!(
        g.nodes[5].op,
        OnnxOp::AveragePool {
            window: Window { kernel: [2, 2], strides: [2, 2], pads: [0; 4] },
            count_include_pad: false
        }
    );
    assert_eq!(g.shape(&g.nodes[2].output).unwrap(), [N, f(16), f(16), f(16)]);
    // Only FLOAT parameters are left (the int64 shape constants are consumed).
    assert_eq!(g.initializers.len(), 16);
}

#[test]
fn tiny_resnet_adds_two_distinct_branches() {
    let Some(dir) = onnx_dir() else { return };
    let g = graph(&dir, "tiny_resnet");
    let adds: Vec<_> = g.nodes.iter().filter(|n| n.op == OnnxOp::Add).collect();
    assert_eq!(adds.len(), 2);
    for a in &adds {
        assert_eq!(a.inputs.len(), 2);
        assert_ne!(a.inputs[0], a.inputs[1]);
        assert_eq!(g.shape(&a.inputs[0]), g.shape(&a.inputs[1]));
    }
    // The second block's shortcut is the 1x1 stride-2 conv.
    let short = g.nodes.iter().find(|n| n.output == adds[1].inputs[1]).unwrap();
    assert_eq!(short.op, OnnxOp::Conv(Window { kernel: [1, 1], strides: [2, 2], pads: [0; 4] }));
    assert_eq!(g.shape(&short.output).unwrap(), [N, f(32), f(8), f(8)]);
    let gap = g.nodes.iter().find(|n| n.op == OnnxOp::GlobalAveragePool).unwrap();
    assert_eq!(g.shape(&gap.output).unwrap(), [N, f(32), f(1), f(1)]);
    let pool = g.nodes.iter().find(|n| matches!(n.op, OnnxOp::MaxPool(_))).unwrap();
    assert_eq!(pool.op, OnnxOp::MaxPool(Window { kernel: [3, 3], strides: [2, 2], pads: [1; 4] }));
    assert_eq!(g.shape(&pool.output).unwrap(), [N, f(16), f(16), f(16)]);
}

#[test]
fn mlp_is_flatten_and_two_linears() {
    let Some(dir) = onnx_dir() else { return };
    let g = graph(&dir, "mlp");
    assert_eq!(g.op_names(), ["Flatten", "Gemm", "Relu", "Gemm"]);
    assert_eq!(g.shape(&g.nodes[0].output).unwrap(), [N, f(784)]);
    assert_eq!(g.initializers["net.1.weight"].data.len(), 64 * 784);
}

fn decoded(dir: &Path, name: &str) -> ModelProto {
    ModelProto::decode(&bytes(dir, name)[..]).unwrap()
}

fn err_of(m: &ModelProto) -> String {
    read_onnx(&m.encode_to_vec()).unwrap_err().to_string()
}

fn node_mut<'a>(m: &'a mut ModelProto, name: &str) -> &'a mut NodeProto {
    m.graph.as_mut().unwrap().node.iter_mut().find(|n| n.name == name).unwrap()
}

fn set_int(n: &mut NodeProto, name: &str, v: i64) {
    n.attribute.retain(|a| a.name != name);
    n.attribute.push(AttributeProto { name: name.into(), r#type: ATTR_INT, i: v, ..Default::default() });
}

#[test]
fn unsupported_models_are_errors_naming_node_op_and_attribute() {
    let Some(dir) = onnx_dir() else { return };
    let mut m = decoded(&dir, "lenet_maxpool");
    node_mut(&mut m, "/Relu").op_type = "LSTM".into();
    assert_eq!(err_of(&m), "ONNX node '/Relu' (LSTM): operator LSTM is not supported");

    let mut m = decoded(&dir, "lenet_maxpool");
    set_int(node_mut(&mut m, "/conv2/Conv"), "group", 2);
    assert_eq!(err_of(&m), "ONNX node '/conv2/Conv' (Conv): group=2 is not supported (only 1)");

    let mut m = decoded(&dir, "tiny_resnet");
    set_int(node_mut(&mut m, "/stem/stem.3/MaxPool"), "ceil_mode", 1);
    assert_eq!(err_of(&m), "ONNX node '/stem/stem.3/MaxPool' (MaxPool): ceil_mode=1 is not supported (only 0)");

    let mut m = decoded(&dir, "lenet_maxpool");
    node_mut(&mut m, "/conv1/Conv").attribute.iter_mut().find(|a| a.name == "dilations").unwrap().ints = vec![2, 2];
    assert!(err_of(&m).contains("'/conv1/Conv' (Conv): dilations=[2, 2] are not supported"), "{}", err_of(&m));

    let mut m = decoded(&dir, "lenet_maxpool");
    set_int(node_mut(&mut m, "/Flatten"), "bogus", 1);
    assert!(err_of(&m).contains("attribute 'bogus' is not supported"));

    let mut m = decoded(&dir, "mlp");
    m.opset_import[0].version = 7;
    assert_eq!(err_of(&m), "ONNX model: opset 7 of ai.onnx is not supported (11 to 20 are)");

    let mut m = decoded(&dir, "mlp");
    m.opset_import[0].domain = "com.example".into();
    assert!(err_of(&m).contains("no ai.onnx operator set"));

    // A non-float weight names the tensor.
    let mut m = decoded(&dir, "mlp");
    let t = &mut m.graph.as_mut().unwrap().initializer[0];
    t.data_type = 11;
    assert!(err_of(&m).contains("initializer 'net.1.weight': DOUBLE tensors are not supported"));

    // Data that does not fill the shape.
    let mut m = decoded(&dir, "mlp");
    m.graph.as_mut().unwrap().initializer[1].raw_data.pop();
    assert!(err_of(&m).contains("initializer 'net.1.bias': shape [64] needs 64 elements"));

    // A Gemm whose weight does not fit its input.
    let mut m = decoded(&dir, "mlp");
    m.graph.as_mut().unwrap().initializer[0].dims = vec![784, 64];
    assert!(err_of(&m).contains("'/net/net.1/Gemm' (Gemm): input shape [N, 784]: not [M, 64]"), "{}", err_of(&m));

    // A node reading a value nobody wrote.
    let mut m = decoded(&dir, "mlp");
    node_mut(&mut m, "/net/net.2/Relu").input[0] = "ghost".into();
    assert!(err_of(&m).contains("input 'ghost' is not defined before the node"));

    // A second dynamic axis.
    let mut m = decoded(&dir, "bn_cnn");
    let input = &mut m.graph.as_mut().unwrap().input[0];
    let dims = &mut input.r#type.as_mut().unwrap().tensor_type.as_mut().unwrap().shape.as_mut().unwrap().dim;
    dims[2].dim_value = None;
    assert!(err_of(&m).contains("axis 2 is not a positive constant"));
}

#[test]
fn identity_and_dropout_are_removed() {
    let Some(dir) = onnx_dir() else { return };
    let mut m = decoded(&dir, "mlp");
    let nodes = &mut m.graph.as_mut().unwrap().node;
    let relu_out = nodes[2].output[0].clone();
    nodes[2].output[0] = "pre".into();
    nodes.insert(
        3,
        NodeProto {
            name: "id".into(),
            op_type: "Identity".into(),
            input: vec!["pre".into()],
            output: vec!["mid".into()],
            ..Default::default()
        },
    );
    nodes.insert(
        4,
        NodeProto {
            name: "drop".into(),
            op_type: "Dropout".into(),
            input: vec!["mid".into()],
            output: vec![relu_out, "mask".into()],
            ..Default::default()
        },
    );
    let g = read_onnx(&m.encode_to_vec()).unwrap();
    assert_eq!(g.op_names(), ["Flatten", "Gemm", "Relu", "Gemm"]);
    assert_eq!(g.nodes[3].inputs[0], "pre");
}

#[test]
fn broken_bytes_are_errors() {
    let Some(dir) = onnx_dir() else { return };
    let b = bytes(&dir, "tiny_resnet");
    let e = read_onnx(&b[..b.len() / 2]).unwrap_err().to_string();
    assert!(e.starts_with("ONNX model: not a valid ONNX file"), "{e}");
    assert!(read_onnx(b"\xff\xff\xff\xff garbage").is_err());
    assert!(read_onnx(&[]).unwrap_err().to_string().contains("no ai.onnx operator set"));
    assert!(load_onnx(dir.join("missing.onnx")).unwrap_err().to_string().contains("missing.onnx"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_onnx(&b);
    }

    #[test]
    fn mutated_exports_never_panic(
        model in 0usize..4,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        if let Some(dir) = onnx_dir() {
            let mut b = bytes(&dir, MODELS[model]);
            for (at, v) in edits {
                let i = at % b.len();
                b[i] = v;
            }
            let _ = read_onnx(&b);
            b.truncate(cut % (b.len() + 1));
            let _ = read_onnx(&b);
        }
    }
}
