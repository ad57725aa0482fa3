//! Fuzzes the incremental receiver of `cryptgpu-net`, the code a live link runs on the bytes it
//! reads (`MemoryReceiver` feeds it from memory): arbitrary bytes, arriving in arbitrary pieces,
//! against arbitrary expectations, must never make it panic, hold more memory than its bounds, or
//! deliver a message of another length than expected.
//!
//! Run with `cargo +nightly fuzz run recv_stream` from `net/`.

#![no_main]

use cryptgpu_net::tcp::MemoryReceiver;
use libfuzzer_sys::fuzz_target;

/// Bytes the receiver reads per call when reading ahead (its inbox may exceed the read-ahead
/// limit by this much).
const READ_CHUNK: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    // Byte 0: session and read-ahead limit; byte 1: the piece size; byte 2: the number of rounds,
    // whose expectations follow (0xff: a round that expects nothing); then the stream.
    let [a, b, n, rest @ ..] = data else { return };
    let rounds = usize::from(*n % 16).min(rest.len());
    let (expectations, stream) = rest.split_at(rounds);
    let read_ahead = usize::from(*a >> 1) * 16 + 1;
    let piece = usize::from(*b) + 1;
    let mut pieces = stream.chunks(piece);
    let mut r = MemoryReceiver::new(u64::from(*a & 1), 64, read_ahead);
    for &e in expectations {
        let words = (e != 0xff).then_some(usize::from(e % 48));
        r.expect(words);
        if words.is_none() {
            if let Some(p) = pieces.next() {
                r.feed(p);
            }
        }
        loop {
            let step = r.step();
            assert!(r.held_bytes() <= read_ahead + READ_CHUNK + 8 * words.unwrap_or(0).max(1));
            match step {
                Ok(Some(m)) => {
                    assert_eq!(Some(m.len()), words);
                    break;
                }
                Ok(None) if words.is_none() => break,
                Ok(None) => match pieces.next() {
                    Some(p) => r.feed(p),
                    None => {
                        r.finish();
                        // At the end of the stream a pending receive fails.
                        assert!(r.step().is_err());
                        return;
                    }
                },
                Err(_) => return,
            }
        }
    }
});
