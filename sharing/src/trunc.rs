//! Fixed-point truncation: dividing a sharing by `2^d`.
//!
//! Two modes ([`TruncMode`]):
//!
//! * **Exact** (default). The value is split as `X = S + T mod 2^64` with `S` known to `P0` and `T`
//!   to `P1` and `P2`, after adding the public offset `2^62` so that `X` lies in `[0, 2^63)` whenever
//!   `|z| < 2^62`. For such an `X` the wrap bit of the split is `w = msb(S) OR msb(T)`, so
//!   `floor(X / 2^d) = floor((S + T) / 2^d) - w·2^(64-d)`; the OR's cross term `msb(S)·msb(T)` is
//!   obtained with one three-party OT (sender `P0`, receiver `P2`, helper `P1`, masks from the key
//!   `P0` shares with `P1`). The result is `z / 2^d + e` with `|e| < 1` LSB, unbiased (`S` is rounded
//!   up and `T` down) and **no failure probability** for `|z| < 2^62`. CryptGPU's (and ABY3's
//!   Π_trunc1) truncation instead fails with probability `|z| / 2^64` per element, an error of
//!   `2^(64-d)` that is certain to occur in long trainings.
//! * **Probabilistic**: ABY3's share truncation fused with the resharing (CryptGPU's behaviour, for
//!   comparison): 2 rounds and 8 B per element per party for a product, but wrong by `±2^(64-d)` with
//!   probability about `|z| / 2^64` per element.
//!
//! Costs per element per party:
//!
//! | | rounds | P0 | P1 | P2 |
//! |---|---|---|---|---|
//! | product + exact truncation | 3 | 24 B | 16 B | 16 B |
//! | exact truncation of a sharing | 2 | 24 B | 8 B | 8 B |
//! | product + probabilistic truncation | 2 | 8 B | 8 B | 8 B |
//! | probabilistic truncation of a sharing | 2 | 8 B | 8 B | 8 B |
//!
//! A truncation can be held back before its last round ([`Truncating`]: `P2`'s message in exact
//! mode, `P0`'s in probabilistic mode, 8 B per element), so that a ReLU after it sends that
//! message with its MSB's input round ([`Party::relu_truncating`]): a product then costs 2
//! rounds (exact: 24, 16, 8 B per element; [`product_held_cost`]) before the ReLU's own.

use cryptgpu_net::{Peer, Round, Transport};
use cryptgpu_ring::{Backend, BinaryOp, DeviceTensor, ScalarOp, ShiftOp, UnaryOp};

use crate::ashare::AShare;
use crate::binary::{from_words, to_words};
use crate::error::{Result, SharingError};
use crate::party::Party;
use crate::streams::{KeyRole, Purpose};

/// How fixed-point products are truncated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TruncMode {
    /// Exact up to one LSB for `|z| < 2^62` (no wrap failures); 3 rounds per product.
    #[default]
    Exact,
    /// ABY3/CryptGPU share truncation: 2 rounds per product, fails with probability `|z| / 2^64`.
    Probabilistic,
}

/// The public offset that makes the split value non-negative.
const OFFSET: u64 = 1 << 62;

fn check_bits(bits: u32) -> Result<()> {
    if (1..=61).contains(&bits) {
        Ok(())
    } else {
        Err(SharingError::Invalid(format!("truncation by {bits} bits (must be 1..=61)")))
    }
}

impl<B: Backend, T: Transport> Party<B, T> {
    /// Truncates 3-out-of-3 product terms `z_i` (which include a fresh zero sharing) by `2^bits`
    /// into a replicated sharing, in the party's [`TruncMode`]. See the module doc for costs.
    pub(crate) fn truncate_terms_by(&mut self, z: B::Tensor, bits: u32) -> Result<AShare<B>> {
        let held = self.truncate_terms_held(z, bits)?;
        self.finish_truncation(held)
    }

