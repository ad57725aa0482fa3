//! ONNX export: graphs with every op kind and the zoo's LeNet, trainable and folded, written with
//! `write_onnx` and read back with `read_onnx` (opset, operators, every value's shape, the
//! initializers' values); parameters that do not fit the graph rejected with errors naming them;
//! truncated or corrupted bytes never making the reader panic.

use cryptgpu_nn::engine::Model;
use cryptgpu_nn::graph::{Graph, Node, Op};
use cryptgpu_nn::onnx::{read_onnx, save_onnx, write_onnx, Dim, OnnxGraph};
use cryptgpu_nn::plain::{PlainEngine, PlainTensor};
use cryptgpu_nn::session::plain_logits;
use cryptgpu_nn::weights::{fold_graph_batchnorm, init_graph_params, save_safetensors, Params};
use cryptgpu_nn::zoo::{lenet, resnet_for, Dataset, Pool};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn node(label: &str, op: Op, inputs: &[&str], output: &str) -> Node {
    Node { label: label.into(), op, inputs: inputs.iter().map(|s| s.to_string()).collect(), output: output.into() }
}

fn conv(w: &str, b: Option<&str>, stride: (usize, usize), padding: [usize; 4]) -> Op {
    Op::Conv2d { weight: w.into(), bias: b.map(Into::into), stride, padding }
}

fn bn(name: &str) -> Op {
    let [weight, bias, running_mean, running_var] =
        ["weight", "bias", "running_mean", "running_var"].map(|p| format!("{name}.{p}"));
    Op::BatchNorm { weight, bias, running_mean, running_var, eps: 1e-5 }
}

fn bn_params(name: &str, c: usize) -> Vec<(String, Vec<usize>)> {
    ["weight", "bias", "running_mean", "running_var"].iter().map(|p| (format!("{name}.{p}"), vec![c])).collect()
}

/// Every op kind: convolutions with and without bias, strided, asymmetrically padded; batch
/// norms over channels and features; a Pad; an Add of two branches; max pooling with padding;
/// average pooling with and without counting padding; a global average pool and a flatten of
/// one value added together; linear layers with and without bias.
fn every_kind() -> Graph {
    let p = |n: &str, s: &[usize]| vec![(n.to_string(), s.to_vec())];
    let params = [
        p("c0.weight", &[3, 2, 3, 3]),
        p("c0.bias", &[3]),
        bn_params("bn0", 3),
        p("c1.weight", &[4, 3, 2, 2]),
        p("c2.weight", &[4, 4, 3, 3]),
        p("c3.weight", &[4, 3, 1, 1]),
        p("c3.bias", &[4]),
        p("fc1.weight", &[4, 16]),
        bn_params("bn1", 4),
        p("fc2.weight", &[3, 4]),
        p("fc2.bias", &[3]),
    ]
    .concat();
    let avg = |kernel, stride, padding, count_include_pad| Op::AvgPool2d { kernel, stride, padding, count_include_pad };
    let linear = |w: &str, b: Option<&str>| Op::Linear { weight: w.into(), bias: b.map(Into::into) };
    Graph {
        name: "every-kind".into(),
        input: "x".into(),
        input_shape: vec![2, 6, 6],
        output: "logits".into(),
        classes: 3,
        params,
        nodes: vec![
            node("c0", conv("c0.weight", Some("c0.bias"), (1, 1), [1, 1, 1, 1]), &["x"], "c0"),
            node("bn0", bn("bn0"), &["c0"], "b0"),
            node("relu0", Op::Relu, &["b0"], "a"),
            node("pad", Op::Pad { pads: [1, 0, 0, 1] }, &["a"], "padded"),
            node("c1", conv("c1.weight", None, (1, 1), [0; 4]), &["padded"], "c1"),
            node("c2", conv("c2.weight", None, (1, 1), [1, 0, 1, 2]), &["c1"], "branch1"),
            node("c3", conv("c3.weight", Some("c3.bias"), (1, 1), [0; 4]), &["a"], "branch2"),
            node("", Op::Add, &["branch1", "branch2"], "sum"),
            node("maxpool", Op::MaxPool2d { kernel: (3, 3), stride: (2, 2), padding: (1, 1) }, &["sum"], "m"),
            node("avg1", avg((2, 2), (1, 1), (1, 1), false), &["m"], "p1"),
            node("avg2", avg((2, 2), (2, 2), (0, 0), true), &["p1"], "q"),
            node("gap", Op::GlobalAvgPool, &["q"], "g"),
            node("flatten", Op::Flatten, &["q"], "f"),
            node("fc1", linear("fc1.weight", None), &["f"], "h"),
            node("join", Op::Add, &["g", "h"], "j"),
            node("bn1", bn("bn1"), &["j"], "jn"),
            node("relu1", Op::Relu, &["jn"], "r"),
            node("fc2", linear("fc2.weight", Some("fc2.bias")), &["r"], "logits"),
        ],
    }
}

