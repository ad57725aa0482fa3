//! Masking audit: statistical tests that what a party receives looks like independent uniform
//! words, whatever the secrets.
//!
//! Every protocol of this crate pads each word it sends with fresh correlated randomness that its
//! receiver lacks, so a party's received view is a sequence of independent uniform 64-bit words.
//! An [`Audit`] collects the messages each party receives over many runs of one protocol (recorded
//! with [`cryptgpu_net::Recording`]) and tests:
//!
//! * **words**: for each byte position `p = 0..8` of a word (byte 0 the least significant), a
//!   chi-square of the 256 byte values against uniform (255 degrees of freedom): catches zero high
//!   bytes (an unpadded small value), the biased low bits of a product of shares, any byte-level
//!   bias; and for each of the 64 bits a chi-square (1 degree of freedom) of its count of ones
//!   (a single biased bit is diluted in its byte's statistic);
//! * **pairs**: the same tests, separately, on `a + b`, `a - b` and `a ^ b` for aligned words `a`,
//!   `b` of two messages received in the same round or in consecutive receiving rounds (the longer
//!   message cut into chunks of the shorter one's length): catches a pad shared by two messages, or
//!   a value split over two messages that are padded only against each other. (The three are kept
//!   apart because they share their low bit: pooled, they would not be independent words.)
//! * **key differences** ([`Audit::add_key_difference`]): the same tests, separately, on `a - b`
//!   and `a ^ b` for the words `a`, `b` a party received in two runs on the same secrets in which it
//!   held the same keys and only the key it lacks differed ([`crate::run_local_keyed`]): catches a
//!   message padded only with randomness its receiver knows, which looks uniform to the tests
//!   above; and the pair tests on those differences (sums and differences of two messages' key
//!   differences, XORs of their key XORs): catches such a pad spread over two messages;
//! * **homogeneity** ([`Audit::homogeneity`]): per byte position, a two-sample chi-square (a 2 x 256
//!   table, degrees of freedom = non-empty bins - 1) between the audits of two different secret
//!   inputs, and equal message sizes.
//!
//! **Groups.** Each [`View`] (words, each kind of pair keyed by its earlier round, each kind of key
//! difference) is tested per (party, round) for every round with at least [`MIN_WORDS`] words over
//! all runs; a party's smaller rounds are pooled (with all its rounds if they hold fewer than
//! [`MIN_WORDS`] words together), and a party that receives fewer than [`MIN_WORDS`] words in all
//! is a failure ([`Test::TooFewWords`]).
//!
//! **Thresholds.** Each statistic is compared with the upper [`ALPHA`] = 1e-9 quantile of its
//! chi-square distribution, by the Wilson–Hilferty approximation
//! `k·(1 - 2/(9k) + z·sqrt(2/(9k)))³` (`z` = 5.998, the normal upper `ALPHA` quantile; 414.9 for
//! 255 degrees of freedom, 0.1% above the exact 414.5) and for one degree of freedom exactly as
//! `z'²` (`z'` the normal upper `ALPHA/2` quantile; 37.32). With 10^5 words a byte bin expects 390
//! counts. For independent uniform words each statistic exceeds its threshold with probability at
//! most about `ALPHA`, so a report of `S` statistics ([`Report::statistics`]) is a false alarm with
//! probability at most about `S·ALPHA`.
//!
//! **Use.** Wrap the parties' transports in [`cryptgpu_net::Recording`] and run the protocol with
//! [`crate::run_local_with`]; in each party, share the inputs, [`clear`](cryptgpu_net::RecordLog::clear)
//! its log, run the protocol, and add the log to an [`Audit`] ([`Audit::add_run`]). Do the same on
//! other secrets for [`Audit::homogeneity`], and with [`crate::run_local_keyed`] for key
//! differences. `sharing/tests/masking.rs` audits every protocol of the crate this way.
//!
//! **Limits.** Only single words, pairs of words and differences between runs are tested: a
//! relation between three or more words, or between words and the receiver's own shares, may
//! pass.

use std::collections::BTreeMap;
use std::fmt;

use cryptgpu_net::{Direction, RecordedMessage};

/// Fewest words a statistic is computed on.
pub const MIN_WORDS: u64 = 100_000;

/// False-alarm probability of each statistic.
pub const ALPHA: f64 = 1e-9;

/// The normal upper `ALPHA` quantile: `Q(Z_ALPHA) = ALPHA`.
const Z_ALPHA: f64 = 5.997_807_015_007_687;

