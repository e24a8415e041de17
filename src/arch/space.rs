//! Search-space vocabulary: what one row of the paper's Tables 1–3 says, as data.
//!
//! A [`SearchSpace`] is a stem row, a list of [`StageSpace`]s (each with one
//! [`BlockSpace`] per branch) and an optional deconvolution head row. Every
//! elastic dimension keeps the range *as printed* (`min..=max`) together with
//! the discretisation rule we chose for it, so tests can compare the printed
//! table and the choices we enumerate separately. The tables themselves live in
//! [`super::tables`]; how we read their quirks is written in `docs/search-spaces.md`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The three supernets of the paper.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum SpaceName {
    /// Table 1: MobileNetV3 mobile blocks, SE attention, searched expansion.
    #[serde(rename = "mbv3")]
    Mbv3,
    /// Table 2: ResNet-50 Bottlenecks with GC attention, SimpleBaseline head.
    #[serde(rename = "resnet50")]
    Resnet50,
    /// Table 3: HRNet-W32, per-branch width and SE attention.
    #[serde(rename = "hrnet-w32")]
    HrnetW32,
}

impl SpaceName {
    pub const ALL: [SpaceName; 3] = [SpaceName::Mbv3, SpaceName::Resnet50, SpaceName::HrnetW32];

    pub fn as_str(self) -> &'static str {
        match self {
            SpaceName::Mbv3 => "mbv3",
            SpaceName::Resnet50 => "resnet50",
            SpaceName::HrnetW32 => "hrnet-w32",
        }
    }
}

impl fmt::Display for SpaceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SpaceName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        SpaceName::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| format!("unknown space `{s}` (expected one of: mbv3, resnet50, hrnet-w32)"))
    }
}

/// The operator column of the tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operator {
    /// A plain convolution (MobileNetV3 stem; HRNet's two stride-2 stem convs).
    Conv,
    /// Convolution followed by 3×3 stride-2 max pooling (ResNet stem).
    ConvPool,
    /// Inverted residual: 1×1 expand, k×k grouped middle conv, optional SE, 1×1 project.
    MobileBlock,
    /// 1×1 reduce, k×k grouped middle conv, 1×1 expand, optional attention.
    Bottleneck,
    /// Two k×k grouped convs (HRNet branches).
    BasicBlock,
    /// Three stride-2 transposed convs (k = 4) and a final 1×1 conv to heatmaps.
    Deconv,
}

/// The attention module a row can switch on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttentionKind {
    /// The row has no attention column (`-`).
    None,
    /// Squeeze-and-excitation.
    Se,
    /// Global-context block (GCNet).
    Gc,
}

/// An inclusive integer range with a step: choices `min, min+step, …, max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub min: u32,
    pub max: u32,
    pub step: u32,
}

impl Range {
    /// A range with a single value (`[v, v]` in the tables).
    pub const fn fixed(v: u32) -> Range {
        Range { min: v, max: v, step: 1 }
    }

    pub const fn new(min: u32, max: u32, step: u32) -> Range {
        Range { min, max, step }
    }

    pub fn choices(&self) -> Vec<u32> {
        (self.min..=self.max).step_by(self.step as usize).collect()
    }

    pub fn contains(&self, v: u32) -> bool {
        v >= self.min && v <= self.max && (v - self.min) % self.step == 0
    }
}

/// How a printed group range `[min, max]` is discretised. Whatever the rule, a
/// group number must divide the channels of the convolution it applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupRule {
    /// MobileNetV3: the number of channels per group `C/g` is a power of two no
    /// larger than `max_per_group` (the printed ranges are exactly `[C/16, C]`
    /// at the largest expansion, `[C/8, C]` for stage 1 and the head).
    PowerOfTwoPerGroup { max_per_group: u32 },
    /// ResNet-50: the paper's step (16); `g` must divide the channels.
    Step(u32),
    /// HRNet-W32: powers of two (1, 2, 4, …) that divide the channels.
    PowerOfTwo,
}

/// The group column of a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupSpace {
    /// As printed.
    pub min: u32,
    /// As printed.
    pub max: u32,
    pub rule: GroupRule,
}

impl GroupSpace {
    pub const fn fixed(g: u32) -> GroupSpace {
        GroupSpace { min: g, max: g, rule: GroupRule::Step(1) }
    }

    /// The valid group numbers for a convolution over `channels` channels,
    /// ascending. Never empty for the widths our spaces can produce (tested).
    pub fn choices(&self, channels: u32) -> Vec<u32> {
        let in_range = |g: u32| g >= self.min && g <= self.max && g > 0 && channels % g == 0;
        match self.rule {
            GroupRule::PowerOfTwoPerGroup { max_per_group } => {
                let mut v: Vec<u32> = (0..=max_per_group.trailing_zeros())
                    .map(|e| 1u32 << e)
                    .filter(|per| channels % per == 0)
                    .map(|per| channels / per)
                    .filter(|&g| in_range(g))
                    .collect();
                v.sort_unstable();
                v
            }
            GroupRule::Step(step) => (self.min..=self.max).step_by(step as usize).filter(|&g| in_range(g)).collect(),
            GroupRule::PowerOfTwo => {
                (0..=31).map(|e| 1u32 << e).take_while(|&g| g <= self.max).filter(|&g| in_range(g)).collect()
            }
        }
    }
}

/// One row of a table (for HRNet: one branch of a stage).
#[derive(Clone, Debug, PartialEq)]
pub struct BlockSpace {
    pub operator: Operator,
    /// The row's width column (see `expansion` for how it maps to channels).
    pub width: Range,
    pub kernel: Range,
    pub group: GroupSpace,
    pub attention: AttentionKind,
    /// Whether attention may be switched on (`[0, 1]`); `false` when printed `-`.
    pub attention_searchable: bool,
    /// Ratio between a block's inner width and its outer width. MobileBlock:
    /// inner = width × expansion (output = width). Bottleneck: inner = width,
    /// output = width × expansion (ResNet-50 here: 1; HRNet stage 1: 4).
    pub expansion: Range,
    /// The resolution column as printed, as the denominator of `1/n`.
    pub printed_resolution: u32,
    /// The resolution this row's output has in the network we build; the
    /// stride of a stage's first block is the ratio to the previous row's.
    pub resolution: u32,
}

/// One stage: its depth range and one [`BlockSpace`] per parallel branch.
#[derive(Clone, Debug, PartialEq)]
pub struct StageSpace {
    /// 1-based, as printed.
    pub index: usize,
    pub depth: Range,
    pub branches: Vec<BlockSpace>,
}

/// One whole table.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchSpace {
    pub name: SpaceName,
    pub stem: BlockSpace,
    pub stages: Vec<StageSpace>,
    /// The deconvolution head; `None` for HRNet (a 1×1 conv on branch 1).
    pub head: Option<BlockSpace>,
}

impl SearchSpace {
    /// The space behind a name (Tables 1–3).
    pub fn get(name: SpaceName) -> SearchSpace {
        super::tables::table(name)
    }
}
