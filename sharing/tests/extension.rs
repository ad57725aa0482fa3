//! The API for protocols written outside the crate: rounds, registered streams, zero sharings
//! from them, and `run_local` with the closure's own error type.

use std::time::Duration;

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_net::{NetError, Peer, Round};
use cryptgpu_ring::RingTensor;
use cryptgpu_sharing::{run_local, AShare, KeyRole, KeySource, RunConfig, SharingError};

fn seeded() -> RunConfig {
    RunConfig { keys: KeySource::InsecureSeed(11), timeout: Duration::from_secs(20), ..RunConfig::default() }
}

#[test]
fn registered_streams_agree_whatever_the_order_and_stay_apart() {
    let outs = run_local(CpuBackend, seeded(), |p| {
        // Parties register in different orders; handles are the same.
        let (a, b) = if p.id() == 1 {
            let b = p.register_stream("b")?;
            (p.register_stream("a")?, b)
        } else {
            (p.register_stream("a")?, p.register_stream("b")?)
        };
        let mut draw = |key, s| p.draw(key, s, &[3]).and_then(|t| p.download(&t));
        let own_a = draw(KeyRole::Own, a)?;
        let own_a2 = draw(KeyRole::Own, a)?;
        let next_a = draw(KeyRole::Next, a)?;
        let next_a2 = draw(KeyRole::Next, a)?;
        let own_b = draw(KeyRole::Own, b)?;
        // Drawing does not disturb the library's streams: an input still round-trips.
        let v = RingTensor::new(&[2], vec![9, u64::MAX])?;
        let x = p.input(0, (p.id() == 0).then_some(&v), &[2])?;
        assert_eq!(p.reveal(&x)?, v);
        Ok::<_, SharingError>((a, [own_a, own_a2, own_b], [next_a, next_a2]))
    })
    .unwrap();
    for i in 0..3 {
        let (me, next) = (&outs[i].value, &outs[(i + 1) % 3].value);
        assert_eq!(me.0, next.0, "same handle at every party");
        // Lock step: the k-th draw under K_{i+1} at party i is the k-th under K_{i+1} at party i+1.
        assert_eq!(me.2[0], next.1[0]);
        assert_eq!(me.2[1], next.1[1]);
        assert_ne!(me.1[0], me.1[1], "the counter advances");
        assert_ne!(me.1[0], me.1[2], "streams differ");
    }
}

#[test]
fn drawing_from_a_stream_not_registered_here_is_an_error() {
    // A handle from another run, never registered by the parties that use it.
    let elsewhere = run_local(CpuBackend, seeded(), |p| p.register_stream("elsewhere")).unwrap()[0].value;
    let err = run_local(CpuBackend, seeded(), |p| p.draw(KeyRole::Own, elsewhere, &[1])).unwrap_err();
    assert!(err.to_string().contains("not registered"), "{err}");
}

#[test]
fn zero_sharings_from_a_registered_stream_sum_to_zero() {
    let outs = run_local(CpuBackend, seeded(), |p| {
        let s = p.register_stream("zeros")?;
        let a = p.zero_share_from(s, &[4])?;
        let b = p.zero_share_binary_from(s, &[4])?;
        let builtin = p.zero_share(&[4])?;
        Ok::<_, SharingError>((p.download(&a)?, p.download(&b)?, p.download(&builtin)?))
    })
    .unwrap();
    for j in 0..4 {
        let sum = outs.iter().fold(0u64, |s, o| s.wrapping_add(o.value.0.data()[j]));
        let xor = outs.iter().fold(0u64, |s, o| s ^ o.value.1.data()[j]);
        assert_eq!((sum, xor), (0, 0));
        assert_ne!(outs[0].value.0.data()[j], outs[0].value.2.data()[j], "apart from the built-in stream");
    }
}

#[test]
fn a_round_and_shares_built_from_parts_make_a_protocol() {
    // Resharing by hand: each party sends its first share to the previous party, the pair
    // (x_i, x_{i+1}) is rebuilt with from_parts and opens to the same value.
    let outs = run_local(CpuBackend, seeded(), |p| {
        let v = RingTensor::new(&[2], vec![5, 6])?;
        let x = p.input(2, (p.id() == 2).then_some(&v), &[2])?;
        let before = p.counters();
        let mut got = p.round(Round::new().send(Peer::Prev, p.download(x.first())?.into_data()).recv(Peer::Next, 2))?;
        let cost = p.counters().since(&before);
        let second = p.upload(&RingTensor::new(&[2], got.take(Peer::Next)?)?)?;
        assert_eq!(p.download(&second)?, p.download(x.second())?);
        let y = AShare::from_parts(x.first().clone(), second)?;
        Ok::<_, SharingError>((p.reveal(&y)?, cost.rounds, cost.bytes_sent))
    })
    .unwrap();
    for o in outs {
        assert_eq!(o.value, (RingTensor::new(&[2], vec![5, 6]).unwrap(), 1, 16));
    }
}

/// An application's own error type.
#[derive(Debug)]
enum AppError {
    Mine(usize),
    Sharing(SharingError),
}

impl From<SharingError> for AppError {
    fn from(e: SharingError) -> Self {
        AppError::Sharing(e)
    }
}

#[test]
fn closures_return_their_own_error_type_and_the_first_failure_wins() {
    for culprit in 0..3 {
        let err = run_local(CpuBackend, seeded(), |p| {
            if p.id() == culprit {
                return Err(AppError::Mine(culprit));
            }
            // The others wait in a reveal and see the culprit vanish.
            let x = p.random_share(&[2])?;
            p.reveal(&x)?;
            Ok(())
        })
        .unwrap_err();
        assert!(matches!(err, AppError::Mine(c) if c == culprit), "{err:?}");
    }
    let ok = run_local(CpuBackend, seeded(), |p| Ok::<_, AppError>(p.id())).unwrap();
    assert_eq!(ok.map(|o| o.value), [0, 1, 2]);
}

#[test]
fn a_panic_is_the_root_cause_not_the_peers_it_leaves() {
    let err = run_local(CpuBackend, seeded(), |p| {
        if p.id() == 2 {
            panic!("party two gives up");
        }
        let x = p.random_share(&[2])?;
        p.reveal(&x)?;
        Ok::<_, AppError>(())
    })
    .unwrap_err();
    match err {
        AppError::Sharing(SharingError::Panic { party, message }) => {
            assert_eq!((party, message.as_str()), (2, "party two gives up"))
        }
        other => panic!("unexpected {other:?}"),
    }
    // A later failure caused by the first is never returned.
    let err = run_local(CpuBackend, seeded(), |p| {
        if p.id() == 0 {
            return Err(SharingError::Invalid("first".into()));
        }
        let x = p.random_share(&[2])?;
        p.reveal(&x)
    })
    .unwrap_err();
    assert!(!matches!(err, SharingError::Net(NetError::PeerGone { .. })), "{err}");
    assert_eq!(err, SharingError::Invalid("first".into()));
}
