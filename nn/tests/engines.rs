//! The plaintext twin's gradients against finite differences, and the private engine against the
//! plaintext twin (forward, backward and an SGD step with momentum and weight decay).

mod common;

use common::{max_diff, private_train};
use cryptgpu_nn::engine::{Engine, Model, Sgd};
use cryptgpu_nn::plain::{cross_entropy, PlainEngine, PlainTensor};
use cryptgpu_nn::session::plain_model;
use cryptgpu_nn::spec::{LayerSpec, ModelSpec};
use cryptgpu_nn::weights::{fold_batchnorm, init_params};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Every layer kind, small.
fn tiny() -> ModelSpec {
    let conv = |name: &str, cin, cout, k, s, p| LayerSpec::Conv2d {
        name: name.into(),
        cin,
        cout,
        kernel: (k, k),
        stride: (s, s),
        padding: (p, p),
        bias: true,
    };
    ModelSpec {
        name: "tiny".into(),
        input: [2, 8, 8],
        classes: 5,
        layers: vec![
            conv("c1", 2, 4, 3, 1, 1),
            LayerSpec::Relu,
            LayerSpec::MaxPool2d { kernel: (3, 3), stride: (2, 2), padding: (1, 1) },
            LayerSpec::Residual {
                body: vec![conv("r.a", 4, 4, 3, 1, 1), LayerSpec::Relu, conv("r.b", 4, 6, 3, 1, 1)],
                shortcut: vec![conv("r.s", 4, 6, 1, 1, 0)],
            },
            LayerSpec::Relu,
            LayerSpec::AvgPool2d { kernel: (2, 2), stride: (2, 2), padding: (0, 0) },
            LayerSpec::Flatten,
            LayerSpec::Linear { name: "fc".into(), fin: 24, fout: 5 },
        ],
    }
}

fn data(seed: u64, n: usize) -> (PlainTensor, PlainTensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x = PlainTensor { shape: vec![n, 2, 8, 8], data: (0..n * 128).map(|_| rng.gen_range(-1.5..1.5)).collect() };
    let mut y = vec![0.0; n * 5];
    for i in 0..n {
        y[i * 5 + rng.gen_range(0..5)] = 1.0;
    }
    (x, PlainTensor { shape: vec![n, 5], data: y })
}

#[test]
fn plain_gradients_match_finite_differences() {
    let spec = tiny();
    spec.check(3).unwrap();
    let params = fold_batchnorm(&spec, &init_params(&spec, 1)).unwrap();
    let mut model = plain_model(&spec, params).unwrap();
    let (x, y) = data(2, 3);
    let mut e = PlainEngine;
    let (logits, tape) = model.forward(&mut e, &x, true).unwrap();
    let g = e.softmax_ce_grad(&logits, &y).unwrap();
    model.backward(&mut e, tape, &g).unwrap();
    let loss = |m: &Model<PlainTensor>| cross_entropy(&m.forward(&mut PlainEngine, &x, false).unwrap().0, &y);
    let h = 1e-6;
    for (name, grad) in model.grads.clone() {
        for idx in [0, grad.data.len() / 2, grad.data.len() - 1] {
            let mut plus = plain_model(&spec, model.params.clone()).unwrap();
            plus.params.get_mut(&name).unwrap().data[idx] += h;
            let mut minus = plain_model(&spec, model.params.clone()).unwrap();
            minus.params.get_mut(&name).unwrap().data[idx] -= h;
            let numeric = (loss(&plus) - loss(&minus)) / (2.0 * h);
            let analytic = grad.data[idx];
            assert!(
                approx::relative_eq!(numeric, analytic, epsilon = 1e-6, max_relative = 1e-4),
                "{name}[{idx}]: numeric {numeric}, backward {analytic}"
            );
        }
    }
}

#[test]
fn private_training_step_matches_the_plaintext_twin() {
    let spec = tiny();
    let params = fold_batchnorm(&spec, &init_params(&spec, 3)).unwrap();
    let (x, y) = data(4, 4);
    let opt = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 1e-3 };
    // Plaintext twin: two steps (the second one uses momentum).
    let mut twin = plain_model(&spec, params.clone()).unwrap();
    let mut e = PlainEngine;
    let l1 = twin.train_step(&mut e, &x, &y, &opt).unwrap();
    twin.train_step(&mut e, &x, &y, &opt).unwrap();
    let (twin_logits, _) = twin.forward(&mut e, &x, false).unwrap();

    let out = private_train(&spec, &params, &x, &y, &opt, 2);
    let (p_l1, p_logits, p_params) = (&out.first_logits, &out.eval_logits, &out.params);
    assert!(max_diff(&p_l1.data, &l1.data) < 1e-3, "first logits differ by {}", max_diff(&p_l1.data, &l1.data));
    assert!(
        max_diff(&p_logits.data, &twin_logits.data) < 5e-3,
        "logits after two steps differ by {}",
        max_diff(&p_logits.data, &twin_logits.data)
    );
    for (name, t) in &twin.params {
        let d = max_diff(&p_params[name].data, &t.data);
        assert!(d < 1e-3, "{name} differs by {d}");
    }
}