/// The normal upper `ALPHA / 2` quantile.
const Z_HALF_ALPHA: f64 = 6.109_410_204_869_398;

/// The upper `ALPHA` quantile of the chi-square distribution with `dof` degrees of freedom
/// (exact for 1, Wilson–Hilferty otherwise; `dof = 0` gives 0).
pub fn chi2_threshold(dof: u64) -> f64 {
    match dof {
        0 => 0.0,
        1 => Z_HALF_ALPHA * Z_HALF_ALPHA,
        k => {
            let c = 2.0 / (9.0 * k as f64);
            k as f64 * (1.0 - c + Z_ALPHA * c.sqrt()).powi(3)
        }
    }
}

/// Counts of the byte values at each of the 8 byte positions of a set of words.
#[derive(Clone)]
struct Histogram {
    counts: Box<[[u64; 256]; 8]>,
    words: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: Box::new([[0; 256]; 8]), words: 0 }
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram").field("words", &self.words).finish_non_exhaustive()
    }
}

impl Histogram {
    /// An empty histogram.
    fn new() -> Self {
        Self::default()
    }

    /// Counts `words`.
    fn add(&mut self, words: impl IntoIterator<Item = u64>) {
        for w in words {
            for (p, c) in self.counts.iter_mut().enumerate() {
                c[(w >> (8 * p)) as usize & 0xFF] += 1;
            }
            self.words += 1;
        }
    }

    /// Adds another histogram's counts.
    fn merge(&mut self, other: &Histogram) {
        for (c, o) in self.counts.iter_mut().zip(other.counts.iter()) {
            c.iter_mut().zip(o).for_each(|(c, o)| *c += o);
        }
        self.words += other.words;
    }

    /// Number of words counted.
    fn words(&self) -> u64 {
        self.words
    }

    /// Chi-square of byte position `byte` (0..8) against uniform (255 degrees of freedom).
    fn byte_statistic(&self, byte: usize) -> f64 {
        let expected = self.words as f64 / 256.0;
        self.counts[byte].iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum()
    }

    /// Chi-square of the count of ones of bit `bit` (0..64) against `words / 2` (1 degree of freedom).
    fn bit_statistic(&self, bit: usize) -> f64 {
        let ones: u64 = (0..256).filter(|v| v >> (bit % 8) & 1 == 1).map(|v| self.counts[bit / 8][v]).sum();
        let n = self.words as f64;
        (ones as f64 - n / 2.0).powi(2) / (n / 4.0)
    }

    /// Two-sample chi-square of byte position `byte` between `self` and `other`, and its degrees
    /// of freedom (non-empty bins - 1).
    fn homogeneity_statistic(&self, other: &Histogram, byte: usize) -> (f64, u64) {
        let (na, nb) = (self.words as f64, other.words as f64);
        let mut stat = 0.0;
        let mut bins = 0;
        for (&a, &b) in self.counts[byte].iter().zip(&other.counts[byte]) {
            if a + b == 0 {
                continue;
            }
            bins += 1;
            let pooled = (a + b) as f64 / (na + nb);
            let (ea, eb) = (na * pooled, nb * pooled);
            stat += (a as f64 - ea).powi(2) / ea + (b as f64 - eb).powi(2) / eb;
        }
        (stat, bins.max(1) - 1)
    }
}

/// What a group of words is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum View {
    /// The received words themselves.
    Words,
    /// Sums `a + b` of aligned words of two messages (see the module doc).
    Sums,
    /// Differences `a - b` of aligned words of two messages.
    Differences,
    /// XORs `a ^ b` of aligned words of two messages.
    Xors,
    /// Differences `a - b` of the same word in two runs with the receiver's keys unchanged.
    KeyDifferences,
    /// XORs `a ^ b` of the same word in two runs with the receiver's keys unchanged.
    KeyXors,
    /// Sums of two aligned [`KeyDifferences`](View::KeyDifferences) words of two messages
    /// (paired as for [`Sums`](View::Sums)).
    KeyPairSums,
    /// Differences of two aligned [`KeyDifferences`](View::KeyDifferences) words of two messages.
    KeyPairDifferences,
    /// XORs of two aligned [`KeyXors`](View::KeyXors) words of two messages.
    KeyPairXors,
}

