//! Helpers for the workspace-level tests in `tests/tests/`, and the host build of the CUDA kernels.

pub mod diff;
pub mod host;

use cryptgpu_ring::{FixedPoint, RingTensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Uniform reals in `[-bound, bound]` from a seeded generator, with their fixed-point encoding.
pub fn random_fixed(seed: u64, shape: &[usize], bound: f64, codec: FixedPoint) -> (Vec<f64>, RingTensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|_| rng.gen_range(-bound..=bound)).collect();
    let t = codec.encode_tensor(shape, &v).expect("values in range");
    (v, t)
}
