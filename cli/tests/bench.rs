//! `cryptgpu bench` end to end at tiny sizes (no timing is checked).

mod common;

use common::{last_json, run};

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("cryptgpu-cli-bench-{name}-{}", std::process::id()))
}

#[test]
fn relu_sweep_writes_json_and_plots() {
    let dir = temp("relu");
    let d = dir.to_str().unwrap();
    let args = ["bench", "relu", "--backend", "cpu", "--points", "1000,3000", "--reps", "3", "--json", "--out", d];
    let (ok, stdout, stderr) = run(&args);
    assert!(ok, "{stderr}");
    let v = last_json(&stdout);
    assert_eq!(v["bench"], "relu");
    assert!(v["git_commit"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(v["machine"]["cpu_logical_cores"].as_u64().unwrap() >= 1);
    let points = v["figures"][0]["series"][0]["points"].as_array().unwrap();
    assert_eq!(points.len(), 2);
    for p in points {
        assert_eq!(p["rounds"], 9);
        assert_eq!(p["seconds"]["samples"].as_array().unwrap().len(), 3);
    }
    for f in ["relu.json", "fig2-relu.svg", "fig2-relu.png"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn train_iteration_splits_time_by_layer_kind() {
    let dir = temp("train");
    let d = dir.to_str().unwrap();
    let args = [
        "bench",
        "train",
        "--backend",
        "cpu",
        "--only",
        "lenet-mnist",
        "--batch",
        "2",
        "--reps",
        "1",
        "--json",
        "--out",
        d,
    ];
    let (ok, stdout, stderr) = run(&args);
    assert!(ok, "{stderr}");
    let v = last_json(&stdout);
    let net = &v["nets"][0];
    assert_eq!(net["id"], "lenet-mnist");
    assert_eq!(net["batch"], 2);
    let split = net["split_party0"].as_object().unwrap();
    let sum: f64 = split.values().map(|x| x.as_f64().unwrap()).sum();
    let p0 = net["party0_seconds"].as_f64().unwrap();
    assert!(approx::abs_diff_eq!(sum, p0, epsilon = 1e-6 * p0.max(1.0)), "kinds add up to {sum}, party 0 took {p0}");
    for k in ["linear", "pooling", "relu", "softmax", "update", "other"] {
        assert!(split[k].as_f64().unwrap() >= 0.0, "{k}");
    }
    assert!(net["layers"].as_array().unwrap().iter().any(|l| l["label"] == "softmax-cross-entropy"));
    assert!(dir.join("table5-train.png").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_requests_fail_cleanly() {
    let (ok, _, stderr) = run(&["bench", "conv", "--backend", "cpu", "--only", "fig9"]);
    assert!(!ok && stderr.contains("fig9") && !stderr.contains("panicked"), "{stderr}");
    let (ok, _, stderr) = run(&["bench", "relu", "--backend", "cpu", "--points", "0"]);
    assert!(!ok && stderr.contains("--points") && !stderr.contains("panicked"), "{stderr}");
    // An unwritable --out fails before anything is measured.
    let (ok, _, stderr) = run(&["bench", "relu", "--backend", "cpu", "--out", "/proc/cryptgpu-no-such-dir"]);
    assert!(!ok && stderr.contains("--out") && !stderr.contains("fig2 cpu"), "{stderr}");
    // Without a usable GPU, cuda and both are clear errors (on a GPU machine they would run).
    for b in ["cuda", "both"] {
        let (ok, _, stderr) = run(&["bench", "relu", "--backend", b, "--points", "1000", "--reps", "1"]);
        assert!(!stderr.contains("panicked"), "{stderr}");
        if !ok {
            assert!(stderr.contains("GPU backend is unavailable"), "{stderr}");
        }
    }
}
