//! The receiving half of a link: the incremental frame reader of [`TcpTransport`](super::TcpTransport).
//!
//! [`Receiver`] turns the plaintext byte stream from one peer into the messages a round expects.
//! It reads from any [`Source`]: live links hand it their socket (through TLS when there is one),
//! and [`MemoryReceiver`] hands it bytes from memory, so the property tests below and the fuzzer
//! drive exactly the code that runs on the network.
//!
//! **Memory.** A payload buffer is allocated only after its header was checked against the round's
//! expectation: it holds exactly the expected number of words (one for close and waiting frames),
//! whatever length the peer announces. Bytes read ahead of need go to an inbox that never grows
//! past [`TcpOptions::max_read_ahead`](super::TcpOptions::max_read_ahead) plus one read chunk.

use std::collections::VecDeque;

use crate::frame::{decode_frame, CloseReason, FrameHeader, FrameKind, StreamCheck, HEADER_LEN};
use crate::NetError;

/// Bytes read per call into the inbox when no receive is pending.
pub(crate) const INBOX_CHUNK: usize = 64 * 1024;

/// Plaintext bytes from one peer.
pub(crate) trait Source {
    /// Reads some bytes into `buf` (never empty): `Some(0)` at the end of the stream, `None` when
    /// none are available now.
    fn read_some(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NetError>;
}

/// A receive in progress: header, then exactly the expected payload.
struct RecvJob {
    /// Words the round expects.
    words: usize,
    header: [u8; HEADER_LEN],
    /// Bytes of header and payload received.
    got: usize,
    /// The checked header's kind, once complete.
    kind: Option<FrameKind>,
    /// Little-endian payload words.
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

    /// Where the next received bytes go (not empty while the job is not done).
    fn slot(&mut self) -> &mut [u8] {
        if self.got < HEADER_LEN {
            &mut self.header[self.got..]
        } else {
            let at = self.got - HEADER_LEN;
            &mut bytemuck::cast_slice_mut(&mut self.payload)[at..]
        }
    }
}

/// Bytes received ahead of need (a peer ahead by some rounds): `buf[start..]` is unread.
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
            // holds mostly unread bytes.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        n
    }

    /// Reads up to [`INBOX_CHUNK`] bytes from `src` behind the unread ones. The buffer grows by
    /// doubling, but never beyond `limit + INBOX_CHUNK` bytes (the caller reads only while fewer
    /// than `limit` bytes are unread).
    fn fill_from(&mut self, src: &mut impl Source, limit: usize) -> Result<Option<usize>, NetError> {
        if self.buf.len() + INBOX_CHUNK > self.buf.capacity() && self.start > 0 {
            // Reclaim the consumed front before growing.
            self.buf.drain(..self.start);
            self.start = 0;
        }
        let len = self.buf.len();
        let want = len + INBOX_CHUNK;
        if want > self.buf.capacity() {
            let target = (self.buf.capacity() * 2).min(limit.saturating_add(INBOX_CHUNK)).max(want);
            self.buf.reserve_exact(target - len);
        }
        self.buf.resize(want, 0);
        let r = src.read_some(&mut self.buf[len..]);
        self.buf.truncate(len + r.as_ref().ok().copied().flatten().unwrap_or(0));
        r
    }
}

/// What a link learned about its peer's end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PeerEnd {
    Open,
    /// The peer sent a close frame (only seen when this party reads up to it).
    Closed(CloseReason),
    /// The stream ended (the close frame, if any, is in the inbox).
    Eof,
}

/// What one [`Receiver::pump`] moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Moved {
    /// Some bytes were read.
    pub(crate) bytes: bool,
    /// Some of them belong to a data or close frame of the pending receive: progress that a peer
    /// sending only waiting frames never makes.
    pub(crate) data: bool,
}

/// The receiving state of one link.
pub(crate) struct Receiver {
    /// This party's id.
    me: usize,
    peer: usize,
    check: StreamCheck,
    inbox: Inbox,
    /// [`TcpOptions::max_read_ahead`](super::TcpOptions::max_read_ahead).
    max_read_ahead: usize,
    job: Option<RecvJob>,
    end: PeerEnd,
    /// The party the peer last said it is stuck waiting on (a [`FrameKind::Waiting`] frame).
    peer_waits_on: Option<usize>,
}

