//! [`BShare`]: replicated XOR sharings on `u64` words, and the binary protocols on them.
//!
//! Layout as [`AShare`](crate::AShare): `x = x_0 ^ x_1 ^ x_2`, party `i` holds `(x_i, x_{i+1})`.
//! XOR, shifts, bit permutations and AND/XOR with public constants are local. The AND of two
//! sharings computes the 3-out-of-3 terms
//! `z_i = a_i&b_i ^ a_i&b_{i+1} ^ a_{i+1}&b_i ^ beta_i` (`beta` a fresh binary zero sharing, so
//! no un-rerandomised AND output ever leaves a party) and `P_i` sends `z_i` to `P_{i-1}`:
//! **1 round, 8 B per word per party**. Protocols that only need some bit positions first move
//! those bits together with local bit permutations (shifts, masks, [`merge_word_pairs`]) so that
//! every word sent is fully used.

use cryptgpu_net::{Peer, Round, Transport};
use cryptgpu_ring::shape::check_same;
use cryptgpu_ring::{Backend, BinaryOp, DeviceTensor, RingTensor, ScalarOp, ShiftOp};

pub use crate::ashare::BShare;
use crate::error::Result;
use crate::party::Party;

/// A tensor's words, for sending.
pub(crate) fn to_words<B: Backend>(be: &B, t: &B::Tensor) -> Result<Vec<u64>> {
    Ok(be.download(t)?.into_data())
}

/// The words of a tensor no longer needed, for sending (moved, not copied, where the backend
/// lives in host memory).
pub(crate) fn into_words<B: Backend>(be: &B, t: B::Tensor) -> Result<Vec<u64>> {
    Ok(be.download_owned(t)?.into_data())
}

/// Appends the words of a tensor no longer needed to a message, freeing the tensor (reserve the
/// message's length up front, so that it is allocated once).
pub(crate) fn push_words<B: Backend>(be: &B, msg: &mut Vec<u64>, t: B::Tensor) -> Result<()> {
    msg.extend_from_slice(be.download_owned(t)?.data());
    Ok(())
}

/// Splits a received message into consecutive parts of the given lengths (which must add up to
/// its length), releasing the message's storage part by part instead of keeping it whole.
pub(crate) fn split_words(mut words: Vec<u64>, lens: &[usize]) -> Vec<Vec<u64>> {
    let mut parts: Vec<Vec<u64>> = Vec::with_capacity(lens.len());
    for &len in lens[1..].iter().rev() {
        let tail = words.split_off(words.len() - len);
        words.shrink_to_fit();
        parts.push(tail);
    }
    parts.push(words);
    parts.reverse();
    parts
}

/// A received message as a tensor of `shape`.
pub(crate) fn from_words<B: Backend>(be: &B, shape: &[usize], words: Vec<u64>) -> Result<B::Tensor> {
    Ok(be.upload_owned(RingTensor::new(shape, words)?)?)
}

/// Merges pairs of words whose set bits lie in disjoint positions after a shift: with `x` of
/// shape `[m]` (padded with a zero word to even length), word `c` of the result is
/// `x[2c] | x[2c+1] << shift`, shape `[ceil(m/2)]`. Linear, so it applies share by share.
pub fn merge_word_pairs<B: Backend>(be: &B, x: &B::Tensor, shift: u32) -> cryptgpu_ring::Result<B::Tensor> {
    let m = x.len();
    let x = if m % 2 == 1 { be.concat(&[&be.reshape(x, &[m])?, &be.zeros(&[1])?], 0)? } else { x.clone() };
    let pairs = be.reshape(&x, &[m.div_ceil(2), 2])?;
    let lo = be.slice(&pairs, 1, 0, 1)?;
    let hi = be.shift(ShiftOp::Left, &be.slice(&pairs, 1, 1, 2)?, shift)?;
    let w = be.binary(BinaryOp::Xor, &lo, &hi)?;
    be.reshape(&w, &[m.div_ceil(2)])
}

impl<B: Backend, T: Transport> Party<B, T> {
    // ----- input and output -----

    /// XOR-shares a tensor of words held by party `owner` (the others pass `None`; all pass the
    /// same `shape`): `x_o = G(K_o)`, `x_{o+1} = v ^ x_o` (sent to `P_{o+1}`), `x_{o+2} = 0`.
    /// Cost: **1 round; the owner sends 8 B per word, the others nothing.**
    pub fn b_input(&mut self, owner: usize, value: Option<&RingTensor>, shape: &[usize]) -> Result<BShare<B>> {
        self.share_input(owner, value, shape)
    }

