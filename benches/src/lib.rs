//! Criterion benches of cryptgpu-rs live in `benches/`; run them with
//! `cargo bench -p cryptgpu-benches`.
