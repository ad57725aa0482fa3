//! Batch-norm training: the plaintext twin against finite differences and PyTorch's running
//! statistics formula, the private engine against the twin, and the errors for misuse.

mod common;

use common::{max_diff, private_train};
use cryptgpu_nn::engine::{Engine, Model, Sgd, BN_MOMENTUM};
use cryptgpu_nn::error::NnError;
use cryptgpu_nn::plain::{cross_entropy, PlainEngine, PlainTensor};
use cryptgpu_nn::session::plain_model;
use cryptgpu_nn::spec::{LayerSpec, ModelSpec};
use cryptgpu_nn::weights::{fold_batchnorm, init_params, Params};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn conv(name: &str, cin: usize, cout: usize, k: usize, p: usize) -> LayerSpec {
    LayerSpec::Conv2d { name: name.into(), cin, cout, kernel: (k, k), stride: (1, 1), padding: (p, p), bias: false }
}

fn bn(name: &str, channels: usize) -> LayerSpec {
    LayerSpec::BatchNorm2d { name: name.into(), channels }
}

/// Convolution, batch norm and ReLU, with a residual block whose both branches normalise.
fn tiny_bn() -> ModelSpec {
    ModelSpec {
        name: "tiny-bn".into(),
        input: [2, 6, 6],
        classes: 4,
        layers: vec![
            conv("c1", 2, 3, 3, 1),
            bn("bn1", 3),
            LayerSpec::Relu,
            LayerSpec::MaxPool2d { kernel: (2, 2), stride: (2, 2), padding: (0, 0) },
            LayerSpec::Residual {
                body: vec![conv("r.a", 3, 4, 3, 1), bn("r.bn", 4), LayerSpec::Relu],
                shortcut: vec![conv("r.s", 3, 4, 1, 0), bn("r.sbn", 4)],
            },
            LayerSpec::GlobalAvgPool,
            LayerSpec::Linear { name: "fc".into(), fin: 4, fout: 4 },
        ],
    }
}

/// Trainable parameters with non-trivial batch-norm weights and running statistics.
fn params(spec: &ModelSpec, seed: u64) -> Params {
    let mut p = init_params(spec, seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 100);
    for (name, t) in p.iter_mut() {
        if name.ends_with("running_var") || (name.contains("bn") && name.ends_with("weight")) {
            t.data.iter_mut().for_each(|v| *v = rng.gen_range(0.5..2.0));
        } else if name.ends_with("running_mean") || (name.contains("bn") && name.ends_with("bias")) {
            t.data.iter_mut().for_each(|v| *v = rng.gen_range(-0.5..0.5));
        }
    }
    p
}

fn data(seed: u64, n: usize, classes: usize) -> (PlainTensor, PlainTensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = PlainTensor { shape: vec![n, 2, 6, 6], data: (0..n * 72).map(|_| rng.gen_range(-1.5..1.5)).collect() };
    let mut y = vec![0.0; n * classes];
    for i in 0..n {
        y[i * classes + rng.gen_range(0..classes)] = 1.0;
    }
    (x, PlainTensor { shape: vec![n, classes], data: y })
}

