//! Inference engines behind one trait, so another backend can be added without
//! touching the pipeline. `TractEngine` runs ONNX models with tract: the input
//! shape is fixed at load time and the graph decluttered and optimised for it,
//! with an optional multithreaded executor. Grouped and depthwise
//! convolutions run our own op ([`super::grouped_conv`]) unless the options
//! ask for tract's.

use anyhow::{bail, ensure, Context, Result};
use std::path::Path;
use tract_onnx::pb;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::runtime::RunOptions;

use super::grouped_conv;
use crate::bundle::{InputSpec, InputType};

/// The model's input tensor, allocated once (preprocessing fills it, the
/// engine reads it).
#[derive(Clone, Debug, PartialEq)]
pub enum InputTensor {
    F32(Vec<f32>),
    I32(Vec<i32>),
}

impl InputTensor {
    pub fn for_spec(spec: &InputSpec) -> InputTensor {
        let n = 3 * spec.height as usize * spec.width as usize;
        match spec.dtype {
            InputType::F32 => InputTensor::F32(vec![0.0; n]),
            InputType::I32 => InputTensor::I32(vec![0; n]),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            InputTensor::F32(v) => v.len(),
            InputTensor::I32(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs a model's input tensors through it into a preallocated output.
pub trait Engine {
    /// The fixed input shapes in the model's order: the image (e.g.
    /// `[1, 3, 256, 192]`), then, for temporal nets, the prior heatmaps.
    fn input_shapes(&self) -> &[Vec<usize>];
    /// The output shape for those inputs.
    fn output_shape(&self) -> &[usize];
    /// Runs on `inputs` (one per input shape) and copies the first output
    /// into `output` (`output_shape` elements).
    fn run(&mut self, inputs: &[&InputTensor], output: &mut [f32]) -> Result<()>;

    /// The image input's shape.
    fn input_shape(&self) -> &[usize] {
        &self.input_shapes()[0]
    }
}

/// A tract plan for a model with a fixed-shape float32 or int32 image input
/// (and, for temporal nets, float inputs of the fixed shapes they declare).
pub struct TractEngine {
    /// Spawned once and reused: a fresh state per run costs allocations.
    state: TypedSimpleState,
    input_shapes: Vec<Vec<usize>>,
    /// Every output's shape; the first is the pose output.
    output_shapes: Vec<Vec<usize>>,
}

/// How an engine is built: the input's element type, threads, and whose
/// grouped convolutions run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    /// The image input's element type.
    pub datum: InputType,
    pub threads: usize,
    pub convolutions: Convolutions,
}

impl Default for EngineOptions {
    fn default() -> EngineOptions {
        EngineOptions { datum: InputType::F32, threads: 1, convolutions: Convolutions::Fast }
    }
}

impl EngineOptions {
    pub fn new(datum: InputType, threads: usize) -> EngineOptions {
        EngineOptions { datum, threads, ..EngineOptions::default() }
    }
}

/// Whose ops run grouped and depthwise convolutions and grouped transposed
/// convolutions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convolutions {
    /// Ours ([`super::grouped_conv`]) wherever it covers them; tract's elsewhere.
    Fast,
    /// tract's own everywhere (the reference in tests and benchmarks).
    Tract,
}

impl TractEngine {
    /// Loads an in-memory ONNX model (e.g. straight from the writer).
    pub fn from_proto(proto: &pb::ModelProto, input_shape: &[usize]) -> Result<TractEngine> {
        Self::from_proto_with(proto, input_shape, &EngineOptions::default())
    }

    pub fn from_proto_with(
        proto: &pb::ModelProto,
        input_shape: &[usize],
        options: &EngineOptions,
    ) -> Result<TractEngine> {
        let model = tract_onnx::onnx().model_for_proto_model(proto).context("tract could not load the ONNX model")?;
        Self::build(model, input_shape, options)
    }

    /// Loads an ONNX file; errors name the file.
    pub fn from_path(path: &Path, input_shape: &[usize]) -> Result<TractEngine> {
        Self::from_path_with(path, input_shape, &EngineOptions::default())
    }

    pub fn from_path_with(path: &Path, input_shape: &[usize], options: &EngineOptions) -> Result<TractEngine> {
        Self::from_path_selecting(path, input_shape, options, &[])
    }

    /// [`Self::from_path_with`] with the model's outputs replaced by the named
    /// tensors (ONNX tensor names, internal ones included), in that order,
    /// unless `outputs` is empty: how a teacher's inner heatmaps are read out
    /// of the same graph.
    pub fn from_path_selecting(
        path: &Path,
        input_shape: &[usize],
        options: &EngineOptions,
        outputs: &[&str],
    ) -> Result<TractEngine> {
        if !path.is_file() {
            bail!("{}: no such model file", path.display());
        }
        let mut model = tract_onnx::onnx()
            .model_for_path(path)
            .with_context(|| format!("{}: not a loadable ONNX model", path.display()))?;
        if !outputs.is_empty() {
            model
                .select_outputs_by_name(outputs)
                .with_context(|| format!("{}: outputs {outputs:?}", path.display()))?;
        }
        Self::build(model, input_shape, options).with_context(|| path.display().to_string())
    }

    fn build(model: InferenceModel, input_shape: &[usize], options: &EngineOptions) -> Result<TractEngine> {
        let cores = cores();
        ensure!(options.threads >= 1, "inference threads must be at least 1");
        ensure!(
            options.threads <= cores,
            "{} inference threads asked for, but this machine has {cores} core(s): more threads than cores only slow inference down",
            options.threads
        );
        let fact = match options.datum {
            InputType::F32 => f32::fact(input_shape),
            InputType::I32 => i32::fact(input_shape),
        };
        let mut typed = model
            .with_input_fact(0, fact.into())?
            .into_typed()
            .context("tract could not type the model for this input shape")?;
        if options.convolutions == Convolutions::Tract {
            typed.declutter().context("tract could not declutter the model")?;
        } else {
            // tract's declutter turns 1×1 convolutions into matrix products,
            // so ours go in first. Where tract has a channel-last depthwise
            // kernel (aarch64), its declutter moves the whole graph to
            // channel-last for it, and our channels-first op would then cover
            // nothing. So the first declutter keeps the layout, our grouped
            // ops go in, and the full declutter that follows cannot move axes
            // through them.
            super::uniform_constants::scalarise(&mut typed).context("scalarising uniform constants")?;
            let pointwise =
                grouped_conv::install_pointwise(&mut typed).context("installing the fast pointwise convolution")?;
            layout_keeping_declutter().optimize(&mut typed).context("tract could not declutter the model")?;
            let mut done = grouped_conv::install(&mut typed).context("installing the fast grouped convolution")?;
            done.replaced += pointwise.replaced;
            done.left.extend(pointwise.left);
            typed.declutter().context("tract could not declutter the model")?;
            let folds = grouped_conv::fuse_activations(&mut typed).context("folding activations into convolutions")?;
            log::debug!("{folds} activations folded into our convolutions");
            if done.replaced > 0 {
                log::debug!(
                    "{} pointwise, grouped and transposed convolutions run {} ({})",
                    done.replaced,
                    grouped_conv::KERNEL_VERSION,
                    grouped_conv::kernel::active_isa().name()
                );
            }
            if !done.left.is_empty() {
                log::info!(
                    "{} convolutions stay tract's (not covered by the fast ops): {}",
                    done.left.len(),
                    done.left.join("; ")
                );
            }
        }
        let typed = typed.into_optimized().context("tract could not optimise the model for this input shape")?;
        let mut input_shapes = Vec::new();
        for i in 0..typed.inputs.len() {
            let fact = typed.input_fact(i)?;
            let shape = fact.shape.as_concrete().with_context(|| format!("input {i} has no fixed shape"))?;
            ensure!(
                i == 0 || fact.datum_type == f32::datum_type(),
                "input {i} is {:?}; inputs after the image must be f32",
                fact.datum_type
            );
            input_shapes.push(shape.to_vec());
        }
        let out_fact = typed.output_fact(0)?;
        let shape =
            out_fact.shape.as_concrete().context("the model's output shape is not fixed by its input shape")?.to_vec();
        ensure!(
            out_fact.datum_type == f32::datum_type(),
            "the model's first output is {:?}, not f32",
            out_fact.datum_type
        );
        let mut output_shapes = vec![shape];
        for i in 1..typed.outputs.len() {
            // Other outputs are read only when asked for ([`Self::run_outputs`]); empty: not readable.
            let fact = typed.output_fact(i)?;
            let readable = fact.datum_type == f32::datum_type();
            output_shapes.push(fact.shape.as_concrete().filter(|_| readable).map_or(Vec::new(), |s| s.to_vec()));
        }
        let state = typed.into_runnable_with_options(&run_options(options.threads))?.spawn()?;
        Ok(TractEngine { state, input_shapes, output_shapes })
    }

    /// Convenience for tests and tools: float input in, (shape, values) out.
    pub fn run_f32(&mut self, input: &[f32]) -> Result<(Vec<usize>, Vec<f32>)> {
        let mut out = vec![0.0; self.output_shape().iter().product()];
        self.run(&[&InputTensor::F32(input.to_vec())], &mut out)?;
        Ok((self.output_shape().to_vec(), out))
    }

    /// Every output's shape, in the model's (or the selected) order.
    pub fn output_shapes(&self) -> &[Vec<usize>] {
        &self.output_shapes
    }

    /// Runs on `inputs` and copies output `i` into `outputs[i]` (sized as
    /// [`Self::output_shapes`]) for the first `outputs.len()` outputs; each must
    /// be a fixed-shape f32 tensor.
    pub fn run_outputs(&mut self, inputs: &[&InputTensor], outputs: &mut [&mut [f32]]) -> Result<()> {
        ensure!(
            inputs.len() == self.input_shapes.len(),
            "{} inputs given, the model takes {}",
            inputs.len(),
            self.input_shapes.len()
        );
        ensure!(
            outputs.len() <= self.output_shapes.len(),
            "{} outputs asked for, the model has {}",
            outputs.len(),
            self.output_shapes.len()
        );
        for (i, (o, shape)) in outputs.iter().zip(&self.output_shapes).enumerate() {
            ensure!(!shape.is_empty(), "output {i} is not a fixed-shape f32 tensor");
            ensure!(o.len() == shape.iter().product::<usize>(), "output buffer size mismatch");
        }
        let tensors = self.tensors(inputs)?;
        let values = self.state.run(tensors)?;
        for (o, v) in outputs.iter_mut().zip(values) {
            for (d, s) in o.iter_mut().zip(v.to_plain_array_view::<f32>()?.iter()) {
                *d = *s;
            }
        }
        Ok(())
    }
}

/// The cores this process may run on (1 when unknown): the most inference
/// threads an engine takes.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// tract's declutter without its axis-changing pass (`ChangeAxes`): the
/// model keeps the layout it was written in.
fn layout_keeping_declutter() -> tract_onnx::tract_core::optim::Optimizer {
    let mut optimizer = tract_onnx::tract_core::optim::Optimizer::declutter();
    optimizer.passes.retain(|p| !is_change_axes(p.as_ref()));
    optimizer
}

fn is_change_axes(pass: &dyn tract_onnx::tract_core::optim::TypedPass) -> bool {
    format!("{pass:?}") == "ChangeAxes"
}

/// tract's executor for `threads` (multithreaded with the `multithread` feature).
fn run_options(threads: usize) -> RunOptions {
    #[cfg(feature = "multithread")]
    if threads > 1 {
        return RunOptions {
            executor: Some(tract_linalg::multithread::Executor::multithread(threads)),
            ..RunOptions::default()
        };
    }
    #[cfg(not(feature = "multithread"))]
    if threads > 1 {
        log::warn!("built without the `multithread` feature: running 1 thread, not {threads}");
    }
    RunOptions::default()
}

impl Engine for TractEngine {
    fn input_shapes(&self) -> &[Vec<usize>] {
        &self.input_shapes
    }

    fn output_shape(&self) -> &[usize] {
        &self.output_shapes[0]
    }

    fn run(&mut self, inputs: &[&InputTensor], output: &mut [f32]) -> Result<()> {
        self.run_outputs(inputs, &mut [output])
    }
}

/// Time spent in one kind of tract op over a profiled run.
#[derive(Clone, Debug, PartialEq)]
pub struct OpTime {
    /// tract's op name after optimisation (e.g. `Conv`, `OptMatMul`, `Add`).
    pub op: String,
    /// Mean milliseconds per inference.
    pub ms: f64,
    /// Nodes of this kind in the plan.
    pub nodes: usize,
}

impl TractEngine {
    /// tract's input values: it takes ownership of its inputs, so this copy
    /// (and tract's own intermediate buffers) are the allocations left on the
    /// per-frame path.
    fn tensors(&self, inputs: &[&InputTensor]) -> Result<TVec<TValue>> {
        let mut tensors = TVec::new();
        for (i, (input, shape)) in inputs.iter().zip(&self.input_shapes).enumerate() {
            let expected: usize = shape.iter().product();
            ensure!(input.len() == expected, "input {i} has {} values, the model takes {expected}", input.len());
            let tensor = match input {
                InputTensor::F32(v) => Tensor::from_shape(shape, v)?,
                InputTensor::I32(v) => Tensor::from_shape(shape, v)?,
            };
            tensors.push(tensor.into());
        }
        Ok(tensors)
    }

    /// Runs `runs` inferences timing every node (temporal nets get zero
    /// priors), and returns time per op kind,
    /// largest first. Profiling adds a clock read per node.
    pub fn profile(&mut self, input: &InputTensor, runs: usize) -> Result<Vec<OpTime>> {
        use std::collections::HashMap;
        use std::time::Instant;
        use tract_onnx::tract_core::internal::{EvalContext, OpState};
        use tract_onnx::tract_core::plan::eval;

        let mut times: HashMap<String, (f64, std::collections::HashSet<usize>)> = HashMap::new();
        let zeros: Vec<InputTensor> =
            self.input_shapes[1..].iter().map(|s| InputTensor::F32(vec![0.0; s.iter().product()])).collect();
        let mut inputs = vec![input];
        inputs.extend(zeros.iter());
        for _ in 0..runs.max(1) {
            let tensors = self.tensors(&inputs)?;
            self.state.run_plan_with_eval(
                tensors,
                |ctx: &EvalContext, st: Option<&mut (dyn OpState + 'static)>, node: &TypedNode, inputs| {
                    let t = Instant::now();
                    let r = eval(ctx, st, node, inputs);
                    let e = times.entry(node.op().name().to_string()).or_default();
                    e.0 += t.elapsed().as_secs_f64() * 1e3;
                    e.1.insert(node.id);
                    r
                },
            )?;
        }
        let mut v: Vec<OpTime> = times
            .into_iter()
            .map(|(op, (ms, nodes))| OpTime { op, ms: ms / runs.max(1) as f64, nodes: nodes.len() })
            .collect();
        v.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_keeping_declutter_leaves_out_only_tracts_axis_pass() {
        let full = tract_onnx::tract_core::optim::Optimizer::declutter();
        assert_eq!(full.passes.iter().filter(|p| is_change_axes(p.as_ref())).count(), 1, "{:?}", full.passes);
        assert_eq!(layout_keeping_declutter().passes.len(), full.passes.len() - 1);
    }
}
