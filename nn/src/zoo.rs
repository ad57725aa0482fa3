//! The model zoo, layer for layer as the CryptGPU paper benchmarks it (its `network.py`), in two
//! variants: `Pool::Avg` (the paper's, every max-pool replaced by average pooling) and `Pool::Max`
//! (the original architectures). Parameter names follow the PyTorch modules documented in the
//! README, so their `state_dict`s load directly.

use crate::error::{NnError, Result};
use crate::spec::{LayerSpec, ModelSpec};

/// Which pooling the model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pool {
    /// Average pooling everywhere (as benchmarked by CryptGPU).
    Avg,
    /// Max pooling where the original architecture has it.
    Max,
}

/// Dataset geometry a model is built for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    /// 1x28x28, 10 classes.
    Mnist,
    /// 3x32x32, 10 classes.
    Cifar10,
    /// 3x64x64, 200 classes.
    TinyImageNet,
    /// 3x224x224, 1000 classes.
    ImageNet,
}

impl Dataset {
    /// `[C, H, W]` and the number of classes.
    pub fn geometry(self) -> ([usize; 3], usize) {
        match self {
            Dataset::Mnist => ([1, 28, 28], 10),
            Dataset::Cifar10 => ([3, 32, 32], 10),
            Dataset::TinyImageNet => ([3, 64, 64], 200),
            Dataset::ImageNet => ([3, 224, 224], 1000),
        }
    }
}

fn conv(name: String, cin: usize, cout: usize, k: usize, s: usize, p: usize, bias: bool) -> LayerSpec {
    LayerSpec::Conv2d { name, cin, cout, kernel: (k, k), stride: (s, s), padding: (p, p), bias }
}

fn pool(kind: Pool, k: usize, s: usize, p: usize) -> LayerSpec {
    match kind {
        Pool::Avg => LayerSpec::AvgPool2d { kernel: (k, k), stride: (s, s), padding: (p, p) },
        Pool::Max => LayerSpec::MaxPool2d { kernel: (k, k), stride: (s, s), padding: (p, p) },
    }
}

fn linear(name: String, fin: usize, fout: usize) -> LayerSpec {
    LayerSpec::Linear { name, fin, fout }
}

/// `classifier` FC stack: `dims[0] -> dims[1] -> ...`, ReLU after every hidden layer when `relu`.
fn classifier(dims: &[usize], relu: bool, layers: &mut Vec<LayerSpec>) {
    let mut idx = 0;
    for (i, w) in dims.windows(2).enumerate() {
        layers.push(linear(format!("classifier.{idx}"), w[0], w[1]));
        idx += 1;
        if relu && i + 2 < dims.len() {
            layers.push(LayerSpec::Relu);
            idx += 1;
        }
    }
}

/// LeNet for MNIST: conv 5x5 1->20, ReLU, pool 2, conv 5x5 20->50, ReLU, pool 2, FC 800->500, ReLU, FC 500->10.
pub fn lenet(p: Pool) -> ModelSpec {
    let mut layers = vec![
        conv("features.0".into(), 1, 20, 5, 1, 0, true),
        LayerSpec::Relu,
        pool(p, 2, 2, 0),
        conv("features.3".into(), 20, 50, 5, 1, 0, true),
        LayerSpec::Relu,
        pool(p, 2, 2, 0),
        LayerSpec::Flatten,
    ];
    classifier(&[800, 500, 10], true, &mut layers);
    ModelSpec { name: "lenet".into(), input: [1, 28, 28], classes: 10, layers }
}

