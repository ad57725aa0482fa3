//! Weights (safetensors as PyTorch writes them, with every kind of mismatch) and the data readers.

use std::path::{Path, PathBuf};

use cryptgpu_nn::data::{load_cifar10, load_mnist, parse_idx, shuffled_batches, Split};
use cryptgpu_nn::engine::Engine;
use cryptgpu_nn::plain::{PlainEngine, PlainTensor};
use cryptgpu_nn::spec::{LayerSpec, ModelSpec, BN_EPS};
use cryptgpu_nn::weights::{fold_batchnorm, init_params, load_safetensors, param_limit, save_safetensors};
use cryptgpu_nn::zoo::{lenet, Pool};
use cryptgpu_ring::FixedPoint;
use safetensors::tensor::{Dtype, TensorView};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptgpu-nn-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Writes tensors the way `safetensors.torch.save_file(model.state_dict(), path)` does (F32, plus
/// the I64 `num_batches_tracked` of batch norms).
fn write_torch_like(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)], extra_i64: &[&str]) {
    let mut bufs: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, v)| (n.to_string(), Dtype::F32, s.clone(), v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    for n in extra_i64 {
        bufs.push((n.to_string(), Dtype::I64, vec![], 7i64.to_le_bytes().to_vec()));
    }
    let views: Vec<(String, TensorView)> =
        bufs.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap())).collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn bn_net() -> ModelSpec {
    ModelSpec {
        name: "bn-net".into(),
        input: [2, 4, 4],
        classes: 3,
        layers: vec![
            LayerSpec::Conv2d {
                name: "conv".into(),
                cin: 2,
                cout: 3,
                kernel: (3, 3),
                stride: (1, 1),
                padding: (1, 1),
                bias: false,
            },
            LayerSpec::BatchNorm2d { name: "bn".into(), channels: 3 },
            LayerSpec::Relu,
            LayerSpec::GlobalAvgPool,
            LayerSpec::Linear { name: "fc".into(), fin: 3, fout: 3 },
        ],
    }
}

#[test]
fn save_load_round_trip_and_torch_files() {
    let spec = lenet(Pool::Avg);
    let p = init_params(&spec, 5);
    let path = tmp("lenet.safetensors");
    save_safetensors(&path, &p).unwrap();
    let q = load_safetensors(&path, &spec).unwrap();
    for (n, t) in &p {
        assert!(approx::relative_eq!(t.data[..], q[n].data[..], max_relative = 1e-7), "{n}");
    }
    // A PyTorch-style file with batch norms and num_batches_tracked.
    let spec = bn_net();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = vec![
        ("conv.weight".into(), vec![3, 2, 3, 3], (0..54).map(|i| i as f32 * 0.01 - 0.2).collect()),
        ("bn.weight".into(), vec![3], vec![1.5, 0.5, 2.0]),
        ("bn.bias".into(), vec![3], vec![0.1, -0.2, 0.3]),
        ("bn.running_mean".into(), vec![3], vec![0.05, -0.1, 0.2]),
        ("bn.running_var".into(), vec![3], vec![0.9, 1.1, 0.25]),
        ("fc.weight".into(), vec![3, 3], vec![0.1, 0.2, 0.3, -0.1, 0.0, 0.5, 0.2, 0.2, -0.4]),
        ("fc.bias".into(), vec![3], vec![0.0, 0.1, -0.1]),
    ];
    let path = tmp("bn.safetensors");
    write_torch_like(&path, &tensors, &["bn.num_batches_tracked"]);
    let params = load_safetensors(&path, &spec).unwrap();
    // Folding: y = (x - mean) / sqrt(var + eps) * w + b.
    let folded = fold_batchnorm(&spec, &params).unwrap();
    let x = PlainTensor { shape: vec![1, 3, 1, 1], data: vec![0.7, -0.3, 1.2] };
    let y = PlainEngine.affine_channels(&x, &folded["bn.scale"], &folded["bn.shift"]).unwrap();
    for c in 0..3 {
        let (w, b, m, v) =
            (tensors[1].2[c] as f64, tensors[2].2[c] as f64, tensors[3].2[c] as f64, tensors[4].2[c] as f64);
        let want = (x.data[c] - m) / (v + BN_EPS).sqrt() * w + b;
        assert!(approx::abs_diff_eq!(y.data[c], want, epsilon = 1e-6), "channel {c}: {} vs {want}", y.data[c]);
    }
}

#[test]
fn bad_weight_files_name_the_problem() {
    let spec = bn_net();
    let owned: Vec<(String, Vec<usize>, Vec<f32>)> = spec
        .params()
        .into_iter()
        .map(|(n, s)| {
            let len = s.iter().product();
            (n, s, vec![0.5; len])
        })
        .collect();
    let check = |file: &str, tensors: &[(String, Vec<usize>, Vec<f32>)], needle: &str| {
        let path = tmp(file);
        write_torch_like(&path, tensors, &[]);
        let err = load_safetensors(&path, &spec).unwrap_err().to_string();
        assert!(err.contains(needle), "{file}: {err}");
    };
    let mut missing = owned.clone();
    missing.retain(|t| t.0 != "bn.running_var");
    check("missing.safetensors", &missing, "missing tensor bn.running_var");
    let mut extra = owned.clone();
    extra.push(("head.weight".into(), vec![2], vec![0.0, 0.0]));
    check("extra.safetensors", &extra, "unexpected tensor head.weight");
    let mut shape = owned.clone();
    shape[0] = ("conv.weight".into(), vec![3, 2, 5, 5], vec![0.0; 150]);
    check("shape.safetensors", &shape, "conv.weight has shape [3, 2, 5, 5]");
    let mut nan = owned.clone();
    nan[1].2[0] = f32::NAN;
    check("nan.safetensors", &nan, "NaN");
    let junk = tmp("junk.safetensors");
    std::fs::write(&junk, b"definitely not safetensors").unwrap();
    assert!(load_safetensors(&junk, &spec).unwrap_err().to_string().contains("not a safetensors file"));
    assert!(load_safetensors(&tmp("absent.safetensors"), &spec).is_err());
    assert_eq!(owned.len(), 7);
}

