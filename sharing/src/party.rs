//! [`Party`]: one of the three parties, with its backend, transport and correlated randomness,
//! and the primitives protocols are built from (see [`crate::protocol`]).

use cryptgpu_net::{Counters, Peer, Received, Round, Transport};
use cryptgpu_ring::prg::Key;
use cryptgpu_ring::{Backend, BinaryOp, FixedPoint, RingTensor};

use crate::error::{Result, SharingError};
use crate::streams::{KeyRole, Purpose, Stream, Streams};
use crate::trunc::TruncMode;

/// Where a party's PRG keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeySource {
    /// Fresh keys from the operating system's CSPRNG: the only secure choice.
    #[default]
    Os,
    /// Keys derived from a public seed, so that runs are reproducible bit for bit (for tests,
    /// benchmarks and CPU/GPU comparisons). **Insecure**: anyone who knows the seed sees all shares.
    InsecureSeed(u64),
}

/// The role party `party` plays in the asymmetric protocols when `lead` leads ([`Party::lead`]):
/// 0 for the lead, 1 for the party after it, 2 for the one before. A protocol's cost at party `p`
/// under lead `l` is its documented cost of role `role_of(p, l)`.
///
/// ```rust
/// use cryptgpu_sharing::party::role_of;
/// assert_eq!([0, 1, 2].map(|p| role_of(p, 0)), [0, 1, 2]);
/// assert_eq!([0, 1, 2].map(|p| role_of(p, 2)), [1, 2, 0]);
/// ```
pub fn role_of(party: usize, lead: usize) -> usize {
    (party + 3 - lead % 3) % 3
}

/// Stream id under which [`KeySource::InsecureSeed`] derives keys.
const SEED_STREAM: u64 = u64::from_be_bytes(*b"seedkeys");

/// One party of the three-party computation.
///
/// Party `i` holds, for every shared value `x = x_0 + x_1 + x_2`, the pair `(x_i, x_{i+1})`.
/// Protocols are methods on `Party` (see the `arith` module) or functions outside the crate built on
/// [`round`](Self::round), [`register_stream`](Self::register_stream) and [`draw`](Self::draw) (see
/// [`crate::protocol`]); all three parties must call them in the same order with the same public
/// arguments.
pub struct Party<B: Backend, T: Transport> {
    id: usize,
    backend: B,
    transport: T,
    codec: FixedPoint,
    streams: Streams,
    trunc: TruncMode,
    /// The party in the lead role of the asymmetric protocols ([`lead`](Self::lead)).
    lead: usize,
    /// Messages that travel with the next round ([`ride_next_round`](Self::ride_next_round)).
    rider: Option<Round>,
    /// What the last rider received ([`take_ridden`](Self::take_ridden)).
    ridden: Option<Received>,
}

impl<B: Backend, T: Transport> std::fmt::Debug for Party<B, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Party").field("id", &self.id).field("backend", &self.backend.name()).finish_non_exhaustive()
    }
}

impl<B: Backend, T: Transport> Party<B, T> {
    /// Sets a party up: draws its key `K_i`, sends it to the previous party and receives
    /// `K_{i+1}` from the next one (1 round, 16 B sent per party). Over TCP the transport must be
    /// encrypted, since the keys travel in this round.
    pub fn setup(backend: B, mut transport: T, codec: FixedPoint, keys: KeySource) -> Result<Self> {
        let id = transport.id();
        if id > 2 {
            return Err(SharingError::Invalid(format!("party id {id} is not 0, 1 or 2")));
        }
        let (own, local) = match keys {
            KeySource::Os => (os_key()?, os_key()?),
            KeySource::InsecureSeed(seed) => (seeded_key(&backend, seed, id)?, seeded_key(&backend, seed, id + 3)?),
        };
        let mut got =
            transport.round(Round::new().send(Peer::Prev, key_to_words(&own).to_vec()).recv(Peer::Next, 2))?;
        let next = words_to_key(&got.take(Peer::Next)?);
        Ok(Party {
            id,
            backend,
            transport,
            codec,
            streams: Streams::new(own, next, local),
            trunc: TruncMode::default(),
            lead: 0,
            rider: None,
            ridden: None,
        })
    }

    /// This party's id: 0, 1 or 2.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The fixed-point codec.
    pub fn codec(&self) -> FixedPoint {
        self.codec
    }

    /// How fixed-point products are truncated (all three parties must use the same mode).
    pub fn trunc_mode(&self) -> TruncMode {
        self.trunc
    }

