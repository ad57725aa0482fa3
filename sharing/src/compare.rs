//! Comparisons and the layers built on them: DReLU, ReLU (forward and backward), lt/gt/le/ge/eq,
//! sign, abs, pairwise max, max and one-hot argmax along an axis, 2-D max pooling (forward and
//! backward).
//!
//! Comparisons take the MSB of a difference ([`Party::msb`], 7 rounds) and are exact whenever the
//! difference does not wrap, i.e. `|x - y| < 2^63` in the signed view (always the case for
//! fixed-point values in the codec's range). Bits that must act on arithmetic values go through the
//! fused `x * [b]` ([`Party::mul_bit`], 2 rounds) at integer scale, so nothing is truncated and the
//! results are exact. An `x * [b]` right after an MSB is led by the party after the MSB's lead
//! ([`after_msb`]), which sends little in the MSB, so the pair costs every party about the same.
//! Costs below use `M(n)` = [`msb_bytes`] and `X(n)` = [`mul_bit_bytes`] (bytes sent by one role
//! for `n` elements; `X` of role [`after_msb`]`(r)` for the party of MSB role `r`).

use cryptgpu_net::Transport;
use cryptgpu_ring::shape::{check_same, pool2d_window};
use cryptgpu_ring::{Backend, Pool2dParams, RingTensor, ScalarOp};

use crate::ashare::{AShare, ShareKind, Shares};
use crate::binary::BShare;
use crate::convert::{
    msb_bytes, msb_variant_bytes, msb_variant_rounds, mul_bit_bytes, mul_bit_one_round_bytes, MsbVariant, MSB_ROUNDS,
};
use crate::error::{Result, SharingError};
use crate::party::Party;
use crate::trunc::{held_round_cost, TruncMode, Truncating};

/// The value that padded positions of max pooling take: `-2^62`. Inputs of the max protocols
/// must lie in `(-2^62, 2^62)` (ring units), so that differences never wrap and padding never wins.
pub const MAX_FILLER: u64 = (-(1i64 << 62)) as u64;

/// Rounds and bytes sent by party `party` in [`Party::max_axis`] over `rows` independent rows of
/// length `len` (with or without the one-hot argmax).
pub fn max_axis_cost(party: usize, rows: usize, len: usize, argmax: bool) -> (u64, u64) {
    max_axis_cost_with(MsbVariant::Lean, party, rows, len, argmax)
}

/// Rounds and bytes sent by party `party` in [`Party::max_axis_with`].
pub fn max_axis_cost_with(variant: MsbVariant, party: usize, rows: usize, len: usize, argmax: bool) -> (u64, u64) {
    let mut m = len;
    let (mut rounds, mut bytes, mut width) = (0u64, 0u64, 1usize);
    while m > 1 {
        let pairs = rows * (m / 2);
        let muls = if argmax { pairs * (1 + 2 * width) } else { pairs };
        rounds += relu_cost(variant, party, 0).0;
        bytes += msb_variant_bytes(variant, party, pairs);
        bytes += match variant {
            MsbVariant::Lean => mul_bit_bytes(after_msb(party), muls),
            MsbVariant::LowLatency => mul_bit_one_round_bytes(after_msb(party), muls),
        };
        m = m.div_ceil(2);
        width *= 2;
    }
    (rounds, bytes)
}

/// Elements of one piece of a ReLU ([`Party::relu_with`], [`Party::relu_truncating`]): a larger
/// input runs piece after piece, so that the circuit's temporaries (about 130 B per element per
/// party) exist for one piece at a time; each piece costs the rounds of a whole ReLU, the bytes
/// do not change (the piece is a multiple of 64 elements). 2^20 elements: the 7 rounds of a piece
/// take 1.4 ms on a LAN against about 0.1 s for its bytes at 5 Gbit/s, and 0.25 s on a WAN
/// against 1.6 s at 320 Mbit/s.
pub const RELU_PIECE: usize = 1 << 20;

/// The pieces a ReLU of `n` elements runs in ([`RELU_PIECE`]; 1 for `n <= RELU_PIECE`, 0
/// included).
pub fn relu_pieces(n: usize) -> u64 {
    n.div_ceil(RELU_PIECE).max(1) as u64
}

