//! ONNX: writing our networks (`writer`) on tract-onnx's protobuf types
//! (`proto`), so that export on the host and per-block profiling on the board
//! share one code path.

pub mod proto;
pub mod writer;

pub use proto::to_bytes;
pub use writer::{write_network, WriteOptions, NORM_EPS};
