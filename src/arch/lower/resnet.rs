//! ResNet-50 backbone (Table 2), as mmpose's `ViPNAS_ResNet`: 7×7 stem conv and
//! 3×3 max pool, Bottlenecks whose inner width is the stage width (expansion 1)
//! with the grouped k×k conv carrying the stride, a GC block (planes =
//! max(C/16, 16)) after the last BN, and a 1×1 projection shortcut where the
//! shape changes.

use crate::arch::net::{Act, NetBuilder, ValueId};
use crate::arch::space::SearchSpace;
use crate::arch::subnet::Subnet;
use crate::arch::temporal::{fuse as fuse_prior, Fusion};

pub(super) fn backbone(b: &mut NetBuilder, subnet: &Subnet, space: &SearchSpace, fusion: Option<Fusion>) -> ValueId {
    let kernel = space.stem.kernel.max;
    let x = b.conv_bn("stem.conv".into(), 0, subnet.stem.width, kernel, 2, 1, Some(Act::Relu));
    let mut x = b.max_pool("stem.pool".into(), x, 3, 2, 1);
    let mut resolution = space.stem.resolution;
    for (row, stage) in space.stages.iter().zip(&subnet.stages) {
        let choice = stage.block();
        let inner = choice.width;
        let out = choice.width * choice.expansion;
        let stride = row.branches[0].resolution / resolution;
        resolution = row.branches[0].resolution;
        for j in 0..stage.depth {
            let name = format!("stage{}.block{j}", row.index);
            let s = if j == 0 { stride } else { 1 };
            let input = x;
            let mut y = b.conv_bn(format!("{name}.conv1"), input, inner, 1, 1, 1, Some(Act::Relu));
            y = b.conv_bn(format!("{name}.conv2"), y, inner, choice.kernel, s, choice.group, Some(Act::Relu));
            y = b.conv_bn(format!("{name}.conv3"), y, out, 1, 1, 1, None);
            if choice.attention {
                y = b.gc(format!("{name}.gc"), y, gc_planes(out));
            }
            let shortcut = if s != 1 || b.shape(input).c != out {
                b.conv_bn(format!("{name}.downsample"), input, out, 1, s, 1, None)
            } else {
                input
            };
            x = b.sum(format!("{name}.add"), vec![y, shortcut], true);
        }
        x = fuse_prior(b, fusion, row.index, x);
    }
    x
}

/// mmpose/mmcv: `int(C * max(1/16, 16/C))`, evaluated in f64 exactly as Python
/// does (so that, e.g., C = 49 gives 15, not 16).
pub(crate) fn gc_planes(channels: u32) -> u32 {
    let c = channels as f64;
    (c * (1.0f64 / 16.0).max(16.0 / c)) as u32
}

#[cfg(test)]
mod tests {
    #[test]
    fn gc_planes_follow_python_float_rounding() {
        assert_eq!(super::gc_planes(80), 16);
        assert_eq!(super::gc_planes(48), 16);
        assert_eq!(super::gc_planes(49), 15);
        assert_eq!(super::gc_planes(304), 19);
        assert_eq!(super::gc_planes(608), 38);
    }
}
