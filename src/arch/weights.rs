//! Named parameter tensors of a [`Network`] and their seeded random init.
//!
//! Names are `<node>.<param>` with PyTorch's vocabulary (`weight`, `bias`,
//! `bn.running_mean`, …), so a trained checkpoint maps onto them directly.

use std::collections::BTreeMap;
use std::collections::HashSet;

use super::net::{Network, Node, Op, ValueId};
use super::rng::Rng;

/// A dense float tensor, row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Tensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Tensor {
        assert_eq!(shape.iter().product::<usize>(), data.len(), "tensor shape {shape:?} vs {} values", data.len());
        Tensor { shape, data }
    }
}

/// What a parameter is, for initialisation and BN folding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// A convolution weight with its fan-in.
    Weight {
        fan_in: usize,
    },
    Bias,
    NormScale,
    NormShift,
    RunningMean,
    RunningVar,
}

/// One parameter a node owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub kind: ParamKind,
}

fn spec(node: &str, param: &str, shape: Vec<usize>, kind: ParamKind) -> ParamSpec {
    ParamSpec { name: format!("{node}.{param}"), shape, kind }
}

/// The parameters of a 1×1 conv with bias (inside SE / GC blocks).
fn fc_specs(node: &str, prefix: &str, cin: usize, cout: usize) -> [ParamSpec; 2] {
    [
        spec(node, &format!("{prefix}.weight"), vec![cout, cin, 1, 1], ParamKind::Weight { fan_in: cin }),
        spec(node, &format!("{prefix}.bias"), vec![cout], ParamKind::Bias),
    ]
}

impl Node {
    /// The parameters (and BN running statistics) this node owns.
    pub fn param_specs(&self) -> Vec<ParamSpec> {
        let n = self.name.as_str();
        match self.op {
            Op::Conv(c) => {
                let shape = c.weight_shape();
                let taps = if c.transposed { (c.kernel / c.stride).max(1) } else { c.kernel } as usize;
                let fan_in = (c.cin / c.groups) as usize * taps * taps;
                let mut v = vec![spec(n, "weight", shape.to_vec(), ParamKind::Weight { fan_in })];
                let cout = c.cout as usize;
                if c.bias {
                    v.push(spec(n, "bias", vec![cout], ParamKind::Bias));
                }
                if c.bn {
                    v.push(spec(n, "bn.weight", vec![cout], ParamKind::NormScale));
                    v.push(spec(n, "bn.bias", vec![cout], ParamKind::NormShift));
                    v.push(spec(n, "bn.running_mean", vec![cout], ParamKind::RunningMean));
                    v.push(spec(n, "bn.running_var", vec![cout], ParamKind::RunningVar));
                }
                v
            }
            Op::Se { channels, squeeze, .. } => {
                let (c, s) = (channels as usize, squeeze as usize);
                let mut v = fc_specs(n, "fc1", c, s).to_vec();
                v.extend(fc_specs(n, "fc2", s, c));
                v
            }
            Op::Gc { channels, planes } => {
                let (c, p) = (channels as usize, planes as usize);
                let mut v = fc_specs(n, "mask", c, 1).to_vec();
                v.extend(fc_specs(n, "fc1", c, p));
                v.push(spec(n, "ln.weight", vec![p], ParamKind::NormScale));
                v.push(spec(n, "ln.bias", vec![p], ParamKind::NormShift));
                v.extend(fc_specs(n, "fc2", p, c));
                v
            }
            Op::Sum { .. }
            | Op::MaxPool { .. }
            | Op::Upsample { .. }
            | Op::Prior
            | Op::Concat
            | Op::Product
            | Op::Input { .. } => Vec::new(),
        }
    }
}

/// All parameters of a network, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Weights {
    pub tensors: BTreeMap<String, Tensor>,
}