/// The element ranges of the pieces of `n` elements (none for `n = 0`).
fn piece_ranges(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..n).step_by(RELU_PIECE).map(move |start| (start, (start + RELU_PIECE).min(n)))
}

/// The role in an `x * [b]` that follows an MSB of the party with MSB role `role`: the `x * [b]`
/// is led by the party after the MSB's lead, so the MSB's lead (role 0) plays role 2, and so on.
///
/// ```rust
/// use cryptgpu_sharing::compare::after_msb;
/// assert_eq!([0, 1, 2].map(after_msb), [2, 0, 1]);
/// ```
pub fn after_msb(role: usize) -> usize {
    (role + 2) % 3
}

/// Rounds and bytes sent by party `party` in [`Party::relu_with`] of `n` elements: per piece
/// ([`relu_pieces`]), the MSB's rounds and the `x * [b]`'s.
pub fn relu_cost(variant: MsbVariant, party: usize, n: usize) -> (u64, u64) {
    let one = |n: usize| match variant {
        MsbVariant::Lean => (MSB_ROUNDS + 2, msb_bytes(party, n) + mul_bit_bytes(after_msb(party), n)),
        MsbVariant::LowLatency => (
            msb_variant_rounds(variant) + 1,
            msb_variant_bytes(variant, party, n) + mul_bit_one_round_bytes(after_msb(party), n),
        ),
    };
    if n <= RELU_PIECE {
        return one(n);
    }
    piece_ranges(n).map(|(s, e)| one(e - s)).fold((0, 0), |(r, b), (pr, pb)| (r + pr, b + pb))
}

/// Rounds and bytes sent by party `party` in [`Party::relu_truncating`] of `n` elements after a
/// truncation in `mode`: the rounds of [`relu_cost`], with the truncation's last round
/// ([`held_round_cost`]) riding on the MSB's first.
pub fn relu_truncating_cost(variant: MsbVariant, mode: TruncMode, party: usize, n: usize) -> (u64, u64) {
    let (rounds, bytes) = relu_cost(variant, party, n);
    (rounds, bytes + held_round_cost(mode, party).1 * n as u64)
}

/// Bytes sent by party `party` in [`Party::relu_with`] of `n` elements ([`relu_cost`]).
pub fn relu_bytes(variant: MsbVariant, party: usize, n: usize) -> u64 {
    relu_cost(variant, party, n).1
}

impl<B: Backend, T: Transport> Party<B, T> {
    /// `x + c` for a public word `c` (added to share `x_0`). No communication.
    pub fn add_scalar(&self, x: &AShare<B>, c: u64) -> Result<AShare<B>> {
        let be = self.backend();
        let (mut first, mut second) = (x.first().clone(), x.second().clone());
        match self.id() {
            0 => first = be.scalar(ScalarOp::Add, &first, c)?,
            2 => second = be.scalar(ScalarOp::Add, &second, c)?,
            _ => {}
        }
        AShare::from_parts(first, second)
    }

    /// The trivial sharing of the public constant `c` in every element of `shape`. No communication.
    pub fn public_share(&self, shape: &[usize], c: u64) -> Result<AShare<B>> {
        let z = self.backend().zeros(shape)?;
        self.add_scalar(&AShare::from_parts(z.clone(), z)?, c)
    }

    /// DReLU `[x >= 0]` = `!msb(x)` as 0/1 bits (kept for ReLU's backward pass).
    /// **7 rounds, `M(n)` B per party.**
    pub fn drelu(&mut self, x: &AShare<B>) -> Result<BShare<B>> {
        self.drelu_with(x, MsbVariant::Lean)
    }

    /// DReLU with the chosen MSB protocol: **7 or 6 rounds,
    /// [`msb_variant_bytes`] B per party.**
    pub fn drelu_with(&mut self, x: &AShare<B>, variant: MsbVariant) -> Result<BShare<B>> {
        let m = self.msb_with(x, variant)?;
        self.b_not_bit(&m)
    }

