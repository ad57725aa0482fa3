//! The host build of the CUDA kernels, for the workspace-level tests in `tests/tests/` (the
//! differential suite itself is the `cryptgpu-testkit` crate).

pub mod host;
