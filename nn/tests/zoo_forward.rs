//! One private forward pass at batch 1 of zoo models against their plaintext twins. The small
//! models run under `cargo test`; the ImageNet-size ones are `#[ignore]`d (run them with
//! `cargo test --release -p cryptgpu-nn --test zoo_forward -- --ignored --nocapture`) and print
//! their CPU time.

use std::time::Instant;

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_nn::plain::PlainTensor;
use cryptgpu_nn::session::{plain_logits, plain_model, private_logits, share_model, Roles};
use cryptgpu_nn::spec::ModelSpec;
use cryptgpu_nn::weights::{fold_batchnorm, init_params};
use cryptgpu_nn::zoo::{by_name, Dataset};
use cryptgpu_sharing::{run_local, RunConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn forward_matches(spec: ModelSpec) {
    spec.check(1).unwrap();
    let mut params = init_params(&spec, 7);
    // Give batch norms non-trivial statistics so folding is exercised.
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for (name, t) in params.iter_mut() {
        if name.ends_with("running_var") {
            t.data.iter_mut().for_each(|v| *v = rng.gen_range(0.5..2.0));
        } else if name.ends_with("running_mean") {
            t.data.iter_mut().for_each(|v| *v = rng.gen_range(-0.2..0.2));
        }
    }
    let params = fold_batchnorm(&spec, &params).unwrap();
    let [c, h, w] = spec.input;
    let x = PlainTensor { shape: vec![1, c, h, w], data: (0..c * h * w).map(|_| rng.gen_range(-1.0..1.0)).collect() };
    let twin = plain_logits(&plain_model(&spec, params.clone()).unwrap(), &x).unwrap();
    let start = Instant::now();
    let out = run_local(CpuBackend, RunConfig::default(), |party| {
        let owner = party.id() == 0;
        let model = share_model(party, &spec, 0, owner.then_some(&params))?;
        private_logits(party, &model, &Roles::default(), owner.then_some(&x), &x.shape)
    })
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert!(out[1].value.is_none() && out[2].value.is_none(), "only the owner receives the logits");
    let got = out[0].value.as_ref().expect("the owner receives the logits");
    let scale = twin.data.iter().map(|v| v.abs()).fold(1e-3, f64::max);
    let diff = got.data.iter().zip(&twin.data).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    println!("{}: private forward at batch 1 in {secs:.2} s on the CPU; max |logit - twin| = {diff:.2e} (max |logit| {scale:.3})", spec.name);
    assert!(diff < 1e-3 + 1e-3 * scale, "{}: logits differ by {diff}", spec.name);
    assert_eq!(got.argmax_rows(), twin.argmax_rows(), "{}", spec.name);
}

#[test]
fn lenet_both_pools() {
    forward_matches(by_name("lenet", Dataset::Mnist).unwrap());
    forward_matches(by_name("lenet-maxpool", Dataset::Mnist).unwrap());
}

#[test]
fn alexnet_cifar10() {
    forward_matches(by_name("alexnet", Dataset::Cifar10).unwrap());
    forward_matches(by_name("alexnet-maxpool", Dataset::Cifar10).unwrap());
}

#[test]
fn vgg16_cifar10() {
    forward_matches(by_name("vgg16", Dataset::Cifar10).unwrap());
}

#[test]
#[ignore]
fn tiny_imagenet_models() {
    forward_matches(by_name("alexnet", Dataset::TinyImageNet).unwrap());
    forward_matches(by_name("vgg16", Dataset::TinyImageNet).unwrap());
}

#[test]
#[ignore]
fn resnet50_imagenet() {
    forward_matches(by_name("resnet50", Dataset::ImageNet).unwrap());
}

#[test]
#[ignore]
fn imagenet_models() {
    for name in ["resnet18", "alexnet", "vgg16", "resnet101", "resnet152"] {
        forward_matches(by_name(name, Dataset::ImageNet).unwrap());
    }
}
