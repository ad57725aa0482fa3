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
//! silence of the third one; a peer whose connection ends without a close frame (crashed or
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

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::frame::{decode_frame, CloseReason, FrameHeader, FrameKind, StreamCheck, DEFAULT_MAX_WORDS, HEADER_LEN};
use crate::tls::TlsIdentity;
use crate::{Counters, NetError, Peer, Received, Round, Transport, DEFAULT_TIMEOUT};

/// Default time to wait for all links to come up.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Default of [`TcpOptions::max_read_ahead`]: 256 MiB per link.
pub const DEFAULT_MAX_READ_AHEAD: usize = 256 << 20;

/// Tuning and limits of a [`TcpTransport`].
#[derive(Debug, Clone)]
pub struct TcpOptions {
    /// How long a round waits on a link that makes no progress before failing with
    /// [`NetError::Timeout`].
    pub timeout: Duration,
    /// How long setup may take (connect retries, accepting, handshakes).
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
/// Chunk read from a socket when no receive is pending.
const INBOX_CHUNK: usize = 64 * 1024;
/// TLS: bytes read from the socket per system call.
const RAW_CHUNK: usize = 256 * 1024;
/// rustls buffers at most this much outgoing data.
const TLS_BUFFER: usize = 1 << 20;

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

/// An outgoing frame: header, then the payload words as little-endian bytes.
struct OutFrame {
    header: [u8; HEADER_LEN],
    payload: Vec<u64>,
    /// Bytes of header and payload already written.
    at: usize,
}

impl OutFrame {
    fn new(header: FrameHeader, mut payload: Vec<u64>) -> Self {
        // Little-endian on the wire: a no-op on little-endian hosts.
        for w in payload.iter_mut() {
            *w = w.to_le();
        }
        OutFrame { header: header.encode(), payload, at: 0 }
    }

    fn len(&self) -> usize {
        HEADER_LEN + 8 * self.payload.len()
    }

    /// The unwritten rest of the header and of the payload.
    fn rest(&self) -> (&[u8], &[u8]) {
        let payload: &[u8] = bytemuck::cast_slice(&self.payload);
        if self.at < HEADER_LEN {
            (&self.header[self.at..], payload)
        } else {
            (&[], &payload[self.at - HEADER_LEN..])
        }
    }
}

/// A receive in progress: header, then exactly the expected payload.
struct RecvJob {
    /// Words the round expects.
    words: usize,
    header: [u8; HEADER_LEN],
    /// Bytes of header and payload received.
    got: usize,
    /// The checked header, once complete.
    kind: Option<FrameKind>,
    payload: Vec<u64>,
}

impl RecvJob {
    fn new(words: usize) -> Self {
        RecvJob { words, header: [0; HEADER_LEN], got: 0, kind: None, payload: Vec::new() }
    }

    /// The whole frame (header and payload) is in.
    fn done(&self) -> bool {
        self.kind.is_some() && self.got == HEADER_LEN + 8 * self.payload.len()
    }

    /// The expected message is in (a close frame in its place is not).
    fn satisfied(&self) -> bool {
        self.done() && self.kind == Some(FrameKind::Data)
    }

