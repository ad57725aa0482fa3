//! Fixed-point truncation: dividing a sharing by `2^d`.
//!
//! `P0`, `P1` and `P2` below are roles: the lead ([`Party::lead`], party 0 unless changed), the
//! party after it and the one before; the costs are per role.
//!
//! Two modes ([`TruncMode`]):
//!
//! * **Exact** (default). The value is split as `X = S + T mod 2^64` with `S` known to `P0` and `T`
//!   to `P1` and `P2`, after adding the public offset `2^62` so that `X` lies in `[0, 2^63)` whenever
//!   `|z| < 2^62`. For such an `X` the wrap bit of the split is `w = msb(S) OR msb(T)`, so
//!   `floor(X / 2^d) = floor((S + T) / 2^d) - w·2^(64-d)`; the OR's cross term `msb(S)·msb(T)` is
//!   a product of a bit known to `P0` and one known to `P1` and `P2`, which both of them receive
//!   in the same round as `P0`'s share of the result (masks from the keys `P0` shares with each).
//!   The result is `z / 2^d + e` with `|e| < 1` LSB, unbiased (`S` is rounded up and `T` down) and
//!   **no failure probability** for `|z| < 2^62`. CryptGPU's (and ABY3's Π_trunc1) truncation
//!   instead fails with probability `|z| / 2^64` per element, an error of `2^(64-d)` that is
//!   certain to occur in long trainings.
//! * **Probabilistic**: ABY3's share truncation fused with the resharing (CryptGPU's behaviour, for
//!   comparison): 2 rounds and 8 B per element per party for a product, but wrong by `±2^(64-d)` with
//!   probability about `|z| / 2^64` per element.
//!
//! Costs per element per party:
//!
//! | | rounds | P0 | P1 | P2 |
//! |---|---|---|---|---|
//! | product + exact truncation | 2 | 24 B | 16 B | 16 B |
//! | exact truncation of a sharing | 1 | 24 B | 8 B | 8 B |
//! | product + probabilistic truncation | 2 | 8 B | 8 B | 8 B |
//! | probabilistic truncation of a sharing | 2 | 8 B | 8 B | 8 B |
//!
//! A product's truncation can be held back before its last round ([`Truncating`]: in exact mode
//! the whole split, in probabilistic mode `P0`'s last message), so that a ReLU after it sends
//! that round with its MSB's input round ([`Party::relu_truncating`]): the product then costs 1
//! round (8 B from `P1` and `P2`; [`product_held_cost`]) before the ReLU's own. In exact mode the
//! MSB runs on `X` itself, whose sign the division keeps, so it does not wait for the truncation.

use cryptgpu_net::{Peer, Received, Round, Transport};
use cryptgpu_ring::shape::check_same;
use cryptgpu_ring::{Backend, BinaryOp, DeviceTensor, ScalarOp, ShiftOp};

use crate::ashare::AShare;
use crate::binary::{from_words, to_words};
use crate::error::{Result, SharingError};
use crate::party::Party;
use crate::streams::{KeyRole, Purpose};