    /// ReLU `x * [x >= 0]`, exact (no truncation), and the DReLU bits for the backward pass.
    /// **9 rounds, `M(n) + X(n)` B per party**: asymptotically 47.6 B per element for each party
    /// (CryptGPU: about 23 rounds and 90 B per party).
    pub fn relu(&mut self, x: &AShare<B>) -> Result<(AShare<B>, BShare<B>)> {
        self.relu_with(x, MsbVariant::Lean)
    }

    /// ReLU optimised for bytes ([`MsbVariant::Lean`]: 7-round MSB and the 2-round `x * [b]`,
    /// **9 rounds**) or for latency ([`MsbVariant::LowLatency`]: 6-round MSB and the 1-round
    /// [`mul_bit_one_round`](Self::mul_bit_one_round), **7 rounds**, 71.6, 55.6 and 55.6 B per
    /// element), per piece of [`RELU_PIECE`] elements. Rounds and bytes per party: [`relu_cost`].
    pub fn relu_with(&mut self, x: &AShare<B>, variant: MsbVariant) -> Result<(AShare<B>, BShare<B>)> {
        if x.len() <= RELU_PIECE {
            return self.relu_piece(x, variant);
        }
        let (y, bits) = self.relu_in_pieces(x, variant, true)?;
        Ok((y, join(self.backend(), bits, x.shape())?))
    }

    /// [`relu_with`](Self::relu_with) without the DReLU bits (for inference and opened ReLUs):
    /// each piece's bits are dropped once used, 16 B per element per party less at the end. The
    /// same rounds and bytes ([`relu_cost`]).
    pub fn relu_values(&mut self, x: &AShare<B>, variant: MsbVariant) -> Result<AShare<B>> {
        if x.len() <= RELU_PIECE {
            return Ok(self.relu_piece(x, variant)?.0);
        }
        Ok(self.relu_in_pieces(x, variant, false)?.0)
    }

    /// The pieces of a ReLU of more than [`RELU_PIECE`] elements: the joined output, and each
    /// piece's DReLU bits when `keep_bits` (none otherwise).
    fn relu_in_pieces(
        &mut self,
        x: &AShare<B>,
        variant: MsbVariant,
        keep_bits: bool,
    ) -> Result<(AShare<B>, Vec<BShare<B>>)> {
        let n = x.len();
        let be = self.backend().clone();
        // A copy flattened for slicing unless it is flat already.
        let flat = if x.shape().len() == 1 { None } else { Some(x.map(|t| be.reshape(t, &[n]))?) };
        let flat = flat.as_ref().unwrap_or(x);
        let (mut ys, mut bits) = (Vec::new(), Vec::new());
        for (start, end) in piece_ranges(n) {
            let piece = flat.map(|t| be.slice(t, 0, start, end))?;
            let (y, d) = self.relu_piece(&piece, variant)?;
            ys.push(y);
            if keep_bits {
                bits.push(d);
            }
        }
        Ok((join(&be, ys, x.shape())?, bits))
    }

    /// [`relu_with`](Self::relu_with) of one piece.
    fn relu_piece(&mut self, x: &AShare<B>, variant: MsbVariant) -> Result<(AShare<B>, BShare<B>)> {
        let d = self.drelu_with(x, variant)?;
        let y = self.select_after_msb(x, &d, variant)?;
        Ok((y, d))
    }

    /// [`relu_with`](Self::relu_with) of a truncation held back before its last round (the
    /// output of [`bilinear_held`](Self::bilinear_held)): that round rides on the MSB's input
    /// round, and the whole ReLU runs under the truncation's lead ([`Truncating::lead`], whatever
    /// the current one); in exact mode the MSB is that of the undivided value, whose sign the
    /// division keeps (see [`crate::trunc`]). Exact, with the result of
    /// `relu_with(finish_truncation(t))`, except that the DReLU bit is that of the undivided value
    /// (0 for a product in `(-2^d, 0)` that rounds to 0). **The rounds of `relu_with`**, 1 fewer than
    /// both steps (per piece of [`RELU_PIECE`] elements); bytes per party:
    /// [`relu_truncating_cost`].
    pub fn relu_truncating(&mut self, t: Truncating<B>, variant: MsbVariant) -> Result<(AShare<B>, BShare<B>)> {
        self.with_lead(t.lead(), |p| p.relu_truncating_led(t, variant))
    }

