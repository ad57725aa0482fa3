//! Helpers shared by the CLI's end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the `cryptgpu` binary: (success, standard output, standard error).
pub fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_cryptgpu")).args(args).output().expect("binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The JSON object on the last line of a command's standard output.
pub fn last_json(stdout: &str) -> serde_json::Value {
    serde_json::from_str(stdout.lines().last().expect("output")).expect("JSON on the last line")
}

/// The shared ONNX fixtures' folder; `None` (said loudly) when it is missing, a failure then
/// if CRYPTGPU_REQUIRE_DATA=1.
#[allow(dead_code)] // not every test file uses it
pub fn onnx_dir() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/onnx");
    if p.is_dir() {
        return Some(p);
    }
    if std::env::var("CRYPTGPU_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!("CRYPTGPU_REQUIRE_DATA=1 but {} is missing", p.display());
    }
    eprintln!("SKIPPED: {} is missing (set CRYPTGPU_REQUIRE_DATA=1 to fail)", p.display());
    None
}
