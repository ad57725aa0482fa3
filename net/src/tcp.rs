//! [`TcpTransport`]: one party of a three-machine run, over TCP (mio) with optional mutual TLS.
//!
//! **Connections.** Each pair of parties shares one TCP connection; the party with the lower id
//! listens and the higher id connects (party 0 accepts 1 and 2, party 1 connects to 0 and accepts
//! 2, party 2 connects to both). Connecting retries until the connect deadline, so the three
//! processes can start in any order. On each new connection the TLS handshake runs (both sides
//! present and check pinned certificates, see [`crate::tls`]), then a hello exchange: the
//! connecting side proposes a random 64-bit session id, and both send `[party id, job tag]`.
//! A listener refuses (and keeps waiting for the right peer until the deadline) connections that
//! fail the handshake, claim the wrong party, or run another job (different job tag); the refusals
//! are part of the timeout error. Setup is blocking (simple and ordered: connect to lower ids, then
//! accept higher ids, which cannot deadlock); rounds are non-blocking.
//!
//! **Strangers during setup.** A listener greets each accepted connection (TLS handshake and
//! hello) on a thread of its own and keeps accepting meanwhile, so connections that send nothing,
//! send garbage or fail TLS do not hold the genuine peers up. Each greeting is cut off after
//! [`HELLO_TIMEOUT`]; at most [`MAX_PENDING_HELLOS`] run at once (more connections wait in the
//! listen backlog), so a stranger can delay the genuine peers only as part of a flood, by at most
//! [`HELLO_TIMEOUT`] per [`MAX_PENDING_HELLOS`] strangers. With TLS a stranger cannot take a
//! party's place: the listener admits a connection only with the certificate pinned for the party
//! it claims to be.
//!
//! **Rounds.** One mio poll loop drives both links: sends to both neighbours and receives from
//! both progress together, so a multi-gigabyte message in each direction never deadlocks. Frames
//! (see [`crate::frame`]) are written straight from the message's `Vec<u64>` (its bytes are already
//! little-endian on little-endian hosts: no copy) and, when a receive is pending, read straight
//! into the destination vector. A peer that runs ahead (sends a later round's message early) is
//! read eagerly into a side buffer, like the unbounded channels of
//! [`LocalTransport`](crate::LocalTransport); this also means a vanished peer is noticed at once, even in a round
//! that does not involve it.
//!
//! **Failures.** A link that makes no progress for the receive timeout while this party waits on
//! it gives [`NetError::Timeout`]; a link stuck for a quarter of the timeout is announced to the
//! other neighbour (a waiting frame), which keeps that neighbour from blaming this party for the
//! silence of the third one (but for at most [`KEEPALIVE_FACTOR`] timeouts without data, see
//! [`TcpOptions::timeout`]); a peer whose connection ends without a close frame (crashed or
//! killed) gives [`NetError::PeerGone`] as soon as it is noticed; a peer that stopped because of
//! a third party's failure says so in its close frame ([`NetError::PeerStopped`]), so every
//! survivor names the party that really failed. On drop, the transport sends a close frame on
//! each link (saying whether it finished or which party made it give up), and after a failure it
//! lingers (draining) until the peers close, so that no reset destroys that close frame. After an
//! error the transport is poisoned: every later round returns the same error.
//!
//! **Counters** count payload bytes and rounds exactly as [`LocalTransport`](crate::LocalTransport)
//! does (headers, hellos, close frames and TLS overhead are not counted), so the protocols' cost
//! tests give the same numbers over TCP.
//!
//! The receive state machine (frames in, messages out) is in a module of its own that reads from
//! any byte source; `MemoryReceiver` feeds it from memory for the property tests and the fuzzer.

mod link;
mod recv;
mod setup;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token};

use crate::frame::{CloseReason, FrameKind, DEFAULT_MAX_WORDS};
use crate::tls::TlsIdentity;
use crate::{Counters, NetError, Peer, Received, Round, Transport, DEFAULT_TIMEOUT};
use link::Link;
#[doc(hidden)]
pub use recv::MemoryReceiver;

