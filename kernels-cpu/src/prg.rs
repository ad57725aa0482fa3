//! AES-128-CTR keystream in the layout of `cryptgpu_ring::prg`, parallel over block ranges.

use aes::cipher::{KeyIvInit, StreamCipher};
use cryptgpu_ring::prg::{counter_block, Key};
use rayon::prelude::*;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// Elements per parallel task (an even number, so tasks start on block boundaries).
const CHUNK: usize = 1 << 15;

/// Fills `out` with elements `0..out.len()` of the draw `(key, stream, counter)`.
pub fn fill(key: &Key, stream: u64, counter: u64, out: &mut [u64]) {
    out.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, chunk)| {
        let first_block = (ci * CHUNK / 2) as u64;
        let iv = counter_block(stream, counter, first_block);
        let mut cipher = Aes128Ctr::new(key.into(), &iv.into());
        let mut bytes = vec![0u8; chunk.len() * 8];
        cipher.apply_keystream(&mut bytes);
        for (v, b) in chunk.iter_mut().zip(bytes.chunks_exact(8)) {
            *v = u64::from_le_bytes(b.try_into().expect("8-byte chunk"));
        }
    });
}
