//! FLOPs and parameter counts of a [`Network`].
//!
//! Two numbers are kept apart:
//! - `macs`: multiply-accumulates of convolutions (and the 1×1 convs inside
//!   SE/GC blocks) — the "FLOPs" of most NAS papers;
//! - `flops`: mmcv's `get_model_complexity_info` convention, which mmpose's
//!   model zoo reports: MACs plus one per bias, two per element through an
//!   affine BatchNorm or LayerNorm, one per element through ReLU, pooling (input
//!   elements) and upsampling (output elements); HSwish, HSigmoid, sigmoid,
//!   softmax, matmul, adds and products count zero. Transposed convs count
//!   `k²·Cin·Cout/g` per *input* position, as mmcv does.
//!
//! Parameters are what PyTorch calls parameters: conv weights and biases,
//! BN/LN scale and shift (not running statistics).

use std::ops::{Add, AddAssign};

use serde::Serialize;

use super::net::{Act, Network, Node, Op};

/// Counts for a node or a whole network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Cost {
    pub macs: u64,
    /// mmcv convention (see the module docs).
    pub flops: u64,
    pub params: u64,
}

impl Add for Cost {
    type Output = Cost;
    fn add(self, o: Cost) -> Cost {
        Cost { macs: self.macs + o.macs, flops: self.flops + o.flops, params: self.params + o.params }
    }
}

impl AddAssign for Cost {
    fn add_assign(&mut self, o: Cost) {
        *self = *self + o;
    }
}

impl Cost {
    pub fn gflops(&self) -> f64 {
        self.flops as f64 / 1e9
    }

    pub fn mparams(&self) -> f64 {
        self.params as f64 / 1e6
    }
}

/// A 1×1 conv with bias applied to a 1×1 map (inside SE / GC).
fn fc(cin: u64, cout: u64) -> Cost {
    Cost { macs: cin * cout, flops: cin * cout + cout, params: cin * cout + cout }
}

/// The cost of one node, given the network it belongs to (for input shapes).
pub fn node_cost(net: &Network, node: &Node) -> Cost {
    let out = node.shape;
    let input = node.inputs.first().map_or(node.shape, |&v| net.shape(v));
    let out_px = out.h as u64 * out.w as u64;
    match node.op {
        Op::Conv(c) => {
            let k2 = c.kernel as u64 * c.kernel as u64;
            let weights = k2 * c.cin as u64 * c.cout as u64 / c.groups as u64;
            let positions = if c.transposed { input.h as u64 * input.w as u64 } else { out_px };
            let macs = weights * positions;
            let mut flops = macs;
            let mut params = weights;
            if c.bias {
                flops += c.cout as u64 * out_px;
                params += c.cout as u64;
            }
            if c.bn {
                flops += 2 * out.numel();
                params += 2 * c.cout as u64;
            }
            if c.act == Some(Act::Relu) {
                flops += out.numel();
            }
            Cost { macs, flops, params }
        }
        Op::Se { channels, squeeze, .. } => {
            let (c, s) = (channels as u64, squeeze as u64);
            let mut cost = fc(c, s) + fc(s, c);
            cost.flops += input.numel() + s; // global average pool, ReLU
            cost
        }
        Op::Gc { channels, planes } => {
            let (c, p) = (channels as u64, planes as u64);
            let in_px = input.h as u64 * input.w as u64;
            let mask = Cost { macs: c * in_px, flops: c * in_px + in_px, params: c + 1 };
            let layer_norm = Cost { macs: 0, flops: 2 * p, params: 2 * p };
            let relu = Cost { macs: 0, flops: p, params: 0 };
            mask + fc(c, p) + layer_norm + relu + fc(p, c)
        }
        Op::Sum { relu } => Cost { flops: if relu { out.numel() } else { 0 }, ..Cost::default() },
        Op::MaxPool { .. } => Cost { flops: input.numel(), ..Cost::default() },
        Op::Upsample { .. } | Op::Product => Cost { flops: out.numel(), ..Cost::default() },
        Op::Prior | Op::Concat | Op::Input { .. } => Cost::default(),
    }
}

impl Network {
    /// Total cost of the network.
    pub fn cost(&self) -> Cost {
        self.nodes.iter().fold(Cost::default(), |acc, n| acc + node_cost(self, n))
    }
}