/// How fixed-point products are truncated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TruncMode {
    /// Exact up to one LSB for `|z| < 2^62` (no wrap failures); 2 rounds per product.
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
                // P1 sends z_1 to P0 and P2 sends z_2 to P1, so P0 knows S = z_0 + z_1 and
                // P1, P2 know T = z_2.
                let part = match self.role() {
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
                Ok(Truncating { held: Held::Split { part, bits }, lead: self.lead() })
            }
        }
    }

    /// The last round of a held-back truncation ([`Truncating`]), under the lead it began with
    /// ([`Truncating::lead`]). **1 round**; bytes per element: [`truncation_cost`] in exact mode,
    /// 8 B from `P0` in probabilistic mode.
    pub fn finish_truncation(&mut self, t: Truncating<B>) -> Result<AShare<B>> {
        self.with_lead(t.lead, |p| match t.held {
            Held::Split { part, bits } => {
                let (round, state) = p.split_start(&part, bits)?;
                let got = p.round(round)?;
                p.split_finish(state, got)
            }
            Held::Last { share, message } => {
                let (round, state) = p.last_start(share, message);
                let got = p.round(round)?;
                p.last_finish(state, got)
            }
        })
    }

    /// `t + y` for a replicated sharing `y` of `t`'s shape (the bias of a layer). Local.
    pub fn add_to_truncating(&self, t: Truncating<B>, y: &AShare<B>) -> Result<Truncating<B>> {
        check_same("add_to_truncating", t.shape(), y.shape())?;
        let be = self.backend();
        let held = match t.held {
            Held::Split { part, bits } => {
                // `y · 2^bits` added to `X` before the division: P0 adds y_0 + y_1, P1 and P2 y_2.
                let mine = match self.role() {
                    0 => be.binary(BinaryOp::Add, y.first(), y.second())?,
                    1 => y.second().clone(),
                    _ => y.first().clone(),
                };
                let part = be.binary(BinaryOp::Add, &part, &be.shift(ShiftOp::Left, &mine, bits)?)?;
                Held::Split { part, bits }
            }
            Held::Last { share, message } => Held::Last { share: self.add(&share, y)?, message },
        };
        Ok(Truncating { held, lead: t.lead })
    }

    /// Truncates a replicated sharing by `2^bits` in the party's [`TruncMode`]. In exact mode the
    /// split needs no message (`P0` holds `x_0, x_1`; `P1` and `P2` hold `x_2`), so it costs 1 round.
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
                let part = match self.role() {
                    0 => be.binary(BinaryOp::Add, x.first(), x.second())?,
                    1 => x.second().clone(),
                    _ => x.first().clone(),
                };
                self.finish_truncation(Truncating { held: Held::Split { part, bits }, lead: self.lead() })
            }
        }
    }

    /// The one round of the exact truncation of `X = S + T`, where `part` is `S` at `P0` and `T`
    /// at `P1` and `P2`: the messages to send (and the words to expect) and what the party keeps.
    ///
    /// With `a = msb(S + 2^62)`, `b = msb(T)`, `A = ceil((S + 2^62) / 2^d) - a·2^(64-d) -
    /// 2^(62-d)` (known to `P0`), `B = floor(T / 2^d) - b·2^(64-d)` (known to `P1`, `P2`), the
    /// result is `A + B + C` with the cross term `C = a·b·2^(64-d)`. `k, s` come from `K_1`
    /// (`P0`, `P1`) and `k', s', ρ` from `K_0` (`P0`, `P2`):
    /// * `P0 -> P2`: `u = a·2^(64-d) + k`; `P1 -> P2`: `w = b·k + s`; so `P2` gets
    ///   `b·u - w = C - s`;
    /// * `P0 -> P1`: `u' = a·2^(64-d) + k'` and `y_1 = A + s + s' - ρ`; `P2 -> P1`:
    ///   `w' = b·k' + s'`; so `P1` gets `C - s'`;
    /// * the sharing is `(y_0, y_1, y_2) = (ρ, y_1, B + C - s - s')`: `P1` and `P2` both compute
    ///   `y_2`.
    ///
    /// Each party's view is uniform given its output: `P2` sees `(a·2^(64-d) + k, b·k + s)` with
    /// `k, s` unknown to it, `P1` sees `(A + s + s' - ρ, a·2^(64-d) + k', b·k' + s')` with
    /// `s', ρ, k'` unknown (an invertible map of them), and `P0` receives nothing.
    fn split_start(&mut self, part: &B::Tensor, d: u32) -> Result<(Round, Split<B>)> {
        let be = self.backend().clone();
        let shape = part.shape().to_vec();
        let n = part.len();
        let high = 64 - d; // bit position of 2^(64-d)
        let add = |p: &B::Tensor, q: &B::Tensor| be.binary(BinaryOp::Add, p, q);
        let sub = |p: &B::Tensor, q: &B::Tensor| be.binary(BinaryOp::Sub, p, q);
        let mul = |p: &B::Tensor, q: &B::Tensor| be.binary(BinaryOp::Mul, p, q);
        let part_b =
            |b: &B::Tensor| sub(&be.shift(ShiftOp::RightLogical, part, d)?, &be.shift(ShiftOp::Left, b, high)?);
        Ok(match self.role() {
            0 => {
                let s_off = be.scalar(ScalarOp::Add, part, OFFSET)?;
                let a = be.shift(ShiftOp::RightLogical, &s_off, 63)?;
                // ceil(S'/2^d) = (S' >> d) + ((S' mod 2^d) + 2^d - 1) >> d
                let low = be.scalar(ScalarOp::And, &s_off, (1u64 << d) - 1)?;
                let up = be.shift(ShiftOp::RightLogical, &be.scalar(ScalarOp::Add, &low, (1u64 << d) - 1)?, d)?;
                let ceil = add(&be.shift(ShiftOp::RightLogical, &s_off, d)?, &up)?;
                let a_high = be.shift(ShiftOp::Left, &a, high)?;
                let part_a = be.scalar(ScalarOp::Sub, &sub(&ceil, &a_high)?, OFFSET >> d)?;
                let k = self.draw_builtin(KeyRole::Next, Purpose::ExactTruncation, &shape)?;
                let s = self.draw_builtin(KeyRole::Next, Purpose::ExactTruncation, &shape)?;
                let k2 = self.draw_builtin(KeyRole::Own, Purpose::ExactTruncation, &shape)?;
                let s2 = self.draw_builtin(KeyRole::Own, Purpose::ExactTruncation, &shape)?;
                let rho = self.draw_builtin(KeyRole::Own, Purpose::ExactTruncation, &shape)?;
                let y1 = sub(&add(&add(&part_a, &s)?, &s2)?, &rho)?;
                let mut to_p1 = to_words(&be, &y1)?;
                to_p1.extend(to_words(&be, &add(&a_high, &k2)?)?);
                let to_p2 = to_words(&be, &add(&a_high, &k)?)?;
                let round = Round::new().send(Peer::Next, to_p1).send(Peer::Prev, to_p2);
                (round, Split::Done(AShare::from_parts(rho, y1)?))
            }
            1 => {
                let b = be.shift(ShiftOp::RightLogical, part, 63)?;
                let k = self.draw_builtin(KeyRole::Own, Purpose::ExactTruncation, &shape)?;
                let s = self.draw_builtin(KeyRole::Own, Purpose::ExactTruncation, &shape)?;
                let w = add(&mul(&b, &k)?, &s)?;
                let base = sub(&part_b(&b)?, &s)?;
                let round =
                    Round::new().send(Peer::Next, to_words(&be, &w)?).recv(Peer::Prev, 2 * n).recv(Peer::Next, n);
                (round, Split::Second { base, b })
            }
            _ => {
                let b = be.shift(ShiftOp::RightLogical, part, 63)?;
                let k2 = self.draw_builtin(KeyRole::Next, Purpose::ExactTruncation, &shape)?;
                let s2 = self.draw_builtin(KeyRole::Next, Purpose::ExactTruncation, &shape)?;
                let rho = self.draw_builtin(KeyRole::Next, Purpose::ExactTruncation, &shape)?;
                let w2 = add(&mul(&b, &k2)?, &s2)?;
                let base = sub(&part_b(&b)?, &s2)?;
                let round = Round::new().send(Peer::Prev, to_words(&be, &w2)?).recv(Peer::Next, n).recv(Peer::Prev, n);
                (round, Split::Third { base, b, rho })
            }
        })
    }

    /// The sharing from [`split_start`](Self::split_start)'s state and the round's messages.
    fn split_finish(&self, state: Split<B>, mut got: Received) -> Result<AShare<B>> {
        let be = self.backend();
        // y_2 = base + b·u - w
        let y2 = |base: &B::Tensor, b: &B::Tensor, u: &B::Tensor, w: &B::Tensor| -> Result<B::Tensor> {
            let bu = be.binary(BinaryOp::Mul, b, u)?;
            Ok(be.binary(BinaryOp::Sub, &be.binary(BinaryOp::Add, base, &bu)?, w)?)
        };
        match state {
            Split::Done(share) => Ok(share),
            Split::Second { base, b } => {
                let shape = base.shape().to_vec();
                let mut from_p0 = got.take(Peer::Prev)?;
                let u2 = from_words(be, &shape, from_p0.split_off(base.len()))?;
                let y1 = from_words(be, &shape, from_p0)?;
                let w2 = from_words(be, &shape, got.take(Peer::Next)?)?;
                AShare::from_parts(y1, y2(&base, &b, &u2, &w2)?)
            }
            Split::Third { base, b, rho } => {
                let shape = base.shape().to_vec();
                let u = from_words(be, &shape, got.take(Peer::Next)?)?;
                let w = from_words(be, &shape, got.take(Peer::Prev)?)?;
                AShare::from_parts(y2(&base, &b, &u, &w)?, rho)
            }
        }
    }

    /// The last round of a probabilistic truncation: `P0` sends `t_0` to `P2`.
    fn last_start(&self, share: AShare<B>, message: Vec<u64>) -> (Round, AShare<B>) {
        let n = share.len();
        let round = match self.role() {
            0 => Round::new().send(Peer::Prev, message),
            2 => Round::new().recv(Peer::Next, n),
            _ => Round::new(),
        };
        (round, share)
    }

    /// The sharing after [`last_start`](Self::last_start)'s round.
    fn last_finish(&self, share: AShare<B>, mut got: Received) -> Result<AShare<B>> {
        if self.role() != 2 {
            return Ok(share);
        }
        let be = self.backend();
        let missing = from_words(be, share.shape(), got.take(Peer::Next)?)?;
        let second = be.binary(BinaryOp::Add, share.second(), &missing)?;
        AShare::from_parts(share.first().clone(), second)
    }

    /// [`finish_truncation`](Self::finish_truncation) with its round riding on the next round
    /// ([`Party::ride_next_round`]), whatever runs it; `then` runs that round (and any after it),
    /// and the result comes back with the truncated sharing. `then` gets this party's operand of
    /// an MSB (`a` at `P0`, `b` at `P1`, `P2`) whose sign is the result's: in exact mode that of
    /// `X` itself (the division keeps the sign), in probabilistic mode the result's
    /// ([`Party::operand`]). The caller must run at least one round in `then`.
    pub(crate) fn truncation_riding<R>(
        &mut self,
        t: Truncating<B>,
        then: impl FnOnce(&mut Self, B::Tensor) -> Result<R>,
    ) -> Result<(R, AShare<B>)> {
        let be = self.backend().clone();
        self.with_lead(t.lead, |p| match t.held {
            Held::Split { part, bits } => {
                let n = part.len();
                let (round, state) = p.split_start(&part, bits)?;
                p.ride_next_round(round)?;
                let out = then(p, be.reshape(&part, &[n])?)?;
                let got = p.take_ridden()?;
                Ok((out, p.split_finish(state, got)?))
            }
            Held::Last { share, message } => {
                let v = p.operand(&share)?;
                let (round, state) = p.last_start(share, message);
                p.ride_next_round(round)?;
                let out = then(p, v)?;
                let got = p.take_ridden()?;
                Ok((out, p.last_finish(state, got)?))
            }
        })
    }

    /// ABY3's share truncation of 3-out-of-3 terms, fused with the resharing (2 rounds).
    ///
    /// Round 1: `P1` sends `z_1` to `P0`; `P2` sends `t_2 = floor(z_2 / 2^d) + r` to `P1`.
    /// `P0` computes `t_0 = ceil((z_0 + z_1) / 2^d) - t_1 - r` where `t_1 = G(K_1)` is known to `P0`
    /// and `P1` and `r = G(K_0)` to `P0` and `P2`. Round 2: `P0` sends `t_0` to `P2`. Without `r`,
    /// `t_2` would carry `d` copies of its sign bit, so neither the message nor the output share
    /// would be uniform. Wrong by `±2^(64-d)` with probability about `|z| / 2^64`. Round 2 is
    /// held back ([`finish_truncation`](Self::finish_truncation)).
    fn probabilistic_terms(&mut self, z: B::Tensor, bits: u32) -> Result<Truncating<B>> {
        let be = self.backend().clone();
        let shape = z.shape().to_vec();
        let n = z.len();
        match self.role() {
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
                Ok(Truncating { held: Held::Last { share: AShare::from_parts(t0, t1)?, message }, lead: self.lead() })
            }
            1 => {
                let mut got = self.round(Round::new().send(Peer::Prev, to_words(&be, &z)?).recv(Peer::Next, n))?;
                let t2 = from_words(&be, &shape, got.take(Peer::Next)?)?;
                let t1 = self.draw_builtin(KeyRole::Own, Purpose::Truncation, &shape)?;
                Ok(Truncating {
                    held: Held::Last { share: AShare::from_parts(t1, t2)?, message: Vec::new() },
                    lead: self.lead(),
                })
            }
            _ => {
                let r = self.draw_builtin(KeyRole::Next, Purpose::Truncation, &shape)?;
                let t2 = be.binary(BinaryOp::Add, &be.shift(ShiftOp::RightArith, &z, bits)?, &r)?;
                self.round(Round::new().send(Peer::Prev, to_words(&be, &t2)?))?;
                Ok(Truncating {
                    held: Held::Last { share: AShare::from_parts(t2, be.zeros(&shape)?)?, message: Vec::new() },
                    lead: self.lead(),
                })
            }
        }
    }
}

