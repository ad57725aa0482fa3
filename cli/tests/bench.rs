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

/// The one `nets` entry measured over `link` (a preset's name).
fn timing_of<'a>(nets: &'a [serde_json::Value], link: &str) -> &'a serde_json::Value {
    let found: Vec<&serde_json::Value> = nets.iter().filter(|n| n["net"]["name"] == link).collect();
    assert_eq!(found.len(), 1, "one entry for {link}");
    found[0]
}

/// Checks a `train` or `infer` record measured under `none` and `lan`: one entry per link model,
/// the same traffic, a lower bound no longer than the shaped run's fastest repetition, and the
/// peak memory.
fn check_two_links(v: &serde_json::Value) {
    let names: Vec<&str> =
        v["settings"]["net"].as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["none", "lan"]);
    let nets = v["nets"].as_array().unwrap();
    assert_eq!(nets.len(), 2);
    let (none, lan) = (timing_of(nets, "none"), timing_of(nets, "lan"));
    assert_eq!(none["lower_bound_seconds"], 0.0);
    assert_eq!((&none["rounds"], &none["bytes_sent_per_party"]), (&lan["rounds"], &lan["bytes_sent_per_party"]));
    let bound = lan["lower_bound_seconds"].as_f64().unwrap();
    let rounds = lan["rounds"].as_f64().unwrap();
    assert!(bound >= rounds * 0.2e-3, "{bound} s for {rounds} rounds of 0.2 ms");
    let min = lan["seconds"]["min"].as_f64().unwrap();
    assert!(bound <= min, "lower bound {bound} s over the measured {min} s");
    assert_eq!(lan["net"]["latency_ms"], 0.2);
    for n in nets {
        assert!(n["seconds"]["median"].as_f64().unwrap() > 0.0);
        if cfg!(target_os = "linux") {
            assert!(n["peak_rss_bytes"].as_u64().unwrap() > 1 << 20, "{}", n["peak_rss_bytes"]);
        }
    }
}

#[test]
fn train_and_infer_measure_each_link_model() {
    for bench in ["train", "infer"] {
        let args = [
            "bench",
            bench,
            "--backend",
            "cpu",
            "--only",
            "lenet-mnist",
            "--batch",
            "1",
            "--reps",
            "1",
            "--net",
            "none",
            "--net",
            "lan",
            "--json",
        ];
        let (ok, stdout, stderr) = run(&args);
        assert!(ok, "{stderr}");
        assert!(stdout.contains("net lan") && stdout.contains("lower bound"), "{stdout}");
        check_two_links(&last_json(&stdout));
    }
}

#[test]
fn relu_points_record_peak_memory() {
    let (ok, stdout, stderr) = run(&["bench", "relu", "--backend", "cpu", "--points", "1000", "--reps", "1", "--json"]);
    assert!(ok, "{stderr}");
    let p = &last_json(&stdout)["figures"][0]["series"][0]["points"][0];
    if cfg!(target_os = "linux") {
        assert!(p["peak_rss_bytes"].as_u64().unwrap() > 1 << 20, "{p}");
    } else {
        assert!(p["peak_rss_bytes"].is_null());
    }
}

#[test]
fn link_lists_are_checked() {
    let train = ["bench", "train", "--backend", "cpu", "--only", "lenet-mnist", "--batch", "1"];
    let with = |extra: &[&'static str]| -> (bool, String) {
        let (ok, _, stderr) = run(&[&train[..], extra].concat());
        assert!(!stderr.contains("panicked"), "{stderr}");
        (ok, stderr)
    };
    let (ok, e) = with(&["--net", "lan,wan"]);
    assert!(!ok && e.contains("--net lan --net wan"), "{e}");
    let (ok, e) = with(&["--net", "wan", "--net", "wan"]);
    assert!(!ok && e.contains("given twice") && !e.contains("private training"), "{e}");
    let (ok, e) = with(&["--net", "slow"]);
    assert!(!ok && e.contains("bad link model"), "{e}");
    let (ok, _, e) = run(&["bench", "relu", "--backend", "cpu", "--points", "1000", "--net", "none", "--net", "lan"]);
    assert!(!ok && e.contains("takes one link model") && !e.contains("panicked"), "{e}");
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