/// The rounds a statistic covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One round (for pairs: the earlier round of the pair).
    Round(u64),
    /// Several rounds pooled, in increasing order.
    Pooled(Vec<u64>),
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Round(r) => write!(f, "round {r}"),
            Scope::Pooled(rs) => match (rs.first(), rs.last()) {
                (Some(a), Some(b)) => write!(f, "{} rounds pooled ({a}..={b})", rs.len()),
                _ => write!(f, "no rounds"),
            },
        }
    }
}

/// Which test a [`Finding`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    /// Uniformity of byte position `p` (0 = least significant).
    Byte(usize),
    /// Frequency of ones of bit `b`.
    Bit(usize),
    /// Two-sample homogeneity of byte position `p`.
    TwoSample(usize),
    /// The party received fewer than [`MIN_WORDS`] words (value: the words received).
    TooFewWords,
    /// Message sizes differ between the two audits (value: the other audit's words in the scope)
    /// or between the two runs of a key difference.
    Structure,
}

impl Test {
    fn kind(self) -> &'static str {
        match self {
            Test::Byte(_) => "byte",
            Test::Bit(_) => "bit",
            Test::TwoSample(_) => "two-sample",
            Test::TooFewWords => "too few words",
            Test::Structure => "structure",
        }
    }
}

/// One statistic: a failure when `value > threshold`.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The audited protocol.
    pub protocol: String,
    /// The receiving party.
    pub party: usize,
    /// Words or pairs.
    pub view: View,
    /// The rounds covered.
    pub scope: Scope,
    /// The test.
    pub test: Test,
    /// The statistic.
    pub value: f64,
    /// Its threshold.
    pub threshold: f64,
    /// Words the statistic was computed on.
    pub words: u64,
}

impl Finding {
    fn ratio(&self) -> f64 {
        if self.threshold > 0.0 {
            self.value / self.threshold
        } else {
            f64::INFINITY
        }
    }

    fn failed(&self) -> bool {
        match self.test {
            Test::TooFewWords => self.value < self.threshold,
            Test::Structure => true,
            _ => self.value > self.threshold,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let view = match self.view {
            View::Words => "words",
            View::Sums => "pair sums",
            View::Differences => "pair differences",
            View::Xors => "pair XORs",
            View::KeyDifferences => "key differences",
            View::KeyXors => "key XORs",
            View::KeyPairSums => "sums of key differences",
            View::KeyPairDifferences => "differences of key differences",
            View::KeyPairXors => "XORs of key XORs",
        };
        write!(f, "{}: party {} receives, {view} of {}: ", self.protocol, self.party, self.scope)?;
        match self.test {
            Test::Byte(p) => write!(f, "byte {p} chi-square")?,
            Test::Bit(b) => write!(f, "bit {b} chi-square")?,
            Test::TwoSample(p) => write!(f, "byte {p} two-sample chi-square")?,
            Test::TooFewWords => {
                return write!(f, "only {} words received, {} needed", self.value, self.threshold);
            }
            Test::Structure => return write!(f, "message sizes differ ({} words vs {})", self.words, self.value),
        }
        let cmp = if self.failed() { ">" } else { "<=" };
        write!(f, " {:.1} {cmp} {:.1} ({} words)", self.value, self.threshold, self.words)
    }
}

/// The outcome of [`Audit::uniformity`] or [`Audit::homogeneity`].
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The audited protocol.
    pub protocol: String,
    /// Statistics computed (each a false alarm with probability [`ALPHA`]).
    pub statistics: u64,
    /// The largest statistic of each test kind, relative to its threshold.
    pub worst: Vec<Finding>,
    /// Every failed check.
    pub failures: Vec<Finding>,
}

impl Report {
    fn new(protocol: &str) -> Self {
        Report { protocol: protocol.to_string(), ..Report::default() }
    }

    /// True when no check failed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Adds another report's statistics, worst values and failures.
    pub fn merge(&mut self, other: Report) {
        self.statistics += other.statistics;
        other.worst.into_iter().for_each(|f| self.note_worst(f));
        self.failures.extend(other.failures);
    }

    fn note_worst(&mut self, f: Finding) {
        match self.worst.iter_mut().find(|w| w.test.kind() == f.test.kind()) {
            Some(w) if w.ratio() >= f.ratio() => {}
            Some(w) => *w = f,
            None => self.worst.push(f),
        }
    }

