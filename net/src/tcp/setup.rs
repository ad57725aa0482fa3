//! Bringing links up: dialing the lower ids, accepting the higher ids, TLS handshakes and hellos.
//!
//! Accepted connections are greeted (TLS handshake and hello) on threads of their own, at most
//! [`MAX_PENDING_HELLOS`] at a time, each cut off after [`HELLO_TIMEOUT`]; the listener keeps
//! accepting meanwhile (see the module documentation of [`tcp`](super)).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::link::Link;
use super::{set_buffers, Security, TcpOptions, HELLO_TIMEOUT, MAX_PENDING_HELLOS};
use crate::frame::{FrameHeader, FrameKind, StreamCheck, HEADER_LEN};
use crate::NetError;

/// Refusals kept for the error message.
const MAX_REFUSALS: usize = 8;

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// Notes why a connection was refused, for the error message if the peer never comes.
fn refuse(refused: &mut Vec<String>, from: SocketAddr, why: String) {
    if refused.len() < MAX_REFUSALS {
        refused.push(format!("connection from {from}: {why}"));
    }
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

/// Connects to a lower-id `peer`, retrying until `deadline`.
pub(super) fn dial(
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
    Link::new(me, sock, tls, peer, session, options)
}

/// An accepted connection that completed its handshake and sent its hello.
struct Greeted {
    sock: TcpStream,
    tls: Option<rustls::Connection>,
    session: u64,
    /// The party id it claims.
    claimed: u64,
    tag: u64,
}

/// Runs the TLS handshake and reads the hello of an accepted connection (on a thread of its own).
fn greet(mut sock: TcpStream, mut tls: Option<rustls::Connection>, nodelay: bool) -> Result<Greeted, String> {
    sock.set_nonblocking(false).map_err(|e| e.to_string())?;
    sock.set_nodelay(nodelay).map_err(|e| e.to_string())?;
    // Each read and write; the accept loop also cuts the whole greeting off after the timeout.
    sock.set_read_timeout(Some(HELLO_TIMEOUT)).map_err(|e| e.to_string())?;
    sock.set_write_timeout(Some(HELLO_TIMEOUT)).map_err(|e| e.to_string())?;
    if let Some(t) = tls.as_mut() {
        handshake(&mut sock, t).map_err(|e| format!("TLS handshake failed: {}", tls_detail(&e)))?;
    }
    let (session, claimed, tag) = read_hello(&mut sock, tls.as_mut())?;
    Ok(Greeted { sock, tls, session, claimed, tag })
}

/// Checks a greeted connection and answers its hello; `Err` explains a refusal.
fn admit(
    me: usize,
    greeted: Greeted,
    security: &Security,
    options: &TcpOptions,
    links: &[Option<Link>; 3],
) -> Result<(usize, Link), String> {
    let Greeted { mut sock, mut tls, session, claimed, tag } = greeted;
    let peer = usize::try_from(claimed)
        .ok()
        .filter(|p| (me + 1..3).contains(p))
        .ok_or(format!("claims to be party {claimed}, which does not connect to party {me}"))?;
    if let Security::Tls(id) = security {
        let cert = tls.as_ref().and_then(|t| t.peer_certificates()).and_then(|c| c.first());
        let cert_party = cert.and_then(|c| id.party_of(c)).ok_or("no certificate")?;
        if cert_party != peer {
            return Err(format!("claims to be party {peer} but presented the certificate of party {cert_party}"));
        }
    }
    if links[peer].is_some() {
        return Err(format!("party {peer} is already connected"));
    }
    // Answer before judging the tag, so the connecting side can report the mismatch too.
    write_all(&mut sock, tls.as_mut(), &hello_frame(session, me, options.job_tag)).map_err(|e| e.to_string())?;
    if tag != options.job_tag {
        return Err(format!("party {peer} runs a different job or settings (job tags differ)"));
    }
    let link = Link::new(me, sock, tls, peer, session, options).map_err(|e| e.to_string())?;
    Ok((peer, link))
}

/// A connection being greeted.
struct Pending {
    ticket: u64,
    from: SocketAddr,
    since: Instant,
    /// A handle on its socket, to cut a slow greeting off.
    sock: TcpStream,
}

/// Accepts the parties with higher ids than `me` until `deadline`, greeting connections
/// concurrently and refusing strangers.
pub(super) fn accept_all(
    me: usize,
    listener: &TcpListener,
    security: &Security,
    options: &TcpOptions,
    deadline: Instant,
    links: &mut [Option<Link>; 3],
) -> Result<(), NetError> {
    listener.set_nonblocking(true).map_err(|e| NetError::Io(format!("listener: {e}")))?;
    let (done_tx, done_rx) = mpsc::channel::<(u64, Result<Greeted, String>)>();
    let mut pending: Vec<Pending> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    let mut tickets = 0u64;
    let result = loop {
        for (ticket, greeted) in done_rx.try_iter() {
            // A connection cut off for its slowness was refused already.
            let Some(i) = pending.iter().position(|p| p.ticket == ticket) else { continue };
            let p = pending.swap_remove(i);
            match greeted.and_then(|g| admit(me, g, security, options, links)) {
                Ok((peer, link)) => links[peer] = Some(link),
                Err(why) => refuse(&mut refused, p.from, why),
            }
        }
        let Some(waiting) = (me + 1..3).find(|&p| links[p].is_none()) else { break Ok(()) };
        let now = Instant::now();
        pending.retain(|p| {
            let late = now.duration_since(p.since) >= HELLO_TIMEOUT;
            if late {
                let _ = p.sock.shutdown(std::net::Shutdown::Both);
                refuse(&mut refused, p.from, format!("no TLS handshake and hello within {HELLO_TIMEOUT:?}"));
            }
            !late
        });
        if now >= deadline {
            let mut detail = format!("party {waiting} did not connect within {:?}", options.connect_timeout);
            for p in &pending {
                refuse(&mut refused, p.from, "still in its TLS handshake or hello".into());
            }
            if !refused.is_empty() {
                detail += &format!("; refused: {}", refused.join("; "));
            }
            break Err(NetError::Connect { peer: waiting, detail });
        }
        if pending.len() < MAX_PENDING_HELLOS {
            match listener.accept() {
                Ok((sock, from)) => {
                    let handle = match sock.try_clone() {
                        Ok(h) => h,
                        Err(e) => {
                            refuse(&mut refused, from, format!("cannot keep a handle on the socket: {e}"));
                            continue;
                        }
                    };
                    let tls = match security {
                        Security::Tls(id) => match id.server() {
                            Ok(t) => Some(t),
                            Err(e) => break Err(e),
                        },
                        Security::InsecurePlaintext => None,
                    };
                    tickets += 1;
                    let (ticket, tx, nodelay) = (tickets, done_tx.clone(), options.nodelay);
                    let spawned = std::thread::Builder::new().name(format!("cryptgpu-p{me}-greet")).spawn(move || {
                        // The accept loop may be gone (setup finished or failed): then the
                        // connection just closes.
                        let _ = tx.send((ticket, greet(sock, tls, nodelay)));
                    });
                    match spawned {
                        Ok(_) => pending.push(Pending { ticket, from, since: now, sock: handle }),
                        Err(e) => refuse(&mut refused, from, format!("cannot start a thread to greet it: {e}")),
                    }
                    continue;
                }
                Err(e) if would_block(&e) || e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(NetError::Io(format!("accepting: {e}"))),
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    // Greetings still running end now.
    for p in &pending {
        let _ = p.sock.shutdown(std::net::Shutdown::Both);
    }
    result
}