    /// Sets the truncation mode; every party must set the same one at the same point.
    pub fn set_trunc_mode(&mut self, mode: TruncMode) {
        self.trunc = mode;
    }

    /// The party that leads the asymmetric protocols (0 unless [`set_lead`](Self::set_lead) changed
    /// it). The MSB and A2B, the truncations and `x * [b]` give one party more to send than the
    /// other two: their documentation names the roles `P0` (the lead), `P1` (the party after it)
    /// and `P2` (the one before), and party `i` plays role [`role_of`]`(i, lead)`. Their cost
    /// functions give the cost of a role. The result is the same sharing whoever leads (up to the
    /// truncations' one-LSB rounding, which depends on the split), and so is every party's view.
    pub fn lead(&self) -> usize {
        self.lead
    }

    /// Sets the party that leads the asymmetric protocols from now on ([`lead`](Self::lead)):
    /// rotating it spreads their extra traffic over the three parties and links. All three parties
    /// must set the same lead at the same point. An error for a lead other than 0, 1 or 2.
    ///
    /// ```rust
    /// use cryptgpu_kernels_cpu::CpuBackend;
    /// use cryptgpu_sharing::{run_local, RunConfig};
    ///
    /// // Party 1 leads the truncation: it, not party 0, sends 24 B per element.
    /// let outs = run_local(CpuBackend, RunConfig::default(), |p| {
    ///     let v = p.codec().encode_tensor(&[4], &[1.5, -2.0, 0.25, 3.0])?;
    ///     let x = p.input(0, (p.id() == 0).then_some(&v), &[4])?;
    ///     let wide = p.mul_scalar(&x, 1 << 16)?;
    ///     p.set_lead(1)?;
    ///     let before = p.counters().bytes_sent;
    ///     let y = p.truncate_by(&wide, 16)?;
    ///     let sent = p.counters().bytes_sent - before;
    ///     let opened = p.reveal_to(&y, 0)?;
    ///     Ok::<_, cryptgpu_sharing::SharingError>((sent, opened.map(|t| p.codec().decode_tensor(&t))))
    /// })?;
    /// assert_eq!(outs.each_ref().map(|o| o.value.0), [8 * 4, 24 * 4, 8 * 4]);
    /// assert_eq!(outs[0].value.1, Some(vec![1.5, -2.0, 0.25, 3.0]));
    /// # Ok::<(), cryptgpu_sharing::SharingError>(())
    /// ```
    pub fn set_lead(&mut self, lead: usize) -> Result<()> {
        if lead > 2 {
            return Err(SharingError::Invalid(format!("lead {lead} is not party 0, 1 or 2")));
        }
        self.lead = lead;
        Ok(())
    }

    /// This party's role in the asymmetric protocols: 0 for the lead, 1 for the party after it,
    /// 2 for the one before ([`role_of`]).
    pub(crate) fn role(&self) -> usize {
        role_of(self.id, self.lead)
    }

    /// Runs `f` with `lead` as the lead, restoring the current one afterwards (also on errors).
    pub(crate) fn with_lead<R>(&mut self, lead: usize, f: impl FnOnce(&mut Self) -> Result<R>) -> Result<R> {
        let saved = std::mem::replace(&mut self.lead, lead);
        let out = f(self);
        self.lead = saved;
        out
    }

    /// Communication counters so far (including setup).
    pub fn counters(&self) -> Counters {
        self.transport.counters()
    }