/// Default time to wait for all links to come up.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default of [`TcpOptions::max_read_ahead`]: 256 MiB per link.
pub const DEFAULT_MAX_READ_AHEAD: usize = 256 << 20;

/// Waiting frames keep a link alive for at most this many receive timeouts without data (see
/// [`TcpOptions::timeout`]).
pub const KEEPALIVE_FACTOR: u32 = 2;

/// How long a listener gives an accepted connection to complete its TLS handshake and hello
/// before cutting it off.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// Most accepted connections a listener greets at once.
pub const MAX_PENDING_HELLOS: usize = 16;

/// Tuning and limits of a [`TcpTransport`].
#[derive(Debug, Clone)]
pub struct TcpOptions {
    /// How long a round waits on a link that makes no progress before failing with
    /// [`NetError::Timeout`].
    ///
    /// Progress is any byte moving on the link. A waiting frame (the peer saying it is itself
    /// stuck on the third party) counts, but only up to a bound: a round fails with
    /// [`NetError::Timeout`] on a link that has moved no *data* (a byte sent, or a byte of a data
    /// or close frame received) for [`KEEPALIVE_FACTOR`] `× timeout`, however many waiting frames
    /// came. The clock starts with the round. An honest peer that announces it is stuck gives up
    /// on the third party within one timeout and says so in its close frame, well within the
    /// bound.
    pub timeout: Duration,
    /// How long setup may take (connect retries, accepting, handshakes). Each accepted connection
    /// also has [`HELLO_TIMEOUT`] for its TLS handshake and hello.
    pub connect_timeout: Duration,
    /// Sets TCP_NODELAY (no Nagle delay on small messages; on by default).
    pub nodelay: bool,
    /// SO_SNDBUF in bytes (`None`: the system's default and auto-tuning).
    pub send_buffer: Option<usize>,
    /// SO_RCVBUF in bytes (`None`: the system's default and auto-tuning).
    pub recv_buffer: Option<usize>,
    /// Largest message accepted, in words.
    pub max_words: u64,
    /// Most bytes read from one peer ahead of the protocol's need. A peer further ahead waits in
    /// TCP flow control until this party catches up, so a fast or hostile peer cannot make it
    /// hold unbounded memory. Default [`DEFAULT_MAX_READ_AHEAD`].
    pub max_read_ahead: usize,
    /// A digest of the job and its public settings, exchanged in the hello: parties that would
    /// run different computations refuse each other at connect time instead of failing later.
    pub job_tag: u64,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            nodelay: true,
            send_buffer: None,
            recv_buffer: None,
            max_words: DEFAULT_MAX_WORDS,
            max_read_ahead: DEFAULT_MAX_READ_AHEAD,
            job_tag: 0,
        }
    }
}

/// How links are protected.
#[derive(Debug, Clone)]
pub enum Security {
    /// Mutual TLS with pinned certificates (the only safe choice: the PRG keys cross the links).
    Tls(Box<TlsIdentity>),
    /// Plain TCP. **Insecure**: anyone on the network path sees the keys and every message.
    /// Meant for benchmarks and debugging on a trusted host.
    InsecurePlaintext,
}

/// Everything needed to bring one party's links up.
#[derive(Debug)]
pub struct TcpSetup {
    /// This party's id.
    pub id: usize,
    /// The listening addresses of parties 0, 1 and 2 (this party's own is where it listens, unless
    /// `listener` is given).
    pub addrs: [SocketAddr; 3],
    /// An already bound listener (tests bind port 0 first); `None` binds `addrs[id]`.
    pub listener: Option<TcpListener>,
    /// TLS or plain.
    pub security: Security,
    /// Tuning and limits.
    pub options: TcpOptions,
}

const TOKENS: [Token; 2] = [Token(0), Token(1)];