    fn record(&mut self, f: Finding) {
        if matches!(f.test, Test::Byte(_) | Test::Bit(_) | Test::TwoSample(_)) {
            self.statistics += 1;
            self.note_worst(f.clone());
        }
        if f.failed() {
            self.failures.push(f);
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 12;
        let verdict = if self.passed() { "passed" } else { "FAILED" };
        writeln!(f, "{}: {verdict}, {} statistics at alpha = {ALPHA:e}", self.protocol, self.statistics)?;
        for x in self.failures.iter().take(SHOWN) {
            writeln!(f, "  FAIL {x}")?;
        }
        if self.failures.len() > SHOWN {
            writeln!(f, "  ... and {} more failures", self.failures.len() - SHOWN)?;
        }
        for w in &self.worst {
            writeln!(f, "  worst {}: {w}", w.test.kind())?;
        }
        Ok(())
    }
}

/// Histograms of the words one protocol's parties received, per party, view and round, over any
/// number of runs.
#[derive(Debug, Clone)]
pub struct Audit {
    protocol: String,
    groups: BTreeMap<(usize, View, u64), Histogram>,
    /// (party, words, other words) of key differences whose two runs' message sizes differ.
    mismatched: Vec<(usize, u64, u64)>,
}

/// A group statistics are computed on.
struct Group {
    party: usize,
    view: View,
    scope: Scope,
}

impl Audit {
    /// An empty audit of the protocol named `protocol` (the name appears in every finding).
    pub fn new(protocol: impl Into<String>) -> Self {
        Audit { protocol: protocol.into(), groups: BTreeMap::new(), mismatched: Vec::new() }
    }

    /// Adds the messages `party` received in one run (sent messages are ignored): each word, and
    /// the pairs of messages of the same or consecutive receiving rounds (see the module doc).
    pub fn add_run(&mut self, party: usize, messages: &[RecordedMessage]) {
        let received: Vec<(u64, &[u64])> = messages
            .iter()
            .filter(|m| m.direction == Direction::Received && !m.words.is_empty())
            .map(|m| (m.round, m.words.as_slice()))
            .collect();
        for (round, words) in &received {
            self.hist(party, View::Words, *round).add(words.iter().copied());
        }
        self.add_pair_views(party, &received, [Some(View::Sums), Some(View::Differences), Some(View::Xors)]);
    }

    /// Adds the pair statistics of `received` (round, words) to `views` (where to put the sums,
    /// differences and XORs; `None`: not kept): every two messages of the same round, and every
    /// message with those of the next receiving round.
    fn add_pair_views(&mut self, party: usize, received: &[(u64, &[u64])], views: [Option<View>; 3]) {
        let mut by_round: BTreeMap<u64, Vec<&[u64]>> = BTreeMap::new();
        for (round, words) in received {
            by_round.entry(*round).or_default().push(words);
        }
        let rounds: Vec<(&u64, &Vec<&[u64]>)> = by_round.iter().collect();
        for (i, (&r, msgs)) in rounds.iter().enumerate() {
            let later = rounds.get(i + 1).map_or(&[][..], |(_, m)| m.as_slice());
            let mut hists = [Histogram::new(), Histogram::new(), Histogram::new()];
            for (j, a) in msgs.iter().enumerate() {
                for b in msgs[j + 1..].iter().chain(later) {
                    add_pairs(&mut hists, a, b);
                }
            }
            for (view, h) in views.iter().zip(&hists) {
                if let Some(view) = view.filter(|_| h.words() > 0) {
                    self.hist(party, view, r).merge(h);
                }
            }
        }
    }

