//! ONNX import: the real `torch.onnx.export` files of ../shared/data/onnx read into typed
//! graphs, and malformed or unsupported files rejected with errors naming what is wrong.

use std::path::Path;

use cryptgpu_nn::onnx::proto::{AttributeProto, ModelProto, NodeProto};
use cryptgpu_nn::onnx::{load_onnx, read_onnx, Dim, Lowering, OnnxGraph, OnnxOp, Window};
use proptest::prelude::*;
use prost::Message;

#[allow(dead_code)]
mod onnx_common;
use onnx_common::{attr_int, onnx_dir, MODELS};

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
    let summary = g.summary();
    assert!(summary.starts_with("input input [N, 1, 28, 28]\n/conv1/Conv "), "{summary}");
    assert!(summary.contains(" Conv ") && summary.contains(" [N, 6, 28, 28] ") && summary.contains(" 156\n"));
    assert!(summary.ends_with("output logits [N, 10], 61706 parameters\n"), "{summary}");
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
    n.attribute.push(attr_int(name, v));
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

/// Reads and lowers a file, for both lowerings: errors, never panics.
fn lowered(b: &[u8]) -> cryptgpu_nn::Result<()> {
    let g = read_onnx(b)?;
    let training = g.to_model(Lowering::Training);
    training.and(g.to_model(Lowering::Inference)).map(drop)
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
            let _ = lowered(&b);
            b.truncate(cut % (b.len() + 1));
            let _ = lowered(&b);
        }
    }

    /// Random values in attributes, dims and node wiring: errors, never panics, reading or
    /// lowering.
    #[test]
    fn structurally_edited_exports_never_panic(
        model in 0usize..4,
        edits in proptest::collection::vec((any::<usize>(), any::<usize>(), 0u8..6, any::<i64>()), 1..6),
    ) {
        if let Some(dir) = onnx_dir() {
            let mut m = decoded(&dir, MODELS[model]);
            let g = m.graph.as_mut().unwrap();
            for (a, b, kind, v) in edits {
                let small = v % 5 - 1;
                let (ni, nj) = (a % g.node.len(), b % g.node.len());
                let wide = if v % 2 == 0 { small } else { v };
                match kind {
                    0 | 1 => {
                        let n = &mut g.node[ni];
                        let len = n.attribute.len();
                        if let Some(at) = n.attribute.get_mut(b % len.max(1)) {
                            if kind == 0 {
                                at.i = wide;
                            } else {
                                let k = b % at.ints.len().max(1);
                                if let Some(x) = at.ints.get_mut(k) {
                                    *x = small;
                                }
                                if v % 3 == 0 {
                                    at.ints.pop();
                                }
                            }
                        }
                    }
                    2 => {
                        let other = g.node[nj].output[0].clone();
                        let n = &mut g.node[ni];
                        let len = n.input.len();
                        if let Some(i) = n.input.get_mut(b % len.max(1)) {
                            *i = other;
                        }
                    }
                    3 => {
                        let len = g.initializer.len();
                        let t = &mut g.initializer[b % len];
                        let k = b % t.dims.len().max(1);
                        if let Some(d) = t.dims.get_mut(k) {
                            *d = wide;
                        }
                    }
                    4 => {
                        let ty = g.input[0].r#type.as_mut().unwrap();
                        let d = &mut ty.tensor_type.as_mut().unwrap().shape.as_mut().unwrap().dim;
                        let k = b % d.len();
                        d[k].dim_value = Some(wide);
                    }
                    _ => g.node.swap(ni, nj),
                }
            }
            let _ = lowered(&m.encode_to_vec());
        }
    }
}

mod synthetic {
    //! Hand-built graphs for the operators and shape chains the four exports do not have.

    use super::*;
    use crate::onnx_common::{ints_attr, node, value};
    use cryptgpu_nn::onnx::proto::{
        GraphProto, OperatorSetIdProto, TensorProto, ATTR_TENSOR, DATA_TYPE_FLOAT, DATA_TYPE_INT64,
    };

    fn floats(name: &str, dims: &[i64]) -> TensorProto {
        let n: i64 = dims.iter().product();
        TensorProto {
            name: name.into(),
            dims: dims.to_vec(),
            data_type: DATA_TYPE_FLOAT,
            float_data: (0..n).map(|i| i as f32 / 100.0).collect(),
            ..Default::default()
        }
    }

