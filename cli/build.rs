//! Embeds the git commit (`CRYPTGPU_GIT_COMMIT`) for the benchmark reports; "unknown" without git.

use std::process::Command;

fn main() {
    let out = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let commit = out(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = out(&["status", "--porcelain", "--untracked-files=no"]).is_some();
    println!("cargo:rustc-env=CRYPTGPU_GIT_COMMIT={commit}{}", if dirty { "-dirty" } else { "" });
    // Re-run when HEAD moves (the paths are relative to the package root).
    for p in ["../.git/HEAD", "../.git/index"] {
        if std::path::Path::new(p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