/// The Falcon-style AlexNet of the paper for CIFAR-10, Tiny ImageNet or ImageNet.
pub fn alexnet(d: Dataset, p: Pool) -> Result<ModelSpec> {
    let mut layers = vec![
        conv("features.0".into(), 3, 96, 11, 4, 9, true),
        LayerSpec::Relu,
        pool(p, 3, 2, 0),
        conv("features.3".into(), 96, 256, 5, 1, 1, true),
        LayerSpec::Relu,
        pool(p, 2, 1, 0),
        conv("features.6".into(), 256, 384, 3, 1, 1, true),
        LayerSpec::Relu,
        conv("features.8".into(), 384, 384, 3, 1, 1, true),
        LayerSpec::Relu,
        conv("features.10".into(), 384, 256, 3, 1, 1, true),
        LayerSpec::Relu,
    ];
    let dims: &[usize] = match d {
        Dataset::Cifar10 => &[256, 256, 256, 10],
        Dataset::TinyImageNet => {
            layers.push(pool(p, 2, 2, 0));
            &[1024, 1024, 1024, 200]
        }
        Dataset::ImageNet => {
            layers.push(pool(p, 4, 4, 0));
            &[9216, 4096, 4096, 1000]
        }
        Dataset::Mnist => {
            return Err(NnError::Unsupported("AlexNet is defined for CIFAR-10, Tiny ImageNet and ImageNet".into()))
        }
    };
    layers.push(LayerSpec::Flatten);
    classifier(dims, true, &mut layers);
    let (input, classes) = d.geometry();
    Ok(ModelSpec { name: "alexnet".into(), input, classes, layers })
}

/// VGG-16 (torchvision `vgg16().features`, pools as chosen) with the paper's dataset heads.
pub fn vgg16(d: Dataset, p: Pool) -> Result<ModelSpec> {
    const CFG: [usize; 18] = [64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0];
    let (input, classes) = d.geometry();
    let mut layers = Vec::new();
    let (mut idx, mut cin) = (0, input[0]);
    for c in CFG {
        if c == 0 {
            layers.push(pool(p, 2, 2, 0));
            idx += 1;
        } else {
            layers.push(conv(format!("features.{idx}"), cin, c, 3, 1, 1, true));
            layers.push(LayerSpec::Relu);
            idx += 2;
            cin = c;
        }
    }
    let (dims, relu): (&[usize], bool) = match d {
        Dataset::Cifar10 => (&[512, 256, 256, 10], true),
        Dataset::TinyImageNet => {
            layers.push(pool(p, 2, 2, 0));
            (&[512, 512, 512, 200], true)
        }
        Dataset::ImageNet => {
            layers.push(pool(p, 2, 2, 0));
            // As CryptGPU writes it: no ReLU between the ImageNet head's FC layers.
            (&[4608, 4096, 4096, 1000], false)
        }
        Dataset::Mnist => {
            return Err(NnError::Unsupported("VGG-16 is defined for CIFAR-10, Tiny ImageNet and ImageNet".into()))
        }
    };
    layers.push(LayerSpec::Flatten);
    classifier(dims, relu, &mut layers);
    Ok(ModelSpec { name: "vgg16".into(), input, classes, layers })
}

fn bn(name: String, channels: usize) -> LayerSpec {
    LayerSpec::BatchNorm2d { name, channels }
}

/// torchvision ResNet-18/34/50/101/152 for ImageNet (v1.5 bottlenecks); `Pool::Avg` replaces the
/// stem's max-pool by AvgPool2d(3, stride 2, padding 0) as the paper does.
pub fn resnet(depth: usize, p: Pool) -> Result<ModelSpec> {
    resnet_for(depth, Dataset::ImageNet, p)
}

