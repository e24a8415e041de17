//! `Network`: the layer graph a [`super::Subnet`] lowers to.
//!
//! One graph serves everyone: the cost counter walks it, the ONNX writer
//! serialises it (folding BatchNorm), the profiler cuts single blocks out of it
//! and the trainer names its supernet parameters after its nodes. Nodes are the
//! units mmcv's `ConvModule` and friends are: a convolution with its optional
//! BatchNorm and activation is one node. Tensors are NCHW; shapes here omit N.

use serde::{Deserialize, Serialize};

/// Channels × height × width of a feature map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Shape {
    pub c: u32,
    pub h: u32,
    pub w: u32,
}

impl Shape {
    pub fn numel(&self) -> u64 {
        self.c as u64 * self.h as u64 * self.w as u64
    }
}

/// Activations used by the three spaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Act {
    Relu,
    /// `x · relu6(x + 3) / 6`
    HSwish,
    /// `relu6(x + 3) / 6`
    HSigmoid,
    Sigmoid,
}

/// A (transposed) convolution with optional bias, BatchNorm and activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Conv {
    pub cin: u32,
    pub cout: u32,
    pub kernel: u32,
    pub stride: u32,
    pub pad: u32,
    pub groups: u32,
    pub bias: bool,
    pub bn: bool,
    pub act: Option<Act>,
    /// `ConvTranspose` (weights `cin × cout/groups × k × k`).
    pub transposed: bool,
}

impl Conv {
    /// Weight tensor shape, in ONNX's layout for the op.
    pub fn weight_shape(&self) -> [usize; 4] {
        let k = self.kernel as usize;
        if self.transposed {
            [self.cin as usize, (self.cout / self.groups) as usize, k, k]
        } else {
            [self.cout as usize, (self.cin / self.groups) as usize, k, k]
        }
    }

    fn out_size(&self, x: u32) -> u32 {
        if self.transposed {
            (x - 1) * self.stride + self.kernel - 2 * self.pad
        } else {
            (x + 2 * self.pad - self.kernel) / self.stride + 1
        }
    }
}

/// What a node computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Op {
    Conv(Conv),
    /// Squeeze-and-excitation: global average pool, 1×1 conv (bias) to
    /// `squeeze`, ReLU, 1×1 conv (bias) back, `gate`, times the input.
    Se {
        channels: u32,
        squeeze: u32,
        gate: Act,
    },
    /// GCNet context block (attention pooling, channel-add fusion): a 1×1 conv
    /// to one channel, softmax over positions, the weighted sum of the input,
    /// 1×1 conv (bias) to `planes`, LayerNorm, ReLU, 1×1 conv (bias) back,
    /// added to every position.
    Gc {
        channels: u32,
        planes: u32,
    },
    /// Sum of the inputs, then an optional ReLU.
    Sum {
        relu: bool,
    },
    MaxPool {
        kernel: u32,
        stride: u32,
        pad: u32,
    },
    /// Nearest-neighbour upsampling by an integer factor.
    Upsample {
        factor: u32,
    },
    /// The previous frame's pose as heatmaps (17 × H/4 × W/4): the second
    /// input of a temporal net. Reads no value; its output is that input.
    Prior,
    /// The inputs stacked along channels, in order.
    Concat,
    /// Elementwise product of two inputs of one shape.
    Product,
    /// Graph input `index` (≥ 1) of a block cut out of a network
    /// ([`Network::extract`] of a block that reads several values, for
    /// profiling HRNet's fusions). Reads no value; its output is that input.
    Input {
        index: u32,
    },
}

/// Index of a value: 0 is the network input, `i + 1` the output of node `i`.
pub type ValueId = usize;

/// One layer of the graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Node {
    /// Dotted path (`stage2.block0.dw`); parameters are named `<name>.<param>`.
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    /// Output shape.
    pub shape: Shape,
}

/// A directed acyclic layer graph with one input and one output (the last
/// node); a temporal net's [`Op::Prior`] node is its second input, a cut-out
/// block's [`Op::Input`] nodes its further ones.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Network {
    pub input: Shape,
    pub nodes: Vec<Node>,
}

impl Network {
    pub fn shape(&self, v: ValueId) -> Shape {
        if v == 0 {
            self.input
        } else {
            self.nodes[v - 1].shape
        }
    }

    pub fn output(&self) -> ValueId {
        self.nodes.len()
    }

    pub fn output_shape(&self) -> Shape {
        self.shape(self.output())
    }

    /// The shape of the [`Op::Prior`] input, if the network has one.
    pub fn prior(&self) -> Option<Shape> {
        self.nodes.iter().find(|n| n.op == Op::Prior).map(|n| n.shape)
    }
}

