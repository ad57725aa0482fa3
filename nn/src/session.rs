//! Private sessions: who holds the model, who holds the data, and who receives each output.
//!
//! A session's [`Roles`] name the party that secret-shares the model (`model_owner`), the party
//! that secret-shares the data (`data_owner`), the parties that receive the predictions
//! (`output_to`) and those that receive trained weights (`weights_to`). Every entry point that
//! opens a value takes its receivers: they get `Some(value)`, the others `None`, and learn
//! nothing beyond the public shapes (see `SECURITY.md`). The default roles put everything at
//! party 0; the client-server setting of private inference is
//! `Roles::new(0, 1, Receivers::only(1))`: a server (party 0) holds the model, a client
//! (party 1) holds the input and alone receives the prediction.
//!
//! ```rust
//! use cryptgpu_kernels_cpu::CpuBackend;
//! use cryptgpu_nn::plain::PlainTensor;
//! use cryptgpu_nn::session::{private_logits, share_model, Receivers, Roles};
//! use cryptgpu_nn::spec::{LayerSpec, ModelSpec};
//! use cryptgpu_nn::weights::init_params;
//! use cryptgpu_sharing::{run_local, RunConfig};
//!
//! // A one-layer classifier of 1x2x2 inputs into 3 classes; its weights are the server's.
//! let spec = ModelSpec {
//!     name: "tiny".into(),
//!     input: [1, 2, 2],
//!     classes: 3,
//!     layers: vec![LayerSpec::Flatten, LayerSpec::Linear { name: "fc".into(), fin: 4, fout: 3 }],
//! };
//! let weights = init_params(&spec, 1);
//! let image = PlainTensor::new(&[1, 1, 2, 2], vec![0.5, -1.0, 0.25, 2.0])?;
//! let roles = Roles::new(0, 1, Receivers::only(1))?;
//! let out = run_local(CpuBackend, RunConfig::default(), |party| {
//!     let id = party.id();
//!     let model = share_model(party, &spec, roles.model_owner, (id == 0).then_some(&weights))?;
//!     private_logits(party, &model, &roles, (id == 1).then_some(&image), &[1, 1, 2, 2])
//! })?;
//! assert!(out[0].value.is_none() && out[2].value.is_none());
//! let logits = out[1].value.as_ref().expect("the client receives its prediction");
//! assert_eq!(logits.shape, [1, 3]);
//! # Ok::<(), cryptgpu_nn::NnError>(())
//! ```

use cryptgpu_net::Transport;
use cryptgpu_ring::{Backend, FixedPoint, RingTensor};
use cryptgpu_sharing::{AShare, Party};

use crate::engine::{Engine, Model};
use crate::error::{NnError, Result};
use crate::graph::Graph;
use crate::plain::{PlainEngine, PlainTensor};
use crate::private::PrivateEngine;
use crate::weights::Params;

/// A set of parties (0, 1, 2) that receive an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Receivers(u8);

impl Receivers {
    /// Party `p` alone (`p` must be 0, 1 or 2; checked by [`Roles::new`] and the openings).
    pub const fn only(p: usize) -> Receivers {
        Receivers(if p < 3 { 1 << p } else { 1 << 7 })
    }

    /// The parties listed (an error for an id above 2 or an empty list).
    pub fn of(parties: &[usize]) -> Result<Receivers> {
        let mut bits = 0u8;
        for &p in parties {
            if p > 2 {
                return Err(NnError::Roles(format!("party {p} is not 0, 1 or 2")));
            }
            bits |= 1 << p;
        }
        if bits == 0 {
            return Err(NnError::Roles("an output needs at least one receiver".into()));
        }
        Ok(Receivers(bits))
    }

    /// Whether party `p` receives.
    pub fn contains(self, p: usize) -> bool {
        p < 3 && self.0 & (1 << p) != 0
    }

    /// The receivers in increasing order.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..3).filter(move |&p| self.contains(p))
    }

    fn check(self) -> Result<()> {
        if self.0 == 0 || self.0 >= 8 {
            return Err(NnError::Roles(format!("receivers {self} are not a non-empty set of parties 0, 1, 2")));
        }
        Ok(())
    }
}

impl From<usize> for Receivers {
    fn from(p: usize) -> Self {
        Receivers::only(p)
    }
}

impl std::fmt::Display for Receivers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<String> = self.iter().map(|p| p.to_string()).collect();
        if ids.is_empty() {
            return write!(f, "(none)");
        }
        write!(f, "{}", ids.join(","))
    }
}

