//! The forward pass of any [`Network`] on burn tensors, its parameters cut
//! out of the supernet's (so gradients flow back into the shared tensors).
//! Semantics match the ONNX writer and the reference forward: BatchNorm and
//! LayerNorm with ε = 1e-5, HSwish = x·relu6(x+3)/6, SE = mean → fc → ReLU →
//! fc → gate → scale, GC = softmax attention pooling → fc → LayerNorm → ReLU →
//! fc → add, "same" padding as the graph says.

use burn::tensor::activation::{relu, sigmoid, softmax};
use burn::tensor::module::{conv2d, interpolate, max_pool2d};
use burn::tensor::ops::{ConvOptions, InterpolateMode, InterpolateOptions, MaxPoolOptions};
use burn::tensor::Tensor;

use super::{kernels, Supernet};
use crate::arch::net::{Act, Conv, Network, Node, Op};

const EPS: f64 = 1e-5;

/// Which statistics BatchNorm normalises with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Norm {
    /// The batch's own (training, and BN recalibration).
    Batch,
    /// The stored running statistics (evaluation, export).
    Running,
}

/// Per-BN batch statistics seen in one forward pass (for recalibration):
/// node name → (mean, biased variance), each of the node's channel count.
pub type BatchStats = Vec<(String, Vec<f32>, Vec<f32>)>;

impl Supernet {
    /// The network's output for an NCHW batch. With `stats`, the batch
    /// statistics of every BatchNorm are recorded (values only, no graph).
    pub fn forward(&self, net: &Network, x: Tensor<4>, norm: Norm, stats: Option<&mut BatchStats>) -> Tensor<4> {
        self.forward_with_prior(net, x, None, norm, stats)
    }

    /// [`Supernet::forward`] of a temporal net: `prior` is its second input
    /// (N × 17 × H/4 × W/4); a network with an [`Op::Prior`] needs one.
    pub fn forward_with_prior(
        &self,
        net: &Network,
        x: Tensor<4>,
        prior: Option<Tensor<4>>,
        norm: Norm,
        mut stats: Option<&mut BatchStats>,
    ) -> Tensor<4> {
        let mut values: Vec<Tensor<4>> = Vec::with_capacity(net.nodes.len() + 1);
        values.push(x);
        for node in &net.nodes {
            if node.op == Op::Prior {
                values.push(prior.clone().expect("a temporal net's forward needs the prior heatmaps"));
                continue;
            }
            let x = values[node.inputs[0]].clone();
            let y = match node.op {
                Op::Conv(c) => self.conv(node, &c, x, norm, stats.as_deref_mut()),
                Op::Se { channels, squeeze, gate } => self.se(node, x, channels, squeeze, gate),
                Op::Gc { channels, planes } => self.gc(node, x, channels, planes),
                Op::Sum { relu: r } => {
                    let mut y = x;
                    for &v in &node.inputs[1..] {
                        y = y + values[v].clone();
                    }
                    if r {
                        relu(y)
                    } else {
                        y
                    }
                }
                Op::MaxPool { kernel, stride, pad } => {
                    let k = kernel as usize;
                    let o =
                        MaxPoolOptions::new([k, k]).with_stride([stride as usize; 2]).with_padding([pad as usize; 2]);
                    max_pool2d(x, o)
                }
                Op::Upsample { .. } => {
                    let s = node.shape;
                    interpolate(
                        x,
                        InterpolateOptions::new(InterpolateMode::Nearest)
                            .with_output_size([s.h as usize, s.w as usize]),
                    )
                }
                Op::Concat => Tensor::cat(node.inputs.iter().map(|&v| values[v].clone()).collect(), 1),
                Op::Product => x * values[node.inputs[1]].clone(),
                Op::Prior => unreachable!("handled above"),
                Op::Input { .. } => unreachable!("cut-out blocks are profiled, not trained"),
            };
            values.push(y);
        }
        values.pop().expect("a network has an output")
    }

    fn conv(&self, node: &Node, c: &Conv, x: Tensor<4>, norm: Norm, stats: Option<&mut BatchStats>) -> Tensor<4> {
        let name = &node.name;
        let w = self.slice4(&format!("{name}.weight"), c.weight_shape());
        let b = c.bias.then(|| self.slice1(&format!("{name}.bias"), c.cout as usize));
        let (s, p, g) = (c.stride as usize, c.pad as usize, c.groups as usize);
        let mut y =
            if c.transposed { kernels::conv_transpose2d(x, w, b, s, p, g) } else { kernels::conv2d(x, w, b, s, p, g) };
        if c.bn {
            y = self.batch_norm(name, y, c.cout as usize, norm, stats);
        }
        match c.act {
            Some(a) => activation(y, a),
            None => y,
        }
    }

