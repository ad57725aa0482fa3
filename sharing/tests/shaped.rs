//! A run over shaped links takes at least rounds x latency + the busiest link's bytes / bandwidth
//! (from its counters), not much more, and counts exactly what an unshaped run counts.

use std::time::{Duration, Instant};

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_net::{Counters, LinkModel, Transport};
use cryptgpu_sharing::{run_local, KeySource, Party, RunConfig, SharingError};

/// Party 0 shares 256 values; the parties compute their ReLU and open it.
fn relu<T: Transport>(p: &mut Party<CpuBackend, T>) -> Result<Vec<u64>, SharingError> {
    let x = p.codec().encode_tensor(&[256], &(0..256).map(|i| f64::from(i) - 127.5).collect::<Vec<_>>())?;
    let s = p.input(0, (p.id() == 0).then_some(&x), &[256])?;
    let (y, _) = p.relu(&s)?;
    Ok(p.reveal(&y)?.data().to_vec())
}

fn timed(config: RunConfig) -> (Duration, Vec<Vec<u64>>, Vec<Counters>) {
    let start = Instant::now();
    let out = run_local(CpuBackend, config, relu).unwrap();
    let elapsed = start.elapsed();
    (elapsed, out.iter().map(|o| o.value.clone()).collect(), out.iter().map(|o| o.counters).collect())
}

#[test]
fn a_shaped_relu_takes_its_lower_bound_and_not_much_more() {
    let plain = RunConfig { keys: KeySource::InsecureSeed(21), ..RunConfig::default() };
    // 20 ms one way and 0.01 Gbit/s: latency dominates, but the bytes count too.
    let net: LinkModel = "20,0.01".parse().unwrap();
    let (base, values, counters) = timed(plain);
    let (elapsed, shaped_values, shaped_counters) = timed(RunConfig { net, ..plain });
    assert_eq!((values, &counters), (shaped_values, &shaped_counters), "shaping changes no result or count");
    let bound = net.lower_bound(&counters);
    let rounds = counters[0].rounds;
    assert!(bound >= Duration::from_millis(20 * rounds) && rounds >= 10, "{bound:?} for {rounds} rounds");
    assert!(bound > Duration::from_millis(20 * rounds + 1), "bytes add to the bound: {bound:?}");
    assert!(elapsed >= bound, "{elapsed:?} < {bound:?}");
    let slack = (bound + base + Duration::from_millis(50)).mul_f64(1.3);
    assert!(elapsed < slack, "{elapsed:?} >= {slack:?} (bound {bound:?}, unshaped {base:?})");
}
