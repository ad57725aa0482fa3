//! Conversions between arithmetic and binary sharings: MSB, A2B, bit injection and `x * [b]`.
//!
//! ## MSB and A2B: two operands, one fused input round, a parallel-prefix carry
//!
//! Party numbers here are roles: party 0 is the lead ([`Party::lead`], party 0 itself unless
//! changed), 1 the party after it, 2 the one before; the costs are per role.
//!
//! Party 0 holds `x_0` and `x_1`, so it knows `a = x_0 + x_1`; parties 1 and 2 both know
//! `b = x_2`, and `x = a + b mod 2^64`. Only a 2-operand adder is needed (the ABY3 trick).
//! Binary sharings: `a = a_0 ^ a_1 ^ 0` with `a_0 = G(K_0)` and `a_1 = a ^ a_0`; `b = 0 ^ 0 ^ x_2`.
//! Then the propagate word `P = a ^ b` has the shares `(a_0, a_1, x_2)` and the generate word
//! `G = a & b = a_0&x_2 ^ a_1&x_2`.
//!
//! **Round 1 (input and generate fused).** With `s, z_1` from `K_1` (parties 0 and 1) and
//! `z_0` from `K_0` (parties 0 and 2):
//! * `P0 -> P1`: `a_1` (masked by `a_0`, unknown to P1);
//! * `P0 -> P2`: `e = a_1 ^ s` (masked by `s`, unknown to P2);
//! * `P1 -> P2`: `f = s & x_2 ^ z_1` (masked by `z_1`, unknown to P2);
//! * `P2 -> P1`: `u = a_0 & x_2 ^ z_0` (masked by `z_0`, unknown to P1).
//!
//! Then `G` is shared as `(z_0, z_1, g_2)` with `g_2 = a_1&x_2 ^ z_1 ^ u` (computed by P1) `=
//! (e & x_2 ^ f) ^ a_0&x_2 ^ z_0` (computed by P2). P0 receives nothing; P1's view (`a_1`, `u`)
//! and P2's view (`e`, `f`) are uniform and independent of `x` (the four masks are independent
//! stream draws), and `g_2` is a function of each view, so the sharing of `G` reveals nothing more.
//! Cost: P0 sends 16 B, P1 and P2 8 B per element.
//!
//! **MSB: a pruned reduction tree (6 rounds).** `msb(x) = P[63] ^ c_63` where the carry into bit 63
//! is the group generate of bits 0..62. The leaves are `(G << 1, P << 1)` (leaf 0 is a "bit -1" with
//! generate 0). Each level combines adjacent groups `(hi, lo) = (2j+1, 2j)`:
//! `G' = G_hi ^ P_hi & G_lo`, `P' = P_hi & P_lo`. Both ANDs of a level are one word AND of
//! `X = P_hi` (at both positions of the pair) with `Y = (G_lo at the odd position, P_lo at the even
//! one)`, so every bit sent is used. Level `L` packs `k = 2^{L-1}` elements per word, element slot
//! `s` holding its group `j` at bit `j·k + s` (pairs are `k` bits apart): after the AND, `G'` is
//! shifted down by `k` onto the even groups where `P'` already is, and two words merge into one
//! with a shift by `k` ([`merge_word_pairs`]), so no bit compaction is needed. The last level
//! needs only `G'`; its AND inputs are merged to 64 elements per word first. With `n` elements
//! the six levels AND `n, ceil(n/2), ceil(n/4), ceil(n/8), ceil(n/16), ceil(n/64)` words.
//!
//! **Cost of [`msb`](Party::msb): 7 rounds; party 0 sends `16n + 8·W(n)` B, parties 1 and 2
//! `8n + 8·W(n)` B**, `W(n) = n + ceil(n/2) + ceil(n/4) + ceil(n/8) + ceil(n/16) + ceil(n/64)`:
//! per element 31.625 B (P0) and 23.625 B (P1, P2), 26.3 B on average. CryptGPU: 18 rounds (53
//! blocking exchanges), about 44.5 B per party, and un-rerandomised AND outputs.
//!
//! **6-round variant** ([`MsbVariant::LowLatency`]): the first tree level is itself a sum of
//! three products of a party-0 word and a parties-1/2 word, so the input round computes it
//! directly (party 0 sends 48 B per element instead of 16, the level-1 AND round disappears):
//! 6 rounds and 29.0 B per element on average.
//!
//! **A2B** ([`a2b`](Party::a2b)) computes all carries with Kogge-Stone on the words
//! (`G <- G ^ P & (G << d)`, `P <- P & (P << d)`, d = 1..32) and `x = P ^ (G << 1)`:
//! **7 rounds; party 0 sends 104 B, parties 1 and 2 96 B per element.**
//!
//! **After a product** ([`Party::relu_truncating`](crate::compare)): once the product's terms are
//! gathered, party 0 knows `S` and parties 1 and 2 know `T` with `S + T` the undivided product,
//! exactly the operands of the input round, so the MSB starts at once and the truncation's one
//! round ([`crate::trunc`]) rides on the MSB's input round (one round carries both protocols'
//! messages).

use cryptgpu_net::{Peer, Round, Transport};
use cryptgpu_ring::shape::check_same;
use cryptgpu_ring::{Backend, BinaryOp, DeviceTensor, ScalarOp, ShiftOp};

use crate::ashare::AShare;
use crate::binary::{from_words, into_words, merge_word_pairs, push_words, split_words, to_words, BShare};
use crate::error::Result;
use crate::party::Party;
use crate::streams::{KeyRole, Purpose};

/// Bits of the odd groups at tree levels 1..5 (group `j` of slot `s` at bit `j·k + s`, `k = 2^{L-1}`).
const HI_GROUPS: [u64; 5] =
    [0xAAAA_AAAA_AAAA_AAAA, 0xCCCC_CCCC_CCCC_CCCC, 0xF0F0_F0F0_F0F0_F0F0, 0xFF00_FF00_FF00_FF00, 0xFFFF_0000_FFFF_0000];

/// Words ANDed by the six tree levels of [`Party::msb`] for `n` elements.
pub fn msb_tree_words(n: usize) -> usize {
    n + n.div_ceil(2) + n.div_ceil(4) + n.div_ceil(8) + n.div_ceil(16) + n.div_ceil(64)
}

/// Bytes party `party` sends in [`Party::msb`] of `n` elements (see the module doc).
pub fn msb_bytes(party: usize, n: usize) -> u64 {
    let input = if party == 0 { 16 } else { 8 } * n as u64;
    input + 8 * msb_tree_words(n) as u64
}