    /// Runs one communication round with the two neighbours: sends this party's messages and
    /// receives the ones `round` expects, counted in [`counters`](Self::counters).
    ///
    /// Rounds are matched by order, not by name: all three parties must call `round` the same
    /// number of times in the same order (a party with nothing to send or receive still calls it
    /// with an empty [`Round`]), and what one party expects from a neighbour must be what that
    /// neighbour sends it in the same round.
    ///
    /// ```rust
    /// use cryptgpu_kernels_cpu::CpuBackend;
    /// use cryptgpu_net::{Peer, Round};
    /// use cryptgpu_sharing::{run_local, RunConfig};
    ///
    /// // Every party sends its id to the next party and learns the previous party's.
    /// let outs = run_local(CpuBackend, RunConfig::default(), |p| {
    ///     let before = p.counters();
    ///     let mut got = p.round(Round::new().send(Peer::Next, vec![p.id() as u64]).recv(Peer::Prev, 1))?;
    ///     let prev = got.take(Peer::Prev)?[0];
    ///     let used = p.counters();
    ///     Ok::<_, cryptgpu_sharing::SharingError>((prev, used.rounds - before.rounds, used.bytes_sent - before.bytes_sent))
    /// })?;
    /// assert_eq!(outs.map(|o| o.value), [(2, 1, 8), (0, 1, 8), (1, 1, 8)]);
    /// # Ok::<(), cryptgpu_sharing::SharingError>(())
    /// ```
    pub fn round(&mut self, round: Round) -> Result<Received> {
        let Some(rider) = self.rider.take() else {
            return Ok(self.transport.round(round)?);
        };
        // The rider's words go first in each direction; it receives the first words it expects.
        let join = |ride: Option<Vec<u64>>, own: Option<Vec<u64>>| match (ride, own) {
            (Some(mut r), Some(o)) => {
                r.extend(o);
                Some(r)
            }
            (r, o) => r.filter(|r| !r.is_empty()).or(o),
        };
        let expect = |ride: Option<usize>, own: Option<usize>| match (ride.filter(|&r| r > 0), own) {
            (None, own) => own,
            (Some(r), own) => Some(r + own.unwrap_or(0)),
        };
        let merged = Round {
            to_next: join(rider.to_next, round.to_next),
            to_prev: join(rider.to_prev, round.to_prev),
            from_next: expect(rider.from_next, round.from_next),
            from_prev: expect(rider.from_prev, round.from_prev),
        };
        let mut got = self.transport.round(merged)?;
        let split = |words: Option<Vec<u64>>, ride: Option<usize>, own: Option<usize>| {
            let mut words = words.unwrap_or_default();
            let r = ride.unwrap_or(0).min(words.len());
            let rest = words.split_off(r);
            (ride.map(|_| words), own.map(|_| rest))
        };
        let (ride_next, own_next) = split(got.from_next.take(), rider.from_next, round.from_next);
        let (ride_prev, own_prev) = split(got.from_prev.take(), rider.from_prev, round.from_prev);
        self.ridden = Some(Received { from_next: ride_next, from_prev: ride_prev });
        Ok(Received { from_next: own_next, from_prev: own_prev })
    }

    /// Sends `ride`'s messages and receives the words it expects in front of those of the next
    /// [`round`](Self::round), whatever protocol runs it, so that two protocols share a round; the
    /// three parties must add matching riders before the same round. Its messages arrive through
    /// [`take_ridden`](Self::take_ridden).
    pub(crate) fn ride_next_round(&mut self, ride: Round) -> Result<()> {
        if self.rider.is_some() || self.ridden.is_some() {
            return Err(SharingError::Invalid("a message is already riding on the next round".into()));
        }
        self.rider = Some(ride);
        Ok(())
    }

    /// The messages a rider ([`ride_next_round`](Self::ride_next_round)) received in its round.
    pub(crate) fn take_ridden(&mut self) -> Result<Received> {
        self.ridden.take().ok_or_else(|| SharingError::Invalid("no rider has travelled since it was added".into()))
    }

    /// Registers the correlated-randomness stream `name` for a protocol outside this crate and
    /// returns its handle for [`draw`](Self::draw) and [`zero_share_from`](Self::zero_share_from).
    ///
    /// The stream id is derived from the name alone, so the three parties get the same stream
    /// whatever the order in which they register their streams; it never equals the id of a
    /// stream of the library's own protocols. An error if `name` is empty, already registered at
    /// this party, or has the same id as another registered name. No communication.
    ///
    /// ```rust
    /// use cryptgpu_kernels_cpu::CpuBackend;
    /// use cryptgpu_sharing::streams::KeyRole;
    /// use cryptgpu_sharing::{run_local, KeySource, RunConfig};
    ///
    /// let config = RunConfig { keys: KeySource::InsecureSeed(7), ..RunConfig::default() };
    /// let outs = run_local(CpuBackend, config, |p| {
    ///     let masks = p.register_stream("my-protocol/masks")?;
    ///     assert!(p.register_stream("my-protocol/masks").is_err());
    ///     // K_i is shared with the previous party, K_{i+1} with the next.
    ///     let own = p.draw(KeyRole::Own, masks, &[2])?;
    ///     let next = p.draw(KeyRole::Next, masks, &[2])?;
    ///     Ok::<_, cryptgpu_sharing::SharingError>((p.download(&own)?, p.download(&next)?))
    /// })?;
    /// // Party i's `Next` draw is party i+1's `Own` draw.
    /// for i in 0..3 {
    ///     assert_eq!(outs[i].value.1, outs[(i + 1) % 3].value.0);
    /// }
    /// # Ok::<(), cryptgpu_sharing::SharingError>(())
    /// ```
    pub fn register_stream(&mut self, name: &str) -> Result<Stream> {
        self.streams.register(name)
    }

