//! The ViPNAS subnets OpenMMLab publishes (mmpose `ViPNAS_MobileNetV3` and
//! `ViPNAS_ResNet` defaults with the `ViPNASHead` of the COCO 256×192 topdown
//! heatmap configs), with the complexity mmpose's model zoo reports for them.
//! They check our lowering and counting against an outside source.

use super::space::SpaceName;
use super::subnet::{BlockChoice, HeadChoice, StageChoice, StemChoice, Subnet};

/// A published subnet and what its publisher reports.
pub struct Published {
    pub subnet: Subnet,
    /// GFLOPs at 256×192, mmcv convention.
    pub gflops: f64,
    /// Millions of parameters.
    pub mparams: f64,
    pub source: &'static str,
}

fn stage(depth: u32, width: u32, kernel: u32, group: u32, attention: bool, expansion: u32) -> StageChoice {
    StageChoice { depth, branches: vec![BlockChoice { width, kernel, group, attention, expansion }] }
}

/// mmpose's published subnet of a space, if there is one.
pub fn published(space: SpaceName) -> Option<Published> {
    match space {
        SpaceName::Mbv3 => Some(Published {
            // Backbone: wid/expan/dep/ks/group/att defaults of ViPNAS_MobileNetV3.
            // Head: deconv_out_channels=(160,160,160), deconv_num_groups=(160,160,160).
            // That head is outside Table 1 (whose deconv width is fixed at 256).
            subnet: Subnet {
                space,
                stem: StemChoice { width: 16 },
                stages: vec![
                    stage(1, 16, 3, 8, true, 1),
                    stage(4, 24, 7, 120, true, 5),
                    stage(4, 40, 7, 20, false, 4),
                    stage(4, 80, 5, 100, true, 5),
                    stage(4, 112, 7, 280, true, 5),
                    stage(4, 160, 5, 240, true, 6),
                ],
                head: Some(HeadChoice { width: 160, group: 160 }),
            },
            gflops: 0.76,
            mparams: 5.9,
            source: "mmpose td-hm_vipnas-mbv3_8xb64-210e_coco-256x192 (vipnas_mbv3.py defaults)",
        }),
        SpaceName::Resnet50 => Some(Published {
            // ViPNAS_ResNet defaults: wid=[48,80,160,304,608], dep=[_,4,6,7,3],
            // ks=[7,3,5,5,5], group=[_,16,16,16,16], att=[_,T,F,T,T], expan 1.
            // Head: ViPNASHead defaults (144,144,144) channels, 16 groups.
            subnet: Subnet {
                space,
                stem: StemChoice { width: 48 },
                stages: vec![
                    stage(4, 80, 3, 16, true, 1),
                    stage(6, 160, 5, 16, false, 1),
                    stage(7, 304, 5, 16, true, 1),
                    stage(3, 608, 5, 16, true, 1),
                ],
                head: Some(HeadChoice { width: 144, group: 16 }),
            },
            gflops: 1.49,
            mparams: 7.29,
            source: "mmpose td-hm_vipnas-res50_8xb64-210e_coco-256x192 (vipnas_resnet.py defaults)",
        }),
        SpaceName::HrnetW32 => None,
    }
}
