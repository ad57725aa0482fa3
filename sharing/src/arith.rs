//! Arithmetic protocols on [`AShare`]s: input, reveal, linear operations, products and truncation.
//!
//! Costs are stated per party and per element of the protocol's output. A "round" is one call of
//! the transport that all three parties step through (see `cryptgpu_net`).
//!
//! **Truncation.** Fixed-point products (`*_fp`) and [`Party::truncate`] divide by `2^f` as
//! [`crate::trunc`] describes. For an output whose exact value before truncation is `z` (an integer
//! at scale `2^{2f}`), the result is `z / 2^f + e` with `|e| < 1` (in units of `2^-f`) and
//! `E[e] = 0`. In the default exact mode this holds for every `|z| < 2^62`; in the probabilistic mode
//! (CryptGPU's) the result is instead off by about `±2^{64-f}` with probability `|z| / 2^64`.
//!
//! Costs of the fixed-point products below are those of exact mode; probabilistic mode costs
//! 2 rounds and 8 B per output element per party.

use cryptgpu_net::{Peer, Round, Transport};
use cryptgpu_ring::shape::check_same;
use cryptgpu_ring::{Backend, BinaryOp, Conv2dParams, DeviceTensor, RingTensor, ScalarOp, UnaryOp};

use crate::ashare::AShare;
use crate::error::Result;
use crate::party::Party;
use crate::streams::{KeyRole, Purpose};
use crate::trunc::Truncating;

/// A bilinear map over the ring (elementwise product, matrix product, convolution, ...).
pub type BilinearOp<'a, B> =
    &'a dyn Fn(&B, &<B as Backend>::Tensor, &<B as Backend>::Tensor) -> cryptgpu_ring::Result<<B as Backend>::Tensor>;

impl<B: Backend, T: Transport> Party<B, T> {
    fn words(&self, t: &B::Tensor) -> Result<Vec<u64>> {
        Ok(self.backend().download(t)?.into_data())
    }

    fn tensor(&self, shape: &[usize], words: Vec<u64>) -> Result<B::Tensor> {
        Ok(self.backend().upload_owned(RingTensor::new(shape, words)?)?)
    }

    fn op2(&self, op: BinaryOp, a: &B::Tensor, b: &B::Tensor) -> Result<B::Tensor> {
        Ok(self.backend().binary(op, a, b)?)
    }

    // ----- input and output -----

    /// Secret-shares a tensor held by party `owner` (the other parties pass `None`; every party
    /// passes the same public `shape`).
    ///
    /// With `o = owner`: `x_o = G(K_o)` (known to `P_o` and `P_{o-1}`), `x_{o+1} = v - x_o` (sent by
    /// the owner to `P_{o+1}`), `x_{o+2} = 0`. Cost: **1 round; the owner sends 8 B per element to
    /// its next party, the others send nothing.**
    ///
    /// ```rust
    /// use cryptgpu_kernels_cpu::CpuBackend;
    /// use cryptgpu_ring::RingTensor;
    /// use cryptgpu_sharing::{run_local, RunConfig, SharingError};
    ///
    /// let outs = run_local(CpuBackend, RunConfig::default(), |p| {
    ///     // Party 2 owns the input; the others pass `None` and the same shape.
    ///     let v = RingTensor::new(&[3], vec![1, 2, 3])?;
    ///     let x = p.input(2, (p.id() == 2).then_some(&v), &[3])?;
    ///     Ok::<_, SharingError>(p.reveal(&x)?.into_data())
    /// })?;
    /// assert!(outs.iter().all(|o| o.value == [1, 2, 3]));
    /// # Ok::<(), SharingError>(())
    /// ```
    pub fn input(&mut self, owner: usize, value: Option<&RingTensor>, shape: &[usize]) -> Result<AShare<B>> {
        self.share_input(owner, value, shape)
    }

    /// Opens a sharing to all three parties. Each party sends its first share to the next party.
    /// Cost: **1 round, 8 B per element per party.**
    ///
    /// ```rust
    /// use cryptgpu_kernels_cpu::CpuBackend;
    /// use cryptgpu_ring::{FixedPoint, RingTensor};
    /// use cryptgpu_sharing::{run_local, RunConfig, SharingError};
    ///
    /// let codec = FixedPoint::default();
    /// let outs = run_local(CpuBackend, RunConfig::default(), |p| {
    ///     let v = codec.encode_tensor(&[2], &[1.5, -2.25])?;
    ///     let x = p.input(0, (p.id() == 0).then_some(&v), &[2])?;
    ///     let opened = p.reveal(&x)?;
    ///     Ok::<_, SharingError>(codec.decode_tensor(&opened))
    /// })?;
    /// assert_eq!(outs[1].value, [1.5, -2.25]);
    /// # Ok::<(), SharingError>(())
    /// ```
    pub fn reveal(&mut self, x: &AShare<B>) -> Result<RingTensor> {
        self.open(x)
    }