/// Initial parameters with batch-norm statistics away from the identity.
fn params(g: &Graph, seed: u64) -> Params {
    let mut p = init_graph_params(g, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 7);
    for (name, t) in p.iter_mut().filter(|(n, _)| n.starts_with("bn")) {
        let (lo, hi) = if name.ends_with("var") || name.ends_with("weight") { (0.5, 2.0) } else { (-0.5, 0.5) };
        t.data.iter_mut().for_each(|v| *v = rng.gen_range(lo..hi));
    }
    p
}

const TRAINABLE_OPS: [&str; 19] = [
    "Conv",
    "BatchNormalization",
    "Relu",
    "Pad",
    "Conv",
    "Conv",
    "Conv",
    "Add",
    "MaxPool",
    "AveragePool",
    "AveragePool",
    "GlobalAveragePool",
    "Flatten",
    "Flatten",
    "Gemm",
    "Add",
    "BatchNormalization",
    "Relu",
    "Gemm",
];

fn batched(s: &[usize]) -> Vec<Dim> {
    std::iter::once(Dim::Batch).chain(s[1..].iter().map(|&d| Dim::Fixed(d))).collect()
}

/// The read-back file has opset 13, the graph's input and output with a symbolic batch, the
/// shape of every graph value, and every parameter as an f32 initializer (a folded batch norm's
/// reshaped to broadcast over axis 1).
fn assert_reads_back(graph: &Graph, params: &Params, onnx: &OnnxGraph) {
    assert_eq!(onnx.opset, 13);
    assert_eq!(onnx.input.name, graph.input);
    assert_eq!(onnx.input.batch, None);
    let mut input = vec![1];
    input.extend(&graph.input_shape);
    assert_eq!(onnx.input.shape, batched(&input));
    assert_eq!(onnx.output, graph.output);
    assert_eq!(onnx.output_shape(), [Dim::Batch, Dim::Fixed(graph.classes)]);
    for (value, shape) in graph.check(1).unwrap() {
        assert_eq!(onnx.shape(&value), Some(&batched(&shape)[..]), "{value}");
    }
    assert_eq!(onnx.initializers.len(), params.len());
    for (name, t) in params {
        let got = &onnx.initializers[name];
        let dims: Vec<usize> = got.dims.iter().copied().filter(|&d| d != 1).collect();
        let want: Vec<usize> = t.shape.iter().copied().filter(|&d| d != 1).collect();
        assert_eq!(dims, want, "{name}");
        let data: Vec<f32> = t.data.iter().map(|&v| v as f32).collect();
        assert_eq!(got.data, data, "{name}");
    }
}

#[test]
fn every_kind_trainable_reads_back_with_its_ops_shapes_and_values() {
    let g = every_kind();
    let p = params(&g, 1);
    let onnx = read_onnx(&write_onnx(&g, &p).unwrap()).unwrap();
    assert_eq!(onnx.op_names(), TRAINABLE_OPS);
    assert_reads_back(&g, &p, &onnx);
    // The only new value is the global pool's [N, 4, 1, 1] before its flatten.
    let pooled = &onnx.nodes[11];
    assert_eq!(onnx.shape(&pooled.output), Some(&batched(&[1, 4, 1, 1])[..]));
    assert_eq!(onnx.nodes[3].inputs, ["a"], "the pads are a constant input, resolved");
}

#[test]
fn every_kind_folded_writes_each_batch_norm_as_mul_and_add() {
    let g = every_kind();
    let p = fold_graph_batchnorm(&g, &params(&g, 2)).unwrap();
    // The parameters decide: the graph with batch norms and folded parameters exports folded.
    let onnx = read_onnx(&write_onnx(&g, &p).unwrap()).unwrap();
    let folded: Vec<&str> = TRAINABLE_OPS
        .iter()
        .flat_map(|&op| if op == "BatchNormalization" { vec!["Mul", "Add"] } else { vec![op] })
        .collect();
    assert_eq!(onnx.op_names(), folded);
    assert_reads_back(&g.fold_batchnorm(), &p, &onnx);
    assert_eq!(onnx.initializers["bn0.scale"].dims, [3, 1, 1]);
    assert_eq!(onnx.initializers["bn1.shift"].dims, [4]);
    assert_eq!(onnx.nodes[1].inputs, ["c0", "bn0.scale"]);
    assert_eq!(onnx.nodes[2].inputs, ["b0/Mul", "bn0.shift"]);
}

