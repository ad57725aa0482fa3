//! The model a command names (`--model`): a zoo model, or an ONNX file exported from PyTorch.

use std::path::Path;

use anyhow::{bail, Context, Result};
use cryptgpu_nn::data::Images;
use cryptgpu_nn::graph::Graph;
use cryptgpu_nn::onnx::{load_onnx, Head, Lowering};
use cryptgpu_nn::weights::{load_graph_safetensors_as, Match, Params};
use cryptgpu_nn::zoo::{by_name, Dataset};

/// A model resolved from the command line.
#[derive(Debug, Clone)]
pub struct NamedModel {
    /// The zoo name, or the ONNX file's stem.
    pub name: String,
    /// What the parties compute.
    pub graph: Graph,
    /// The weights in the ONNX file (`None` for a zoo model).
    pub file_params: Option<Params>,
    /// The file's trailing softmax, left out of the graph (the logits are its input).
    pub head: Option<Head>,
}

/// True when `--model` names an ONNX file rather than a zoo model.
pub fn is_onnx(arg: &str) -> bool {
    arg.ends_with(".onnx")
}

impl NamedModel {
    /// The zoo model `arg` for `dataset`, or the ONNX file `arg` lowered for `lowering`.
    pub fn resolve(arg: &str, dataset: Dataset, lowering: Lowering) -> Result<NamedModel> {
        if !is_onnx(arg) {
            let spec = by_name(arg, dataset)?;
            return Ok(NamedModel { name: spec.name.clone(), graph: spec.to_graph(), file_params: None, head: None });
        }
        let path = Path::new(arg);
        let imported = load_onnx(path)
            .and_then(|g| g.to_model(lowering))
            .with_context(|| format!("importing {}", path.display()))?;
        let name = path.file_stem().map_or_else(|| arg.to_string(), |s| s.to_string_lossy().into_owned());
        let mut graph = imported.graph;
        graph.name = name.clone();
        Ok(NamedModel { name, graph, file_params: Some(imported.params), head: imported.head })
    }

    /// The architecture (ops, value and parameter names, shapes; no weights), for job tags: parties
    /// that would compute different models refuse each other.
    pub fn architecture(&self) -> String {
        format!("{:?}", self.graph)
    }

    /// The model owner's weights: `weights` when given (safetensors, paired with the graph's
    /// parameters as `how` says and checked), else the ONNX file's.
    pub fn weights(&self, weights: Option<&Path>, how: Match) -> Result<Params> {
        match (weights, &self.file_params) {
            (Some(path), _) => Ok(load_graph_safetensors_as(path, &self.graph, how)?),
            (None, Some(p)) => Ok(p.clone()),
            (None, None) => bail!("--weights FILE is needed by the model owner of {}", self.name),
        }
    }

    /// Checks that `images` have the model's input shape.
    pub fn check_images(&self, images: &Images) -> Result<()> {
        if images.shape[..] != self.graph.input_shape[..] {
            bail!("{} expects {:?} inputs, the data has {:?} images", self.name, self.graph.input_shape, images.shape);
        }
        Ok(())
    }

    /// A note on the file's trailing softmax, if it has one.
    pub fn head_note(&self) -> Option<String> {
        self.head.map(|h| {
            format!(
                "note: {} ends in {h:?}; the outputs are its input (the logits), which have the same argmax",
                self.name
            )
        })
    }
}