    /// Opens a binary sharing to all parties. **1 round, 8 B per word per party.**
    pub fn b_reveal(&mut self, x: &BShare<B>) -> Result<RingTensor> {
        self.open(x)
    }

    /// Opens a binary sharing to party `to` only (`Some` there, `None` elsewhere). **1 round;
    /// party `to - 1` sends 8 B per word, the others nothing.**
    pub fn b_reveal_to(&mut self, x: &BShare<B>, to: usize) -> Result<Option<RingTensor>> {
        self.open_to(x, to)
    }

    /// The trivial binary sharing of a public tensor `c` (`x_0 = c`, `x_1 = x_2 = 0`). No communication.
    pub fn b_public(&self, c: &B::Tensor) -> Result<BShare<B>> {
        let be = self.backend();
        let z = be.zeros(c.shape())?;
        match self.id() {
            0 => BShare::from_parts(c.clone(), z),
            2 => BShare::from_parts(z, c.clone()),
            _ => BShare::from_parts(z.clone(), z),
        }
    }

    // ----- local operations (no communication) -----

    /// `x ^ y`. No communication.
    pub fn b_xor(&self, x: &BShare<B>, y: &BShare<B>) -> Result<BShare<B>> {
        let be = self.backend();
        BShare::from_parts(
            be.binary(BinaryOp::Xor, x.first(), y.first())?,
            be.binary(BinaryOp::Xor, x.second(), y.second())?,
        )
    }

    /// `x ^ c` for a public tensor `c`: applied to share `x_0` only (party 0's first share and
    /// party 2's second). No communication.
    pub fn b_xor_public(&self, x: &BShare<B>, c: &B::Tensor) -> Result<BShare<B>> {
        check_same("b_xor_public", x.shape(), c.shape())?;
        let be = self.backend();
        let (mut first, mut second) = (x.first().clone(), x.second().clone());
        match self.id() {
            0 => first = be.binary(BinaryOp::Xor, &first, c)?,
            2 => second = be.binary(BinaryOp::Xor, &second, c)?,
            _ => {}
        }
        BShare::from_parts(first, second)
    }

    /// `x ^ c` for a public word `c` (on share `x_0` only). No communication.
    pub fn b_xor_scalar(&self, x: &BShare<B>, c: u64) -> Result<BShare<B>> {
        let be = self.backend();
        let (mut first, mut second) = (x.first().clone(), x.second().clone());
        match self.id() {
            0 => first = be.scalar(ScalarOp::Xor, &first, c)?,
            2 => second = be.scalar(ScalarOp::Xor, &second, c)?,
            _ => {}
        }
        BShare::from_parts(first, second)
    }

    /// `!x` (XOR with all ones, on share `x_0` only). No communication.
    pub fn b_not(&self, x: &BShare<B>) -> Result<BShare<B>> {
        self.b_xor_scalar(x, u64::MAX)
    }

    /// `x & c` for a public tensor `c` (applied to both shares). No communication.
    pub fn b_and_public(&self, x: &BShare<B>, c: &B::Tensor) -> Result<BShare<B>> {
        check_same("b_and_public", x.shape(), c.shape())?;
        x.map(|t| self.backend().binary(BinaryOp::And, t, c))
    }

    /// `x & c` for a public word `c` (applied to both shares). No communication.
    pub fn b_and_scalar(&self, x: &BShare<B>, c: u64) -> Result<BShare<B>> {
        x.map(|t| self.backend().scalar(ScalarOp::And, t, c))
    }

    /// Shift of every word by `bits` (< 64); all three shifts are linear bit maps. No communication.
    pub fn b_shift(&self, x: &BShare<B>, op: ShiftOp, bits: u32) -> Result<BShare<B>> {
        x.map(|t| self.backend().shift(op, t, bits))
    }

    // ----- AND -----