    /// A `Constant` node with an INT64 tensor (raw little-endian, as PyTorch writes them).
    fn int_const(name: &str, v: &[i64]) -> NodeProto {
        let t = TensorProto {
            dims: vec![v.len() as i64],
            data_type: DATA_TYPE_INT64,
            raw_data: v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ..Default::default()
        };
        let a = AttributeProto { name: "value".into(), r#type: ATTR_TENSOR, t: Some(t), ..Default::default() };
        node(name, "Constant", &[], vec![a])
    }

    /// Pad -> Conv -> Reshape to [N, 4, 64] through Shape/Slice/Cast/Concat -> MatMul ->
    /// Softmax, with a dead ReduceMean; `batch` fixes the input's batch size.
    fn model(batch: Option<i64>) -> ModelProto {
        let nodes = vec![
            int_const("pads", &[0, 0, 1, 1, 0, 0, 1, 1]),
            node("pad", "Pad", &["x", "pads", "zero"], vec![]),
            node("conv", "Conv", &["pad", "w"], vec![ints_attr("kernel_shape", &[3, 3])]),
            node("mean", "ReduceMean", &["conv"], vec![ints_attr("axes", &[2, 3])]),
            node("shape", "Shape", &["conv"], vec![]),
            int_const("zero_i", &[0]),
            int_const("one_i", &[1]),
            node("first", "Slice", &["shape", "zero_i", "one_i"], vec![]),
            int_const("rest", &[4, -1]),
            node("cat", "Concat", &["first", "rest"], vec![attr_int("axis", 0)]),
            node("cast", "Cast", &["cat"], vec![attr_int("to", 7)]),
            node("reshape", "Reshape", &["conv", "cast"], vec![]),
            node("mm", "MatMul", &["reshape", "w2"], vec![]),
            node("y", "Softmax", &["mm"], vec![]),
        ];
        let mut zero = floats("zero", &[]);
        zero.float_data = vec![0.0];
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
            graph: Some(GraphProto {
                node: nodes,
                initializer: vec![floats("w", &[4, 3, 3, 3]), floats("w2", &[64, 5]), zero],
                input: vec![value("x", &[batch, Some(3), Some(8), Some(8)])],
                output: vec![value("y", &[batch, Some(4), Some(5)])],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pad_conv_reshape_matmul_softmax_with_a_slice_chain() {
        for batch in [None, Some(2)] {
            let g = read_onnx(&model(batch).encode_to_vec()).unwrap();
            assert_eq!(g.op_names(), ["Pad", "Conv", "Reshape", "MatMul", "Softmax"]);
            assert_eq!(g.nodes[0].op, OnnxOp::Pad { pads: [1, 1, 1, 1] });
            assert_eq!(g.nodes[0].inputs, ["x"]);
            assert_eq!(g.nodes[1].inputs, ["pad", "w"]);
            assert_eq!(g.shape("conv").unwrap(), [N, f(4), f(8), f(8)]);
            assert_eq!(g.nodes[2].op, OnnxOp::Reshape { shape: vec![N, f(4), f(64)] });
            assert_eq!(g.nodes[2].inputs, ["conv"]);
            assert_eq!(g.nodes[4].op, OnnxOp::Softmax { axis: 2 });
            assert_eq!(g.output_shape(), [N, f(4), f(5)]);
            // The dead ReduceMean and the pad value are gone.
            assert_eq!(g.initializers.keys().collect::<Vec<_>>(), ["w", "w2"]);
            assert!(g.shape("mean").is_none());
            assert_eq!(g.input.batch, batch.map(|b| b as usize));
        }
    }

    #[test]
    fn a_fixed_batch_in_a_constant_reshape_target_is_the_batch() {
        let mut m = model(Some(2));
        let nodes = &mut m.graph.as_mut().unwrap().node;
        nodes.retain(|n| !["shape", "zero_i", "one_i", "first", "rest", "cat", "cast"].contains(&n.name.as_str()));
        nodes.insert(4, int_const("cast", &[2, 4, 64]));
        let g = read_onnx(&m.encode_to_vec()).unwrap();
        assert_eq!(g.nodes[2].op, OnnxOp::Reshape { shape: vec![N, f(4), f(64)] });
    }

    #[test]
    fn unsupported_attribute_values_and_shapes_are_named() {
        let err = |edit: &dyn Fn(&mut ModelProto)| {
            let mut m = model(None);
            edit(&mut m);
            read_onnx(&m.encode_to_vec()).unwrap_err().to_string()
        };
        let e = err(&|m| node_mut(m, "mean").attribute[0].ints = vec![1]);
        assert_eq!(e, "ONNX node 'mean' (ReduceMean): axes=[1] are not supported (only the spatial axes [2, 3])");
        let e = err(&|m| {
            let p = node_mut(m, "pads");
            p.attribute[0].t.as_mut().unwrap().raw_data[8..16].copy_from_slice(&1i64.to_le_bytes());
        });
        assert!(e.starts_with("ONNX node 'pad' (Pad): pads=[0, 1, 1, 1"), "{e}");
        let e = err(&|m| m.graph.as_mut().unwrap().initializer[2].float_data = vec![1.0]);
        assert!(e.contains("constant_value must be 0"), "{e}");
        let e = err(&|m| {
            node_mut(m, "pad").attribute.push(AttributeProto {
                name: "mode".into(),
                r#type: cryptgpu_nn::onnx::proto::ATTR_STRING,
                s: b"reflect".to_vec(),
                ..Default::default()
            })
        });
        assert!(e.contains("mode=reflect is not supported"), "{e}");
        let e = err(&|m| set_int(node_mut(m, "cast"), "to", 1));
        assert!(e.contains("'cast' (Cast): only casts of constants to their own type"), "{e}");
        let e = err(&|m| {
            node_mut(m, "rest").attribute[0].t.as_mut().unwrap().raw_data[..8].copy_from_slice(&5i64.to_le_bytes())
        });
        assert!(e.contains("'reshape' (Reshape): reshape of [N, 4, 8, 8]"), "{e}");
        let e = err(&|m| node_mut(m, "mm").input[0] = "cast".into());
        assert!(e.contains("'mm' (MatMul): integer constant 'cast' as a tensor input"), "{e}");
        let e = err(&|m| set_int(node_mut(m, "y"), "axis", 0));
        assert!(e.contains("axis=0 would mix the batch"), "{e}");
        let e = err(&|m| m.graph.as_mut().unwrap().output[0] = value("y", &[None, Some(4), Some(6)]));
        assert!(e.contains("output 'y' is declared"), "{e}");
    }
}

/// The mlp's initializers, run by hand (Flatten, Gemm with transB, Relu, Gemm), give PyTorch's
/// logits: the raw little-endian weights and the Gemm attributes are read right.
#[test]
fn mlp_weights_reproduce_pytorch_logits() {
    let Some(dir) = onnx_dir() else { return };
    let g = graph(&dir, "mlp");
    let io = std::fs::read(dir.join("mlp.io.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&io).unwrap();
    let read = |n: &str| -> Vec<f32> {
        st.tensor(n).unwrap().data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
    };
    let (x, want) = (read("input"), read("logits"));
    let gemm = |x: &[f32], node: &str| -> Vec<f32> {
        let n = g.nodes.iter().find(|n| n.name == node).unwrap();
        assert_eq!(n.op, OnnxOp::Gemm { trans_b: true, alpha: 1.0, beta: 1.0 });
        let (w, b) = (&g.initializers[&n.inputs[1]], &g.initializers[&n.inputs[2]]);
        let (out, k) = (w.dims[0], w.dims[1]);
        x.chunks_exact(k)
            .flat_map(|row| {
                (0..out).map(move |o| b.data[o] + row.iter().zip(&w.data[o * k..]).map(|(a, b)| a * b).sum::<f32>())
            })
            .collect()
    };
    let h: Vec<f32> = gemm(&x, "/net/net.1/Gemm").into_iter().map(|v| v.max(0.0)).collect();
    let y = gemm(&h, "/net/net.3/Gemm");
    assert_eq!(y.len(), 30);
    for (a, b) in y.iter().zip(&want) {
        assert!((a - b).abs() < 1e-4, "{a} vs {b}");
    }
}
