//! A private matrix product: party 0 holds `A` (`m x k`), party 1 holds `B` (`k x n`); the product
//! `A·B` is computed on shares in fixed point and opened to party 1 only.
//!
//! Run with `cargo run --release -p cryptgpu --example private_matmul`.

use cryptgpu::net::Counters;
use cryptgpu::prelude::*;

/// Party 1's result (row-major `m x n`) and every party's counters.
struct Product {
    value: Vec<f64>,
    counters: [Counters; 3],
}

/// Runs the three parties on `a` (`m x k`, party 0's) and `b` (`k x n`, party 1's).
fn private_matmul(a: &[f64], b: &[f64], (m, k, n): (usize, usize, usize)) -> Result<Product, SharingError> {
    let codec = FixedPoint::default();
    let outs = run_local(CpuBackend, RunConfig::default(), |p| {
        let av = codec.encode_tensor(&[m, k], a)?;
        let bv = codec.encode_tensor(&[k, n], b)?;
        let x = p.input(0, (p.id() == 0).then_some(&av), &[m, k])?;
        let y = p.input(1, (p.id() == 1).then_some(&bv), &[k, n])?;
        let z = p.matmul_fp(&x, &y)?;
        Ok::<_, SharingError>(p.reveal_to(&z, 1)?.map(|t| codec.decode_tensor(&t)))
    })?;
    let counters = [0, 1, 2].map(|i| outs[i].counters);
    let [o0, o1, o2] = outs;
    if o0.value.is_some() || o2.value.is_some() {
        return Err(SharingError::Invalid("the product was opened beyond party 1".into()));
    }
    let value = o1.value.ok_or_else(|| SharingError::Invalid("party 1 got no product".into()))?;
    Ok(Product { value, counters })
}

/// `A·B` in f64.
fn reference(a: &[f64], b: &[f64], (m, k, n): (usize, usize, usize)) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
        }
    }
    c
}

/// Deterministic example data in `[-2, 2)`.
fn data(len: usize, seed: f64) -> Vec<f64> {
    (0..len).map(|j| 2.0 * ((j as f64 + 1.0) * seed).sin()).collect()
}

fn main() -> Result<(), SharingError> {
    let dims = (16, 64, 8);
    let (a, b) = (data(dims.0 * dims.1, 0.7), data(dims.1 * dims.2, 1.3));
    let product = private_matmul(&a, &b, dims)?;
    let exact = reference(&a, &b, dims);
    let err = product.value.iter().zip(&exact).map(|(p, e)| (p - e).abs()).fold(0.0, f64::max);
    println!("A ({}x{}) · B ({}x{}) opened to party 1: max |error| vs f64 = {err:.2e}", dims.0, dims.1, dims.1, dims.2);
    println!("C[0][0..4] = {:?}", &product.value[..4]);
    for (i, c) in product.counters.iter().enumerate() {
        println!("party {i}: {} rounds, {} B sent (key setup included)", c.rounds, c.bytes_sent);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_product_matches_f64_and_is_opened_to_party_1_only() {
        let dims @ (m, k, n) = (3, 5, 2);
        let (a, b) = (data(m * k, 0.7), data(k * n, 1.3));
        let product = private_matmul(&a, &b, dims).unwrap();
        let exact = reference(&a, &b, dims);
        // The documented bound of `matmul_fp`.
        let delta = 1.0 / FixedPoint::default().scale();
        for i in 0..m {
            for j in 0..n {
                let l1: f64 = (0..k).map(|l| a[i * k + l].abs() + b[l * n + j].abs()).sum();
                let bound = delta / 2.0 * l1 + k as f64 * delta * delta / 4.0 + delta;
                let got = product.value[i * n + j];
                assert!((got - exact[i * n + j]).abs() < bound, "C[{i}][{j}] = {got} vs {}", exact[i * n + j]);
            }
        }
        // Setup (16 B each), two inputs (owner sends 8 B per element), matmul_fp (24 / 16 / 16 B
        // per output element, 2 rounds) and reveal_to(1) (party 0 sends 8 B per element).
        let (a_in, b_in, out) = (8 * (m * k) as u64, 8 * (k * n) as u64, (m * n) as u64);
        let sent = [16 + a_in + 24 * out + 8 * out, 16 + b_in + 16 * out, 16 + 16 * out];
        for (i, c) in product.counters.iter().enumerate() {
            assert_eq!((c.rounds, c.bytes_sent), (1 + 2 + 2 + 1, sent[i]), "party {i}");
        }
    }
}