/// Rounds of [`Party::msb`].
pub const MSB_ROUNDS: u64 = 7;

/// The two MSB protocols: the same carry tree, with or without its first level merged into the
/// input round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MsbVariant {
    /// 7 rounds; party 0 sends `16n + 8·W(n)` B, parties 1 and 2 `8n + 8·W(n)` B (26.3 B per
    /// element on average). Best when bandwidth dominates (large batches on a LAN).
    #[default]
    Lean,
    /// 6 rounds: the first level's outputs `G' = A_h B_h ^ (A_h A_l) B_l ^ A_l (B_h B_l)` and
    /// `P' = A_h A_l ^ B_h B_l ^ A_h B_l ^ A_l B_h` (leaf bits of `A = a << 1` known to party 0 and
    /// `B = b << 1` known to parties 1 and 2) are sums of three products `α_i(a) & β_i(b)` plus a
    /// term `D(b)`, so the fused input round computes them directly: party 0 sends `α_i ^ α_i0`
    /// (`α_i0` from `K_0`) to party 1 and `α_i ^ α_i0 ^ s_i` (`s_i` from `K_1`) to party 2, which
    /// needs `f = Σ s_i & β_i ^ z_1` from party 1. Party 0 sends `48n + 8·W'(n)` B, parties 1 and
    /// 2 `8n + 8·W'(n)` B with `W'(n) = W(n) - n` (29.0 B per element on average; three words
    /// is the minimum, the carry's 4x4 truth table having GF(2) rank 3). Best when latency dominates.
    LowLatency,
}

/// Bytes party `party` sends in [`Party::msb_with`] of `n` elements.
pub fn msb_variant_bytes(variant: MsbVariant, party: usize, n: usize) -> u64 {
    match variant {
        MsbVariant::Lean => msb_bytes(party, n),
        MsbVariant::LowLatency => (if party == 0 { 48 } else { 8 }) * n as u64 + 8 * (msb_tree_words(n) - n) as u64,
    }
}

/// Rounds of [`Party::msb_with`].
pub fn msb_variant_rounds(variant: MsbVariant) -> u64 {
    match variant {
        MsbVariant::Lean => MSB_ROUNDS,
        MsbVariant::LowLatency => MSB_ROUNDS - 1,
    }
}

/// Bytes party `party` sends in [`Party::mul_bit`] of `n` elements: 24, 24 and 16 B per element.
pub fn mul_bit_bytes(party: usize, n: usize) -> u64 {
    (if party == 2 { 16 } else { 24 }) * n as u64
}

/// Bytes party `party` sends in [`Party::b2a_bit_one_round`] of `n` elements: 32, 8 and 8 B per
/// element.
pub fn b2a_bit_one_round_bytes(party: usize, n: usize) -> u64 {
    (if party == 0 { 32 } else { 8 }) * n as u64
}

/// Bytes party `party` sends in [`Party::mul_bit_one_round`] of `n` elements: 40, 40 and 16 B
/// per element.
pub fn mul_bit_one_round_bytes(party: usize, n: usize) -> u64 {
    (if party == 2 { 16 } else { 40 }) * n as u64
}

/// Bytes party `party` sends in [`Party::b2a_bit`] of `n` elements: 16, 8 and 8 B per element.
pub fn b2a_bit_bytes(party: usize, n: usize) -> u64 {
    (if party == 0 { 16 } else { 8 }) * n as u64
}

impl<B: Backend, T: Transport> Party<B, T> {
    /// This party's operand of `x = a + b`, flattened: `a = x_0 + x_1` at party 0, `b = x_2` at
    /// parties 1 and 2. Local.
    pub(crate) fn operand(&self, x: &AShare<B>) -> Result<B::Tensor> {
        let be = self.backend();
        let n = x.len();
        Ok(match self.role() {
            0 => be.reshape_owned(be.binary(BinaryOp::Add, x.first(), x.second())?, &[n])?,
            1 => be.reshape(x.second(), &[n])?,
            _ => be.reshape(x.first(), &[n])?,
        })
    }

    /// Round 1 of MSB / A2B (see the module doc): binary sharings of the generate word `G = a & b`
    /// and the propagate word `P = a ^ b` of `x = a + b`, `[n]`, from this party's operand `v`
    /// ([`operand`](Self::operand)).
    fn carry_inputs(&mut self, v: &B::Tensor) -> Result<(BShare<B>, BShare<B>)> {
        let be = self.backend().clone();
        let n = v.len();
        let shape = [n];
        let and = |p: &B::Tensor, q: &B::Tensor| be.binary(BinaryOp::And, p, q);
        let xor = |p: &B::Tensor, q: &B::Tensor| be.binary(BinaryOp::Xor, p, q);
        match self.role() {
            0 => {
                let a = v;
                let a0 = self.draw_builtin(KeyRole::Own, Purpose::BinaryInput, &shape)?;
                let z0 = self.draw_builtin(KeyRole::Own, Purpose::CarryGenerate, &shape)?;
                let s = self.draw_builtin(KeyRole::Next, Purpose::CarryGenerate, &shape)?;
                let z1 = self.draw_builtin(KeyRole::Next, Purpose::CarryGenerate, &shape)?;
                let a1 = xor(a, &a0)?;
                let to_p2 = into_words(&be, xor(&a1, &s)?)?;
                drop(s);
                self.round(Round::new().send(Peer::Next, to_words(&be, &a1)?).send(Peer::Prev, to_p2))?;
                Ok((BShare::from_parts(z0, z1)?, BShare::from_parts(a0, a1)?))
            }
            1 => {
                let x2 = v;
                let s = self.draw_builtin(KeyRole::Own, Purpose::CarryGenerate, &shape)?;
                let z1 = self.draw_builtin(KeyRole::Own, Purpose::CarryGenerate, &shape)?;
                let f = xor(&and(&s, x2)?, &z1)?;
                let mut got = self.round(
                    Round::new().send(Peer::Next, into_words(&be, f)?).recv(Peer::Prev, n).recv(Peer::Next, n),
                )?;
                let a1 = from_words(&be, &shape, got.take(Peer::Prev)?)?;
                let u = from_words(&be, &shape, got.take(Peer::Next)?)?;
                let g2 = xor(&xor(&and(&a1, x2)?, &z1)?, &u)?;
                Ok((BShare::from_parts(z1, g2)?, BShare::from_parts(a1, x2.clone())?))
            }
            _ => {
                let x2 = v;
                let a0 = self.draw_builtin(KeyRole::Next, Purpose::BinaryInput, &shape)?;
                let z0 = self.draw_builtin(KeyRole::Next, Purpose::CarryGenerate, &shape)?;
                let a0x2 = and(&a0, x2)?;
                let u = xor(&a0x2, &z0)?;
                let mut got = self
                    .round(Round::new().send(Peer::Prev, to_words(&be, &u)?).recv(Peer::Next, n).recv(Peer::Prev, n))?;
                let e = from_words(&be, &shape, got.take(Peer::Next)?)?;
                let f = from_words(&be, &shape, got.take(Peer::Prev)?)?;
                let v = xor(&and(&e, x2)?, &f)?;
                let g2 = xor(&xor(&v, &a0x2)?, &z0)?;
                Ok((BShare::from_parts(g2, z0)?, BShare::from_parts(x2.clone(), a0)?))
            }
        }
    }

