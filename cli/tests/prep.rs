//! `cryptgpu infer` with a PyTorch-named LeNet trained on pixels/255: `--weights-by-order
//! --no-normalize`, and the errors of the other choices.

mod common;

use std::path::Path;

use common::{last_json, run};
use cryptgpu_nn::data::{load_mnist, shuffled_batches, Normalize, Split};
use cryptgpu_nn::engine::{Model, Sgd};
use cryptgpu_nn::plain::PlainEngine;
use cryptgpu_nn::weights::{init_params, save_safetensors, Params};
use cryptgpu_nn::zoo::{by_name, Dataset};

/// The zoo LeNet trained briefly in the clear on pixels/255 of the shipped MNIST sample, with
/// the names of a PyTorch LeNet (`conv1`, `conv2`, `fc1`, `fc2`).
fn torch_named_lenet() -> Params {
    let spec = by_name("lenet", Dataset::Mnist).unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../data/mnist-sample");
    let train = load_mnist(&sample, Split::Train).unwrap().normalized(&Normalize::Pixels).unwrap();
    let mut model = Model::new(spec.clone(), init_params(&spec, 1), &PlainEngine).unwrap();
    let opt = Sgd { lr: 0.05, momentum: 0.9, weight_decay: 0.0 };
    for idx in shuffled_batches(train.len(), 32, 1).into_iter().take(80) {
        let (x, y) = train.batch(&idx);
        model.train_step(&mut PlainEngine, &x, &y, &opt).unwrap();
    }
    let torch = |zoo: &str| {
        let (module, leaf) = zoo.rsplit_once('.').unwrap();
        let module = match module {
            "features.0" => "conv1",
            "features.3" => "conv2",
            "classifier.0" => "fc1",
            "classifier.2" => "fc2",
            other => panic!("unexpected LeNet module {other}"),
        };
        format!("{module}.{leaf}")
    };
    model.params.into_iter().map(|(n, t)| (torch(&n), t)).collect()
}

#[test]
fn a_pytorch_named_lenet_on_pixels_runs_by_order_without_normalisation() {
    let dir = std::env::temp_dir().join(format!("cryptgpu-cli-prep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("torch-lenet.safetensors");
    save_safetensors(&path, &torch_named_lenet()).unwrap();
    let w = path.to_str().unwrap();
    let infer = ["infer", "--backend", "cpu", "--model", "lenet", "--weights", w, "--limit", "40", "--batch", "40"];
    let with = |extra: &[&str]| run(&[&infer[..], extra].concat());
    let (ok, stdout, stderr) = with(&["--weights-by-order", "--no-normalize", "--json"]);
    assert!(ok, "{stderr}");
    let v = last_json(&stdout);
    assert!(v["accuracy"].as_f64().unwrap() > 0.6, "{v}");
    assert!(v["agreement"].as_f64().unwrap() >= 0.95, "{v}");
    // By name: the names differ, and the error says that by order would work.
    let (ok, _, stderr) = with(&["--no-normalize"]);
    assert!(!ok && stderr.contains("unexpected tensor conv1.weight"), "{stderr}");
    assert!(stderr.contains("load them by order (`--weights-by-order`"), "{stderr}");
    // Statistics for three channels on one-channel images, a zero deviation, both flags.
    let (ok, _, stderr) = with(&["--weights-by-order", "--normalize", "0.5,0.5,0.5,0.2,0.2,0.2"]);
    assert!(!ok && stderr.contains("3 means and 3 standard deviations for 1-channel images"), "{stderr}");
    let (ok, _, stderr) = with(&["--weights-by-order", "--normalize", "0.5,0"]);
    assert!(!ok && stderr.contains("standard deviation 0 is not positive"), "{stderr}");
    let (ok, _, stderr) = with(&["--weights-by-order", "--normalize", "0.1,0.3", "--no-normalize"]);
    assert!(!ok && stderr.contains("cannot be used with"), "{stderr}");
}