    /// Adds `a - b` and `a ^ b` for the words `party` received in two runs (`a` and `b`, sent
    /// messages ignored) on the same secrets in which it held the same keys, only the key it lacks
    /// being different. Runs whose message sizes differ are a [`Test::Structure`] failure.
    pub fn add_key_difference(&mut self, party: usize, a: &[RecordedMessage], b: &[RecordedMessage]) {
        let received = |m: &[RecordedMessage]| -> Vec<(u64, Vec<u64>)> {
            m.iter()
                .filter(|m| m.direction == Direction::Received && !m.words.is_empty())
                .map(|m| (m.round, m.words.clone()))
                .collect()
        };
        let (a, b) = (received(a), received(b));
        let shape = |m: &[(u64, Vec<u64>)]| m.iter().map(|(r, w)| (*r, w.len())).collect::<Vec<_>>();
        if shape(&a) != shape(&b) {
            let words = |m: &[(u64, Vec<u64>)]| m.iter().map(|(_, w)| w.len() as u64).sum();
            self.mismatched.push((party, words(&a), words(&b)));
            return;
        }
        let diffs: Vec<(u64, Vec<u64>)> = a
            .iter()
            .zip(&b)
            .map(|((r, x), (_, y))| (*r, x.iter().zip(y).map(|(p, q)| p.wrapping_sub(*q)).collect()))
            .collect();
        let xors: Vec<(u64, Vec<u64>)> =
            a.iter().zip(&b).map(|((r, x), (_, y))| (*r, x.iter().zip(y).map(|(p, q)| p ^ q).collect())).collect();
        for ((round, d), (_, x)) in diffs.iter().zip(&xors) {
            self.hist(party, View::KeyDifferences, *round).add(d.iter().copied());
            self.hist(party, View::KeyXors, *round).add(x.iter().copied());
        }
        // A pad the receiver knows spread over two messages: their difference (or sum) does not
        // change between the runs.
        fn slices(m: &[(u64, Vec<u64>)]) -> Vec<(u64, &[u64])> {
            m.iter().map(|(r, w)| (*r, w.as_slice())).collect()
        }
        self.add_pair_views(party, &slices(&diffs), [Some(View::KeyPairSums), Some(View::KeyPairDifferences), None]);
        self.add_pair_views(party, &slices(&xors), [None, None, Some(View::KeyPairXors)]);
    }

    fn hist(&mut self, party: usize, view: View, round: u64) -> &mut Histogram {
        self.groups.entry((party, view, round)).or_default()
    }

    /// The groups statistics are computed on (see the module doc), and the too-small parties.
    fn resolve(&self, report: &mut Report) -> Vec<Group> {
        let mut by_kind: BTreeMap<(usize, View), Vec<(u64, u64)>> = BTreeMap::new();
        for (&(party, view, round), h) in &self.groups {
            by_kind.entry((party, view)).or_default().push((round, h.words()));
        }
        let mut out = Vec::new();
        for ((party, view), rounds) in by_kind {
            let total: u64 = rounds.iter().map(|(_, w)| w).sum();
            if total < MIN_WORDS {
                report.record(Finding {
                    protocol: self.protocol.clone(),
                    party,
                    view,
                    scope: Scope::Pooled(rounds.iter().map(|(r, _)| *r).collect()),
                    test: Test::TooFewWords,
                    value: total as f64,
                    threshold: MIN_WORDS as f64,
                    words: total,
                });
                continue;
            }
            let (big, small): (Vec<_>, Vec<_>) = rounds.iter().copied().partition(|(_, w)| *w >= MIN_WORDS);
            for (r, _) in &big {
                out.push(Group { party, view, scope: Scope::Round(*r) });
            }
            if !small.is_empty() {
                let pooled = if small.iter().map(|(_, w)| w).sum::<u64>() >= MIN_WORDS { &small } else { &rounds };
                out.push(Group { party, view, scope: Scope::Pooled(pooled.iter().map(|(r, _)| *r).collect()) });
            }
        }
        out
    }

    fn merged(&self, g: &Group) -> Option<Histogram> {
        let mut h = Histogram::new();
        let rounds = match &g.scope {
            Scope::Round(r) => std::slice::from_ref(r),
            Scope::Pooled(rs) => rs.as_slice(),
        };
        for r in rounds {
            h.merge(self.groups.get(&(g.party, g.view, *r))?);
        }
        Some(h)
    }

    fn finding(&self, g: &Group, test: Test, value: f64, threshold: f64, words: u64) -> Finding {
        Finding {
            protocol: self.protocol.clone(),
            party: g.party,
            view: g.view,
            scope: g.scope.clone(),
            test,
            value,
            threshold,
            words,
        }
    }

    /// Tests every group's words for uniformity: 8 byte and 64 bit statistics per group.
    pub fn uniformity(&self) -> Report {
        let mut report = Report::new(&self.protocol);
        for &(party, words, other) in &self.mismatched {
            let g = Group { party, view: View::KeyDifferences, scope: Scope::Pooled(Vec::new()) };
            report.record(self.finding(&g, Test::Structure, other as f64, 0.0, words));
        }
        for g in self.resolve(&mut report) {
            let h = self.merged(&g).unwrap_or_default();
            for p in 0..8 {
                report.record(self.finding(&g, Test::Byte(p), h.byte_statistic(p), chi2_threshold(255), h.words()));
            }
            for b in 0..64 {
                report.record(self.finding(&g, Test::Bit(b), h.bit_statistic(b), chi2_threshold(1), h.words()));
            }
        }
        report
    }

