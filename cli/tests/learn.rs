//! `cryptgpu train` then `cryptgpu infer` with the saved weights, on the shipped MNIST sample.

mod common;

use common::{last_json, run};

#[test]
fn train_save_then_infer() {
    let dir = std::env::temp_dir().join(format!("cryptgpu-cli-learn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let weights = dir.join("lenet.safetensors");
    let w = weights.to_str().unwrap();
    let (ok, stdout, stderr) = run(&[
        "train",
        "--backend",
        "cpu",
        "--limit",
        "64",
        "--test-limit",
        "20",
        "--batch",
        "32",
        "--save",
        w,
        "--json",
    ]);
    assert!(ok, "{stderr}");
    let v = last_json(&stdout);
    for key in ["accuracy", "plaintext_accuracy", "agreement", "seconds_per_step", "bytes_sent_per_party", "rounds"] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    // The twin's ranges per layer: LeNet on MNIST stays far inside every bound.
    let ranges = v["ranges"].as_array().expect("ranges");
    let inside = |r: &serde_json::Value| r["ratio"].as_f64().is_some_and(|x| x < 0.25);
    assert!(ranges.iter().any(|r| r["layer"] == "sgd") && ranges.iter().all(inside), "{v}");
    assert_eq!(v["steps"], 2);
    assert!(v["agreement"].as_f64().unwrap() >= 0.9, "{v}");
    let (ok, stdout, stderr) =
        run(&["infer", "--backend", "cpu", "--model", "lenet", "--weights", w, "--limit", "20", "--json"]);
    assert!(ok, "{stderr}");
    let v = last_json(&stdout);
    for key in ["accuracy", "plaintext_accuracy", "agreement", "seconds_per_image", "ranges"] {
        assert!(v.get(key).is_some(), "missing {key}: {v}");
    }
    assert_eq!(v["images"], 20);
    assert!(v["agreement"].as_f64().unwrap() >= 0.95, "{v}");
    // The same in-process run in the client-server setting: the images at party 1, which alone
    // receives the predictions.
    let roles = ["--model-owner", "0", "--data-owner", "1", "--output-to", "1"];
    let mut args = vec!["infer", "--backend", "cpu", "--model", "lenet", "--weights", w, "--limit", "20", "--json"];
    args.extend(roles);
    let (ok, stdout, stderr) = run(&args);
    assert!(ok, "{stderr}");
    let v = last_json(&stdout);
    assert_eq!(v["roles"], "model=0 data=1 output=1 weights=0");
    assert!(v["agreement"].as_f64().unwrap() >= 0.95, "{v}");
    let (ok, _, stderr) = run(&["infer", "--model", "lenet", "--weights", w, "--output-to", "3"]);
    assert!(!ok && stderr.contains("3"), "{stderr}");
}

#[test]
fn bad_inputs_are_clear_errors() {
    let (ok, _, stderr) = run(&["infer", "--model", "lenet", "--weights", "/nonexistent/w.safetensors"]);
    assert!(!ok && stderr.contains("/nonexistent/w.safetensors"), "{stderr}");
    let (ok, _, stderr) = run(&["train", "--model", "resnet50", "--limit", "4"]);
    assert!(!ok && stderr.contains("ImageNet"), "{stderr}");
    let (ok, _, stderr) = run(&["train", "--model", "nonsense"]);
    assert!(!ok && stderr.contains("unknown model"), "{stderr}");
    let (ok, _, stderr) = run(&["train", "--model", "alexnet", "--dataset", "cifar10"]);
    assert!(!ok && stderr.contains("--data"), "{stderr}");
}