    /// The most significant bit of every element of `x` (1 for negative values in the signed view),
    /// as a binary sharing of 0/1 words of `x`'s shape. Exact for every ring element.
    /// **7 rounds; party 0 sends `16n + 8·W(n)` B, parties 1 and 2 `8n + 8·W(n)` B** (about 31.6 and
    /// 23.6 B per element; see the module doc and [`msb_bytes`]). Same as
    /// [`msb_with`](Self::msb_with)`(x, MsbVariant::Lean)`.
    pub fn msb(&mut self, x: &AShare<B>) -> Result<BShare<B>> {
        self.msb_with(x, MsbVariant::Lean)
    }

    /// The MSB of every element of `x` with the chosen round/byte trade-off ([`MsbVariant`]):
    /// **7 or 6 rounds**, bytes per party [`msb_variant_bytes`].
    pub fn msb_with(&mut self, x: &AShare<B>, variant: MsbVariant) -> Result<BShare<B>> {
        let be = self.backend().clone();
        if x.is_empty() {
            return self.b_public(&be.zeros(x.shape())?);
        }
        let v = self.operand(x)?;
        let bits = self.msb_core(&v, variant)?;
        drop(v);
        let (first, second) = bits.into_parts();
        BShare::from_parts(be.reshape_owned(first, x.shape())?, be.reshape_owned(second, x.shape())?)
    }

    /// MSB of `a + b` from this party's operand `v` ([`operand`](Self::operand)), as `[n]` bits.
    pub(crate) fn msb_core(&mut self, v: &B::Tensor, variant: MsbVariant) -> Result<BShare<B>> {
        let be = self.backend().clone();
        let n = v.len();
        let (mut g, mut p, top, first_level) = match variant {
            MsbVariant::Lean => {
                let (g, p) = self.carry_inputs(v)?;
                let top = p.map(|t| be.pack_bits(&be.shift(ShiftOp::RightLogical, t, 63)?))?;
                let g = self.b_shift(&g, ShiftOp::Left, 1)?;
                (g, self.b_shift(&p, ShiftOp::Left, 1)?, top, 0)
            }
            MsbVariant::LowLatency => {
                let (t, p) = self.level1_inputs(v)?;
                let top = p.map(|t| be.pack_bits(&be.shift(ShiftOp::RightLogical, t, 63)?))?;
                let g = self.b_shift(&self.b_and_scalar(&t, HI_GROUPS[0])?, ShiftOp::RightLogical, 1)?;
                let p = self.b_and_scalar(&t, !HI_GROUPS[0])?;
                (g.map(|t| merge_word_pairs(&be, t, 1))?, p.map(|t| merge_word_pairs(&be, t, 1))?, top, 1)
            }
        };
        // Levels 1..5: k = 1, 2, 4, 8, 16 elements per word; element slot s holds its group j at
        // bit j·k + s, so the pair (2j+1, 2j) is k bits apart and `hi` marks the odd groups.
        for (level, hi) in HI_GROUPS.into_iter().enumerate().skip(first_level) {
            let k = 1u32 << level;
            // Every intermediate is freed as soon as it is used (the first level's are `n` words).
            let p_hi = self.b_and_scalar(&p, hi)?;
            let x_op = self.b_xor(&p_hi, &self.b_shift(&p_hi, ShiftOp::RightLogical, k)?)?;
            drop(p_hi);
            let g_lo = self.b_and_scalar(&self.b_shift(&g, ShiftOp::Left, k)?, hi)?;
            let y_op = self.b_xor(&g_lo, &self.b_and_scalar(&p, !hi)?)?;
            drop((g_lo, p));
            let z = self.b_and(&x_op, &y_op)?;
            drop((x_op, y_op));
            // G' sits on the odd groups, P' on the even ones: shift G' down so both use slot s of
            // the next layout (groups j at bit j·2k + s), then merge two words (slots k..2k).
            let g_new = self.b_shift(&self.b_and_scalar(&self.b_xor(&g, &z)?, hi)?, ShiftOp::RightLogical, k)?;
            drop(g);
            g = g_new.map(|t| merge_word_pairs(&be, t, k))?;
            drop(g_new);
            let p_new = self.b_and_scalar(&z, !hi)?;
            drop(z);
            p = p_new.map(|t| merge_word_pairs(&be, t, k))?;
        }
        // Level 6: 32 elements per word, group 1 in the high half; only G' is needed, so the AND
        // inputs are merged to 64 elements per word first.
        const LOW: u64 = 0xFFFF_FFFF;
        let x_op = p.map(|t| merge_word_pairs(&be, &be.shift(ShiftOp::RightLogical, t, 32)?, 32))?;
        let y_op = g.map(|t| merge_word_pairs(&be, &be.scalar(ScalarOp::And, t, LOW)?, 32))?;
        let g_hi = g.map(|t| merge_word_pairs(&be, &be.shift(ShiftOp::RightLogical, t, 32)?, 32))?;
        let z = self.b_and(&x_op, &y_op)?;
        let carry = self.b_xor(&g_hi, &z)?;
        let msb = self.b_xor(&carry, &top)?;
        self.b_unpack_bits(&msb, &[n])
    }