    /// Tests that `other` (the same protocol on other secrets, as many runs) is indistinguishable
    /// from `self`: equal message sizes and, per group of `self`, 8 two-sample byte statistics.
    pub fn homogeneity(&self, other: &Audit) -> Report {
        let mut report = Report::new(&self.protocol);
        let sizes = |a: &Audit| -> BTreeMap<(usize, View, u64), u64> {
            a.groups.iter().map(|(k, h)| (*k, h.words())).collect()
        };
        let (mine, theirs) = (sizes(self), sizes(other));
        for (&(party, view, round), &words) in &mine {
            let other_words = theirs.get(&(party, view, round)).copied().unwrap_or(0);
            if other_words != words {
                let g = Group { party, view, scope: Scope::Round(round) };
                report.record(self.finding(&g, Test::Structure, other_words as f64, 0.0, words));
            }
        }
        for (&(party, view, round), &words) in theirs.iter().filter(|(k, _)| !mine.contains_key(k)) {
            let g = Group { party, view, scope: Scope::Round(round) };
            report.record(self.finding(&g, Test::Structure, words as f64, 0.0, 0));
        }
        if !report.passed() {
            return report;
        }
        for g in self.resolve(&mut report) {
            let (Some(a), Some(b)) = (self.merged(&g), other.merged(&g)) else { continue };
            for p in 0..8 {
                let (stat, dof) = a.homogeneity_statistic(&b, p);
                report.record(self.finding(&g, Test::TwoSample(p), stat, chi2_threshold(dof), a.words() + b.words()));
            }
        }
        report
    }
}

/// Adds `a + b`, `a - b` and `a ^ b` to `hists` (in [`View`] order), aligning the shorter message
/// with each full chunk of the longer one.
fn add_pairs(hists: &mut [Histogram; 3], a: &[u64], b: &[u64]) {
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    for chunk in long.chunks_exact(short.len()) {
        let pairs = || chunk.iter().zip(short);
        hists[0].add(pairs().map(|(x, y)| x.wrapping_add(*y)));
        hists[1].add(pairs().map(|(x, y)| x.wrapping_sub(*y)));
        hists[2].add(pairs().map(|(x, y)| x ^ y));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::BShare;
    use crate::{run_local_with, KeySource, RunConfig};
    use cryptgpu_kernels_cpu::CpuBackend;
    use cryptgpu_net::{LocalTransport, Peer, RecordLog, Recording, Round};
    use cryptgpu_ring::{Backend, BinaryOp};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    type P = crate::Party<CpuBackend, Recording<LocalTransport>>;
    type Share = crate::AShare<CpuBackend>;

    /// The normal upper tail `Q(x)` for `x >= 3` by its continued fraction.
    fn normal_tail(x: f64) -> f64 {
        let t = (1..=400).rev().fold(x, |t, k| x + k as f64 / t);
        (-x * x / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt() / t
    }

    fn received(round: u64, words: Vec<u64>) -> RecordedMessage {
        RecordedMessage { round, peer: Peer::Next, direction: Direction::Received, words }
    }

    #[test]
    fn thresholds_match_their_quantiles() {
        ::approx::assert_relative_eq!(normal_tail(Z_ALPHA), ALPHA, max_relative = 1e-9);
        ::approx::assert_relative_eq!(normal_tail(Z_HALF_ALPHA), ALPHA / 2.0, max_relative = 1e-9);
        // Wilson–Hilferty at 255 dof against the exact 1e-9 quantile 414.545 (0.1% above it).
        ::approx::assert_relative_eq!(chi2_threshold(255), 414.545, max_relative = 2e-3);
        ::approx::assert_abs_diff_eq!(chi2_threshold(1), 37.32, epsilon = 0.01);
    }

    #[test]
    fn uniform_words_pass_and_structured_words_fail() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let uniform: Vec<u64> = (0..MIN_WORDS).map(|_| rng.gen()).collect();
        let mut a = Audit::new("uniform");
        a.add_run(1, &[received(0, uniform.clone())]);
        let r = a.uniformity();
        assert!(r.passed(), "{r}");
        assert_eq!(r.statistics, 72, "one group of words, no pairs: {r}");

        // 40-bit values (high bytes zero), one biased bit, and a pad shared by two messages.
        let small: Vec<u64> = uniform.iter().map(|w| w >> 24).collect();
        let biased: Vec<u64> = uniform.iter().map(|w| w | (((w >> 40) % 3 == 0) as u64)).collect();
        let pad: Vec<u64> = (0..MIN_WORDS).map(|_| rng.gen()).collect();
        let shared = |v: u64| pad.iter().map(|p| p.wrapping_add(v)).collect::<Vec<u64>>();
        let cases = [
            ("small", vec![received(0, small)], Test::Byte(7)),
            ("biased", vec![received(0, biased)], Test::Bit(0)),
            ("shared pad", vec![received(0, shared(5)), received(1, shared(9))], Test::Byte(0)),
        ];
        for (name, msgs, test) in cases {
            let mut a = Audit::new(name);
            a.add_run(0, &msgs);
            let r = a.uniformity();
            assert!(r.failures.iter().any(|f| f.test == test && f.party == 0), "{r}");
        }
    }

    #[test]
    fn small_rounds_are_pooled_and_too_few_words_fail() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let mut a = Audit::new("pool");
        let words = |n: u64, rng: &mut ChaCha8Rng| (0..n).map(|_| rng.gen()).collect::<Vec<u64>>();
        let msgs = [received(0, words(MIN_WORDS, &mut rng)), received(3, words(10, &mut rng))];
        a.add_run(2, &msgs);
        let r = a.uniformity();
        let scopes: Vec<&Scope> = r.worst.iter().map(|f| &f.scope).collect();
        assert!(r.passed(), "{r} {scopes:?}");
        // Words: round 0 alone, then rounds 0 and 3 pooled (round 3 alone is too small); one group
        // of each kind of pair (round 0 with round 3).
        assert_eq!(r.statistics, 5 * 72, "{r}");
        let mut b = Audit::new("few");
        b.add_run(1, &[received(0, words(10, &mut rng))]);
        let r = b.uniformity();
        assert!(r.failures.iter().any(|f| f.test == Test::TooFewWords), "{r}");
    }

    #[test]
    fn homogeneity_tells_different_distributions_and_sizes_apart() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let n = MIN_WORDS as usize;
        let run = |v: Vec<u64>| {
            let mut a = Audit::new("two-sample");
            a.add_run(0, &[received(0, v)]);
            a
        };
        let u1 = run((0..n).map(|_| rng.gen()).collect());
        let u2 = run((0..n).map(|_| rng.gen()).collect());
        let r = u1.homogeneity(&u2);
        assert!(r.passed(), "{r}");
        let low = run((0..n).map(|_| rng.gen::<u64>() & !0xF0).collect());
        assert!(u1.homogeneity(&low).failures.iter().any(|f| f.test == Test::TwoSample(0)));
        let shorter = run((0..n - 1).map(|_| rng.gen()).collect());
        assert!(u1.homogeneity(&shorter).failures.iter().any(|f| f.test == Test::Structure));
    }

