//! The pseudo-random stream layout: AES-128 in counter mode.
//!
//! Every backend's [`Backend::prg_fill`](crate::Backend::prg_fill) must produce exactly this
//! stream, so that the same keys give bit-identical shares on the CPU and on the GPU.
//!
//! A draw of `n` ring elements under key `K`, stream id `s` and starting block counter `c`:
//!
//! 1. The 16-byte counter block of block `b` (for `b = 0 .. ceil(n/2)`) is the 128-bit
//!    **big-endian** integer `(s * 2^64 + c + b) mod 2^128`, i.e. the stream id in bytes 0..8 and the
//!    counter in bytes 8..16, both big-endian, with a carry from the counter into the stream id.
//!    (This is `ctr::Ctr128BE` with the initial block `s || c`.)
//! 2. The keystream is `AES-128_K(block 0) || AES-128_K(block 1) || ...`.
//! 3. Element `j` is the **little-endian** `u64` read from keystream bytes `8j .. 8j+8`.
//!
//! A draw consumes [`blocks_for`]`(n)` blocks; the holders of a key advance `c` by that much after
//! every draw, in the same order, so a key's stream is never reused. Stream ids separate purposes
//! (zero sharing, truncation, input, ...) and are chosen by the protocol layer.

/// An AES-128 key.
pub type Key = [u8; 16];

/// Number of 16-byte AES blocks a draw of `n` elements consumes: `ceil(n / 2)`.
pub fn blocks_for(n: usize) -> u64 {
    n.div_ceil(2) as u64
}

/// The counter block of block `b` of a draw that starts at `(stream, counter)`.
pub fn counter_block(stream: u64, counter: u64, b: u64) -> [u8; 16] {
    let v = ((stream as u128) << 64 | counter as u128).wrapping_add(b as u128);
    v.to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        assert_eq!(blocks_for(0), 0);
        assert_eq!(blocks_for(1), 1);
        assert_eq!(blocks_for(4), 2);
        let blk = counter_block(0x0102030405060708, u64::MAX, 1);
        assert_eq!(blk[..8], [1, 2, 3, 4, 5, 6, 7, 9]);
        assert_eq!(blk[8..], [0; 8]);
    }
}