    /// Opens a sharing to party `to` only (returns `Some` there, `None` elsewhere). Party `to - 1`
    /// sends its first share to `to`. Cost: **1 round; party `to - 1` sends 8 B per element, the
    /// others nothing.**
    ///
    /// ```rust
    /// use cryptgpu_kernels_cpu::CpuBackend;
    /// use cryptgpu_ring::RingTensor;
    /// use cryptgpu_sharing::{run_local, RunConfig, SharingError};
    ///
    /// let outs = run_local(CpuBackend, RunConfig::default(), |p| {
    ///     let v = RingTensor::new(&[1], vec![42])?;
    ///     let x = p.input(0, (p.id() == 0).then_some(&v), &[1])?;
    ///     Ok::<_, SharingError>(p.reveal_to(&x, 1)?.map(|t| t.into_data()))
    /// })?;
    /// assert_eq!(outs.map(|o| o.value), [None, Some(vec![42]), None]);
    /// # Ok::<(), SharingError>(())
    /// ```
    pub fn reveal_to(&mut self, x: &AShare<B>, to: usize) -> Result<Option<RingTensor>> {
        self.open_to(x, to)
    }

    // ----- local linear operations (no communication) -----

    /// `x + y`.
    pub fn add(&self, x: &AShare<B>, y: &AShare<B>) -> Result<AShare<B>> {
        AShare::from_parts(
            self.op2(BinaryOp::Add, x.first(), y.first())?,
            self.op2(BinaryOp::Add, x.second(), y.second())?,
        )
    }

    /// `x - y`.
    pub fn sub(&self, x: &AShare<B>, y: &AShare<B>) -> Result<AShare<B>> {
        AShare::from_parts(
            self.op2(BinaryOp::Sub, x.first(), y.first())?,
            self.op2(BinaryOp::Sub, x.second(), y.second())?,
        )
    }

    /// `-x`.
    pub fn neg(&self, x: &AShare<B>) -> Result<AShare<B>> {
        x.map(|t| self.backend().unary(UnaryOp::Neg, t))
    }

    /// `x + c` for a public tensor `c` of the same shape (added to share `x_0`, which party 0 holds
    /// first and party 2 second).
    pub fn add_public(&self, x: &AShare<B>, c: &B::Tensor) -> Result<AShare<B>> {
        check_same("add_public", x.shape(), c.shape())?;
        let (mut first, mut second) = (x.first().clone(), x.second().clone());
        match self.id() {
            0 => first = self.op2(BinaryOp::Add, &first, c)?,
            2 => second = self.op2(BinaryOp::Add, &second, c)?,
            _ => {}
        }
        AShare::from_parts(first, second)
    }

    /// `x * c` elementwise for a public integer tensor `c` (no truncation).
    pub fn mul_public(&self, x: &AShare<B>, c: &B::Tensor) -> Result<AShare<B>> {
        check_same("mul_public", x.shape(), c.shape())?;
        AShare::from_parts(self.op2(BinaryOp::Mul, x.first(), c)?, self.op2(BinaryOp::Mul, x.second(), c)?)
    }

    /// `x * c` for a public integer `c` (no truncation).
    pub fn mul_scalar(&self, x: &AShare<B>, c: u64) -> Result<AShare<B>> {
        x.map(|t| self.backend().scalar(ScalarOp::Mul, t, c))
    }

    /// A sharing of a fresh uniformly random value nobody knows: `x_j = G(K_j)`.
    /// Cost: **no communication.**
    pub fn random_share(&mut self, shape: &[usize]) -> Result<AShare<B>> {
        let first = self.draw_builtin(KeyRole::Own, Purpose::RandomShare, shape)?;
        let second = self.draw_builtin(KeyRole::Next, Purpose::RandomShare, shape)?;
        AShare::from_parts(first, second)
    }

    // ----- products -----

    /// This party's additive term of `op(x, y)`:
    /// `z_i = op(x_i, y_i + y_{i+1}) + op(x_{i+1}, y_i) + alpha_i` (two local ring ops and a fresh
    /// zero sharing). The three terms sum to `op(x, y)`.
    pub(crate) fn product_term(&mut self, x: &AShare<B>, y: &AShare<B>, op: BilinearOp<'_, B>) -> Result<B::Tensor> {
        let be = self.backend().clone();
        let y_sum = self.op2(BinaryOp::Add, y.first(), y.second())?;
        let a = op(&be, x.first(), &y_sum)?;
        let b = op(&be, x.second(), y.first())?;
        let z = self.op2(BinaryOp::Add, &a, &b)?;
        let alpha = self.zero_share(z.shape())?;
        self.op2(BinaryOp::Add, &z, &alpha)
    }