impl std::str::FromStr for Receivers {
    type Err = NnError;

    /// Parses `1` or `0,2`.
    fn from_str(s: &str) -> Result<Self> {
        let ids: Vec<usize> = s
            .split(',')
            .map(|t| t.trim().parse::<usize>().map_err(|_| NnError::Roles(format!("{t:?} is not a party id"))))
            .collect::<Result<_>>()?;
        Receivers::of(&ids)
    }
}

/// Who holds what, and who receives what, in a private session. All three parties must use the
/// same roles (they are public).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Roles {
    /// The party that holds the model's parameters and secret-shares them.
    pub model_owner: usize,
    /// The party that holds the data (images, labels, dataset sizes) and secret-shares it.
    pub data_owner: usize,
    /// The parties that receive the predictions (logits).
    pub output_to: Receivers,
    /// The parties that receive trained weights (by default the model owner).
    pub weights_to: Receivers,
}

impl Default for Roles {
    /// Everything at party 0 (the demo's and the CLI's default).
    fn default() -> Self {
        Roles { model_owner: 0, data_owner: 0, output_to: Receivers::only(0), weights_to: Receivers::only(0) }
    }
}

impl Roles {
    /// Roles with the model at `model_owner`, the data at `data_owner` and the predictions opened to
    /// `output_to`; trained weights go to the model owner.
    pub fn new(model_owner: usize, data_owner: usize, output_to: Receivers) -> Result<Roles> {
        let r = Roles { model_owner, data_owner, output_to, weights_to: Receivers::only(model_owner) };
        r.check()?;
        Ok(r)
    }

    /// These roles with trained weights opened to `to` instead of the model owner.
    pub fn with_weights_to(self, to: Receivers) -> Result<Roles> {
        let r = Roles { weights_to: to, ..self };
        r.check()?;
        Ok(r)
    }

    /// Checks that every party id is 0, 1 or 2 and every output has a receiver.
    pub fn check(&self) -> Result<()> {
        for (what, p) in [("model owner", self.model_owner), ("data owner", self.data_owner)] {
            if p > 2 {
                return Err(NnError::Roles(format!("the {what} {p} is not 0, 1 or 2")));
            }
        }
        self.output_to.check()?;
        self.weights_to.check()
    }

    /// A short public description, e.g. `model=0 data=1 output=1 weights=0` (for job tags and reports).
    pub fn label(&self) -> String {
        format!(
            "model={} data={} output={} weights={}",
            self.model_owner, self.data_owner, self.output_to, self.weights_to
        )
    }
}

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
        Some(_) => {
            return Err(NnError::Roles(format!(
                "party {} passed a value for an input owned by party {owner}",
                party.id()
            )))
        }
        None => None,
    };
    Ok(party.input(owner, enc.as_ref(), shape)?)
}

/// Opens a sharing to the parties `to` only and decodes it there: `Some` at each receiver, `None`
/// at the others. Cost: 1 round per receiver; party `r - 1` sends 8 B per element to receiver `r`.
pub fn reveal_to<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    x: &AShare<B>,
    to: impl Into<Receivers>,
) -> Result<Option<PlainTensor>> {
    let to = to.into();
    to.check()?;
    let codec = party.codec();
    let mut mine = None;
    for r in to.iter() {
        if let Some(v) = party.reveal_to(x, r)? {
            mine = Some(PlainTensor::new(v.shape(), codec.decode_tensor(&v))?);
        }
    }
    Ok(mine)
}

/// The largest count [`open_counts`] accepts: the receivers size batch plans from it, so they
/// check it before allocating anything.
pub const MAX_COUNT: u64 = 1 << 24;

/// Opens public counts held by `owner` (dataset sizes, image counts; the others pass `None`) to
/// every party, one per name in `what`, and checks at every party that each lies in
/// `1..=`[`MAX_COUNT`] before anything is allocated for it. Cost: 1 input round and 1 opening.
pub fn open_counts<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    owner: usize,
    counts: Option<&[usize]>,
    what: &[&str],
) -> Result<Vec<usize>> {
    let n = what.len();
    let words = counts.map(|c| RingTensor::new(&[n], c.iter().map(|&v| v as u64).collect())).transpose()?;
    let shared = party.input(owner, words.as_ref(), &[n])?;
    let opened = party.reveal(&shared)?;
    opened
        .data()
        .iter()
        .zip(what)
        .map(|(&v, name)| match v {
            1..=MAX_COUNT => Ok(v as usize),
            _ => Err(NnError::Sharing(cryptgpu_sharing::SharingError::Invalid(format!(
                "party {owner} announced {v} {name}; expected 1 to {MAX_COUNT}"
            )))),
        })
        .collect()
}