    /// Where the next received bytes go.
    fn slot(&mut self) -> &mut [u8] {
        if self.got < HEADER_LEN {
            &mut self.header[self.got..]
        } else {
            let at = self.got - HEADER_LEN;
            &mut bytemuck::cast_slice_mut(&mut self.payload)[at..]
        }
    }
}

/// Bytes received ahead of need (a peer ahead by some rounds).
#[derive(Default)]
struct Inbox {
    buf: Vec<u8>,
    start: usize,
}

impl Inbox {
    fn bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Moves up to `dst.len()` bytes out.
    fn take_into(&mut self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.buf.len() - self.start);
        dst[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > self.buf.len() / 2 {
            // A peer that stays ahead keeps bytes here: drop the consumed front so the buffer
            // holds only unread bytes.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        n
    }
}

/// What a link learned about its peer's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerEnd {
    Open,
    /// The peer sent a close frame (only seen when this party reads up to it).
    Closed(CloseReason),
    /// The connection ended (the close frame, if any, is in the inbox).
    Eof,
}

struct Link {
    /// This party's id.
    me: usize,
    peer: usize,
    sock: mio::net::TcpStream,
    tls: Option<Box<rustls::Connection>>,
    session: u64,
    send_seq: u64,
    recv: StreamCheck,
    out: VecDeque<OutFrame>,
    inbox: Inbox,
    /// [`TcpOptions::max_read_ahead`].
    max_read_ahead: usize,
    job: Option<RecvJob>,
    end: PeerEnd,
    /// The socket itself reached end of file (for TLS the plaintext may still hold data).
    sock_eof: bool,
    /// The party the peer last said it is stuck waiting on (a [`FrameKind::Waiting`] frame).
    peer_waits_on: Option<usize>,
    /// This round already told the other neighbour that this link is stuck.
    announced: bool,
    /// TLS only: bytes read from the socket, not yet handed to rustls (`raw[raw_start..raw_end]`).
    raw: Vec<u8>,
    raw_start: usize,
    raw_end: usize,
    last_progress: Instant,
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

impl Link {
    fn gone(&self) -> NetError {
        NetError::PeerGone { peer: self.peer }
    }

    fn malformed(&self, detail: impl std::fmt::Display) -> NetError {
        NetError::Malformed { peer: self.peer, detail: detail.to_string() }
    }

    fn io_err(&self, e: io::Error) -> NetError {
        match e.kind() {
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof => self.gone(),
            _ => NetError::Io(format!("link to party {}: {e}", self.peer)),
        }
    }

    fn busy(&self) -> bool {
        !self.out.is_empty()
            || self.job.as_ref().is_some_and(|j| !j.satisfied())
            || self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    fn queue(&mut self, kind: FrameKind, payload: Vec<u64>) {
        let header = FrameHeader { kind, session: self.session, seq: self.send_seq, words: payload.len() as u64 };
        self.send_seq += 1;
        self.out.push_back(OutFrame::new(header, payload));
    }

    /// Writes as much as the socket takes. Returns whether any byte moved.
    fn pump_write(&mut self) -> Result<bool, NetError> {
        let mut progress = false;
        loop {
            if let Some(tls) = self.tls.as_deref_mut() {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.sock) {
                        Ok(0) => return Err(NetError::PeerGone { peer: self.peer }),
                        Ok(_) => progress = true,
                        Err(e) if would_block(&e) => return Ok(progress),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(self.io_err(e)),
                    }
                }
            }
            let Some(f) = self.out.front_mut() else { return Ok(progress) };
            let (h, p) = f.rest();
            let r = match self.tls.as_deref_mut() {
                // rustls copies into its record buffer (the copy is part of encrypting).
                Some(tls) => tls.writer().write(if h.is_empty() { p } else { h }),
                None if h.is_empty() => self.sock.write(p),
                None => self.sock.write_vectored(&[IoSlice::new(h), IoSlice::new(p)]),
            };
            match r {
                Ok(0) if self.tls.as_ref().is_some_and(|t| t.wants_write()) => continue,
                Ok(0) => return Err(self.gone()),
                Ok(n) => {
                    progress = true;
                    f.at += n;
                    if f.at == f.len() {
                        self.out.pop_front();
                    }
                }
                Err(e) if would_block(&e) => return Ok(progress),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(self.io_err(e)),
            }
        }
    }