/// A truncation held back before its last round: [`Party::finish_truncation`] sends that round
/// alone, [`Party::relu_truncating`] with the first round of the ReLU's MSB.
///
/// In exact mode the held state is the split `X = S + T` before the truncation's only round (the
/// MSB then runs on `X`, whose sign the division keeps); in probabilistic mode, the result before
/// `P0` sends its share `t_0` to `P2`.
pub struct Truncating<B: Backend> {
    held: Held<B>,
    /// The lead when the truncation began ([`Party::lead`]): its last round has the same roles.
    lead: usize,
}

enum Held<B: Backend> {
    /// `part` is `S` at `P0` and `T` at `P1`, `P2`; the result is `X / 2^bits`.
    Split { part: B::Tensor, bits: u32 },
    /// The result's shares (at `P2`, the second lacks `t_0`) and `P0`'s last message.
    Last { share: AShare<B>, message: Vec<u64> },
}

impl<B: Backend> Truncating<B> {
    /// The lead the truncation runs under ([`Party::lead`] when it began).
    pub fn lead(&self) -> usize {
        self.lead
    }

    /// The result's shape.
    pub fn shape(&self) -> &[usize] {
        match &self.held {
            Held::Split { part, .. } => part.shape(),
            Held::Last { share, .. } => share.shape(),
        }
    }

