//! The wire format of [`TcpTransport`](crate::TcpTransport): frames with a fixed header.
//!
//! A frame is a 32-byte header followed by `words` 64-bit payload words, all little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `b"CGPU"` |
//! | 4 | 2 | protocol version ([`VERSION`]) |
//! | 6 | 2 | kind ([`FrameKind`]: hello, data, waiting, close) |
//! | 8 | 8 | session id of the link (random, agreed in the hello exchange) |
//! | 16 | 8 | sequence number, per direction: 0 for the hello, then 1, 2, ... |
//! | 24 | 8 | payload length in 64-bit words |
//!
//! The payload length is in words, not bytes, so a frame can never split a ring element, and the
//! receiver can check it against the exact number of words the protocol expects before reading
//! any payload. Everything here is pure (no I/O), so the decoder can be fuzzed: no input makes it
//! panic or allocate more than [`StreamCheck::max_words`] words.

use thiserror::Error;

/// Bytes in a frame header.
pub const HEADER_LEN: usize = 32;
/// The first four bytes of every frame.
pub const MAGIC: [u8; 4] = *b"CGPU";
/// The protocol version this build speaks; a peer with another version is refused.
pub const VERSION: u16 = 1;
/// Default largest accepted payload: 2^31 words (16 GiB).
pub const DEFAULT_MAX_WORDS: u64 = 1 << 31;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// The first frame of each direction of a link: `[party id, job tag]` (sequence number 0).
    Hello,
    /// One protocol message: the payload is the message's words.
    Data,
    /// The sender is closing the link; the payload is one [`CloseReason`] code.
    Close,
    /// The sender is alive but stuck waiting on the party in its one payload word (sent to the
    /// other neighbour, so that a timeout there blames the right party).
    Waiting,
}

impl FrameKind {
    fn code(self) -> u16 {
        match self {
            FrameKind::Hello => 1,
            FrameKind::Data => 2,
            FrameKind::Close => 3,
            FrameKind::Waiting => 4,
        }
    }

    fn from_code(code: u16) -> Option<Self> {
        match code {
            1 => Some(FrameKind::Hello),
            2 => Some(FrameKind::Data),
            3 => Some(FrameKind::Close),
            4 => Some(FrameKind::Waiting),
            _ => None,
        }
    }
}

/// Why a party closes its links (the payload of a [`FrameKind::Close`] frame).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The party is done (finished, or stopped for a reason of its own).
    Done,
    /// The party stopped because the given party failed (vanished, went silent or misbehaved).
    PeerFailed(usize),
}

impl CloseReason {
    /// The payload word.
    pub fn code(self) -> u64 {
        match self {
            CloseReason::Done => 0,
            CloseReason::PeerFailed(p) => 1 + p as u64,
        }
    }

    /// Decodes a payload word; `None` for an unknown code.
    pub fn from_code(code: u64) -> Option<Self> {
        match code {
            0 => Some(CloseReason::Done),
            1..=3 => Some(CloseReason::PeerFailed((code - 1) as usize)),
            _ => None,
        }
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// What the frame carries.
    pub kind: FrameKind,
    /// The link's session id.
    pub session: u64,
    /// Sequence number within this direction of the link.
    pub seq: u64,
    /// Payload length in 64-bit words.
    pub words: u64,
}

/// Why bytes are not a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The input ends inside a frame.
    #[error("truncated frame: {needed} bytes needed, {got} available")]
    Truncated {
        /// Bytes the frame needs.
        needed: u64,
        /// Bytes there are.
        got: u64,
    },
    /// The frame does not start with [`MAGIC`].
    #[error("bad magic {0:02x?} (not a cryptgpu frame)")]
    BadMagic([u8; 4]),
    /// The peer speaks another protocol version.
    #[error("protocol version {got}, this build speaks {VERSION}")]
    BadVersion {
        /// The peer's version.
        got: u16,
    },
    /// Unknown frame kind.
    #[error("unknown frame kind {0}")]
    BadKind(u16),
    /// The frame belongs to another session (a stale or foreign connection).
    #[error("session id {got:#018x}, expected {expected:#018x}")]
    WrongSession {
        /// The link's session.
        expected: u64,
        /// The frame's.
        got: u64,
    },
    /// A frame was lost, repeated or reordered.
    #[error("sequence number {got}, expected {expected}")]
    OutOfSequence {
        /// The next number of this direction.
        expected: u64,
        /// The frame's.
        got: u64,
    },
    /// The payload is larger than the configured maximum.
    #[error("payload of {words} words exceeds the maximum of {max}")]
    TooLarge {
        /// The announced length.
        words: u64,
        /// The limit.
        max: u64,
    },
    /// A hello after the start, or data before the hello.
    #[error("unexpected {got:?} frame (expected {expected})")]
    UnexpectedKind {
        /// What came.
        got: FrameKind,
        /// What the link state allows.
        expected: &'static str,
    },
    /// A close frame with an unknown reason code or a wrong length.
    #[error("malformed close frame")]
    BadClose,
    /// A waiting frame with a wrong length or party id.
    #[error("malformed waiting frame")]
    BadWaiting,
}

