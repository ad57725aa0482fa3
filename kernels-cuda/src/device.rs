//! Finding the GPU, loading the CUDA libraries, and compiling the kernels once per process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::cublas::CudaBlas;
use cudarc::cublaslt::{result as lt, sys as ltsys};
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtrMut};

use crate::error::CudaError;
use crate::nvrtc;
use crate::sources::SOURCES;

/// Facts about the GPU a backend runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device ordinal.
    pub ordinal: usize,
    /// Marketing name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// Global memory in bytes.
    pub total_memory: usize,
    /// Driver's CUDA version as (major, minor), e.g. (13, 0).
    pub driver_cuda_version: (i32, i32),
    /// NVRTC version used to compile the kernels.
    pub nvrtc_version: (i32, i32),
    /// Streaming multiprocessors.
    pub multiprocessors: i32,
}

/// Checks that the CUDA driver and NVRTC libraries load and at least one GPU is present,
/// without panicking (cudarc panics on first use of a missing library).
pub fn cuda_available() -> Result<(), CudaError> {
    // SAFETY: these only try to dlopen the libraries.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(CudaError::MissingLibrary("the CUDA driver library (libcuda)"));
    }
    if !nvrtc::nvrtc_available() {
        return Err(CudaError::MissingLibrary("NVRTC (libnvrtc)"));
    }
    // SAFETY: as above.
    if !unsafe { cudarc::cublas::sys::is_culib_present() } {
        return Err(CudaError::MissingLibrary("cuBLAS (libcublas)"));
    }
    // SAFETY: as above.
    if !unsafe { cudarc::cublaslt::sys::is_culib_present() } {
        return Err(CudaError::MissingLibrary("cuBLASLt (libcublasLt)"));
    }
    let count = CudaContext::device_count().map_err(|e| CudaError::NoDevice(e.to_string()))?;
    if count < 1 {
        return Err(CudaError::NoDevice("the driver reports no GPU".into()));
    }
    Ok(())
}

/// A device with its compiled kernels, shared by every backend on that device in this process.
pub(crate) struct Device {
    _ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub info: DeviceInfo,
    /// cuBLAS handle; calls are serialised (the three parties of a process share the device).
    pub blas: Mutex<CudaBlas>,
    pub lt: LtHandle,
    functions: HashMap<&'static str, CudaFunction>,
    _modules: Vec<Arc<CudaModule>>,
}

impl Device {
    /// The kernel `name` (every kernel of [`SOURCES`] is loaded).
    pub fn function(&self, name: &'static str) -> Result<&CudaFunction, CudaError> {
        self.functions.get(name).ok_or_else(|| CudaError::Driver(format!("kernel {name} is not loaded")))
    }

    fn open(ordinal: usize) -> Result<Device, CudaError> {
        cuda_available()?;
        let ctx = CudaContext::new(ordinal).map_err(|e| CudaError::NoDevice(format!("device {ordinal}: {e}")))?;
        let stream = ctx.default_stream();
        let cc = ctx.compute_capability()?;
        let attr = |a| ctx.attribute(a).map_err(CudaError::from);
        let multiprocessors = attr(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?;
        let mut driver_version = 0;
        // SAFETY: the driver library is loaded; the pointer is valid for a write.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver_version) }.result().map_err(CudaError::from)?;
        let info = DeviceInfo {
            ordinal,
            name: ctx.name()?,
            compute_capability: cc,
            total_memory: ctx.total_mem()?,
            driver_cuda_version: (driver_version / 1000, (driver_version % 1000) / 10),
            nvrtc_version: nvrtc::nvrtc_version()?,
            multiprocessors,
        };
        // NVRTC takes a static architecture string; the device's own compute capability.
        let arch: &'static str = Box::leak(format!("sm_{}{}", cc.0, cc.1).into_boxed_str());
        let mut functions = HashMap::new();
        let mut modules = Vec::new();
        for src in SOURCES {
            let compiled = nvrtc::compile(src, arch)?;
            let module = ctx.load_module(compiled.ptx)?;
            for &f in src.functions {
                functions.insert(f, module.load_function(f)?);
            }
            modules.push(module);
        }
        let blas = CudaBlas::new(stream.clone()).map_err(CudaError::from)?;
        let lt = LtHandle::new(&stream)?;
        Ok(Device { _ctx: ctx, stream, info, blas: Mutex::new(blas), lt, functions, _modules: modules })
    }

    /// The device `ordinal`, opened and compiled on first use and cached for the process.
    pub fn get(ordinal: usize) -> Result<Arc<Device>, CudaError> {
        static CACHE: OnceLock<Mutex<HashMap<usize, Arc<Device>>>> = OnceLock::new();
        let cache = CACHE.get_or_init(|| Mutex::new(HashMap::new()));
        let mut map = cache.lock().map_err(|_| CudaError::Driver("device cache poisoned".into()))?;
        if let Some(d) = map.get(&ordinal) {
            return Ok(d.clone());
        }
        let d = Arc::new(Device::open(ordinal)?);
        map.insert(ordinal, d.clone());
        Ok(d)
    }
}

/// Geometry of one int8 GEMM `D[rows x cols] = X^T · Y` (column-major, int32 output, ld = rows),
/// where X is stored `inner x rows` and Y `inner x cols`, both with leading dimension `ld`.
pub(crate) struct Imma {
    pub rows: usize,
    pub cols: usize,
    pub inner: usize,
    pub ld: usize,
}

/// Workspace handed to cuBLASLt.
const LT_WORKSPACE: usize = 32 << 20;

/// A cuBLASLt handle with its workspace; calls are serialised by a mutex.
pub(crate) struct LtHandle {
    handle: Mutex<ltsys::cublasLtHandle_t>,
    workspace: Mutex<CudaSlice<u8>>,
}

// SAFETY: the raw handle is only used under the mutex, one call at a time.
unsafe impl Send for LtHandle {}
// SAFETY: as above.
unsafe impl Sync for LtHandle {}

impl Drop for LtHandle {
    fn drop(&mut self) {
        if let Ok(h) = self.handle.lock() {
            // SAFETY: the handle was created by cublasLtCreate and is destroyed once.
            let _ = unsafe { lt::destroy_handle(*h) };
        }
    }
}

/// Destroys cuBLASLt descriptors when a call returns, on every path.
struct LtDescs {
    desc: Option<ltsys::cublasLtMatmulDesc_t>,
    layouts: Vec<ltsys::cublasLtMatrixLayout_t>,
    pref: Option<ltsys::cublasLtMatmulPreference_t>,
}

impl Drop for LtDescs {
    fn drop(&mut self) {
        // SAFETY: each descriptor was created by the matching cuBLASLt call and is destroyed once.
        unsafe {
            if let Some(d) = self.desc {
                let _ = lt::destroy_matmul_desc(d);
            }
            for &l in &self.layouts {
                let _ = lt::destroy_matrix_layout(l);
            }
            if let Some(p) = self.pref {
                let _ = lt::destroy_matmul_pref(p);
            }
        }
    }
}

impl LtHandle {
    fn new(stream: &Arc<CudaStream>) -> Result<Self, CudaError> {
        let handle = lt::create_handle()?;
        let workspace = stream.alloc_zeros::<u8>(LT_WORKSPACE)?;
        Ok(LtHandle { handle: Mutex::new(handle), workspace: Mutex::new(workspace) })
    }