    /// [`relu_truncating`](Self::relu_truncating) under the truncation's lead.
    fn relu_truncating_led(&mut self, t: Truncating<B>, variant: MsbVariant) -> Result<(AShare<B>, BShare<B>)> {
        let be = self.backend().clone();
        let shape = t.shape().to_vec();
        let n = shape.iter().product::<usize>();
        if n == 0 {
            let x = self.finish_truncation(t)?;
            return self.relu_with(&x, variant);
        }
        if n <= RELU_PIECE {
            return self.relu_truncating_piece(t, variant, &shape);
        }
        let (mut ys, mut ds) = (Vec::new(), Vec::new());
        for piece in t.into_pieces(&be, &piece_ranges(n).collect::<Vec<_>>())? {
            let len = [piece.shape().iter().product::<usize>()];
            let (y, d) = self.relu_truncating_piece(piece, variant, &len)?;
            ys.push(y);
            ds.push(d);
        }
        Ok((join(&be, ys, &shape)?, join(&be, ds, &shape)?))
    }

    /// [`relu_truncating`](Self::relu_truncating) of one piece of shape `shape`.
    fn relu_truncating_piece(
        &mut self,
        t: Truncating<B>,
        variant: MsbVariant,
        shape: &[usize],
    ) -> Result<(AShare<B>, BShare<B>)> {
        let be = self.backend().clone();
        let (m, x) = self.truncation_riding(t, |p, v| p.msb_core(&v, variant))?;
        let m = m.map(|b| be.reshape(b, shape))?;
        let d = self.b_not_bit(&m)?;
        let y = self.select_after_msb(&x, &d, variant)?;
        Ok((y, d))
    }

    /// ReLU backward: `g * drelu`, exact. **2 rounds, `X(n)` B per party.**
    pub fn relu_backward(&mut self, g: &AShare<B>, drelu: &BShare<B>) -> Result<AShare<B>> {
        self.mul_bit(g, drelu)
    }

    /// ReLU backward with the `x * [b]` of [`relu_with`](Self::relu_with)`(variant)`: **2 rounds**
    /// (`Lean`, `X(n)` B) **or 1 round** (`LowLatency`, 40 / 40 / 16 B per element).
    pub fn relu_backward_with(&mut self, g: &AShare<B>, drelu: &BShare<B>, variant: MsbVariant) -> Result<AShare<B>> {
        self.select_bit(g, drelu, variant)
    }

    /// `[x < y]` as 0/1 bits (`msb(x - y)`). **7 rounds, `M(n)` B per party.**
    pub fn lt(&mut self, x: &AShare<B>, y: &AShare<B>) -> Result<BShare<B>> {
        let d = self.sub(x, y)?;
        self.msb(&d)
    }

    /// `[x > y]` (`msb(y - x)`). **7 rounds, `M(n)` B per party.**
    pub fn gt(&mut self, x: &AShare<B>, y: &AShare<B>) -> Result<BShare<B>> {
        self.lt(y, x)
    }

    /// `[x <= y]` (`!gt`). **7 rounds, `M(n)` B per party.**
    pub fn le(&mut self, x: &AShare<B>, y: &AShare<B>) -> Result<BShare<B>> {
        let b = self.gt(x, y)?;
        self.b_not_bit(&b)
    }

    /// `[x >= y]` (`!lt`). **7 rounds, `M(n)` B per party.**
    pub fn ge(&mut self, x: &AShare<B>, y: &AShare<B>) -> Result<BShare<B>> {
        let b = self.lt(x, y)?;
        self.b_not_bit(&b)
    }

