//! The range recorder: it computes exactly as the plaintext twin, attributes what it records to
//! the right steps, and a truncation it reports past its bound really breaks the private result.

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_nn::engine::{layer_labels, Engine, Model, Phase, Sgd, BN_TRAIN_VAR_RANGE};
use cryptgpu_nn::plain::{PlainEngine, PlainTensor};
use cryptgpu_nn::private::PrivateEngine;
use cryptgpu_nn::ranges::{RangeOp, RangeRecorder, RangeReport};
use cryptgpu_nn::spec::{LayerSpec, ModelSpec, BN_EPS};
use cryptgpu_nn::weights::init_params;
use cryptgpu_ring::{Conv2dParams, FixedPoint, Pool2dParams};
use cryptgpu_sharing::{run_local, KeySource, RunConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Convolution, batch norm (trainable), ReLU, average pooling, global pooling and a linear head.
fn net() -> ModelSpec {
    ModelSpec {
        name: "ranges-net".into(),
        input: [2, 4, 4],
        classes: 3,
        layers: vec![
            LayerSpec::Conv2d {
                name: "conv".into(),
                cin: 2,
                cout: 3,
                kernel: (3, 3),
                stride: (1, 1),
                padding: (1, 1),
                bias: true,
            },
            LayerSpec::BatchNorm2d { name: "bn".into(), channels: 3 },
            LayerSpec::Relu,
            LayerSpec::AvgPool2d { kernel: (2, 2), stride: (2, 2), padding: (0, 0) },
            LayerSpec::GlobalAvgPool,
            LayerSpec::Linear { name: "fc".into(), fin: 3, fout: 3 },
        ],
    }
}

fn batch(seed: u64, n: usize, scale: f64) -> (PlainTensor, PlainTensor) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let x =
        PlainTensor { shape: vec![n, 2, 4, 4], data: (0..n * 32).map(|_| scale * rng.gen_range(-1.0..1.0)).collect() };
    let y = (0..n * 3).map(|i| (i % 3 == (i / 3) % 3) as u8 as f64).collect();
    (x, PlainTensor { shape: vec![n, 3], data: y })
}

fn entry(r: &RangeReport, layer: &str, phase: Phase, op: RangeOp) -> f64 {
    r.entries()
        .iter()
        .find(|e| e.layer == layer && e.phase == phase && e.op == op)
        .unwrap_or_else(|| panic!("no {op:?} entry for {layer} {phase:?} in {r:?}"))
        .seen
}

#[test]
fn recorder_computes_as_the_twin_and_labels_every_step() {
    let spec = net();
    let (x, y) = batch(1, 4, 1.0);
    let opt = Sgd { lr: 0.1, momentum: 0.9, weight_decay: 1e-3 };
    let mut twin = Model::new(spec.clone(), init_params(&spec, 2), &PlainEngine).unwrap();
    let mut rec_model = Model::new(spec.clone(), init_params(&spec, 2), &PlainEngine).unwrap();
    let mut rec = RangeRecorder::new(FixedPoint::default());
    for _ in 0..2 {
        let a = twin.train_step(&mut PlainEngine, &x, &y, &opt).unwrap();
        let b = rec_model.train_step(&mut rec, &x, &y, &opt).unwrap();
        assert_eq!(a, b);
    }
    assert_eq!(twin.params, rec_model.params);
    let (a, _) = twin.forward(&mut PlainEngine, &x, false).unwrap();
    let (b, _) = rec_model.forward(&mut rec, &x, false).unwrap();
    assert_eq!(a, b);

    let r = rec.report();
    let bound = FixedPoint::default().max_product();
    assert!(r.entries().iter().all(|e| e.ratio < 0.25 && (e.ratio - e.seen / e.bound).abs() == 0.0), "{r:?}");
    assert!(r.warnings().is_empty());
    // Every layer that truncates has forward and backward entries; ReLU has none.
    for (label, _) in layer_labels(&spec) {
        let truncates = !label.ends_with("relu");
        for phase in [Phase::Forward, Phase::Backward] {
            let has = r.entries().iter().any(|e| e.layer == label && e.phase == phase && e.op == RangeOp::Truncation);
            assert_eq!(has, truncates, "{label} {phase:?}");
        }
    }
    assert!(entry(r, "sgd", Phase::Update, RangeOp::Truncation) > 0.0);
    assert_eq!(entry(r, "softmax-cross-entropy", Phase::Loss, RangeOp::ExpMax), 0.0);
    assert!(entry(r, "softmax-cross-entropy", Phase::Loss, RangeOp::ExpMin) < 0.0);
    let inv = r.entries().iter().find(|e| e.op == RangeOp::InvSqrt).unwrap();
    // A training step: batch variances, against the training range's top.
    assert_eq!((inv.layer.as_str(), inv.bound), ("1:bn", (BN_TRAIN_VAR_RANGE.1 as f64 + 1.0).exp2()));
    assert!(inv.seen >= BN_EPS);
    // JSON: one object per entry, phases and ops in lower case.
    let json = serde_json::to_value(r).unwrap();
    let first = &json.as_array().unwrap()[0];
    assert_eq!(
        (first["layer"].as_str(), first["phase"].as_str(), first["op"].as_str()),
        (Some("0:conv"), Some("forward"), Some("truncation"))
    );
    assert!(first["seen"].as_f64().unwrap() > 0.0 && first["bound"].as_f64() == Some(bound));
}

