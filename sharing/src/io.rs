//! Input and reveal, one implementation for both share kinds: [`Party::input`] /
//! [`Party::b_input`], [`Party::reveal`] / [`Party::b_reveal`] and [`Party::reveal_to`] /
//! [`Party::b_reveal_to`] differ only in the ring operation that combines shares and in the
//! stream of the input masks.

use cryptgpu_net::{Peer, Round, Transport};
use cryptgpu_ring::shape::check_same;
use cryptgpu_ring::{Backend, BinaryOp, RingTensor};

use crate::ashare::{Arith, ShareKind, Shares, Xor};
use crate::binary::{from_words, to_words};
use crate::error::{Result, SharingError};
use crate::party::Party;
use crate::streams::{KeyRole, Purpose};

/// What input and reveal need to know about a share kind.
pub(crate) trait IoKind: ShareKind {
    /// Combines two shares (`+` or `^`).
    const COMBINE: BinaryOp;
    /// Removes a share from a value (`-` or `^`).
    const REMOVE: BinaryOp;
    /// The stream of the input masks.
    const INPUT: Purpose;
    /// The input protocol's name, for errors.
    const INPUT_NAME: &'static str;
}

impl IoKind for Arith {
    const COMBINE: BinaryOp = BinaryOp::Add;
    const REMOVE: BinaryOp = BinaryOp::Sub;
    const INPUT: Purpose = Purpose::Input;
    const INPUT_NAME: &'static str = "input";
}

impl IoKind for Xor {
    const COMBINE: BinaryOp = BinaryOp::Xor;
    const REMOVE: BinaryOp = BinaryOp::Xor;
    const INPUT: Purpose = Purpose::BinaryInput;
    const INPUT_NAME: &'static str = "b_input";
}

impl<B: Backend, T: Transport> Party<B, T> {
    /// Shares a tensor held by party `owner`: `x_o = G(K_o)`, `x_{o+1} = v - x_o` (sent by the
    /// owner to `P_{o+1}`), `x_{o+2} = 0`. 1 round; the owner sends 8 B per element.
    pub(crate) fn share_input<K: IoKind>(
        &mut self,
        owner: usize,
        value: Option<&RingTensor>,
        shape: &[usize],
    ) -> Result<Shares<B, K>> {
        if owner > 2 {
            return Err(SharingError::Invalid(format!("input owner {owner} is not 0, 1 or 2")));
        }
        let me = self.id();
        match (me == owner, value) {
            (true, None) => {
                return Err(SharingError::Invalid(format!("party {me} owns the input but passed no value")))
            }
            (false, Some(_)) => {
                return Err(SharingError::Invalid(format!(
                    "party {me} passed a value for an input owned by party {owner}"
                )))
            }
            (true, Some(v)) => check_same(K::INPUT_NAME, v.shape(), shape)?,
            (false, None) => {}
        }
        let be = self.backend().clone();
        let n: usize = shape.iter().product();
        if me == owner {
            let v = be.upload(value.expect("checked above"))?;
            let x_o = self.draw_builtin(KeyRole::Own, K::INPUT, shape)?;
            let x_next = be.binary(K::REMOVE, &v, &x_o)?;
            self.round(Round::new().send(Peer::Next, to_words(&be, &x_next)?))?;
            Shares::from_parts(x_o, x_next)
        } else if me == (owner + 1) % 3 {
            let mut got = self.round(Round::new().recv(Peer::Prev, n))?;
            Shares::from_parts(from_words(&be, shape, got.take(Peer::Prev)?)?, be.zeros(shape)?)
        } else {
            let x_o = self.draw_builtin(KeyRole::Next, K::INPUT, shape)?;
            self.round(Round::new())?;
            Shares::from_parts(be.zeros(shape)?, x_o)
        }
    }

    /// Opens a sharing to all parties: each sends its first share to the next party.
    /// 1 round, 8 B per element per party.
    pub(crate) fn open<K: IoKind>(&mut self, x: &Shares<B, K>) -> Result<RingTensor> {
        let be = self.backend().clone();
        let mut got = self.round(Round::new().send(Peer::Next, to_words(&be, x.first())?).recv(Peer::Prev, x.len()))?;
        self.combine(x, got.take(Peer::Prev)?)
    }

    /// Opens a sharing to party `to` only (`Some` there, `None` elsewhere): party `to - 1` sends
    /// its first share to `to`. 1 round; party `to - 1` sends 8 B per element.
    pub(crate) fn open_to<K: IoKind>(&mut self, x: &Shares<B, K>, to: usize) -> Result<Option<RingTensor>> {
        if to > 2 {
            return Err(SharingError::Invalid(format!("reveal target {to} is not 0, 1 or 2")));
        }
        let be = self.backend().clone();
        let me = self.id();
        let mut round = Round::new();
        if me == (to + 2) % 3 {
            round = round.send(Peer::Next, to_words(&be, x.first())?);
        }
        if me == to {
            round = round.recv(Peer::Prev, x.len());
        }
        let mut got = self.round(round)?;
        if me != to {
            return Ok(None);
        }
        Ok(Some(self.combine(x, got.take(Peer::Prev)?)?))
    }

    /// The value of `x` given the missing share `x_{i+2}`.
    fn combine<K: IoKind>(&self, x: &Shares<B, K>, missing: Vec<u64>) -> Result<RingTensor> {
        let be = self.backend();
        let missing = from_words(be, x.shape(), missing)?;
        let s = be.binary(K::COMBINE, x.first(), x.second())?;
        Ok(be.download(&be.binary(K::COMBINE, &s, &missing)?)?)
    }
}
