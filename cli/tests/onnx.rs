//! `cryptgpu infer` and `cryptgpu train` on ONNX files: the PyTorch exports of ../shared/data/onnx
//! reproduce PyTorch's logits privately, a trained model saved as ONNX is read back, and bad
//! files and tensors are clear errors.

mod common;

use std::path::PathBuf;

use common::{last_json, onnx_dir, run};
use cryptgpu_nn::weights::read_safetensors;

fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptgpu-cli-onnx-{what}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn fixtures_match_pytorch_privately() {
    let Some(dir) = onnx_dir() else { return };
    let out_dir = temp_dir("fixtures");
    for name in ["lenet_maxpool", "bn_cnn", "tiny_resnet", "mlp"] {
        let model = dir.join(format!("{name}.onnx"));
        let io = dir.join(format!("{name}.io.safetensors"));
        let out = out_dir.join(format!("{name}.logits.safetensors"));
        let (ok, stdout, stderr) = run(&[
            "infer",
            "--backend",
            "cpu",
            "--model",
            model.to_str().unwrap(),
            "--input",
            io.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
            "--json",
        ]);
        assert!(ok, "{name}: {stderr}");
        let v = last_json(&stdout);
        let reference = v["reference_max_abs_error"].as_f64().unwrap_or(f64::NAN);
        let twin = v["max_abs_error"].as_f64().unwrap_or(f64::NAN);
        eprintln!("{name}: max abs error {reference:.2e} against PyTorch, {twin:.2e} against the twin");
        assert!(reference < 1e-3 && twin < 1e-3, "{name}: {v}");
        let written = read_safetensors(&out).unwrap();
        let expected = &read_safetensors(&io).unwrap()["logits"];
        assert_eq!(written["logits"].shape, expected.shape, "{name}");
        let diff = written["logits"].max_abs_diff(expected).unwrap();
        assert!(diff < 1e-3, "{name}: written logits {diff}");
    }
    std::fs::remove_dir_all(&out_dir).ok();
}

#[test]
fn train_an_onnx_model_and_save_it_as_onnx() {
    let Some(dir) = onnx_dir() else { return };
    let out_dir = temp_dir("train");
    let model = dir.join("lenet_maxpool.onnx");
    let saved = out_dir.join("trained.onnx");
    let (ok, stdout, stderr) = run(&[
        "train",
        "--backend",
        "cpu",
        "--model",
        model.to_str().unwrap(),
        "--limit",
        "64",
        "--test-limit",
        "20",
        "--batch",
        "32",
        "--save",
        saved.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let v = last_json(&stdout);
    assert_eq!(v["model"], "lenet_maxpool");
    assert_eq!(v["steps"], 2);
    assert!(v["agreement"].as_f64().unwrap() >= 0.9, "{v}");
    // The saved file is a model again: it classifies the test images as its plaintext twin does.
    let (ok, stdout, stderr) =
        run(&["infer", "--backend", "cpu", "--model", saved.to_str().unwrap(), "--limit", "20", "--json"]);
    assert!(ok, "{stderr}");
    let v = last_json(&stdout);
    assert_eq!(v["model"], "trained");
    assert!(v["agreement"].as_f64().unwrap() >= 0.95, "{v}");
    std::fs::remove_dir_all(&out_dir).ok();
}

#[test]
fn bad_models_and_inputs_are_clear_errors() {
    let out_dir = temp_dir("errors");
    let missing = out_dir.join("missing.onnx");
    let (ok, _, stderr) = run(&["infer", "--model", missing.to_str().unwrap(), "--limit", "1"]);
    assert!(!ok && stderr.contains("missing.onnx"), "{stderr}");
    let corrupt = out_dir.join("corrupt.onnx");
    std::fs::write(&corrupt, b"\x0a\xff\xff\xff\xff\x0f not a model").unwrap();
    let (ok, _, stderr) = run(&["infer", "--model", corrupt.to_str().unwrap(), "--limit", "1"]);
    assert!(!ok && stderr.contains("corrupt.onnx") && !stderr.contains("panicked"), "{stderr}");
    let (ok, _, stderr) = run(&["infer", "--model", "lenet", "--output", "y.safetensors"]);
    assert!(!ok && stderr.contains("--input"), "{stderr}");
    if let Some(dir) = onnx_dir() {
        // A CIFAR-shaped input for an MNIST-shaped model.
        let model = dir.join("mlp.onnx");
        let io = dir.join("bn_cnn.io.safetensors");
        let (ok, _, stderr) = run(&["infer", "--model", model.to_str().unwrap(), "--input", io.to_str().unwrap()]);
        assert!(!ok && stderr.contains("[4, 3, 32, 32]") && stderr.contains("mlp"), "{stderr}");
        // `--input` without a file is for the parties that do not own the data, not one process.
        let (ok, _, stderr) = run(&["infer", "--model", model.to_str().unwrap(), "--input", "--backend", "cpu"]);
        assert!(!ok && stderr.contains("--input needs a file") && !stderr.contains("panicked"), "{stderr}");
        // A model file is not an input tensor.
        let (ok, _, stderr) = run(&["infer", "--model", model.to_str().unwrap(), "--input", model.to_str().unwrap()]);
        assert!(!ok && stderr.contains("safetensors"), "{stderr}");
    }
    std::fs::remove_dir_all(&out_dir).ok();
}