/// The quantity recorded for each kind of truncation, and the worst kept per step.
#[test]
fn truncation_inputs_are_the_private_engines() {
    let mut rec = RangeRecorder::new(FixedPoint::default());
    let x = PlainTensor { shape: vec![1, 1, 2, 2], data: vec![1.0, -8.0, 2.0, 3.0] };
    let one = |v: f64| PlainTensor { shape: vec![1], data: vec![v] };
    // A convolution's product before its bias, twice in one step: the larger is kept.
    let w = PlainTensor { shape: vec![1, 1, 1, 1], data: vec![0.5] };
    let conv = Conv2dParams { stride: (1, 1), padding: (0, 0) };
    let y = rec.conv2d(&x, &w, Some(&one(1000.0)), &conv).unwrap();
    assert_eq!(y.data, vec![1000.5, 996.0, 1001.0, 1001.5]);
    rec.conv2d(&x, &PlainTensor { shape: vec![1, 1, 1, 1], data: vec![0.25] }, None, &conv).unwrap();
    rec.step_done("conv", Phase::Forward);
    // Average pooling and lincombs: the private engine encodes 1/4 with 2 extra bits, 0.3 with 1.
    let pool = Pool2dParams { kernel: (2, 2), stride: (2, 2), padding: (0, 0) };
    assert_eq!(rec.avg_pool(&x, &pool, true).unwrap().data, vec![-0.5]);
    rec.step_done("pool", Phase::Forward);
    rec.lincomb(&[(0.3, &x)]).unwrap();
    rec.step_done("sgd", Phase::Update);
    // A batch-norm affine map: the product before the shift.
    rec.affine_channels(&x, &one(2.0), &one(1e3)).unwrap();
    rec.step_done("bn", Phase::Forward);
    // Layers that truncate nothing record nothing.
    rec.relu(&x).unwrap();
    rec.step_done("relu", Phase::Forward);
    let r = rec.report();
    assert_eq!(entry(r, "conv", Phase::Forward, RangeOp::Truncation), 4.0);
    assert_eq!(entry(r, "pool", Phase::Forward, RangeOp::Truncation), 2.0);
    approx::assert_abs_diff_eq!(entry(r, "sgd", Phase::Update, RangeOp::Truncation), 4.8, epsilon = 1e-12);
    assert_eq!(entry(r, "bn", Phase::Forward, RangeOp::Truncation), 16.0);
    assert_eq!(r.entries().len(), 4);
}

