//! Runs a computation as three in-process parties (one thread each, [`LocalTransport`] or any
//! other in-process [`Transport`]).

use std::time::Duration;

use cryptgpu_net::{Counters, LocalTransport, Transport, DEFAULT_TIMEOUT};
use cryptgpu_ring::{Backend, FixedPoint};

use crate::error::{Result, SharingError};
use crate::party::{KeySource, Party};
use crate::trunc::TruncMode;

/// Settings of an in-process run.
#[derive(Debug, Clone, Copy)]
pub struct RunConfig {
    /// The fixed-point codec every party uses.
    pub codec: FixedPoint,
    /// Where the PRG keys come from.
    pub keys: KeySource,
    /// How long a party waits for a neighbour before failing.
    pub timeout: Duration,
    /// How fixed-point products are truncated.
    pub trunc: TruncMode,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            codec: FixedPoint::default(),
            keys: KeySource::Os,
            timeout: DEFAULT_TIMEOUT,
            trunc: TruncMode::default(),
        }
    }
}

/// What one party returned, with its communication counters (key setup included).
#[derive(Debug, Clone)]
pub struct PartyOutput<R> {
    /// The closure's result.
    pub value: R,
    /// The party's counters at the end of the run.
    pub counters: Counters,
}

/// Runs `f` as parties 0, 1 and 2 on three threads connected by channels, each with its own clone
/// of `backend`, and returns the three results in party order.
///
/// If a party fails, its neighbours see it vanish and fail too; the error returned is the first
/// party's own error rather than the "peer gone" errors it caused.
pub fn run_local<B, R, F>(backend: B, config: RunConfig, f: F) -> Result<[PartyOutput<R>; 3]>
where
    B: Backend,
    R: Send,
    F: Fn(&mut Party<B, LocalTransport>) -> Result<R> + Sync,
{
    run_local_with(LocalTransport::triple_with_timeout(config.timeout), backend, config, f)
}

/// [`run_local`] over given transports, `transports[i]` being party `i`'s (for example
/// [`LocalTransport`]s wrapped in [`cryptgpu_net::Recording`]). `config.timeout` is not used: the
/// transports have their own.
pub fn run_local_with<B, T, R, F>(
    transports: [T; 3],
    backend: B,
    config: RunConfig,
    f: F,
) -> Result<[PartyOutput<R>; 3]>
where
    B: Backend,
    T: Transport,
    R: Send,
    F: Fn(&mut Party<B, T>) -> Result<R> + Sync,
{
    run_local_keyed(transports, [config.keys; 3], backend, config, f)
}

/// [`run_local_with`] with party `i`'s keys from `keys[i]` (`config.keys` is not used). With
/// [`KeySource::InsecureSeed`]`(s_j)` at every party `j`, `K_j` and party `j`'s local key derive
/// from `s_j`, so party `i` holds exactly the keys of `s_i` and `s_{i+1}`: varying `s_{i+2}` alone
/// varies everything party `i` does not know (local keys are used by no protocol), as the
/// key-difference test of [`crate::audit`] needs.
pub fn run_local_keyed<B, T, R, F>(
    transports: [T; 3],
    keys: [KeySource; 3],
    backend: B,
    config: RunConfig,
    f: F,
) -> Result<[PartyOutput<R>; 3]>
where
    B: Backend,
    T: Transport,
    R: Send,
    F: Fn(&mut Party<B, T>) -> Result<R> + Sync,
{
    if let Some((i, t)) = transports.iter().enumerate().find(|(i, t)| t.id() != *i) {
        return Err(SharingError::Invalid(format!("transport {i} belongs to party {}", t.id())));
    }
    let results: Vec<Result<PartyOutput<R>>> = std::thread::scope(|scope| {
        let handles: Vec<_> = transports
            .into_iter()
            .zip(keys)
            .map(|(t, keys)| {
                let backend = backend.clone();
                let f = &f;
                scope.spawn(move || -> Result<PartyOutput<R>> {
                    let mut party = Party::setup(backend, t, config.codec, keys)?;
                    party.set_trunc_mode(config.trunc);
                    let value = f(&mut party)?;
                    Ok(PartyOutput { value, counters: party.counters() })
                })
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(party, h)| {
                h.join().unwrap_or_else(|e| {
                    let message = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "unknown panic".into());
                    Err(SharingError::Panic { party, message })
                })
            })
            .collect()
    });
    let root_cause = results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .find(|e| !matches!(e, SharingError::Net(cryptgpu_net::NetError::PeerGone { .. })))
        .or_else(|| results.iter().find_map(|r| r.as_ref().err()))
        .cloned();
    if let Some(e) = root_cause {
        return Err(e);
    }
    let outs: Vec<PartyOutput<R>> = results.into_iter().map(|r| r.expect("errors handled above")).collect();
    Ok(outs.try_into().unwrap_or_else(|_| unreachable!("three parties")))
}
