//! Flags of `train` and `infer` on how inputs are prepared: the images' normalisation
//! (`--normalize`, `--no-normalize`) and how `--weights` pairs with the model
//! (`--weights-by-order`).

use anyhow::Result;
use clap::Args as ClapArgs;
use cryptgpu_nn::data::{Images, Normalize};
use cryptgpu_nn::weights::Match;

/// How the data owner normalises the images before sharing them. The choice is a public job
/// parameter: the model owner's weights expect one preprocessing, so every party must be given
/// the same.
#[derive(ClapArgs, Debug, Clone)]
pub struct NormalizeArgs {
    /// Normalise the images as (pixel/255 - MEAN) / STD: `MEAN,STD` for every channel, or
    /// `M1,..,MC,S1,..,SC` per channel. Default: the dataset's usual statistics (MNIST
    /// 0.1307,0.3081; CIFAR-10 0.4914,0.4822,0.4465,0.2470,0.2435,0.2616).
    #[arg(long, value_name = "MEAN,STD", allow_hyphen_values = true, conflicts_with = "no_normalize")]
    normalize: Option<Normalize>,
    /// Do not normalise: the images are pixel/255 in [0, 1] (a model trained on `ToTensor()` alone).
    #[arg(long)]
    no_normalize: bool,
}

impl NormalizeArgs {
    /// The normalisation asked for.
    pub fn how(&self) -> Normalize {
        match (&self.normalize, self.no_normalize) {
            (Some(n), _) => n.clone(),
            (None, true) => Normalize::Pixels,
            (None, false) => Normalize::Dataset,
        }
    }

    /// `images` normalised as asked.
    pub fn apply(&self, images: Images) -> Result<Images> {
        Ok(images.normalized(&self.how())?)
    }
}

/// How the model owner pairs the tensors of `--weights` with the model's parameters.
#[derive(ClapArgs, Debug, Clone)]
pub struct WeightsArgs {
    /// Pair the tensors of --weights with the model's parameters by order and shape, whatever
    /// their names (a state_dict with its own names): modules in natural order of their names
    /// (`conv1` < `conv2` < `fc1`, `layers.2` < `layers.10`), weight, bias, running_mean,
    /// running_var within each. Default: by name.
    #[arg(long)]
    weights_by_order: bool,
}

impl WeightsArgs {
    /// How to pair the tensors with the parameters.
    pub fn how(&self) -> Match {
        if self.weights_by_order {
            Match::ByOrder
        } else {
            Match::ByName
        }
    }
}