#[test]
fn large_values_warn_per_layer() {
    // Inputs of magnitude 1000: batch-norm variances near 8e4, past the training range's top
    // 2^13, and sums of squared deviations past the truncation bound.
    let spec = net();
    let (x, y) = batch(4, 4, 1000.0);
    let mut model = Model::new(spec, init_params(&net(), 3), &PlainEngine).unwrap();
    let mut rec = RangeRecorder::new(FixedPoint::default());
    model.train_step(&mut rec, &x, &y, &Sgd { lr: 0.01, momentum: 0.0, weight_decay: 0.0 }).unwrap();
    let w = rec.report().warnings();
    let inv = "1:bn (forward): largest inverse square root input";
    assert!(w.iter().any(|l| l.starts_with(inv) && l.contains("past its bound")), "{w:?}");
    let trunc = "1:bn (forward): largest value reaching a truncation";
    assert!(w.iter().any(|l| l.starts_with(trunc) && l.contains("past its bound")), "{w:?}");
    // The exp's bottom edge is -2^n without the guard: logits 100 apart are within 4x of -256.
    let logits = PlainTensor { shape: vec![1, 2], data: vec![0.0, -100.0] };
    let onehot = PlainTensor { shape: vec![1, 2], data: vec![1.0, 0.0] };
    for (guard, warns) in [(true, false), (false, true)] {
        let mut rec = RangeRecorder::new(FixedPoint::default());
        rec.softmax.exp.guard = guard;
        rec.softmax_ce_grad(&logits, &onehot).unwrap();
        rec.step_done("loss", Phase::Loss);
        let w = rec.report().warnings();
        assert_eq!(!w.is_empty(), warns, "guard {guard}: {w:?}");
        assert_eq!(entry(rec.report(), "loss", Phase::Loss, RangeOp::ExpMin), -100.0);
    }
}

/// A linear layer whose product the recorder puts at 1.9 times the bound is wrong in the private
/// engine for about 45% of the rows (by `2^(64-2f)`, a sign flip); at 0.9 times it is exact.
#[test]
fn past_the_bound_the_private_result_is_wrong() {
    let codec = FixedPoint::default();
    let bound = codec.max_product();
    let rows = 64;
    for (scale, sign) in [(0.9, 1.0), (0.9, -1.0), (1.9, 1.0), (1.9, -1.0)] {
        // x·w^T = sign·scale·bound per row: x = (a, a), w = sign·(a, a) with 2a² = scale·bound.
        let a = (scale * bound / 2.0).sqrt();
        let x = PlainTensor { shape: vec![rows, 2], data: vec![a; 2 * rows] };
        let w = PlainTensor { shape: vec![1, 2], data: vec![sign * a; 2] };
        let b = PlainTensor { shape: vec![1], data: vec![0.0] };
        let mut rec = RangeRecorder::new(codec);
        let want = rec.linear(&x, &w, Some(&b)).unwrap();
        rec.step_done("fc", Phase::Forward);
        let ratio = rec.report().entries()[0].ratio;
        approx::assert_abs_diff_eq!(ratio, scale, epsilon = 1e-9);
        let enc = |t: &PlainTensor| codec.encode_tensor(&t.shape, &t.data).unwrap();
        let (tx, tw, tb) = (enc(&x), enc(&w), enc(&b));
        let cfg = RunConfig { keys: KeySource::InsecureSeed(31), ..RunConfig::default() };
        let out = run_local(CpuBackend, cfg, |p| {
            let own = p.id() == 0;
            let sx = p.input(0, own.then_some(&tx), &[rows, 2])?;
            let sw = p.input(0, own.then_some(&tw), &[1, 2])?;
            let sb = p.input(0, own.then_some(&tb), &[1])?;
            let y = PrivateEngine::new(p).linear(&sx, &sw, Some(&sb))?;
            Ok::<_, cryptgpu_nn::NnError>(p.reveal(&y)?)
        })
        .unwrap();
        let got = codec.decode_tensor(&out[0].value);
        let flipped = sign * (scale * bound - 2f64.powi(64 - 2 * codec.frac_bits() as i32));
        // Encoding the operands moves the product by up to about 4·a·2^-(f+1).
        let tol = 0.01;
        let wrong = got.iter().filter(|g| (*g - want.data[0]).abs() > tol).count();
        let near = |g: f64, v: f64| approx::abs_diff_eq!(g, v, epsilon = tol);
        assert!(got.iter().all(|&g| near(g, want.data[0]) || near(g, flipped)), "{got:?}");
        if scale < 1.0 {
            assert_eq!(wrong, 0, "at {scale}x the bound");
        } else {
            assert!((rows / 8..7 * rows / 8).contains(&wrong), "{wrong} of {rows} wrong at {scale}x the bound");
        }
    }
}