/// A ResNet for a dataset: [`resnet`] for ImageNet; for CIFAR-10 and Tiny ImageNet the usual
/// small-image stem (the paper has no such model; these are for training with batch norm): `conv1`
/// is 3x3 with stride 1 and padding 1 and there is no stem pooling, the rest is torchvision's
/// (same `state_dict` names; `fc` has the dataset's classes).
pub fn resnet_for(depth: usize, d: Dataset, p: Pool) -> Result<ModelSpec> {
    let (bottleneck, blocks): (bool, [usize; 4]) = match depth {
        18 => (false, [2, 2, 2, 2]),
        34 => (false, [3, 4, 6, 3]),
        50 => (true, [3, 4, 6, 3]),
        101 => (true, [3, 4, 23, 3]),
        152 => (true, [3, 8, 36, 3]),
        _ => return Err(NnError::Unsupported(format!("ResNet-{depth} (use 18, 34, 50, 101 or 152)"))),
    };
    let expansion = if bottleneck { 4 } else { 1 };
    let (input, classes) = d.geometry();
    let mut layers = match d {
        Dataset::ImageNet => {
            vec![
                conv("conv1".into(), 3, 64, 7, 2, 3, false),
                bn("bn1".into(), 64),
                LayerSpec::Relu,
                match p {
                    Pool::Max => pool(Pool::Max, 3, 2, 1),
                    Pool::Avg => pool(Pool::Avg, 3, 2, 0),
                },
            ]
        }
        Dataset::Cifar10 | Dataset::TinyImageNet => {
            vec![conv("conv1".into(), 3, 64, 3, 1, 1, false), bn("bn1".into(), 64), LayerSpec::Relu]
        }
        Dataset::Mnist => {
            return Err(NnError::Unsupported("the ResNets are defined for CIFAR-10, Tiny ImageNet and ImageNet".into()))
        }
    };
    let mut cin = 64;
    for (stage, &n) in blocks.iter().enumerate() {
        let width = 64 << stage;
        for b in 0..n {
            let stride = if stage > 0 && b == 0 { 2 } else { 1 };
            let name = format!("layer{}.{b}", stage + 1);
            let cout = width * expansion;
            let body = if bottleneck {
                vec![
                    conv(format!("{name}.conv1"), cin, width, 1, 1, 0, false),
                    bn(format!("{name}.bn1"), width),
                    LayerSpec::Relu,
                    conv(format!("{name}.conv2"), width, width, 3, stride, 1, false),
                    bn(format!("{name}.bn2"), width),
                    LayerSpec::Relu,
                    conv(format!("{name}.conv3"), width, cout, 1, 1, 0, false),
                    bn(format!("{name}.bn3"), cout),
                ]
            } else {
                vec![
                    conv(format!("{name}.conv1"), cin, width, 3, stride, 1, false),
                    bn(format!("{name}.bn1"), width),
                    LayerSpec::Relu,
                    conv(format!("{name}.conv2"), width, width, 3, 1, 1, false),
                    bn(format!("{name}.bn2"), width),
                ]
            };
            let shortcut = if stride != 1 || cin != cout {
                vec![
                    conv(format!("{name}.downsample.0"), cin, cout, 1, stride, 0, false),
                    bn(format!("{name}.downsample.1"), cout),
                ]
            } else {
                Vec::new()
            };
            layers.push(LayerSpec::Residual { body, shortcut });
            layers.push(LayerSpec::Relu);
            cin = cout;
        }
    }
    layers.push(LayerSpec::GlobalAvgPool);
    layers.push(linear("fc".into(), 512 * expansion, classes));
    Ok(ModelSpec { name: format!("resnet{depth}"), input, classes, layers })
}

/// A zoo model by name (`lenet`, `alexnet`, `vgg16`, `resnet18|34|50|101|152`), optionally with
/// `-maxpool` for the original pooling, e.g. `alexnet-maxpool`.
pub fn by_name(name: &str, d: Dataset) -> Result<ModelSpec> {
    let (base, p) = match name.strip_suffix("-maxpool") {
        Some(b) => (b, Pool::Max),
        None => (name, Pool::Avg),
    };
    let spec = match base {
        "lenet" if d == Dataset::Mnist => lenet(p),
        "lenet" => return Err(NnError::Unsupported("LeNet is defined for MNIST".into())),
        "alexnet" => alexnet(d, p)?,
        "vgg16" => vgg16(d, p)?,
        r if r.starts_with("resnet") => {
            let depth =
                r["resnet".len()..].parse().map_err(|_| NnError::Unsupported(format!("unknown model {name}")))?;
            resnet_for(depth, d, p)?
        }
        _ => {
            return Err(NnError::Unsupported(format!(
                "unknown model {name:?} (lenet, alexnet, vgg16, resnet18/34/50/101/152, with optional -maxpool)"
            )))
        }
    };
    let mut spec = spec;
    if p == Pool::Max {
        spec.name.push_str("-maxpool");
    }
    Ok(spec)
}