/// Appends nodes, computing shapes. Panics only on programming errors
/// (mismatched shapes), which the lowering tests cover for every space.
pub struct NetBuilder {
    net: Network,
}

impl NetBuilder {
    pub fn new(input: Shape) -> NetBuilder {
        NetBuilder { net: Network { input, nodes: Vec::new() } }
    }

    pub fn shape(&self, v: ValueId) -> Shape {
        self.net.shape(v)
    }

    fn push(&mut self, name: String, op: Op, inputs: Vec<ValueId>, shape: Shape) -> ValueId {
        self.net.nodes.push(Node { name, op, inputs, shape });
        self.net.nodes.len()
    }

    /// Any convolution node; `conv.cin` must match the input.
    pub fn conv(&mut self, name: String, x: ValueId, conv: Conv) -> ValueId {
        let s = self.shape(x);
        assert_eq!(s.c, conv.cin, "{name}: input has {} channels, conv expects {}", s.c, conv.cin);
        assert!(conv.cin % conv.groups == 0 && conv.cout % conv.groups == 0, "{name}: groups");
        let shape = Shape { c: conv.cout, h: conv.out_size(s.h), w: conv.out_size(s.w) };
        self.push(name, Op::Conv(conv), vec![x], shape)
    }

    /// Conv + BatchNorm + optional activation, "same" padding, no bias.
    pub fn conv_bn(
        &mut self,
        name: String,
        x: ValueId,
        cout: u32,
        kernel: u32,
        stride: u32,
        groups: u32,
        act: Option<Act>,
    ) -> ValueId {
        let cin = self.shape(x).c;
        let conv =
            Conv { cin, cout, kernel, stride, pad: kernel / 2, groups, bias: false, bn: true, act, transposed: false };
        self.conv(name, x, conv)
    }

    pub fn se(&mut self, name: String, x: ValueId, squeeze: u32, gate: Act) -> ValueId {
        let shape = self.shape(x);
        self.push(name, Op::Se { channels: shape.c, squeeze, gate }, vec![x], shape)
    }

    pub fn gc(&mut self, name: String, x: ValueId, planes: u32) -> ValueId {
        let shape = self.shape(x);
        self.push(name, Op::Gc { channels: shape.c, planes }, vec![x], shape)
    }

    pub fn sum(&mut self, name: String, xs: Vec<ValueId>, relu: bool) -> ValueId {
        let shape = self.shape(xs[0]);
        for &x in &xs {
            assert_eq!(self.shape(x), shape, "{name}: summed shapes differ");
        }
        self.push(name, Op::Sum { relu }, xs, shape)
    }

    pub fn max_pool(&mut self, name: String, x: ValueId, kernel: u32, stride: u32, pad: u32) -> ValueId {
        let s = self.shape(x);
        let out = |v: u32| (v + 2 * pad - kernel) / stride + 1;
        let shape = Shape { c: s.c, h: out(s.h), w: out(s.w) };
        self.push(name, Op::MaxPool { kernel, stride, pad }, vec![x], shape)
    }

    pub fn upsample(&mut self, name: String, x: ValueId, factor: u32) -> ValueId {
        let s = self.shape(x);
        let shape = Shape { c: s.c, h: s.h * factor, w: s.w * factor };
        self.push(name, Op::Upsample { factor }, vec![x], shape)
    }

    /// The previous frame's heatmaps, `shape` (a temporal net's second input).
    pub fn prior(&mut self, name: String, shape: Shape) -> ValueId {
        assert!(self.net.prior().is_none(), "{name}: a network has at most one prior input");
        self.push(name, Op::Prior, Vec::new(), shape)
    }

    /// The value of the [`Op::Prior`] input, if there is one yet.
    pub fn prior_value(&self) -> Option<ValueId> {
        self.net.nodes.iter().position(|n| n.op == Op::Prior).map(|i| i + 1)
    }

    /// Channel concatenation; heights and widths must agree.
    pub fn concat(&mut self, name: String, xs: Vec<ValueId>) -> ValueId {
        let first = self.shape(xs[0]);
        let mut c = 0;
        for &x in &xs {
            let s = self.shape(x);
            assert_eq!((s.h, s.w), (first.h, first.w), "{name}: concatenated sizes differ");
            c += s.c;
        }
        self.push(name, Op::Concat, xs, Shape { c, ..first })
    }

    pub fn product(&mut self, name: String, a: ValueId, b: ValueId) -> ValueId {
        let shape = self.shape(a);
        assert_eq!(self.shape(b), shape, "{name}: multiplied shapes differ");
        self.push(name, Op::Product, vec![a, b], shape)
    }

    pub fn finish(self) -> Network {
        self.net
    }
}
