//! `cryptgpu party`: three real processes on 127.0.0.1 (mutual TLS), against the in-process run.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary, with the opt-in that `--insecure-key-seed` needs (the reproducibility tests below
/// compare seeded runs); tests of the opt-in itself remove it.
fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cryptgpu"));
    c.env("CRYPTGPU_ALLOW_INSECURE_KEYS", "1");
    c
}

/// A fresh directory with three parties' keys (`cryptgpu keys gen`).
fn keys_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptgpu-party-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = bin().args(["keys", "gen", "--out"]).arg(&dir).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

/// Three free ports on 127.0.0.1 (bound to port 0, then released for the parties).
fn free_ports() -> [u16; 3] {
    let ls: Vec<TcpListener> = (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap()).collect();
    std::array::from_fn(|i| ls[i].local_addr().unwrap().port())
}

/// Writes a configuration at `path` using the certificates in `certs_dir` (keys from `key_dir`).
fn write_config(path: &Path, certs_dir: &Path, ports: [u16; 3], timeout: f64, connect_timeout: f64) {
    let mut s = String::new();
    for (i, port) in ports.iter().enumerate() {
        s += &format!(
            "[[party]]\nid = {i}\naddress = \"127.0.0.1:{port}\"\ncertificate = {:?}\nkey = {:?}\n\n",
            certs_dir.join(format!("party{i}.crt")),
            certs_dir.join(format!("party{i}.key")),
        );
    }
    s += &format!("[network]\ntimeout_secs = {timeout}\nconnect_timeout_secs = {connect_timeout}\n");
    std::fs::write(path, s).unwrap();
}