    /// The held truncations of the flattened elements `start..end` of each range, in order.
    pub(crate) fn into_pieces(self, be: &B, ranges: &[(usize, usize)]) -> Result<Vec<Truncating<B>>> {
        let n = self.shape().iter().product::<usize>();
        let mut out = Vec::with_capacity(ranges.len());
        let lead = self.lead;
        match self.held {
            Held::Split { part, bits } => {
                let flat = be.reshape_owned(part, &[n])?;
                for &(start, end) in ranges {
                    out.push(Truncating { held: Held::Split { part: be.slice(&flat, 0, start, end)?, bits }, lead });
                }
            }
            Held::Last { share, message } => {
                let flat = share.map(|t| be.reshape(t, &[n]))?;
                for &(start, end) in ranges {
                    let piece = flat.map(|t| be.slice(t, 0, start, end))?;
                    let message = message.get(start..end).map_or_else(Vec::new, <[u64]>::to_vec);
                    out.push(Truncating { held: Held::Last { share: piece, message }, lead });
                }
            }
        }
        Ok(out)
    }
}

/// What a party keeps between the exact truncation's messages and its sharing.
enum Split<B: Backend> {
    /// `P0`: the sharing is complete.
    Done(AShare<B>),
    /// `P1`: `B - s` and the bit `b`.
    Second { base: B::Tensor, b: B::Tensor },
    /// `P2`: `B - s'`, the bit `b` and `y_0 = ρ`.
    Third { base: B::Tensor, b: B::Tensor, rho: B::Tensor },
}

