//! `cryptgpu party`: three real processes on 127.0.0.1 (mutual TLS), against the in-process run.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_cryptgpu"))
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
        assert_eq!(v["result_digest"], local["result_digest"], "party {i}");
        assert_eq!(v["max_abs_error"], local["max_abs_error"]);
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
        assert_eq!(v["result_digest"], local["result_digest"], "party {i}");
        assert_eq!(v["mismatches"], 0);
        assert_eq!(v["rounds"], local["rounds"]);
        assert_eq!(v["msb_rounds"], local["msb_rounds"]);
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
    let local = bin().args(job).output().unwrap();
    assert!(local.status.success(), "{}", String::from_utf8_lossy(&local.stderr));
    let local = last_json(&local);
    let children: Vec<Child> = (0..3).map(|i| spawn_party(&config, i, job)).collect();
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "party {i}: {}", String::from_utf8_lossy(&out.stderr));
        let v = last_json(&out);
        assert_eq!(v["predictions_digest"], local["predictions_digest"], "party {i}");
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
        } else {
            assert!(v["accuracy"].is_null(), "only the data owner knows the labels");
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
    for (i, c) in children.into_iter().enumerate() {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "party {i}: {}", String::from_utf8_lossy(&out.stderr));
        let v = last_json(&out);
        assert_eq!(v["images"], 30, "party {i}");
        if i == 0 {
            assert!(v["agreement"].as_f64().unwrap() >= 0.95, "{v}");
        } else {
            assert!(v["accuracy"].is_null());
        }
    }
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
