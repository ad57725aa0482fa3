//! `run_tcp` over 127.0.0.1 with mutual TLS (generated certificates) gives the results and counters
//! of `run_local` with the same seeded keys.

use std::path::PathBuf;

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_net::deploy::generate_local;
use cryptgpu_net::tcp::on_loopback;
use cryptgpu_net::{Deployment, LinkModel, NetError, Protection, Transport};
use cryptgpu_ring::FixedPoint;
use cryptgpu_sharing::deploy::{job_tag, key_label, key_source, ALLOW_INSECURE_KEYS};
use cryptgpu_sharing::{run_local, run_tcp, KeySource, Party, PartyOutput, RunConfig, SharingError, TcpLink};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cryptgpu-sharing-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Party 0 shares a vector; the parties compute its ReLU and open it.
fn program<T: Transport>(p: &mut Party<CpuBackend, T>) -> Result<Vec<u64>, SharingError> {
    let codec = p.codec();
    let x = codec.encode_tensor(&[40], &(0..40).map(|i| f64::from(i) - 20.5).collect::<Vec<_>>())?;
    let owner = p.id() == 0;
    let s = p.input(0, owner.then_some(&x), &[40])?;
    let (y, _) = p.relu(&s)?;
    Ok(p.reveal(&y)?.data().to_vec())
}

/// Runs `program` as three threads over TLS from a generated deployment; `params[i]` is party
/// `i`'s public parameter string.
fn over_tls(
    name: &str,
    config: RunConfig,
    params: [&'static str; 3],
) -> Vec<Result<PartyOutput<Vec<u64>>, SharingError>> {
    let dir = temp_dir(name);
    let path = generate_local(&dir, ["127.0.0.1"; 3], 7100, false).unwrap();
    let deployment = Deployment::load(&path).unwrap();
    let mut setups = [0, 1, 2].map(|id| deployment.setup(id, &Protection::Tls { key: None }).unwrap());
    on_loopback(&mut setups).unwrap();
    for setup in &mut setups {
        setup.options.connect_timeout = std::time::Duration::from_secs(10);
    }
    let out = std::thread::scope(|s| {
        let hs: Vec<_> = setups
            .into_iter()
            .zip(params)
            .map(|(setup, params)| {
                s.spawn(move || run_tcp(CpuBackend, setup, config, params, |p: &mut Party<_, TcpLink>| program(p)))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn run_tcp_over_tls_matches_run_local() {
    let config = RunConfig { codec: FixedPoint::default(), keys: KeySource::InsecureSeed(11), ..RunConfig::default() };
    let local = run_local(CpuBackend, config, program).unwrap();
    let tcp = over_tls("same", config, ["relu n=40"; 3]);
    for (i, (l, t)) in local.iter().zip(tcp).enumerate() {
        let t = t.unwrap_or_else(|e| panic!("party {i}: {e}"));
        assert_eq!(l.value, t.value, "party {i}");
        assert_eq!(l.counters, t.counters, "party {i}");
        assert!(t.counters.rounds > 2);
    }
    let codec = config.codec;
    assert_eq!(codec.decode(local[0].value[0]), 0.0);
    assert_eq!(codec.decode(local[0].value[39]), 18.5);
}

#[test]
fn shaped_tcp_links_give_the_results_and_counters_of_run_local() {
    let config = RunConfig { keys: KeySource::InsecureSeed(12), net: LinkModel::LAN, ..RunConfig::default() };
    let local = run_local(CpuBackend, RunConfig { net: LinkModel::NONE, ..config }, program).unwrap();
    let tcp = over_tls("shaped", config, ["relu n=40"; 3]);
    for (i, (l, t)) in local.iter().zip(tcp).enumerate() {
        let t = t.unwrap_or_else(|e| panic!("party {i}: {e}"));
        assert_eq!((&l.value, l.counters), (&t.value, t.counters), "party {i}");
    }
}

#[test]
fn different_public_parameters_refuse_each_other_naming_the_key_source() {
    let config = RunConfig { keys: KeySource::InsecureSeed(4), ..RunConfig::default() };
    let out = over_tls("differ", config, ["relu n=40", "relu n=40", "relu n=41"]);
    for (i, r) in out.iter().enumerate() {
        assert!(r.is_err(), "party {i} should refuse");
    }
    let refused = out.iter().filter_map(|r| r.as_ref().err()).any(|e| {
        matches!(e, SharingError::Net(NetError::Connect { detail, .. })
            if detail.contains("job tags differ") && detail.contains("insecure-seed:4"))
    });
    assert!(refused, "{out:?}");
}

#[test]
fn job_tags_and_key_sources() {
    assert_ne!(job_tag("a", KeySource::Os), job_tag("a", KeySource::InsecureSeed(0)));
    assert_ne!(job_tag("a", KeySource::Os), job_tag("b", KeySource::Os));
    assert_eq!(key_label(KeySource::InsecureSeed(7)), "insecure-seed:7");
    assert_eq!(key_source(None), Ok(KeySource::Os));
    // The opt-in is read from the environment; this test is the only one in this binary that
    // sets or reads it.
    std::env::remove_var(ALLOW_INSECURE_KEYS);
    let refused = key_source(Some(3)).unwrap_err();
    assert!(refused.to_string().contains("CRYPTGPU_ALLOW_INSECURE_KEYS=1"));
    std::env::set_var(ALLOW_INSECURE_KEYS, "1");
    assert_eq!(key_source(Some(3)), Ok(KeySource::InsecureSeed(3)));
}