    /// Round 1 of [`MsbVariant::LowLatency`]: the first tree level computed directly from
    /// `a` (party 0) and `b = x_2` (parties 1, 2), as `T = Σ_i α_i(a) & β_i(b) ^ D(b)` with three
    /// terms (see [`MsbVariant`]); returns the sharing of `T` (level-1 `G'` on odd bits, `P'` on
    /// even bits, leaves `(a << 1, b << 1)`) and of `P = a ^ b`, `[n]`, from this party's operand
    /// `v`.
    fn level1_inputs(&mut self, v: &B::Tensor) -> Result<(BShare<B>, BShare<B>)> {
        const ODD: u64 = 0xAAAA_AAAA_AAAA_AAAA;
        const EVEN: u64 = !ODD;
        let be = self.backend().clone();
        let n = v.len();
        let shape = [n];
        let and = |p: &B::Tensor, q: &B::Tensor| be.binary(BinaryOp::And, p, q);
        let xor = |p: &B::Tensor, q: &B::Tensor| be.binary(BinaryOp::Xor, p, q);
        let shl = |p: &B::Tensor, k: u32| be.shift(ShiftOp::Left, p, k);
        let shr = |p: &B::Tensor, k: u32| be.shift(ShiftOp::RightLogical, p, k);
        let mask = |p: &B::Tensor, m: u64| be.scalar(ScalarOp::And, p, m);
        // β_A, β_B, β_C (i = 0, 1, 2) and D from the leaf word B = b << 1 (parties 1 and 2), each
        // made when it is used rather than kept.
        let beta = |b: &B::Tensor, i: usize| -> Result<B::Tensor> {
            let bw = shl(b, 1)?;
            Ok(match i {
                0 => xor(&mask(&bw, ODD)?, &mask(&shr(&bw, 1)?, EVEN)?)?,
                1 => xor(&mask(&shl(&bw, 1)?, ODD)?, &mask(&bw, EVEN)?)?,
                _ => xor(&mask(&and(&bw, &shl(&bw, 1)?)?, ODD)?, &be.full(&shape, EVEN)?)?,
            })
        };
        let d_of = |b: &B::Tensor| -> Result<B::Tensor> {
            let bw = shl(b, 1)?;
            Ok(mask(&and(&bw, &shr(&bw, 1)?)?, EVEN)?)
        };
        // `acc ^ α & β_i(b)`, `acc` absent for the first term.
        let add_term = |acc: Option<B::Tensor>, alpha: &B::Tensor, b: &B::Tensor, i: usize| -> Result<B::Tensor> {
            let t = and(alpha, &beta(b, i)?)?;
            Ok(match acc {
                Some(acc) => xor(&acc, &t)?,
                None => t,
            })
        };
        let dot = |alphas: [&B::Tensor; 3], b: &B::Tensor| -> Result<B::Tensor> {
            let mut acc = None;
            for (i, alpha) in alphas.into_iter().enumerate() {
                acc = Some(add_term(acc, alpha, b, i)?);
            }
            Ok(acc.expect("three terms"))
        };
        match self.role() {
            0 => {
                // Each message word is made, sent to both receivers' buffers and freed in turn, so
                // that only the messages and the outputs are ever whole (the draws keep each
                // stream's order: a0; b0, c0, z0; s_0, s_1, s_2, z1).
                let a = v;
                let a0 = self.draw_builtin(KeyRole::Own, Purpose::BinaryInput, &shape)?;
                let a1 = xor(a, &a0)?;
                let mut to_p1 = Vec::with_capacity(3 * n);
                let mut to_p2 = Vec::with_capacity(3 * n);
                to_p1.extend_from_slice(&to_words(&be, &a1)?);
                let s0 = self.draw_builtin(KeyRole::Next, Purpose::CarryGenerate, &shape)?;
                push_words(&be, &mut to_p2, xor(&shl(&a1, 1)?, &s0)?)?;
                drop(s0);
                let aw = shl(a, 1)?;
                let alpha_b = xor(&mask(&and(&aw, &shl(&aw, 1)?)?, ODD)?, &mask(&shr(&aw, 1)?, EVEN)?)?;
                let b0 = self.draw_builtin(KeyRole::Own, Purpose::CarryGenerate, &shape)?;
                let b1 = xor(&alpha_b, &b0)?;
                drop((alpha_b, b0));
                to_p1.extend_from_slice(&to_words(&be, &b1)?);
                let s1 = self.draw_builtin(KeyRole::Next, Purpose::CarryGenerate, &shape)?;
                push_words(&be, &mut to_p2, xor(&b1, &s1)?)?;
                drop((b1, s1));
                let alpha_c = xor(&mask(&shl(&aw, 1)?, ODD)?, &mask(&and(&aw, &shr(&aw, 1)?)?, EVEN)?)?;
                drop(aw);
                let c0 = self.draw_builtin(KeyRole::Own, Purpose::CarryGenerate, &shape)?;
                let c1 = xor(&alpha_c, &c0)?;
                drop((alpha_c, c0));
                to_p1.extend_from_slice(&to_words(&be, &c1)?);
                let s2 = self.draw_builtin(KeyRole::Next, Purpose::CarryGenerate, &shape)?;
                push_words(&be, &mut to_p2, xor(&c1, &s2)?)?;
                drop((c1, s2));
                let z0 = self.draw_builtin(KeyRole::Own, Purpose::CarryGenerate, &shape)?;
                let z1 = self.draw_builtin(KeyRole::Next, Purpose::CarryGenerate, &shape)?;
                self.round(Round::new().send(Peer::Next, to_p1).send(Peer::Prev, to_p2))?;
                Ok((BShare::from_parts(z0, z1)?, BShare::from_parts(a0, a1)?))
            }
            1 => {
                let x2 = v;
                let mut f = None;
                for i in 0..3 {
                    let si = self.draw_builtin(KeyRole::Own, Purpose::CarryGenerate, &shape)?;
                    f = Some(add_term(f, &si, x2, i)?);
                }
                let z1 = self.draw_builtin(KeyRole::Own, Purpose::CarryGenerate, &shape)?;
                let f = xor(&f.expect("three terms"), &z1)?;
                let mut got = self.round(
                    Round::new().send(Peer::Next, into_words(&be, f)?).recv(Peer::Prev, 3 * n).recv(Peer::Next, n),
                )?;
                let [a1, b1, c1] = from_parts(&be, &shape, got.take(Peer::Prev)?)?;
                let u = from_words(&be, &shape, got.take(Peer::Next)?)?;
                let w = dot([&shl(&a1, 1)?, &b1, &c1], x2)?;
                drop((b1, c1));
                let t2 = xor(&xor(&xor(&w, &z1)?, &u)?, &d_of(x2)?)?;
                Ok((BShare::from_parts(z1, t2)?, BShare::from_parts(a1, x2.clone())?))
            }
            _ => {
                let x2 = v;
                let a0 = self.draw_builtin(KeyRole::Next, Purpose::BinaryInput, &shape)?;
                let u = add_term(None, &shl(&a0, 1)?, x2, 0)?;
                let b0 = self.draw_builtin(KeyRole::Next, Purpose::CarryGenerate, &shape)?;
                let u = add_term(Some(u), &b0, x2, 1)?;
                drop(b0);
                let c0 = self.draw_builtin(KeyRole::Next, Purpose::CarryGenerate, &shape)?;
                let u = add_term(Some(u), &c0, x2, 2)?;
                drop(c0);
                let z0 = self.draw_builtin(KeyRole::Next, Purpose::CarryGenerate, &shape)?;
                let u = xor(&u, &z0)?;
                let mut got = self.round(
                    Round::new().send(Peer::Prev, to_words(&be, &u)?).recv(Peer::Next, 3 * n).recv(Peer::Prev, n),
                )?;
                let [ea, eb, ec] = from_parts(&be, &shape, got.take(Peer::Next)?)?;
                let f = from_words(&be, &shape, got.take(Peer::Prev)?)?;
                let w = xor(&dot([&ea, &eb, &ec], x2)?, &f)?;
                drop((ea, eb, ec, f));
                let t2 = xor(&xor(&w, &u)?, &d_of(x2)?)?;
                Ok((BShare::from_parts(t2, z0)?, BShare::from_parts(x2.clone(), a0)?))
            }
        }
    }

