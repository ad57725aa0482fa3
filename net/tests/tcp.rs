//! `TcpTransport` on 127.0.0.1: three parties on threads, with and without TLS.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

use cryptgpu_net::frame::{Frame, FrameHeader, FrameKind, HEADER_LEN};
use cryptgpu_net::tcp::{bind, on_loopback, HELLO_TIMEOUT, KEEPALIVE_FACTOR};
use cryptgpu_net::{
    Counters, LocalTransport, NetError, Peer, Round, Security, TcpOptions, TcpSetup, TcpTransport, TlsIdentity,
    Transport,
};

/// Certificates and keys (PEM) of three parties.
fn make_pki() -> Vec<(String, String)> {
    (0..3)
        .map(|i| {
            let ck = rcgen::generate_simple_self_signed(vec![format!("party{i}.cryptgpu")]).unwrap();
            (ck.cert.pem(), ck.key_pair.serialize_pem())
        })
        .collect()
}

fn identity(me: usize, pki: &[(String, String)]) -> Security {
    let certs = [pki[0].0.as_bytes(), pki[1].0.as_bytes(), pki[2].0.as_bytes()];
    Security::Tls(Box::new(TlsIdentity::from_pem(me, certs, pki[me].1.as_bytes()).unwrap()))
}

/// Listeners on ephemeral ports for parties 0 and 1 (party 2 only connects).
fn listeners(options: &TcpOptions) -> (Vec<Option<TcpListener>>, [SocketAddr; 3]) {
    let mut setups = [0, 1, 2].map(|id| TcpSetup {
        id,
        addrs: ["127.0.0.1:9".parse().unwrap(); 3],
        listener: None,
        security: Security::InsecurePlaintext,
        options: options.clone(),
    });
    on_loopback(&mut setups).unwrap();
    (setups.iter_mut().map(|s| s.listener.take()).collect(), setups[0].addrs)
}

