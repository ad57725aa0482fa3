//! The `cryptgpu relu` and `cryptgpu softmax` commands end to end (CPU backend).

use std::process::Command;

fn run(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cryptgpu")).args(args).output().expect("binary runs")
}

fn last_json(out: &std::process::Output) -> serde_json::Value {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn relu_is_exact_and_reports_its_costs() {
    let n = 10_000u64;
    let v = last_json(&run(&["relu", "--n", &n.to_string(), "--backend", "cpu", "--json"]));
    for key in
        ["op", "n", "backend", "seconds", "rounds", "bytes_sent_per_party", "mismatches", "pieces", "peak_rss_bytes"]
    {
        assert!(v.get(key).is_some(), "missing key {key} in {v}");
    }
    assert_eq!(v["op"], "relu");
    assert_eq!(v["backend"], "cpu");
    assert_eq!(v["mismatches"], 0);
    assert_eq!((v["rounds"].as_u64(), v["pieces"].as_u64()), (Some(9), Some(1)));
    assert_eq!(v["bytes_sent_per_party"], v["bytes_formula_per_party"]);
    // W(n) = n + n/2 + n/4 + n/8 + n/16 + n/64 words (rounded up): 8 B each, + input and x*[b]
    // (led by party 1, after the MSB's lead: 24 / 24 / 16 B for roles 0 / 1 / 2, so party 0 sends
    // 16, party 1 24 and party 2 24 B per element).
    let w = n + n.div_ceil(2) + n.div_ceil(4) + n.div_ceil(8) + n.div_ceil(16) + n.div_ceil(64);
    let want = [16 * n + 8 * w + 16 * n, 8 * n + 8 * w + 24 * n, 8 * n + 8 * w + 24 * n];
    assert_eq!(v["bytes_sent_per_party"], serde_json::json!(want));
}

#[test]
fn relu_with_the_six_round_msb() {
    let v = last_json(&run(&["relu", "--n", "3000", "--backend", "cpu", "--msb", "low-latency", "--json"]));
    assert_eq!(v["msb"], "low-latency");
    assert_eq!(v["mismatches"], 0);
    assert_eq!(v["rounds"], 7);
    assert_eq!(v["bytes_sent_per_party"], v["bytes_formula_per_party"]);
}

#[test]
fn softmax_is_within_1e3_of_f64() {
    let v = last_json(&run(&["softmax", "--rows", "8", "--classes", "100", "--backend", "cpu", "--json"]));
    for key in ["op", "rows", "classes", "backend", "seconds", "rounds", "bytes_sent_per_party", "max_abs_error"] {
        assert!(v.get(key).is_some(), "missing key {key} in {v}");
    }
    assert_eq!(v["op"], "softmax");
    assert!(v["max_abs_error"].as_f64().unwrap() < 1e-3, "{v}");
}

#[test]
fn nonlinear_commands_reject_bad_arguments() {
    let out = run(&["relu", "--n", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be positive"));
    let out = run(&["softmax", "--rows", "2", "--classes", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be positive"));
    let out = run(&["relu", "--n", "4", "--range", "1e300"]);
    assert!(!out.status.success());
}