    /// Turns additive terms `z_i` into a replicated sharing: party `i` sends `z_i` to party `i-1`.
    /// Cost: **1 round, 8 B per element per party.**
    fn reshare(&mut self, z: B::Tensor) -> Result<AShare<B>> {
        let mut got = self.round(Round::new().send(Peer::Prev, self.words(&z)?).recv(Peer::Next, z.len()))?;
        let next = self.tensor(z.shape(), got.take(Peer::Next)?)?;
        AShare::from_parts(z, next)
    }

    /// Secure product under any bilinear ring map `op` (elementwise, matmul, convolution, their
    /// gradients). Without truncation: **1 round, 8 B per output element per party**; with
    /// truncation by `2^f` (both operands fixed point), in exact mode: **2 rounds; P0 sends 24 B,
    /// P1 and P2 16 B per output element** ([`product_cost`](crate::trunc::product_cost)).
    pub fn bilinear(
        &mut self,
        x: &AShare<B>,
        y: &AShare<B>,
        op: BilinearOp<'_, B>,
        truncate: bool,
    ) -> Result<AShare<B>> {
        if truncate {
            let f = self.codec().frac_bits();
            let held = self.bilinear_held(x, y, op, f)?;
            self.finish_truncation(held)
        } else {
            let z = self.product_term(x, y, op)?;
            self.reshare(z)
        }
    }

    /// [`bilinear`](Self::bilinear) truncated by `2^bits` (`f` for fixed-point operands), held
    /// back before the truncation's last round ([`Truncating`]): **1 round** (P1 and P2 send 8 B
    /// per output element; [`product_held_cost`](crate::trunc::product_held_cost)); finish it with
    /// [`finish_truncation`](Self::finish_truncation) or feed it to
    /// [`relu_truncating`](Self::relu_truncating).
    pub fn bilinear_held(
        &mut self,
        x: &AShare<B>,
        y: &AShare<B>,
        op: BilinearOp<'_, B>,
        bits: u32,
    ) -> Result<Truncating<B>> {
        let z = self.product_term(x, y, op)?;
        self.truncate_terms_held(z, bits)
    }

    /// Elementwise integer product over Z_2^64. **1 round, 8 B per element per party.**
    ///
    /// Not truncated: for fixed-point inputs the result has `2f` fractional bits; use
    /// [`mul_fp`](Self::mul_fp) for a fixed-point product.
    pub fn mul_int(&mut self, x: &AShare<B>, y: &AShare<B>) -> Result<AShare<B>> {
        check_same("mul_int", x.shape(), y.shape())?;
        self.bilinear(x, y, &|b, p, q| b.binary(BinaryOp::Mul, p, q), false)
    }

    /// Elementwise product of fixed-point sharings, truncated. **2 rounds; 24 / 16 / 16 B per element.**
    ///
    /// ```rust
    /// use cryptgpu_kernels_cpu::CpuBackend;
    /// use cryptgpu_ring::FixedPoint;
    /// use cryptgpu_sharing::{run_local, RunConfig, SharingError};
    ///
    /// let codec = FixedPoint::default();
    /// let outs = run_local(CpuBackend, RunConfig::default(), |p| {
    ///     let (a, b) = (codec.encode_tensor(&[2], &[1.5, -3.0])?, codec.encode_tensor(&[2], &[2.0, 0.25])?);
    ///     let x = p.input(0, (p.id() == 0).then_some(&a), &[2])?;
    ///     let y = p.input(1, (p.id() == 1).then_some(&b), &[2])?;
    ///     let z = p.mul_fp(&x, &y)?;
    ///     Ok::<_, SharingError>(codec.decode_tensor(&p.reveal(&z)?))
    /// })?;
    /// let z = &outs[0].value;
    /// assert!((z[0] - 3.0).abs() < 1e-4 && (z[1] + 0.75).abs() < 1e-4);
    /// # Ok::<(), SharingError>(())
    /// ```
    pub fn mul_fp(&mut self, x: &AShare<B>, y: &AShare<B>) -> Result<AShare<B>> {
        check_same("mul_fp", x.shape(), y.shape())?;
        self.bilinear(x, y, &|b, p, q| b.binary(BinaryOp::Mul, p, q), true)
    }

    /// Integer matrix product over Z_2^64 (2-D, or batched 3-D).
    /// **1 round, 8 B per output element per party** (`8·m·n` B for an `m x k` by `k x n` product).
    ///
    /// Not truncated: for fixed-point inputs the result has `2f` fractional bits; use
    /// [`matmul_fp`](Self::matmul_fp) for a fixed-point product.
    pub fn matmul_int(&mut self, x: &AShare<B>, y: &AShare<B>) -> Result<AShare<B>> {
        self.bilinear(x, y, &|b, p, q| b.matmul(p, q, false, false), false)
    }

