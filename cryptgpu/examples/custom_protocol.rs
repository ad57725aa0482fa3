//! A protocol the library does not have, written outside it with the public API only: the dot
//! product of two shared fixed-point vectors with a single resharing.
//!
//! Party `i` holds `(x_i, x_{i+1})` and `(y_i, y_{i+1})`. Its 3-out-of-3 term of `<x, y>` is
//! `z_i = Σ_j (x_i y_i + x_i y_{i+1} + x_{i+1} y_i)[j] + α_i`, with `α` a zero sharing drawn from
//! the protocol's own registered stream so that `z_i` reveals nothing. The three terms sum to
//! `<x, y>`; party `i` sends `z_i` to party `i-1` (**1 round, 8 B per party**, whatever the length),
//! and `(z_i, z_{i+1})` is a replicated sharing of the dot product at scale `2^{2f}`, which the
//! library's public truncation ([`Party::truncate`]) brings back to `2^f` (1 more round).
//!
//! Run with `cargo run --release -p cryptgpu --example custom_protocol`.

use cryptgpu::net::{Counters, Peer, Round};
use cryptgpu::prelude::*;
use cryptgpu::ring::BinaryOp;
use cryptgpu::sharing::Stream;

/// The dot-product protocol; each party makes one with [`Dot::new`] before using it.
struct Dot {
    /// The stream of the zero sharings that mask the terms.
    masks: Stream,
}

impl Dot {
    /// Registers the protocol's stream (at every party; no communication).
    fn new<B: Backend, T: Transport>(p: &mut Party<B, T>) -> Result<Self, SharingError> {
        Ok(Dot { masks: p.register_stream("examples/custom_protocol/dot-masks")? })
    }

    /// `<x, y>` of two shared vectors of the same length, at scale `2^{2f}` for fixed-point
    /// inputs (not truncated). 1 round, 8 B per party.
    fn dot_int<B: Backend, T: Transport>(
        &self,
        p: &mut Party<B, T>,
        x: &AShare<B>,
        y: &AShare<B>,
    ) -> Result<AShare<B>, SharingError> {
        if x.shape().len() != 1 || x.shape() != y.shape() {
            return Err(SharingError::Invalid(format!(
                "dot product of shapes {:?} and {:?}: two vectors of the same length expected",
                x.shape(),
                y.shape()
            )));
        }
        let be = p.backend().clone();
        let y_sum = be.binary(BinaryOp::Add, y.first(), y.second())?;
        let a = be.binary(BinaryOp::Mul, x.first(), &y_sum)?; // x_i (y_i + y_{i+1})
        let b = be.binary(BinaryOp::Mul, x.second(), y.first())?; // x_{i+1} y_i
        let terms = be.binary(BinaryOp::Add, &a, &b)?;
        let alpha = p.zero_share_from(self.masks, &[1])?;
        let z = be.binary(BinaryOp::Add, &be.sum_axis(&terms, 0, true)?, &alpha)?;
        let mut got = p.round(Round::new().send(Peer::Prev, p.download(&z)?.into_data()).recv(Peer::Next, 1))?;
        let z_next = p.upload(&RingTensor::new(&[1], got.take(Peer::Next)?)?)?;
        AShare::from_parts(z, z_next)
    }
}

/// What one party learns: the opened dot product, and the counters of the dot-product round and
/// of the truncation.
type Output = (f64, Counters, Counters);

/// Party 0 inputs `x`, party 1 inputs `y`; all three learn `<x, y>`.
fn private_dot(x: &[f64], y: &[f64]) -> Result<[cryptgpu::sharing::PartyOutput<Output>; 3], SharingError> {
    let codec = FixedPoint::default();
    let n = x.len();
    run_local(CpuBackend, RunConfig::default(), |p| {
        let dot = Dot::new(p)?;
        let xv = codec.encode_tensor(&[n], x)?;
        let yv = codec.encode_tensor(&[n], y)?;
        let xs = p.input(0, (p.id() == 0).then_some(&xv), &[n])?;
        let ys = p.input(1, (p.id() == 1).then_some(&yv), &[n])?;
        let start = p.counters();
        let z = dot.dot_int(p, &xs, &ys)?;
        let dot_cost = p.counters().since(&start);
        let start = p.counters();
        let z = p.truncate(&z)?;
        let trunc_cost = p.counters().since(&start);
        let opened = p.reveal(&z)?;
        Ok((codec.decode_tensor(&opened)[0], dot_cost, trunc_cost))
    })
}

fn main() -> Result<(), SharingError> {
    let x = [0.5, -1.25, 2.0, 3.5, -0.75];
    let y = [4.0, 0.5, -1.5, 0.25, 2.0];
    let outs = private_dot(&x, &y)?;
    let exact: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
    println!("<x, y> = {:.6} (f64: {exact:.6})", outs[0].value.0);
    for (i, o) in outs.iter().enumerate() {
        let (dot, trunc, total) = (o.value.1, o.value.2, o.counters);
        println!(
            "party {i}: dot product {} round, {} B sent; truncation {} rounds, {} B sent; \
             whole run (key setup, inputs, reveal included) {} rounds, {} B sent",
            dot.rounds, dot.bytes_sent, trunc.rounds, trunc.bytes_sent, total.rounds, total.bytes_sent
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_f64_with_one_round_of_8_bytes_then_the_truncation() {
        let x: Vec<f64> = (0..50).map(|j| (j as f64 * 0.37).sin() * 3.0).collect();
        let y: Vec<f64> = (0..50).map(|j| (j as f64 * 0.11).cos() * 2.0 - 0.5).collect();
        let outs = private_dot(&x, &y).unwrap();
        let exact: f64 = x.iter().zip(&y).map(|(a, b)| a * b).sum();
        // Encoding (δ/2 per input), products and one truncation (< δ), with δ = 2^-f.
        let delta = 1.0 / FixedPoint::default().scale();
        let l1: f64 = x.iter().chain(&y).map(|v| v.abs()).sum();
        let bound = delta / 2.0 * l1 + 50.0 * delta * delta / 4.0 + delta;
        for (i, o) in outs.iter().enumerate() {
            assert!((o.value.0 - exact).abs() < bound, "{} vs {exact}", o.value.0);
            let dot = o.value.1;
            assert_eq!((dot.rounds, dot.bytes_sent, dot.bytes_to_prev, dot.bytes_received), (1, 8, 8, 8), "party {i}");
            // Exact truncation of one element: 1 round; P0 sends 24 B, P1 and P2 8 B.
            let trunc = o.value.2;
            assert_eq!((trunc.rounds, trunc.bytes_sent), (1, [24, 8, 8][i]), "party {i}");
        }
    }

    #[test]
    fn vectors_of_different_lengths_are_an_error() {
        let err = run_local(CpuBackend, RunConfig::default(), |p| {
            let dot = Dot::new(p)?;
            let x = p.random_share(&[3])?;
            let y = p.random_share(&[4])?;
            dot.dot_int(p, &x, &y)
        })
        .unwrap_err();
        assert!(err.to_string().contains("two vectors of the same length"), "{err}");
    }
}