impl FrameHeader {
    /// The header's 32 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&VERSION.to_le_bytes());
        b[6..8].copy_from_slice(&self.kind.code().to_le_bytes());
        b[8..16].copy_from_slice(&self.session.to_le_bytes());
        b[16..24].copy_from_slice(&self.seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.words.to_le_bytes());
        b
    }

    /// Decodes and checks the fixed fields (magic, version, kind) of the first [`HEADER_LEN`]
    /// bytes of `bytes`; session, sequence and length are checked by [`StreamCheck`].
    pub fn decode(bytes: &[u8]) -> Result<FrameHeader, FrameError> {
        let b: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(FrameError::Truncated { needed: HEADER_LEN as u64, got: bytes.len() as u64 })?;
        let magic = [b[0], b[1], b[2], b[3]];
        if magic != MAGIC {
            return Err(FrameError::BadMagic(magic));
        }
        let version = u16::from_le_bytes([b[4], b[5]]);
        if version != VERSION {
            return Err(FrameError::BadVersion { got: version });
        }
        let code = u16::from_le_bytes([b[6], b[7]]);
        let kind = FrameKind::from_code(code).ok_or(FrameError::BadKind(code))?;
        let word = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(w)
        };
        Ok(FrameHeader { kind, session: word(8), seq: word(16), words: word(24) })
    }

    /// Total frame length in bytes (header and payload); `None` on overflow.
    pub fn frame_len(&self) -> Option<u64> {
        self.words.checked_mul(8)?.checked_add(HEADER_LEN as u64)
    }
}

/// The receiving state of one direction of a link: which session and sequence number come next,
/// and the largest payload accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamCheck {
    /// The link's session id.
    pub session: u64,
    /// The sequence number the next frame must carry.
    pub next_seq: u64,
    /// Largest payload accepted, in words.
    pub max_words: u64,
}

impl StreamCheck {
    /// The state after the hello exchange: the next frame is number 1.
    pub fn after_hello(session: u64, max_words: u64) -> Self {
        StreamCheck { session, next_seq: 1, max_words }
    }

    /// Checks a header against the stream state and advances it. Hellos are only valid as frame 0;
    /// data and close frames only after it; a close frame has exactly one payload word.
    pub fn accept(&mut self, h: &FrameHeader) -> Result<(), FrameError> {
        if h.session != self.session {
            return Err(FrameError::WrongSession { expected: self.session, got: h.session });
        }
        if h.seq != self.next_seq {
            return Err(FrameError::OutOfSequence { expected: self.next_seq, got: h.seq });
        }
        if h.words > self.max_words {
            return Err(FrameError::TooLarge { words: h.words, max: self.max_words });
        }
        match (h.kind, self.next_seq) {
            (FrameKind::Hello, 0) | (FrameKind::Data | FrameKind::Close | FrameKind::Waiting, 1..) => {}
            (FrameKind::Hello, _) => return Err(FrameError::UnexpectedKind { got: h.kind, expected: "data or close" }),
            (_, 0) => return Err(FrameError::UnexpectedKind { got: h.kind, expected: "hello" }),
        }
        if h.kind == FrameKind::Close && h.words != 1 {
            return Err(FrameError::BadClose);
        }
        if h.kind == FrameKind::Waiting && h.words != 1 {
            return Err(FrameError::BadWaiting);
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        Ok(())
    }
}

/// A whole decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its header.
    pub header: FrameHeader,
    /// Its payload words.
    pub payload: Vec<u64>,
}

