//! vipnas: real-time video pose estimation on edge boards.
//!
//! `arch` holds the search spaces, subnets and their graphs; `onnx` writes
//! them as ONNX; `bundle` is the model-bundle format the runtime loads;
//! `search` (host) picks the subnet for a board's latency budget; `heatmap`
//! is the Gaussian keypoint code shared by training targets and the temporal
//! nets' prior.

pub mod arch;
pub mod board;
pub mod bundle;
pub mod coco;
pub mod fuzzing;
pub mod heatmap;
#[cfg(feature = "host")]
pub mod host;
pub mod install;
pub mod onnx;
pub mod runtime;
#[cfg(feature = "host")]
pub mod search;
pub mod shutdown;
pub mod timestamp;
