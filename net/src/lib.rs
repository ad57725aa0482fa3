//! Transports between the three parties.
//!
//! A party only ever talks to its two neighbours, [`Peer::Next`] (party `i+1 mod 3`) and
//! [`Peer::Prev`] (party `i-1 mod 3`). Communication happens in **rounds**: in one call of
//! [`Transport::round`] a party sends at most one message to each neighbour and receives at most
//! one from each; sends and receives of a round progress concurrently, so no round can deadlock.
//! Messages are sequences of 64-bit words (ring elements, packed bits, keys), little-endian on the
//! wire, and every receive states the exact number of words it expects: anything else is an error.
//!
//! Every protocol steps all three parties through each of its rounds, even a party with nothing
//! to send or receive in it, so the three round counters agree and equal the protocol's latency.
//!
//! Two transports implement the trait: [`LocalTransport`] (three parties in one process, over
//! channels) and [`TcpTransport`] (one party per process or machine, over TCP with mutual TLS;
//! see [`tcp`] for connection setup and failure handling, [`frame`] for the wire format and
//! [`tls`] for the trust model). Both count traffic identically. [`Recording`] wraps either and
//! logs every message sent and received (for tests and masking audits). [`ShapedTransport`]
//! wraps either and delays every message as a link of a given latency and bandwidth would
//! ([`LinkModel`]: `none`, `lan`, `wan` or custom; see [`shaped`]). [`deploy`] reads a
//! deployment's configuration and certificates into one party's [`TcpSetup`].

#![deny(missing_docs)]

pub mod deploy;
pub mod frame;
mod local;
mod record;
pub mod shaped;
pub mod tcp;
pub mod tls;

pub use deploy::{DeployError, Deployment, Protection};
pub use local::LocalTransport;
pub use record::{Direction, RecordLog, RecordedMessage, Recording};
pub use shaped::{LinkModel, LinkModelError, ShapedTransport};
pub use tcp::{Security, TcpOptions, TcpSetup, TcpTransport};
pub use tls::TlsIdentity;

use std::time::Duration;
use thiserror::Error;

/// Default time a party waits for a neighbour's message before giving up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// One of a party's two neighbours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Peer {
    /// Party `i + 1 mod 3`.
    Next,
    /// Party `i - 1 mod 3`.
    Prev,
}

impl Peer {
    /// The neighbour's party id, seen from party `me`.
    pub fn id_from(self, me: usize) -> usize {
        match self {
            Peer::Next => (me + 1) % 3,
            Peer::Prev => (me + 2) % 3,
        }
    }
}

/// Transport failures. Each names the neighbour (by party id) it concerns.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum NetError {
    /// No message arrived from the peer within the timeout.
    #[error("party {peer} sent no data for {after:?} (timeout)")]
    Timeout {
        /// The silent neighbour.
        peer: usize,
        /// How long this party waited.
        after: Duration,
    },
    /// The peer closed its end: it exited or crashed.
    #[error("party {peer} is gone (connection closed)")]
    PeerGone {
        /// The vanished neighbour.
        peer: usize,
    },
    /// The peer sent something other than what the protocol expects.
    #[error("malformed message from party {peer}: {detail}")]
    Malformed {
        /// The neighbour.
        peer: usize,
        /// What was wrong.
        detail: String,
    },
    /// The peer gave up because a third party failed (it said so when closing its link).
    #[error("party {peer} stopped because party {culprit} failed")]
    PeerStopped {
        /// The neighbour that stopped.
        peer: usize,
        /// The party it blames.
        culprit: usize,
    },
    /// The TLS handshake with the peer failed, e.g. a certificate that is not the configured one.
    #[error("TLS with party {peer} failed: {detail}")]
    Tls {
        /// The neighbour.
        peer: usize,
        /// What went wrong.
        detail: String,
    },
    /// The link to the peer could not be set up in time.
    #[error("cannot connect with party {peer}: {detail}")]
    Connect {
        /// The neighbour.
        peer: usize,
        /// What went wrong.
        detail: String,
    },
    /// An I/O or configuration error.
    #[error("transport error: {0}")]
    Io(String),
}