#[test]
fn out_of_range_weights_name_the_tensor_and_element() {
    let spec = bn_net();
    let limit = param_limit(&FixedPoint::default());
    assert_eq!(limit, 2048.0);
    let owned: Vec<(String, Vec<usize>, Vec<f32>)> = spec
        .params()
        .into_iter()
        .map(|(n, s)| {
            let len = s.iter().product();
            (n, s, vec![0.5; len])
        })
        .collect();
    let at = |name: &str| owned.iter().position(|t| t.0 == name).unwrap();
    let load = |file: &str, tensors: &[(String, Vec<usize>, Vec<f32>)]| {
        let path = tmp(file);
        write_torch_like(&path, tensors, &[]);
        load_safetensors(&path, &spec)
    };
    // At the limit: accepted; just past it (both signs), or a running variance outside
    // [0, 2^17 - eps): rejected, naming the element.
    let mut edge = owned.clone();
    edge[at("conv.weight")].2[0] = limit as f32;
    edge[at("fc.bias")].2[2] = -limit as f32;
    edge[at("bn.running_var")].2[0] = 0.0;
    edge[at("bn.running_var")].2[1] = 1e5;
    assert!(load("edge.safetensors", &edge).is_ok());
    let mut big = owned.clone();
    big[at("conv.weight")].2[26] = 5000.0; // [1, 0, 2, 2] of [3, 2, 3, 3]
    big[at("fc.weight")].2[4] = -2049.0;
    big[at("bn.running_var")].2[2] = -0.25;
    let err = load("big.safetensors", &big).unwrap_err().to_string();
    for needle in
        ["conv.weight[1, 0, 2, 2] = 5000 is beyond ±2048", "fc.weight[1, 1] = -2049", "bn.running_var[2] = -0.25"]
    {
        assert!(err.contains(needle), "{needle}: {err}");
    }
    let mut var = owned.clone();
    var[at("bn.running_var")].2[0] = 131072.0;
    let err = load("var.safetensors", &var).unwrap_err().to_string();
    assert!(err.contains("bn.running_var[0] = 131072 is outside [0, 131071.99999"), "{err}");
    // Folding: gamma 100 over sqrt(0 + eps) is a scale of 31623, past the limit.
    let mut fold = owned.clone();
    fold[at("bn.weight")].2[1] = 100.0;
    fold[at("bn.running_var")].2[1] = 0.0;
    let params = load("fold.safetensors", &fold).unwrap();
    let err = fold_batchnorm(&spec, &params).unwrap_err().to_string();
    assert!(err.contains("bn.scale[1] = 31622.7"), "{err}");
}

fn shared(sub: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data").join(sub);
    p.is_dir().then_some(p)
}

#[test]
fn datasets_load_with_the_right_counts() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist-sample");
    let train = load_mnist(&sample, Split::Train).unwrap();
    let test = load_mnist(&sample, Split::Test).unwrap();
    assert_eq!((train.len(), test.len(), train.shape), (2000, 500, [1, 28, 28]));
    let (x, y) = train.batch(&[0, 1]);
    assert_eq!((x.shape.clone(), y.shape.clone()), (vec![2, 1, 28, 28], vec![2, 10]));
    assert_eq!(y.data.iter().sum::<f64>(), 2.0);
    assert_eq!(train.labels[..5], [5, 0, 4, 1, 9]);
    if let Some(dir) = shared("mnist") {
        assert_eq!(load_mnist(&dir, Split::Test).unwrap().len(), 10_000);
    }
    if let Some(dir) = shared("cifar10") {
        let tr = load_cifar10(&dir, Split::Train).unwrap();
        let te = load_cifar10(&dir, Split::Test).unwrap();
        assert_eq!((tr.len(), te.len()), (4000, 1000));
        assert_eq!(tr.labels[..4], [6, 9, 9, 4]);
        assert_eq!(te.labels[..4], [3, 8, 8, 0]);
    }
    let b = shuffled_batches(10, 4, 1);
    assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), vec![4, 4, 2]);
    assert_eq!(b, shuffled_batches(10, 4, 1));
}

#[test]
fn malformed_data_is_rejected() {
    assert!(parse_idx(&[0, 0, 8, 1, 0, 0, 0, 3, 1, 2], "short").is_err());
    assert!(parse_idx(&[1, 2, 3, 4], "magic").is_err());
    assert!(parse_idx(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0], "float").is_err());
    assert_eq!(parse_idx(&[0, 0, 8, 1, 0, 0, 0, 2, 7, 9], "ok").unwrap(), (vec![2], vec![7, 9]));
    let dir = tmp("cifar-bad");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("data_batch_1.bin"), vec![0u8; 3072]).unwrap();
    assert!(load_cifar10(&dir, Split::Train).unwrap_err().to_string().contains("records"));
    assert!(load_cifar10(&dir, Split::Test).is_err());
    assert!(load_mnist(&dir, Split::Train).is_err());
}