    /// Reads some plaintext bytes into `buf`: `Some(0)` at end of stream, `None` when none are
    /// available now.
    fn read_some(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return loop {
                match self.sock.read(buf) {
                    Ok(n) => break Ok(Some(n)),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if would_block(&e) => break Ok(None),
                    Err(e) => break Err(self.io_err(e)),
                }
            };
        };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if would_block(&e) => {}
                // The socket ended without close_notify: the close frame (if any) tells the rest.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Some(0)),
                Err(e) => return Err(NetError::Malformed { peer: self.peer, detail: format!("TLS: {e}") }),
            }
            if self.raw_start == self.raw_end {
                if self.sock_eof {
                    return Ok(Some(0));
                }
                // rustls reads at most a few KiB per call: fill a larger buffer per system call.
                match self.sock.read(&mut self.raw) {
                    Ok(0) => {
                        self.sock_eof = true;
                        // Let rustls see the end of the stream.
                        let _ = tls.read_tls(&mut io::empty());
                    }
                    Ok(n) => (self.raw_start, self.raw_end) = (0, n),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if would_block(&e) => return Ok(None),
                    Err(e) => {
                        let peer = self.peer;
                        return Err(match e.kind() {
                            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                                NetError::PeerGone { peer }
                            }
                            _ => NetError::Io(format!("link to party {peer}: {e}")),
                        });
                    }
                }
            }
            if self.raw_start < self.raw_end {
                let mut pending = &self.raw[self.raw_start..self.raw_end];
                match tls.read_tls(&mut pending) {
                    Ok(n) => self.raw_start += n,
                    Err(e) => return Err(NetError::Malformed { peer: self.peer, detail: format!("TLS: {e}") }),
                }
            }
            if let Err(e) = tls.process_new_packets() {
                // Best effort: tell the peer why (the alert), then fail.
                let _ = tls.write_tls(&mut self.sock);
                return Err(NetError::Malformed { peer: self.peer, detail: format!("TLS: {e}") });
            }
        }
    }

    /// Reads what is available: into the pending receive, or ahead into the inbox. Returns
    /// whether any byte moved.
    fn pump_read(&mut self) -> Result<bool, NetError> {
        let mut progress = false;
        loop {
            let mut job = self.job.take();
            let r = match job.as_mut().filter(|j| !j.done()) {
                // Bytes that arrived ahead of need come first, even after the peer's end.
                Some(j) if !self.inbox.bytes().is_empty() => Ok(Some(self.inbox.take_into(j.slot()))),
                _ if self.end != PeerEnd::Open => {
                    self.job = job;
                    break;
                }
                Some(j) => self.read_some(j.slot()),
                // Far enough ahead: the rest waits in the socket until a receive needs it.
                None if self.inbox.bytes().len() >= self.max_read_ahead => {
                    self.job = job;
                    break;
                }
                None => {
                    let len = self.inbox.buf.len();
                    self.inbox.buf.resize(len + INBOX_CHUNK, 0);
                    let mut tmp = std::mem::take(&mut self.inbox.buf);
                    let r = self.read_some(&mut tmp[len..]);
                    tmp.truncate(len + r.as_ref().ok().copied().flatten().unwrap_or(0));
                    self.inbox.buf = tmp;
                    r
                }
            };
            let n = match r {
                Ok(Some(0)) => {
                    self.job = job;
                    self.end = PeerEnd::Eof;
                    break;
                }
                Ok(Some(n)) => n,
                Ok(None) => {
                    self.job = job;
                    break;
                }
                Err(e) => {
                    self.job = job;
                    return Err(e);
                }
            };
            progress = true;
            if let Some(j) = job.as_mut().filter(|j| !j.done()) {
                j.got += n;
                if j.got == HEADER_LEN {
                    self.start_payload(j)?;
                }
                if j.done() && j.kind == Some(FrameKind::Close) {
                    let code = u64::from_le(j.payload[0]);
                    let reason = CloseReason::from_code(code).ok_or_else(|| self.malformed("bad close frame"))?;
                    self.end = PeerEnd::Closed(reason);
                }
                if j.done() && j.kind == Some(FrameKind::Waiting) {
                    // The peer is alive and says whom it waits on; the expected message comes next.
                    let on = u64::from_le(j.payload[0]);
                    self.peer_waits_on = Some(
                        usize::try_from(on)
                            .ok()
                            .filter(|&p| p < 3)
                            .ok_or_else(|| self.malformed("bad waiting frame"))?,
                    );
                    *j = RecvJob::new(j.words);
                }
            }
            self.job = job;
        }
        Ok(progress)
    }

    /// Checks a complete header against the expected message and sizes the payload.
    fn start_payload(&mut self, j: &mut RecvJob) -> Result<(), NetError> {
        let h = FrameHeader::decode(&j.header).map_err(|e| self.malformed(e))?;
        self.recv.accept(&h).map_err(|e| self.malformed(e))?;
        match h.kind {
            FrameKind::Data if h.words == j.words as u64 => j.payload = vec![0u64; j.words],
            FrameKind::Data => return Err(self.malformed(format!("expected {} words, got {}", j.words, h.words))),
            FrameKind::Close => j.payload = vec![0u64; 1],
            FrameKind::Waiting if h.words == 1 => j.payload = vec![0u64; 1],
            FrameKind::Waiting => return Err(self.malformed("bad waiting frame")),
            FrameKind::Hello => return Err(self.malformed("unexpected hello")),
        }
        j.kind = Some(h.kind);
        Ok(())
    }

    /// The error for a link whose peer ended (`None`: the peer finished cleanly and nothing more is
    /// needed from it).
    fn end_error(&self) -> Option<NetError> {
        let needs_more = self.job.as_ref().is_some_and(|j| !j.satisfied());
        match self.end {
            PeerEnd::Open => None,
            PeerEnd::Closed(CloseReason::PeerFailed(c)) if c != self.peer && c != self.me => {
                Some(NetError::PeerStopped { peer: self.peer, culprit: c })
            }
            PeerEnd::Closed(_) => needs_more.then(|| self.gone()),
            PeerEnd::Eof => {
                // Look for the peer's close frame among the bytes it sent ahead.
                let mut check = self.recv;
                let mut rest = self.inbox.bytes();
                let skip_partial = self.job.as_ref().is_some_and(|j| j.got > 0 && !j.done());
                let mut reason = None;
                if !skip_partial {
                    while let Ok(Some((f, used))) = decode_frame(rest, &mut check) {
                        if let Some(Ok(r)) = f.close_reason() {
                            reason = Some(r);
                            break;
                        }
                        rest = &rest[used..];
                    }
                }
                match reason {
                    Some(CloseReason::PeerFailed(c)) if c != self.peer && c != self.me => {
                        Some(NetError::PeerStopped { peer: self.peer, culprit: c })
                    }
                    // Closed cleanly: an error only if this party still waits for data.
                    Some(_) => needs_more.then(|| self.gone()),
                    // No close frame: the peer crashed or was killed.
                    None => Some(self.gone()),
                }
            }
        }
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
            links[peer] = Some(dial(id, peer, addrs[peer], &security, &options, deadline)?);
        }
        if id < 2 {
            let listener = match listener {
                Some(l) => l,
                None => bind(addrs[id], &options)?,
            };
            accept_all(id, &listener, &security, &options, deadline, &mut links)?;
        }
        let next = links[(id + 1) % 3].take();
        let prev = links[(id + 2) % 3].take();
        let (Some(next), Some(prev)) = (next, prev) else {
            return Err(NetError::Io("internal error: a link is missing after setup".into()));
        };
        let poll = Poll::new().map_err(|e| NetError::Io(format!("creating the poll: {e}")))?;
        let mut links = [next, prev];
        for (link, token) in links.iter_mut().zip(TOKENS) {
            poll.registry()
                .register(&mut link.sock, token, Interest::READABLE | Interest::WRITABLE)
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
            l.out.clear();
            l.tls = None;
            let _ = l.sock.shutdown(std::net::Shutdown::Both);
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
            l.announced = false;
            l.peer_waits_on = None;
        }
        // A link stuck for a quarter of the timeout is announced to the other neighbour (a waiting
        // frame), which resets that neighbour's timer on us: when a party is silent, only its own
        // neighbours time out on it, and the third party learns whom to blame from their close
        // frames instead of blaming the messenger.
        let announce_after = self.timeout / 4;
        loop {
            let mut progress = false;
            let mut errors = Vec::new();
            for l in &mut self.links {
                let moved = match (l.pump_write(), l.pump_read()) {
                    (Ok(w), Ok(r)) => w | r,
                    (Err(e), _) | (_, Err(e)) => {
                        errors.push(e);
                        false
                    }
                };
                if moved {
                    l.last_progress = Instant::now();
                }
                progress |= moved;
            }
            if errors.is_empty() && !self.links.iter().any(Link::busy) {
                return Ok(());
            }
            // While the round waits: a crash on either link is fatal at once (even on a link the
            // round does not wait on, so every survivor names the crashed party); a clean close
            // only when data is still needed from it.
            errors.extend(self.links.iter().filter_map(Link::end_error));
            if !errors.is_empty() {
                // Prefer the error that names the party at the root of the failure.
                let i = errors.iter().position(|e| matches!(e, NetError::PeerStopped { .. })).unwrap_or(0);
                return Err(errors.swap_remove(i));
            }
            if progress {
                continue;
            }
            let now = Instant::now();
            let mut wait = self.timeout;
            for i in 0..2 {
                let l = &self.links[i];
                if !l.busy() {
                    continue;
                }
                let idle = now.duration_since(l.last_progress);
                if idle >= self.timeout {
                    let (peer, after) = (l.peer, self.timeout);
                    return Err(match l.peer_waits_on {
                        // It said it was stuck on the third party, then fell silent.
                        Some(c) if c != self.id && c != peer => NetError::PeerStopped { peer, culprit: c },
                        _ => NetError::Timeout { peer, after },
                    });
                }
                wait = wait.min(self.timeout - idle);
                if l.announced {
                    continue;
                }
                if idle >= announce_after {
                    let on = l.peer as u64;
                    self.links[i].announced = true;
                    let other = &mut self.links[1 - i];
                    if other.end == PeerEnd::Open {
                        other.queue(FrameKind::Waiting, vec![on]);
                        wait = Duration::ZERO;
                    }
                } else {
                    wait = wait.min(announce_after - idle);
                }
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
            l.job = words.map(RecvJob::new);
        }
        if let Err(e) = self.drive() {
            self.poisoned = Some(e.clone());
            return Err(e);
        }
        let mut got = Received::default();
        let take = |l: &mut Link| {
            l.job.take().map(|j| {
                let mut p = j.payload;
                for w in p.iter_mut() {
                    *w = u64::from_le(*w);
                }
                p
            })
        };
        got.from_next = take(&mut self.links[Self::link_index(Peer::Next)]);
        got.from_prev = take(&mut self.links[Self::link_index(Peer::Prev)]);
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
            l.job = None;
            // A half-written frame is finished first (within the deadline below), so that the close
            // frame lands on a frame boundary; unsent frames are dropped.
            let keep = usize::from(l.out.front().is_some_and(|f| f.at > 0));
            // Unsent frames give their sequence numbers back.
            l.send_seq -= (l.out.len() - keep) as u64;
            l.out.truncate(keep);
            l.queue(FrameKind::Close, vec![reason.code()]);
        }
        let mut notified = [false; 2];
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            let mut pending = false;
            for (l, notified) in self.links.iter_mut().zip(&mut notified) {
                // close_notify only after the close frame, or the peer would never read it.
                if l.out.is_empty() && !*notified {
                    *notified = true;
                    if let Some(tls) = l.tls.as_deref_mut() {
                        tls.send_close_notify();
                    }
                }
                if l.pump_write().is_err() {
                    l.out.clear();
                    if let Some(tls) = l.tls.as_deref_mut() {
                        // Nothing more can be written: drop what rustls holds.
                        let _ = tls.write_tls(&mut io::sink());
                    }
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
            let _ = l.sock.shutdown(std::net::Shutdown::Write);
        }
        // After a failure, linger (reading and discarding) until the peers close or the deadline:
        // closing with unread data would reset the connection and could destroy the close frame
        // before the peer reads it, and with it the name of the party that failed.
        if self.poisoned.is_some() {
            // Not for the culprit itself: it is dead or stuck.
            let waiting = |l: &Link| l.end == PeerEnd::Open && Some(l.peer) != culprit;
            while Instant::now() < deadline && self.links.iter().any(waiting) {
                for l in &mut self.links {
                    let _ = l.pump_read();
                    l.inbox = Inbox::default();
                }
                let _ = self.poll.poll(&mut self.events, Some(Duration::from_millis(20)));
            }
        }
    }
}