    /// The full binary sharing of `x` (all 64 bits; `x = a + b` with a Kogge-Stone carry).
    /// **7 rounds; party 0 sends 104 B, parties 1 and 2 96 B per element.**
    pub fn a2b(&mut self, x: &AShare<B>) -> Result<BShare<B>> {
        let be = self.backend().clone();
        let v = self.operand(x)?;
        let (g0, p0) = self.carry_inputs(&v)?;
        let (mut g, mut p) = (g0, p0.clone());
        for level in 0..6 {
            let d = 1u32 << level;
            let gs = self.b_shift(&g, ShiftOp::Left, d)?;
            if level < 5 {
                let ps = self.b_shift(&p, ShiftOp::Left, d)?;
                let mut out = self.b_and_many(&[(&p, &gs), (&p, &ps)])?;
                let pp = out.pop().expect("two results");
                let pg = out.pop().expect("two results");
                g = self.b_xor(&g, &pg)?;
                p = pp;
            } else {
                let pg = self.b_and(&p, &gs)?;
                g = self.b_xor(&g, &pg)?;
            }
        }
        let sum = self.b_xor(&p0, &self.b_shift(&g, ShiftOp::Left, 1)?)?;
        sum.map(|t| be.reshape(t, x.shape()))
    }

    /// Bit injection: the arithmetic sharing (integer 0 or 1) of bit 0 of `b`.
    ///
    /// One three-party OT: sender P0 knows `u = b_0 ^ b_1`, receiver P1 and helper P2 both know the
    /// choice `b_2`, and `b = u ^ b_2`. With `w_0, w_1, r` from `K_0` (P0 and P2):
    /// round 1: P0 sends `m_t + w_t` (`m_t = (u ^ t) - r`, t = 0, 1) to P1 and P2 sends `w_{b_2}` to
    /// P1, so P1 learns `c = b - r` (masked by `r`) and nothing about `m_{1-b_2}` (masked by
    /// `w_{1-b_2}`). Round 2: with `rho` from `K_2` (P1 and P2), P1 sends `c - rho` to P0 (masked by
    /// `rho`); the sharing is `(r, c - rho, rho)`.
    /// **2 rounds; party 0 sends 16 B, parties 1 and 2 8 B per element.**
    pub fn b2a_bit(&mut self, b: &BShare<B>) -> Result<AShare<B>> {
        let be = self.backend().clone();
        let shape = b.shape().to_vec();
        let n = b.len();
        let bit = self.b_and_scalar(b, 1)?;
        let sub = |p: &B::Tensor, q: &B::Tensor| be.binary(BinaryOp::Sub, p, q);
        match self.role() {
            0 => {
                let u = be.binary(BinaryOp::Xor, bit.first(), bit.second())?;
                let w0 = self.draw_builtin(KeyRole::Own, Purpose::OtMask, &shape)?;
                let w1 = self.draw_builtin(KeyRole::Own, Purpose::OtMask, &shape)?;
                let r = self.draw_builtin(KeyRole::Own, Purpose::OtOutput, &shape)?;
                let m0 = sub(&u, &r)?;
                let m1 = sub(&be.scalar(ScalarOp::Xor, &u, 1)?, &r)?;
                let mut msg = to_words(&be, &be.binary(BinaryOp::Add, &m0, &w0)?)?;
                msg.extend(to_words(&be, &be.binary(BinaryOp::Add, &m1, &w1)?)?);
                self.round(Round::new().send(Peer::Next, msg))?;
                let mut got = self.round(Round::new().recv(Peer::Next, n))?;
                let y1 = from_words(&be, &shape, got.take(Peer::Next)?)?;
                AShare::from_parts(r, y1)
            }
            1 => {
                let choice = bit.second();
                let mut got = self.round(Round::new().recv(Peer::Prev, 2 * n).recv(Peer::Next, n))?;
                let c = self.ot_receive(choice, got.take(Peer::Prev)?, got.take(Peer::Next)?, &shape)?;
                let rho = self.draw_builtin(KeyRole::Next, Purpose::OtOutput, &shape)?;
                let y1 = sub(&c, &rho)?;
                self.round(Round::new().send(Peer::Prev, to_words(&be, &y1)?))?;
                AShare::from_parts(y1, rho)
            }
            _ => {
                let choice = bit.first();
                let w0 = self.draw_builtin(KeyRole::Next, Purpose::OtMask, &shape)?;
                let w1 = self.draw_builtin(KeyRole::Next, Purpose::OtMask, &shape)?;
                let r = self.draw_builtin(KeyRole::Next, Purpose::OtOutput, &shape)?;
                let w = select(&be, choice, &w0, &w1)?;
                self.round(Round::new().send(Peer::Prev, to_words(&be, &w)?))?;
                self.round(Round::new())?;
                let rho = self.draw_builtin(KeyRole::Own, Purpose::OtOutput, &shape)?;
                AShare::from_parts(rho, r)
            }
        }
    }