impl Receiver {
    /// The state after the hello exchange of a link with `peer` in `session`.
    pub(crate) fn new(me: usize, peer: usize, session: u64, max_words: u64, max_read_ahead: usize) -> Self {
        Receiver {
            me,
            peer,
            check: StreamCheck::after_hello(session, max_words),
            inbox: Inbox::default(),
            max_read_ahead,
            job: None,
            end: PeerEnd::Open,
            peer_waits_on: None,
        }
    }

    fn gone(&self) -> NetError {
        NetError::PeerGone { peer: self.peer }
    }

    fn malformed(&self, detail: impl std::fmt::Display) -> NetError {
        NetError::Malformed { peer: self.peer, detail: detail.to_string() }
    }

    /// Starts a round that expects `words` words from the peer (`None`: nothing).
    pub(crate) fn start_round(&mut self, words: Option<usize>) {
        self.job = words.map(RecvJob::new);
        self.peer_waits_on = None;
    }

    /// The round still waits for the peer's message.
    pub(crate) fn needs_data(&self) -> bool {
        self.job.as_ref().is_some_and(|j| !j.satisfied())
    }

    /// Takes the expected message once it is in (`None`: not expected, or not complete).
    pub(crate) fn take_message(&mut self) -> Option<Vec<u64>> {
        if !self.job.as_ref().is_some_and(RecvJob::satisfied) {
            return None;
        }
        self.job.take().map(|j| {
            let mut p = j.payload;
            for w in p.iter_mut() {
                *w = u64::from_le(*w);
            }
            p
        })
    }

    /// Drops the pending receive and everything read ahead (a transport that is closing).
    pub(crate) fn discard(&mut self) {
        self.job = None;
        self.inbox = Inbox::default();
    }

    /// The peer's end of the link is still open (no close frame read, no end of stream).
    pub(crate) fn is_open(&self) -> bool {
        self.end == PeerEnd::Open
    }

    /// The party the peer said it waits on in this round.
    pub(crate) fn peer_waits_on(&self) -> Option<usize> {
        self.peer_waits_on
    }

    /// Reads what `src` has: into the pending receive, or ahead into the inbox (up to the
    /// read-ahead limit). Returns after each waiting frame, so that a peer streaming them cannot
    /// keep the caller from checking its timers.
    pub(crate) fn pump(&mut self, src: &mut impl Source) -> Result<Moved, NetError> {
        let mut moved = Moved::default();
        loop {
            let n = match self.job.as_mut().filter(|j| !j.done()) {
                // Bytes that arrived ahead of need come first, even after the peer's end.
                Some(j) if !self.inbox.bytes().is_empty() => self.inbox.take_into(j.slot()),
                _ if self.end != PeerEnd::Open => break,
                Some(j) => match src.read_some(j.slot())? {
                    Some(0) => {
                        self.end = PeerEnd::Eof;
                        break;
                    }
                    Some(n) => n,
                    None => break,
                },
                // Far enough ahead: the rest waits in the socket until a receive needs it.
                None if self.inbox.bytes().len() >= self.max_read_ahead => break,
                None => {
                    match self.inbox.fill_from(src, self.max_read_ahead)? {
                        Some(0) => {
                            self.end = PeerEnd::Eof;
                            break;
                        }
                        Some(_) => moved.bytes = true,
                        None => break,
                    }
                    continue;
                }
            };
            moved.bytes = true;
            match self.advance(n, &mut moved) {
                Ok(true) => return Ok(moved),
                Ok(false) => {}
                Err(e) => {
                    // The frame cannot be read on: nothing more goes into this receive.
                    self.job = None;
                    return Err(e);
                }
            }
        }
        Ok(moved)
    }

