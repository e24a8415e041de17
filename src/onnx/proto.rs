//! A thin builder over tract-onnx's own protobuf types (prost messages), so
//! the writer needs no second protobuf stack on the device.

use prost::Message;
use tract_onnx::pb;
use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{dimension, Dimension};
use tract_onnx::pb::type_proto;

/// The opset we write: 14 (HardSwish is native from 14; ReduceMean still takes
/// `axes` as an attribute until 18).
pub const OPSET: i64 = 14;
/// IR version matching opset 14.
pub const IR_VERSION: i64 = 7;

pub fn attr_int(name: &str, v: i64) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: AttributeType::Int as i32, i: v, ..Default::default() }
}

pub fn attr_ints(name: &str, v: &[i64]) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: AttributeType::Ints as i32, ints: v.to_vec(), ..Default::default() }
}

pub fn attr_float(name: &str, v: f32) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: AttributeType::Float as i32, f: v, ..Default::default() }
}

pub fn attr_string(name: &str, v: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: AttributeType::String as i32,
        s: v.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A float32 tensor value-info with fixed dims.
pub fn value_info(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
    let shape = pb::TensorShapeProto {
        dim: dims
            .iter()
            .map(|&d| Dimension { value: Some(dimension::Value::DimValue(d)), ..Default::default() })
            .collect(),
    };
    pb::ValueInfoProto {
        name: name.into(),
        r#type: Some(pb::TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: DataType::Float as i32,
                shape: Some(shape),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Accumulates nodes and initializers of one graph, naming values uniquely.
#[derive(Default)]
pub struct GraphBuilder {
    nodes: Vec<pb::NodeProto>,
    initializers: Vec<pb::TensorProto>,
}

impl GraphBuilder {
    /// A float32 constant (stored as raw little-endian bytes).
    pub fn constant_f32(&mut self, name: &str, dims: &[usize], data: &[f32]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(name, dims, DataType::Float, raw)
    }

    /// An int64 constant (shapes, axes).
    pub fn constant_i64(&mut self, name: &str, data: &[i64]) -> String {
        let raw = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.push_initializer(name, &[data.len()], DataType::Int64, raw)
    }

    fn push_initializer(&mut self, name: &str, dims: &[usize], dt: DataType, raw_data: Vec<u8>) -> String {
        self.initializers.push(pb::TensorProto {
            name: name.into(),
            dims: dims.iter().map(|&d| d as i64).collect(),
            data_type: dt as i32,
            raw_data,
            ..Default::default()
        });
        name.into()
    }

    /// Appends a node whose single output is named after the node.
    pub fn node(&mut self, name: &str, op_type: &str, inputs: &[&str], attribute: Vec<pb::AttributeProto>) -> String {
        self.nodes.push(pb::NodeProto {
            name: name.into(),
            op_type: op_type.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![name.into()],
            attribute,
            ..Default::default()
        });
        name.into()
    }

    /// The finished model: float inputs (the image first) and one float output.
    pub fn finish(
        self,
        name: &str,
        inputs: Vec<pb::ValueInfoProto>,
        output: pb::ValueInfoProto,
        doc: &str,
    ) -> pb::ModelProto {
        pb::ModelProto {
            ir_version: IR_VERSION,
            opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: OPSET }],
            producer_name: "vipnas".into(),
            producer_version: env!("CARGO_PKG_VERSION").into(),
            doc_string: doc.into(),
            graph: Some(pb::GraphProto {
                name: name.into(),
                node: self.nodes,
                initializer: self.initializers,
                input: inputs,
                output: vec![output],
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// Serialises a model to the ONNX protobuf wire format.
pub fn to_bytes(model: &pb::ModelProto) -> Vec<u8> {
    model.encode_to_vec()
}
