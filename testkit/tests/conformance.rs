//! The suite on the CPU oracle (which conforms), and on backends with one planted fault (which
//! the suite catches and names).

use cryptgpu_kernels_cpu::CpuBackend;
use cryptgpu_ring::prg::Key;
use cryptgpu_ring::{
    Backend, BinaryOp, Conv2dParams, FixedPoint, Pool2dParams, Result, RingTensor, ScalarOp, ShiftOp, UnaryOp,
};
use cryptgpu_testkit::{assert_conforms, check_backend_with, random_fixed, Config, Report, Sizes};

fn quick(seed: u64) -> Config {
    Config { seed, sizes: Sizes::Quick }
}

#[test]
fn cpu_backend_conforms() {
    let report = check_backend_with(&CpuBackend, &quick(11));
    report.assert_passed();
    assert_eq!(report.backend, "cpu");
    assert!(report.checks.len() > 150, "only {} checks", report.checks.len());
    for name in ["upload_owned [1]", "im2col [2, 3, 9, 7] kernel (3, 3)", "rejects shift by 64", "protocol relu"] {
        assert!(report.checks.iter().any(|c| c.name.starts_with(name)), "no check {name:?}");
    }
}

#[test]
fn cpu_backend_conforms_at_the_default_sizes() {
    assert_conforms(&CpuBackend);
}

#[test]
fn report_round_trips_through_json_and_prints_every_check() {
    let report = check_backend_with(&CpuBackend, &quick(3));
    let json = serde_json::to_string(&report).expect("serialise");
    let back: Report = serde_json::from_str(&json).expect("deserialise");
    assert_eq!(back, report);
    let text = report.to_string();
    assert_eq!(text.lines().count(), report.checks.len() + 1);
    assert!(text.ends_with(&report.summary()), "{text}");
    assert!(report.summary().contains("seed 3"), "{}", report.summary());
}

#[test]
fn random_fixed_is_seeded_and_rejects_bad_bounds() {
    let codec = FixedPoint::default();
    let (v, t) = random_fixed(5, &[3, 4], 1.5, codec).expect("in range");
    assert_eq!(t.shape(), &[3, 4]);
    assert!(v.iter().all(|x| x.abs() <= 1.5));
    assert_eq!(random_fixed(5, &[3, 4], 1.5, codec).expect("in range").1, t);
    for bound in [-1.0, f64::NAN, f64::INFINITY, 1e300] {
        assert!(random_fixed(5, &[3], bound, codec).is_err(), "bound {bound}");
    }
    assert!(random_fixed(5, &[usize::MAX, 2], 1.0, codec).is_err());
}

/// One planted bug.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// `binary Xor` flips the low bit of the last element of tensors of more than 64 elements.
    XorLastElement,
    /// `prg_fill` keeps only the low 32 bits of the counter (a kernel taking it as `u32`).
    PrgCounter32,
    /// `sum_axis` panics on axis 0.
    SumAxisPanics,
}

/// [`CpuBackend`] with one [`Fault`].
#[derive(Debug, Clone, Copy)]
struct Faulty(Fault);

impl Backend for Faulty {
    type Tensor = RingTensor;