    /// [`truncate_terms_by`](Self::truncate_terms_by) up to, not including, its last round.
    pub(crate) fn truncate_terms_held(&mut self, z: B::Tensor, bits: u32) -> Result<Truncating<B>> {
        check_bits(bits)?;
        let be = self.backend().clone();
        let shape = z.shape().to_vec();
        let n = z.len();
        match self.trunc_mode() {
            TruncMode::Probabilistic => self.probabilistic_terms(z, bits),
            TruncMode::Exact => {
                // Round 1: P1 sends z_1 to P0 and P2 sends z_2 to P1, so P0 knows S = z_0 + z_1 and
                // P1, P2 know T = z_2.
                let part = match self.id() {
                    0 => {
                        let mut got = self.round(Round::new().recv(Peer::Next, n))?;
                        let z1 = from_words(&be, &shape, got.take(Peer::Next)?)?;
                        be.binary(BinaryOp::Add, &z, &z1)?
                    }
                    1 => {
                        let mut got =
                            self.round(Round::new().send(Peer::Prev, to_words(&be, &z)?).recv(Peer::Next, n))?;
                        from_words(&be, &shape, got.take(Peer::Next)?)?
                    }
                    _ => {
                        self.round(Round::new().send(Peer::Prev, to_words(&be, &z)?))?;
                        z
                    }
                };
                self.exact_split(part, bits)
            }
        }
    }

    /// The last round of a held-back truncation: its sender sends the missing share to the party
    /// before it. **1 round, 8 B per element from the sender** ([`last_round_sender`]).
    pub fn finish_truncation(&mut self, mut t: Truncating<B>) -> Result<AShare<B>> {
        let be = self.backend().clone();
        let n = t.share.len();
        let id = self.id();
        let mut round = Round::new();
        if id == t.sender {
            round = round.send(Peer::Prev, t.take_message());
        } else if id == (t.sender + 2) % 3 {
            round = round.recv(Peer::Next, n);
        }
        let mut got = self.round(round)?;
        if id == (t.sender + 2) % 3 {
            let missing = from_words(&be, t.share.shape(), got.take(Peer::Next)?)?;
            return t.complete(&be, missing);
        }
        Ok(t.share)
    }

    /// `t + y` for a replicated sharing `y` of `t`'s shape (the bias of a layer). Local.
    pub fn add_to_truncating(&self, t: Truncating<B>, y: &AShare<B>) -> Result<Truncating<B>> {
        Ok(Truncating { share: self.add(&t.share, y)?, ..t })
    }

    /// Truncates a replicated sharing by `2^bits` in the party's [`TruncMode`]. In exact mode the
    /// split needs no message (`P0` holds `x_0, x_1`; `P1` and `P2` hold `x_2`), so it costs 2 rounds.
    pub fn truncate_by(&mut self, x: &AShare<B>, bits: u32) -> Result<AShare<B>> {
        check_bits(bits)?;
        let be = self.backend().clone();
        match self.trunc_mode() {
            TruncMode::Probabilistic => {
                let alpha = self.zero_share(x.shape())?;
                let z = be.binary(BinaryOp::Add, x.first(), &alpha)?;
                let held = self.probabilistic_terms(z, bits)?;
                self.finish_truncation(held)
            }
            TruncMode::Exact => {
                let part = match self.id() {
                    0 => be.binary(BinaryOp::Add, x.first(), x.second())?,
                    1 => x.second().clone(),
                    _ => x.first().clone(),
                };
                let held = self.exact_split(part, bits)?;
                self.finish_truncation(held)
            }
        }
    }

