//! A private training loop on MNIST, written out: the model owner (party 0) secret-shares a
//! LeNet, the data owner (party 1) secret-shares each batch, the three parties run SGD on shares,
//! then classify the test images, whose predictions only the data owner receives. The plaintext
//! twin runs the same loop in f64 with the same initialisation and data order.
//!
//! `cargo run --release -p cryptgpu --example train_mnist [-- TRAIN_IMAGES]`

use cryptgpu::nn::data::{load_mnist, shuffled_batches, Split};
use cryptgpu::nn::engine::{Model, Sgd};
use cryptgpu::nn::plain::PlainEngine;
use cryptgpu::nn::private::PrivateEngine;
use cryptgpu::nn::session::{private_logits, share, share_trainable_model, Receivers, Roles};
use cryptgpu::nn::weights::init_params;
use cryptgpu::nn::zoo::{by_name, Dataset};
use cryptgpu::nn::NnError;
use cryptgpu::prelude::*;

/// Test accuracy of the private model and of its plaintext twin.
fn run(train_images: usize, test_images: usize) -> Result<(f64, f64), NnError> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../data/mnist-sample");
    let train = load_mnist(dir.as_ref(), Split::Train)?.take(train_images);
    let test = load_mnist(dir.as_ref(), Split::Test)?.take(test_images);
    let spec = by_name("lenet", Dataset::Mnist)?;
    let params = init_params(&spec, 1);
    let opt = Sgd { lr: 0.05, momentum: 0.9, weight_decay: 0.0 };
    let batches = shuffled_batches(train.len(), 32, 7);
    let roles = Roles::new(0, 1, Receivers::only(1))?;
    let [c, h, w] = spec.input;
    let all: Vec<usize> = (0..test.len()).collect();
    let out = run_local(CpuBackend, RunConfig::default(), |party| {
        let id = party.id();
        let mut model =
            share_trainable_model(party, &spec, roles.model_owner, (id == roles.model_owner).then_some(&params))?;
        let mut engine = PrivateEngine::new(party);
        for idx in &batches {
            let xy = (id == roles.data_owner).then(|| train.batch(idx));
            let x = share(engine.party, roles.data_owner, xy.as_ref().map(|b| &b.0), &[idx.len(), c, h, w])?;
            let y = share(engine.party, roles.data_owner, xy.as_ref().map(|b| &b.1), &[idx.len(), spec.classes])?;
            model.train_step(&mut engine, &x, &y, &opt)?;
        }
        let x = (id == roles.data_owner).then(|| test.batch(&all).0);
        let logits = private_logits(party, &model, &roles, x.as_ref(), &[test.len(), c, h, w])?;
        Ok::<_, NnError>(logits.map(|l| l.argmax_rows()))
    })?;
    let private = out[1].value.clone().expect("the data owner receives the predictions");
    // The twin: the same loop on the plaintext engine.
    let mut twin = Model::new(spec.clone(), params, &PlainEngine)?;
    for idx in &batches {
        let (x, y) = train.batch(idx);
        twin.train_step(&mut PlainEngine, &x, &y, &opt)?;
    }
    let plain = twin.forward(&mut PlainEngine, &test.batch(&all).0, false)?.0.argmax_rows();
    let labels = test.labels_at(&all);
    let acc = |p: &[usize]| p.iter().zip(&labels).filter(|(a, b)| a == b).count() as f64 / labels.len() as f64;
    Ok((acc(&private), acc(&plain)))
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> Result<(), NnError> {
    let n = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(512);
    let (private, plain) = run(n, 100)?;
    println!(
        "test accuracy after one epoch on {n} images: private {:.1}%, plaintext twin {:.1}%",
        100.0 * private,
        100.0 * plain
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn private_training_tracks_its_twin() {
        let (private, plain) = super::run(64, 20).unwrap();
        assert!((private - plain).abs() <= 0.1, "private {private}, plaintext {plain}");
    }
}