#[test]
fn lenet_exports_with_both_pools() {
    for pool in [Pool::Avg, Pool::Max] {
        let g = lenet(pool).to_graph();
        let p = init_graph_params(&g, 3);
        let onnx = read_onnx(&write_onnx(&g, &p).unwrap()).unwrap();
        let pool = if pool == Pool::Avg { "AveragePool" } else { "MaxPool" };
        assert_eq!(onnx.op_names(), ["Conv", "Relu", pool, "Conv", "Relu", pool, "Flatten", "Gemm", "Relu", "Gemm"]);
        assert_reads_back(&g, &p, &onnx);
    }
}

#[test]
fn value_names_taken_by_parameters_are_renamed() {
    let g = Graph {
        name: "clash".into(),
        input: "w".into(),
        input_shape: vec![4],
        output: "b".into(),
        classes: 2,
        params: vec![("w".into(), vec![2, 4]), ("b".into(), vec![2])],
        nodes: vec![node("fc", Op::Linear { weight: "w".into(), bias: Some("b".into()) }, &["w"], "b")],
    };
    let onnx = read_onnx(&write_onnx(&g, &init_graph_params(&g, 4)).unwrap()).unwrap();
    assert_eq!(onnx.input.name, "w_1");
    assert_eq!(onnx.output, "b_1");
    assert_eq!(onnx.nodes[0].inputs, ["w_1", "w", "b"]);
}

#[test]
fn parameters_that_do_not_fit_the_graph_are_named() {
    let g = every_kind();
    let p = params(&g, 5);
    let err = |p: &Params| write_onnx(&g, p).unwrap_err().to_string();

    let mut missing = p.clone();
    missing.remove("c2.weight");
    assert_eq!(err(&missing), "weights do not match the model: missing parameter c2.weight");

    let mut shaped = p.clone();
    shaped.insert("fc1.weight".into(), PlainTensor::zeros(&[16, 4]));
    assert_eq!(err(&shaped), "weights do not match the model: fc1.weight has shape [16, 4], expected [4, 16]");

    let mut extra = p.clone();
    extra.insert("fc3.weight".into(), PlainTensor::zeros(&[1]));
    assert_eq!(err(&extra), "weights do not match the model: unexpected parameters [\"fc3.weight\"]");

    let mut short = p.clone();
    short.get_mut("c0.bias").unwrap().data.pop();
    assert_eq!(err(&short), "weights do not match the model: c0.bias has 2 values, its shape [3] needs 3");

    let mut bad = g.clone();
    bad.nodes[13].inputs = vec!["q".into()];
    assert!(write_onnx(&bad, &p).unwrap_err().to_string().contains("node fc1: weight [4, 16] does not take"));
}

