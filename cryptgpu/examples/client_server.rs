//! Client-server private inference: a server (party 0) holds a LeNet, a client (party 1) holds
//! MNIST images and alone receives the predictions; party 2 only helps. Nobody sees the other's
//! inputs; the server learns nothing of the predictions.
//!
//! `cargo run --release -p cryptgpu --example client_server [-- IMAGES]`

use cryptgpu::nn::data::{load_mnist, Split};
use cryptgpu::nn::session::{plain_logits, plain_model, private_logits, share_model, Receivers, Roles};
use cryptgpu::nn::weights::{fold_batchnorm, init_params};
use cryptgpu::nn::zoo::{by_name, Dataset};
use cryptgpu::nn::NnError;
use cryptgpu::prelude::*;

/// What the client got, and the bytes each party sent.
struct Outcome {
    /// The client's predicted classes.
    predictions: Vec<usize>,
    /// The plaintext model's classes (for comparison; in a real deployment no one has both).
    plaintext: Vec<usize>,
    /// Bytes sent by parties 0, 1 and 2.
    bytes_sent: [u64; 3],
}

fn run(images: usize) -> Result<Outcome, NnError> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/mnist-sample");
    let test = load_mnist(dir.as_ref(), Split::Test)?.take(images);
    let spec = by_name("lenet", Dataset::Mnist)?;
    // The server's model (here freshly initialised; load yours with `nn::weights::load_safetensors`).
    let params = fold_batchnorm(&spec, &init_params(&spec, 1))?;
    let idx: Vec<usize> = (0..test.len()).collect();
    let (x, _) = test.batch(&idx);
    let roles = Roles::new(0, 1, Receivers::only(1))?;
    let out = run_local(CpuBackend, RunConfig::default(), |party| {
        let id = party.id();
        let model = share_model(party, &spec, roles.model_owner, (id == roles.model_owner).then_some(&params))?;
        let client_input = (id == roles.data_owner).then_some(&x);
        private_logits(party, &model, &roles, client_input, &x.shape)
    })?;
    assert!(out[0].value.is_none() && out[2].value.is_none(), "only the client receives");
    let logits = out[1].value.as_ref().expect("the client receives the logits");
    let twin = plain_logits(&plain_model(&spec, params)?, &x)?;
    Ok(Outcome {
        predictions: logits.argmax_rows(),
        plaintext: twin.argmax_rows(),
        bytes_sent: std::array::from_fn(|i| out[i].counters.bytes_sent),
    })
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> Result<(), NnError> {
    let images = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(16);
    let o = run(images)?;
    println!("client's private predictions: {:?}", o.predictions);
    println!("plaintext model's predictions: {:?}", o.plaintext);
    println!("bytes sent by parties 0/1/2: {:?}", o.bytes_sent);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_client_gets_the_plaintext_models_predictions() {
        let o = super::run(3).unwrap();
        assert_eq!(o.predictions, o.plaintext);
        // The client sent its images (3 x 784 values of 8 B, plus the 16 B key).
        assert!(o.bytes_sent[1] >= 16 + 8 * 3 * 784);
    }
}