/// One party's TCP connections to its two neighbours.
pub struct TcpTransport {
    id: usize,
    /// `links[0]` is [`Peer::Next`], `links[1]` is [`Peer::Prev`].
    links: [Link; 2],
    poll: Poll,
    events: Events,
    timeout: Duration,
    counters: Counters,
    /// The error that stopped this transport, returned again by every later round.
    poisoned: Option<NetError>,
}

impl std::fmt::Debug for TcpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpTransport").field("id", &self.id).field("counters", &self.counters).finish_non_exhaustive()
    }
}

impl TcpTransport {
    /// Brings this party's two links up (connect to lower ids with retries, accept higher ids,
    /// TLS handshakes, hellos) within `setup.options.connect_timeout`.
    pub fn connect(setup: TcpSetup) -> Result<TcpTransport, NetError> {
        let TcpSetup { id, addrs, listener, security, options } = setup;
        if id > 2 {
            return Err(NetError::Io(format!("party id {id} is not 0, 1 or 2")));
        }
        if let Security::Tls(t) = &security {
            if t.me() != id {
                return Err(NetError::Io(format!("TLS identity of party {} used for party {id}", t.me())));
            }
        }
        let deadline = Instant::now() + options.connect_timeout;
        let mut links: [Option<Link>; 3] = [None, None, None];
        for peer in 0..id {
            links[peer] = Some(setup::dial(id, peer, addrs[peer], &security, &options, deadline)?);
        }
        if id < 2 {
            let listener = match listener {
                Some(l) => l,
                None => bind(addrs[id], &options)?,
            };
            setup::accept_all(id, &listener, &security, &options, deadline, &mut links)?;
        }
        let next = links[(id + 1) % 3].take();
        let prev = links[(id + 2) % 3].take();
        let (Some(next), Some(prev)) = (next, prev) else {
            return Err(NetError::Io("internal error: a link is missing after setup".into()));
        };
        let poll = Poll::new().map_err(|e| NetError::Io(format!("creating the poll: {e}")))?;
        let mut links = [next, prev];
        for (link, token) in links.iter_mut().zip(TOKENS) {
            link.register(poll.registry(), token)
                .map_err(|e| NetError::Io(format!("registering the link to party {}: {e}", link.peer)))?;
        }
        Ok(TcpTransport {
            id,
            links,
            poll,
            events: Events::with_capacity(16),
            timeout: options.timeout,
            counters: Counters::default(),
            poisoned: None,
        })
    }

    /// The receive timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Closes both connections at once, without close frames, as a crash would (for failure tests).
    #[doc(hidden)]
    pub fn crash(mut self) {
        for l in &mut self.links {
            l.crash();
        }
        // Drop still runs, but it finds nothing to send and the sockets are shut.
        self.poisoned = Some(NetError::Io("crashed".into()));
    }

    fn link_index(peer: Peer) -> usize {
        match peer {
            Peer::Next => 0,
            Peer::Prev => 1,
        }
    }

