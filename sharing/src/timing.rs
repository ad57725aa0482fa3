//! Timing a protocol inside the three parties: warm-up, lined-up repetitions, device fences.
//!
//! [`repeat`] runs inside each party (in-process or over TCP) and returns that party's [`Runs`];
//! [`slowest`] and [`cost`] combine the three parties' runs into one measurement;
//! [`peak_rss_bytes`] reads the process's peak memory.

use std::time::Instant;

use cryptgpu_net::{Counters, Transport};
use cryptgpu_ring::{Backend, RingTensor};

use crate::error::{Result, SharingError};
use crate::party::Party;
use crate::runner::PartyOutput;

/// How often to run a protocol.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Untimed runs first.
    pub warmup: usize,
    /// Timed repetitions (at most).
    pub reps: usize,
    /// Seconds per point: fewer repetitions when `reps` times the warm-up would not fit.
    pub budget: Option<f64>,
}

impl Plan {
    /// Repetitions that fit the budget after a warm-up of `warm` seconds (at least one).
    pub fn reps_after(&self, warm: Option<f64>) -> usize {
        match (self.budget, warm) {
            (Some(b), Some(w)) if w > 0.0 => ((b / w).floor() as usize).clamp(1, self.reps),
            _ => self.reps,
        }
    }
}

/// One timed run at one party.
#[derive(Debug, Clone)]
pub struct Sample<R> {
    /// Wall time at this party, from the line-up to the fence.
    pub seconds: f64,
    /// This party's communication during the run.
    pub cost: Counters,
    /// What the run returned.
    pub value: R,
}

/// What [`repeat`] measured at one party.
#[derive(Debug, Clone)]
pub struct Runs<R> {
    /// Warm-up times at this party.
    pub warmup: Vec<f64>,
    /// The timed repetitions.
    pub samples: Vec<Sample<R>>,
}

/// Runs `once` `plan.warmup` times untimed, then timed repetitions. Before each run a one-element
/// opening (one round, outside the timing and the counters) lines the parties up; after it the
/// device is fenced before the clock stops. Party 0 chooses how many repetitions fit the budget
/// from its slowest warm-up and opens the number, so every party runs the same count.
pub fn repeat<B, T, R, E>(
    p: &mut Party<B, T>,
    plan: &Plan,
    mut once: impl FnMut(&mut Party<B, T>) -> Result<R, E>,
) -> Result<Runs<R>, E>
where
    B: Backend,
    T: Transport,
    E: From<SharingError> + From<cryptgpu_ring::RingError>,
{
    let owner = p.id() == 0;
    let zero = RingTensor::new(&[1], vec![0])?;
    let token = p.input(0, owner.then_some(&zero), &[1])?;
    let mut timed = |p: &mut Party<B, T>| -> Result<Sample<R>, E> {
        p.reveal(&token)?;
        let before = p.counters();
        let start = Instant::now();
        let value = once(p)?;
        p.backend().synchronize()?;
        Ok(Sample { seconds: start.elapsed().as_secs_f64(), cost: p.counters().since(&before), value })
    };
    let mut warmup = Vec::with_capacity(plan.warmup);
    for _ in 0..plan.warmup {
        warmup.push(timed(p)?.seconds);
    }
    let slowest = warmup.iter().copied().reduce(f64::max);
    let reps = RingTensor::new(&[1], vec![plan.reps_after(slowest) as u64])?;
    let reps = p.input(0, owner.then_some(&reps), &[1])?;
    let reps = p.reveal(&reps)?.data()[0];
    // Party 0 chose the count; the others check it before allocating for it.
    let reps = match usize::try_from(reps) {
        Ok(r) if (1..=plan.reps.max(1)).contains(&r) => r,
        _ => {
            return Err(SharingError::Invalid(format!(
                "party 0 opened {reps} repetitions; the plan allows 1 to {}",
                plan.reps.max(1)
            ))
            .into())
        }
    };
    let mut samples = Vec::with_capacity(reps);
    for _ in 0..reps {
        samples.push(timed(p)?);
    }
    Ok(Runs { warmup, samples })
}

/// The three parties' runs combined: per repetition the slowest party's time; warm-ups likewise.
pub fn slowest<R>(runs: [&Runs<R>; 3]) -> (Vec<f64>, Vec<f64>) {
    let worst = |f: &dyn Fn(&Runs<R>) -> Vec<f64>| -> Vec<f64> {
        let per: Vec<Vec<f64>> = runs.iter().map(|r| f(r)).collect();
        (0..per[0].len()).map(|i| per.iter().filter_map(|v| v.get(i)).copied().fold(0.0, f64::max)).collect()
    };
    let samples = worst(&|r| r.samples.iter().map(|s| s.seconds).collect());
    let warmup = worst(&|r| r.warmup.clone());
    (samples, warmup)
}

/// The three parties' runs of an in-process run.
pub fn runs_of<R>(out: &[PartyOutput<Runs<R>>; 3]) -> [&Runs<R>; 3] {
    [&out[0].value, &out[1].value, &out[2].value]
}

/// Bytes each party sent and party 0's rounds in the first timed repetition (every repetition
/// costs the same).
pub fn cost<R>(runs: [&Runs<R>; 3]) -> ([u64; 3], u64) {
    let c = |i: usize| runs[i].samples.first().map(|s| s.cost).unwrap_or_default();
    ([c(0).bytes_sent, c(1).bytes_sent, c(2).bytes_sent], c(0).rounds)
}

/// The peak resident memory of this process so far, in bytes (`VmHWM` in `/proc/self/status`);
/// `None` where it cannot be read (outside Linux). It is the whole process's: three in-process
/// parties count together. The peak cannot be reset, so a reading after a measurement is the
/// maximum over that measurement and everything the process ran before it.
pub fn peak_rss_bytes() -> Option<u64> {
    vm_hwm(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// `VmHWM` of a `/proc/<pid>/status` text, in bytes.
fn vm_hwm(status: &str) -> Option<u64> {
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?;
    kb.trim().strip_suffix("kB")?.trim().parse::<u64>().ok()?.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_memory_from_proc_status() {
        assert_eq!(vm_hwm("Name:\tx\nVmPeak:\t  9000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n"), Some(1234 * 1024));
        assert_eq!(vm_hwm("VmRSS:\t 1000 kB\n"), None);
        assert_eq!(vm_hwm("VmHWM:\t lots kB\n"), None);
        if cfg!(target_os = "linux") {
            assert!(peak_rss_bytes().is_some_and(|b| b > 0));
        }
    }

    #[test]
    fn budget_cuts_repetitions() {
        let plan = Plan { warmup: 1, reps: 5, budget: Some(10.0) };
        assert_eq!(plan.reps_after(Some(1.0)), 5);
        assert_eq!(plan.reps_after(Some(4.0)), 2);
        assert_eq!(plan.reps_after(Some(40.0)), 1);
        assert_eq!(plan.reps_after(None), 5);
        assert_eq!(Plan { budget: None, ..plan }.reps_after(Some(40.0)), 5);
    }
}
