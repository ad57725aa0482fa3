//! Runs a computation as three in-process parties (one thread each, [`LocalTransport`] shaped
//! by [`RunConfig::net`], or any other in-process [`Transport`]).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cryptgpu_net::{Counters, LinkModel, LocalTransport, ShapedTransport, Transport, DEFAULT_TIMEOUT};
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
    /// The links' latency and bandwidth ([`LinkModel::NONE`]: free and instant).
    pub net: LinkModel,
}

/// The transport of an in-process party of [`run_local`]: channels, shaped by [`RunConfig::net`].
pub type LocalLink = ShapedTransport<LocalTransport>;

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            codec: FixedPoint::default(),
            keys: KeySource::Os,
            timeout: DEFAULT_TIMEOUT,
            trunc: TruncMode::default(),
            net: LinkModel::NONE,
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

/// Runs `f` as parties 0, 1 and 2 on three threads connected by channels (whose messages arrive
/// as over links of `config.net`), each with its own clone of `backend`, and returns the three
/// results in party order.
///
/// `f` may fail with any error type `E` that protocol errors convert into (for example
/// [`SharingError`] itself, or an application's error type). If a party fails, its neighbours see
/// it vanish and fail too; the error returned is the one of the party that failed first in time
/// (its closure returned `Err` or panicked before its transport closed), not the errors it caused.
/// A panic becomes [`SharingError::Panic`], converted into `E`. (A failure inside key setup is
/// ranked when setup returns, after that party's transport has closed.)
///
/// ```rust
/// use cryptgpu_kernels_cpu::CpuBackend;
/// use cryptgpu_ring::RingTensor;
/// use cryptgpu_sharing::{run_local, RunConfig, SharingError};
///
/// // Party 0 inputs 5, party 1 inputs 7; all three learn the sum.
/// let outs = run_local(CpuBackend, RunConfig::default(), |p| {
///     let mine = |v: u64| RingTensor::new(&[1], vec![v]);
///     let a = p.input(0, (p.id() == 0).then(|| mine(5)).transpose()?.as_ref(), &[1])?;
///     let b = p.input(1, (p.id() == 1).then(|| mine(7)).transpose()?.as_ref(), &[1])?;
///     let sum = p.add(&a, &b)?;
///     Ok::<_, SharingError>(p.reveal(&sum)?.data()[0])
/// })?;
/// assert_eq!(outs.map(|o| o.value), [12, 12, 12]);
/// # Ok::<(), SharingError>(())
/// ```
pub fn run_local<B, R, E, F>(backend: B, config: RunConfig, f: F) -> Result<[PartyOutput<R>; 3], E>
where
    B: Backend,
    R: Send,
    E: From<SharingError> + Send,
    F: Fn(&mut Party<B, LocalLink>) -> Result<R, E> + Sync,
{
    let links = ShapedTransport::triple(LocalTransport::triple_with_timeout(config.timeout), config.net);
    run_local_with(links, backend, config, f)
}

/// [`run_local`] over given transports, `transports[i]` being party `i`'s (for example
/// [`LocalTransport`]s wrapped in [`cryptgpu_net::Recording`]). `config.timeout` and `config.net`
/// are not used: the transports have their own (wrap them in [`ShapedTransport`] to shape them).
pub fn run_local_with<B, T, R, E, F>(
    transports: [T; 3],
    backend: B,
    config: RunConfig,
    f: F,
) -> Result<[PartyOutput<R>; 3], E>
where
    B: Backend,
    T: Transport,
    R: Send,
    E: From<SharingError> + Send,
    F: Fn(&mut Party<B, T>) -> Result<R, E> + Sync,
{
    run_local_keyed(transports, [config.keys; 3], backend, config, f)
}

/// [`run_local_with`] with party `i`'s keys from `keys[i]` (`config.keys` is not used). With
/// [`KeySource::InsecureSeed`]`(s_j)` at every party `j`, `K_j` and party `j`'s local key derive
/// from `s_j`, so party `i` holds exactly the keys of `s_i` and `s_{i+1}`: varying `s_{i+2}` alone
/// varies everything party `i` does not know (local keys are used by no protocol), as the
/// key-difference test of [`crate::audit`] needs.
pub fn run_local_keyed<B, T, R, E, F>(
    transports: [T; 3],
    keys: [KeySource; 3],
    backend: B,
    config: RunConfig,
    f: F,
) -> Result<[PartyOutput<R>; 3], E>
where
    B: Backend,
    T: Transport,
    R: Send,
    E: From<SharingError> + Send,
    F: Fn(&mut Party<B, T>) -> Result<R, E> + Sync,
{
    if let Some((i, t)) = transports.iter().enumerate().find(|(i, t)| t.id() != *i) {
        return Err(SharingError::Invalid(format!("transport {i} belongs to party {}", t.id())).into());
    }
    // Failures are numbered in the order they happen, each before the failing party's transport
    // closes (which is what makes its neighbours fail in turn).
    let failures = AtomicUsize::new(0);
    let results: Vec<std::result::Result<PartyOutput<R>, (usize, E)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = transports
            .into_iter()
            .zip(keys)
            .enumerate()
            .map(|(id, (t, keys))| {
                let backend = backend.clone();
                let (f, failures) = (&f, &failures);
                scope.spawn(move || {
                    let failed = |e: E| (failures.fetch_add(1, Ordering::SeqCst), e);
                    let mut party = Party::setup(backend, t, config.codec, keys).map_err(|e| failed(e.into()))?;
                    party.set_trunc_mode(config.trunc);
                    match catch_unwind(AssertUnwindSafe(|| f(&mut party))) {
                        Ok(Ok(value)) => Ok(PartyOutput { value, counters: party.counters() }),
                        Ok(Err(e)) => Err(failed(e)),
                        Err(panic) => {
                            Err(failed(SharingError::Panic { party: id, message: panic_message(&*panic) }.into()))
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .enumerate()
            .map(|(party, h)| {
                // Panics are caught inside the thread; one escaping means the error conversion panicked.
                h.join().unwrap_or_else(|panic| {
                    let e = SharingError::Panic { party, message: panic_message(&*panic) };
                    Err((usize::MAX, e.into()))
                })
            })
            .collect()
    });
    let mut outs = Vec::with_capacity(3);
    let mut first: Option<(usize, E)> = None;
    for r in results {
        match r {
            Ok(out) => outs.push(out),
            Err((seq, e)) => {
                if first.as_ref().is_none_or(|(s, _)| seq < *s) {
                    first = Some((seq, e));
                }
            }
        }
    }
    if let Some((_, e)) = first {
        return Err(e);
    }
    Ok(outs.try_into().unwrap_or_else(|_| unreachable!("three parties")))
}

/// The message of a caught panic.
fn panic_message(panic: &(dyn Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "unknown panic".into())
}