#[test]
fn truncated_or_corrupted_bytes_are_errors_not_panics() {
    let g = every_kind();
    let bytes = write_onnx(&g, &params(&g, 6)).unwrap();
    for len in (0..bytes.len()).step_by(3).chain(bytes.len() - 8..bytes.len()) {
        assert!(read_onnx(&bytes[..len]).is_err(), "a prefix of {len} of {} bytes read", bytes.len());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    for _ in 0..300 {
        let mut b = bytes.clone();
        for _ in 0..rng.gen_range(1..4) {
            let i = rng.gen_range(0..b.len());
            b[i] = rng.gen();
        }
        let _ = read_onnx(&b);
    }
}

#[test]
fn save_onnx_names_an_unwritable_path() {
    let g = every_kind();
    let path = std::env::temp_dir().join("cryptgpu-no-such-dir/every-kind.onnx");
    let e = save_onnx(&path, &g, &params(&g, 7)).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");
}

/// For `scripts/check-onnx.py`: writes `NAME.onnx` and `NAME.io.safetensors` (an `input` batch
/// and the plaintext twin's `logits`) into `$CRYPTGPU_ONNX_OUT` for LeNet, the CIFAR-10 ResNet-18
/// and every-kind, trainable and folded. Run once by hand:
/// `CRYPTGPU_ONNX_OUT=/tmp/x cargo test -p cryptgpu-nn --test onnx_export -- --ignored`.
#[test]
#[ignore]
fn write_models_and_twin_logits_for_external_checks() {
    let dir = std::path::PathBuf::from(std::env::var("CRYPTGPU_ONNX_OUT").expect("CRYPTGPU_ONNX_OUT"));
    std::fs::create_dir_all(&dir).unwrap();
    let every = every_kind();
    let lenet = lenet(Pool::Max).to_graph();
    let resnet = resnet_for(18, Dataset::Cifar10, Pool::Max).unwrap().to_graph();
    let every_p = params(&every, 8);
    let cases = [
        ("lenet", &lenet, init_graph_params(&lenet, 8)),
        ("resnet18_cifar", &resnet, init_graph_params(&resnet, 8)),
        ("every_kind", &every, every_p.clone()),
        ("every_kind_folded", &every, fold_graph_batchnorm(&every, &every_p).unwrap()),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for (name, g, p) in cases {
        save_onnx(dir.join(format!("{name}.onnx")), g, &p).unwrap();
        let mut shape = vec![3];
        shape.extend(&g.input_shape);
        let n = shape.iter().product();
        let x = PlainTensor::new(&shape, (0..n).map(|_| rng.gen_range(-1.0..1.0)).collect()).unwrap();
        let model = Model::from_graph(g.clone(), p, &PlainEngine).unwrap();
        let logits = plain_logits(&model, &x).unwrap();
        let io = Params::from([("input".to_string(), x), ("logits".to_string(), logits)]);
        save_safetensors(&dir.join(format!("{name}.io.safetensors")), &io).unwrap();
    }
}

/// Logits of the plaintext twin of `graph` with `params` for a fixed random batch.
fn twin(graph: &Graph, params: Params, x: &PlainTensor) -> PlainTensor {
    plain_logits(&Model::from_graph(graph.clone(), params, &PlainEngine).unwrap(), x).unwrap()
}

fn batch(graph: &Graph, n: usize, seed: u64) -> PlainTensor {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let shape: Vec<usize> = std::iter::once(n).chain(graph.input_shape.iter().copied()).collect();
    let len = shape.iter().product();
    PlainTensor::new(&shape, (0..len).map(|_| rng.gen_range(-1.0..1.0)).collect()).unwrap()
}

/// Exported, read back and lowered again (for training and for inference), a model computes
/// what it computed before, to f32 rounding: trainable and folded, and a LeNet after SGD steps.
#[test]
fn exported_models_reimport_with_the_same_outputs() {
    use cryptgpu_nn::engine::Sgd;
    use cryptgpu_nn::onnx::Lowering;
    let g = every_kind();
    let p = params(&g, 11);
    let x = batch(&g, 3, 12);
    let want = twin(&g, p.clone(), &x);
    let onnx = read_onnx(&write_onnx(&g, &p).unwrap()).unwrap();
    for lowering in [Lowering::Training, Lowering::Inference] {
        let m = onnx.to_model(lowering).unwrap();
        let got = twin(&m.graph, m.params, &x);
        assert!(got.max_abs_diff(&want).unwrap() < 1e-5, "{lowering:?}");
        assert_eq!(got.argmax_rows(), want.argmax_rows());
    }
    let training = onnx.to_model(Lowering::Training).unwrap();
    assert_eq!(training.graph.params, g.params, "a trainable export keeps every parameter and its name");
    let (fg, fp) = (g.fold_batchnorm(), fold_graph_batchnorm(&g, &p).unwrap());
    let m = read_onnx(&write_onnx(&fg, &fp).unwrap()).unwrap().to_model(Lowering::Inference).unwrap();
    assert!(twin(&m.graph, m.params, &x).max_abs_diff(&want).unwrap() < 1e-5, "folded");

    // A LeNet after three SGD steps.
    let g = lenet(Pool::Max).to_graph();
    let mut model = Model::from_graph(g.clone(), init_graph_params(&g, 3), &PlainEngine).unwrap();
    let opt = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.0 };
    for step in 0..3 {
        let xs = batch(&g, 4, 20 + step);
        let y = PlainTensor::new(&[4, 10], (0..40).map(|i| (i % 10 == i / 10) as u8 as f64).collect()).unwrap();
        model.train_step(&mut PlainEngine, &xs, &y, &opt).unwrap();
    }
    let x = batch(&g, 8, 30);
    let want = plain_logits(&model, &x).unwrap();
    let m = read_onnx(&write_onnx(&g, &model.params).unwrap()).unwrap().to_model(Lowering::Training).unwrap();
    let got = twin(&m.graph, m.params, &x);
    assert!(got.max_abs_diff(&want).unwrap() < 1e-5);
    assert_eq!(got.argmax_rows(), want.argmax_rows(), "the same predictions");
}
