//! Private sessions: the model owner (party 0) secret-shares a model and the data, the three parties
//! train or infer, and every result is opened to the party the caller names, and to no other.
//!
//! Each entry point that opens a value takes its receiver (`to`): that party gets `Some(value)`,
//! the two others `None`, and they learn nothing beyond the public shape (see `SECURITY.md`).

use cryptgpu_net::Transport;
use cryptgpu_ring::{Backend, FixedPoint, RingTensor};
use cryptgpu_sharing::{AShare, Party};

use crate::engine::{Engine, Model};
use crate::error::{NnError, Result};
use crate::plain::{PlainEngine, PlainTensor};
use crate::private::PrivateEngine;
use crate::spec::ModelSpec;
use crate::weights::Params;

/// The party that owns the model and the data in the demo, CLI and benches.
pub const OWNER: usize = 0;

/// Secret-shares a plaintext tensor held by `owner` (the others pass `None` and the public shape).
pub fn share<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    owner: usize,
    value: Option<&PlainTensor>,
    shape: &[usize],
) -> Result<AShare<B>> {
    let codec: FixedPoint = party.codec();
    let enc = match value {
        Some(v) if party.id() == owner => Some(codec.encode_tensor(&v.shape, &v.data)?),
        _ => None,
    };
    Ok(party.input(owner, enc.as_ref(), shape)?)
}

/// Opens a sharing to party `to` only and decodes it there: `Some` at `to`, `None` at the others
/// (1 round; party `to - 1` sends 8 B per element).
pub fn reveal_to<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    x: &AShare<B>,
    to: usize,
) -> Result<Option<PlainTensor>> {
    let codec = party.codec();
    party.reveal_to(x, to)?.map(|r: RingTensor| PlainTensor::new(r.shape(), codec.decode_tensor(&r))).transpose()
}

/// The largest count [`open_counts`] accepts: the receivers size batch plans from it, so they
/// check it before allocating anything.
pub const MAX_COUNT: u64 = 1 << 24;

/// Opens public counts held by [`OWNER`] (dataset sizes, image counts; the others pass `None`) to
/// every party, one per name in `what`, and checks at every party that each lies in
/// `1..=`[`MAX_COUNT`] before anything is allocated for it. Cost: 1 input round and 1 opening.
pub fn open_counts<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    counts: Option<&[usize]>,
    what: &[&str],
) -> Result<Vec<usize>> {
    let n = what.len();
    let words = counts.map(|c| RingTensor::new(&[n], c.iter().map(|&v| v as u64).collect())).transpose()?;
    let shared = party.input(OWNER, words.as_ref(), &[n])?;
    let opened = party.reveal(&shared)?;
    opened
        .data()
        .iter()
        .zip(what)
        .map(|(&v, name)| match v {
            1..=MAX_COUNT => Ok(v as usize),
            _ => Err(NnError::Sharing(cryptgpu_sharing::SharingError::Invalid(format!(
                "party {OWNER} announced {v} {name}; expected 1 to {MAX_COUNT}"
            )))),
        })
        .collect()
}

/// Secret-shares the model `params` (folded, see [`crate::weights::fold_batchnorm`]) held by
/// [`OWNER`] for inference; the other parties pass `None`.
pub fn share_model<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    spec: &ModelSpec,
    params: Option<&Params>,
) -> Result<Model<AShare<B>>> {
    share_named(party, spec, &spec.engine_params(), params)
}

/// Secret-shares trainable `params` held by [`OWNER`]: [`ModelSpec::params`], PyTorch's names,
/// batch norms unfolded (see [`Model`]); the other parties pass `None`. For a model without batch
/// norm this is [`share_model`].
pub fn share_trainable_model<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    spec: &ModelSpec,
    params: Option<&Params>,
) -> Result<Model<AShare<B>>> {
    share_named(party, spec, &spec.params(), params)
}

fn share_named<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    spec: &ModelSpec,
    names: &[(String, Vec<usize>)],
    params: Option<&Params>,
) -> Result<Model<AShare<B>>> {
    if party.id() == OWNER && params.is_none() {
        return Err(NnError::Weights("the model owner has no parameters to share".into()));
    }
    let mut shared = std::collections::BTreeMap::new();
    for (name, shape) in names {
        let v = match params {
            Some(p) if party.id() == OWNER => {
                Some(p.get(name).ok_or_else(|| NnError::Weights(format!("missing parameter {name}")))?)
            }
            _ => None,
        };
        if let Some(v) = v {
            if v.shape != *shape {
                return Err(NnError::Weights(format!("{name} has shape {:?}, expected {shape:?}", v.shape)));
            }
        }
        let s = share(party, OWNER, v, shape)?;
        shared.insert(name.clone(), s);
    }
    let engine = PrivateEngine::new(party);
    Model::new(spec.clone(), shared, &engine)
}

/// Opens a shared model's parameters to party `to` only (e.g. for the model owner to save the
/// trained weights): `Some` at `to`, `None` at the others.
pub fn reveal_model_to<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    model: &Model<AShare<B>>,
    to: usize,
) -> Result<Option<Params>> {
    let mut out = Params::new();
    for (name, s) in &model.params {
        if let Some(v) = reveal_to(party, s, to)? {
            out.insert(name.clone(), v);
        }
    }
    Ok((party.id() == to).then_some(out))
}

/// The plaintext twin of a model with the given parameters (folded or trainable, see [`Model::new`]).
pub fn plain_model(spec: &ModelSpec, params: Params) -> Result<Model<PlainTensor>> {
    Model::new(spec.clone(), params, &PlainEngine)
}

/// Logits of the plaintext twin.
pub fn plain_logits(model: &Model<PlainTensor>, x: &PlainTensor) -> Result<PlainTensor> {
    Ok(model.forward(&mut PlainEngine, x, false)?.0)
}

/// Private logits of a batch owned by [`OWNER`] (the others pass `None` and the public shape),
/// opened to party `to` only: `Some` there, `None` at the others.
pub fn private_logits<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    model: &Model<AShare<B>>,
    x: Option<&PlainTensor>,
    shape: &[usize],
    to: usize,
) -> Result<Option<PlainTensor>> {
    let sx = share(party, OWNER, x, shape)?;
    let mut e = PrivateEngine::new(party);
    let (y, _) = model.forward(&mut e, &sx, false)?;
    reveal_to(e.party, &y, to)
}

/// Number of rows whose argmax equals the label.
pub fn correct(logits: &PlainTensor, labels: &[usize]) -> usize {
    logits.argmax_rows().iter().zip(labels).filter(|(a, b)| a == b).count()
}

/// Checks that an engine's output shape is `[n, classes]`.
pub fn check_logits<E: Engine>(e: &E, y: &E::T, n: usize, classes: usize) -> Result<()> {
    let s = e.shape(y);
    if s != [n, classes] {
        return Err(NnError::Shape(format!("logits {s:?}, expected [{n}, {classes}]")));
    }
    Ok(())
}
