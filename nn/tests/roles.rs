//! Roles: the model, the data and each output at different parties, and who receives what.

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_nn::data::Images;
use cryptgpu_nn::session::{plain_logits, plain_model, private_logits, share, share_model, Receivers, Roles};
use cryptgpu_nn::spec::{LayerSpec, ModelSpec};
use cryptgpu_nn::train::{train_plain, train_private, PrivateTraining, TrainSettings};
use cryptgpu_nn::weights::init_params;
use cryptgpu_nn::NnError;
use cryptgpu_ring::FixedPoint;
use cryptgpu_sharing::{run_local, RunConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A two-layer perceptron on 1x4x4 "images" with 3 classes.
fn mlp() -> ModelSpec {
    ModelSpec {
        name: "mlp".into(),
        input: [1, 4, 4],
        classes: 3,
        layers: vec![
            LayerSpec::Flatten,
            LayerSpec::Linear { name: "fc1".into(), fin: 16, fout: 8 },
            LayerSpec::Relu,
            LayerSpec::Linear { name: "fc2".into(), fin: 8, fout: 3 },
        ],
    }
}

/// `n` random images whose label is the brightest of three image regions (learnable).
fn images(n: usize, seed: u64) -> Images {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let pixels: Vec<u8> = (0..n * 16).map(|_| rng.gen()).collect();
    let labels = pixels
        .chunks(16)
        .map(|img| {
            let sums: Vec<u32> = img.chunks(6).map(|c| c.iter().map(|&p| p as u32).sum()).collect();
            (0..3).max_by_key(|&i| sums[i]).unwrap() as u8
        })
        .collect();
    Images { shape: [1, 4, 4], pixels, labels, classes: 3, mean: vec![0.5], std: vec![0.3] }
}

#[test]
fn client_server_inference_opens_the_prediction_to_the_client_alone() {
    // Party 0 (the server) holds the model; party 1 (the client) holds the input and alone
    // receives the prediction; party 2 only helps.
    let spec = mlp();
    let params = init_params(&spec, 5);
    let test = images(6, 9);
    let (x, _) = test.batch(&[0, 1, 2, 3, 4, 5]);
    let twin = plain_logits(&plain_model(&spec, params.clone()).unwrap(), &x).unwrap();
    let run = |roles: Roles| {
        run_local(CpuBackend, RunConfig::default(), |party| {
            let id = party.id();
            let model = share_model(party, &spec, roles.model_owner, (id == roles.model_owner).then_some(&params))?;
            private_logits(party, &model, &roles, (id == roles.data_owner).then_some(&x), &x.shape)
        })
        .unwrap()
    };
    let out = run(Roles::new(0, 1, Receivers::only(1)).unwrap());
    assert!(out[0].value.is_none(), "the server must not receive the prediction");
    assert!(out[2].value.is_none(), "the helper must not receive the prediction");
    let got = out[1].value.as_ref().expect("the client receives the prediction");
    let diff = got.data.iter().zip(&twin.data).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(diff < 1e-2, "private logits differ from the plaintext model by {diff}");
    // Who sent what, against everything at party 0: the input (8 B per pixel) now comes from
    // party 1, and the opening of the 18 logits to party 1 is sent by party 0 (its previous
    // party) instead of party 2. The model's shares come from party 0 in both runs.
    let all_at_0 = run(Roles::default());
    assert!(all_at_0[0].value.is_some() && all_at_0[1].value.is_none());
    let (pixels, logits) = (8 * 6 * 16, 8 * 6 * 3);
    let sent = |o: &[cryptgpu_sharing::PartyOutput<_>; 3], i: usize| o[i].counters.bytes_sent;
    assert_eq!(sent(&out, 0), sent(&all_at_0, 0) - pixels + logits);
    assert_eq!(sent(&out, 1), sent(&all_at_0, 1) + pixels);
    assert_eq!(sent(&out, 2), sent(&all_at_0, 2) - logits);
    assert_eq!(out[0].counters.rounds, all_at_0[0].counters.rounds);
}

#[test]
fn training_with_the_data_and_the_model_at_different_parties() {
    // The model at party 0, the data at party 2; the predictions go to party 2, the trained
    // weights to party 0.
    let spec = mlp();
    let params = init_params(&spec, 3);
    let (train, test) = (images(48, 1), images(12, 2));
    let settings = TrainSettings {
        epochs: 2,
        batch: 16,
        opt: cryptgpu_nn::engine::Sgd { lr: 0.1, momentum: 0.9, weight_decay: 0.0 },
        seed: 4,
        eval_batch: 5,
    };
    let roles = Roles::new(0, 2, Receivers::only(2)).unwrap();
    let graph = spec.to_graph();
    let out = run_local(CpuBackend, RunConfig::default(), |party| {
        let id = party.id();
        let job = PrivateTraining {
            graph: &graph,
            roles,
            settings,
            n_train: train.len(),
            n_test: test.len(),
            params: (id == 0).then_some(&params),
            data: (id == 2).then_some((&train, &test)),
            open_weights: true,
        };
        train_private(party, &job, &mut ())
    })
    .unwrap();
    for (i, o) in out.iter().enumerate() {
        assert_eq!(o.value.predictions.is_some(), i == 2, "party {i}: predictions go to party 2 only");
        assert_eq!(o.value.weights.is_some(), i == 0, "party {i}: weights go to party 0 only");
        assert_eq!(o.value.steps, 6);
    }
    let (plain, _) = train_plain(&graph, &params, &train, &test, &settings, FixedPoint::default()).unwrap();
    let preds = out[2].value.predictions.as_ref().unwrap();
    let agree = preds.iter().zip(&plain).filter(|(a, b)| a == b).count();
    assert!(agree >= 11, "private {preds:?} against plaintext {plain:?}");
    let w = out[0].value.weights.as_ref().unwrap();
    assert_eq!(w.keys().collect::<Vec<_>>(), params.keys().collect::<Vec<_>>());
}

#[test]
fn acting_outside_a_role_is_an_error() {
    let spec = mlp();
    let params = init_params(&spec, 3);
    // Every party passes the model although party 0 owns it.
    let err = run_local(CpuBackend, RunConfig::default(), |party| {
        share_model(party, &spec, 0, Some(&params))?;
        Ok::<_, NnError>(())
    })
    .unwrap_err();
    assert!(err.to_string().contains("owned by party 0"), "{err}");
    // A value for an input that party 1 owns, passed by party 0.
    let x = images(1, 0).batch(&[0]).0;
    let err = run_local(CpuBackend, RunConfig::default(), |party| {
        share(party, 1, (party.id() != 2).then_some(&x), &x.shape)?;
        Ok::<_, NnError>(())
    })
    .unwrap_err();
    assert!(err.to_string().contains("owned by party 1"), "{err}");
}

#[test]
fn roles_and_receivers_are_checked() {
    assert!(Roles::new(3, 0, Receivers::only(0)).is_err());
    assert!(Roles::new(0, 0, Receivers::only(5)).is_err());
    assert!(Receivers::of(&[]).is_err());
    let r: Receivers = "0,2".parse().unwrap();
    assert!(r.contains(0) && !r.contains(1) && r.contains(2));
    assert_eq!(r.to_string(), "0,2");
    assert!("1,x".parse::<Receivers>().is_err());
    assert!("3".parse::<Receivers>().is_err());
    assert_eq!(Roles::default().label(), "model=0 data=0 output=0 weights=0");
}

/// `logits_private` on a tensor: batched, opened to the receivers only, with each head applied
/// privately as its plaintext twin applies it.
#[test]
fn tensor_outputs_with_heads() {
    use cryptgpu_nn::onnx::Head;
    use cryptgpu_nn::plain::PlainTensor;
    use cryptgpu_nn::train::{logits_private, plain_head, Outputs};
    let spec = mlp();
    let params = init_params(&spec, 5);
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let x = PlainTensor::new(&[5, 1, 4, 4], (0..80).map(|_| rng.gen_range(-2.0..2.0)).collect()).unwrap();
    let twin = plain_logits(&plain_model(&spec, params.clone()).unwrap(), &x).unwrap();
    let roles = Roles::new(0, 1, Receivers::only(2)).unwrap();
    for head in [None, Some(Head::Softmax), Some(Head::LogSoftmax)] {
        let out = run_local(CpuBackend, RunConfig::default(), |party| {
            let id = party.id();
            let model = share_model(party, &spec, 0, (id == 0).then_some(&params))?;
            let outputs = Outputs { batch: 2, head };
            logits_private(party, &model, &roles, (id == 1).then_some(&x), &x.shape, outputs, &mut ())
        })
        .unwrap();
        assert!(out[0].value.logits.is_none() && out[1].value.logits.is_none(), "{head:?}: only party 2 receives");
        let got = out[2].value.logits.as_ref().unwrap();
        let want = plain_head(head, twin.clone()).unwrap();
        let err = got.max_abs_diff(&want).unwrap();
        assert!(err < 1e-3, "{head:?}: max abs error {err}");
        assert_eq!(out[2].value.traffic.keys().any(|(l, _)| l == "head"), head.is_some());
    }
    // The data owner's tensor must have the model's input shape.
    let bad = PlainTensor::zeros(&[2, 1, 4, 5]);
    let err = run_local(CpuBackend, RunConfig::default(), |party| {
        let id = party.id();
        let model = share_model(party, &spec, 0, (id == 0).then_some(&params))?;
        let outputs = Outputs { batch: 2, head: None };
        logits_private(party, &model, &roles, (id == 1).then_some(&bad), &[2, 1, 4, 5], outputs, &mut ())
    })
    .unwrap_err();
    assert!(err.to_string().contains("[N, 1, 4, 4]"), "{err}");
}