    /// Runs the poll loop until both links are idle (all sent, all expected messages received).
    fn drive(&mut self) -> Result<(), NetError> {
        let now = Instant::now();
        for l in &mut self.links {
            l.last_progress = now;
            l.last_data = now;
            l.announced = false;
        }
        // A link stuck for a quarter of the timeout is announced to the other neighbour (a waiting
        // frame), which resets that neighbour's timer on us: when a party is silent, only its own
        // neighbours time out on it, and the third party learns whom to blame from their close
        // frames instead of blaming the messenger. Waiting frames never extend a link's life
        // beyond `cap` without data.
        let announce_after = self.timeout / 4;
        let cap = self.timeout * KEEPALIVE_FACTOR;
        loop {
            let mut progress = false;
            let mut errors = Vec::new();
            for l in &mut self.links {
                let (wrote, read) = match (l.pump_write(), l.pump_read()) {
                    (Ok(w), Ok(r)) => (w, r),
                    (Err(e), _) | (_, Err(e)) => {
                        errors.push(e);
                        continue;
                    }
                };
                if wrote || read.bytes {
                    l.last_progress = Instant::now();
                }
                if wrote || read.data {
                    l.last_data = l.last_progress;
                }
                progress |= wrote || read.bytes;
            }
            if errors.is_empty() && !self.links.iter().any(Link::busy) {
                return Ok(());
            }
            // While the round waits: a crash on either link is fatal at once (even on a link the
            // round does not wait on, so every survivor names the crashed party); a clean close
            // only when data is still needed from it.
            errors.extend(self.links.iter().filter_map(|l| l.rx.end_error()));
            if !errors.is_empty() {
                // Prefer the error that names the party at the root of the failure.
                let i = errors.iter().position(|e| matches!(e, NetError::PeerStopped { .. })).unwrap_or(0);
                return Err(errors.swap_remove(i));
            }
            // The timers are checked even while bytes move: a peer streaming waiting frames must
            // not keep them from running out.
            let now = Instant::now();
            let mut wait = self.timeout;
            for i in 0..2 {
                let l = &self.links[i];
                if !l.busy() {
                    continue;
                }
                let idle = now.duration_since(l.last_progress);
                let peer = l.peer;
                if idle >= self.timeout {
                    return Err(match l.rx.peer_waits_on() {
                        // It said it was stuck on the third party, then fell silent.
                        Some(c) if c != self.id && c != peer => NetError::PeerStopped { peer, culprit: c },
                        _ => NetError::Timeout { peer, after: self.timeout },
                    });
                }
                let without_data = now.duration_since(l.last_data);
                if without_data >= cap {
                    // Alive, but it kept saying it waits instead of giving up on the third party.
                    return Err(NetError::Timeout { peer, after: cap });
                }
                wait = wait.min(self.timeout - idle).min(cap - without_data);
                if l.announced {
                    continue;
                }
                if idle >= announce_after {
                    let on = l.peer as u64;
                    self.links[i].announced = true;
                    let other = &mut self.links[1 - i];
                    if other.rx.is_open() {
                        other.queue(FrameKind::Waiting, vec![on]);
                        wait = Duration::ZERO;
                    }
                } else {
                    wait = wait.min(announce_after - idle);
                }
            }
            if progress {
                continue;
            }
            match self.poll.poll(&mut self.events, Some(wait)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(NetError::Io(format!("poll: {e}"))),
            }
        }
    }

    fn culprit(&self, e: &NetError) -> Option<usize> {
        match e {
            NetError::Timeout { peer, .. }
            | NetError::PeerGone { peer }
            | NetError::Malformed { peer, .. }
            | NetError::Tls { peer, .. }
            | NetError::Connect { peer, .. } => Some(*peer),
            NetError::PeerStopped { culprit, .. } => Some(*culprit),
            NetError::Io(_) => None,
        }
    }
}

impl Transport for TcpTransport {
    fn id(&self) -> usize {
        self.id
    }

    fn round(&mut self, round: Round) -> Result<Received, NetError> {
        if let Some(e) = &self.poisoned {
            return Err(e.clone());
        }
        let next_len = round.to_next.as_ref().map(Vec::len);
        let prev_len = round.to_prev.as_ref().map(Vec::len);
        let sends = [round.to_next, round.to_prev];
        let recvs = [round.from_next, round.from_prev];
        for ((l, msg), words) in self.links.iter_mut().zip(sends).zip(recvs) {
            if let Some(m) = msg {
                l.queue(FrameKind::Data, m);
            }
            l.rx.start_round(words);
        }
        if let Err(e) = self.drive() {
            self.poisoned = Some(e.clone());
            return Err(e);
        }
        let got = Received {
            from_next: self.links[Self::link_index(Peer::Next)].rx.take_message(),
            from_prev: self.links[Self::link_index(Peer::Prev)].rx.take_message(),
        };
        let received = recvs[0].unwrap_or(0) + recvs[1].unwrap_or(0);
        self.counters.record_round(next_len, prev_len, received);
        Ok(got)
    }

    fn counters(&self) -> Counters {
        self.counters
    }
}