    /// Matrix product of fixed-point sharings, truncated.
    /// **2 rounds; P0 sends 24 B, P1 and P2 16 B per output element** (`24·m·n`, `16·m·n`, `16·m·n`
    /// B for an `m x k` by `k x n` product).
    ///
    /// Error bound (no truncation failure), with `δ = 2^-f` and real inputs `a`, `b` encoded by
    /// rounding to nearest: `|out[i][j] - Σ_k a[i][k]·b[k][j]| < (δ/2)·Σ_k (|a[i][k]| + |b[k][j]|) + K·δ²/4 + δ`.
    ///
    /// ```rust
    /// use cryptgpu_kernels_cpu::CpuBackend;
    /// use cryptgpu_ring::FixedPoint;
    /// use cryptgpu_sharing::{run_local, RunConfig, SharingError};
    ///
    /// let codec = FixedPoint::default();
    /// let outs = run_local(CpuBackend, RunConfig::default(), |p| {
    ///     // [1 2] x [0.5]  = [ 2.5]
    ///     // [3 4]   [1.0]    [ 5.5]
    ///     let a = codec.encode_tensor(&[2, 2], &[1.0, 2.0, 3.0, 4.0])?;
    ///     let b = codec.encode_tensor(&[2, 1], &[0.5, 1.0])?;
    ///     let x = p.input(0, (p.id() == 0).then_some(&a), &[2, 2])?;
    ///     let y = p.input(1, (p.id() == 1).then_some(&b), &[2, 1])?;
    ///     let z = p.matmul_fp(&x, &y)?;
    ///     Ok::<_, SharingError>(codec.decode_tensor(&p.reveal(&z)?))
    /// })?;
    /// let z = &outs[2].value;
    /// assert!((z[0] - 2.5).abs() < 1e-4 && (z[1] - 5.5).abs() < 1e-4);
    /// # Ok::<(), SharingError>(())
    /// ```
    pub fn matmul_fp(&mut self, x: &AShare<B>, y: &AShare<B>) -> Result<AShare<B>> {
        self.bilinear(x, y, &|b, p, q| b.matmul(p, q, false, false), true)
    }

    /// Integer 2-D convolution over Z_2^64 of an NCHW input sharing with an OIHW weight sharing.
    /// **1 round, 8 B per output element per party.**
    ///
    /// Not truncated: for fixed-point inputs the result has `2f` fractional bits; use
    /// [`conv2d_fp`](Self::conv2d_fp) for a fixed-point convolution.
    pub fn conv2d_int(&mut self, x: &AShare<B>, w: &AShare<B>, p: &Conv2dParams) -> Result<AShare<B>> {
        let p = *p;
        self.bilinear(x, w, &move |b, s, t| b.conv2d(s, t, &p), false)
    }

    /// 2-D convolution of fixed-point sharings, truncated. **2 rounds; 24 / 16 / 16 B per output element.**
    pub fn conv2d_fp(&mut self, x: &AShare<B>, w: &AShare<B>, p: &Conv2dParams) -> Result<AShare<B>> {
        let p = *p;
        self.bilinear(x, w, &move |b, s, t| b.conv2d(s, t, &p), true)
    }

    /// `x * c` elementwise for a public fixed-point tensor `c`, truncated
    /// (costs of [`truncate`](Self::truncate)).
    pub fn mul_public_fp(&mut self, x: &AShare<B>, c: &B::Tensor) -> Result<AShare<B>> {
        let y = self.mul_public(x, c)?;
        self.truncate(&y)
    }

    /// Divides a sharing at scale `2^{2f}` by `2^f` (see [`crate::trunc`]). Exact mode: **2 rounds;
    /// P0 sends 24 B, P1 and P2 8 B per element.** Probabilistic mode: 2 rounds, 8 B each.
    pub fn truncate(&mut self, x: &AShare<B>) -> Result<AShare<B>> {
        let f = self.codec().frac_bits();
        self.truncate_by(x, f)
    }
}

/// Rounds and bytes sent by `party` in [`Party::input`] of `n` elements owned by `owner`: 1 round;
/// the owner sends 8 B per element, the others nothing.
pub fn input_cost(owner: usize, party: usize, n: usize) -> (u64, u64) {
    (1, if party == owner { 8 * n as u64 } else { 0 })
}

/// Rounds and bytes sent by `party` in [`Party::reveal_to`] of `n` elements opened to `to`:
/// 1 round; party `to - 1` sends 8 B per element, the others nothing.
pub fn reveal_to_cost(to: usize, party: usize, n: usize) -> (u64, u64) {
    (1, if party == (to + 2) % 3 { 8 * n as u64 } else { 0 })
}
