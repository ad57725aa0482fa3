//! Every kernel source compiles with NVRTC to CUBIN for sm_80 (A100) and sm_90 (H100/H200) with
//! no error and no warning. Needs only `libnvrtc` (no GPU): CI installs the `nvidia-cuda-nvrtc`
//! wheel and sets `CRYPTGPU_REQUIRE_NVRTC=1`, under which a missing library fails these tests
//! instead of skipping them.

use cryptgpu_kernels_cuda::nvrtc::{compile, nvrtc_available, nvrtc_version, supported_archs};
use cryptgpu_kernels_cuda::sources::{KernelSource, SOURCES};

/// Whether `CRYPTGPU_REQUIRE_NVRTC` (its value, if set) asks for NVRTC: set and neither empty
/// nor `0`.
fn nvrtc_required(var: Option<&str>) -> bool {
    var.is_some_and(|v| !v.is_empty() && v != "0")
}

/// Whether an NVRTC test runs: true with `libnvrtc`; without it, a panic when NVRTC is required,
/// else false after a note that the test skipped.
fn nvrtc_present(test: &str) -> bool {
    if nvrtc_available() {
        return true;
    }
    let var = std::env::var("CRYPTGPU_REQUIRE_NVRTC").ok();
    assert!(
        !nvrtc_required(var.as_deref()),
        "CRYPTGPU_REQUIRE_NVRTC={} but libnvrtc cannot be loaded: put the lib folder of the nvidia-cuda-nvrtc \
         wheel on LD_LIBRARY_PATH",
        var.unwrap_or_default()
    );
    eprintln!(
        "SKIPPED {test}: libnvrtc not found (set LD_LIBRARY_PATH to the lib folder of the nvidia-cuda-nvrtc wheel)"
    );
    false
}

/// True when `name` is a symbol of the ELF image: a NUL-delimited entry of its string table.
fn has_symbol(elf: &[u8], name: &str) -> bool {
    let entry = [&[0u8][..], name.as_bytes(), &[0u8]].concat();
    elf.windows(entry.len()).any(|w| w == entry)
}

#[test]
fn require_nvrtc_means_set_to_something_but_0() {
    assert!(!nvrtc_required(None));
    assert!(!nvrtc_required(Some("")));
    assert!(!nvrtc_required(Some("0")));
    assert!(nvrtc_required(Some("1")));
    assert!(nvrtc_required(Some("yes")));
}

#[test]
fn every_kernel_compiles_to_cubin_for_sm80_and_sm90_without_warnings() {
    if !nvrtc_present("every_kernel_compiles_to_cubin_for_sm80_and_sm90_without_warnings") {
        return;
    }
    eprintln!("NVRTC {:?}, architectures {:?}", nvrtc_version().unwrap(), supported_archs().unwrap());
    for src in SOURCES {
        for arch in ["sm_80", "sm_90"] {
            let out = compile(src, arch).unwrap_or_else(|e| panic!("{e}"));
            assert!(out.log.is_empty(), "{}.cu for {arch} compiled with warnings:\n{}", src.name, out.log);
            assert!(out.cubin.starts_with(b"\x7fELF"), "{}.cu for {arch}: the CUBIN is not an ELF image", src.name);
            for f in src.functions {
                assert!(has_symbol(&out.cubin, f), "{}.cu for {arch}: no kernel {f} in the CUBIN", src.name);
            }
        }
    }
}

#[test]
fn a_broken_kernel_is_reported_with_its_log() {
    if !nvrtc_present("a_broken_kernel_is_reported_with_its_log") {
        return;
    }
    let bad = KernelSource {
        name: "broken",
        code: "extern \"C\" __global__ void f() { undeclared = 1; }",
        functions: &["f"],
    };
    let err = compile(&bad, "sm_90").err().expect("must fail");
    assert!(err.to_string().contains("undeclared"), "{err}");
}

#[test]
fn an_architecture_nvrtc_lacks_is_a_clear_error() {
    if !nvrtc_present("an_architecture_nvrtc_lacks_is_a_clear_error") {
        return;
    }
    let src = &SOURCES[0];
    for (arch, says) in [("sm_11", "cannot compile for sm_11"), ("compute_90", "real architecture")] {
        let err = compile(src, arch).err().expect("must fail").to_string();
        assert!(err.contains(says) && err.contains(arch), "{arch}: {err}");
    }
}

#[test]
fn backend_without_gpu_is_an_error_not_a_panic() {
    // On a machine with a GPU this builds the backend; without one it must return an error.
    match cryptgpu_kernels_cuda::CudaBackend::new() {
        Ok(be) => eprintln!("GPU present: {:?}", be.info()),
        Err(e) => eprintln!("no GPU backend (expected on CI): {e}"),
    }
}

#[test]
fn warnings_reach_the_log() {
    if !nvrtc_present("warnings_reach_the_log") {
        return;
    }
    let noisy = KernelSource {
        name: "noisy",
        code: "extern \"C\" __global__ void f(int* p) { int unused = 3; p[0] = 1; }",
        functions: &["f"],
    };
    let out = compile(&noisy, "sm_90").expect("compiles");
    assert!(out.log.contains("unused"), "expected a warning, log: {:?}", out.log);
}