    /// `[x == y]`: with `d = x - y`, `!msb(d) & !msb(-d)` (both MSBs in one batched call, then one
    /// bit-packed AND; `d = -2^63` has `msb(-d) = 1` and correctly gives 0).
    /// **8 rounds, `M(2n) + 8·ceil(n/64)` B per party.**
    pub fn eq(&mut self, x: &AShare<B>, y: &AShare<B>) -> Result<BShare<B>> {
        check_same("eq", x.shape(), y.shape())?;
        let be = self.backend().clone();
        let n = x.len();
        let d = self.sub(x, y)?.map(|t| be.reshape(t, &[n]))?;
        let nd = self.neg(&d)?;
        let both =
            AShare::from_parts(be.concat(&[d.first(), nd.first()], 0)?, be.concat(&[d.second(), nd.second()], 0)?)?;
        let m = self.msb(&both)?;
        let m = self.b_not_bit(&m)?;
        let lo = m.map(|t| be.slice(t, 0, 0, n))?;
        let hi = m.map(|t| be.slice(t, 0, n, 2 * n))?;
        let e = self.b_and_bits(&lo, &hi)?;
        e.map(|t| be.reshape(t, x.shape()))
    }

    /// `sign(x)` as an integer sharing: +1 for `x >= 0` (including 0), -1 for `x < 0`
    /// (`1 - 2·[msb]`). **9 rounds, `M(n)` + 16/8/8 B per element (bit injection).**
    pub fn sign(&mut self, x: &AShare<B>) -> Result<AShare<B>> {
        let m = self.msb(x)?;
        let a = self.b2a_bit(&m)?;
        let a = self.mul_scalar(&a, (-2i64) as u64)?;
        self.add_scalar(&a, 1)
    }

    /// `|x|` = `x - 2·x·msb(x)`, exact. **9 rounds, `M(n) + X(n)` B per party.**
    pub fn abs(&mut self, x: &AShare<B>) -> Result<AShare<B>> {
        let m = self.msb(x)?;
        let xm = self.select_after_msb(x, &m, MsbVariant::Lean)?;
        let two = self.mul_scalar(&xm, 2)?;
        self.sub(x, &two)
    }

    /// Elementwise `max(x, y)` = `y + (x - y)·[x >= y]`, exact. **9 rounds, `M(n) + X(n)` B per party.**
    pub fn max2(&mut self, x: &AShare<B>, y: &AShare<B>) -> Result<AShare<B>> {
        let d = self.sub(x, y)?;
        let m = self.msb(&d)?;
        let ge = self.b_not_bit(&m)?;
        let t = self.select_after_msb(&d, &ge, MsbVariant::Lean)?;
        self.add(y, &t)
    }

    /// Maximum along `axis` (removed from the shape) and, when `argmax` is set, the one-hot
    /// arithmetic sharing (integers 0/1, `x`'s shape) of its position. Exact.
    ///
    /// A halving tree: each level compares adjacent pairs `(lo, hi)` and keeps `hi` only when
    /// `lo < hi`, so **ties go to the lowest index**; with an odd count the last candidate moves up
    /// unchanged (no comparison). The one-hot vectors of the candidates travel with the values in
    /// the same `x * [b]` call (no extra rounds); candidate `i` of level `L` covers positions
    /// `[i·2^L, (i+1)·2^L)`, padded with public zeros past the end. Inputs must lie in
    /// `(-2^62, 2^62)` so that differences never wrap.
    /// **`9·ceil(log2 len)` rounds**; bytes per party: [`max_axis_cost`].
    pub fn max_axis(&mut self, x: &AShare<B>, axis: usize, argmax: bool) -> Result<(AShare<B>, Option<AShare<B>>)> {
        self.max_axis_with(x, axis, argmax, MsbVariant::Lean)
    }