    /// The exact truncation of `X = S + T` where `part` is `S` at `P0` and `T` at `P1` and `P2`.
    ///
    /// Round A: `P0` sends `t_1 = A + s - ρ_0 - ρ_2` to `P1` and the OT pair
    /// `(m_t ^ w_t)`, `m_t = t·a·2^(64-d) - s` (t = 0, 1), to `P2`; `P1` sends `w_b` to `P2`.
    /// Round B: `P2` sends `t_2 = B + m_b + ρ_2` to `P1`. Here `a = msb(S + 2^62)`, `b = msb(T)`,
    /// `A = ceil((S + 2^62) / 2^d) - a·2^(64-d) - 2^(62-d)`, `B = floor(T / 2^d) - b·2^(64-d)`;
    /// `w_0, w_1, s` come from `K_1` (`P0`, `P1`) and `ρ_0, ρ_2` from `K_0` (`P0`, `P2`); `t_0 = ρ_0`.
    /// Every message is masked by randomness its receiver does not know. Round B is held back
    /// (sender `P2`, [`finish_truncation`](Self::finish_truncation)).
    fn exact_split(&mut self, part: B::Tensor, d: u32) -> Result<Truncating<B>> {
        let be = self.backend().clone();
        let shape = part.shape().to_vec();
        let n = part.len();
        let high = 64 - d; // bit position of 2^(64-d)
        match self.id() {
            0 => {
                let s_off = be.scalar(ScalarOp::Add, &part, OFFSET)?;
                let a = be.shift(ShiftOp::RightLogical, &s_off, 63)?;
                // ceil(S'/2^d) = (S' >> d) + ((S' mod 2^d) + 2^d - 1) >> d
                let low = be.scalar(ScalarOp::And, &s_off, (1u64 << d) - 1)?;
                let up = be.shift(ShiftOp::RightLogical, &be.scalar(ScalarOp::Add, &low, (1u64 << d) - 1)?, d)?;
                let ceil = be.binary(BinaryOp::Add, &be.shift(ShiftOp::RightLogical, &s_off, d)?, &up)?;
                let a_high = be.shift(ShiftOp::Left, &a, high)?;
                let part_a = be.scalar(ScalarOp::Sub, &be.binary(BinaryOp::Sub, &ceil, &a_high)?, OFFSET >> d)?;
                let w0 = self.draw_builtin(KeyRole::Next, Purpose::ExactTruncation, &shape)?;
                let w1 = self.draw_builtin(KeyRole::Next, Purpose::ExactTruncation, &shape)?;
                let s = self.draw_builtin(KeyRole::Next, Purpose::ExactTruncation, &shape)?;
                let rho0 = self.draw_builtin(KeyRole::Own, Purpose::ExactTruncation, &shape)?;
                let rho2 = self.draw_builtin(KeyRole::Own, Purpose::ExactTruncation, &shape)?;
                let m0 = be.binary(BinaryOp::Xor, &be.unary(UnaryOp::Neg, &s)?, &w0)?;
                let m1 = be.binary(BinaryOp::Xor, &be.binary(BinaryOp::Sub, &a_high, &s)?, &w1)?;
                let t1 = be.binary(BinaryOp::Add, &part_a, &s)?;
                let t1 = be.binary(BinaryOp::Sub, &be.binary(BinaryOp::Sub, &t1, &rho0)?, &rho2)?;
                let mut pair = to_words(&be, &m0)?;
                pair.extend(to_words(&be, &m1)?);
                self.round(Round::new().send(Peer::Next, to_words(&be, &t1)?).send(Peer::Prev, pair))?;
                Ok(Truncating::new(AShare::from_parts(rho0, t1)?, 2, Vec::new()))
            }
            1 => {
                let b = be.shift(ShiftOp::RightLogical, &part, 63)?;
                let w0 = self.draw_builtin(KeyRole::Own, Purpose::ExactTruncation, &shape)?;
                let w1 = self.draw_builtin(KeyRole::Own, Purpose::ExactTruncation, &shape)?;
                let _s = self.draw_builtin(KeyRole::Own, Purpose::ExactTruncation, &shape)?;
                let wb = select(&be, &b, &w0, &w1)?;
                let mut got = self.round(Round::new().send(Peer::Next, to_words(&be, &wb)?).recv(Peer::Prev, n))?;
                let t1 = from_words(&be, &shape, got.take(Peer::Prev)?)?;
                Ok(Truncating::new(AShare::from_parts(t1, be.zeros(&shape)?)?, 2, Vec::new()))
            }
            _ => {
                let b = be.shift(ShiftOp::RightLogical, &part, 63)?;
                let part_b = be.binary(
                    BinaryOp::Sub,
                    &be.shift(ShiftOp::RightLogical, &part, d)?,
                    &be.shift(ShiftOp::Left, &b, high)?,
                )?;
                let rho0 = self.draw_builtin(KeyRole::Next, Purpose::ExactTruncation, &shape)?;
                let rho2 = self.draw_builtin(KeyRole::Next, Purpose::ExactTruncation, &shape)?;
                let mut got = self.round(Round::new().recv(Peer::Next, 2 * n).recv(Peer::Prev, n))?;
                let mut pair = got.take(Peer::Next)?;
                let m1 = from_words(&be, &shape, pair.split_off(n))?;
                let m0 = from_words(&be, &shape, pair)?;
                let wb = from_words(&be, &shape, got.take(Peer::Prev)?)?;
                let mb = be.binary(BinaryOp::Xor, &select(&be, &b, &m0, &m1)?, &wb)?;
                let t2 = be.binary(BinaryOp::Add, &be.binary(BinaryOp::Add, &part_b, &mb)?, &rho2)?;
                let message = to_words(&be, &t2)?;
                Ok(Truncating::new(AShare::from_parts(t2, rho0)?, 2, message))
            }
        }
    }

