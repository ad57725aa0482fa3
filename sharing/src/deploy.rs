//! Runs a computation as one party of a three-process (three-machine) deployment over TCP, the
//! counterpart of [`run_local`](crate::run_local).
//!
//! [`run_tcp`] takes the party's [`TcpSetup`] (for example from
//! [`cryptgpu_net::Deployment::setup`]), agrees on a job tag with its neighbours, sets up the keys
//! and runs the closure. The closure is the same party program that `run_local` runs, so with
//! the same seeds ([`KeySource::InsecureSeed`]) both drivers give bit-identical results and
//! counters.

use cryptgpu_net::{NetError, ShapedTransport, TcpSetup, TcpTransport};
use cryptgpu_ring::Backend;
use thiserror::Error;

use crate::error::SharingError;
use crate::party::{KeySource, Party};
use crate::runner::{PartyOutput, RunConfig};

/// The environment variable that must be `1` wherever [`key_source`] accepts a public seed.
pub const ALLOW_INSECURE_KEYS: &str = "CRYPTGPU_ALLOW_INSECURE_KEYS";

/// [`key_source`] was given a seed without the opt-in [`ALLOW_INSECURE_KEYS`]`=1`.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error(
    "an insecure key seed derives every PRG key from a public seed: anyone who knows it sees every share. \
     It is for reproducibility tests only; to use it anyway, set {ALLOW_INSECURE_KEYS}=1 in the environment \
     of every party"
)]
pub struct InsecureKeysRefused;

/// The key source for an optional insecure seed: the OS generator without one. A known seed lets
/// anyone who knows it remove every mask, so it needs the explicit opt-in
/// [`ALLOW_INSECURE_KEYS`]`=1` in the environment; without it, it is refused.
pub fn key_source(insecure_seed: Option<u64>) -> Result<KeySource, InsecureKeysRefused> {
    let Some(seed) = insecure_seed else { return Ok(KeySource::Os) };
    if std::env::var_os(ALLOW_INSECURE_KEYS).is_none_or(|v| v != "1") {
        return Err(InsecureKeysRefused);
    }
    Ok(KeySource::InsecureSeed(seed))
}

/// How a key source is recorded in reports and job tags: `os` or `insecure-seed:S`.
pub fn key_label(keys: KeySource) -> String {
    match keys {
        KeySource::Os => "os".into(),
        KeySource::InsecureSeed(s) => format!("insecure-seed:{s}"),
    }
}

/// The job tag that [`run_tcp`] exchanges: a digest of the job's public parameters and its key
/// source, so parties started with different arguments or key sources refuse each other at once.
pub fn job_tag(public_params: &str, keys: KeySource) -> u64 {
    fnv1a(format!("{public_params} keys={}", key_label(keys)).bytes())
}

/// FNV-1a over the little-endian bytes of `words`, as 16 hex digits (compares results, not secret:
/// only revealed outputs are digested).
pub fn digest(words: &[u64]) -> String {
    format!("{:016x}", fnv1a(words.iter().flat_map(|w| w.to_le_bytes())))
}

fn fnv1a(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// The transport of a party of [`run_tcp`]: TCP, shaped by [`RunConfig::net`].
pub type TcpLink = ShapedTransport<TcpTransport>;

/// Runs `f` as party `setup.id` of a TCP deployment and returns its result with the party's
/// counters (key setup included).
///
/// `public_params` must describe every public parameter the three parties must agree on; with
/// `config.keys` and `config.net` it makes the job tag ([`job_tag`]) checked when the links come
/// up, so that parties with different link models fail to connect instead of misreading each
/// other's messages. The links are
/// set up with `setup` (its job tag is replaced), then the PRG keys with `config.codec` and
/// `config.keys`, and products are truncated with `config.trunc`; messages are delayed as over
/// links of `config.net` (on top of the real network's own delays: meant for parties on one host,
/// see [`cryptgpu_net::shaped`]); `config.timeout` is not used
/// (the transport's is `setup.options.timeout`). Every failure of the run itself reaches the
/// caller as `E` (from [`SharingError`]); a link that cannot be set up is a
/// [`NetError::Connect`] whose detail names this party's key source.
pub fn run_tcp<B, R, E, F>(
    backend: B,
    mut setup: TcpSetup,
    config: RunConfig,
    public_params: &str,
    f: F,
) -> Result<PartyOutput<R>, E>
where
    B: Backend,
    E: From<SharingError>,
    F: FnOnce(&mut Party<B, TcpLink>) -> Result<R, E>,
{
    setup.options.job_tag = job_tag(&format!("{public_params} net={}", config.net), config.keys);
    let transport = TcpTransport::connect(setup).map_err(|e| match e {
        NetError::Connect { peer, detail } => NetError::Connect {
            peer,
            detail: format!(
                "{detail} (all parties must run the same job with the same public parameters and the same \
                 key source; this party's is {})",
                key_label(config.keys)
            ),
        },
        e => e,
    });
    let transport = ShapedTransport::new(transport.map_err(SharingError::Net)?, config.net);
    let mut party = Party::setup(backend, transport, config.codec, config.keys)?;
    party.set_trunc_mode(config.trunc);
    let value = f(&mut party)?;
    Ok(PartyOutput { value, counters: party.counters() })
}
