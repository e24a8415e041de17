//! Boards: profiles (`boards/*.toml`), latency look-up tables measured on the
//! board (`boards/*.lut.json`) or estimated before that, the profiler that measures them and the
//! latency prediction the search is constrained by.

pub mod estimate;
pub mod lut;
pub mod profile;
pub mod profiler;

pub use lut::{LatencyTable, Prediction};
pub use profile::BoardProfile;