    /// Bit injection like [`b2a_bit`](Self::b2a_bit) in **one round**: the OT (sender P0,
    /// `m_t = (u ^ t) - ρ_0 - ρ_1`, choice `b_2`) goes to P1 (pads from `K_0`, helper P2) and to P2
    /// (pads from `K_1`, helper P1); both learn `c = b - ρ_0 - ρ_1`, masked for P1 by `ρ_0` (`K_0`)
    /// and for P2 by `ρ_1` (`K_1`), and the sharing is `(ρ_0, ρ_1, c)`.
    /// **1 round; party 0 sends 32 B, parties 1 and 2 8 B per element**
    /// ([`b2a_bit_one_round_bytes`]).
    pub fn b2a_bit_one_round(&mut self, b: &BShare<B>) -> Result<AShare<B>> {
        let be = self.backend().clone();
        let shape = b.shape().to_vec();
        let n = b.len();
        let bit = self.b_and_scalar(b, 1)?;
        let add = |p: &B::Tensor, q: &B::Tensor| be.binary(BinaryOp::Add, p, q);
        let sub = |p: &B::Tensor, q: &B::Tensor| be.binary(BinaryOp::Sub, p, q);
        let draw2 = |p: &mut Self, role: KeyRole| -> Result<(B::Tensor, B::Tensor)> {
            Ok((p.draw_builtin(role, Purpose::OtMask, &shape)?, p.draw_builtin(role, Purpose::OtMask, &shape)?))
        };
        match self.role() {
            0 => {
                let u = be.binary(BinaryOp::Xor, bit.first(), bit.second())?;
                let w = draw2(self, KeyRole::Own)?;
                let w_p2 = draw2(self, KeyRole::Next)?;
                let rho0 = self.draw_builtin(KeyRole::Own, Purpose::OtOutput, &shape)?;
                let rho1 = self.draw_builtin(KeyRole::Next, Purpose::OtOutput, &shape)?;
                let r = add(&rho0, &rho1)?;
                let m0 = sub(&u, &r)?;
                let m1 = sub(&be.scalar(ScalarOp::Xor, &u, 1)?, &r)?;
                let padded = |w0: &B::Tensor, w1: &B::Tensor| -> Result<Vec<u64>> {
                    let mut msg = to_words(&be, &add(&m0, w0)?)?;
                    msg.extend(to_words(&be, &add(&m1, w1)?)?);
                    Ok(msg)
                };
                let (to_p1, to_p2) = (padded(&w.0, &w.1)?, padded(&w_p2.0, &w_p2.1)?);
                self.round(Round::new().send(Peer::Next, to_p1).send(Peer::Prev, to_p2))?;
                AShare::from_parts(rho0, rho1)
            }
            1 => {
                let b2 = bit.second();
                let w_p2 = draw2(self, KeyRole::Own)?;
                let rho1 = self.draw_builtin(KeyRole::Own, Purpose::OtOutput, &shape)?;
                let to_p2 = to_words(&be, &select(&be, b2, &w_p2.0, &w_p2.1)?)?;
                let mut got =
                    self.round(Round::new().send(Peer::Next, to_p2).recv(Peer::Prev, 2 * n).recv(Peer::Next, n))?;
                let c = self.ot_receive(b2, got.take(Peer::Prev)?, got.take(Peer::Next)?, &shape)?;
                AShare::from_parts(rho1, c)
            }
            _ => {
                let b2 = bit.first();
                let w = draw2(self, KeyRole::Next)?;
                let rho0 = self.draw_builtin(KeyRole::Next, Purpose::OtOutput, &shape)?;
                let to_p1 = to_words(&be, &select(&be, b2, &w.0, &w.1)?)?;
                let mut got =
                    self.round(Round::new().send(Peer::Prev, to_p1).recv(Peer::Next, 2 * n).recv(Peer::Prev, n))?;
                let c = self.ot_receive(b2, got.take(Peer::Next)?, got.take(Peer::Prev)?, &shape)?;
                AShare::from_parts(c, rho0)
            }
        }
    }

    /// The OT receiver's output: `e_c - w_c` from the sender's pair `(e_0, e_1)` and the helper's `w_c`.
    fn ot_receive(&self, choice: &B::Tensor, pair: Vec<u64>, w: Vec<u64>, shape: &[usize]) -> Result<B::Tensor> {
        let be = self.backend();
        let [e0, e1] = from_parts(be, shape, pair)?;
        let chosen = select(be, choice, &e0, &e1)?;
        drop((e0, e1));
        Ok(be.binary(BinaryOp::Sub, &chosen, &from_words(be, shape, w)?)?)
    }