/// Binds a listener on `addr` with the socket options applied (accepted sockets inherit them).
pub fn bind(addr: SocketAddr, options: &TcpOptions) -> Result<TcpListener, NetError> {
    let err = |e: io::Error| NetError::Io(format!("cannot listen on {addr}: {e}"));
    let sock = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None).map_err(err)?;
    sock.set_reuse_address(true).map_err(err)?;
    set_buffers(&sock, options).map_err(err)?;
    sock.bind(&addr.into()).map_err(err)?;
    sock.listen(8).map_err(err)?;
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

fn random_u64() -> Result<u64, NetError> {
    let mut b = [0u8; 8];
    getrandom::getrandom(&mut b).map_err(|e| NetError::Io(format!("OS random generator failed: {e}")))?;
    Ok(u64::from_le_bytes(b))
}

/// Blocking I/O over a freshly connected socket, through TLS when there is one.
fn write_all(sock: &mut TcpStream, tls: Option<&mut rustls::Connection>, bytes: &[u8]) -> io::Result<()> {
    match tls {
        Some(t) => {
            t.writer().write_all(bytes)?;
            while t.wants_write() {
                t.write_tls(sock)?;
            }
            Ok(())
        }
        None => sock.write_all(bytes),
    }
}

fn read_exact(sock: &mut TcpStream, tls: Option<&mut rustls::Connection>, buf: &mut [u8]) -> io::Result<()> {
    let Some(t) = tls else { return sock.read_exact(buf) };
    let mut got = 0;
    while got < buf.len() {
        match t.reader().read(&mut buf[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if would_block(&e) => {
                if t.read_tls(sock)? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                if let Err(e) = t.process_new_packets() {
                    let _ = t.write_tls(sock);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn hello_frame(session: u64, me: usize, tag: u64) -> Vec<u8> {
    let mut b = FrameHeader { kind: FrameKind::Hello, session, seq: 0, words: 2 }.encode().to_vec();
    b.extend_from_slice(&(me as u64).to_le_bytes());
    b.extend_from_slice(&tag.to_le_bytes());
    b
}

/// Reads a hello: `(session, party id, job tag)`.
fn read_hello(sock: &mut TcpStream, tls: Option<&mut rustls::Connection>) -> Result<(u64, u64, u64), String> {
    let mut b = [0u8; HEADER_LEN + 16];
    read_exact(sock, tls, &mut b).map_err(|e| format!("no hello: {}", tls_detail(&e)))?;
    let h = FrameHeader::decode(&b).map_err(|e| format!("bad hello: {e}"))?;
    let mut check = StreamCheck { session: h.session, next_seq: 0, max_words: 2 };
    check.accept(&h).map_err(|e| format!("bad hello: {e}"))?;
    if h.kind != FrameKind::Hello || h.words != 2 {
        return Err("bad hello: wrong kind or length".into());
    }
    let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or([0; 8]));
    Ok((h.session, word(HEADER_LEN), word(HEADER_LEN + 8)))
}

/// Runs the TLS handshake to completion on a blocking socket.
fn handshake(sock: &mut TcpStream, tls: &mut rustls::Connection) -> io::Result<()> {
    while tls.is_handshaking() {
        tls.complete_io(sock)?;
    }
    // Send anything the handshake left (e.g. the client's Finished).
    while tls.wants_write() {
        tls.write_tls(sock)?;
    }
    Ok(())
}

/// Describes a TLS failure; a pinning refusal is told in words (rustls would print its Debug form).
fn tls_detail(e: &io::Error) -> String {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o))) = inner {
        return format!("invalid peer certificate: {}", o.0);
    }
    let s = e.to_string();
    if s.contains("BadCertificate") || s.contains("CertificateUnknown") || s.contains("DecryptError") {
        format!("{s} (the peer refused this party's certificate: check the configured certificates)")
    } else {
        s
    }
}

/// Turns a connected, checked socket into a link.
fn make_link(
    me: usize,
    sock: TcpStream,
    tls: Option<rustls::Connection>,
    peer: usize,
    session: u64,
    options: &TcpOptions,
) -> Result<Link, NetError> {
    let setup_err = |e: io::Error| NetError::Io(format!("link to party {peer}: {e}"));
    sock.set_read_timeout(None).map_err(setup_err)?;
    sock.set_write_timeout(None).map_err(setup_err)?;
    sock.set_nonblocking(true).map_err(setup_err)?;
    let tls = tls.map(|mut t| {
        t.set_buffer_limit(Some(TLS_BUFFER));
        Box::new(t)
    });
    let raw = if tls.is_some() { vec![0; RAW_CHUNK] } else { Vec::new() };
    Ok(Link {
        me,
        peer,
        sock: mio::net::TcpStream::from_std(sock),
        tls,
        session,
        send_seq: 1,
        recv: StreamCheck::after_hello(session, options.max_words),
        out: VecDeque::new(),
        inbox: Inbox::default(),
        max_read_ahead: options.max_read_ahead,
        job: None,
        end: PeerEnd::Open,
        sock_eof: false,
        peer_waits_on: None,
        announced: false,
        raw,
        raw_start: 0,
        raw_end: 0,
        last_progress: Instant::now(),
    })
}

/// Connects to a lower-id `peer`, retrying until `deadline`.
fn dial(
    me: usize,
    peer: usize,
    addr: SocketAddr,
    security: &Security,
    options: &TcpOptions,
    deadline: Instant,
) -> Result<Link, NetError> {
    let connect_err = |detail: String| NetError::Connect { peer, detail };
    let mut last = String::from("no attempt");
    let mut sock = loop {
        let now = Instant::now();
        if now >= deadline {
            return Err(connect_err(format!(
                "could not connect to {addr} within {:?} (last error: {last})",
                options.connect_timeout
            )));
        }
        let attempt = || -> io::Result<TcpStream> {
            let s = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
            set_buffers(&s, options)?;
            s.connect_timeout(&addr.into(), (deadline - now).min(Duration::from_secs(2)))?;
            Ok(s.into())
        };
        match attempt() {
            Ok(s) => break s,
            Err(e) => {
                last = e.to_string();
                std::thread::sleep(Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now())));
            }
        }
    };
    let io_err = |e: io::Error| connect_err(format!("{addr}: {e}"));
    sock.set_nodelay(options.nodelay).map_err(io_err)?;
    let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
    sock.set_read_timeout(Some(left)).map_err(io_err)?;
    sock.set_write_timeout(Some(left)).map_err(io_err)?;
    let mut tls = match security {
        Security::Tls(id) => {
            let mut t = id.client(peer)?;
            handshake(&mut sock, &mut t)
                .map_err(|e| NetError::Tls { peer, detail: format!("handshake with {addr}: {}", tls_detail(&e)) })?;
            Some(t)
        }
        Security::InsecurePlaintext => None,
    };
    let session = random_u64()?;
    write_all(&mut sock, tls.as_mut(), &hello_frame(session, me, options.job_tag))
        .map_err(|e| connect_err(format!("sending the hello to {addr}: {}", tls_detail(&e))))?;
    let (s, id, tag) = read_hello(&mut sock, tls.as_mut()).map_err(|d| {
        if d.contains("alert") {
            NetError::Tls { peer, detail: format!("{addr}: {d}") }
        } else {
            connect_err(format!("{addr}: {d}"))
        }
    })?;
    if s != session || id != peer as u64 {
        return Err(connect_err(format!("{addr} answered as another party or session (claims party {id})")));
    }
    if tag != options.job_tag {
        return Err(connect_err(format!("party {peer} runs a different job or settings (job tags differ)")));
    }
    make_link(me, sock, tls, peer, session, options)
}