    #[test]
    fn key_differences_catch_pads_the_receiver_knows() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let n = MIN_WORDS as usize;
        let known: Vec<u64> = (0..n).map(|_| rng.gen()).collect();
        let mut fresh = || -> Vec<u64> { (0..n).map(|_| rng.gen()).collect() };
        let (a, b) = (vec![received(0, fresh())], vec![received(0, fresh())]);
        let mut audit = Audit::new("fresh pads");
        audit.add_key_difference(1, &a, &b);
        assert!(audit.uniformity().passed());
        // Padded with the same (receiver-known) pad in both runs: uniform words, zero differences.
        let mut audit = Audit::new("known pad");
        audit.add_key_difference(1, &[received(0, known.clone())], &[received(0, known.clone())]);
        let r = audit.uniformity();
        assert!(r.failures.iter().any(|f| f.view == View::KeyDifferences && f.test == Test::Byte(7)), "{r}");
        let mut audit = Audit::new("sizes");
        audit.add_key_difference(1, &a, &[received(1, known.clone())]);
        assert!(audit.uniformity().failures.iter().any(|f| f.test == Test::Structure));
        // Messages `k + r` and `r + c·q` (fresh `r`, `q`, known `k`, `c` = 0 for a quarter of the
        // words): each one's key differences look uniform (a quarter duplicated), their
        // differences are zero at a quarter of the words.
        let two = |rng: &mut ChaCha8Rng| {
            let r: Vec<u64> = (0..n).map(|_| rng.gen()).collect();
            let first: Vec<u64> = known.iter().zip(&r).map(|(k, r)| k.wrapping_add(*r)).collect();
            let second: Vec<u64> =
                r.iter().map(|r| r.wrapping_add(if rng.gen_range(0..4) == 0 { 0 } else { rng.gen() })).collect();
            vec![received(0, first), received(0, second)]
        };
        let (a, b) = (two(&mut rng), two(&mut rng));
        let mut audit = Audit::new("known pad over two messages");
        audit.add_key_difference(1, &a, &b);
        let r = audit.uniformity();
        let old_views = [View::Words, View::KeyDifferences, View::KeyXors];
        assert!(r.failures.iter().all(|f| !old_views.contains(&f.view)), "{r}");
        assert!(r.failures.iter().any(|f| f.view == View::KeyPairDifferences), "{r}");
    }

    /// Runs `f` on three recorded parties with fresh random replicated sharings `x`, `y` of `n`
    /// elements (no communication) and audits what they receive inside `f`.
    fn audit_of(name: &str, n: usize, f: impl Fn(&mut P, Share, Share) -> crate::Result<()> + Sync) -> Report {
        let transports = LocalTransport::triple().map(Recording::new);
        let logs: [RecordLog; 3] = std::array::from_fn(|i| transports[i].log());
        let config = RunConfig { keys: KeySource::InsecureSeed(11), ..RunConfig::default() };
        run_local_with(transports, CpuBackend, config, |p| {
            let x = p.random_share(&[n])?;
            let y = p.random_share(&[n])?;
            logs[p.id()].clear();
            f(p, x, y)
        })
        .unwrap();
        let mut audit = Audit::new(name);
        for (party, log) in logs.iter().enumerate() {
            audit.add_run(party, &log.take());
        }
        audit.uniformity()
    }

    #[test]
    fn control_unmasked_resharing_and_and_gate_are_flagged() {
        const N: usize = 1 << 17;
        let mul = |be: &CpuBackend, a: &_, b: &_| be.binary(BinaryOp::Mul, a, b);
        let r = audit_of("masked product", N, |p, x, y| {
            p.mul_int(&x, &y)?;
            Ok(())
        });
        assert!(r.passed(), "{r}");
        // The product term without its zero share: x_i·(y_i + y_{i+1}) + x_{i+1}·y_i.
        let r = audit_of("unmasked product", N, |p, x, y| {
            let be = *p.backend();
            let z = be.binary(
                BinaryOp::Add,
                &mul(&be, x.first(), &be.binary(BinaryOp::Add, y.first(), y.second())?)?,
                &mul(&be, x.second(), y.first())?,
            )?;
            p.round(Round::new().send(Peer::Prev, be.download(&z)?.into_data()).recv(Peer::Next, N))?;
            Ok(())
        });
        assert!(!r.passed() && (0..3).all(|i| r.failures.iter().any(|f| f.party == i)), "{r}");
        assert!(r.failures.iter().any(|f| f.test == Test::Bit(0)), "{r}");

        let bits = |x: Share| BShare::from_parts(x.first().clone(), x.second().clone());
        let r = audit_of("masked AND", N, |p, x, y| {
            p.b_and(&bits(x)?, &bits(y)?)?;
            Ok(())
        });
        assert!(r.passed(), "{r}");
        // The AND term without its binary zero share: x_i&(y_i ^ y_{i+1}) ^ x_{i+1}&y_i (each bit is
        // 1 with probability 3/8).
        let r = audit_of("unmasked AND", N, |p, x, y| {
            let be = *p.backend();
            let and = |a: &_, b: &_| be.binary(BinaryOp::And, a, b);
            let ys = be.binary(BinaryOp::Xor, y.first(), y.second())?;
            let z = be.binary(BinaryOp::Xor, &and(x.first(), &ys)?, &and(x.second(), y.first())?)?;
            p.round(Round::new().send(Peer::Prev, be.download(&z)?.into_data()).recv(Peer::Next, N))?;
            Ok(())
        });
        assert!((0..64).all(|b| r.failures.iter().any(|f| f.test == Test::Bit(b))), "{r}");
        assert!((0..8).all(|p| r.failures.iter().any(|f| f.test == Test::Byte(p))), "{r}");
    }
}