    /// [`max_axis`](Self::max_axis) with the comparisons and selections of
    /// [`relu_with`](Self::relu_with)`(variant)`: **9 (`Lean`) or 7 (`LowLatency`) rounds per tree
    /// level**; bytes per party: [`max_axis_cost_with`].
    pub fn max_axis_with(
        &mut self,
        x: &AShare<B>,
        axis: usize,
        argmax: bool,
        variant: MsbVariant,
    ) -> Result<(AShare<B>, Option<AShare<B>>)> {
        let be = self.backend().clone();
        let shape = x.shape().to_vec();
        if axis >= shape.len() {
            return Err(SharingError::Invalid(format!("max_axis: axis {axis} out of range for shape {shape:?}")));
        }
        let len = shape[axis];
        if len == 0 {
            return Err(SharingError::Invalid(format!("max_axis: axis {axis} of {shape:?} is empty")));
        }
        let rows = x.len() / len;
        let mut perm: Vec<usize> = (0..shape.len()).filter(|&d| d != axis).collect();
        perm.push(axis);
        let moved_shape: Vec<usize> = perm.iter().map(|&d| shape[d]).collect();
        let moved = x.map(|t| be.permute(t, &perm))?;
        let mut cur = moved.map(|t| be.reshape(t, &[rows, len]))?;
        let mut onehot = if argmax { Some(self.public_share(&[rows, len, 1], 1)?) } else { None };
        let mut m = len;
        let mut width = 1;
        while m > 1 {
            let half = m / 2;
            let pairs = cur.map(|t| be.reshape(&be.slice(t, 1, 0, 2 * half)?, &[rows, half, 2]))?;
            let carried = (m % 2 == 1).then(|| cur.map(|t| be.slice(t, 1, m - 1, m))).transpose()?;
            let lo = pairs.map(|t| be.slice(t, 2, 0, 1))?;
            let hi = pairs.map(|t| be.slice(t, 2, 1, 2))?;
            let diff = self.sub(&hi, &lo)?;
            let b = self.msb_with(&self.sub(&lo, &hi)?, variant)?;
            let winners = match onehot.take() {
                None => {
                    let t = self.select_after_msb(&diff, &b, variant)?;
                    self.add(&lo, &t)?
                }
                Some(oh) => {
                    let oh_pairs = oh.map(|t| be.reshape(&be.slice(t, 1, 0, 2 * half)?, &[rows, half, 2 * width]))?;
                    let cat = self.cat_shares(&[&diff, &oh_pairs], 2)?;
                    let bb = b.map(|t| be.broadcast_to(t, &[rows, half, 1 + 2 * width]))?;
                    let prod = self.select_after_msb(&cat, &bb, variant)?;
                    let p_lo = prod.map(|t| be.slice(t, 2, 1, 1 + width))?;
                    let p_hi = prod.map(|t| be.slice(t, 2, 1 + width, 1 + 2 * width))?;
                    let oh_lo = oh_pairs.map(|t| be.slice(t, 2, 0, width))?;
                    let mut next = self.cat_shares(&[&self.sub(&oh_lo, &p_lo)?, &p_hi], 2)?;
                    if m % 2 == 1 {
                        let last = oh.map(|t| be.slice(t, 1, m - 1, m))?;
                        let zeros = self.public_share(&[rows, 1, width], 0)?;
                        next = self.cat_shares(&[&next, &self.cat_shares(&[&last, &zeros], 2)?], 1)?;
                    }
                    onehot = Some(next);
                    let t = prod.map(|t| be.slice(t, 2, 0, 1))?;
                    self.add(&lo, &t)?
                }
            };
            let winners = winners.map(|t| be.reshape(t, &[rows, half]))?;
            cur = match carried {
                Some(c) => self.cat_shares(&[&winners, &c], 1)?,
                None => winners,
            };
            m = m.div_ceil(2);
            width *= 2;
        }
        let mut out_shape = shape.clone();
        out_shape.remove(axis);
        let value = cur.map(|t| be.reshape(t, &out_shape))?;
        let onehot = match onehot {
            None => None,
            Some(oh) => {
                let oh = oh.map(|t| be.slice(&be.reshape(t, &[rows, width])?, 1, 0, len))?;
                let oh = oh.map(|t| be.reshape(t, &moved_shape))?;
                let mut inv = vec![0; perm.len()];
                for (i, &p) in perm.iter().enumerate() {
                    inv[p] = i;
                }
                Some(oh.map(|t| be.permute(t, &inv))?)
            }
        };
        Ok((value, onehot))
    }

