//! Helpers shared by the nn integration tests.

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_nn::engine::Sgd;
use cryptgpu_nn::plain::PlainTensor;
use cryptgpu_nn::private::PrivateEngine;
use cryptgpu_nn::session::{reveal_model_to, reveal_to, share, share_trainable_model};
use cryptgpu_nn::spec::ModelSpec;
use cryptgpu_nn::weights::Params;
use cryptgpu_sharing::{run_local, RunConfig};

/// What a private training run opens: the first step's logits, the logits of an inference pass
/// after the last step, and the trained parameters.
pub struct Trained {
    /// Logits of the first training step's forward pass.
    pub first_logits: PlainTensor,
    /// Logits of an inference pass after the last step.
    pub eval_logits: PlainTensor,
    /// The parameters after the last step.
    pub params: Params,
}

/// `steps` private training steps of three in-process parties on one batch owned by party 0,
/// then an inference pass; everything is opened to the owner at the end.
pub fn private_train(
    spec: &ModelSpec,
    p: &Params,
    x: &PlainTensor,
    y: &PlainTensor,
    opt: &Sgd,
    steps: usize,
) -> Trained {
    let out = run_local(CpuBackend, RunConfig::default(), |party| {
        let owner = party.id() == 0;
        let mut model = share_trainable_model(party, spec, 0, owner.then_some(p))?;
        let sx = share(party, 0, owner.then_some(x), &x.shape)?;
        let sy = share(party, 0, owner.then_some(y), &y.shape)?;
        let mut pe = PrivateEngine::new(party);
        let first = model.train_step(&mut pe, &sx, &sy, opt).unwrap();
        for _ in 1..steps {
            model.train_step(&mut pe, &sx, &sy, opt).unwrap();
        }
        let (eval, _) = model.forward(&mut pe, &sx, false).unwrap();
        let party = pe.party;
        let first_logits = reveal_to(party, &first, 0).unwrap();
        let eval_logits = reveal_to(party, &eval, 0).unwrap();
        let params = reveal_model_to(party, &model, 0).unwrap();
        Ok::<_, cryptgpu_nn::NnError>(first_logits.map(|first_logits| Trained {
            first_logits,
            eval_logits: eval_logits.expect("the owner receives every output"),
            params: params.expect("the owner receives the model"),
        }))
    })
    .unwrap();
    out.into_iter().next().unwrap().value.expect("party 0 is the owner")
}

/// Largest absolute difference of two equally long slices.
pub fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max)
}