    /// ABY3's share truncation of 3-out-of-3 terms, fused with the resharing (2 rounds).
    ///
    /// Round 1: `P1` sends `z_1` to `P0`; `P2` sends `t_2 = floor(z_2 / 2^d) + r` to `P1`.
    /// `P0` computes `t_0 = ceil((z_0 + z_1) / 2^d) - t_1 - r` where `t_1 = G(K_1)` is known to `P0`
    /// and `P1` and `r = G(K_0)` to `P0` and `P2`. Round 2: `P0` sends `t_0` to `P2`. Without `r`,
    /// `t_2` would carry `d` copies of its sign bit, so neither the message nor the output share
    /// would be uniform. Wrong by `±2^(64-d)` with probability about `|z| / 2^64`. Round 2 is
    /// held back (sender `P0`, [`finish_truncation`](Self::finish_truncation)).
    fn probabilistic_terms(&mut self, z: B::Tensor, bits: u32) -> Result<Truncating<B>> {
        let be = self.backend().clone();
        let shape = z.shape().to_vec();
        let n = z.len();
        match self.id() {
            0 => {
                let mut got = self.round(Round::new().recv(Peer::Next, n))?;
                let z1 = from_words(&be, &shape, got.take(Peer::Next)?)?;
                let s = be.binary(BinaryOp::Add, &z, &z1)?;
                let s = be.scalar(ScalarOp::Add, &s, (1u64 << bits) - 1)?;
                let u = be.shift(ShiftOp::RightArith, &s, bits)?;
                let t1 = self.draw_builtin(KeyRole::Next, Purpose::Truncation, &shape)?;
                let r = self.draw_builtin(KeyRole::Own, Purpose::Truncation, &shape)?;
                let t0 = be.binary(BinaryOp::Sub, &be.binary(BinaryOp::Sub, &u, &t1)?, &r)?;
                let message = to_words(&be, &t0)?;
                Ok(Truncating::new(AShare::from_parts(t0, t1)?, 0, message))
            }
            1 => {
                let mut got = self.round(Round::new().send(Peer::Prev, to_words(&be, &z)?).recv(Peer::Next, n))?;
                let t2 = from_words(&be, &shape, got.take(Peer::Next)?)?;
                let t1 = self.draw_builtin(KeyRole::Own, Purpose::Truncation, &shape)?;
                Ok(Truncating::new(AShare::from_parts(t1, t2)?, 0, Vec::new()))
            }
            _ => {
                let r = self.draw_builtin(KeyRole::Next, Purpose::Truncation, &shape)?;
                let t2 = be.binary(BinaryOp::Add, &be.shift(ShiftOp::RightArith, &z, bits)?, &r)?;
                self.round(Round::new().send(Peer::Prev, to_words(&be, &t2)?))?;
                Ok(Truncating::new(AShare::from_parts(t2, be.zeros(&shape)?)?, 0, Vec::new()))
            }
        }
    }
}