#[test]
fn plain_batch_norm_gradients_match_finite_differences() {
    let spec = tiny_bn();
    spec.check(3).unwrap();
    let mut model = plain_model(&spec, params(&spec, 1)).unwrap();
    assert!(!model.bn_folded());
    let (x, y) = data(2, 3, 4);
    let mut e = PlainEngine;
    let (logits, tape) = model.forward(&mut e, &x, true).unwrap();
    let g = e.softmax_ce_grad(&logits, &y).unwrap();
    let dx = model.backward(&mut e, tape, &g).unwrap();
    // Training-mode loss: batch statistics, as the backward pass differentiates.
    let loss =
        |m: &Model<PlainTensor>, x: &PlainTensor| cross_entropy(&m.forward(&mut PlainEngine, x, true).unwrap().0, &y);
    let h = 1e-6;
    let check = |what: &str, numeric: f64, analytic: f64| {
        assert!(
            approx::relative_eq!(numeric, analytic, epsilon = 1e-6, max_relative = 1e-4),
            "{what}: numeric {numeric}, backward {analytic}"
        )
    };
    let names: Vec<&String> = model.grads.keys().collect();
    assert_eq!(names.iter().filter(|n| n.contains("bn")).count(), 6, "gradients {names:?}");
    for (name, grad) in &model.grads {
        for idx in [0, grad.data.len() / 2, grad.data.len() - 1] {
            let mut plus = plain_model(&spec, model.params.clone()).unwrap();
            plus.params.get_mut(name).unwrap().data[idx] += h;
            let mut minus = plain_model(&spec, model.params.clone()).unwrap();
            minus.params.get_mut(name).unwrap().data[idx] -= h;
            check(&format!("{name}[{idx}]"), (loss(&plus, &x) - loss(&minus, &x)) / (2.0 * h), grad.data[idx]);
        }
    }
    let base = plain_model(&spec, params(&spec, 1)).unwrap();
    for idx in [0, 17, 100, x.data.len() - 1] {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp.data[idx] += h;
        xm.data[idx] -= h;
        check(&format!("x[{idx}]"), (loss(&base, &xp) - loss(&base, &xm)) / (2.0 * h), dx.data[idx]);
    }
}

/// A batch norm straight on the input: its statistics are the data's.
fn bn_first() -> ModelSpec {
    ModelSpec {
        name: "bn-first".into(),
        input: [2, 6, 6],
        classes: 4,
        layers: vec![bn("bn", 2), LayerSpec::Flatten, LayerSpec::Linear { name: "fc".into(), fin: 72, fout: 4 }],
    }
}

#[test]
fn running_statistics_follow_pytorch_and_inference_uses_them() {
    let spec = bn_first();
    let p = params(&spec, 5);
    let mut model = plain_model(&spec, p.clone()).unwrap();
    let (x, y) = data(6, 5, 4);
    let opt = Sgd { lr: 0.0, momentum: 0.0, weight_decay: 0.0 };
    model.train_step(&mut PlainEngine, &x, &y, &opt).unwrap();
    let m = (5 * 36) as f64;
    for c in 0..2 {
        let vals: Vec<f64> = (0..5).flat_map(|n| x.data[(n * 2 + c) * 36..][..36].to_vec()).collect();
        let mean = vals.iter().sum::<f64>() / m;
        let unbiased = vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (m - 1.0);
        let rm = (1.0 - BN_MOMENTUM) * p["bn.running_mean"].data[c] + BN_MOMENTUM * mean;
        let rv = (1.0 - BN_MOMENTUM) * p["bn.running_var"].data[c] + BN_MOMENTUM * unbiased;
        assert!(approx::abs_diff_eq!(model.params["bn.running_mean"].data[c], rm, epsilon = 1e-12), "channel {c} mean");
        assert!(
            approx::abs_diff_eq!(model.params["bn.running_var"].data[c], rv, epsilon = 1e-12),
            "channel {c} variance"
        );
    }
    // Inference with trainable parameters equals inference with them folded.
    let folded = plain_model(&spec, fold_batchnorm(&spec, &model.params).unwrap()).unwrap();
    assert!(folded.bn_folded());
    let a = model.forward(&mut PlainEngine, &x, false).unwrap().0;
    let b = folded.forward(&mut PlainEngine, &x, false).unwrap().0;
    assert!(max_diff(&a.data, &b.data) < 1e-12);
}

