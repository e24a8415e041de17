//! Host-side work (cargo feature `host`): benchmarks now; supernet training,
//! search and evaluation as they land.

pub mod bench;