    /// `x * b` for an arithmetic sharing `x` and a binary sharing `b` of bits (bit 0 of each word;
    /// same shape), at `x`'s scale: no truncation, exact.
    ///
    /// Split `x·b = (x_0 + x_1)·b + x_2·b`. Two three-party OTs run in the same round:
    /// * OT 1: sender P0 (knows `A = x_0 + x_1` and `u = b_0 ^ b_1`; `b = u ^ b_2`), messages
    ///   `m_t = A·(u ^ t) - r_1`; choice `b_2`, receiver P1, helper P2; `w_0, w_1, r_1` from `K_0`
    ///   (P0, P2). P1 learns `c_1 = A·b - r_1`.
    /// * OT 2: sender P1 (knows `x_2` and `v = b_1 ^ b_2`; `b = b_0 ^ v`), messages
    ///   `m'_t = x_2·(v ^ t) - r_2`; choice `b_0`, receiver P0, helper P2; `w'_0, w'_1, r_2` from
    ///   `K_2` (P1, P2). P0 learns `c_0 = x_2·b - r_2`.
    ///
    /// Round 2, with `d_0` from `K_0` and `d_2` from `K_2`: P0 sends `c_0 + d_0` to P1, P1 sends
    /// `c_1 + d_2` to P0; the result is `(y_0, y_1, y_2) = (r_1 - d_0, c_0 + d_0 + c_1 + d_2, r_2 - d_2)`.
    ///
    /// Privacy: every message is masked by a pad its receiver does not know: P1 gets
    /// `m_t + w_t` (pads from `K_0`), `w_{b_2}` (the other pad unknown) and `c_0 + d_0` (`d_0` from
    /// `K_0`); P0 gets `m'_t + w'_t` and `w'_{b_0}` (pads from `K_2`) and `c_1 + d_2` (`d_2` from
    /// `K_2`); P2 receives nothing. The receivers' outputs `c_1` and `c_0` are masked by `r_1` and
    /// `r_2`, drawn from the key the receiver lacks. All pads are independent stream draws.
    /// **2 rounds; parties 0 and 1 send 24 B, party 2 16 B per element** ([`mul_bit_bytes`]).
    pub fn mul_bit(&mut self, x: &AShare<B>, b: &BShare<B>) -> Result<AShare<B>> {
        check_same("mul_bit", x.shape(), b.shape())?;
        let be = self.backend().clone();
        let shape = x.shape().to_vec();
        let n = x.len();
        let add = |p: &B::Tensor, q: &B::Tensor| be.binary(BinaryOp::Add, p, q);
        let sub = |p: &B::Tensor, q: &B::Tensor| be.binary(BinaryOp::Sub, p, q);
        let bit = |p: &B::Tensor| be.scalar(ScalarOp::And, p, 1);
        let id = self.role();
        if id == 2 {
            // Helper of both OTs: b_2 is the first share, b_0 the second.
            let w = self.draw_pair(KeyRole::Next, &shape)?;
            let to_p1 = into_words(&be, select(&be, &bit(b.first())?, &w.0, &w.1)?)?;
            drop(w);
            let v = self.draw_pair(KeyRole::Own, &shape)?;
            let to_p0 = into_words(&be, select(&be, &bit(b.second())?, &v.0, &v.1)?)?;
            drop(v);
            self.round(Round::new().send(Peer::Prev, to_p1).send(Peer::Next, to_p0))?;
            self.round(Round::new())?;
            let r1 = self.draw_builtin(KeyRole::Next, Purpose::OtOutput, &shape)?;
            let d0 = self.draw_builtin(KeyRole::Next, Purpose::OtOutput, &shape)?;
            let r2 = self.draw_builtin(KeyRole::Own, Purpose::OtOutput, &shape)?;
            let d2 = self.draw_builtin(KeyRole::Own, Purpose::OtOutput, &shape)?;
            return AShare::from_parts(sub(&r2, &d2)?, sub(&r1, &d0)?);
        }
        // P0 (sender of OT 1, receiver of OT 2; pads from K_0, its next peer P1) and P1 (sender of
        // OT 2, receiver of OT 1; pads from K_2, its previous peer P0) run the same steps.
        let (key, peer, helper) =
            if id == 0 { (KeyRole::Own, Peer::Next, Peer::Prev) } else { (KeyRole::Next, Peer::Prev, Peer::Next) };
        let choice = bit(if id == 0 { b.first() } else { b.second() })?;
        let local = bit(&be.binary(BinaryOp::Xor, b.first(), b.second())?)?;
        let r = self.draw_builtin(key, Purpose::OtOutput, &shape)?;
        let mut msg = Vec::with_capacity(2 * n);
        {
            let sum;
            let a = if id == 0 {
                sum = add(x.first(), x.second())?;
                &sum
            } else {
                x.second()
            };
            let au = be.binary(BinaryOp::Mul, a, &local)?;
            drop(local);
            let m0 = sub(&au, &r)?;
            let w0 = self.draw_builtin(key, Purpose::OtMask, &shape)?;
            push_words(&be, &mut msg, add(&m0, &w0)?)?;
            drop((m0, w0));
            let m1 = sub(&sub(a, &au)?, &r)?;
            drop(au);
            let w1 = self.draw_builtin(key, Purpose::OtMask, &shape)?;
            push_words(&be, &mut msg, add(&m1, &w1)?)?;
        }
        let mut got = self.round(Round::new().send(peer, msg).recv(peer, 2 * n).recv(helper, n))?;
        let c = self.ot_receive(&choice, got.take(peer)?, got.take(helper)?, &shape)?;
        drop(choice);
        let d = self.draw_builtin(key, Purpose::OtOutput, &shape)?;
        let mine = add(&c, &d)?;
        drop(c);
        let mut got = self.round(Round::new().send(peer, to_words(&be, &mine)?).recv(peer, n))?;
        let sum = add(&mine, &from_words(&be, &shape, got.take(peer)?)?)?;
        let pad = sub(&r, &d)?;
        if id == 0 {
            AShare::from_parts(pad, sum)
        } else {
            AShare::from_parts(sum, pad)
        }
    }

    /// Appends `m_0 + w_0` and `m_1 + w_1` (an OT sender's padded pair) to `msg`, each pad drawn
    /// from `key` when used.
    fn push_padded(&mut self, msg: &mut Vec<u64>, key: KeyRole, m: [&B::Tensor; 2]) -> Result<()> {
        let be = self.backend().clone();
        for mt in m {
            let w = self.draw_builtin(key, Purpose::OtMask, mt.shape())?;
            push_words(&be, msg, be.binary(BinaryOp::Add, mt, &w)?)?;
        }
        Ok(())
    }