    fn name(&self) -> &'static str {
        "faulty"
    }
    fn upload(&self, t: &RingTensor) -> Result<RingTensor> {
        CpuBackend.upload(t)
    }
    fn download(&self, t: &RingTensor) -> Result<RingTensor> {
        CpuBackend.download(t)
    }
    fn full(&self, shape: &[usize], value: u64) -> Result<RingTensor> {
        CpuBackend.full(shape, value)
    }
    fn binary(&self, op: BinaryOp, a: &RingTensor, b: &RingTensor) -> Result<RingTensor> {
        let mut out = CpuBackend.binary(op, a, b)?;
        if self.0 == Fault::XorLastElement && op == BinaryOp::Xor && out.len() > 64 {
            if let Some(last) = out.data_mut().last_mut() {
                *last ^= 1;
            }
        }
        Ok(out)
    }
    fn unary(&self, op: UnaryOp, a: &RingTensor) -> Result<RingTensor> {
        CpuBackend.unary(op, a)
    }
    fn scalar(&self, op: ScalarOp, a: &RingTensor, s: u64) -> Result<RingTensor> {
        CpuBackend.scalar(op, a, s)
    }
    fn shift(&self, op: ShiftOp, a: &RingTensor, bits: u32) -> Result<RingTensor> {
        CpuBackend.shift(op, a, bits)
    }
    fn pack_bits(&self, a: &RingTensor) -> Result<RingTensor> {
        CpuBackend.pack_bits(a)
    }
    fn unpack_bits(&self, packed: &RingTensor, shape: &[usize]) -> Result<RingTensor> {
        CpuBackend.unpack_bits(packed, shape)
    }
    fn matmul(&self, a: &RingTensor, b: &RingTensor, ta: bool, tb: bool) -> Result<RingTensor> {
        CpuBackend.matmul(a, b, ta, tb)
    }
    fn im2col(
        &self,
        x: &RingTensor,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<RingTensor> {
        CpuBackend.im2col(x, kernel, stride, padding)
    }
    fn col2im(
        &self,
        cols: &RingTensor,
        input_shape: &[usize],
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<RingTensor> {
        CpuBackend.col2im(cols, input_shape, kernel, stride, padding)
    }
    fn conv2d(&self, x: &RingTensor, w: &RingTensor, p: &Conv2dParams) -> Result<RingTensor> {
        CpuBackend.conv2d(x, w, p)
    }
    fn sum_pool2d(&self, x: &RingTensor, p: &Pool2dParams) -> Result<RingTensor> {
        CpuBackend.sum_pool2d(x, p)
    }
    fn sum_axis(&self, a: &RingTensor, axis: usize, keepdim: bool) -> Result<RingTensor> {
        assert!(!(self.0 == Fault::SumAxisPanics && axis == 0), "planted panic in sum_axis");
        CpuBackend.sum_axis(a, axis, keepdim)
    }
    fn reshape(&self, a: &RingTensor, shape: &[usize]) -> Result<RingTensor> {
        CpuBackend.reshape(a, shape)
    }
    fn permute(&self, a: &RingTensor, perm: &[usize]) -> Result<RingTensor> {
        CpuBackend.permute(a, perm)
    }
    fn slice(&self, a: &RingTensor, axis: usize, start: usize, end: usize) -> Result<RingTensor> {
        CpuBackend.slice(a, axis, start, end)
    }
    fn concat(&self, parts: &[&RingTensor], axis: usize) -> Result<RingTensor> {
        CpuBackend.concat(parts, axis)
    }
    fn broadcast_to(&self, a: &RingTensor, shape: &[usize]) -> Result<RingTensor> {
        CpuBackend.broadcast_to(a, shape)
    }
    fn prg_fill(&self, key: &Key, stream: u64, counter: u64, shape: &[usize]) -> Result<RingTensor> {
        let counter = if self.0 == Fault::PrgCounter32 { counter & 0xffff_ffff } else { counter };
        CpuBackend.prg_fill(key, stream, counter, shape)
    }
}

/// Runs the quick suite on the faulty backend; checks that it fails, that every failed operation
/// check is named by one of `culprits` (protocol checks may fail too, as protocols use the
/// operation), that `caught` failed and that `spared` passed.
fn assert_caught(fault: Fault, culprits: &[&str], caught: &[&str], spared: &[&str]) -> Report {
    let seed = 5;
    let report = check_backend_with(&Faulty(fault), &quick(seed));
    assert!(!report.passed(), "seed {seed}: {fault:?} was not caught");
    assert!(report.summary().contains("seed 5"), "{}", report.summary());
    for c in report.failures() {
        assert!(
            c.name.starts_with("protocol") || culprits.iter().any(|p| c.name.starts_with(p)),
            "seed {seed}, {fault:?}: unexpected failure {c}"
        );
    }
    let find = |name: &str| {
        report.checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("seed {seed}: no check {name:?}"))
    };
    for name in caught {
        let c = find(name);
        assert!(!c.passed, "seed {seed}, {fault:?}: {name} passed");
    }
    for name in spared {
        let c = find(name);
        assert!(c.passed, "seed {seed}, {fault:?}: {c}");
    }
    report
}

#[test]
fn an_off_by_one_on_one_element_is_caught_and_named() {
    let report = assert_caught(
        Fault::XorLastElement,
        &["binary Xor"],
        &["binary Xor [1000]", "binary Xor [3, 257]"],
        &["binary Xor [1]", "binary Add [1000]"],
    );
    let c = report.checks.iter().find(|c| c.name == "binary Xor [3, 257]").expect("checked");
    assert!(c.detail.starts_with("element 770:") && c.detail.contains("(1 of 771 differ)"), "{}", c.detail);
}

#[test]
fn a_truncated_prg_counter_is_caught_and_named() {
    let report = assert_caught(
        Fault::PrgCounter32,
        &["prg_fill"],
        &["prg_fill stream 5 counter 18446744073709551612 n 21", "prg_fill stream 2 counter 1099511627776 n 1001"],
        &["prg_fill stream 0 counter 0 n 1"],
    );
    assert!(report.failures().all(|c| c.detail.starts_with("element 0:") || c.name.starts_with("protocol")));
}

#[test]
fn a_panic_in_the_candidate_is_a_failed_check() {
    let report = assert_caught(
        Fault::SumAxisPanics,
        &["sum_axis 0"],
        &["sum_axis 0 keepdim false"],
        &["sum_axis 1 keepdim false"],
    );
    let c = report.checks.iter().find(|c| c.name == "sum_axis 0 keepdim true").expect("checked");
    assert_eq!(c.detail, "candidate panicked: planted panic in sum_axis");
}