fn spawn_party(config: &Path, id: usize, job: &[&str]) -> Child {
    bin()
        .args(["party", "--config"])
        .arg(config)
        .args(["--id", &id.to_string()])
        .args(job)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn last_json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

const MATMUL: &[&str] =
    &["matmul", "--m", "40", "--k", "24", "--n", "16", "--seed", "3", "--backend", "cpu", "--insecure-key-seed", "9"];

const SMALL: &[&str] = &["matmul", "--m", "8", "--k", "8", "--n", "8", "--backend", "cpu"];

#[test]
fn three_processes_match_the_in_process_run() {
    let dir = keys_dir("match");
    let config = dir.join("test.toml");
    write_config(&config, &dir, free_ports(), 30.0, 30.0);
    let local = bin().args(MATMUL).arg("--json").output().unwrap();
    assert!(local.status.success(), "{}", String::from_utf8_lossy(&local.stderr));
    let local = last_json(&local);

    let job: Vec<&str> = MATMUL.iter().copied().chain(["--json"]).collect();
    let children: Vec<Child> = (0..3).map(|i| spawn_party(&config, i, &job)).collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "party {i}: {stderr}");
        assert!(stderr.contains("mutual TLS"), "{stderr}");
        let v = last_json(&out);
        assert_eq!(v["party"], i);
        assert_eq!(v["keys"], "insecure-seed:9");
        if i == 0 {
            assert_eq!(v["result_digest"], local["result_digest"], "party {i}");
            assert_eq!(v["max_abs_error"], local["max_abs_error"]);
            assert_eq!(v["received"], serde_json::json!(["product"]));
        } else {
            // The product is opened to party 0 alone.
            assert!(v["result_digest"].is_null() && v["max_abs_error"].is_null(), "party {i}: {v}");
            assert_eq!(v["received"], serde_json::json!([]));
        }
        assert_eq!(v["rounds"], local["rounds"]);
        assert_eq!(v["bytes_sent"], local["bytes_sent_per_party"][i]);
        assert_eq!(v["total_bytes_sent"], local["total_bytes_sent_per_party"][i]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn three_processes_match_the_in_process_relu() {
    let dir = keys_dir("relu");
    let config = dir.join("test.toml");
    write_config(&config, &dir, free_ports(), 30.0, 30.0);
    let job: &[&str] =
        &["relu", "--n", "3000", "--seed", "5", "--backend", "cpu", "--insecure-key-seed", "4", "--json"];
    let local = bin().args(job).output().unwrap();
    assert!(local.status.success(), "{}", String::from_utf8_lossy(&local.stderr));
    let local = last_json(&local);
    assert_eq!(local["mismatches"], 0);
    let children: Vec<Child> = (0..3).map(|i| spawn_party(&config, i, job)).collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "party {i}: {}", String::from_utf8_lossy(&out.stderr));
        let v = last_json(&out);
        if i == 0 {
            assert_eq!(v["result_digest"], local["result_digest"], "party {i}");
            assert_eq!(v["mismatches"], 0);
        } else {
            assert!(v["result_digest"].is_null() && v["mismatches"].is_null(), "party {i}: {v}");
        }
        assert_eq!(v["rounds"], local["rounds"]);
        assert_eq!(v["pieces"], local["pieces"]);
        assert_eq!(v["bytes_sent"], local["bytes_sent_per_party"][i]);
        assert_eq!(v["bytes_formula"], local["bytes_formula_per_party"][i]);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn three_processes_train_like_the_in_process_run() {
    let dir = keys_dir("train");
    let config = dir.join("test.toml");
    write_config(&config, &dir, free_ports(), 60.0, 30.0);
    let job: &[&str] = &[
        "train",
        "--limit",
        "64",
        "--test-limit",
        "20",
        "--batch",
        "32",
        "--backend",
        "cpu",
        "--insecure-key-seed",
        "3",
        "--json",
    ];
    let local_save = dir.join("trained-local.safetensors");
    let local = bin().args(job).args(["--save", local_save.to_str().unwrap()]).output().unwrap();
    assert!(local.status.success(), "{}", String::from_utf8_lossy(&local.stderr));
    let local = last_json(&local);
    // Every party passes --save, each with its own path: only the owner receives the weights.
    let saves: Vec<PathBuf> = (0..3).map(|i| dir.join(format!("trained{i}.safetensors"))).collect();
    let children: Vec<Child> = (0..3)
        .map(|i| {
            let mut a: Vec<&str> = job.to_vec();
            a.extend(["--save", saves[i].to_str().unwrap()]);
            spawn_party(&config, i, &a)
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "party {i}: {}", String::from_utf8_lossy(&out.stderr));
        let v = last_json(&out);
        assert_eq!(v["keys"], "insecure-seed:3");
        assert_eq!((v["train_images"].as_u64(), v["test_images"].as_u64()), (Some(64), Some(20)), "party {i}");
        assert_eq!(saves[i].exists(), i == 0, "party {i}: only the owner writes the trained weights");
        if i == 0 {
            // Same tensors; the values differ in the last bits only (opening the sizes first
            // shifts party 0's input stream, hence the truncations' rounding).
            let (a, b) = (std::fs::read(&saves[0]).unwrap(), std::fs::read(&local_save).unwrap());
            let header = 8 + u64::from_le_bytes(a[..8].try_into().unwrap()) as usize;
            assert_eq!((a.len(), &a[..header]), (b.len(), &b[..header]), "same names and shapes");
            let f = |c: &[u8]| f32::from_le_bytes(c.try_into().unwrap());
            let diff = a[header..].chunks(4).zip(b[header..].chunks(4)).map(|(x, y)| (f(x) - f(y)).abs());
            let diff = diff.fold(0.0f32, f32::max);
            assert!(diff < 1e-3, "the weights saved over TCP and in-process differ by {diff}");
        }
        if i == 0 {
            assert_eq!(v["predictions_digest"], local["predictions_digest"], "party {i}");
            assert_eq!(
                v["received"],
                serde_json::json!(["dataset sizes (public)", "test predictions", "trained weights"])
            );
        } else {
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_no_results(i, &v, &stdout);
            assert_eq!(v["received"], serde_json::json!(["dataset sizes (public)"]));
        }
        // Party 0 first opens the two dataset sizes: one input (16 B from party 0) and one reveal
        // (16 B each), 2 rounds.
        let extra = if i == 0 { 32 } else { 16 };
        assert_eq!(
            v["bytes_sent"].as_u64().unwrap(),
            local["bytes_sent_per_party"][i].as_u64().unwrap() + extra,
            "party {i}"
        );
        assert_eq!(v["rounds"].as_u64().unwrap(), local["rounds"].as_u64().unwrap() + 2);
        if i == 0 {
            assert_eq!(v["accuracy"], local["accuracy"]);
            assert_eq!(v["plaintext_accuracy"], local["plaintext_accuracy"]);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn three_processes_infer_with_the_owners_weights() {
    let dir = keys_dir("infer");
    let config = dir.join("test.toml");
    write_config(&config, &dir, free_ports(), 60.0, 30.0);
    let weights = dir.join("lenet.safetensors");
    let w = weights.to_str().unwrap();
    let trained = bin()
        .args(["train", "--limit", "64", "--test-limit", "10", "--batch", "32", "--backend", "cpu", "--save", w])
        .output()
        .unwrap();
    assert!(trained.status.success(), "{}", String::from_utf8_lossy(&trained.stderr));
    let job: &[&str] = &["infer", "--model", "lenet", "--weights", w, "--limit", "30", "--backend", "cpu", "--json"];
    let children: Vec<Child> = (0..3).map(|i| spawn_party(&config, i, job)).collect();
    let mut server_side_accuracy = 0.0;
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "party {i}: {}", String::from_utf8_lossy(&out.stderr));
        let v = last_json(&out);
        assert_eq!(v["images"], 30, "party {i}");
        assert_eq!(v["keys"], "os");
        if i == 0 {
            server_side_accuracy = v["accuracy"].as_f64().unwrap();
            assert!(v["agreement"].as_f64().unwrap() >= 0.95, "{v}");
            assert_eq!(v["received"], serde_json::json!(["image count (public)", "predictions"]));
        } else {
            assert_no_results(i, &v, &String::from_utf8_lossy(&out.stdout));
            assert_eq!(v["received"], serde_json::json!(["image count (public)"]));
        }
    }
    // Client-server: party 0 (the server) alone has the weights, party 1 (the client) alone reads
    // the images and receives the predictions; party 2 helps and learns nothing.
    let roles = ["--model-owner", "0", "--data-owner", "1", "--output-to", "1"];
    let job = |i: usize| -> Vec<&str> {
        let mut j = vec!["infer", "--model", "lenet", "--limit", "30", "--backend", "cpu", "--json"];
        j.extend(roles);
        if i == 0 {
            j.extend(["--weights", w]);
        }
        j
    };
    let children: Vec<Child> = (0..3).map(|i| spawn_party(&config, i, &job(i))).collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "party {i}: {}", String::from_utf8_lossy(&out.stderr));
        let v = last_json(&out);
        assert_eq!(v["images"], 30, "party {i}");
        assert_eq!(v["roles"], "model=0 data=1 output=1 weights=0");
        if i == 1 {
            // The same model on the same images as above (private rounding may flip a close call).
            let acc = v["accuracy"].as_f64().unwrap();
            assert!(
                (acc - server_side_accuracy).abs() <= 2.0 / 30.0 + 1e-9,
                "{acc} against {server_side_accuracy}: {v}"
            );
            assert!(v["predictions_digest"].is_string(), "{v}");
            assert!(v.get("agreement").is_none(), "the client has no plaintext model: {v}");
            assert_eq!(v["received"], serde_json::json!(["image count (public)", "predictions"]));
        } else {
            assert_no_results(i, &v, &String::from_utf8_lossy(&out.stdout));
            assert_eq!(v["received"], serde_json::json!(["image count (public)"]));
        }
    }
    // The server without its weights is a clear error.
    let out = bin().args(["infer", "--model", "lenet", "--limit", "4", "--backend", "cpu"]).output().unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--weights"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A PyTorch export between three processes, client-server: the server (party 0) alone has the
/// weights (the others read the architecture from a copy without them, `inspect --strip-weights`),
/// the client (party 1) alone reads the input tensor and receives the logits, which match
/// PyTorch's.
#[test]
fn three_processes_infer_an_onnx_model_on_a_tensor() {
    let onnx = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/onnx");
    if !onnx.is_dir() {
        assert_ne!(std::env::var("CRYPTGPU_REQUIRE_DATA").as_deref(), Ok("1"), "{} is missing", onnx.display());
        eprintln!("SKIPPED: {} is missing", onnx.display());
        return;
    }
    let dir = keys_dir("onnx");
    let config = dir.join("test.toml");
    write_config(&config, &dir, free_ports(), 60.0, 30.0);
    let (model, io) = (onnx.join("tiny_resnet.onnx"), onnx.join("tiny_resnet.io.safetensors"));
    let stripped = dir.join("tiny_resnet.onnx");
    let out = bin().args(["inspect"]).arg(&model).arg("--strip-weights").arg(&stripped).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let logits = dir.join("logits.safetensors");
    let children: Vec<Child> = (0..3)
        .map(|i| {
            let m = if i == 0 { &model } else { &stripped };
            // The data owner names the file; the others pass `--input` alone.
            let mut job = vec!["infer", "--model", m.to_str().unwrap(), "--input"];
            if i == 1 {
                job.push(io.to_str().unwrap());
            }
            job.extend([
                "--output",
                logits.to_str().unwrap(),
                "--data-owner",
                "1",
                "--output-to",
                "1",
                "--backend",
                "cpu",
                "--json",
            ]);
            spawn_party(&config, i, &job)
        })
        .collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "party {i}: {}", String::from_utf8_lossy(&out.stderr));
        let v = last_json(&out);
        assert_eq!(v["input_shape"], serde_json::json!([2, 3, 32, 32]), "party {i}");
        if i == 1 {
            assert!(v["reference_max_abs_error"].as_f64().unwrap() < 1e-3, "{v}");
            assert!(v.get("max_abs_error").is_none(), "the client has no plaintext model: {v}");
        } else {
            assert_no_results(i, &v, &String::from_utf8_lossy(&out.stdout));
            assert!(v.get("logits_shape").is_none() && v.get("reference_max_abs_error").is_none(), "{v}");
        }
    }
    let written = cryptgpu_nn::weights::read_safetensors(&logits).unwrap();
    assert_eq!(written["logits"].shape, [2, 10]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Parties 1 and 2 of a train or infer job: no prediction, accuracy or digest in their JSON, no
/// percentage in their human output.
fn assert_no_results(i: usize, v: &serde_json::Value, stdout: &str) {
    for key in ["accuracy", "plaintext_accuracy", "agreement", "predictions_digest", "predictions"] {
        assert!(v.get(key).is_none(), "party {i} reports {key}: {v}");
    }
    let human: Vec<&str> = stdout.lines().filter(|l| !l.starts_with('{')).collect();
    assert!(!human.iter().any(|l| l.contains('%')), "party {i} prints a result: {human:?}");
}

#[test]
fn insecure_keys_need_an_opt_in_and_a_matching_key_source() {
    // Without the opt-in, a known seed is refused before anything runs, naming the variable.
    let out = Command::new(env!("CARGO_BIN_EXE_cryptgpu"))
        .env_remove("CRYPTGPU_ALLOW_INSECURE_KEYS")
        .args(MATMUL)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("CRYPTGPU_ALLOW_INSECURE_KEYS=1"));
    // One party with a known seed against two with OS keys: the job tags differ, all three stop.
    let dir = keys_dir("keysource");
    let config = dir.join("test.toml");
    write_config(&config, &dir, free_ports(), 10.0, 5.0);
    let os_keys: Vec<&str> = MATMUL[..MATMUL.len() - 2].to_vec();
    let start = Instant::now();
    let children: Vec<Child> =
        (0..3).map(|i| spawn_party(&config, i, if i == 0 { MATMUL } else { &os_keys })).collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "party {i} should refuse: {stderr}");
        if i == 0 {
            assert!(stderr.contains("different job"), "party 0: {stderr}");
            assert!(stderr.contains("insecure-seed:9"), "party 0 names its key source: {stderr}");
        }
    }
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until the party reports its links up; returns the rest of its stderr via a thread.
fn wait_connected(child: &mut Child) -> std::thread::JoinHandle<String> {
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    for line in lines.by_ref() {
        if line.unwrap().contains("connected to parties") {
            break;
        }
    }
    std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"))
}