impl Weights {
    /// Seeded random weights that keep activations of order one through any
    /// depth: He-normal convs, BN statistics near identity, and small scales on
    /// the last BN of residual branches (as zero-init-residual does, but not zero,
    /// so that every block still matters in the numerics tests).
    pub fn random(net: &Network, seed: u64) -> Weights {
        let residual_ends = residual_branch_ends(net);
        let specs = net.nodes.iter().enumerate().flat_map(|(i, node)| {
            let damp = residual_ends.contains(&(i + 1));
            node.param_specs().into_iter().map(move |p| (p, damp))
        });
        Weights::random_specs(specs, seed)
    }

    /// Seeded random tensors for the given specs (`true`: the end of a
    /// residual branch, whose norm scale is kept small), as [`Weights::random`].
    pub fn random_specs(specs: impl IntoIterator<Item = (ParamSpec, bool)>, seed: u64) -> Weights {
        let mut rng = Rng::new(seed);
        let mut tensors = BTreeMap::new();
        for (p, damp) in specs {
            let len: usize = p.shape.iter().product();
            let mut draw =
                |f: &mut dyn FnMut(&mut Rng) -> f64| (0..len).map(|_| f(&mut rng) as f32).collect::<Vec<_>>();
            let data = match p.kind {
                ParamKind::Weight { fan_in } => {
                    let std = (2.0 / fan_in.max(1) as f64).sqrt();
                    draw(&mut |r| r.normal() * std)
                }
                ParamKind::Bias | ParamKind::NormShift | ParamKind::RunningMean => draw(&mut |r| r.normal() * 0.1),
                ParamKind::NormScale if damp => draw(&mut |r| 0.1 + 0.2 * r.uniform()),
                ParamKind::NormScale | ParamKind::RunningVar => draw(&mut |r| 0.8 + 0.4 * r.uniform()),
            };
            tensors.insert(p.name, Tensor::new(p.shape, data));
        }
        Weights { tensors }
    }

    /// The usual starting point for training: He-normal weights, zero biases
    /// and shifts, unit norm scales, identity running statistics.
    pub fn for_training(specs: impl IntoIterator<Item = ParamSpec>, seed: u64) -> Weights {
        let mut rng = Rng::new(seed);
        let mut tensors = BTreeMap::new();
        for p in specs {
            let len: usize = p.shape.iter().product();
            let data = match p.kind {
                ParamKind::Weight { fan_in } => {
                    let std = (2.0 / fan_in.max(1) as f64).sqrt();
                    (0..len).map(|_| (rng.normal() * std) as f32).collect()
                }
                ParamKind::Bias | ParamKind::NormShift | ParamKind::RunningMean => vec![0.0; len],
                ParamKind::NormScale | ParamKind::RunningVar => vec![1.0; len],
            };
            tensors.insert(p.name, Tensor::new(p.shape, data));
        }
        Weights { tensors }
    }

    /// A parameter by name; a missing one is an error naming it.
    pub fn get(&self, name: &str) -> anyhow::Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| anyhow::anyhow!("weights: missing parameter `{name}`"))
    }

    /// Checks that every parameter the network needs is present with its shape.
    pub fn check(&self, net: &Network) -> anyhow::Result<()> {
        for node in &net.nodes {
            for p in node.param_specs() {
                let t = self.get(&p.name)?;
                anyhow::ensure!(
                    t.shape == p.shape,
                    "weights: `{}` has shape {:?}, the network needs {:?}",
                    p.name,
                    t.shape,
                    p.shape
                );
            }
        }
        Ok(())
    }
}

/// Nodes whose output is summed with a shortcut (the end of a residual branch,
/// looking through attention blocks and upsampling).
pub(crate) fn residual_branch_ends(net: &Network) -> HashSet<ValueId> {
    let mut ends = HashSet::new();
    for node in &net.nodes {
        if let Op::Sum { .. } = node.op {
            for &v in &node.inputs {
                let mut v = v;
                while v > 0 && matches!(net.nodes[v - 1].op, Op::Se { .. } | Op::Gc { .. } | Op::Upsample { .. }) {
                    v = net.nodes[v - 1].inputs[0];
                }
                if v > 0 {
                    ends.insert(v);
                }
            }
        }
    }
    ends
}