/// Accepts the parties with higher ids than `me`, refusing strangers, until `deadline`.
fn accept_all(
    me: usize,
    listener: &TcpListener,
    security: &Security,
    options: &TcpOptions,
    deadline: Instant,
    links: &mut [Option<Link>; 3],
) -> Result<(), NetError> {
    listener.set_nonblocking(true).map_err(|e| NetError::Io(format!("listener: {e}")))?;
    let mut refused: Vec<String> = Vec::new();
    while let Some(waiting) = (me + 1..3).find(|&p| links[p].is_none()) {
        let (sock, from) = match listener.accept() {
            Ok(x) => x,
            Err(e) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => {
                if Instant::now() >= deadline {
                    let mut detail = format!("party {waiting} did not connect within {:?}", options.connect_timeout);
                    if !refused.is_empty() {
                        detail += &format!("; refused: {}", refused.join("; "));
                    }
                    return Err(NetError::Connect { peer: waiting, detail });
                }
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => return Err(NetError::Io(format!("accepting: {e}"))),
        };
        match accept_one(me, sock, security, options, deadline, links) {
            Ok((peer, link)) => links[peer] = Some(link),
            Err(why) => {
                if refused.len() < 8 {
                    refused.push(format!("connection from {from}: {why}"));
                }
            }
        }
    }
    Ok(())
}

/// Handshake and hello with one accepted connection; `Err` explains a refusal.
fn accept_one(
    me: usize,
    mut sock: TcpStream,
    security: &Security,
    options: &TcpOptions,
    deadline: Instant,
    links: &[Option<Link>; 3],
) -> Result<(usize, Link), String> {
    sock.set_nonblocking(false).map_err(|e| e.to_string())?;
    sock.set_nodelay(options.nodelay).map_err(|e| e.to_string())?;
    // A stalled stranger must not hold the listener for long.
    let left =
        deadline.saturating_duration_since(Instant::now()).clamp(Duration::from_millis(100), Duration::from_secs(10));
    sock.set_read_timeout(Some(left)).map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(left)).map_err(|e| e.to_string())?;
    let (mut tls, cert_party) = match security {
        Security::Tls(id) => {
            let mut t = id.server().map_err(|e| e.to_string())?;
            handshake(&mut sock, &mut t).map_err(|e| format!("TLS handshake failed: {}", tls_detail(&e)))?;
            let party =
                t.peer_certificates().and_then(|c| c.first()).and_then(|c| id.party_of(c)).ok_or("no certificate")?;
            (Some(t), Some(party))
        }
        Security::InsecurePlaintext => (None, None),
    };
    let (session, claimed, tag) = read_hello(&mut sock, tls.as_mut())?;
    let peer = usize::try_from(claimed)
        .ok()
        .filter(|p| (me + 1..3).contains(p))
        .ok_or(format!("claims to be party {claimed}, which does not connect to party {me}"))?;
    if cert_party.is_some_and(|c| c != peer) {
        return Err(format!("claims to be party {peer} with the certificate of another party"));
    }
    if links[peer].is_some() {
        return Err(format!("party {peer} is already connected"));
    }
    // Answer before judging the tag, so the connecting side can report the mismatch too.
    write_all(&mut sock, tls.as_mut(), &hello_frame(session, me, options.job_tag)).map_err(|e| e.to_string())?;
    if tag != options.job_tag {
        return Err(format!("party {peer} runs a different job or settings (job tags differ)"));
    }
    let link = make_link(me, sock, tls, peer, session, options).map_err(|e| e.to_string())?;
    Ok((peer, link))
}