#[test]
fn killed_or_silent_party_is_named_by_the_others() {
    let dir = keys_dir("fail");
    let big: &[&str] = &["matmul", "--m", "700", "--k", "700", "--n", "700", "--backend", "cpu"];
    for stop in [false, true] {
        // Killed: noticed at once (well before the 20 s timeout). Stopped (alive but silent):
        // noticed after the 3 s timeout and its grace.
        let timeout = if stop { 3.0 } else { 20.0 };
        let config = dir.join("test.toml");
        write_config(&config, &dir, free_ports(), timeout, 30.0);
        let mut children: Vec<Child> = (0..3).map(|i| spawn_party(&config, i, big)).collect();
        let _ = wait_connected(&mut children[2]);
        let start = Instant::now();
        if stop {
            Command::new("kill").args(["-STOP", &children[2].id().to_string()]).status().unwrap();
        } else {
            children[2].kill().unwrap();
        }
        for (i, c) in children.drain(..2).enumerate() {
            let out = c.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "party {i} should fail: {stderr}");
            assert!(stderr.contains("party 2"), "party {i} does not name party 2: {stderr}");
            let limit = if stop { Duration::from_secs(15) } else { Duration::from_secs(10) };
            assert!(start.elapsed() < limit, "party {i} took {:?}: {stderr}", start.elapsed());
        }
        let mut p2 = children.pop().unwrap();
        let _ = p2.kill();
        let _ = p2.wait();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killing_party_0_or_1_is_named_by_the_two_others() {
    let dir = keys_dir("kill01");
    // Many rounds, so the survivors soon step into one after the kill; a crash is noticed at
    // once, long before the 5 s timeout.
    let job: &[&str] = &["relu", "--n", "200000", "--backend", "cpu"];
    let timeout = Duration::from_secs(5);
    for victim in [0, 1] {
        let config = dir.join("test.toml");
        write_config(&config, &dir, free_ports(), timeout.as_secs_f64(), 30.0);
        let mut children: Vec<Child> = (0..3).map(|i| spawn_party(&config, i, job)).collect();
        let _ = wait_connected(&mut children[victim]);
        let start = Instant::now();
        children[victim].kill().unwrap();
        let _ = children[victim].wait();
        for (i, c) in children.into_iter().enumerate().filter(|(i, _)| *i != victim) {
            let out = c.wait_with_output().unwrap();
            let took = start.elapsed();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "party {i} should fail: {stderr}");
            let named = [format!("party {victim} is gone"), format!("because party {victim} failed")];
            assert!(named.iter().any(|n| stderr.contains(n)), "party {i} does not blame party {victim}: {stderr}");
            assert!(took < timeout, "party {i} took {took:?} after party {victim} was killed: {stderr}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn party_with_the_wrong_certificate_is_refused() {
    let dir = keys_dir("cert");
    let rogue = keys_dir("rogue");
    let ports = free_ports();
    let config = dir.join("test.toml");
    write_config(&config, &dir, ports, 30.0, 3.0);
    // Party 2 runs with a certificate and key of its own making.
    let rogue_config = rogue.join("test.toml");
    let mut s = std::fs::read_to_string(&config).unwrap();
    s = s.replace(&format!("{:?}", dir.join("party2.crt")), &format!("{:?}", rogue.join("party2.crt")));
    s = s.replace(&format!("{:?}", dir.join("party2.key")), &format!("{:?}", rogue.join("party2.key")));
    std::fs::write(&rogue_config, s).unwrap();
    let start = Instant::now();
    let children: Vec<Child> =
        (0..3).map(|i| spawn_party(if i == 2 { &rogue_config } else { &config }, i, SMALL)).collect();
    let outs: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(!out.status.success());
            String::from_utf8_lossy(&out.stderr).into_owned()
        })
        .collect();
    assert!(start.elapsed() < Duration::from_secs(15));
    assert!(outs[2].contains("refused this party's certificate"), "{}", outs[2]);
    assert!(outs[0].contains("not the one configured for party 1 or party 2"), "{}", outs[0]);
    assert!(outs[1].contains("party 2 did not connect"), "{}", outs[1]);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&rogue);
}