impl Frame {
    /// Encodes the frame (header and little-endian payload).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + 8 * self.payload.len());
        out.extend_from_slice(&self.header.encode());
        for w in &self.payload {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// The reason of a close frame (`None` for other kinds).
    pub fn close_reason(&self) -> Option<Result<CloseReason, FrameError>> {
        (self.header.kind == FrameKind::Close)
            .then(|| self.payload.first().and_then(|&c| CloseReason::from_code(c)).ok_or(FrameError::BadClose))
    }
}

/// Decodes the frame at the start of `bytes`, checking it against `check` (advanced only on
/// success). `Ok(None)`: `bytes` holds only the beginning of a valid frame (more is needed).
/// On success, also returns how many bytes the frame took.
pub fn decode_frame(bytes: &[u8], check: &mut StreamCheck) -> Result<Option<(Frame, usize)>, FrameError> {
    if bytes.len() < HEADER_LEN {
        // Reject a bad prefix as early as possible: a wrong magic is visible from the first byte.
        let n = bytes.len().min(4);
        if bytes[..n] != MAGIC[..n] {
            let mut m = [0u8; 4];
            m[..n].copy_from_slice(&bytes[..n]);
            return Err(FrameError::BadMagic(m));
        }
        return Ok(None);
    }
    let header = FrameHeader::decode(bytes)?;
    let mut next = *check;
    next.accept(&header)?;
    // `accept` bounded `words` by `max_words`; the length can still overflow on 32-bit hosts.
    let len = header
        .frame_len()
        .and_then(|l| usize::try_from(l).ok())
        .ok_or(FrameError::TooLarge { words: header.words, max: check.max_words })?;
    if bytes.len() < len {
        return Ok(None);
    }
    let payload: Vec<u64> = bytes[HEADER_LEN..len]
        .chunks_exact(8)
        .map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_le_bytes(w)
        })
        .collect();
    let frame = Frame { header, payload };
    if let Some(r) = frame.close_reason() {
        r?;
    }
    if header.kind == FrameKind::Waiting && !matches!(frame.payload.first(), Some(&p) if p <= 2) {
        return Err(FrameError::BadWaiting);
    }
    *check = next;
    Ok(Some((frame, len)))
}