    /// `x * b` like [`mul_bit`](Self::mul_bit) in **one round**: each OT delivers its output to
    /// both parties that know the choice, so the outputs are already replicated.
    ///
    /// OT 1 (sender P0, `m_t = A·(u ^ t) - ρ_0 - ρ_1`, choice `b_2`) goes to P1 (pads from `K_0`,
    /// helper P2) and to P2 (pads from `K_1`, helper P1); both learn `c_1 = A·b - ρ_0 - ρ_1`, masked
    /// for P1 by `ρ_0` (`K_0`) and for P2 by `ρ_1` (`K_1`). OT 2 (sender P1,
    /// `m'_t = x_2·(v ^ t) - σ_1 - σ_2`, choice `b_0`) goes to P0 (pads from `K_2`, helper P2) and to
    /// P2 (pads from `K_1`, helper P0); both learn `c_0 = x_2·b - σ_1 - σ_2`, masked for P0 by `σ_2`
    /// (`K_2`) and for P2 by `σ_1` (`K_1`). The sharing is
    /// `(y_0, y_1, y_2) = (ρ_0 + c_0, ρ_1 + σ_1, c_1 + σ_2)`. Every message is padded by a key its
    /// receiver lacks, and each party's pair is uniform given `x·b`.
    /// **1 round; parties 0 and 1 send 40 B, party 2 16 B per element**
    /// ([`mul_bit_one_round_bytes`]).
    pub fn mul_bit_one_round(&mut self, x: &AShare<B>, b: &BShare<B>) -> Result<AShare<B>> {
        check_same("mul_bit_one_round", x.shape(), b.shape())?;
        let be = self.backend().clone();
        let shape = x.shape().to_vec();
        let n = x.len();
        let add = |p: &B::Tensor, q: &B::Tensor| be.binary(BinaryOp::Add, p, q);
        let sub = |p: &B::Tensor, q: &B::Tensor| be.binary(BinaryOp::Sub, p, q);
        let bit = |p: &B::Tensor| be.scalar(ScalarOp::And, p, 1);
        // The sender's two messages (without pads) for value `a`, local bit `u`, output pad `r`.
        let messages = |a: &B::Tensor, u: B::Tensor, r: B::Tensor| -> Result<(B::Tensor, B::Tensor)> {
            let au = be.binary(BinaryOp::Mul, a, &u)?;
            drop(u);
            Ok((sub(&au, &r)?, sub(&sub(a, &au)?, &r)?))
        };
        // Messages are built part by part, each pad drawn when used and freed at once (every
        // stream's draws keep their order).
        match self.role() {
            0 => {
                let b0 = bit(b.first())?;
                let u = bit(&be.binary(BinaryOp::Xor, b.first(), b.second())?)?;
                let rho0 = self.draw_builtin(KeyRole::Own, Purpose::OtOutput, &shape)?;
                let rho1 = self.draw_builtin(KeyRole::Next, Purpose::OtOutput, &shape)?;
                let (m0, m1) = messages(&add(x.first(), x.second())?, u, add(&rho0, &rho1)?)?;
                let (mut to_p1, mut to_p2) = (Vec::with_capacity(2 * n), Vec::with_capacity(3 * n));
                self.push_padded(&mut to_p1, KeyRole::Own, [&m0, &m1])?;
                self.push_padded(&mut to_p2, KeyRole::Next, [&m0, &m1])?;
                drop((m0, m1));
                let v_p2 = self.draw_pair(KeyRole::Next, &shape)?;
                push_words(&be, &mut to_p2, select(&be, &b0, &v_p2.0, &v_p2.1)?)?;
                drop(v_p2);
                let mut got = self.round(
                    Round::new()
                        .send(Peer::Next, to_p1)
                        .send(Peer::Prev, to_p2)
                        .recv(Peer::Next, 2 * n)
                        .recv(Peer::Prev, n),
                )?;
                let c0 = self.ot_receive(&b0, got.take(Peer::Next)?, got.take(Peer::Prev)?, &shape)?;
                drop(b0);
                let sigma1 = self.draw_builtin(KeyRole::Next, Purpose::OtOutput, &shape)?;
                AShare::from_parts(add(&rho0, &c0)?, add(&rho1, &sigma1)?)
            }
            1 => {
                let b2 = bit(b.second())?;
                let v = bit(&be.binary(BinaryOp::Xor, b.first(), b.second())?)?;
                let w_p2 = self.draw_pair(KeyRole::Own, &shape)?;
                let helper = select(&be, &b2, &w_p2.0, &w_p2.1)?;
                drop(w_p2);
                let rho1 = self.draw_builtin(KeyRole::Own, Purpose::OtOutput, &shape)?;
                let sigma1 = self.draw_builtin(KeyRole::Own, Purpose::OtOutput, &shape)?;
                let y0 = add(&rho1, &sigma1)?;
                drop(rho1);
                let sigma2 = self.draw_builtin(KeyRole::Next, Purpose::OtOutput, &shape)?;
                let (m0, m1) = messages(x.second(), v, add(&sigma1, &sigma2)?)?;
                drop(sigma1);
                let (mut to_p0, mut to_p2) = (Vec::with_capacity(2 * n), Vec::with_capacity(3 * n));
                self.push_padded(&mut to_p2, KeyRole::Own, [&m0, &m1])?;
                self.push_padded(&mut to_p0, KeyRole::Next, [&m0, &m1])?;
                drop((m0, m1));
                push_words(&be, &mut to_p2, helper)?;
                let mut got = self.round(
                    Round::new()
                        .send(Peer::Prev, to_p0)
                        .send(Peer::Next, to_p2)
                        .recv(Peer::Prev, 2 * n)
                        .recv(Peer::Next, n),
                )?;
                let c1 = self.ot_receive(&b2, got.take(Peer::Prev)?, got.take(Peer::Next)?, &shape)?;
                AShare::from_parts(y0, add(&c1, &sigma2)?)
            }
            _ => {
                let w = self.draw_pair(KeyRole::Next, &shape)?;
                let b2 = bit(b.first())?;
                let to_p1 = into_words(&be, select(&be, &b2, &w.0, &w.1)?)?;
                drop(w);
                let v_p0 = self.draw_pair(KeyRole::Own, &shape)?;
                let b0 = bit(b.second())?;
                let to_p0 = into_words(&be, select(&be, &b0, &v_p0.0, &v_p0.1)?)?;
                drop(v_p0);
                let mut got = self.round(
                    Round::new()
                        .send(Peer::Prev, to_p1)
                        .send(Peer::Next, to_p0)
                        .recv(Peer::Next, 3 * n)
                        .recv(Peer::Prev, 3 * n),
                )?;
                // From P0: OT 1's pair and the helper pad of OT 2; from P1: OT 2's pair and the
                // helper pad of OT 1.
                let [pair_ot1, pad_ot2] =
                    split_words(got.take(Peer::Next)?, &[2 * n, n]).try_into().expect("two parts");
                let [pair_ot2, pad_ot1] =
                    split_words(got.take(Peer::Prev)?, &[2 * n, n]).try_into().expect("two parts");
                let c1 = self.ot_receive(&b2, pair_ot1, pad_ot1, &shape)?;
                drop(b2);
                let c0 = self.ot_receive(&b0, pair_ot2, pad_ot2, &shape)?;
                drop(b0);
                let rho0 = self.draw_builtin(KeyRole::Next, Purpose::OtOutput, &shape)?;
                let sigma2 = self.draw_builtin(KeyRole::Own, Purpose::OtOutput, &shape)?;
                AShare::from_parts(add(&c1, &sigma2)?, add(&rho0, &c0)?)
            }
        }
    }

    /// Two consecutive [`Purpose::OtMask`] draws under `key`.
    fn draw_pair(&mut self, key: KeyRole, shape: &[usize]) -> Result<(B::Tensor, B::Tensor)> {
        Ok((self.draw_builtin(key, Purpose::OtMask, shape)?, self.draw_builtin(key, Purpose::OtMask, shape)?))
    }
}

/// A received message of `K` consecutive tensors of `shape`, split without keeping the whole
/// message alive.
fn from_parts<B: Backend, const K: usize>(be: &B, shape: &[usize], words: Vec<u64>) -> Result<[B::Tensor; K]> {
    let n = shape.iter().product();
    let parts = split_words(words, &[n; K]);
    let tensors = parts.into_iter().map(|w| from_words(be, shape, w)).collect::<Result<Vec<_>>>()?;
    Ok(tensors.try_into().unwrap_or_else(|_| unreachable!("K parts")))
}

/// `e_0 + c·(e_1 - e_0)` for a 0/1 tensor `c`.
fn select<B: Backend>(be: &B, c: &B::Tensor, e0: &B::Tensor, e1: &B::Tensor) -> Result<B::Tensor> {
    let d = be.binary(BinaryOp::Sub, e1, e0)?;
    Ok(be.binary(BinaryOp::Add, e0, &be.binary(BinaryOp::Mul, c, &d)?)?)
}