/// What one party sends and expects in one round.
#[derive(Debug, Default)]
pub struct Round {
    /// Message to [`Peer::Next`].
    pub to_next: Option<Vec<u64>>,
    /// Message to [`Peer::Prev`].
    pub to_prev: Option<Vec<u64>>,
    /// Words expected from [`Peer::Next`].
    pub from_next: Option<usize>,
    /// Words expected from [`Peer::Prev`].
    pub from_prev: Option<usize>,
}

impl Round {
    /// A round in which this party sends and receives nothing.
    pub fn new() -> Self {
        Round::default()
    }

    /// Sends `msg` to `peer` in this round (replaces an earlier send to the same peer).
    pub fn send(mut self, peer: Peer, msg: Vec<u64>) -> Self {
        match peer {
            Peer::Next => self.to_next = Some(msg),
            Peer::Prev => self.to_prev = Some(msg),
        }
        self
    }

    /// Expects a message of exactly `words` words from `peer` in this round.
    pub fn recv(mut self, peer: Peer, words: usize) -> Self {
        match peer {
            Peer::Next => self.from_next = Some(words),
            Peer::Prev => self.from_prev = Some(words),
        }
        self
    }

    /// Words sent in this round.
    pub fn words_sent(&self) -> usize {
        self.to_next.as_ref().map_or(0, Vec::len) + self.to_prev.as_ref().map_or(0, Vec::len)
    }
}

/// Messages received in one round.
#[derive(Debug, Default)]
pub struct Received {
    /// From [`Peer::Next`], when the round expected one.
    pub from_next: Option<Vec<u64>>,
    /// From [`Peer::Prev`], when the round expected one.
    pub from_prev: Option<Vec<u64>>,
}

impl Received {
    /// Takes the message from `peer`; an error when the round did not ask for one.
    pub fn take(&mut self, peer: Peer) -> Result<Vec<u64>, NetError> {
        let slot = match peer {
            Peer::Next => &mut self.from_next,
            Peer::Prev => &mut self.from_prev,
        };
        slot.take().ok_or_else(|| NetError::Io(format!("no message from {peer:?} was expected in this round")))
    }
}

/// Communication counters of one party.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Bytes sent to both neighbours.
    pub bytes_sent: u64,
    /// Bytes received from both neighbours.
    pub bytes_received: u64,
    /// Bytes sent to [`Peer::Next`].
    pub bytes_to_next: u64,
    /// Bytes sent to [`Peer::Prev`].
    pub bytes_to_prev: u64,
    /// Messages sent.
    pub messages_sent: u64,
    /// Rounds stepped through.
    pub rounds: u64,
}

impl Counters {
    /// Counts one round: the words sent to each neighbour (`None`: no message) and received.
    pub fn record_round(&mut self, to_next: Option<usize>, to_prev: Option<usize>, received_words: usize) {
        let next = to_next.unwrap_or(0) as u64 * 8;
        let prev = to_prev.unwrap_or(0) as u64 * 8;
        self.bytes_to_next += next;
        self.bytes_to_prev += prev;
        self.bytes_sent += next + prev;
        self.bytes_received += received_words as u64 * 8;
        self.messages_sent += to_next.is_some() as u64 + to_prev.is_some() as u64;
        self.rounds += 1;
    }

    /// The traffic between an earlier snapshot `before` and `self`.
    pub fn since(&self, before: &Counters) -> Counters {
        Counters {
            bytes_sent: self.bytes_sent - before.bytes_sent,
            bytes_received: self.bytes_received - before.bytes_received,
            bytes_to_next: self.bytes_to_next - before.bytes_to_next,
            bytes_to_prev: self.bytes_to_prev - before.bytes_to_prev,
            messages_sent: self.messages_sent - before.messages_sent,
            rounds: self.rounds - before.rounds,
        }
    }
}

/// A party's connection to its two neighbours.
pub trait Transport: Send {
    /// This party's id (0, 1 or 2).
    fn id(&self) -> usize;

    /// Runs one communication round: sends what `round` holds and waits for what it expects.
    /// A missing, late, or wrongly sized message is an error naming the peer; the transport
    /// never blocks longer than its timeout.
    fn round(&mut self, round: Round) -> Result<Received, NetError>;

    /// The counters so far.
    fn counters(&self) -> Counters;
}
