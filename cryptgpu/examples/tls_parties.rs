//! Three parties over mutual TLS from your own program, with the public library API only.
//!
//! Party 0 holds a vector `x`, party 1 a vector `y`; together they compute `relu(x - y) * x`
//! without either seeing the other's input, and open the result to everyone.
//!
//! * `cargo run --example tls_parties`: generates certificates and a configuration in a temporary
//!   folder and runs the three parties on threads of this process, over TLS on 127.0.0.1.
//! * `cargo run --example tls_parties -- --config DIR/cryptgpu.toml --id I`: acts as party `I`
//!   of a real deployment (one process per party, e.g. on three machines; `cryptgpu keys gen`
//!   or [`generate_local`] writes the certificates and the configuration).

use std::error::Error;
use std::path::{Path, PathBuf};

use cryptgpu::net::deploy::generate_local;
use cryptgpu::net::tcp::on_loopback;
use cryptgpu::net::{Deployment, Protection};
use cryptgpu::prelude::*;
use cryptgpu::sharing::PartyOutput;

/// The number of values each input party holds.
const N: usize = 1000;

/// The two private inputs, as the input parties would read them from their own data.
fn inputs(n: usize) -> (Vec<f64>, Vec<f64>) {
    let x = (0..n).map(|i| (i % 17) as f64 / 4.0 - 2.0).collect();
    let y = (0..n).map(|i| (i % 5) as f64 / 2.0 - 1.0).collect();
    (x, y)
}

/// The party program (the same for every party and both drivers): `relu(x - y) * x`, opened.
fn program<B: Backend, T: Transport>(p: &mut Party<B, T>, n: usize) -> Result<Vec<f64>, SharingError> {
    let codec = p.codec();
    let (x, y) = inputs(n);
    let x = p.input(0, (p.id() == 0).then(|| codec.encode_tensor(&[n], &x)).transpose()?.as_ref(), &[n])?;
    let y = p.input(1, (p.id() == 1).then(|| codec.encode_tensor(&[n], &y)).transpose()?.as_ref(), &[n])?;
    let d = p.sub(&x, &y)?;
    let (r, _) = p.relu(&d)?;
    let z = p.mul_fp(&r, &x)?;
    Ok(codec.decode_tensor(&p.reveal(&z)?))
}

/// What the computation gives in the clear.
fn expected(n: usize) -> Vec<f64> {
    let (x, y) = inputs(n);
    x.iter().zip(&y).map(|(x, y)| (x - y).max(0.0) * x).collect()
}

/// Generates a deployment in `dir` and runs the three parties on threads over TLS on 127.0.0.1.
fn run_threads(dir: &Path, config: RunConfig, n: usize) -> Result<Vec<PartyOutput<Vec<f64>>>, Box<dyn Error>> {
    let path = generate_local(dir, ["127.0.0.1"; 3], 7100, true)?;
    let deployment = Deployment::load(&path)?;
    let tls = Protection::Tls { key: None };
    let mut setups = [deployment.setup(0, &tls)?, deployment.setup(1, &tls)?, deployment.setup(2, &tls)?];
    // On one host, listen on free ports instead of the configured ones.
    on_loopback(&mut setups)?;
    let outputs = std::thread::scope(|s| {
        let handles: Vec<_> = setups
            .into_iter()
            .map(|setup| {
                s.spawn(move || -> Result<PartyOutput<Vec<f64>>, SharingError> {
                    run_tcp(CpuBackend, setup, config, &format!("tls_parties n={n}"), |p| program(p, n))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().map_err(|_| "a party panicked")).collect::<Vec<_>>()
    });
    let mut out = Vec::with_capacity(3);
    for o in outputs {
        out.push(o??);
    }
    Ok(out)
}

/// Acts as party `id` of the deployment in `config`, on the best device available.
fn run_one(config: &Path, id: usize) -> Result<(), Box<dyn Error>> {
    let deployment = Deployment::load(config)?;
    let setup = deployment.setup(id, &Protection::Tls { key: None })?;
    let device = DeviceChoice::Auto.open()?;
    eprintln!("party {id}: on {}, connecting...", device.name());
    let out = run_tcp(device, setup, RunConfig::default(), &format!("tls_parties n={N}"), |p| program(p, N))?;
    let err = out.value.iter().zip(expected(N)).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    println!(
        "party {id}: {} values, max |error| {err:.2e}, {} rounds, {} bytes sent",
        out.value.len(),
        out.counters.rounds,
        out.counters.bytes_sent
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => {
            let dir = std::env::temp_dir().join(format!("cryptgpu-tls-parties-{}", std::process::id()));
            let out = run_threads(&dir, RunConfig::default(), N);
            std::fs::remove_dir_all(&dir)?;
            let err = out?[0].value.iter().zip(expected(N)).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            println!("three parties over mutual TLS: relu(x - y) * x on {N} values, max |error| {err:.2e}");
            Ok(())
        }
        [c, config, i, id] if c == "--config" && i == "--id" => {
            let id: usize = id.parse().map_err(|_| format!("--id must be 0, 1 or 2, not {id:?}"))?;
            run_one(&PathBuf::from(config), id)
        }
        _ => Err("usage: tls_parties [--config FILE --id I]".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threaded_tls_parties_compute_and_count_like_run_local() {
        let dir = std::env::temp_dir().join(format!("cryptgpu-tls-parties-test-{}", std::process::id()));
        let config = RunConfig { keys: KeySource::InsecureSeed(5), ..RunConfig::default() };
        let tcp = run_threads(&dir, config, 64);
        let _ = std::fs::remove_dir_all(&dir);
        let tcp = tcp.unwrap();
        let local = run_local(CpuBackend, config, |p| program(p, 64)).unwrap();
        let want = expected(64);
        for (i, (t, l)) in tcp.iter().zip(&local).enumerate() {
            assert_eq!(t.value, l.value, "party {i}");
            assert_eq!(t.counters, l.counters, "party {i}");
            let err = t.value.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
            assert!(err < 1e-3, "party {i}: error {err}");
        }
        assert!(tcp[0].counters.rounds > 3 && tcp[0].counters.bytes_sent > 0);
    }
}
