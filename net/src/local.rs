//! [`LocalTransport`]: three parties in one process, connected by channels.

use crate::{Counters, NetError, Peer, Received, Round, Transport, DEFAULT_TIMEOUT};
use crossbeam_channel::{unbounded, Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

/// One party's end of an in-process three-party network (unbounded channels: sends never block).
pub struct LocalTransport {
    id: usize,
    to_next: Sender<Vec<u64>>,
    to_prev: Sender<Vec<u64>>,
    from_next: Receiver<Vec<u64>>,
    from_prev: Receiver<Vec<u64>>,
    timeout: Duration,
    counters: Counters,
}

impl LocalTransport {
    /// Three connected transports, for parties 0, 1 and 2, with the default timeout.
    pub fn triple() -> [LocalTransport; 3] {
        Self::triple_with_timeout(DEFAULT_TIMEOUT)
    }

    /// Three connected transports whose receives give up after `timeout`.
    pub fn triple_with_timeout(timeout: Duration) -> [LocalTransport; 3] {
        // forward[i]: P_i -> P_{i+1}; backward[i]: P_i -> P_{i-1}.
        let forward: Vec<_> = (0..3).map(|_| unbounded()).collect();
        let backward: Vec<_> = (0..3).map(|_| unbounded()).collect();
        std::array::from_fn(|i| {
            let next = (i + 1) % 3;
            let prev = (i + 2) % 3;
            LocalTransport {
                id: i,
                to_next: forward[i].0.clone(),
                to_prev: backward[i].0.clone(),
                from_next: backward[next].1.clone(),
                from_prev: forward[prev].1.clone(),
                timeout,
                counters: Counters::default(),
            }
        })
    }

    /// The receive timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    fn receive(&self, peer: Peer, words: usize) -> Result<Vec<u64>, NetError> {
        let (rx, id) = match peer {
            Peer::Next => (&self.from_next, peer.id_from(self.id)),
            Peer::Prev => (&self.from_prev, peer.id_from(self.id)),
        };
        let msg = rx.recv_timeout(self.timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => NetError::Timeout { peer: id, after: self.timeout },
            RecvTimeoutError::Disconnected => NetError::PeerGone { peer: id },
        })?;
        if msg.len() != words {
            return Err(NetError::Malformed { peer: id, detail: format!("expected {words} words, got {}", msg.len()) });
        }
        Ok(msg)
    }
}

impl Transport for LocalTransport {
    fn id(&self) -> usize {
        self.id
    }

    fn round(&mut self, round: Round) -> Result<Received, NetError> {
        let gone = |peer: Peer| NetError::PeerGone { peer: peer.id_from(self.id) };
        let next_len = round.to_next.as_ref().map(Vec::len);
        let prev_len = round.to_prev.as_ref().map(Vec::len);
        if let Some(m) = round.to_next {
            self.to_next.send(m).map_err(|_| gone(Peer::Next))?;
        }
        if let Some(m) = round.to_prev {
            self.to_prev.send(m).map_err(|_| gone(Peer::Prev))?;
        }
        let mut got = Received::default();
        if let Some(n) = round.from_next {
            got.from_next = Some(self.receive(Peer::Next, n)?);
        }
        if let Some(n) = round.from_prev {
            got.from_prev = Some(self.receive(Peer::Prev, n)?);
        }
        let received = round.from_next.unwrap_or(0) + round.from_prev.unwrap_or(0);
        self.counters.record_round(next_len, prev_len, received);
        Ok(got)
    }

    fn counters(&self) -> Counters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    #[test]
    fn ring_exchange_and_counters() {
        let parties = LocalTransport::triple();
        let handles: Vec<_> = parties
            .into_iter()
            .map(|mut t| {
                thread::spawn(move || {
                    let me = t.id() as u64;
                    let mut got = t.round(Round::new().send(Peer::Prev, vec![me; 5]).recv(Peer::Next, 5)).unwrap();
                    let from_next = got.take(Peer::Next).unwrap();
                    (t.id(), from_next, t.counters())
                })
            })
            .collect();
        for h in handles {
            let (id, msg, c) = h.join().unwrap();
            assert_eq!(msg, vec![((id + 1) % 3) as u64; 5]);
            assert_eq!(
                c,
                Counters {
                    bytes_sent: 40,
                    bytes_received: 40,
                    bytes_to_next: 0,
                    bytes_to_prev: 40,
                    messages_sent: 1,
                    rounds: 1
                }
            );
        }
    }

    #[test]
    fn vanished_peer_is_an_error_not_a_hang() {
        let [mut a, b, c] = LocalTransport::triple_with_timeout(Duration::from_secs(30));
        drop(b);
        let err = a.round(Round::new().recv(Peer::Next, 1)).unwrap_err();
        assert_eq!(err, NetError::PeerGone { peer: 1 });
        assert!(a.round(Round::new().send(Peer::Next, vec![1])).is_err());
        drop(c);
    }

    #[test]
    fn silent_peer_times_out_and_wrong_length_is_malformed() {
        let [mut a, mut b, _c] = LocalTransport::triple_with_timeout(Duration::from_millis(50));
        let err = a.round(Round::new().recv(Peer::Prev, 1)).unwrap_err();
        assert!(matches!(err, NetError::Timeout { peer: 2, .. }), "{err}");
        b.round(Round::new().send(Peer::Prev, vec![1, 2, 3])).unwrap();
        let err = a.round(Round::new().recv(Peer::Next, 2)).unwrap_err();
        assert!(matches!(err, NetError::Malformed { peer: 1, .. }), "{err}");
    }
}