#[test]
fn insecure_mode_warns_and_bad_configurations_are_explained() {
    let dir = keys_dir("insecure");
    let config = dir.join("test.toml");
    write_config(&config, &dir, free_ports(), 30.0, 30.0);
    // Plain TCP needs no certificates or keys.
    let text = std::fs::read_to_string(&config).unwrap();
    let plain: Vec<&str> = text.lines().filter(|l| !l.starts_with("certificate") && !l.starts_with("key")).collect();
    std::fs::write(&config, plain.join("\n")).unwrap();
    let children: Vec<Child> = (0..3).map(|i| bin_party_insecure(&config, i)).collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("warning: --insecure"), "{stderr}");
    }
    // A configuration with two parties only.
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, text.replacen("id = 2", "id = 1", 1)).unwrap();
    let out = bin().args(["party", "--config"]).arg(&bad).args(["--id", "0"]).args(SMALL).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("parties 0, 1 and 2 exactly once"));
    // TLS without certificates in the configuration.
    let out = bin().args(["party", "--config"]).arg(&config).args(["--id", "0"]).args(SMALL).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no certificate for party 0"));
    let _ = std::fs::remove_dir_all(&dir);
}

fn bin_party_insecure(config: &Path, id: usize) -> Child {
    bin()
        .args(["party", "--insecure", "--config"])
        .arg(config)
        .args(["--id", &id.to_string()])
        .args(SMALL)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn parties_that_disagree_on_the_roles_refuse_each_other() {
    let client_server: &[&str] =
        &["infer", "--model", "lenet", "--backend", "cpu", "--data-owner", "1", "--output-to", "1"];
    let default_roles: &[&str] = &["infer", "--model", "lenet", "--backend", "cpu"];
    assert_refused("roles", client_server, default_roles);
}

#[test]
fn parties_that_disagree_on_the_normalisation_refuse_each_other() {
    let pixels: &[&str] = &["infer", "--model", "lenet", "--backend", "cpu", "--no-normalize"];
    let default: &[&str] = &["infer", "--model", "lenet", "--backend", "cpu"];
    assert_refused("normalize", pixels, default);
}

/// Parties 0 and 1 started with `args`, party 2 with `other`: all three refuse at once, before
/// reading any file.
fn assert_refused(name: &str, args: &[&str], other: &[&str]) {
    let dir = keys_dir(name);
    let config = dir.join("test.toml");
    write_config(&config, &dir, free_ports(), 10.0, 5.0);
    let start = Instant::now();
    let children: Vec<Child> = (0..3).map(|i| spawn_party(&config, i, if i == 2 { other } else { args })).collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "party {i} should refuse: {stderr}");
        assert!(!stderr.contains("--weights"), "party {i} refused before reading anything: {stderr}");
    }
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--net` is a public job parameter: three processes with the same model run shaped and report
/// it; a party with another model is refused at connection time. (A party's own time may be below
/// rounds x latency when its neighbours sent before its clock started; the in-process tests check
/// the bound.)
#[test]
fn the_link_model_is_reported_and_must_agree() {
    let dir = keys_dir("net");
    let config = dir.join("test.toml");
    write_config(&config, &dir, free_ports(), 30.0, 30.0);
    let job: Vec<&str> = SMALL.iter().copied().chain(["--net", "20,1", "--json"]).collect();
    let children: Vec<Child> = (0..3).map(|i| spawn_party(&config, i, &job)).collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "party {i}: {}", String::from_utf8_lossy(&out.stderr));
        let v = last_json(&out);
        assert_eq!(v["net"], serde_json::json!({"name": "custom", "latency_ms": 20.0, "gbit_per_s": 1.0}));
        assert_eq!(v["rounds"], 2, "party {i}: {v}");
    }

    write_config(&config, &dir, free_ports(), 10.0, 5.0);
    let lan: Vec<&str> = SMALL.iter().copied().chain(["--net", "lan"]).collect();
    let children: Vec<Child> = (0..3).map(|i| spawn_party(&config, i, if i == 2 { SMALL } else { &lan })).collect();
    let errors: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(!out.status.success());
            String::from_utf8_lossy(&out.stderr).into_owned()
        })
        .collect();
    assert!(errors.iter().any(|e| e.contains("job tags differ")), "{errors:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
