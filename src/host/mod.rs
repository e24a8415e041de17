//! Host-side work (cargo feature `host`): evaluation, labelling, benchmarks,
//! plots, and the weight-sharing supernet on burn with its training.

pub mod bench;
pub mod coco;
pub mod dataset;
pub mod detect;
pub mod eval;
pub mod label;
pub mod latency_bench;
pub mod openpose;
pub mod paste;
pub mod photometric;
pub mod plot;
pub mod sandwich;
pub mod supernet;
pub mod temporal;
pub mod temporal_bench;
pub mod temporal_search;
pub mod train;
pub mod train_bench;
pub mod view;
