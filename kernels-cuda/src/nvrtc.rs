//! Run-time compilation of the kernel sources with NVRTC, to CUBIN (machine code) for one GPU
//! architecture.
//!
//! CUBIN rather than PTX: the driver JIT-compiles a PTX module and rejects PTX of a newer ISA
//! version than it knows, so PTX from an NVRTC newer than the driver does not load; a CUBIN for the
//! device's own `sm_XY` needs no JIT and loads on a driver of the same CUDA major version even when
//! that driver is older (CUDA's minor-version compatibility).

use std::ffi::{c_int, CStr, CString};

use cudarc::nvrtc::{result, sys};

use crate::error::CudaError;
use crate::sources::KernelSource;

/// True when `libnvrtc` can be loaded.
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen the library; no NVRTC function is called.
    unsafe { sys::is_culib_present() }
}

fn check_library() -> Result<(), CudaError> {
    if nvrtc_available() {
        Ok(())
    } else {
        Err(CudaError::MissingLibrary("NVRTC (libnvrtc)"))
    }
}

fn nvrtc_call(what: &str, status: sys::nvrtcResult) -> Result<(), CudaError> {
    status.result().map_err(|e| CudaError::Driver(format!("{what}: {e}")))
}

/// NVRTC's version `(major, minor)`.
pub fn nvrtc_version() -> Result<(i32, i32), CudaError> {
    check_library()?;
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present; both pointers are valid for writes.
    nvrtc_call("nvrtcVersion", unsafe { sys::nvrtcVersion(&mut major, &mut minor) })?;
    Ok((major, minor))
}

/// The real architectures NVRTC can compile for, as numbers (`90` for `sm_90`), ascending.
pub fn supported_archs() -> Result<Vec<i32>, CudaError> {
    check_library()?;
    let mut n: c_int = 0;
    // SAFETY: the library is present; the pointer is valid for a write.
    nvrtc_call("nvrtcGetNumSupportedArchs", unsafe { sys::nvrtcGetNumSupportedArchs(&mut n) })?;
    let mut archs = vec![0; usize::try_from(n).unwrap_or(0)];
    // SAFETY: `archs` holds the `n` elements NVRTC writes.
    nvrtc_call("nvrtcGetSupportedArchs", unsafe { sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) })?;
    Ok(archs)
}

/// A compiled kernel source: a CUBIN plus the compiler's log (empty when there were no warnings).
pub struct Compiled {
    /// The CUBIN, an ELF image for the architecture it was compiled for (load it with
    /// `cudarc::nvrtc::Ptx::from_binary`).
    pub cubin: Vec<u8>,
    /// NVRTC's log, trimmed.
    pub log: String,
}

/// The number of a real architecture `sm_XY` (with an optional `a`/`f` suffix): `Some(90)` for
/// `sm_90a`; `None` for anything else (`compute_XY` has no CUBIN).
fn arch_number(arch: &str) -> Option<i32> {
    let digits = arch.strip_prefix("sm_")?.trim_end_matches(['a', 'f']);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Compiles one kernel source to CUBIN for the real architecture `arch` (e.g. `"sm_90"`).
pub fn compile(source: &KernelSource, arch: &str) -> Result<Compiled, CudaError> {
    check_library()?;
    let fail = |log: String| CudaError::Compile { source_name: source.name.to_string(), arch: arch.to_string(), log };
    let number = arch_number(arch).ok_or_else(|| fail("a CUBIN needs a real architecture sm_XY".into()))?;
    let supported = supported_archs()?;
    if !supported.contains(&number) {
        let (major, minor) = nvrtc_version()?;
        let list: Vec<String> = supported.iter().map(|a| format!("sm_{a}")).collect();
        return Err(fail(format!(
            "NVRTC {major}.{minor} cannot compile for {arch} (it supports {}); put an NVRTC that does first on \
             LD_LIBRARY_PATH",
            list.join(", ")
        )));
    }
    let src = CString::new(source.full_source()).map_err(|_| fail("source contains a NUL byte".into()))?;
    let name = CString::new(format!("{}.cu", source.name)).map_err(|_| fail("bad name".into()))?;
    let prog = result::create_program(&src, Some(&name)).map_err(|e| fail(format!("create: {e}")))?;
    let options = [format!("--gpu-architecture={arch}"), "--std=c++17".to_string(), "-default-device".to_string()];
    // SAFETY: `prog` is a live program created above; it is destroyed exactly once below.
    let compiled = unsafe { result::compile_program(prog, &options) };
    // SAFETY: as above.
    let log = unsafe { result::get_program_log(prog) }.map(|raw| c_chars_to_string(&raw));
    let out = match (compiled, log) {
        // SAFETY: as above; compilation for a real architecture succeeded, so the program holds
        // a CUBIN.
        (Ok(()), Ok(log)) => unsafe { get_cubin(prog) }.map(|cubin| Compiled { cubin, log }),
        (Ok(()), Err(e)) => Err(CudaError::Driver(format!("nvrtcGetProgramLog: {e}"))),
        (Err(e), log) => Err(fail(format!("{e}: {}", log.unwrap_or_default()))),
    };
    // SAFETY: destroyed once; no use afterwards.
    let destroyed = unsafe { result::destroy_program(prog) };
    let out = out?;
    destroyed.map_err(|e| CudaError::Driver(format!("nvrtcDestroyProgram: {e}")))?;
    Ok(out)
}

/// The CUBIN of a compiled program.
///
/// # Safety
/// `prog` must be a live program compiled successfully for a real architecture.
unsafe fn get_cubin(prog: sys::nvrtcProgram) -> Result<Vec<u8>, CudaError> {
    let mut size = 0usize;
    nvrtc_call("nvrtcGetCUBINSize", sys::nvrtcGetCUBINSize(prog, &mut size))?;
    let mut cubin = vec![0u8; size];
    // `cubin` holds the `size` bytes NVRTC writes.
    nvrtc_call("nvrtcGetCUBIN", sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr().cast()))?;
    Ok(cubin)
}

fn c_chars_to_string(raw: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = raw.iter().map(|&c| c as u8).collect();
    let s = CStr::from_bytes_until_nul(&bytes).map(|c| c.to_string_lossy().into_owned());
    s.unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned()).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::arch_number;

    #[test]
    fn only_real_architectures_have_a_cubin() {
        assert_eq!(arch_number("sm_90"), Some(90));
        assert_eq!(arch_number("sm_90a"), Some(90));
        assert_eq!(arch_number("sm_100f"), Some(100));
        assert_eq!(arch_number("sm_8"), Some(8));
        for bad in ["compute_90", "sm_", "sm_a", "90", "sm_9x0", "sm_-1"] {
            assert_eq!(arch_number(bad), None, "{bad}");
        }
    }
}