/// Rounds and bytes sent by `party`, per element, of a fixed-point product held back before its
/// truncation's last round ([`Party::bilinear_held`]): the product terms' one round (8 B from
/// `P1` and `P2`) in both modes.
pub fn product_held_cost(mode: TruncMode, party: usize) -> (u64, u64) {
    let (rounds, bytes) = product_cost(mode, party);
    let (last_rounds, last_bytes) = held_round_cost(mode, party);
    (rounds - last_rounds, bytes - last_bytes)
}

/// Rounds and bytes sent by `party`, per element, of a held truncation's last round
/// ([`Party::finish_truncation`]): the exact truncation's one round, or `P0`'s 8 B.
pub fn held_round_cost(mode: TruncMode, party: usize) -> (u64, u64) {
    match mode {
        TruncMode::Exact => truncation_cost(mode, party),
        TruncMode::Probabilistic => (1, if party == 0 { 8 } else { 0 }),
    }
}

/// Rounds and bytes sent by `party`, per element, of a fixed-point product (product terms plus
/// truncation) in `mode`.
pub fn product_cost(mode: TruncMode, party: usize) -> (u64, u64) {
    match mode {
        TruncMode::Exact => (2, if party == 0 { 24 } else { 16 }),
        TruncMode::Probabilistic => (2, 8),
    }
}

/// Rounds and bytes sent by `party`, per element, of truncating a replicated sharing in `mode`.
pub fn truncation_cost(mode: TruncMode, party: usize) -> (u64, u64) {
    match mode {
        TruncMode::Exact => (1, if party == 0 { 24 } else { 8 }),
        TruncMode::Probabilistic => (2, 8),
    }
}
