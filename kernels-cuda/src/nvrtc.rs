//! Run-time compilation of the kernel sources with NVRTC.

use std::ffi::{CStr, CString};

use cudarc::nvrtc::{result, sys, Ptx};

use crate::error::CudaError;
use crate::sources::KernelSource;

/// True when `libnvrtc` can be loaded.
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen the library; no NVRTC function is called.
    unsafe { sys::is_culib_present() }
}

/// NVRTC's version `(major, minor)`.
pub fn nvrtc_version() -> Result<(i32, i32), CudaError> {
    if !nvrtc_available() {
        return Err(CudaError::MissingLibrary("libnvrtc"));
    }
    let (mut major, mut minor) = (0, 0);
    // SAFETY: the library is present; both pointers are valid for writes.
    let status = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
    status.result().map_err(|e| CudaError::Driver(format!("nvrtcVersion: {e:?}")))?;
    Ok((major, minor))
}

/// A compiled kernel source: PTX plus the compiler's log (empty when there were no warnings).
pub struct Compiled {
    /// The PTX to load into a module.
    pub ptx: Ptx,
    /// NVRTC's log, trimmed.
    pub log: String,
}

/// Compiles one kernel source for `arch` (e.g. `"sm_90"`), returning the PTX and the log.
pub fn compile(source: &KernelSource, arch: &str) -> Result<Compiled, CudaError> {
    if !nvrtc_available() {
        return Err(CudaError::MissingLibrary("libnvrtc"));
    }
    let fail = |log: String| CudaError::Compile { source_name: source.name.to_string(), arch: arch.to_string(), log };
    let src = CString::new(source.full_source()).map_err(|_| fail("source contains a NUL byte".into()))?;
    let name = CString::new(format!("{}.cu", source.name)).map_err(|_| fail("bad name".into()))?;
    let prog = result::create_program(&src, Some(&name)).map_err(|e| fail(format!("create: {e:?}")))?;
    let options = [format!("--gpu-architecture={arch}"), "--std=c++17".to_string(), "-default-device".to_string()];
    // SAFETY: `prog` is a live program created above; it is destroyed exactly once below.
    let compiled = unsafe { result::compile_program(prog, &options) };
    // SAFETY: as above.
    let log = unsafe { result::get_program_log(prog) }.map(|raw| c_chars_to_string(&raw)).unwrap_or_default();
    let out = match compiled {
        Ok(()) => {
            // SAFETY: compilation succeeded, so the program holds PTX.
            let ptx = unsafe { result::get_ptx(prog) }.map_err(|e| fail(format!("get PTX: {e:?}")))?;
            Ok(Compiled { ptx: Ptx::from_src(c_chars_to_string(&ptx)), log })
        }
        Err(e) => Err(fail(format!("{e:?}: {log}"))),
    };
    // SAFETY: destroyed once; no use afterwards.
    let _ = unsafe { result::destroy_program(prog) };
    out
}

fn c_chars_to_string(raw: &[std::ffi::c_char]) -> String {
    let bytes: Vec<u8> = raw.iter().map(|&c| c as u8).collect();
    let s = CStr::from_bytes_until_nul(&bytes).map(|c| c.to_string_lossy().into_owned());
    s.unwrap_or_else(|_| String::from_utf8_lossy(&bytes).into_owned()).trim().to_string()
}
