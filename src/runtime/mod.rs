//! The device runtime: capture → preprocess → infer → decode → track → render
//! → sinks, inside a frame budget.

pub mod budget;
pub mod decode;
pub mod engine;
pub mod frame;
pub mod grouped_conv;
pub mod key_worker;
pub mod model;
pub mod pose;
pub mod preprocess;
pub mod render;
pub mod run;
pub mod schedule;
pub mod sink;
pub mod source;
pub mod track;
pub mod uniform_constants;

pub use engine::{Convolutions, Engine, EngineOptions, TractEngine};
pub use frame::Frame;
pub use model::PoseModel;
pub use pose::Pose;
pub use run::{run_frames, Estimator, RunOptions, RunSummary};
