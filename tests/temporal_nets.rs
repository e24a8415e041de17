//! T-ViPNets as graphs: every fusion stage and op of every space lowers,
//! costs more than its subnet alone, and runs in tract with its two inputs
//! exactly as the unfolded f64 reference does.

mod common;

use vipnas::arch::{Fusion, FusionOp, InputSize, Sample, SearchSpace, SpaceName, Subnet, TemporalNet, Weights};
use vipnas::onnx::{write_network, WriteOptions};
use vipnas::runtime::engine::{Engine, InputTensor};
use vipnas::runtime::TractEngine;

/// Every (space, stage, op) with the space's smallest subnet; under qemu
/// (~50x slower) MobileNetV3's stage 2 with each op.
fn cases() -> Vec<TemporalNet> {
    let spaces: &[SpaceName] = if common::under_qemu() { &[SpaceName::Mbv3] } else { &SpaceName::ALL };
    let mut v = Vec::new();
    for &name in spaces {
        let space = SearchSpace::get(name);
        let subnet = Subnet::sample(&space, Sample::Min);
        let stages = if common::under_qemu() { 2..=2 } else { 1..=space.stages.len() as u32 };
        for stage in stages {
            for op in FusionOp::ALL {
                v.push(TemporalNet { subnet: subnet.clone(), fusion: Fusion { stage, op } });
            }
        }
    }
    v
}

#[test]
fn temporal_nets_run_in_tract_like_the_reference() {
    let input = InputSize::new(64, 64).unwrap();
    for (i, t) in cases().into_iter().enumerate() {
        let name = format!("{}-{}", t.subnet.space, t.fusion);
        let net = t.network(input).unwrap();
        let plain = t.subnet.network(input).unwrap();
        assert_eq!(net.output_shape(), plain.output_shape(), "{name}");
        assert_eq!(net.prior().map(|s| (s.c, s.h, s.w)), Some((17, 16, 16)), "{name}");
        assert!(net.cost().flops > plain.cost().flops, "{name}: the fusion costs something");
        let weights = Weights::random(&net, i as u64);
        let model = write_network(&net, &weights, &WriteOptions::default()).unwrap();
        let mut engine = TractEngine::from_proto(&model, &[1, 3, 64, 64]).unwrap();
        assert_eq!(engine.input_shapes(), &[vec![1, 3, 64, 64], vec![1, 17, 16, 16]], "{name}");
        let x = common::test_image(3, 64, 64, i as u64);
        let prior: Vec<f32> = common::test_image(17, 16, 16, 1000 + i as u64).iter().map(|v| v.abs()).collect();
        let mut out = vec![0.0; 17 * 16 * 16];
        engine.run(&[&InputTensor::F32(x.clone()), &InputTensor::F32(prior.clone())], &mut out).unwrap();
        let reference = common::reference::forward_with_prior(&net, &weights, &x, Some(&prior));
        let scale = reference.data.iter().fold(0f64, |m, v| m.max(v.abs()));
        let diff = out.iter().zip(&reference.data).fold(0f64, |m, (a, b)| m.max((*a as f64 - b).abs()));
        assert!(scale > 1e-2 && scale < 1e3, "{name}: output scale {scale}");
        assert!(diff <= 1e-4 * (1.0 + scale), "{name}: tract differs from the reference by {diff}");
        // The prior matters: another prior, another output (well beyond the
        // numerical noise; random weights damp early fusions).
        let mut other = vec![0.0; out.len()];
        let zeros = vec![0.0; prior.len()];
        engine.run(&[&InputTensor::F32(x), &InputTensor::F32(zeros)], &mut other).unwrap();
        let changed = out.iter().zip(&other).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        println!("{name}: max change with a zero prior {changed:.2e}, tract vs reference {diff:.2e}");
        assert!(changed as f64 > 10.0 * diff.max(1e-6), "{name}: the prior changes nothing ({changed:.2e})");
    }
}

#[test]
fn a_fusion_stage_outside_the_space_is_refused_by_name() {
    let subnet = Subnet::sample(&SearchSpace::get(SpaceName::Resnet50), Sample::Min);
    for stage in [0, 5] {
        let t = TemporalNet { subnet: subnet.clone(), fusion: Fusion { stage, op: FusionOp::Add } };
        let e = t.network(InputSize::DEFAULT).unwrap_err();
        assert_eq!(e.to_string(), format!("fusion: stage {stage} is not a stage of resnet50 (1..=4)"));
    }
}

#[test]
fn fusions_parse_and_print_as_op_at_stage() {
    let f: Fusion = "concat@3".parse().unwrap();
    assert_eq!(f, Fusion { stage: 3, op: FusionOp::Concat });
    assert_eq!(f.to_string(), "concat@3");
    assert_eq!("ADD@1".parse::<Fusion>().unwrap().op, FusionOp::Add);
    assert_eq!("add".parse::<Fusion>().unwrap_err(), "fusion `add`: expected OP@STAGE, e.g. add@2");
    assert_eq!("sub@2".parse::<Fusion>().unwrap_err(), "fusion `sub@2`: op `sub` is not one of add, concat, mul");
    assert_eq!("mul@x".parse::<Fusion>().unwrap_err(), "fusion `mul@x`: stage `x` is not a number");
}