/// Secret-shares the model `params` (folded, see [`crate::weights::fold_graph_batchnorm`]) held
/// by `owner` for inference; the other parties pass `None`. The model is a [`Graph`] or a
/// [`ModelSpec`](crate::spec::ModelSpec) (by reference).
pub fn share_model<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    model: impl Into<Graph>,
    owner: usize,
    params: Option<&Params>,
) -> Result<Model<AShare<B>>> {
    let graph = model.into();
    let names = graph.fold_batchnorm().params;
    share_named(party, graph, &names, owner, params)
}

/// Secret-shares trainable `params` held by `owner`: [`Graph::params`] (for the zoo, PyTorch's
/// names), batch norms unfolded (see [`Model`]); the other parties pass `None`. For a model without batch
/// norm this is [`share_model`].
pub fn share_trainable_model<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    model: impl Into<Graph>,
    owner: usize,
    params: Option<&Params>,
) -> Result<Model<AShare<B>>> {
    let graph = model.into();
    let names = graph.params.clone();
    share_named(party, graph, &names, owner, params)
}

fn share_named<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    graph: Graph,
    names: &[(String, Vec<usize>)],
    owner: usize,
    params: Option<&Params>,
) -> Result<Model<AShare<B>>> {
    match (party.id() == owner, params.is_some()) {
        (true, false) => return Err(NnError::Weights(format!("the model owner (party {owner}) has no parameters"))),
        (false, true) => {
            return Err(NnError::Roles(format!(
                "party {} passed parameters for a model owned by party {owner}",
                party.id()
            )))
        }
        _ => {}
    }
    let mut shared = std::collections::BTreeMap::new();
    for (name, shape) in names {
        let v = match params {
            Some(p) => Some(p.get(name).ok_or_else(|| NnError::Weights(format!("missing parameter {name}")))?),
            None => None,
        };
        if let Some(v) = v {
            if v.shape != *shape {
                return Err(NnError::Weights(format!("{name} has shape {:?}, expected {shape:?}", v.shape)));
            }
        }
        let s = share(party, owner, v, shape)?;
        shared.insert(name.clone(), s);
    }
    let engine = PrivateEngine::new(party);
    Model::from_graph(graph, shared, &engine)
}

/// Opens a shared model's parameters to the parties `to` only (e.g. for the model owner to save
/// the trained weights): `Some` at each receiver, `None` at the others.
pub fn reveal_model_to<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    model: &Model<AShare<B>>,
    to: impl Into<Receivers>,
) -> Result<Option<Params>> {
    let to = to.into();
    let mut out = Params::new();
    for (name, s) in &model.params {
        if let Some(v) = reveal_to(party, s, to)? {
            out.insert(name.clone(), v);
        }
    }
    Ok(to.contains(party.id()).then_some(out))
}

/// The plaintext twin of a model (a [`Graph`] or a `&ModelSpec`) with the given parameters
/// (folded or trainable, see [`Model::from_graph`]).
pub fn plain_model(model: impl Into<Graph>, params: Params) -> Result<Model<PlainTensor>> {
    Model::from_graph(model.into(), params, &PlainEngine)
}

/// Logits of the plaintext twin.
pub fn plain_logits(model: &Model<PlainTensor>, x: &PlainTensor) -> Result<PlainTensor> {
    Ok(model.forward(&mut PlainEngine, x, false)?.0)
}

/// Private logits of a batch held by `roles.data_owner` (the others pass `None` and the public
/// shape) through a shared model, opened to `roles.output_to` only: `Some` there, `None` at the
/// others.
pub fn private_logits<B: Backend, T: Transport>(
    party: &mut Party<B, T>,
    model: &Model<AShare<B>>,
    roles: &Roles,
    x: Option<&PlainTensor>,
    shape: &[usize],
) -> Result<Option<PlainTensor>> {
    let sx = share(party, roles.data_owner, x, shape)?;
    let mut e = PrivateEngine::new(party);
    let (y, _) = model.forward(&mut e, &sx, false)?;
    reveal_to(e.party, &y, roles.output_to)
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