#[test]
fn private_batch_norm_training_matches_the_plaintext_twin() {
    let spec = tiny_bn();
    let p = params(&spec, 7);
    let (x, y) = data(8, 4, 4);
    let opt = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 1e-3 };
    let mut twin = plain_model(&spec, p.clone()).unwrap();
    let mut e = PlainEngine;
    let l1 = twin.train_step(&mut e, &x, &y, &opt).unwrap();
    twin.train_step(&mut e, &x, &y, &opt).unwrap();
    let twin_eval = twin.forward(&mut e, &x, false).unwrap().0;

    let out = private_train(&spec, &p, &x, &y, &opt, 2);
    let (p_l1, p_eval, p_params) = (&out.first_logits, &out.eval_logits, &out.params);
    let worst = twin.params.iter().map(|(n, t)| max_diff(&p_params[n].data, &t.data)).fold(0.0, f64::max);
    eprintln!(
        "private vs twin: first logits {:.2e}, parameters {worst:.2e}, inference logits {:.2e}",
        max_diff(&p_l1.data, &l1.data),
        max_diff(&p_eval.data, &twin_eval.data)
    );
    let d = max_diff(&p_l1.data, &l1.data);
    assert!(d < 1e-3, "first logits differ by {d}");
    for (name, t) in &twin.params {
        let d = max_diff(&p_params[name].data, &t.data);
        assert!(d < 2e-3, "{name} differs by {d}: private {:?} twin {:?}", p_params[name].data, t.data);
    }
    let d = max_diff(&p_eval.data, &twin_eval.data);
    assert!(d < 5e-3, "inference logits (running statistics) differ by {d}");
}

#[test]
fn batch_norm_misuse_gives_clear_errors() {
    let spec = tiny_bn();
    let p = params(&spec, 9);
    let (x, y) = data(10, 2, 4);
    let opt = Sgd { lr: 0.1, momentum: 0.0, weight_decay: 0.0 };
    // Folded batch norms are for inference only.
    let mut folded = plain_model(&spec, fold_batchnorm(&spec, &p).unwrap()).unwrap();
    match folded.train_step(&mut PlainEngine, &x, &y, &opt) {
        Err(NnError::Unsupported(m)) => assert!(m.contains("folded batch norm bn1"), "{m}"),
        other => panic!("expected Unsupported, got {:?}", other.map(|t| t.shape)),
    }
    // One value per channel has no variance.
    let spec1 = ModelSpec {
        name: "bn-1x1".into(),
        input: [2, 1, 1],
        classes: 2,
        layers: vec![bn("bn", 2), LayerSpec::Flatten, LayerSpec::Linear { name: "fc".into(), fin: 2, fout: 2 }],
    };
    let mut m1 = plain_model(&spec1, init_params(&spec1, 1)).unwrap();
    let x1 = PlainTensor::new(&[1, 2, 1, 1], vec![0.5, -0.5]).unwrap();
    let y1 = PlainTensor::new(&[1, 2], vec![1.0, 0.0]).unwrap();
    match m1.train_step(&mut PlainEngine, &x1, &y1, &opt) {
        Err(NnError::Shape(m)) => assert!(m.contains("more than one value per channel"), "{m}"),
        other => panic!("expected Shape, got {:?}", other.map(|t| t.shape)),
    }
    // A mix of folded and trainable names is neither set.
    let mut mixed = p.clone();
    mixed.remove("bn1.running_var");
    mixed.insert("bn1.scale".into(), PlainTensor::zeros(&[3]));
    assert!(matches!(plain_model(&spec, mixed), Err(NnError::Weights(_))));
    let mut missing = p;
    missing.remove("r.bn.running_mean");
    match plain_model(&spec, missing) {
        Err(NnError::Weights(m)) => assert!(m.contains("r.bn.running_mean"), "{m}"),
        other => panic!("expected Weights, got {:?}", other.map(|m| m.graph.name)),
    }
}