    fn batch_norm(&self, name: &str, y: Tensor<4>, ch: usize, norm: Norm, stats: Option<&mut BatchStats>) -> Tensor<4> {
        let gamma = self.slice1(&format!("{name}.bn.weight"), ch).reshape([1, ch, 1, 1]);
        let beta = self.slice1(&format!("{name}.bn.bias"), ch).reshape([1, ch, 1, 1]);
        // One pass to centre, one multiply-add by per-channel constants (γ/σ
        // folded): each pass saved is saved forward and backward in every
        // layer. Centred first in both modes: y·s − mean·s would cancel where
        // the mean is large against the spread.
        match norm {
            Norm::Batch => {
                let mean = y.clone().mean_dim(0).mean_dim(2).mean_dim(3);
                let centred = y - mean.clone();
                let var = centred.clone().powi_scalar(2).mean_dim(0).mean_dim(2).mean_dim(3);
                if let Some(stats) = stats {
                    let m = mean.detach().into_data().try_to_vec::<f32>().expect("f32 data");
                    let v = var.clone().detach().into_data().try_to_vec::<f32>().expect("f32 data");
                    stats.push((name.to_string(), m, v));
                }
                centred * (gamma / (var + EPS).sqrt()) + beta
            }
            Norm::Running => {
                let mean = self.running(&format!("{name}.bn.running_mean"), ch, &y).reshape([1, ch, 1, 1]);
                let var = self.running(&format!("{name}.bn.running_var"), ch, &y).reshape([1, ch, 1, 1]);
                (y - mean) * (gamma / (var + EPS).sqrt()) + beta
            }
        }
    }

    fn fc(&self, name: &str, x: Tensor<4>, cin: usize, cout: usize) -> Tensor<4> {
        let w = self.slice4(&format!("{name}.weight"), [cout, cin, 1, 1]);
        let b = self.slice1(&format!("{name}.bias"), cout);
        conv2d(x, w, Some(b), ConvOptions::new([1, 1], [0, 0], [1, 1], 1))
    }

    fn se(&self, node: &Node, x: Tensor<4>, channels: u32, squeeze: u32, gate: Act) -> Tensor<4> {
        let (c, s) = (channels as usize, squeeze as usize);
        let pooled = x.clone().mean_dim(2).mean_dim(3);
        let e = relu(self.fc(&format!("{}.fc1", node.name), pooled, c, s));
        let e = activation(self.fc(&format!("{}.fc2", node.name), e, s, c), gate);
        x * e
    }

    fn gc(&self, node: &Node, x: Tensor<4>, channels: u32, planes: u32) -> Tensor<4> {
        let (c, p) = (channels as usize, planes as usize);
        let n = &node.name;
        let [b, _, h, w] = x.dims();
        let logits = self.fc(&format!("{n}.mask"), x.clone(), c, 1).reshape([b, h * w]);
        let attn = softmax(logits, 1).reshape([b, h * w, 1]);
        let ctx = x.clone().reshape([b, c, h * w]).matmul(attn).reshape([b, c, 1, 1]);
        let t = self.fc(&format!("{n}.fc1"), ctx, c, p);
        let mean = t.clone().mean_dim(1);
        let var = (t.clone() - mean.clone()).powi_scalar(2).mean_dim(1);
        let g = self.slice1(&format!("{n}.ln.weight"), p).reshape([1, p, 1, 1]);
        let beta = self.slice1(&format!("{n}.ln.bias"), p).reshape([1, p, 1, 1]);
        let t = relu((t - mean) / (var + EPS).sqrt() * g + beta);
        x + self.fc(&format!("{n}.fc2"), t, p, c)
    }
}

pub fn activation(x: Tensor<4>, a: Act) -> Tensor<4> {
    match a {
        Act::Relu => relu(x),
        Act::HSwish => kernels::hard_swish(x),
        Act::HSigmoid => kernels::hard_sigmoid(x),
        Act::Sigmoid => sigmoid(x),
    }
}