    /// Draws a uniformly random tensor of `shape` from `(key, stream)`, `stream` registered at
    /// this party with [`register_stream`](Self::register_stream). No communication.
    ///
    /// Each `(key, stream)` pair has its own block counter, advanced by every draw: the two
    /// holders of a key read the same values as long as they make the same draws from that pair
    /// in the same order ([`KeyRole::Own`] is shared with the previous party, [`KeyRole::Next`]
    /// with the next; [`KeyRole::Local`] draws are this party's secret).
    pub fn draw(&mut self, key: KeyRole, stream: Stream, shape: &[usize]) -> Result<B::Tensor> {
        self.streams.draw(&self.backend, key, stream, shape)
    }

    /// Draws from one of the built-in streams.
    pub(crate) fn draw_builtin(&mut self, key: KeyRole, purpose: Purpose, shape: &[usize]) -> Result<B::Tensor> {
        self.streams.draw(&self.backend, key, purpose.stream(), shape)
    }

    /// This party's term of a fresh arithmetic zero sharing: `alpha_i = G(K_i) - G(K_{i+1})`.
    /// The three terms sum to zero; no communication.
    pub fn zero_share(&mut self, shape: &[usize]) -> Result<B::Tensor> {
        self.zero_share_from(Purpose::ZeroShare.stream(), shape)
    }

    /// [`zero_share`](Self::zero_share) drawn from a registered stream `stream` (under both
    /// `K_i` and `K_{i+1}`), for protocols that keep their randomness apart from the library's.
    pub fn zero_share_from(&mut self, stream: Stream, shape: &[usize]) -> Result<B::Tensor> {
        let a = self.draw(KeyRole::Own, stream, shape)?;
        let b = self.draw(KeyRole::Next, stream, shape)?;
        Ok(self.backend.binary(BinaryOp::Sub, &a, &b)?)
    }

    /// This party's term of a fresh binary zero sharing: `G(K_i) xor G(K_{i+1})`; the three terms
    /// XOR to zero; no communication.
    pub fn zero_share_binary(&mut self, shape: &[usize]) -> Result<B::Tensor> {
        self.zero_share_binary_from(Purpose::BinaryZeroShare.stream(), shape)
    }

    /// [`zero_share_binary`](Self::zero_share_binary) drawn from a registered stream `stream`.
    pub fn zero_share_binary_from(&mut self, stream: Stream, shape: &[usize]) -> Result<B::Tensor> {
        let a = self.draw(KeyRole::Own, stream, shape)?;
        let b = self.draw(KeyRole::Next, stream, shape)?;
        Ok(self.backend.binary(BinaryOp::Xor, &a, &b)?)
    }

    /// Uploads a host tensor to this party's backend.
    pub fn upload(&self, t: &RingTensor) -> Result<B::Tensor> {
        Ok(self.backend.upload(t)?)
    }

    /// Downloads a tensor from this party's backend.
    pub fn download(&self, t: &B::Tensor) -> Result<RingTensor> {
        Ok(self.backend.download(t)?)
    }
}

fn os_key() -> Result<Key> {
    let mut k = [0u8; 16];
    getrandom::getrandom(&mut k).map_err(|e| SharingError::Invalid(format!("OS random generator failed: {e}")))?;
    Ok(k)
}

/// Key `index` derived from a public seed with AES-CTR under the seed (insecure by design).
fn seeded_key<B: Backend>(backend: &B, seed: u64, index: usize) -> Result<Key> {
    let mut seed_key = [0u8; 16];
    seed_key[..8].copy_from_slice(&seed.to_le_bytes());
    let t = backend.prg_fill(&seed_key, SEED_STREAM, 2 * index as u64, &[2])?;
    let words = backend.download(&t)?;
    Ok(words_to_key(words.data()))
}

fn key_to_words(k: &Key) -> [u64; 2] {
    [u64::from_le_bytes(k[..8].try_into().expect("8 bytes")), u64::from_le_bytes(k[8..].try_into().expect("8 bytes"))]
}

fn words_to_key(w: &[u64]) -> Key {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&w[0].to_le_bytes());
    k[8..].copy_from_slice(&w[1].to_le_bytes());
    k
}
