//! Host-side work (cargo feature `host`): benchmarks and plots now; supernet
//! training, search and evaluation as they land.

pub mod bench;
pub mod coco;
pub mod eval;
pub mod label;
pub mod latency_bench;
pub mod openpose;
pub mod plot;
