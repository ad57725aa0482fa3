//! The `cryptgpu matmul` command end to end.

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cryptgpu")).args(args).output().expect("binary runs")
}

#[test]
fn matmul_512_reports_exact_traffic_and_small_error() {
    let out = run(&["matmul", "--m", "512", "--k", "512", "--n", "512", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let last = stdout.lines().last().unwrap();
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    for key in ["op", "m", "k", "n", "backend", "seconds", "rounds", "bytes_sent_per_party", "max_abs_error"] {
        assert!(v.get(key).is_some(), "missing key {key} in {last}");
    }
    assert_eq!(v["op"], "matmul");
    // Exact truncation: 2 rounds, 24·m·n B from party 0 and 16·m·n from parties 1 and 2.
    assert_eq!(v["rounds"], 2);
    let mn = 512 * 512;
    assert_eq!(v["bytes_sent_per_party"], serde_json::json!([24 * mn, 16 * mn, 16 * mn]));
    assert_eq!(v["bytes_sent_per_party"], v["bytes_formula_per_party"]);
    assert!(v["max_abs_error"].as_f64().unwrap() < 1e-4, "{last}");
}

#[test]
fn matmul_rejects_bad_arguments() {
    let out = run(&["matmul", "--m", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be positive"));
    let out = run(&["matmul", "--frac-bits", "70", "--m", "2", "--k", "2", "--n", "2"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("frac"));
}

/// `--net 20,1`: the product's 2 rounds take at least 2 x 20 ms plus the busiest link's bytes at
/// 1 Gbit/s (the reported lower bound), and not much more; the JSON records the link model.
#[test]
fn shaped_matmul_takes_its_lower_bound_and_records_the_link() {
    let out = run(&["matmul", "--m", "64", "--k", "64", "--n", "64", "--backend", "cpu", "--net", "20,1", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["net"], serde_json::json!({"name": "custom", "latency_ms": 20.0, "gbit_per_s": 1.0}));
    assert_eq!(v["rounds"], 2);
    let bound = v["lower_bound_seconds"].as_f64().unwrap();
    // Party 0 sends 24·m·n B over its two links, at least half of it on one: 49,152 B = 0.39 ms.
    assert!((0.040..0.042).contains(&bound), "{bound}");
    let seconds = v["seconds"].as_f64().unwrap();
    assert!(seconds >= bound && seconds < (bound + 0.05) * 1.3, "{seconds} s for a bound of {bound} s");

    let out = run(&["matmul", "--m", "4", "--k", "4", "--n", "4", "--backend", "cpu", "--net", "lan", "--json"]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["net"]["name"], "lan");
    let out = run(&["matmul", "--net", "fast"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad link model"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
