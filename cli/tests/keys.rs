//! `cryptgpu keys gen`: key files are private whether created or overwritten.

/// Runs `cryptgpu keys gen --out DIR` with `extra` arguments: (success, standard error).
fn gen(dir: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cryptgpu"))
        .args(["keys", "gen", "--out"])
        .arg(dir)
        .args(extra)
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[cfg(unix)]
#[test]
fn key_files_are_mode_0600_when_created_and_when_overwritten() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("cryptgpu-keys-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mode = |name: &str| std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
    let (ok, stderr) = gen(&dir, &[]);
    assert!(ok, "{stderr}");
    for i in 0..3 {
        assert_eq!(mode(&format!("party{i}.key")), 0o600);
        assert_eq!(mode(&format!("party{i}.crt")) & 0o400, 0o400);
    }
    // Existing files are kept unless --force.
    let (ok, stderr) = gen(&dir, &[]);
    assert!(!ok && stderr.contains("--force"), "{stderr}");
    // An overwritten key file that was world-readable becomes private before the key is written.
    let old = std::fs::read(dir.join("party1.key")).unwrap();
    std::fs::set_permissions(dir.join("party1.key"), std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, stderr) = gen(&dir, &["--force"]);
    assert!(ok, "{stderr}");
    assert_eq!(mode("party1.key"), 0o600);
    assert_ne!(std::fs::read(dir.join("party1.key")).unwrap(), old, "a fresh key was written");
    let _ = std::fs::remove_dir_all(&dir);
}