    /// [`select_bit`](Self::select_bit) right after an MSB, led by the party after the MSB's lead:
    /// that party sends little in the MSB and much in `x * [b]`, the MSB's lead the reverse, so the
    /// two together cost every party about the same ([`after_msb`]).
    fn select_after_msb(&mut self, x: &AShare<B>, b: &BShare<B>, variant: MsbVariant) -> Result<AShare<B>> {
        let next = (self.lead() + 1) % 3;
        self.with_lead(next, |p| p.select_bit(x, b, variant))
    }

    /// `x * [b]` with the two-round ([`MsbVariant::Lean`]) or one-round protocol.
    fn select_bit(&mut self, x: &AShare<B>, b: &BShare<B>, variant: MsbVariant) -> Result<AShare<B>> {
        match variant {
            MsbVariant::Lean => self.mul_bit(x, b),
            MsbVariant::LowLatency => self.mul_bit_one_round(x, b),
        }
    }

    /// Concatenation of sharings along `axis` (local).
    pub(crate) fn cat_shares(&self, parts: &[&AShare<B>], axis: usize) -> Result<AShare<B>> {
        let be = self.backend();
        let firsts: Vec<&B::Tensor> = parts.iter().map(|p| p.first()).collect();
        let seconds: Vec<&B::Tensor> = parts.iter().map(|p| p.second()).collect();
        AShare::from_parts(be.concat(&firsts, axis)?, be.concat(&seconds, axis)?)
    }

    /// 2-D max pooling of an NCHW sharing: the output `[N, C, oh, ow]` and the one-hot argmax of
    /// every window as a `[kh*kw, N*C*oh*ow]` integer sharing (the input of
    /// [`max_pool2d_backward`](Self::max_pool2d_backward)). Exact.
    ///
    /// Windows are unfolded with `im2col` on the `[N*C, 1, H, W]` view; padded positions are set to
    /// [`MAX_FILLER`] (a public offset added where the `im2col` of a public all-ones plane is 0), so
    /// padding never wins. Ties go to the lowest window position in row-major order (as PyTorch).
    /// **`9·ceil(log2(kh·kw))` rounds**; bytes: [`max_axis_cost`] with `rows = N*C*oh*ow`,
    /// `len = kh*kw`, `argmax = true`.
    pub fn max_pool2d(&mut self, x: &AShare<B>, p: &Pool2dParams) -> Result<(AShare<B>, AShare<B>)> {
        self.max_pool2d_with(x, p, MsbVariant::Lean)
    }

    /// [`max_pool2d`](Self::max_pool2d) with the comparisons of
    /// [`relu_with`](Self::relu_with)`(variant)`: **9 (`Lean`) or 7 (`LowLatency`) rounds per tree
    /// level**; bytes: [`max_axis_cost_with`].
    pub fn max_pool2d_with(
        &mut self,
        x: &AShare<B>,
        p: &Pool2dParams,
        variant: MsbVariant,
    ) -> Result<(AShare<B>, AShare<B>)> {
        let be = self.backend().clone();
        let win = pool2d_window("max_pool2d", x.shape(), p)?;
        let (nc, k, plane) = (win.n * win.c, win.kh * win.kw, win.oh * win.ow);
        let cols = x.map(|t| be.im2col(&be.reshape(t, &[nc, 1, win.h, win.w])?, p.kernel, p.stride, p.padding))?;
        let cols = if p.padding != (0, 0) {
            let ones = be.full(&[1, 1, win.h, win.w], 1)?;
            let mask = be.im2col(&ones, p.kernel, p.stride, p.padding)?;
            // (1 - mask) * FILLER: FILLER at padded positions, 0 elsewhere.
            let off = be.scalar(ScalarOp::Mul, &be.scalar(ScalarOp::SubFrom, &mask, 1)?, MAX_FILLER)?;
            let off =
                be.reshape(&be.broadcast_to(&be.reshape(&off, &[k, 1, plane])?, &[k, nc, plane])?, &[k, nc * plane])?;
            self.add_public(&cols, &off)?
        } else {
            cols
        };
        let (y, onehot) = self.max_axis_with(&cols, 0, true, variant)?;
        let y = y.map(|t| be.reshape(t, &[win.n, win.c, win.oh, win.ow]))?;
        Ok((y, onehot.expect("argmax requested")))
    }