/// Decodes all of `bytes` as a sequence of frames; trailing bytes that do not form a whole frame
/// are a [`FrameError::Truncated`] error.
pub fn decode_all(bytes: &[u8], check: &mut StreamCheck) -> Result<Vec<Frame>, FrameError> {
    let mut frames = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match decode_frame(&bytes[at..], check)? {
            Some((f, used)) => {
                frames.push(f);
                at += used;
            }
            None => {
                let rest = &bytes[at..];
                let needed = FrameHeader::decode(rest).ok().and_then(|h| h.frame_len()).unwrap_or(HEADER_LEN as u64);
                return Err(FrameError::Truncated { needed, got: rest.len() as u64 });
            }
        }
    }
    Ok(frames)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data(session: u64, seq: u64, payload: Vec<u64>) -> Frame {
        Frame { header: FrameHeader { kind: FrameKind::Data, session, seq, words: payload.len() as u64 }, payload }
    }

    #[test]
    fn round_trip_and_sequence() {
        let mut bytes = data(7, 1, vec![1, 2, u64::MAX]).encode();
        bytes.extend(data(7, 2, vec![]).encode());
        let close = Frame {
            header: FrameHeader { kind: FrameKind::Close, session: 7, seq: 3, words: 1 },
            payload: vec![CloseReason::PeerFailed(2).code()],
        };
        bytes.extend(close.encode());
        let mut check = StreamCheck::after_hello(7, 16);
        let frames = decode_all(&bytes, &mut check).unwrap();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].payload, vec![1, 2, u64::MAX]);
        assert_eq!(frames[2].close_reason(), Some(Ok(CloseReason::PeerFailed(2))));
        assert_eq!(check.next_seq, 4);
    }

    #[test]
    fn rejects_each_kind_of_bad_frame() {
        let good = data(7, 1, vec![5]).encode();
        let check = StreamCheck::after_hello(7, 4);
        let dec = |b: &[u8]| decode_frame(b, &mut check.clone());
        let mut b = good.clone();
        b[0] = b'X';
        assert!(matches!(dec(&b), Err(FrameError::BadMagic(_))));
        assert!(matches!(dec(b"XY"), Err(FrameError::BadMagic(_))));
        let mut b = good.clone();
        b[4] = 9;
        assert_eq!(dec(&b), Err(FrameError::BadVersion { got: 9 }));
        let mut b = good.clone();
        b[6] = 77;
        assert_eq!(dec(&b), Err(FrameError::BadKind(77)));
        assert_eq!(
            decode_frame(&good, &mut StreamCheck::after_hello(8, 4)),
            Err(FrameError::WrongSession { expected: 8, got: 7 })
        );
        assert_eq!(dec(&data(7, 2, vec![5]).encode()), Err(FrameError::OutOfSequence { expected: 1, got: 2 }));
        assert_eq!(dec(&data(7, 1, vec![0; 5]).encode()), Err(FrameError::TooLarge { words: 5, max: 4 }));
        // A header announcing an enormous payload is refused before anything is allocated.
        let mut huge = FrameHeader { kind: FrameKind::Data, session: 7, seq: 1, words: u64::MAX }.encode().to_vec();
        huge.extend([0; 8]);
        assert!(matches!(dec(&huge), Err(FrameError::TooLarge { .. })));
        assert_eq!(dec(&good[..good.len() - 1]), Ok(None));
        assert!(matches!(decode_all(&good[..good.len() - 1], &mut check.clone()), Err(FrameError::Truncated { .. })));
        let hello =
            Frame { header: FrameHeader { kind: FrameKind::Hello, session: 7, seq: 1, words: 0 }, payload: vec![] };
        assert!(matches!(dec(&hello.encode()), Err(FrameError::UnexpectedKind { .. })));
        let bad_close =
            Frame { header: FrameHeader { kind: FrameKind::Close, session: 7, seq: 1, words: 1 }, payload: vec![99] };
        assert_eq!(dec(&bad_close.encode()), Err(FrameError::BadClose));
        let waiting = |on: u64| Frame {
            header: FrameHeader { kind: FrameKind::Waiting, session: 7, seq: 1, words: 1 },
            payload: vec![on],
        };
        assert_eq!(dec(&waiting(2).encode()).map(|f| f.map(|(f, _)| f)), Ok(Some(waiting(2))));
        assert_eq!(dec(&waiting(3).encode()), Err(FrameError::BadWaiting));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Random bytes never make the decoder panic, and it never reports consuming more than it got.
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512), session in 0u64..3, max in 0u64..64) {
            let start = StreamCheck { session, next_seq: session % 2, max_words: max };
            let mut check = start;
            if let Ok(Some((f, used))) = decode_frame(&bytes, &mut check) {
                prop_assert!(used <= bytes.len());
                prop_assert_eq!(f.payload.len() as u64, f.header.words);
                prop_assert_eq!(f.encode(), bytes[..used].to_vec());
                prop_assert_eq!(check.next_seq, start.next_seq + 1);
            } else {
                prop_assert_eq!(check, start, "a failed decode must not advance the stream");
            }
            let _ = decode_all(&bytes, &mut StreamCheck::after_hello(session, max));
        }

        /// Random headers with the right magic and version (so that decoding gets past the first
        /// checks) and random payload bytes: never a panic, and accepted frames re-encode exactly.
        #[test]
        fn random_headers_never_panic(
            kind in 0u16..6, session in 0u64..2, seq in 0u64..3, words in 0u64..8,
            payload in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend(VERSION.to_le_bytes());
            bytes.extend(kind.to_le_bytes());
            bytes.extend(session.to_le_bytes());
            bytes.extend(seq.to_le_bytes());
            bytes.extend(words.to_le_bytes());
            bytes.extend(payload);
            let mut check = StreamCheck { session: 1, next_seq: 1, max_words: 4 };
            if let Ok(Some((f, used))) = decode_frame(&bytes, &mut check) {
                prop_assert_eq!(f.encode(), bytes[..used].to_vec());
            }
        }

        /// Valid frames with random corruption never panic; uncorrupted ones round-trip.
        #[test]
        fn corrupted_frames_never_panic(
            payload in proptest::collection::vec(any::<u64>(), 0..20),
            flips in proptest::collection::vec((0usize..200, any::<u8>()), 0..4),
            cut in 0usize..220,
        ) {
            let frame = data(42, 1, payload);
            let mut bytes = frame.encode();
            let check = StreamCheck::after_hello(42, 32);
            prop_assert_eq!(decode_all(&bytes, &mut check.clone()), Ok(vec![frame]));
            for (at, x) in flips {
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= x;
                }
            }
            bytes.truncate(cut);
            let _ = decode_all(&bytes, &mut check.clone());
            let _ = decode_frame(&bytes, &mut check.clone());
        }
    }
}