    /// Runs one int8 x int8 -> int32 GEMM (`TN` layout, as IMMA requires) on `stream`.
    pub(crate) fn imma(&self, stream: &Arc<CudaStream>, g: Imma, x: u64, y: u64, d: u64) -> Result<(), CudaError> {
        let handle = *self.handle.lock().map_err(|_| CudaError::Blas("cuBLASLt handle poisoned".into()))?;
        let mut ws = self.workspace.lock().map_err(|_| CudaError::Blas("cuBLASLt workspace poisoned".into()))?;
        let (ws_ptr, _guard) = ws.device_ptr_mut(stream);
        let mut descs = LtDescs { desc: None, layouts: Vec::new(), pref: None };
        let desc =
            lt::create_matmul_desc(ltsys::cublasComputeType_t::CUBLAS_COMPUTE_32I, ltsys::cudaDataType::CUDA_R_32I)?;
        descs.desc = Some(desc);
        let op_t: i32 = 1; // CUBLAS_OP_T
                           // SAFETY: the attribute buffer is a live i32 of the size passed.
        unsafe {
            lt::set_matmul_desc_attribute(
                desc,
                ltsys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                (&op_t as *const i32).cast(),
                std::mem::size_of::<i32>(),
            )?;
        }
        let (rows, cols, inner, ld) = (g.rows as u64, g.cols as u64, g.inner as u64, g.ld as i64);
        let a_layout = lt::create_matrix_layout(ltsys::cudaDataType::CUDA_R_8I, inner, rows, ld)?;
        descs.layouts.push(a_layout);
        let b_layout = lt::create_matrix_layout(ltsys::cudaDataType::CUDA_R_8I, inner, cols, ld)?;
        descs.layouts.push(b_layout);
        let c_layout = lt::create_matrix_layout(ltsys::cudaDataType::CUDA_R_32I, rows, cols, rows as i64)?;
        descs.layouts.push(c_layout);
        let pref = lt::create_matmul_pref()?;
        descs.pref = Some(pref);
        let ws_bytes = LT_WORKSPACE as u64;
        // SAFETY: the attribute buffer is a live u64 of the size passed.
        unsafe {
            lt::set_matmul_pref_attribute(
                pref,
                ltsys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&ws_bytes as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )?;
        }
        let (alpha, beta) = (1i32, 0i32);
        // SAFETY: descriptors are live; x, y and d point to device buffers of at least
        // ld*rows, ld*cols and rows*cols elements (checked by the caller's allocation sizes), and the
        // workspace buffer holds LT_WORKSPACE bytes. The stream pointer is the driver stream the
        // buffers belong to.
        unsafe {
            let heuristic = lt::get_matmul_algo_heuristic(handle, desc, a_layout, b_layout, c_layout, c_layout, pref)?;
            lt::matmul(
                handle,
                desc,
                (&alpha as *const i32).cast(),
                (&beta as *const i32).cast(),
                x as *const std::ffi::c_void,
                a_layout,
                y as *const std::ffi::c_void,
                b_layout,
                d as *const std::ffi::c_void,
                c_layout,
                d as *mut std::ffi::c_void,
                c_layout,
                &heuristic.algo,
                ws_ptr as *mut std::ffi::c_void,
                LT_WORKSPACE,
                stream.cu_stream() as ltsys::cudaStream_t,
            )?;
        }
        Ok(())
    }
}