impl Drop for TcpTransport {
    /// Best effort, bounded by two seconds: finishes a half-sent frame, sends a close frame on each
    /// link (finished, or which party made this one give up), then the TLS close_notify.
    fn drop(&mut self) {
        let culprit = self.poisoned.as_ref().and_then(|e| self.culprit(e));
        let reason = culprit.map_or(CloseReason::Done, CloseReason::PeerFailed);
        for l in &mut self.links {
            l.rx.discard();
            // A half-written frame is finished first (within the deadline below), so that the close
            // frame lands on a frame boundary; unsent frames are dropped.
            l.drop_unsent();
            l.queue(FrameKind::Close, vec![reason.code()]);
        }
        let mut notified = [false; 2];
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let mut pending = false;
            for (l, notified) in self.links.iter_mut().zip(&mut notified) {
                // close_notify only after the close frame, or the peer would never read it.
                if l.sent_all() && !*notified {
                    *notified = true;
                    l.close_notify();
                }
                if l.pump_write().is_err() {
                    // Nothing more can be written.
                    l.abandon_output();
                    continue;
                }
                // Drain what the peer sent, so that closing does not reset the connection.
                let _ = l.pump_read();
                // A dead or stuck culprit may never take its close frame: do not wait for it.
                pending |= l.busy() && Some(l.peer) != culprit;
            }
            if !pending {
                break;
            }
            let _ = self.poll.poll(&mut self.events, Some(Duration::from_millis(20)));
        }
        for l in &self.links {
            l.shutdown(std::net::Shutdown::Write);
        }
        // After a failure, linger (reading and discarding) until the peers close or the deadline:
        // closing with unread data would reset the connection and could destroy the close frame
        // before the peer reads it, and with it the name of the party that failed.
        if self.poisoned.is_some() {
            // Not for the culprit itself: it is dead or stuck.
            let waiting = |l: &Link| l.rx.is_open() && Some(l.peer) != culprit;
            while Instant::now() < deadline && self.links.iter().any(waiting) {
                for l in &mut self.links {
                    let _ = l.pump_read();
                    l.rx.discard();
                }
                let _ = self.poll.poll(&mut self.events, Some(Duration::from_millis(20)));
            }
        }
    }
}

/// Moves three parties' setups onto free ports of 127.0.0.1, to run them in one process (tests,
/// examples): parties 0 and 1 listen on ephemeral ports (bound here, with each setup's options),
/// party 2 only connects, and every setup gets the new addresses.
pub fn on_loopback(setups: &mut [TcpSetup; 3]) -> Result<(), NetError> {
    let any: SocketAddr = ([127, 0, 0, 1], 0).into();
    let l0 = bind(any, &setups[0].options)?;
    let l1 = bind(any, &setups[1].options)?;
    let addr = |l: &TcpListener| l.local_addr().map_err(|e| NetError::Io(format!("listener address: {e}")));
    let addrs = [addr(&l0)?, addr(&l1)?, setups[2].addrs[2]];
    for (setup, listener) in setups.iter_mut().zip([Some(l0), Some(l1), None]) {
        setup.addrs = addrs;
        setup.listener = listener;
    }
    Ok(())
}

/// Binds a listener on `addr` with the socket options applied (accepted sockets inherit them).
pub fn bind(addr: SocketAddr, options: &TcpOptions) -> Result<TcpListener, NetError> {
    let err = |e: io::Error| NetError::Io(format!("cannot listen on {addr}: {e}"));
    let sock = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).map_err(err)?;
    sock.set_reuse_address(true).map_err(err)?;
    set_buffers(&sock, options).map_err(err)?;
    sock.bind(&addr.into()).map_err(err)?;
    // Room for strangers and retries: connections wait here while greetings are full.
    sock.listen(64).map_err(err)?;
    Ok(sock.into())
}

fn set_buffers(sock: &socket2::Socket, options: &TcpOptions) -> io::Result<()> {
    if let Some(n) = options.send_buffer {
        sock.set_send_buffer_size(n)?;
    }
    if let Some(n) = options.recv_buffer {
        sock.set_recv_buffer_size(n)?;
    }
    Ok(())
}