    /// Accounts for `n` bytes that went into the pending receive. `Ok(true)`: a waiting frame
    /// just completed.
    fn advance(&mut self, n: usize, moved: &mut Moved) -> Result<bool, NetError> {
        let Some(j) = self.job.as_mut() else { return Ok(false) };
        j.got += n;
        if j.got == HEADER_LEN && j.kind.is_none() {
            let h = FrameHeader::decode(&j.header).map_err(|e| self.malformed(e))?;
            self.check.accept(&h).map_err(|e| self.malformed(e))?;
            let Some(j) = self.job.as_mut() else { return Ok(false) };
            // The payload is sized by the expectation, never by the announced length.
            let expected = j.words;
            let words = match h.kind {
                FrameKind::Data if h.words == expected as u64 => expected,
                FrameKind::Data => return Err(self.malformed(format!("expected {expected} words, got {}", h.words))),
                // `accept` checked that close and waiting frames have one word.
                FrameKind::Close | FrameKind::Waiting => 1,
                FrameKind::Hello => return Err(self.malformed("unexpected hello")),
            };
            j.payload = vec![0u64; words];
            j.kind = Some(h.kind);
        }
        let Some(j) = self.job.as_ref() else { return Ok(false) };
        let (kind, done, words) = (j.kind, j.done(), j.words);
        let first = j.payload.first().map(|&w| u64::from_le(w));
        match kind {
            Some(FrameKind::Waiting) if done => {
                // The peer is alive and says whom it waits on; the expected message comes next.
                let on = first.and_then(|w| usize::try_from(w).ok()).filter(|&p| p < 3);
                self.peer_waits_on = Some(on.ok_or_else(|| self.malformed("bad waiting frame"))?);
                self.job = Some(RecvJob::new(words));
                Ok(true)
            }
            Some(FrameKind::Waiting) | None => Ok(false),
            Some(kind) => {
                moved.data = true;
                if kind == FrameKind::Close && done {
                    let reason = first.and_then(CloseReason::from_code);
                    self.end = PeerEnd::Closed(reason.ok_or_else(|| self.malformed("bad close frame"))?);
                }
                Ok(false)
            }
        }
    }

