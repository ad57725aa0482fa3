//! Fuzzes the frame decoder of `cryptgpu-net`: arbitrary bytes must never make it panic,
//! allocate beyond the configured maximum, or accept a frame that does not re-encode to the
//! bytes it was decoded from.
//!
//! Run with `cargo +nightly fuzz run frame_decoder` from `net/`.

#![no_main]

use cryptgpu_net::frame::{decode_all, decode_frame, StreamCheck};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the stream state the decoder checks against.
    let [a, b, rest @ ..] = data else { return };
    let check = StreamCheck { session: u64::from(*a % 4), next_seq: u64::from(*b % 3), max_words: u64::from(*b) };
    let mut c = check;
    if let Ok(Some((frame, used))) = decode_frame(rest, &mut c) {
        assert!(used <= rest.len());
        assert!(frame.header.words <= check.max_words);
        assert_eq!(frame.encode(), rest[..used]);
        assert_eq!(c.next_seq, check.next_seq + 1);
    } else {
        assert_eq!(c, check, "a failed decode must not advance the stream");
    }
    let mut c = check;
    if let Ok(frames) = decode_all(rest, &mut c) {
        let encoded: Vec<u8> = frames.iter().flat_map(|f| f.encode()).collect();
        assert_eq!(encoded, rest);
    }
});
