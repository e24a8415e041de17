//! `TemporalNet`: a T-ViPNet — a light subnet of a space whose features, after
//! its fusion stage, are fused with the previous frame's pose as heatmaps.
//!
//! The second input ([`Op::Prior`](super::net::Op::Prior)) holds 17 heatmaps
//! at a quarter of the input, like the nets' output. A 1×1 conv (or a k×k
//! stride-k conv where the stage is coarser than 1/4, then nearest upsampling
//! where it is finer) brings it to the stage's channels and resolution; the
//! fusion op then combines it with the stage's output:
//! - `add`: features + adapted prior (the adapter ends in BatchNorm, no activation);
//! - `mul`: features × hsigmoid(adapted prior), a gate in [0, 1];
//! - `concat`: [features, adapted prior] and a 1×1 conv + BN back to the stage's width.
//!
//! The rest of the subnet and its head follow unchanged, so parameter names
//! outside `fusion.*` are the supernet's and a T-net inherits its weights.
//! Last, the prior is added to the output heatmaps (`fusion.skip`): the net
//! learns a correction of the previous pose, and with the near-zero final
//! layer it starts out as that pose held.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::net::{Act, Conv, NetBuilder, Shape, ValueId};
use super::space::SearchSpace;
use super::subnet::{Subnet, SubnetError};
use super::{InputSize, Network};
use crate::coco::KEYPOINTS;

/// How the previous pose joins the features.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum FusionOp {
    Add,
    Concat,
    Mul,
}

impl FusionOp {
    pub const ALL: [FusionOp; 3] = [FusionOp::Add, FusionOp::Concat, FusionOp::Mul];

    pub fn name(self) -> &'static str {
        match self {
            FusionOp::Add => "add",
            FusionOp::Concat => "concat",
            FusionOp::Mul => "mul",
        }
    }
}

/// Where and how a T-net fuses: after backbone stage `stage` (1-based, as the
/// space's tables number them; HRNet: its highest-resolution branch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fusion {
    pub stage: u32,
    pub op: FusionOp,
}

impl fmt::Display for Fusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.op.name(), self.stage)
    }
}

impl FromStr for Fusion {
    type Err = String;
    /// `OP@STAGE`, e.g. `add@2`.
    fn from_str(s: &str) -> Result<Fusion, String> {
        let (op, stage) = s.split_once('@').ok_or_else(|| format!("fusion `{s}`: expected OP@STAGE, e.g. add@2"))?;
        let op = <FusionOp as clap::ValueEnum>::from_str(op, true)
            .map_err(|_| format!("fusion `{s}`: op `{op}` is not one of add, concat, mul"))?;
        let stage = stage.parse().map_err(|_| format!("fusion `{s}`: stage `{stage}` is not a number"))?;
        Ok(Fusion { stage, op })
    }
}

/// A temporal net: its subnet and where the previous pose joins it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemporalNet {
    pub subnet: Subnet,
    pub fusion: Fusion,
}

impl TemporalNet {
    /// The fusion stage must be one of the space's stages.
    pub fn check(&self) -> Result<(), SubnetError> {
        let stages = SearchSpace::get(self.subnet.space).stages.len() as u32;
        if !(1..=stages).contains(&self.fusion.stage) {
            return Err(SubnetError {
                place: "fusion".into(),
                message: format!("stage {} is not a stage of {} (1..={stages})", self.fusion.stage, self.subnet.space),
            });
        }
        Ok(())
    }

    /// The layer graph: the subnet's, with the fusion after its stage.
    pub fn network(&self, input: InputSize) -> Result<Network, SubnetError> {
        self.check()?;
        self.subnet.lower(input, Some(self.fusion))
    }
}

/// The prior's shape at `input`: one heatmap per keypoint at a quarter of it.
pub fn prior_shape(input: Shape) -> Shape {
    Shape { c: KEYPOINTS as u32, h: input.h / 4, w: input.w / 4 }
}

/// After the final layer: the output is `heatmaps` + the prior, where the
/// network has one (a temporal net).
pub(super) fn skip(b: &mut NetBuilder, heatmaps: ValueId) {
    let prior = b.prior_value();
    if let Some(prior) = prior {
        b.sum("fusion.skip".into(), vec![heatmaps, prior], false);
    }
}

/// Called by every backbone after each stage: the fused value where `fusion`
/// names this stage, `x` unchanged elsewhere.
pub(super) fn fuse(b: &mut NetBuilder, fusion: Option<Fusion>, stage: usize, x: ValueId) -> ValueId {
    let Some(f) = fusion.filter(|f| f.stage as usize == stage) else { return x };
    let heat = prior_shape(b.shape(0));
    let prior = b.prior("fusion.prior".into(), heat);
    let s = b.shape(x);
    let act = (f.op == FusionOp::Mul).then_some(Act::HSigmoid);
    // Inputs are multiples of 32 and strides powers of two: the ratio is exact.
    let k = (heat.h / s.h).max(1);
    let conv = Conv {
        cin: heat.c,
        cout: s.c,
        kernel: k,
        stride: k,
        pad: 0,
        groups: 1,
        bias: false,
        bn: true,
        act,
        transposed: false,
    };
    let mut adapted = b.conv("fusion.adapt".into(), prior, conv);
    if s.h > heat.h {
        adapted = b.upsample("fusion.up".into(), adapted, s.h / heat.h);
    }
    match f.op {
        FusionOp::Add => b.sum("fusion.add".into(), vec![x, adapted], false),
        FusionOp::Mul => b.product("fusion.mul".into(), x, adapted),
        FusionOp::Concat => {
            let y = b.concat("fusion.concat".into(), vec![x, adapted]);
            b.conv_bn("fusion.project".into(), y, s.c, 1, 1, 1, None)
        }
    }
}
