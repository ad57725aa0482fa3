//! Finding the GPU, loading the CUDA libraries, and compiling the kernels once per process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cryptgpu_ring::limbs::{GemmGeometry, IMMA_POINTER_ALIGN};
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
        // Machine code for the device's own compute capability: no PTX JIT (see `nvrtc`).
        let arch = format!("sm_{}{}", cc.0, cc.1);
        let ((nv_major, nv_minor), (drv_major, drv_minor)) = (info.nvrtc_version, info.driver_cuda_version);
        let hint = if nv_major > drv_major {
            "; NVRTC is newer than the driver: put the driver's CUDA version of NVRTC first on LD_LIBRARY_PATH"
        } else {
            ""
        };
        let mut functions = HashMap::new();
        let mut modules = Vec::new();
        for src in SOURCES {
            let compiled = nvrtc::compile(src, &arch)?;
            let module = ctx.load_module(cudarc::nvrtc::Ptx::from_binary(compiled.cubin)).map_err(|e| {
                CudaError::Driver(format!(
                    "loading the {} CUBIN for {arch} (NVRTC {nv_major}.{nv_minor}, driver CUDA {drv_major}.{drv_minor}): {e}{hint}",
                    src.name
                ))
            })?;
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

/// Workspace handed to cuBLASLt.
const LT_WORKSPACE: usize = 32 << 20;

/// A cuBLASLt handle with its workspace and a cache of matmul plans per GEMM geometry; calls are
/// serialised by one mutex.
pub(crate) struct LtHandle {
    inner: Mutex<LtInner>,
}

struct LtInner {
    handle: ltsys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
    /// Descriptors, layouts and the heuristic's algorithm per [`GemmGeometry::shape_key`]. They
    /// depend only on the sizes and leading dimensions (the operand pointers are passed per call;
    /// the preference tells the heuristic they are only [`IMMA_POINTER_ALIGN`]-byte aligned).
    plans: HashMap<[usize; 6], LtPlan>,
}

// SAFETY: the raw handle and the descriptors are only used under the mutex, one call at a time.
unsafe impl Send for LtHandle {}
// SAFETY: as above.
unsafe impl Sync for LtHandle {}

impl Drop for LtInner {
    fn drop(&mut self) {
        // The plans go before the handle they were made for.
        self.plans.clear();
        // SAFETY: the handle was created by cublasLtCreate and is destroyed once.
        let _ = unsafe { lt::destroy_handle(self.handle) };
    }
}

/// The cuBLASLt objects of one GEMM geometry; destroyed on drop (also when building one fails).
struct LtPlan {
    desc: Option<ltsys::cublasLtMatmulDesc_t>,
    layouts: Vec<ltsys::cublasLtMatrixLayout_t>,
    pref: Option<ltsys::cublasLtMatmulPreference_t>,
    algo: Option<ltsys::cublasLtMatmulAlgo_t>,
}

impl Drop for LtPlan {
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

impl LtPlan {
    /// Descriptors for `D[rows x cols] = X^T · Y` (TN, int8 in, int32 out) and the heuristic's
    /// first algorithm; a cuBLASLt error (NOT_SUPPORTED when no algorithm fits) is returned.
    fn build(handle: ltsys::cublasLtHandle_t, g: &GemmGeometry) -> Result<LtPlan, CudaError> {
        let mut p = LtPlan { desc: None, layouts: Vec::new(), pref: None, algo: None };
        let desc =
            lt::create_matmul_desc(ltsys::cublasComputeType_t::CUBLAS_COMPUTE_32I, ltsys::cudaDataType::CUDA_R_32I)?;
        p.desc = Some(desc);
        // CUBLAS_OP_T on A: the TN format IMMA requires.
        let op_t: i32 = 1;
        // SAFETY: the attribute buffer is a live i32 of the size passed.
        unsafe {
            lt::set_matmul_desc_attribute(
                desc,
                ltsys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                (&op_t as *const i32).cast(),
                std::mem::size_of::<i32>(),
            )?;
        }
        let (rows, cols, inner) = (g.rows as u64, g.cols as u64, g.inner as u64);
        for (ty, r, c, ld) in [
            (ltsys::cudaDataType::CUDA_R_8I, inner, rows, g.ldx),
            (ltsys::cudaDataType::CUDA_R_8I, inner, cols, g.ldy),
            (ltsys::cudaDataType::CUDA_R_32I, rows, cols, g.ldd),
        ] {
            p.layouts.push(lt::create_matrix_layout(ty, r, c, ld as i64)?);
        }
        let pref = lt::create_matmul_pref()?;
        p.pref = Some(pref);
        let ws_bytes = LT_WORKSPACE as u64;
        let align = IMMA_POINTER_ALIGN as u32;
        use ltsys::cublasLtMatmulPreferenceAttributes_t as A;
        // SAFETY: each attribute buffer is a live value of the size passed (u64 workspace bytes,
        // u32 alignments, as cuBLASLt documents them).
        unsafe {
            lt::set_matmul_pref_attribute(
                pref,
                A::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&ws_bytes as *const u64).cast(),
                std::mem::size_of::<u64>(),
            )?;
            for attr in [
                A::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                A::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                A::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
                A::CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES,
            ] {
                lt::set_matmul_pref_attribute(pref, attr, (&align as *const u32).cast(), std::mem::size_of::<u32>())?;
            }
        }
        let (a, b, c) = (p.layouts[0], p.layouts[1], p.layouts[2]);
        // SAFETY: the handle and every descriptor are live.
        let heuristic = unsafe { lt::get_matmul_algo_heuristic(handle, desc, a, b, c, c, pref)? };
        p.algo = Some(heuristic.algo);
        Ok(p)
    }
}

impl LtHandle {
    pub(crate) fn new(stream: &Arc<CudaStream>) -> Result<Self, CudaError> {
        let handle = lt::create_handle()?;
        let workspace = match stream.alloc_zeros::<u8>(LT_WORKSPACE) {
            Ok(w) => w,
            Err(e) => {
                // SAFETY: the handle was just created and is destroyed once.
                let _ = unsafe { lt::destroy_handle(handle) };
                return Err(e.into());
            }
        };
        Ok(LtHandle { inner: Mutex::new(LtInner { handle, workspace, plans: HashMap::new() }) })
    }

    /// Runs one int8 x int8 -> int32 GEMM of geometry `g` (TN, as IMMA requires) on `stream`, with
    /// X, Y and D at device addresses `x`, `y`, `d`. The caller has checked
    /// [`check_imma_conditions`](cryptgpu_ring::limbs::check_imma_conditions) on these addresses and
    /// that the buffers hold every element the geometry reaches.
    pub(crate) fn imma(
        &self,
        stream: &Arc<CudaStream>,
        g: &GemmGeometry,
        x: u64,
        y: u64,
        d: u64,
    ) -> Result<(), CudaError> {
        let mut guard = self.inner.lock().map_err(|_| CudaError::Blas("cuBLASLt handle poisoned".into()))?;
        let inner = &mut *guard;
        let key = g.shape_key();
        if !inner.plans.contains_key(&key) {
            let plan = LtPlan::build(inner.handle, g)?;
            inner.plans.insert(key, plan);
        }
        let plan = &inner.plans[&key];
        let (Some(desc), Some(algo)) = (plan.desc, plan.algo.as_ref()) else {
            return Err(CudaError::Blas("incomplete cuBLASLt plan".into()));
        };
        let (a, b, c) = (plan.layouts[0], plan.layouts[1], plan.layouts[2]);
        let (ws_ptr, _ws_guard) = inner.workspace.device_ptr_mut(stream);
        let (alpha, beta) = (1i32, 0i32);
        // SAFETY: descriptors are live (owned by the cache, under the mutex); x, y and d point to
        // device buffers covering the geometry (caller's contract), 16-byte aligned as the
        // preference promised the heuristic; the workspace holds LT_WORKSPACE bytes; the stream
        // is the one the buffers belong to.
        unsafe {
            lt::matmul(
                inner.handle,
                desc,
                (&alpha as *const i32).cast(),
                (&beta as *const i32).cast(),
                x as *const std::ffi::c_void,
                a,
                y as *const std::ffi::c_void,
                b,
                d as *const std::ffi::c_void,
                c,
                d as *mut std::ffi::c_void,
                c,
                algo,
                ws_ptr as *mut std::ffi::c_void,
                LT_WORKSPACE,
                stream.cu_stream() as ltsys::cudaStream_t,
            )?;
        }
        Ok(())
    }
}
