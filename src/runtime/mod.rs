//! The device runtime: capture → preprocess → infer → decode → track → render.
//! So far: the inference engine.

pub mod engine;

pub use engine::{Engine, TractEngine};
