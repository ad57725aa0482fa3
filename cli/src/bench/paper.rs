//! The paper's numbers, for the records and the README (measured on its hardware, not ours).
//!
//! Sources (see `../shared/reference/cryptgpu-protocols.md` §11 and `anchors.md` §1.2): the
//! abstract of CryptGPU (IEEE S&P 2021) for Fig. 1 and 2, and the CryptGPU columns that Piranha's
//! artifact copies from the paper (LAN, three AWS V100 machines) for training and inference.

use serde_json::{json, Value};

/// Hardware of the paper's figures.
const HARDWARE: &str = "CryptGPU paper: three machines with one NVIDIA V100 each, LAN (about 10 Gbps)";

/// Fig. 1 (convolution).
pub fn conv() -> Value {
    let claim =
        "paper (abstract): private convolution on the GPU is over 150x faster than the same protocol on the CPU; \
                 per-point times not recovered";
    json!({ "hardware": HARDWARE, "fig1a": claim, "fig1b": claim, "fig1c": claim })
}

/// Fig. 2 (ReLU).
pub fn relu() -> Value {
    json!({
        "hardware": HARDWARE,
        "fig2": "paper (abstract): private ReLU on the GPU is around 10x faster than on the CPU; per-point times not recovered",
    })
}

/// One training iteration (paper batch), seconds and GB sent, where known.
pub fn train() -> Value {
    json!({
        "hardware": HARDWARE,
        "source": "CryptGPU column of Piranha's Table 4 (copied from the CryptGPU paper); Tiny ImageNet figures are \
                   recollections not verified against the paper; the per-layer split of Table V was not recovered",
        "iteration": {
            "lenet-mnist": { "batch": 128, "seconds": 2.21, "gb": 1.14 },
            "alexnet-cifar10": { "batch": 128, "seconds": 2.91, "gb": 1.37 },
            "vgg16-cifar10": { "batch": 32, "seconds": 12.14, "gb": 7.55 },
            "alexnet-tiny": { "batch": 128, "seconds": 11.3, "unverified": true },
            "vgg16-tiny": { "batch": 8, "seconds": 13.9, "unverified": true },
        },
        "falcon_cpu_iteration": {
            "lenet-mnist": { "batch": 128, "seconds": 14.9, "gb": 0.346 },
            "alexnet-cifar10": { "batch": 128, "seconds": 62.37, "gb": 0.621 },
            "vgg16-cifar10": { "batch": 32, "seconds": 360.83, "gb": 1.78 },
        },
    })
}

/// Private inference at batch 1, seconds and MB sent, where known.
pub fn infer() -> Value {
    json!({
        "hardware": HARDWARE,
        "source": "CryptGPU column of Piranha's Table 4 (batch 1); ResNet-50 is a recollection not verified against \
                   the paper",
        "batch1": {
            "lenet-mnist": { "seconds": 0.380, "mb": 3.0 },
            "alexnet-cifar10": { "seconds": 0.910, "mb": 2.43 },
            "vgg16-cifar10": { "seconds": 2.14, "mb": 56.2 },
            "resnet50-imagenet": { "seconds": 9.31, "mb": 3080.0, "unverified": true },
        },
    })
}
