//! The CUDA C kernel sources, embedded in the binary and compiled at run time by NVRTC.

/// Prelude prepended to every source: typedefs, operation codes, shared structs.
pub const COMMON: &str = include_str!("kernels/common.cuh");

/// One `.cu` file and the kernels it defines.
#[derive(Debug, Clone, Copy)]
pub struct KernelSource {
    /// File name without extension.
    pub name: &'static str,
    /// The CUDA C source (without the prelude).
    pub code: &'static str,
    /// The `extern "C" __global__` functions it defines.
    pub functions: &'static [&'static str],
}

impl KernelSource {
    /// The full translation unit: prelude, then the file.
    pub fn full_source(&self) -> String {
        format!("{COMMON}\n#line 1 \"{}.cu\"\n{}", self.name, self.code)
    }
}

/// Every kernel source of the backend.
pub const SOURCES: &[KernelSource] = &[
    KernelSource {
        name: "elementwise",
        code: include_str!("kernels/elementwise.cu"),
        functions: &["ew_binary", "ew_unary", "ew_scalar", "ew_shift", "ew_fill"],
    },
    KernelSource {
        name: "bits",
        code: include_str!("kernels/bits.cu"),
        functions: &["bit_extract", "pack_bits", "unpack_bits"],
    },
    KernelSource {
        name: "layout",
        code: include_str!("kernels/layout.cu"),
        functions: &["gather_strided", "copy_rows", "sum_middle"],
    },
    KernelSource { name: "conv", code: include_str!("kernels/conv.cu"), functions: &["im2col", "col2im"] },
    KernelSource { name: "aes", code: include_str!("kernels/aes.cu"), functions: &["aes_ctr_fill"] },
    KernelSource { name: "gemm", code: include_str!("kernels/gemm.cu"), functions: &["ring_gemm_simt"] },
    KernelSource {
        name: "limbs",
        code: include_str!("kernels/limbs.cu"),
        functions: &["split_u16_f64", "combine_f64", "split_s8", "combine_i32"],
    },
];