/// Runs `f` as three parties over TCP (TLS when `tls`), one thread each.
fn run3<R: Send + 'static>(
    tls: bool,
    options: TcpOptions,
    f: impl Fn(TcpTransport) -> R + Send + Sync + Clone + 'static,
) -> Vec<R> {
    let pki = make_pki();
    let (mut ls, addrs) = listeners(&options);
    let handles: Vec<_> = (0..3)
        .map(|id| {
            let setup = TcpSetup {
                id,
                addrs,
                listener: ls[id].take(),
                security: if tls { identity(id, &pki) } else { Security::InsecurePlaintext },
                options: options.clone(),
            };
            let f = f.clone();
            thread::spawn(move || f(TcpTransport::connect(setup).unwrap()))
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// A little protocol: a ring exchange, a both-ways exchange of `big` words, an empty round, and a
/// one-sided send. Returns the messages received and the counters.
fn script<T: Transport>(mut t: T, big: usize) -> (Vec<Vec<u64>>, Counters) {
    let me = t.id() as u64;
    let mut seen = Vec::new();
    let mut got = t.round(Round::new().send(Peer::Prev, vec![me; 5]).recv(Peer::Next, 5)).unwrap();
    seen.push(got.take(Peer::Next).unwrap());
    let msg = |to: u64| (0..big as u64).map(|i| i.wrapping_mul(0x9e3779b97f4a7c15) ^ (me << 60) ^ to).collect();
    let mut got = t
        .round(
            Round::new().send(Peer::Next, msg(1)).send(Peer::Prev, msg(2)).recv(Peer::Next, big).recv(Peer::Prev, big),
        )
        .unwrap();
    seen.push(got.take(Peer::Next).unwrap());
    seen.push(got.take(Peer::Prev).unwrap());
    t.round(Round::new()).unwrap();
    let r = if me == 0 { Round::new().send(Peer::Next, vec![7, 8]) } else { Round::new() };
    let r = if me == 1 { r.recv(Peer::Prev, 2) } else { r };
    let mut got = t.round(r).unwrap();
    if me == 1 {
        seen.push(got.take(Peer::Prev).unwrap());
    }
    (seen, t.counters())
}

fn local_script(big: usize) -> Vec<(Vec<Vec<u64>>, Counters)> {
    let hs: Vec<_> = LocalTransport::triple().into_iter().map(|t| thread::spawn(move || script(t, big))).collect();
    hs.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn tls_and_plain_match_local_transport_messages_and_counters() {
    let big = 1 << 20; // 8 MiB each way on each link in one round
    let local = local_script(big);
    for tls in [true, false] {
        let tcp = run3(tls, TcpOptions::default(), move |t| script(t, big));
        assert_eq!(tcp, local, "tls = {tls}");
    }
    assert_eq!(local[0].1.rounds, 4);
    assert_eq!(local[0].1.bytes_sent, 40 + 2 * 8 * big as u64 + 16);
}

/// Party 0 sends 20 rounds in a row to party 1 before party 1 reads any of them.
fn run_ahead(tls: bool, options: TcpOptions, words: usize) {
    let out = run3(tls, options, move |mut t| {
        let me = t.id();
        let mut got = Vec::new();
        for r in 0..20u64 {
            let round = match me {
                0 => Round::new().send(Peer::Next, vec![r; words + r as usize]),
                1 => {
                    if r == 0 {
                        thread::sleep(Duration::from_millis(200));
                    }
                    Round::new().recv(Peer::Prev, words + r as usize)
                }
                _ => Round::new(),
            };
            let mut rec = t.round(round).unwrap();
            if me == 1 {
                got.push(rec.take(Peer::Prev).unwrap());
            }
        }
        got
    });
    for (r, m) in out[1].iter().enumerate() {
        assert_eq!(m, &vec![r as u64; words + r]);
    }
}

#[test]
fn peer_running_ahead_is_buffered_in_order() {
    run_ahead(true, TcpOptions::default(), 1000);
}

#[test]
fn read_ahead_limit_holds_a_fast_peer_back_without_losing_order() {
    // 16 MB ahead against a 64 KiB limit: party 0 waits in TCP flow control, then all arrives.
    let options = TcpOptions { max_read_ahead: 64 << 10, ..TcpOptions::default() };
    run_ahead(false, options.clone(), 100_000);
    run_ahead(true, options, 100_000);
}

#[test]
fn wrong_certificate_is_refused() {
    let pki = make_pki();
    let options = TcpOptions { connect_timeout: Duration::from_secs(3), ..TcpOptions::default() };
    let (mut ls, addrs) = listeners(&options);
    // Party 2 has a key and certificate of its own making, not the configured one.
    let rogue = &make_pki()[2];
    let mut rogue_view = pki.clone();
    rogue_view[2] = rogue.clone();
    let start = Instant::now();
    let hs: Vec<_> = (0..3)
        .map(|id| {
            let security = identity(id, if id == 2 { &rogue_view } else { &pki });
            let setup = TcpSetup { id, addrs, listener: ls[id].take(), security, options: options.clone() };
            thread::spawn(move || TcpTransport::connect(setup).map(|_| ()))
        })
        .collect();
    let errs: Vec<NetError> = hs.into_iter().map(|h| h.join().unwrap().unwrap_err()).collect();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(matches!(&errs[2], NetError::Tls { peer: 0, .. }), "{}", errs[2]);
    assert!(errs[2].to_string().contains("refused this party's certificate"), "{}", errs[2]);
    // Party 0 refused it and says why; party 1 never saw party 2.
    assert!(matches!(&errs[0], NetError::Connect { peer: 2, .. }), "{}", errs[0]);
    assert!(errs[0].to_string().contains("not the one configured for party"), "{}", errs[0]);
    assert!(matches!(&errs[1], NetError::Connect { peer: 2, .. }), "{}", errs[1]);
}

#[test]
fn different_jobs_refuse_each_other() {
    let options = TcpOptions { connect_timeout: Duration::from_secs(2), ..TcpOptions::default() };
    let (mut ls, addrs) = listeners(&options);
    let hs: Vec<_> = (0..3)
        .map(|id| {
            let mut options = options.clone();
            options.job_tag = if id == 2 { 99 } else { 1 };
            let setup = TcpSetup { id, addrs, listener: ls[id].take(), security: Security::InsecurePlaintext, options };
            thread::spawn(move || TcpTransport::connect(setup).map(|_| ()))
        })
        .collect();
    let errs: Vec<String> = hs.into_iter().map(|h| h.join().unwrap().unwrap_err().to_string()).collect();
    assert!(errs[2].contains("party 0 runs a different job"), "{}", errs[2]);
    assert!(errs[0].contains("different job"), "{}", errs[0]);
}

#[test]
fn crash_silence_and_blame_are_reported_with_the_right_party() {
    let options = TcpOptions { timeout: Duration::from_millis(500), ..TcpOptions::default() };
    let out = run3(true, options, |mut t| {
        let me = t.id();
        t.round(Round::new().send(Peer::Next, vec![1]).recv(Peer::Prev, 1)).unwrap();
        let start = Instant::now();
        match me {
            // Party 2 crashes: no close frame.
            2 => {
                t.crash();
                (None, start.elapsed())
            }
            // Party 1 waits on party 0, which waits on party 2 (a round not involving party 2 for
            // party 1): both must blame party 2 at once, not after the timeout.
            1 => (t.round(Round::new().recv(Peer::Prev, 1)).err(), start.elapsed()),
            _ => (t.round(Round::new().recv(Peer::Prev, 1)).err(), start.elapsed()),
        }
    });
    for (id, (err, took)) in out.iter().enumerate().take(2) {
        let err = err.as_ref().unwrap();
        assert!(
            matches!(err, NetError::PeerGone { peer: 2 } | NetError::PeerStopped { culprit: 2, .. }),
            "party {id}: {err}"
        );
        assert!(*took < Duration::from_millis(450), "party {id} took {took:?}");
    }

    // A silent (live) peer: timeout naming it; the other party learns whom to blame.
    let out = run3(false, TcpOptions { timeout: Duration::from_millis(300), ..TcpOptions::default() }, |mut t| {
        match t.id() {
            2 => {
                thread::sleep(Duration::from_millis(1500));
                None
            }
            1 => t.round(Round::new().recv(Peer::Next, 1)).err(),
            _ => {
                // Party 0 waits on party 1, which times out on party 2 and closes (or party 0
                // times out first: the same timeout runs on both).
                t.round(Round::new().recv(Peer::Next, 1)).err()
            }
        }
    });
    assert!(matches!(out[1], Some(NetError::Timeout { peer: 2, .. })), "{:?}", out[1]);
    // Party 1 announced that it waits on party 2, so party 0 blames party 2, not party 1.
    assert!(matches!(out[0], Some(NetError::PeerStopped { peer: 1, culprit: 2 })), "{:?}", out[0]);
}

#[test]
fn finished_peer_is_not_an_error_unless_more_is_needed() {
    let out = run3(true, TcpOptions::default(), |mut t| {
        let me = t.id();
        // Party 0 sends its last message to party 1 and leaves at once.
        let r = match me {
            0 => Round::new().send(Peer::Next, vec![42; 100_000]),
            1 => Round::new().recv(Peer::Prev, 100_000),
            _ => Round::new(),
        };
        let first = t.round(r).map(|mut g| if me == 1 { g.take(Peer::Prev).ok() } else { None });
        if me == 0 {
            drop(t);
            return (first, None);
        }
        thread::sleep(Duration::from_millis(200));
        // Parties 1 and 2 still talk to each other, then party 2 asks party 0 for more.
        let r = if me == 1 { Round::new().send(Peer::Next, vec![1]) } else { Round::new().recv(Peer::Prev, 1) };
        let second = t.round(r).map(|_| ());
        let third = if me == 2 { Some(t.round(Round::new().recv(Peer::Next, 1)).map(|_| ())) } else { None };
        (first.and_then(|f| second.map(|_| f)), third)
    });
    assert_eq!(out[1].0.as_ref().unwrap().as_ref().unwrap(), &vec![42; 100_000]);
    assert!(out[2].0.is_ok());
    assert_eq!(out[2].1, Some(Err(NetError::PeerGone { peer: 0 })));
}

#[test]
fn wrong_length_is_malformed() {
    let out = run3(false, TcpOptions::default(), |mut t| match t.id() {
        0 => t.round(Round::new().send(Peer::Next, vec![1, 2, 3])).err(),
        1 => t.round(Round::new().recv(Peer::Prev, 2)).err(),
        _ => None,
    });
    assert!(matches!(&out[1], Some(NetError::Malformed { peer: 0, detail }) if detail.contains("expected 2 words")));
}

#[test]
fn connecting_retries_until_the_listener_is_up() {
    // Free ports, released: party 0 binds its own only after a delay, so the others must retry.
    let ports: Vec<u16> =
        (0..3).map(|_| TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()).collect();
    let addrs: [SocketAddr; 3] = std::array::from_fn(|i| SocketAddr::from(([127, 0, 0, 1], ports[i])));
    let pki = make_pki();
    let hs: Vec<_> = (0..3)
        .map(|id| {
            let security = identity(id, &pki);
            thread::spawn(move || {
                if id == 0 {
                    thread::sleep(Duration::from_millis(400));
                }
                let setup = TcpSetup { id, addrs, listener: None, security, options: TcpOptions::default() };
                let mut t = TcpTransport::connect(setup).unwrap();
                let mut got = t.round(Round::new().send(Peer::Next, vec![t.id() as u64]).recv(Peer::Prev, 1)).unwrap();
                got.take(Peer::Prev).unwrap()[0]
            })
        })
        .collect();
    let got: Vec<u64> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(got, vec![2, 0, 1]);
}

#[test]
fn strangers_are_refused_and_setup_goes_on() {
    let options = TcpOptions { connect_timeout: Duration::from_secs(10), ..TcpOptions::default() };
    let (mut ls, addrs) = listeners(&options);
    // Garbage, a silent connection and an early close hit party 0's listener before the parties.
    let mut garbage = std::net::TcpStream::connect(addrs[0]).unwrap();
    std::io::Write::write_all(&mut garbage, &[0xAB; 100]).unwrap();
    let silent = std::net::TcpStream::connect(addrs[0]).unwrap();
    drop(std::net::TcpStream::connect(addrs[0]).unwrap());
    let hs: Vec<_> = (0..3)
        .map(|id| {
            let setup = TcpSetup {
                id,
                addrs,
                listener: ls[id].take(),
                security: Security::InsecurePlaintext,
                options: options.clone(),
            };
            thread::spawn(move || {
                let mut t = TcpTransport::connect(setup)?;
                let mut got = t.round(Round::new().send(Peer::Next, vec![t.id() as u64]).recv(Peer::Prev, 1))?;
                got.take(Peer::Prev)
            })
        })
        .collect();
    // The silent stranger stays connected: its greeting runs on the side and holds nobody up.
    let got: Vec<Vec<u64>> = hs.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
    assert_eq!(got, vec![vec![2], vec![0], vec![1]]);
    drop(silent);
}

/// A party's view of `pki`: party `i`'s certificate is the one made for party `certs[i]`, and the
/// key is the one made for party `key_of`.
fn view_with(pki: &[(String, String)], certs: [usize; 3], key_of: usize) -> Vec<(String, String)> {
    (0..3).map(|i| (pki[certs[i]].0.clone(), pki[key_of].1.clone())).collect()
}

/// Runs `TcpTransport::connect` for each `(id, listener, addrs, security)` on its own thread;
/// returns each result (`Ok(())` or the error) and how long it took.
fn connect_all(
    parties: Vec<(usize, Option<TcpListener>, [SocketAddr; 3], Security)>,
    options: &TcpOptions,
) -> Vec<(Result<(), NetError>, Duration)> {
    let start = Instant::now();
    let hs: Vec<_> = parties
        .into_iter()
        .map(|(id, listener, addrs, security)| {
            let setup = TcpSetup { id, addrs, listener, security, options: options.clone() };
            thread::spawn(move || {
                let r = TcpTransport::connect(setup).map(|_| ());
                (r, start.elapsed())
            })
        })
        .collect();
    hs.into_iter().map(|h| h.join().unwrap()).collect()
}

#[test]
fn dialer_refuses_a_listener_with_another_certificate() {
    let pki = make_pki();
    let options = TcpOptions { connect_timeout: Duration::from_secs(3), ..TcpOptions::default() };
    let (mut ls, addrs) = listeners(&options);
    // Party 0 listens with a key and certificate of its own making, not the configured one.
    let mut rogue_view = pki.clone();
    rogue_view[0] = make_pki().remove(0);
    let out = connect_all(
        (0..3).map(|id| (id, ls[id].take(), addrs, identity(id, if id == 0 { &rogue_view } else { &pki }))).collect(),
        &options,
    );
    for (id, (r, took)) in out.iter().enumerate().skip(1) {
        let err = r.as_ref().unwrap_err();
        assert!(matches!(err, NetError::Tls { peer: 0, .. }), "party {id}: {err}");
        assert!(err.to_string().contains("not the one configured for party 0"), "party {id}: {err}");
        // Refused at the handshake, not at the connect deadline.
        assert!(*took < Duration::from_secs(2), "party {id} took {took:?}");
    }
    let err = out[0].0.as_ref().unwrap_err();
    assert!(matches!(err, NetError::Connect { peer: 1, .. }), "{err}");
    assert!(err.to_string().contains("refused this party's certificate"), "{err}");
}

#[test]
fn genuine_certificate_under_another_party_id_is_refused_by_the_listener() {
    let pki = make_pki();
    let options = TcpOptions { connect_timeout: Duration::from_secs(3), ..TcpOptions::default() };
    let (mut ls, addrs) = listeners(&options);
    // "Party 1" holds party 2's real certificate and key (it lists them as party 1's).
    let impostor = view_with(&pki, [0, 2, 1], 2);
    let out = connect_all(
        (0..3).map(|id| (id, ls[id].take(), addrs, identity(id, if id == 1 { &impostor } else { &pki }))).collect(),
        &options,
    );
    let err = out[0].0.as_ref().unwrap_err();
    assert!(matches!(err, NetError::Connect { peer: 1, .. }), "{err}");
    assert!(err.to_string().contains("claims to be party 1 but presented the certificate of party 2"), "{err}");
    // The impostor was turned away at once; party 2 never reached a party 1.
    assert!(out[1].0.is_err());
    assert!(out[1].1 < Duration::from_secs(2), "the impostor took {:?}", out[1].1);
    assert!(matches!(out[2].0, Err(NetError::Connect { peer: 1, .. } | NetError::Tls { peer: 1, .. })), "{:?}", out[2]);
}

#[test]
fn genuine_certificate_under_another_party_id_is_refused_by_the_dialer() {
    let pki = make_pki();
    let options = TcpOptions { connect_timeout: Duration::from_secs(3), ..TcpOptions::default() };
    let (mut ls, addrs) = listeners(&options);
    // An impostor listens as party 1 with party 2's real certificate and key. To get that far it
    // needs an accomplice party 0 that takes party 2's certificate for party 1's.
    let impostor = view_with(&pki, [0, 2, 1], 2);
    let accomplice = view_with(&pki, [0, 2, 1], 0);
    let accomplice_listener = bind("127.0.0.1:0".parse().unwrap(), &options).unwrap();
    let mut crooked = addrs;
    crooked[0] = accomplice_listener.local_addr().unwrap();
    let out = connect_all(
        vec![
            (0, ls[0].take(), addrs, identity(0, &pki)),
            (0, Some(accomplice_listener), crooked, identity(0, &accomplice)),
            (1, ls[1].take(), crooked, identity(1, &impostor)),
            (2, None, addrs, identity(2, &pki)),
        ],
        &options,
    );
    // Genuine party 2 gets past party 0, then refuses the impostor's certificate for party 1.
    let (r, took) = &out[3];
    let err = r.as_ref().unwrap_err();
    assert!(matches!(err, NetError::Tls { peer: 1, .. }), "{err}");
    assert!(err.to_string().contains("not the one configured for party 1"), "{err}");
    assert!(*took < Duration::from_secs(2), "party 2 took {took:?}");
    // The impostor hears of the refusal; party 0 waited for party 1 in vain.
    let err = out[2].0.as_ref().unwrap_err();
    assert!(matches!(err, NetError::Connect { peer: 2, .. }), "{err}");
    assert!(err.to_string().contains("refused this party's certificate"), "{err}");
    assert!(matches!(out[0].0, Err(NetError::Connect { peer: 1, .. })), "{:?}", out[0]);
}

/// A hand-made party `id` on a plain connection to `addr`: sends its hello, reads the answer.
/// Returns the socket and the session.
fn raw_party(addr: SocketAddr, id: u64) -> (std::net::TcpStream, u64) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let session = 0xfeed_0000 + id;
    let hello =
        Frame { header: FrameHeader { kind: FrameKind::Hello, session, seq: 0, words: 2 }, payload: vec![id, 0] };
    s.write_all(&hello.encode()).unwrap();
    let mut answer = [0u8; HEADER_LEN + 16];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(FrameHeader::decode(&answer).unwrap().session, session);
    (s, session)
}

#[test]
fn waiting_frames_cannot_keep_a_link_alive_past_the_bound() {
    let timeout = Duration::from_millis(500);
    let options = TcpOptions { timeout, connect_timeout: Duration::from_secs(5), ..TcpOptions::default() };
    let listener = bind("127.0.0.1:0".parse().unwrap(), &options).unwrap();
    let addr = listener.local_addr().unwrap();
    let addrs = [addr, addr, addr];
    let (done_tx, done) = std::sync::mpsc::channel();
    let party0 = thread::spawn(move || {
        let setup = TcpSetup { id: 0, addrs, listener: Some(listener), security: Security::InsecurePlaintext, options };
        let mut t = TcpTransport::connect(setup).unwrap();
        let start = Instant::now();
        let err = t.round(Round::new().recv(Peer::Next, 1)).unwrap_err();
        done_tx.send((err, start.elapsed())).unwrap();
    });
    let (mut one, session) = raw_party(addr, 1);
    // Party 2 is connected and quiet (what party 0 sends it waits in the socket buffers).
    let (two, _) = raw_party(addr, 2);
    // Party 1 says, every twentieth of the timeout, that it waits on party 2, and never sends data.
    let mut seq = 1;
    let (err, took) = loop {
        if let Ok(r) = done.try_recv() {
            break r;
        }
        let waiting =
            Frame { header: FrameHeader { kind: FrameKind::Waiting, session, seq, words: 1 }, payload: vec![2] };
        one.write_all(&waiting.encode()).unwrap();
        seq += 1;
        thread::sleep(timeout / 20);
    };
    // The waiting frames kept the link past one timeout (without them: a timeout after 0.5 s,
    // blaming party 2), but not past the bound.
    let cap = timeout * KEEPALIVE_FACTOR;
    assert_eq!(err, NetError::Timeout { peer: 1, after: cap });
    assert!(took >= cap, "gave up after {took:?}");
    assert!(took < cap + Duration::from_secs(1), "gave up after {took:?}");
    // Party 0 closes at once when its peers hang up.
    drop((one, two));
    party0.join().unwrap();
}

#[test]
fn strangers_cannot_delay_setup_or_take_a_partys_place() {
    let pki = make_pki();
    let options = TcpOptions { connect_timeout: Duration::from_secs(20), ..TcpOptions::default() };
    let (mut ls, addrs) = listeners(&options);
    let start = |id: usize, listener: Option<TcpListener>, security: Security| {
        let setup = TcpSetup { id, addrs, listener, security, options: options.clone() };
        thread::spawn(move || -> Result<(Vec<u64>, Instant), NetError> {
            let mut t = TcpTransport::connect(setup)?;
            let up = Instant::now();
            let mut got = t.round(Round::new().send(Peer::Next, vec![t.id() as u64]).recv(Peer::Prev, 1))?;
            Ok((got.take(Peer::Prev)?, up))
        })
    };
    let p0 = start(0, ls[0].take(), identity(0, &pki));
    // Silent connections to both listeners, garbage, and a TLS record header that never goes on.
    let mut strangers: Vec<std::net::TcpStream> = Vec::new();
    for to in [0, 0, 0, 0, 0, 0, 1, 1, 1] {
        strangers.push(std::net::TcpStream::connect(addrs[to]).unwrap());
    }
    let mut garbage = std::net::TcpStream::connect(addrs[0]).unwrap();
    garbage.write_all(&[0xAB; 300]).unwrap();
    let mut stalled_tls = std::net::TcpStream::connect(addrs[0]).unwrap();
    stalled_tls.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00]).unwrap();
    strangers.extend([garbage, stalled_tls]);
    // Impostors reach party 0 first: a party 2 with a certificate of its own making, and party 1's
    // genuine certificate and key claiming to be party 2. Both are turned away.
    let mut rogue = pki.clone();
    rogue[2] = make_pki().remove(2);
    let impostors = [identity(2, &rogue), identity(2, &view_with(&pki, [0, 2, 1], 1))];
    for security in impostors {
        let err = start(2, None, security).join().unwrap().unwrap_err();
        assert!(matches!(err, NetError::Tls { peer: 0, .. } | NetError::Connect { peer: 0, .. }), "{err}");
    }
    // Then the genuine parties 1 and 2.
    let began = Instant::now();
    let p1 = start(1, ls[1].take(), identity(1, &pki));
    let p2 = start(2, None, identity(2, &pki));
    let mut got = Vec::new();
    for h in [p0, p1, p2] {
        let (m, up) = h.join().unwrap().unwrap();
        // Greeted one after another, the first silent stranger alone would hold party 0 for
        // HELLO_TIMEOUT (and the eight at party 0 for 8 × HELLO_TIMEOUT).
        assert!(up.duration_since(began) < HELLO_TIMEOUT, "setup took {:?}", up.duration_since(began));
        got.push(m);
    }
    assert_eq!(got, vec![vec![2], vec![0], vec![1]]);
    drop(strangers);
}

/// Multi-gigabyte messages in both directions on both links at once (run with `--ignored`, in
/// release mode: 512 MiB per message, about 6 GiB of buffers in total).
#[test]
#[ignore]
fn gigabyte_messages_both_ways_do_not_deadlock() {
    let words = 1 << 26;
    let out = run3(true, TcpOptions::default(), move |mut t| {
        let me = t.id() as u64;
        let msg = |to: u64| -> Vec<u64> { (0..words as u64).map(|i| i ^ (me << 56) ^ (to << 48)).collect() };
        let start = Instant::now();
        let r = Round::new()
            .send(Peer::Next, msg(1))
            .send(Peer::Prev, msg(2))
            .recv(Peer::Next, words)
            .recv(Peer::Prev, words);
        let mut got = t.round(r).unwrap();
        let secs = start.elapsed().as_secs_f64();
        let (n, p) = (got.take(Peer::Next).unwrap(), got.take(Peer::Prev).unwrap());
        let next = (me + 1) % 3;
        let prev = (me + 2) % 3;
        assert!(n.iter().enumerate().all(|(i, &w)| w == i as u64 ^ (next << 56) ^ (2 << 48)));
        assert!(p.iter().enumerate().all(|(i, &w)| w == i as u64 ^ (prev << 56) ^ (1 << 48)));
        secs
    });
    eprintln!("512 MiB each way on every link: {out:?} s");
}
