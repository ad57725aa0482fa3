//! Helpers of the ONNX tests: the shared PyTorch exports, and graphs built by hand.

use std::path::{Path, PathBuf};

use cryptgpu_nn::onnx::proto::{
    AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto,
    TypeProto, TypeProtoTensor, ValueInfoProto, ATTR_FLOAT, ATTR_INT, ATTR_INTS, DATA_TYPE_FLOAT,
};
use cryptgpu_nn::plain::PlainTensor;

/// The four exports of ../shared/data/onnx.
pub const MODELS: [&str; 4] = ["lenet_maxpool", "bn_cnn", "tiny_resnet", "mlp"];

/// The shared ONNX fixtures' folder; `None` (said loudly) when it is missing, a failure then
/// if CRYPTGPU_REQUIRE_DATA=1.
pub fn onnx_dir() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/onnx");
    if p.is_dir() {
        return Some(p);
    }
    if std::env::var("CRYPTGPU_REQUIRE_DATA").as_deref() == Ok("1") {
        panic!("CRYPTGPU_REQUIRE_DATA=1 but {} is missing", p.display());
    }
    eprintln!("SKIPPED: {} is missing (set CRYPTGPU_REQUIRE_DATA=1 to fail)", p.display());
    None
}

/// The batch fed to export `name` and PyTorch's logits for it (`NAME.io.safetensors`, f32).
pub fn io(dir: &Path, name: &str) -> (PlainTensor, PlainTensor) {
    let bytes = std::fs::read(dir.join(format!("{name}.io.safetensors"))).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let read = |t: &str| {
        let v = st.tensor(t).unwrap();
        let data = v.data().chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect();
        PlainTensor::new(v.shape(), data).unwrap()
    };
    (read("input"), read("logits"))
}

/// An INT attribute.
pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: ATTR_INT, i: v, ..Default::default() }
}

/// An INTS attribute.
pub fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: ATTR_INTS, ints: v.to_vec(), ..Default::default() }
}

/// A FLOAT attribute.
pub fn float_attr(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: name.into(), r#type: ATTR_FLOAT, f: v, ..Default::default() }
}

/// A node whose output value is named as the node.
pub fn node(name: &str, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        name: name.into(),
        op_type: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![name.into()],
        attribute: attrs,
        ..Default::default()
    }
}

/// A FLOAT value of the given shape (`None`: the dynamic batch).
pub fn value(name: &str, dims: &[Option<i64>]) -> ValueInfoProto {
    let dim =
        dims.iter().map(|d| Dimension { dim_value: *d, dim_param: d.is_none().then(|| "batch".into()) }).collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeProtoTensor { elem_type: DATA_TYPE_FLOAT, shape: Some(TensorShapeProto { dim }) }),
        }),
    }
}

/// A FLOAT initializer.
pub fn tensor(name: &str, dims: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DATA_TYPE_FLOAT,
        float_data: data,
        ..Default::default()
    }
}

/// An opset-13 model of one graph.
pub fn model(
    nodes: Vec<NodeProto>,
    initializer: Vec<TensorProto>,
    input: ValueInfoProto,
    output: ValueInfoProto,
) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: 13 }],
        graph: Some(GraphProto {
            node: nodes,
            initializer,
            input: vec![input],
            output: vec![output],
            ..Default::default()
        }),
        ..Default::default()
    }
}
