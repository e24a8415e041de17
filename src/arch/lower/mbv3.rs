//! MobileNetV3 backbone (Table 1), block for block as mmpose's
//! `ViPNAS_MobileNetV3`: HSwish stem, inverted residuals with a 1×1 expansion
//! conv even at expansion 1, SE (ReLU / HSigmoid, squeeze = inner / 4) after
//! the grouped middle conv, ReLU in stages 1–3 and HSwish in 4–6.

use super::se_squeeze;
use crate::arch::net::{Act, NetBuilder, ValueId};
use crate::arch::space::SearchSpace;
use crate::arch::subnet::Subnet;
use crate::arch::temporal::{fuse as fuse_prior, Fusion};

const STAGE_ACT: [Act; 6] = [Act::Relu, Act::Relu, Act::Relu, Act::HSwish, Act::HSwish, Act::HSwish];

pub(super) fn backbone(b: &mut NetBuilder, subnet: &Subnet, space: &SearchSpace, fusion: Option<Fusion>) -> ValueId {
    let mut x = b.conv_bn("stem.conv".into(), 0, subnet.stem.width, 3, 2, 1, Some(Act::HSwish));
    let mut resolution = space.stem.resolution;
    for (i, (row, stage)) in space.stages.iter().zip(&subnet.stages).enumerate() {
        let choice = stage.block();
        let act = Some(STAGE_ACT[i]);
        let inner = choice.width * choice.expansion;
        let stride = row.branches[0].resolution / resolution;
        resolution = row.branches[0].resolution;
        for j in 0..stage.depth {
            let name = format!("stage{}.block{j}", row.index);
            let s = if j == 0 { stride } else { 1 };
            let input = x;
            let mut y = b.conv_bn(format!("{name}.expand"), input, inner, 1, 1, 1, act);
            y = b.conv_bn(format!("{name}.dw"), y, inner, choice.kernel, s, choice.group, act);
            if choice.attention {
                y = b.se(format!("{name}.se"), y, se_squeeze(inner), Act::HSigmoid);
            }
            y = b.conv_bn(format!("{name}.project"), y, choice.width, 1, 1, 1, None);
            x = if s == 1 && b.shape(input).c == choice.width {
                b.sum(format!("{name}.add"), vec![input, y], false)
            } else {
                y
            };
        }
        x = fuse_prior(b, fusion, row.index, x);
    }
    x
}
