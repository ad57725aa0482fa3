//! `cryptgpu inspect`: the layers and the private cost of a forward pass, as a table and as JSON.

mod common;

use common::{last_json, onnx_dir, run};
use serde_json::Value;

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn lenet_table_and_json() {
    let (ok, stdout, stderr) = run(&["inspect", "lenet", "--pool", "max", "--batch", "2"]);
    assert!(ok, "{stderr}");
    for want in ["lenet-maxpool at batch 2", "input", "0:features.0", "conv2d", "maxpool2d", "reveal", "total", "KiB"] {
        assert!(stdout.contains(want), "missing {want}:\n{stdout}");
    }
    let (ok, stdout, stderr) =
        run(&["inspect", "lenet", "--batch", "3", "--data-owner", "1", "--output-to", "1,2", "--json"]);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v = last_json(&stdout);
    assert_eq!((v["op"].as_str(), v["model"].as_str(), u(&v["batch"])), (Some("inspect"), Some("lenet"), 3));
    let nodes = v["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 10, "{v}");
    for n in nodes {
        for key in ["label", "op", "output_shape", "params", "rounds", "bytes_sent_per_party"] {
            assert!(n.get(key).is_some(), "missing {key}: {n}");
        }
    }
    assert_eq!(nodes[0]["output_shape"], serde_json::json!([3, 20, 24, 24]));
    // The totals are the sums of the rows (input, nodes, reveal).
    let steps: Vec<&Value> = std::iter::once(&v["input"]).chain(nodes).chain([&v["reveal"]]).collect();
    assert_eq!(steps.iter().map(|s| u(&s["rounds"])).sum::<u64>(), u(&v["total"]["rounds"]));
    for p in 0..3 {
        let sum: u64 = steps.iter().map(|s| u(&s["bytes_sent_per_party"][p])).sum();
        assert_eq!(sum, u(&v["total"]["bytes_sent_per_party"][p]), "party {p}");
    }
    assert_eq!(nodes.iter().map(|n| u(&n["params"])).sum::<u64>(), u(&v["params"]));
    assert_eq!(u(&v["params"]), 431_080);
    // The data owner (party 1) shares 3 images; two receivers, two openings of the 30 logits.
    assert_eq!(v["input"]["bytes_sent_per_party"], serde_json::json!([0, 8 * 3 * 784, 0]));
    assert_eq!(v["reveal"]["bytes_sent_per_party"], serde_json::json!([240, 240, 0]));
    assert_eq!(v["roles"], "model=0 data=1 output=1,2 weights=0");
}

#[test]
fn bad_arguments_are_clear_errors() {
    let (ok, _, stderr) = run(&["inspect", "lenet5"]);
    assert!(!ok && stderr.contains("unknown model") && stderr.contains("lenet5"), "{stderr}");
    let (ok, _, stderr) = run(&["inspect", "lenet", "--batch", "0"]);
    assert!(!ok && stderr.contains("batch"), "{stderr}");
    let (ok, _, stderr) = run(&["inspect", "lenet-maxpool", "--pool", "avg"]);
    assert!(!ok && stderr.contains("--pool avg"), "{stderr}");
    let (ok, _, stderr) = run(&["inspect", "missing.onnx"]);
    assert!(!ok && stderr.contains("missing.onnx"), "{stderr}");
}

#[test]
fn onnx_fixtures_cost_their_layers() {
    let Some(dir) = onnx_dir() else { return };
    for name in ["lenet_maxpool", "bn_cnn", "tiny_resnet", "mlp"] {
        let path = dir.join(format!("{name}.onnx"));
        let (ok, stdout, stderr) = run(&["inspect", path.to_str().unwrap()]);
        assert!(ok && stdout.contains("total") && stdout.contains("linear"), "{name}: {stderr}\n{stdout}");
        let (ok, stdout, stderr) = run(&["inspect", path.to_str().unwrap(), "--batch", "4", "--json"]);
        assert!(ok, "{name}: {stderr}");
        let v = last_json(&stdout);
        assert_eq!(v["model"], name);
        assert_eq!(v["batch"], 4);
        let rows = v["nodes"].as_array().unwrap();
        let rounds: u64 = rows.iter().map(|r| r["rounds"].as_u64().unwrap()).sum::<u64>()
            + v["input"]["rounds"].as_u64().unwrap()
            + v["reveal"]["rounds"].as_u64().unwrap();
        assert_eq!(v["total"]["rounds"].as_u64(), Some(rounds), "{name}");
        assert!(v["params"].as_u64().unwrap() > 0, "{name}");
    }
}