    /// Backward of [`max_pool2d`](Self::max_pool2d): routes each output gradient to its window's
    /// argmax (summing where windows overlap) with `col2im`. The gradient `gy` (`[N, C, oh, ow]`,
    /// any scale) times the integer one-hot needs no truncation.
    /// **1 round, `8·kh·kw·N·C·oh·ow` B per party.**
    pub fn max_pool2d_backward(
        &mut self,
        gy: &AShare<B>,
        onehot: &AShare<B>,
        input_shape: &[usize],
        p: &Pool2dParams,
    ) -> Result<AShare<B>> {
        let be = self.backend().clone();
        let win = pool2d_window("max_pool2d_backward", input_shape, p)?;
        check_same("max_pool2d_backward", gy.shape(), &[win.n, win.c, win.oh, win.ow])?;
        let (nc, k, cols) = (win.n * win.c, win.kh * win.kw, win.n * win.c * win.oh * win.ow);
        check_same("max_pool2d_backward", onehot.shape(), &[k, cols])?;
        let g = gy.map(|t| be.broadcast_to(&be.reshape(t, &[1, cols])?, &[k, cols]))?;
        let routed = self.mul_int(&g, onehot)?;
        let x = routed.map(|t| be.col2im(t, &[nc, 1, win.h, win.w], p.kernel, p.stride, p.padding))?;
        x.map(|t| be.reshape(t, input_shape))
    }
}

/// Plaintext reference of [`Party::max_pool2d`] on signed ring values (padding never wins, ties to
/// the lowest window position): the pooled values and, for the backward pass, the gradient `gy`
/// routed to the argmax positions. For tests and the CLI.
pub fn max_pool2d_reference(
    x: &RingTensor,
    gy: Option<&RingTensor>,
    p: &Pool2dParams,
) -> Result<(RingTensor, RingTensor)> {
    let win = pool2d_window("max_pool2d_reference", x.shape(), p)?;
    let mut y = vec![0u64; win.n * win.c * win.oh * win.ow];
    let mut gx = vec![0u64; x.len()];
    for nc in 0..win.n * win.c {
        for oy in 0..win.oh {
            for ox in 0..win.ow {
                let mut best: Option<(i64, usize)> = None;
                for i in 0..win.kh {
                    for j in 0..win.kw {
                        let (iy, ix) = (
                            (oy * win.sh + i) as isize - win.ph as isize,
                            (ox * win.sw + j) as isize - win.pw as isize,
                        );
                        if iy < 0 || ix < 0 || iy >= win.h as isize || ix >= win.w as isize {
                            continue;
                        }
                        let at = (nc * win.h + iy as usize) * win.w + ix as usize;
                        let v = x.data()[at] as i64;
                        let better = match best {
                            None => true,
                            Some((b, _)) => v > b,
                        };
                        if better {
                            best = Some((v, at));
                        }
                    }
                }
                let (v, at) =
                    best.ok_or_else(|| SharingError::Invalid("a pooling window lies in the padding".into()))?;
                let o = (nc * win.oh + oy) * win.ow + ox;
                y[o] = v as u64;
                if let Some(g) = gy {
                    gx[at] = gx[at].wrapping_add(g.data()[o]);
                }
            }
        }
    }
    Ok((RingTensor::new(&[win.n, win.c, win.oh, win.ow], y)?, RingTensor::new(x.shape(), gx)?))
}

/// Sharings of consecutive pieces, joined (each part freed once copied) and shaped as `shape`.
fn join<B: Backend, K: ShareKind>(be: &B, parts: Vec<Shares<B, K>>, shape: &[usize]) -> Result<Shares<B, K>> {
    let (firsts, seconds): (Vec<B::Tensor>, Vec<B::Tensor>) = parts.into_iter().map(Shares::into_parts).unzip();
    let first = be.reshape_owned(be.concat_owned(firsts)?, shape)?;
    let second = be.reshape_owned(be.concat_owned(seconds)?, shape)?;
    Shares::from_parts(first, second)
}
