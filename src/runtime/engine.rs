//! Inference engines behind one trait, so another backend can be added without
//! touching the pipeline. `TractEngine` runs ONNX models with tract: the input
//! shape is fixed at load time and the graph optimised for it.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// Runs one input tensor through a model and returns its first output.
pub trait Engine {
    /// The fixed input shape (e.g. `[1, 3, 256, 192]`).
    fn input_shape(&self) -> &[usize];
    /// Runs on row-major `input` (`input_shape` elements); returns the output
    /// shape and values.
    fn run(&self, input: &[f32]) -> Result<(Vec<usize>, Vec<f32>)>;
}

/// A tract plan for a float32 model with one fixed-shape input.
pub struct TractEngine {
    plan: std::sync::Arc<TypedRunnableModel>,
    input_shape: Vec<usize>,
}

impl TractEngine {
    /// Loads an in-memory ONNX model (e.g. straight from the writer).
    pub fn from_proto(proto: &pb::ModelProto, input_shape: &[usize]) -> Result<TractEngine> {
        let model = tract_onnx::onnx()
            .model_for_proto_model(proto)
            .context("tract could not load the ONNX model")?;
        Self::from_inference_model(model, input_shape)
    }

    /// Loads an ONNX file; errors name the file.
    pub fn from_path(path: &Path, input_shape: &[usize]) -> Result<TractEngine> {
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .with_context(|| format!("{}: not a loadable ONNX model", path.display()))?;
        Self::from_inference_model(model, input_shape).with_context(|| path.display().to_string())
    }

    fn from_inference_model(model: InferenceModel, input_shape: &[usize]) -> Result<TractEngine> {
        let plan = model
            .with_input_fact(0, f32::fact(input_shape).into())?
            .into_optimized()
            .context("tract could not optimise the model for this input shape")?
            .into_runnable()?;
        Ok(TractEngine {
            plan,
            input_shape: input_shape.to_vec(),
        })
    }
}

impl Engine for TractEngine {
    fn input_shape(&self) -> &[usize] {
        &self.input_shape
    }

    fn run(&self, input: &[f32]) -> Result<(Vec<usize>, Vec<f32>)> {
        let expected: usize = self.input_shape.iter().product();
        ensure!(
            input.len() == expected,
            "input has {} values, the model takes {expected}",
            input.len()
        );
        let tensor =
            tract_ndarray::ArrayD::from_shape_vec(self.input_shape.clone(), input.to_vec())?;
        let outputs = self.plan.run(tvec!(Tensor::from(tensor).into()))?;
        let view = outputs[0].to_plain_array_view::<f32>()?;
        Ok((view.shape().to_vec(), view.iter().copied().collect()))
    }
}
