//! [`Recording`]: a transport wrapper that logs every message a party sends and receives, so that
//! tests and audits (`cryptgpu_sharing::audit`) can inspect what actually travels.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::{Counters, NetError, Peer, Received, Round, Transport};

/// Whether a recorded message left or reached the party.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Sent by the recording party.
    Sent,
    /// Received by the recording party.
    Received,
}

/// One message as it went through [`Recording`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedMessage {
    /// Index of the round, counted from 0 at the recording's creation or at the last
    /// [`RecordLog::clear`] / [`RecordLog::take`].
    pub round: u64,
    /// The neighbour it went to or came from.
    pub peer: Peer,
    /// Sent or received.
    pub direction: Direction,
    /// The message.
    pub words: Vec<u64>,
}

#[derive(Debug, Default)]
struct LogState {
    next_round: u64,
    messages: Vec<RecordedMessage>,
}

/// A shared handle on a [`Recording`]'s log: it stays readable after the transport has been moved
/// into a party (or a thread), and every clone sees the same log.
#[derive(Debug, Clone, Default)]
pub struct RecordLog(Arc<Mutex<LogState>>);

impl RecordLog {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A panic while holding the lock cannot leave the log inconsistent: keep using it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the messages recorded so far, in order.
    pub fn messages(&self) -> Vec<RecordedMessage> {
        self.lock().messages.clone()
    }

    /// Removes and returns the messages recorded so far, and restarts the round numbering at 0.
    pub fn take(&self) -> Vec<RecordedMessage> {
        let mut s = self.lock();
        s.next_round = 0;
        std::mem::take(&mut s.messages)
    }

    /// Forgets the messages recorded so far and restarts the round numbering at 0.
    pub fn clear(&self) {
        self.take();
    }

    /// Rounds stepped through since the creation or the last [`clear`](Self::clear) / [`take`](Self::take).
    pub fn rounds(&self) -> u64 {
        self.lock().next_round
    }
}

/// A [`Transport`] that forwards to `inner` and records every message (round, peer, direction,
/// words) in a [`RecordLog`]. Counters and errors are `inner`'s. Recording copies every message,
/// so it is meant for tests and audits, not for production runs.
#[derive(Debug)]
pub struct Recording<T: Transport> {
    inner: T,
    log: RecordLog,
}

impl<T: Transport> Recording<T> {
    /// Wraps `inner` with an empty log.
    pub fn new(inner: T) -> Self {
        Recording { inner, log: RecordLog::default() }
    }

    /// A handle on the log (shared: it sees every later message).
    pub fn log(&self) -> RecordLog {
        self.log.clone()
    }

    /// The wrapped transport.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// Unwraps the transport (the log handles stay valid).
    pub fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: Transport> Transport for Recording<T> {
    fn id(&self) -> usize {
        self.inner.id()
    }

    fn round(&mut self, round: Round) -> Result<Received, NetError> {
        let index = {
            let mut s = self.log.lock();
            let index = s.next_round;
            s.next_round += 1;
            for (peer, msg) in [(Peer::Next, &round.to_next), (Peer::Prev, &round.to_prev)] {
                if let Some(words) = msg {
                    s.messages.push(RecordedMessage {
                        round: index,
                        peer,
                        direction: Direction::Sent,
                        words: words.clone(),
                    });
                }
            }
            index
        };
        let got = self.inner.round(round)?;
        let mut s = self.log.lock();
        for (peer, msg) in [(Peer::Next, &got.from_next), (Peer::Prev, &got.from_prev)] {
            if let Some(words) = msg {
                s.messages.push(RecordedMessage {
                    round: index,
                    peer,
                    direction: Direction::Received,
                    words: words.clone(),
                });
            }
        }
        Ok(got)
    }

    fn counters(&self) -> Counters {
        self.inner.counters()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalTransport;

    #[test]
    fn records_both_directions_with_round_indices() {
        let transports = LocalTransport::triple().map(Recording::new);
        let logs: Vec<RecordLog> = transports.iter().map(Recording::log).collect();
        let handles: Vec<_> = transports
            .into_iter()
            .map(|mut t| {
                std::thread::spawn(move || {
                    let me = t.id() as u64;
                    t.round(Round::new().send(Peer::Prev, vec![me; 3]).recv(Peer::Next, 3)).unwrap();
                    t.round(Round::new()).unwrap();
                    t.round(Round::new().send(Peer::Next, vec![me, 7]).recv(Peer::Prev, 2)).unwrap();
                    t.counters()
                })
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap().rounds, 3);
        }
        let m = logs[1].messages();
        let msg = |round, peer, direction, words: Vec<u64>| RecordedMessage { round, peer, direction, words };
        assert_eq!(
            m,
            vec![
                msg(0, Peer::Prev, Direction::Sent, vec![1; 3]),
                msg(0, Peer::Next, Direction::Received, vec![2; 3]),
                msg(2, Peer::Next, Direction::Sent, vec![1, 7]),
                msg(2, Peer::Prev, Direction::Received, vec![0, 7]),
            ]
        );
        assert_eq!(logs[1].rounds(), 3);
        assert_eq!(logs[1].take().len(), 4);
        assert!(logs[1].messages().is_empty());
        assert_eq!(logs[1].rounds(), 0);
        logs[0].clear();
        assert!(logs[0].messages().is_empty());
    }
}
