//! Lowering: a [`Subnet`] at an input size becomes a [`Network`].
//!
//! One file per space builds its blocks; the deconvolution head is shared by
//! MobileNetV3 and ResNet-50. Parameter names follow node names, and node names
//! depend only on the position of a block in the supernet (`stage2.block3.dw`),
//! so every subnet's parameters are slices of the same supernet tensors.

mod hrnet;
mod mbv3;
mod resnet;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::net::{Act, Conv, NetBuilder, Network, Shape, ValueId};
use super::space::{SearchSpace, SpaceName};
use super::subnet::{HeadChoice, Subnet, SubnetError};
use super::temporal::Fusion;
use crate::coco::KEYPOINTS;

/// Network input height × width in pixels (`256x192`): multiples of 32, so
/// every stride divides it and heatmaps are exactly a quarter of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct InputSize {
    pub height: u32,
    pub width: u32,
}

impl InputSize {
    /// The paper's (and mmpose's) 256×192.
    pub const DEFAULT: InputSize = InputSize { height: 256, width: 192 };

    /// The largest height or width a network input may have (a 2048×2048
    /// float input is 48 MiB; beyond it a frame takes seconds on any board).
    pub const MAX_SIDE: u32 = 2048;

    pub fn new(height: u32, width: u32) -> Result<InputSize, String> {
        if height == 0 || width == 0 || height % 32 != 0 || width % 32 != 0 {
            return Err(format!("input size {height}x{width}: height and width must be positive multiples of 32"));
        }
        if height > Self::MAX_SIDE || width > Self::MAX_SIDE {
            return Err(format!("input size {height}x{width}: larger than {} is not supported", Self::MAX_SIDE));
        }
        Ok(InputSize { height, width })
    }

    /// Heatmap size (a quarter of the input).
    pub fn heatmap(&self) -> (u32, u32) {
        (self.height / 4, self.width / 4)
    }
}

impl fmt::Display for InputSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.height, self.width)
    }
}

impl FromStr for InputSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (h, w) =
            s.split_once(['x', 'X']).ok_or_else(|| format!("input size `{s}`: expected HEIGHTxWIDTH, e.g. 256x192"))?;
        let parse = |v: &str| v.trim().parse::<u32>().map_err(|_| format!("input size `{s}`: `{v}` is not a number"));
        InputSize::new(parse(h)?, parse(w)?)
    }
}

impl Subnet {
    /// The layer graph of this subnet at `input` (RGB, 3 channels), ending in
    /// 17 heatmaps at a quarter of the input. The subnet must be structurally
    /// sound (groups divide channels); in-space subnets always are.
    pub fn network(&self, input: InputSize) -> Result<Network, SubnetError> {
        self.lower(input, None)
    }

    /// The graph, with a temporal fusion after one stage where `fusion` says.
    pub(super) fn lower(&self, input: InputSize, fusion: Option<Fusion>) -> Result<Network, SubnetError> {
        self.check_structure()?;
        let space = SearchSpace::get(self.space);
        let mut b = NetBuilder::new(Shape { c: 3, h: input.height, w: input.width });
        let features = match self.space {
            SpaceName::Mbv3 => mbv3::backbone(&mut b, self, &space, fusion),
            SpaceName::Resnet50 => resnet::backbone(&mut b, self, &space, fusion),
            SpaceName::HrnetW32 => hrnet::backbone(&mut b, self, &space, fusion),
        };
        let x = match &self.head {
            Some(head) => deconv_head(&mut b, features, head),
            None => features,
        };
        let heatmaps = final_layer(&mut b, x);
        super::temporal::skip(&mut b, heatmaps);
        Ok(b.finish())
    }

    /// What lowering needs even outside the tables (mmpose's published MBV3
    /// head is not in Table 1): stage count, depth ≥ 1, odd kernels, groups
    /// that divide their channels, a head exactly where the space has one.
    pub fn check_structure(&self) -> Result<(), SubnetError> {
        let space = SearchSpace::get(self.space);
        let fail = |place: String, message: String| Err(SubnetError { place, message });
        self.check_shape(&space)?;
        if self.stem.width == 0 {
            return fail("stem".into(), "width 0".into());
        }
        for (row, stage) in space.stages.iter().zip(&self.stages) {
            let place = format!("stage {}", row.index);
            if stage.depth == 0 {
                return fail(place, "depth must be at least 1".into());
            }
            if self.space == SpaceName::HrnetW32 && row.index > 1 && stage.depth % 4 != 0 {
                return fail(
                    place,
                    format!("depth {} is not a multiple of 4 (HRNet modules have 4 blocks)", stage.depth),
                );
            }
            for (r, c) in row.branches.iter().zip(&stage.branches) {
                let channels = r.grouped_channels(c.width, c.expansion);
                if c.width == 0 || c.expansion == 0 || c.kernel % 2 == 0 || c.group == 0 || channels % c.group != 0 {
                    return fail(place, format!("width {} expansion {} kernel {} group {}: kernel must be odd and group must divide {channels} channels", c.width, c.expansion, c.kernel, c.group));
                }
            }
        }
        match &self.head {
            Some(h) if h.width == 0 || h.group == 0 || h.width % h.group != 0 => {
                fail("head".into(), format!("group {} must divide width {}", h.group, h.width))
            }
            _ => Ok(()),
        }
    }
}

/// Three stride-2 4×4 transposed convs with BN and ReLU. The head's group
/// choice divides its width; the first deconv, whose input is the backbone's
/// output, uses gcd(group, input channels) groups (docs/search-spaces.md).
fn deconv_head(b: &mut NetBuilder, mut x: ValueId, head: &HeadChoice) -> ValueId {
    for i in 0..3 {
        let cin = b.shape(x).c;
        let conv = Conv {
            cin,
            cout: head.width,
            kernel: 4,
            stride: 2,
            pad: 1,
            groups: gcd(head.group, cin),
            bias: false,
            bn: true,
            act: Some(Act::Relu),
            transposed: true,
        };
        x = b.conv(format!("head.deconv{i}"), x, conv);
    }
    x
}

/// The 1×1 conv (with bias) to one heatmap per keypoint.
fn final_layer(b: &mut NetBuilder, x: ValueId) -> ValueId {
    let cin = b.shape(x).c;
    let conv = Conv {
        cin,
        cout: KEYPOINTS as u32,
        kernel: 1,
        stride: 1,
        pad: 0,
        groups: 1,
        bias: true,
        bn: false,
        act: None,
        transposed: false,
    };
    b.conv("head.final".into(), x, conv)
}

pub fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Squeeze width of the SE blocks (mmpose's ViPNAS MobileNetV3: channels / 4).
pub(crate) fn se_squeeze(channels: u32) -> u32 {
    (channels / 4).max(1)
}