    /// This party's 3-out-of-3 term of `x & y`, re-randomised with a fresh binary zero sharing.
    fn and_term(&mut self, x: &BShare<B>, y: &BShare<B>) -> Result<B::Tensor> {
        check_same("b_and", x.shape(), y.shape())?;
        let be = self.backend().clone();
        let ys = be.binary(BinaryOp::Xor, y.first(), y.second())?;
        let a = be.binary(BinaryOp::And, x.first(), &ys)?;
        let b = be.binary(BinaryOp::And, x.second(), y.first())?;
        let z = be.binary(BinaryOp::Xor, &a, &b)?;
        let beta = self.zero_share_binary(z.shape())?;
        Ok(be.binary(BinaryOp::Xor, &z, &beta)?)
    }

    /// `x & y`. **1 round, 8 B per word per party.**
    pub fn b_and(&mut self, x: &BShare<B>, y: &BShare<B>) -> Result<BShare<B>> {
        Ok(self.b_and_many(&[(x, y)])?.pop().expect("one pair"))
    }

    /// The ANDs of several pairs in **one round**; **8 B per word (summed over all pairs) per party**.
    pub fn b_and_many(&mut self, pairs: &[(&BShare<B>, &BShare<B>)]) -> Result<Vec<BShare<B>>> {
        let be = self.backend().clone();
        let mut terms = Vec::with_capacity(pairs.len());
        for (x, y) in pairs {
            terms.push(self.and_term(x, y)?);
        }
        let lens: Vec<usize> = terms.iter().map(|z| z.len()).collect();
        let total = lens.iter().sum();
        let mut msg = Vec::with_capacity(total);
        for z in &terms {
            msg.extend_from_slice(&to_words(&be, z)?);
        }
        let mut got = self.round(Round::new().send(Peer::Prev, msg).recv(Peer::Next, total))?;
        let words = split_words(got.take(Peer::Next)?, &lens);
        terms
            .into_iter()
            .zip(words)
            .map(|(z, w)| {
                let next = from_words(&be, z.shape(), w)?;
                BShare::from_parts(z, next)
            })
            .collect()
    }

    /// Flattens and bit-packs a sharing of 0/1 words (only bit 0 of each word is used) into
    /// `ceil(n/64)` words (local; see [`Backend::pack_bits`]).
    pub fn b_pack_bits(&self, x: &BShare<B>) -> Result<BShare<B>> {
        x.map(|t| self.backend().pack_bits(t))
    }

    /// Inverse of [`b_pack_bits`](Self::b_pack_bits): 0/1 words of `shape` (local).
    pub fn b_unpack_bits(&self, x: &BShare<B>, shape: &[usize]) -> Result<BShare<B>> {
        x.map(|t| self.backend().unpack_bits(t, shape))
    }

    /// `x & y` for sharings of single bits (bit 0 of each word), sent bit-packed:
    /// **1 round, `8·ceil(n/64)` B per party** for `n` bits. Other bits of the inputs are ignored;
    /// the result holds 0/1 words.
    pub fn b_and_bits(&mut self, x: &BShare<B>, y: &BShare<B>) -> Result<BShare<B>> {
        check_same("b_and_bits", x.shape(), y.shape())?;
        let shape = x.shape().to_vec();
        let px = self.b_pack_bits(x)?;
        let py = self.b_pack_bits(y)?;
        let z = self.b_and(&px, &py)?;
        self.b_unpack_bits(&z, &shape)
    }

    /// Bitwise NOT of the low bit only: `x ^ 1` (on share `x_0`). No communication.
    pub fn b_not_bit(&self, x: &BShare<B>) -> Result<BShare<B>> {
        self.b_xor_scalar(x, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptgpu_kernels_cpu::CpuBackend;

    #[test]
    fn split_words_keeps_order_and_releases_the_tail() {
        let words: Vec<u64> = (0..10).collect();
        let parts = split_words(words, &[2, 5, 3]);
        assert_eq!(parts, vec![vec![0, 1], vec![2, 3, 4, 5, 6], vec![7, 8, 9]]);
        assert!(parts.iter().all(|p| p.capacity() == p.len()));
        assert_eq!(split_words(vec![4, 5], &[2]), vec![vec![4, 5]]);
    }

    #[test]
    fn owned_words_round_trip() {
        let be = CpuBackend;
        let t = be.upload(&RingTensor::new(&[3], vec![1, 2, 3]).unwrap()).unwrap();
        let mut msg = Vec::with_capacity(6);
        push_words(&be, &mut msg, t.clone()).unwrap();
        msg.extend(into_words(&be, t).unwrap());
        assert_eq!(msg, vec![1, 2, 3, 1, 2, 3]);
    }
}
