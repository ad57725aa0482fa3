//! Transport throughput on loopback: one message of 1 MB .. 1 GB from party 0 to party 1 over
//! `TcpTransport` with mutual TLS, over `TcpTransport` in plain TCP, and as a plain `std::net`
//! socket copy of the same bytes (the ceiling). Reports the median MB/s (10^6 bytes per second)
//! measured at the receiver, from a common start (barrier) to the whole message being in.
//!
//! `cargo bench -p cryptgpu-benches --bench transport [-- --max-mb 1000] [--json]`
//!
//! Measured on the 2-core development machine while other builds ran (load average 2.5; runs
//! under heavier load vary by up to 2x), MB/s:
//!
//! | size | TLS | plain TCP | std::net |
//! |---|---|---|---|
//! | 1 MB | 1038 | 3675 | 8346 |
//! | 16 MB | 747 | 1922 | 2146 |
//! | 128 MB | 483 | 981 | 1025 |
//! | 1000 MB | 526 | 1119 | 879 |
//!
//! Plain `TcpTransport` runs at the speed of the raw socket copy (it writes from and reads into the
//! message vectors directly); TLS costs AES-GCM on both ends plus one copy out of rustls's buffer.
//! 1 MB fits in the socket buffers, so that row mostly measures memory copies.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Instant;

use cryptgpu_net::tcp::bind;
use cryptgpu_net::{Peer, Round, Security, TcpOptions, TcpSetup, TcpTransport, TlsIdentity, Transport};

const MB: usize = 1_000_000;

fn reps_for(bytes: usize) -> usize {
    (2_000 * MB / bytes).clamp(3, 20)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median seconds for one `words`-word message from party 0 to party 1 over `TcpTransport`.
fn transport(tls: bool, words: usize, reps: usize) -> f64 {
    let certs: Vec<(String, String)> = (0..3)
        .map(|i| {
            let ck = rcgen::generate_simple_self_signed(vec![format!("party{i}.cryptgpu")]).expect("certificate");
            (ck.cert.pem(), ck.key_pair.serialize_pem())
        })
        .collect();
    let options = TcpOptions::default();
    let l0 = bind("127.0.0.1:0".parse().expect("addr"), &options).expect("bind");
    let l1 = bind("127.0.0.1:0".parse().expect("addr"), &options).expect("bind");
    let addrs: [SocketAddr; 3] =
        [l0.local_addr().expect("addr"), l1.local_addr().expect("addr"), "127.0.0.1:9".parse().expect("addr")];
    let mut listeners = [Some(l0), Some(l1), None];
    let barrier = Arc::new(Barrier::new(3));
    let handles: Vec<_> = (0..3)
        .map(|id| {
            let security = if tls {
                let pems = [certs[0].0.as_bytes(), certs[1].0.as_bytes(), certs[2].0.as_bytes()];
                Security::Tls(Box::new(TlsIdentity::from_pem(id, pems, certs[id].1.as_bytes()).expect("identity")))
            } else {
                Security::InsecurePlaintext
            };
            let setup = TcpSetup { id, addrs, listener: listeners[id].take(), security, options: options.clone() };
            let barrier = barrier.clone();
            thread::spawn(move || {
                let mut t = TcpTransport::connect(setup).expect("connect");
                let msg: Vec<u64> = (0..words as u64).collect();
                let mut times = Vec::new();
                for _ in 0..reps + 1 {
                    let round = match id {
                        0 => Round::new().send(Peer::Next, msg.clone()),
                        1 => Round::new().recv(Peer::Prev, words),
                        _ => Round::new(),
                    };
                    barrier.wait();
                    let start = Instant::now();
                    let got = t.round(round).expect("round");
                    times.push(start.elapsed().as_secs_f64());
                    if id == 1 {
                        assert_eq!(got.from_prev.as_ref().map(Vec::len), Some(words));
                    }
                }
                times.remove(0); // warm-up
                times
            })
        })
        .collect();
    let times: Vec<Vec<f64>> = handles.into_iter().map(|h| h.join().expect("party")).collect();
    median(times[1].clone())
}

/// Median seconds for the same bytes over a plain `std::net` socket (write_all / read_exact).
fn std_copy(words: usize, reps: usize) -> f64 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let barrier = Arc::new(Barrier::new(2));
    let b2 = barrier.clone();
    let sender = thread::spawn(move || {
        let mut s = TcpStream::connect(addr).expect("connect");
        s.set_nodelay(true).expect("nodelay");
        let msg: Vec<u8> = (0..words * 8).map(|i| i as u8).collect();
        for _ in 0..reps + 1 {
            let copy = msg.clone();
            b2.wait();
            s.write_all(&copy).expect("write");
        }
    });
    let (mut r, _) = listener.accept().expect("accept");
    let mut times = Vec::new();
    for _ in 0..reps + 1 {
        let mut buf = vec![0u8; words * 8];
        barrier.wait();
        let start = Instant::now();
        r.read_exact(&mut buf).expect("read");
        times.push(start.elapsed().as_secs_f64());
    }
    sender.join().expect("sender");
    times.remove(0);
    median(times)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let max_mb = args
        .iter()
        .position(|a| a == "--max-mb")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1000);
    let json = args.iter().any(|a| a == "--json");
    let sizes: Vec<usize> = [1, 16, 128, 1000].into_iter().filter(|&s| s <= max_mb).collect();
    println!("loopback throughput, one message party 0 -> party 1 (median MB/s, 1 MB = 10^6 B)");
    println!("{:>10} {:>12} {:>12} {:>12}", "size", "TLS", "plain TCP", "std::net");
    let mut rows = Vec::new();
    for mb in sizes {
        let words = mb * MB / 8;
        let reps = reps_for(mb * MB);
        let rate = |secs: f64| (mb * MB) as f64 / secs / MB as f64;
        let tls = rate(transport(true, words, reps));
        let plain = rate(transport(false, words, reps));
        let std = rate(std_copy(words, reps));
        println!("{:>7} MB {:>12.0} {:>12.0} {:>12.0}", mb, tls, plain, std);
        rows.push(
            serde_json::json!({ "mb": mb, "reps": reps, "tls_mbps": tls, "plain_mbps": plain, "std_net_mbps": std }),
        );
    }
    if json {
        println!("{}", serde_json::json!({ "bench": "transport", "results": rows }));
    }
}
