//! TEMPORARY stub (replaced by the lowering from wt-a2 at merge).
use crate::error::{NnError, Result};
use crate::graph::Graph;
use crate::weights::Params;

use super::OnnxGraph;

/// What the lowered model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lowering {
    /// Inference.
    Inference,
    /// Training.
    Training,
}

/// A trailing operator kept out of the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Head {
    /// Softmax.
    Softmax,
    /// LogSoftmax.
    LogSoftmax,
}

/// An imported model.
#[derive(Debug, Clone)]
pub struct OnnxModel {
    /// Graph.
    pub graph: Graph,
    /// Params.
    pub params: Params,
    /// Head.
    pub head: Option<Head>,
}

impl OnnxGraph {
    /// Stub.
    pub fn to_model(&self, _lowering: Lowering) -> Result<OnnxModel> {
        Err(NnError::Unsupported("stub".into()))
    }
}

