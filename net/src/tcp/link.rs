//! One established link: the socket (and TLS session) to one neighbour, its outgoing frames, and
//! its [`Receiver`].

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

use mio::{Interest, Registry, Token};

use super::recv::{Moved, Receiver, Source};
use super::TcpOptions;
use crate::frame::{FrameHeader, FrameKind, HEADER_LEN};
use crate::NetError;

/// TLS: bytes read from the socket per system call.
const RAW_CHUNK: usize = 256 * 1024;
/// rustls buffers at most this much outgoing data.
const TLS_BUFFER: usize = 1 << 20;

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

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// The byte stream of a link: the socket, through TLS when there is one.
struct Wire {
    peer: usize,
    sock: mio::net::TcpStream,
    tls: Option<Box<rustls::Connection>>,
    /// TLS only: bytes read from the socket, not yet handed to rustls (`raw[raw_start..raw_end]`).
    raw: Vec<u8>,
    raw_start: usize,
    raw_end: usize,
    /// The socket itself reached end of file (for TLS the plaintext may still hold data).
    sock_eof: bool,
}

impl Wire {
    fn io_err(&self, e: io::Error) -> NetError {
        match e.kind() {
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof => NetError::PeerGone { peer: self.peer },
            _ => NetError::Io(format!("link to party {}: {e}", self.peer)),
        }
    }
}

impl Source for Wire {
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
        let peer = self.peer;
        let tls_err = |e: &dyn std::fmt::Display| NetError::Malformed { peer, detail: format!("TLS: {e}") };
        loop {
            match tls.reader().read(buf) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if would_block(&e) => {}
                // The socket ended without close_notify: the close frame (if any) tells the rest.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(Some(0)),
                Err(e) => return Err(tls_err(&e)),
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
                    Err(e) => return Err(tls_err(&e)),
                }
            }
            if let Err(e) = tls.process_new_packets() {
                // Best effort: tell the peer why (the alert), then fail.
                let _ = tls.write_tls(&mut self.sock);
                return Err(tls_err(&e));
            }
        }
    }
}

/// A link to one neighbour after setup.
pub(super) struct Link {
    pub(super) peer: usize,
    wire: Wire,
    /// The receiving state.
    pub(super) rx: Receiver,
    session: u64,
    send_seq: u64,
    out: VecDeque<OutFrame>,
    /// This round already told the other neighbour that this link is stuck.
    pub(super) announced: bool,
    /// When a byte last moved on this link in this round.
    pub(super) last_progress: Instant,
    /// When this round last moved data on this link: a byte written, or a byte of a data or close
    /// frame read (waiting frames do not count).
    pub(super) last_data: Instant,
}

impl Link {
    /// Turns a connected, checked socket into a link (non-blocking from now on).
    pub(super) fn new(
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
        let now = Instant::now();
        Ok(Link {
            peer,
            wire: Wire {
                peer,
                sock: mio::net::TcpStream::from_std(sock),
                tls,
                raw,
                raw_start: 0,
                raw_end: 0,
                sock_eof: false,
            },
            rx: Receiver::new(me, peer, session, options.max_words, options.max_read_ahead),
            session,
            send_seq: 1,
            out: VecDeque::new(),
            announced: false,
            last_progress: now,
            last_data: now,
        })
    }

    /// Registers the socket with the transport's poll.
    pub(super) fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.wire.sock, token, Interest::READABLE | Interest::WRITABLE)
    }

    fn gone(&self) -> NetError {
        NetError::PeerGone { peer: self.peer }
    }

    /// Something is left to send or to receive in this round.
    pub(super) fn busy(&self) -> bool {
        !self.out.is_empty() || self.rx.needs_data() || self.wire.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Nothing is queued to send.
    pub(super) fn sent_all(&self) -> bool {
        self.out.is_empty()
    }

    /// Queues a frame.
    pub(super) fn queue(&mut self, kind: FrameKind, payload: Vec<u64>) {
        let header = FrameHeader { kind, session: self.session, seq: self.send_seq, words: payload.len() as u64 };
        self.send_seq += 1;
        self.out.push_back(OutFrame::new(header, payload));
    }

    /// Drops the queued frames, except a half-written one (the next frame must start on a frame
    /// boundary); they give their sequence numbers back.
    pub(super) fn drop_unsent(&mut self) {
        let keep = usize::from(self.out.front().is_some_and(|f| f.at > 0));
        self.send_seq -= (self.out.len() - keep) as u64;
        self.out.truncate(keep);
    }

    /// Queues the TLS close_notify (after everything queued so far).
    pub(super) fn close_notify(&mut self) {
        if let Some(tls) = self.wire.tls.as_deref_mut() {
            tls.send_close_notify();
        }
    }

    /// Gives up on sending: drops the queued frames and what rustls holds.
    pub(super) fn abandon_output(&mut self) {
        self.out.clear();
        if let Some(tls) = self.wire.tls.as_deref_mut() {
            let _ = tls.write_tls(&mut io::sink());
        }
    }

    /// Shuts the socket down in `how`.
    pub(super) fn shutdown(&self, how: std::net::Shutdown) {
        let _ = self.wire.sock.shutdown(how);
    }

    /// Closes the connection at once, without close frames, as a crash would.
    pub(super) fn crash(&mut self) {
        self.out.clear();
        self.wire.tls = None;
        self.shutdown(std::net::Shutdown::Both);
    }

    /// Writes as much as the socket takes. Returns whether any byte moved.
    pub(super) fn pump_write(&mut self) -> Result<bool, NetError> {
        let mut progress = false;
        loop {
            if let Some(tls) = self.wire.tls.as_deref_mut() {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.wire.sock) {
                        Ok(0) => return Err(self.gone()),
                        Ok(_) => progress = true,
                        Err(e) if would_block(&e) => return Ok(progress),
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(self.wire.io_err(e)),
                    }
                }
            }
            let Some(f) = self.out.front_mut() else { return Ok(progress) };
            let (h, p) = f.rest();
            let r = match self.wire.tls.as_deref_mut() {
                // rustls copies into its record buffer (the copy is part of encrypting).
                Some(tls) => tls.writer().write(if h.is_empty() { p } else { h }),
                None if h.is_empty() => self.wire.sock.write(p),
                None => self.wire.sock.write_vectored(&[IoSlice::new(h), IoSlice::new(p)]),
            };
            match r {
                Ok(0) if self.wire.tls.as_ref().is_some_and(|t| t.wants_write()) => continue,
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
                Err(e) => return Err(self.wire.io_err(e)),
            }
        }
    }

    /// Reads what is available (see [`Receiver::pump`]).
    pub(super) fn pump_read(&mut self) -> Result<Moved, NetError> {
        self.rx.pump(&mut self.wire)
    }
}