    /// The error for a link whose peer ended (`None`: still open, or the peer finished cleanly and
    /// nothing more is needed from it).
    pub(crate) fn end_error(&self) -> Option<NetError> {
        let needs_more = self.needs_data();
        match self.end {
            PeerEnd::Open => None,
            PeerEnd::Closed(CloseReason::PeerFailed(c)) if c != self.peer && c != self.me => {
                Some(NetError::PeerStopped { peer: self.peer, culprit: c })
            }
            PeerEnd::Closed(_) => needs_more.then(|| self.gone()),
            PeerEnd::Eof => {
                // Look for the peer's close frame among the bytes it sent ahead.
                let mut check = self.check;
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

    /// Bytes of buffer this receiver holds (inbox and payload capacity).
    fn held_bytes(&self) -> usize {
        self.inbox.buf.capacity() + self.job.as_ref().map_or(0, |j| 8 * j.payload.capacity())
    }
}

/// Bytes fed from memory, one arrival at a time.
#[derive(Default)]
struct MemorySource {
    arrivals: VecDeque<Vec<u8>>,
    /// Bytes of the front arrival already read.
    at: usize,
    ended: bool,
}

impl Source for MemorySource {
    fn read_some(&mut self, buf: &mut [u8]) -> Result<Option<usize>, NetError> {
        while let Some(front) = self.arrivals.front() {
            let rest = &front[self.at..];
            if rest.is_empty() {
                self.arrivals.pop_front();
                self.at = 0;
                continue;
            }
            let n = rest.len().min(buf.len());
            buf[..n].copy_from_slice(&rest[..n]);
            self.at += n;
            return Ok(Some(n));
        }
        Ok(self.ended.then_some(0))
    }
}

/// The receive state machine of a link (party 0's link from party 1), fed from memory instead of
/// a socket: the very code a live link runs on the bytes it reads. For the fuzzer and property
/// tests; not a stable API.
#[doc(hidden)]
pub struct MemoryReceiver {
    rx: Receiver,
    src: MemorySource,
}

impl MemoryReceiver {
    /// A link in `session` after the hello exchange, with the given limits.
    pub fn new(session: u64, max_words: u64, max_read_ahead: usize) -> Self {
        MemoryReceiver { rx: Receiver::new(0, 1, session, max_words, max_read_ahead), src: MemorySource::default() }
    }

    /// `bytes` arrive from the peer.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.src.arrivals.push_back(bytes.to_vec());
    }

    /// The peer's stream ends after the bytes fed so far.
    pub fn finish(&mut self) {
        self.src.ended = true;
    }

    /// Starts a round that expects `words` words (`None`: nothing; bytes are read ahead).
    pub fn expect(&mut self, words: Option<usize>) {
        self.rx.start_round(words);
    }

    /// Reads everything available, as a live link does while its round waits. `Ok(Some(msg))`:
    /// the expected message; `Ok(None)`: it is not complete yet (or none is expected); `Err`: the
    /// error the round fails with.
    pub fn step(&mut self) -> Result<Option<Vec<u64>>, NetError> {
        while self.rx.pump(&mut self.src)?.bytes {}
        if !self.rx.needs_data() {
            return Ok(self.rx.take_message());
        }
        self.rx.end_error().map_or(Ok(None), Err)
    }

    /// The party the peer last said it waits on in this round.
    pub fn peer_waits_on(&self) -> Option<usize> {
        self.rx.peer_waits_on()
    }

    /// Bytes of buffer the receiver holds now (read-ahead inbox and payload).
    pub fn held_bytes(&self) -> usize {
        self.rx.held_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Frame, FrameError};
    use proptest::prelude::*;

    const SESSION: u64 = 0x5e55;

    fn frame(kind: FrameKind, seq: u64, payload: Vec<u64>) -> Vec<u8> {
        Frame { header: FrameHeader { kind, session: SESSION, seq, words: payload.len() as u64 }, payload }.encode()
    }

    fn malformed(detail: impl ToString) -> NetError {
        NetError::Malformed { peer: 1, detail: detail.to_string() }
    }

    /// What the peer sends before a message.
    #[derive(Debug, Clone)]
    enum Item {
        Message(Vec<u64>),
        Waiting(u64),
    }

    fn items() -> impl Strategy<Value = Vec<Item>> {
        let item = prop_oneof![
            3 => proptest::collection::vec(any::<u64>(), 0..40).prop_map(Item::Message),
            1 => (0u64..3).prop_map(Item::Waiting),
        ];
        proptest::collection::vec(item, 0..12)
    }

    /// Encodes items from sequence number 1; returns the bytes and the messages.
    fn encode(items: &[Item]) -> (Vec<u8>, Vec<Vec<u64>>) {
        let mut bytes = Vec::new();
        let mut messages = Vec::new();
        for (i, it) in items.iter().enumerate() {
            let seq = i as u64 + 1;
            match it {
                Item::Message(m) => {
                    bytes.extend(frame(FrameKind::Data, seq, m.clone()));
                    messages.push(m.clone());
                }
                Item::Waiting(on) => bytes.extend(frame(FrameKind::Waiting, seq, vec![*on])),
            }
        }
        (bytes, messages)
    }

    /// Splits `bytes` at the given (sorted, deduplicated) cut points.
    fn split(bytes: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
        let mut cuts: Vec<usize> = cuts.iter().map(|&c| c.min(bytes.len())).collect();
        cuts.sort_unstable();
        cuts.dedup();
        let mut out = Vec::new();
        let mut at = 0;
        for c in cuts.into_iter().chain([bytes.len()]) {
            out.push(bytes[at..c].to_vec());
            at = c;
        }
        out
    }

    /// Upper bound on what a receiver may hold while it expects `words` words.
    fn held_bound(words: usize, read_ahead: usize) -> usize {
        read_ahead + INBOX_CHUNK + 8 * words.max(1)
    }

    /// Runs rounds expecting `expected` (`None`: a round that expects nothing and only reads
    /// ahead), feeding `arrivals` one at a time whenever the receiver needs more; finishes the
    /// stream after the last. Checks the memory bound throughout. Returns the messages delivered
    /// and the error that stopped the rounds, if any.
    fn run(
        arrivals: Vec<Vec<u8>>,
        expected: &[Option<usize>],
        max_words: u64,
        read_ahead: usize,
        finish: bool,
    ) -> Result<(Vec<Vec<u64>>, Option<NetError>), TestCaseError> {
        let mut r = MemoryReceiver::new(SESSION, max_words, read_ahead);
        let mut arrivals = VecDeque::from(arrivals);
        let mut got = Vec::new();
        for &words in expected {
            r.expect(words);
            if words.is_none() {
                // Bytes that arrive during a round that expects none are read ahead.
                if let Some(a) = arrivals.pop_front() {
                    r.feed(&a);
                }
            }
            loop {
                let step = r.step();
                prop_assert!(
                    r.held_bytes() <= held_bound(words.unwrap_or(0), read_ahead),
                    "holds {} bytes",
                    r.held_bytes()
                );
                match step {
                    Ok(Some(m)) => {
                        prop_assert_eq!(Some(m.len()), words);
                        got.push(m);
                        break;
                    }
                    Err(e) => return Ok((got, Some(e))),
                    Ok(None) if words.is_none() => break,
                    Ok(None) => match arrivals.pop_front() {
                        Some(a) => r.feed(&a),
                        None if finish && !r.src.ended => r.finish(),
                        // Nothing more will come: a live round would time out here.
                        None => return Ok((got, None)),
                    },
                }
            }
        }
        Ok((got, None))
    }

    #[test]
    fn waiting_frames_are_not_data_progress() {
        let mut r = Receiver::new(0, 1, SESSION, 16, 1 << 20);
        let mut src = MemorySource::default();
        for seq in 1..=3 {
            src.arrivals.push_back(frame(FrameKind::Waiting, seq, vec![2]));
        }
        src.arrivals.push_back(frame(FrameKind::Data, 4, vec![9, 8]));
        r.start_round(Some(2));
        // One waiting frame per pump: the caller gets to check its timers in between.
        for _ in 0..3 {
            assert_eq!(r.pump(&mut src), Ok(Moved { bytes: true, data: false }));
            assert_eq!(r.peer_waits_on(), Some(2));
        }
        assert_eq!(r.pump(&mut src), Ok(Moved { bytes: true, data: true }));
        assert_eq!(r.take_message(), Some(vec![9, 8]));
        assert_eq!(r.pump(&mut src), Ok(Moved::default()));
    }

    #[test]
    fn announced_lengths_are_checked_before_allocating() {
        for words in [3, 1 << 40, u64::MAX] {
            let mut r = MemoryReceiver::new(SESSION, u64::MAX, 1 << 16);
            r.expect(Some(2));
            r.feed(&FrameHeader { kind: FrameKind::Data, session: SESSION, seq: 1, words }.encode());
            assert_eq!(r.step(), Err(malformed(format!("expected 2 words, got {words}"))));
            assert!(r.held_bytes() <= INBOX_CHUNK, "{}", r.held_bytes());
        }
        let mut r = MemoryReceiver::new(SESSION, 4, 1 << 16);
        r.expect(Some(2));
        r.feed(&FrameHeader { kind: FrameKind::Data, session: SESSION, seq: 1, words: 5 }.encode());
        assert_eq!(r.step(), Err(malformed(FrameError::TooLarge { words: 5, max: 4 })));
    }

    #[test]
    fn read_ahead_stays_within_its_limit() {
        let limit = 3 * INBOX_CHUNK + 5;
        let mut r = MemoryReceiver::new(SESSION, 1 << 20, limit);
        let msg: Vec<u64> = (0..100_000).collect();
        let bytes = frame(FrameKind::Data, 1, msg.clone());
        r.feed(&bytes);
        r.expect(None);
        assert_eq!(r.step(), Ok(None));
        assert_eq!(r.rx.inbox.bytes().len(), 4 * INBOX_CHUNK, "reads stop at the first chunk past the limit");
        assert!(r.held_bytes() <= limit + INBOX_CHUNK);
        r.expect(Some(msg.len()));
        assert_eq!(r.step(), Ok(Some(msg)));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Valid frames with waiting frames between them, arriving in random pieces, with rounds
        /// that read ahead in between: every message is delivered byte for byte, in order, and
        /// the last waiting frame before a message is remembered.
        #[test]
        fn valid_streams_are_delivered_exactly(
            items in items(),
            cuts in proptest::collection::vec(0usize..2000, 0..30),
            ahead in proptest::collection::vec(any::<bool>(), 12),
            read_ahead in prop_oneof![Just(1usize), Just(100), Just(1 << 20)],
            close in any::<bool>(),
        ) {
            let (mut bytes, messages) = encode(&items);
            if close {
                bytes.extend(frame(FrameKind::Close, items.len() as u64 + 1, vec![CloseReason::Done.code()]));
            }
            let mut expected = Vec::new();
            for (m, &a) in messages.iter().zip(&ahead) {
                if a {
                    expected.push(None);
                }
                expected.push(Some(m.len()));
            }
            let (got, err) = run(split(&bytes, &cuts), &expected, 64, read_ahead, true)?;
            prop_assert_eq!(err, None);
            prop_assert_eq!(got, messages.clone());
            // After the last message the peer's end shows: a clean close is no error until data
            // is needed; a missing close frame is a crash.
            let (_, err) = run(split(&bytes, &cuts), &[expected, vec![Some(1)]].concat(), 64, read_ahead, true)?;
            prop_assert_eq!(err, Some(NetError::PeerGone { peer: 1 }));
        }

        /// The waiting frames before a message tell whom the peer waits on.
        #[test]
        fn waiting_frames_name_the_third_party(ons in proptest::collection::vec(0u64..3, 1..6), cut in 0usize..400) {
            let mut items: Vec<Item> = ons.iter().map(|&o| Item::Waiting(o)).collect();
            items.push(Item::Message(vec![7]));
            let (bytes, _) = encode(&items);
            let mut r = MemoryReceiver::new(SESSION, 4, 1 << 16);
            r.expect(Some(1));
            let cut = cut.min(bytes.len());
            r.feed(&bytes[..cut]);
            let mut got = r.step();
            if got == Ok(None) {
                r.feed(&bytes[cut..]);
                got = r.step();
            }
            prop_assert_eq!(got, Ok(Some(vec![7])));
            prop_assert_eq!(r.peer_waits_on(), ons.last().map(|&o| o as usize));
        }

        /// A stream cut short: the round fails with `PeerGone` (no close frame came), never
        /// delivers a partial message, and delivers every message that was complete.
        #[test]
        fn truncated_streams_are_a_vanished_peer(items in items(), cut in 0usize..3000, pieces in 1usize..8) {
            let (bytes, messages) = encode(&items);
            let cut = cut.min(bytes.len());
            let arrivals = split(&bytes[..cut], &(1..pieces).map(|i| i * cut / pieces).collect::<Vec<_>>());
            let expected: Vec<Option<usize>> = messages.iter().map(|m| Some(m.len())).collect();
            let (got, err) = run(arrivals, &expected, 64, 1 << 16, true)?;
            prop_assert_eq!(&got[..], &messages[..got.len()]);
            if got.len() < messages.len() {
                prop_assert_eq!(err, Some(NetError::PeerGone { peer: 1 }));
            }
        }

        /// One bad frame after valid ones: the exact error, after the valid messages.
        #[test]
        fn bad_frames_give_the_exact_error(
            items in items(),
            fault in 0u8..6,
            words in 0u64..1000,
            cuts in proptest::collection::vec(0usize..3000, 0..10),
        ) {
            let (mut bytes, messages) = encode(&items);
            let seq = items.len() as u64 + 1;
            let expect_words = 4usize;
            let max_words = 64;
            let header = |kind, session, seq, words| FrameHeader { kind, session, seq, words }.encode().to_vec();
            let (bad, error) = match fault {
                0 => (
                    header(FrameKind::Data, SESSION ^ 1, seq, 4),
                    malformed(FrameError::WrongSession { expected: SESSION, got: SESSION ^ 1 }),
                ),
                1 => (
                    header(FrameKind::Data, SESSION, seq + 1 + words, 4),
                    malformed(FrameError::OutOfSequence { expected: seq, got: seq + 1 + words }),
                ),
                2 => (
                    header(FrameKind::Data, SESSION, seq, max_words + 1 + words),
                    malformed(FrameError::TooLarge { words: max_words + 1 + words, max: max_words }),
                ),
                3 => {
                    let w = if words as usize == expect_words { 0 } else { words.min(max_words) };
                    let error = malformed(format!("expected {expect_words} words, got {w}"));
                    (header(FrameKind::Data, SESSION, seq, w), error)
                }
                4 => (frame(FrameKind::Waiting, seq, vec![3 + words]), malformed("bad waiting frame")),
                _ => {
                    let mut b = header(FrameKind::Data, SESSION, seq, 4);
                    b[0] ^= 0x80;
                    let magic = [b[0], b[1], b[2], b[3]];
                    (b, malformed(FrameError::BadMagic(magic)))
                }
            };
            bytes.extend(&bad);
            // Whatever follows is never read.
            bytes.extend([0xAB; 64]);
            let mut expected: Vec<Option<usize>> = messages.iter().map(|m| Some(m.len())).collect();
            expected.push(Some(expect_words));
            let (got, err) = run(split(&bytes, &cuts), &expected, max_words, 1 << 16, false)?;
            prop_assert_eq!(got, messages);
            prop_assert_eq!(err, Some(error));
        }

        /// Valid streams with a few bytes flipped: every message that lies wholly before the
        /// first flip is delivered exactly; after it, the stream either still decodes (a flip in
        /// a payload) or fails with an error naming the peer; never a panic.
        #[test]
        fn corrupted_streams_fail_cleanly(
            items in items(),
            flips in proptest::collection::vec((0usize..3000, 1u8..=255), 1..4),
            cuts in proptest::collection::vec(0usize..3000, 0..10),
        ) {
            let (mut bytes, messages) = encode(&items);
            let mut ends = Vec::new();
            let mut at = 0;
            for it in &items {
                at += HEADER_LEN + 8 * match it { Item::Message(m) => m.len(), Item::Waiting(_) => 1 };
                if let Item::Message(_) = it {
                    ends.push(at);
                }
            }
            for &(at, x) in &flips {
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= x;
                }
            }
            let first_flip = flips.iter().map(|f| f.0).min().unwrap_or(usize::MAX);
            let expected: Vec<Option<usize>> = messages.iter().map(|m| Some(m.len())).collect();
            let (got, err) = run(split(&bytes, &cuts), &expected, 64, 1 << 16, true)?;
            for (i, m) in got.iter().enumerate() {
                if ends[i] <= first_flip {
                    prop_assert_eq!(m, &messages[i]);
                }
            }
            if got.len() < messages.len() {
                prop_assert!(ends[got.len()] > first_flip, "a clean message was not delivered");
                let e = err.unwrap();
                prop_assert!(
                    matches!(e, NetError::Malformed { peer: 1, .. } | NetError::PeerGone { peer: 1 }
                        | NetError::PeerStopped { peer: 1, culprit: 2 }),
                    "{e}"
                );
            }
        }

        /// Random bytes (after an optional valid prefix), random pieces and random expectations:
        /// never a panic, never more memory than the bounds, and every error names the peer.
        #[test]
        fn random_streams_never_panic(
            items in items(),
            noise in proptest::collection::vec(any::<u8>(), 0..600),
            cuts in proptest::collection::vec(0usize..3000, 0..10),
            expected in proptest::collection::vec(proptest::option::of(0usize..50), 1..8),
            read_ahead in 1usize..300,
            finish in any::<bool>(),
        ) {
            let (mut bytes, _) = encode(&items);
            bytes.extend(noise);
            let (got, err) = run(split(&bytes, &cuts), &expected, 40, read_ahead, finish)?;
            prop_assert!(got.len() <= expected.len());
            if let Some(e) = err {
                prop_assert!(
                    matches!(e, NetError::Malformed { peer: 1, .. } | NetError::PeerGone { peer: 1 }
                        | NetError::PeerStopped { peer: 1, culprit: 2 }),
                    "{e}"
                );
            }
        }
    }
}