/// The small-image ResNet-18 (20 batch norms, CIFAR-10 geometry): one private training step at
/// batch 2 against the twin. Heavy for CI; run it with
/// `cargo test --release -p cryptgpu-nn --test batchnorm -- --ignored --nocapture`.
#[test]
#[ignore]
fn resnet18_cifar10_training_step_matches_the_twin() {
    let spec = cryptgpu_nn::zoo::by_name("resnet18", cryptgpu_nn::zoo::Dataset::Cifar10).unwrap();
    let p = init_params(&spec, 11);
    let mut rng = ChaCha8Rng::seed_from_u64(12);
    let n = 2;
    let x = PlainTensor { shape: vec![n, 3, 32, 32], data: (0..n * 3072).map(|_| rng.gen_range(-1.0..1.0)).collect() };
    let mut y = PlainTensor::zeros(&[n, 10]);
    for i in 0..n {
        y.data[i * 10 + rng.gen_range(0..10)] = 1.0;
    }
    let opt = Sgd { lr: 0.05, momentum: 0.9, weight_decay: 5e-4 };
    let mut twin = plain_model(&spec, p.clone()).unwrap();
    let l1 = twin.train_step(&mut PlainEngine, &x, &y, &opt).unwrap();
    let start = std::time::Instant::now();
    let out = private_train(&spec, &p, &x, &y, &opt, 1);
    let secs = start.elapsed().as_secs_f64();
    let (p_l1, p_params) = (&out.first_logits, &out.params);
    let worst =
        twin.params.iter().map(|(n, t)| (max_diff(&p_params[n].data, &t.data), n)).fold((0.0, ""), |a, (d, n)| {
            if d > a.0 {
                (d, n.as_str())
            } else {
                a
            }
        });
    println!(
        "resnet18 (CIFAR-10) private training step at batch {n}: {secs:.1} s on the CPU; logits {:.2e}, worst parameter {} {:.2e}",
        max_diff(&p_l1.data, &l1.data),
        worst.1,
        worst.0
    );
    assert!(max_diff(&p_l1.data, &l1.data) < 1e-2);
    assert!(worst.0 < 1e-2, "{} differs by {}", worst.1, worst.0);
}

#[test]
fn layer_labels_are_unique_and_are_what_the_engine_reports() {
    use cryptgpu_kernels_cpu::CpuBackend;
    use cryptgpu_nn::engine::{layer_labels, Phase};
    use cryptgpu_nn::private::PrivateEngine;
    use cryptgpu_nn::session::{share, share_trainable_model};
    use cryptgpu_nn::spec::LayerKind;
    use cryptgpu_sharing::{run_local, RunConfig};
    use std::collections::BTreeSet;

    let r18 = layer_labels(&cryptgpu_nn::zoo::by_name("resnet18", cryptgpu_nn::zoo::Dataset::Cifar10).unwrap());
    let unique: BTreeSet<&String> = r18.iter().map(|(l, _)| l).collect();
    assert_eq!(unique.len(), r18.len(), "duplicate labels in {r18:?}");
    assert_eq!(r18.iter().filter(|(_, k)| *k == LayerKind::BatchNorm).count(), 20);
    assert!(r18.iter().any(|(l, k)| l == "7.s1:layer2.0.downsample.1" && *k == LayerKind::BatchNorm), "{r18:?}");

    let spec = tiny_bn();
    let want: BTreeSet<String> = layer_labels(&spec).into_iter().map(|(l, _)| l).collect();
    let p = params(&spec, 3);
    let (x, y) = data(4, 2, 4);
    let opt = Sgd { lr: 0.1, momentum: 0.0, weight_decay: 0.0 };
    let out = run_local(CpuBackend, RunConfig::default(), |party| {
        let owner = party.id() == 0;
        let mut model = share_trainable_model(party, &spec, 0, owner.then_some(&p))?;
        let sx = share(party, 0, owner.then_some(&x), &x.shape)?;
        let sy = share(party, 0, owner.then_some(&y), &y.shape)?;
        let mut pe = PrivateEngine::new(party);
        model.train_step(&mut pe, &sx, &sy, &opt).unwrap();
        let seen = |phase: Phase| pe.timing.keys().filter(|(_, p)| *p == phase).map(|(l, _)| l.clone()).collect();
        Ok::<_, cryptgpu_nn::NnError>((seen(Phase::Forward), seen(Phase::Backward)))
    })
    .unwrap();
    let (fwd, bwd): &(BTreeSet<String>, BTreeSet<String>) = &out[0].value;
    assert_eq!(fwd, &want);
    assert_eq!(bwd, &want);
}