/// A truncation held back before its last round, in which its sender (`P2` in exact mode, `P0`
/// in probabilistic mode) sends one share, 8 B per element, to the party before it. Every party
/// then holds the sum of two shares of the result and the sender's predecessor one, which is all
/// the input round of an MSB needs: [`Party::relu_truncating`] sends the last message with that
/// round; [`Party::finish_truncation`] sends it alone.
pub struct Truncating<B: Backend> {
    /// The result's shares; at the receiver, the second holds only what was added since.
    share: AShare<B>,
    /// The party that sends the last message.
    sender: usize,
    /// The sender's last message (empty elsewhere).
    message: Vec<u64>,
}

impl<B: Backend> Truncating<B> {
    fn new(share: AShare<B>, sender: usize, message: Vec<u64>) -> Self {
        Truncating { share, sender, message }
    }

    /// The result's shape.
    pub fn shape(&self) -> &[usize] {
        self.share.shape()
    }

    /// The party that sends the last message (the lead of a fused MSB's input round).
    pub fn sender(&self) -> usize {
        self.sender
    }

    /// Takes the sender's message (empty at the other parties), leaving none.
    pub(crate) fn take_message(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.message)
    }

    /// The sharing: as held by the sender and its successor, or by the receiver once `missing`
    /// (the last message) arrives. For the receiver only.
    pub(crate) fn complete(self, be: &B, missing: B::Tensor) -> Result<AShare<B>> {
        let second = be.binary(BinaryOp::Add, self.share.second(), &missing)?;
        AShare::from_parts(self.share.first().clone(), second)
    }

    /// The shares as they are (complete except at the receiver).
    pub(crate) fn share(&self) -> &AShare<B> {
        &self.share
    }

    /// The sharing, at the sender and its successor (complete there).
    pub(crate) fn into_share(self) -> AShare<B> {
        self.share
    }
}

/// The party that sends the last (held-back) round of a truncation in `mode` ([`Truncating`]).
pub fn last_round_sender(mode: TruncMode) -> usize {
    match mode {
        TruncMode::Exact => 2,
        TruncMode::Probabilistic => 0,
    }
}

/// Rounds and bytes sent by `party`, per element, of a fixed-point product held back before its
/// last round ([`Party::bilinear_held`]): [`product_cost`] less 1 round and the sender's 8 B.
pub fn product_held_cost(mode: TruncMode, party: usize) -> (u64, u64) {
    let (rounds, bytes) = product_cost(mode, party);
    (rounds - 1, bytes - if party == last_round_sender(mode) { 8 } else { 0 })
}

/// `b ? y : x` elementwise for `b` in {0, 1}: `x ^ ((x ^ y) & -b)`.
fn select<B: Backend>(be: &B, b: &B::Tensor, x: &B::Tensor, y: &B::Tensor) -> cryptgpu_ring::Result<B::Tensor> {
    let mask = be.unary(UnaryOp::Neg, b)?;
    let diff = be.binary(BinaryOp::And, &be.binary(BinaryOp::Xor, x, y)?, &mask)?;
    be.binary(BinaryOp::Xor, x, &diff)
}

/// Rounds and bytes sent by `party`, per element, of a fixed-point product (product terms plus
/// truncation) in `mode`.
pub fn product_cost(mode: TruncMode, party: usize) -> (u64, u64) {
    match mode {
        TruncMode::Exact => (3, if party == 0 { 24 } else { 16 }),
        TruncMode::Probabilistic => (2, 8),
    }
}

/// Rounds and bytes sent by `party`, per element, of truncating a replicated sharing in `mode`.
pub fn truncation_cost(mode: TruncMode, party: usize) -> (u64, u64) {
    match mode {
        TruncMode::Exact => (2, if party == 0 { 24 } else { 8 }),
        TruncMode::Probabilistic => (2, 8),
    }
}
