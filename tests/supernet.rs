//! Weight sharing, numerically: a subnet's forward pass inside the burn
//! supernet equals tract running the ONNX written from its sliced weights (a
//! standalone network), on real frames; gradients reach exactly the slices a
//! subnet uses.

mod common;

use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};
use vipnas::arch::{InputSize, Sample, SearchSpace, SpaceName, Subnet, SupernetLayout};
use vipnas::host::supernet::{Norm, Supernet};
use vipnas::onnx::{write_network, WriteOptions};
use vipnas::runtime::TractEngine;

fn subnets(space: SpaceName) -> Vec<(String, Subnet)> {
    let s = SearchSpace::get(space);
    let mut v =
        vec![("max".to_string(), Subnet::sample(&s, Sample::Max)), ("min".into(), Subnet::sample(&s, Sample::Min))];
    let randoms = if common::under_qemu() { 1 } else { 3 };
    for seed in 0..randoms {
        v.push((format!("random{seed}"), Subnet::sample(&s, Sample::Random(100 + seed))));
    }
    v
}

#[test]
fn subnets_in_the_supernet_equal_their_exported_onnx_in_tract() {
    let input = InputSize::new(128, 96).unwrap();
    let device = Device::flex();
    let shape = [1, 3, input.height as usize, input.width as usize];
    for (k, space) in SpaceName::ALL.into_iter().enumerate() {
        let layout = SupernetLayout::of(space, input).unwrap();
        let weights = layout.random_weights(k as u64).unwrap();
        let supernet = Supernet::from_weights(layout, &weights, &device).unwrap();
        for (i, (name, subnet)) in subnets(space).into_iter().enumerate() {
            let net = subnet.network(input).unwrap();
            let standalone = weights.slice_for(&net).unwrap();
            let model = write_network(&net, &standalone, &WriteOptions::default()).unwrap();
            let mut engine = TractEngine::from_proto(&model, &shape).unwrap();
            let x = common::real_image(input, 7 * i);
            let (_, want) = engine.run_f32(&x).unwrap();
            let xt: Tensor<4> = Tensor::from_data(TensorData::new(x, shape), &device);
            let got = supernet.forward(&net, xt, Norm::Running, None).into_data().try_to_vec::<f32>().unwrap();
            assert_eq!(got.len(), want.len());
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            println!("{space} {name}: max|supernet - tract| = {diff:.2e} (max|out| {scale:.3})");
            assert!(scale > 1e-2, "{space} {name}: output scale {scale}");
            assert!(diff <= 1e-4, "{space} {name}: the supernet's forward differs from tract by {diff}");
        }
    }
}

#[test]
fn gradients_reach_exactly_the_slices_a_subnet_uses() {
    let input = InputSize::new(64, 64).unwrap();
    let device = Device::flex().autodiff();
    let layout = SupernetLayout::of(SpaceName::Mbv3, input).unwrap();
    let weights = layout.training_weights(3);
    let supernet = Supernet::from_weights(layout.clone(), &weights, &device).unwrap();
    let subnet = Subnet::sample(&SearchSpace::get(SpaceName::Mbv3), Sample::Min);
    let net = subnet.network(input).unwrap();
    let x: Tensor<4> = Tensor::from_data(TensorData::new(common::test_image(3, 64, 64, 1), [1, 3, 64, 64]), &device);
    let loss = supernet.forward(&net, x, Norm::Batch, None).powi_scalar(2).mean();
    let grads = loss.backward();
    // The min subnet's stage-2 depthwise conv: a centred crop of the supernet's kernel.
    let name = "stage2.block0.dw.weight";
    let used = net.nodes.iter().find(|n| format!("{}.weight", n.name) == name).unwrap();
    let vipnas::arch::net::Op::Conv(c) = used.op else { panic!() };
    let big = layout.params[name].shape.clone();
    let i = layout.params.keys().position(|n| n == name).unwrap();
    let trainable_before = layout.params.iter().take(i).filter(|(n, _)| !n.contains("running_")).count();
    let g = supernet.params.tensors[trainable_before].grad(&grads).unwrap().into_data().try_to_vec::<f32>().unwrap();
    let [o, ci, k] = [c.cout as usize, (c.cin / c.groups) as usize, c.kernel as usize];
    let off = (big[2] - k) / 2;
    let (mut inside, mut outside) = (0f32, 0f32);
    for (flat, v) in g.iter().enumerate() {
        let (a, rest) = (flat / (big[1] * big[2] * big[3]), flat % (big[1] * big[2] * big[3]));
        let (b, rest) = (rest / (big[2] * big[3]), rest % (big[2] * big[3]));
        let (y, xk) = (rest / big[3], rest % big[3]);
        let used = a < o && b < ci && (off..off + k).contains(&y) && (off..off + k).contains(&xk);
        if used {
            inside = inside.max(v.abs());
        } else {
            outside = outside.max(v.abs());
        }
    }
    println!(
        "{name}: supernet {big:?}, subnet uses [{o}, {ci}, {k}, {k}]: max|grad| inside {inside:.3e}, outside {outside}"
    );
    assert!(k < big[2], "the min subnet crops the kernel");
    assert!(inside > 0.0, "the used slice gets gradient");
    assert_eq!(outside, 0.0, "nothing outside the slice moves");
}

#[test]
fn bn_recalibration_on_one_batch_reproduces_training_mode_outputs() {
    let input = InputSize::new(64, 64).unwrap();
    let device = Device::flex();
    let layout = SupernetLayout::of(SpaceName::Mbv3, input).unwrap();
    let weights = layout.random_weights(5).unwrap();
    let mut supernet = Supernet::from_weights(layout, &weights, &device).unwrap();
    let net = Subnet::sample(&SearchSpace::get(SpaceName::Mbv3), Sample::Random(9)).network(input).unwrap();
    let batch: Vec<f32> = (0..4).flat_map(|i| common::test_image(3, 64, 64, 20 + i)).collect();
    let x: Tensor<4> = Tensor::from_data(TensorData::new(batch, [4, 3, 64, 64]), &device);
    let train = supernet.forward(&net, x.clone(), Norm::Batch, None).into_data().try_to_vec::<f32>().unwrap();
    let before = supernet.forward(&net, x.clone(), Norm::Running, None).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(supernet.recalibrate(&net, [x.clone()]).unwrap(), 1);
    let after = supernet.forward(&net, x, Norm::Running, None).into_data().try_to_vec::<f32>().unwrap();
    let diff = |a: &[f32], b: &[f32]| a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    println!("max|running - batch|: before {:.3e}, after {:.3e}", diff(&before, &train), diff(&after, &train));
    assert!(diff(&before, &train) > 1e-2, "random running statistics differ from the batch's");
    assert!(diff(&after, &train) < 1e-4, "recalibrated statistics reproduce training mode");
}

#[test]
fn sandwich_steps_on_real_frames_lower_every_subnets_loss() {
    use vipnas::arch::rng::Rng;
    use vipnas::bundle::InputSpec;
    use vipnas::host::dataset::{prepare, Augment, TrainSet};
    use vipnas::host::sandwich::{sandwich_loss, Batch};
    use vipnas::runtime::engine::InputTensor;

    let input = InputSize::new(64, 64).unwrap();
    let device = Device::flex().autodiff();
    let clip = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pose2sim-cam03");
    let set = TrainSet::load(&clip.with_extension("json"), &clip).unwrap();
    let spec = InputSpec::for_subnet(input);
    let (b, plane) = (4, 16 * 16);
    let (mut xs, mut ts, mut ws) = (Vec::new(), vec![0f32; b * 17 * plane], Vec::new());
    let mut frame = vipnas::runtime::Frame::default();
    let mut rng = Rng::new(1);
    for i in 0..b {
        let mut x = InputTensor::for_spec(&spec);
        let mut w = [0f32; 17];
        let s = &set.samples[i * 12];
        prepare(
            s,
            &spec,
            &Augment::default(),
            None,
            &mut rng,
            &mut frame,
            &mut x,
            &mut ts[i * 17 * plane..(i + 1) * 17 * plane],
            &mut w,
        )
        .unwrap();
        let InputTensor::F32(x) = x else { panic!() };
        xs.extend(x);
        ws.extend(w);
    }
    let batch = Batch::from_host(xs, ts, ws, (b, 64, 64), &device);
    let layout = SupernetLayout::of(SpaceName::Mbv3, input).unwrap();
    // He-normal everywhere, the heatmap layer included (training proper starts it
    // near zero): every subnet starts far from its target, so each loss must fall.
    let start = vipnas::arch::Weights::for_training(layout.params.values().cloned(), 0);
    let mut sn = Supernet::from_weights(layout.clone(), &start, &device).unwrap();
    let space = SearchSpace::get(SpaceName::Mbv3);
    let nets: Vec<_> = [Sample::Max, Sample::Min, Sample::Random(4)]
        .into_iter()
        .map(|s| Subnet::sample(&space, s).network(input).unwrap())
        .collect();
    let mut optim = burn::optim::AdamConfig::new().with_epsilon(1e-8).init();
    let mut history = Vec::new();
    let steps = 8;
    for _ in 0..steps {
        let loss = sandwich_loss(&sn, &nets, &batch);
        history.push(loss.each.clone());
        let grads = burn::optim::GradientsParams::from_grads(loss.total.backward(), &sn.params);
        sn.params = optim.step(2e-3, sn.params, grads);
    }
    let (first, last) = (&history[0], &history[history.len() - 1]);
    println!("losses (max, min, random) first {first:?} last {last:?}");
    for (k, (a, b)) in first.iter().zip(last).enumerate() {
        assert!(b < &(a * 0.7), "subnet {k}: loss {a} -> {b} did not fall");
    }
}

#[test]
fn subnets_outside_the_tables_are_refused_by_name() {
    let input = InputSize::new(64, 64).unwrap();
    let layout = SupernetLayout::of(SpaceName::Mbv3, input).unwrap();
    let supernet = Supernet::from_weights(layout.clone(), &layout.random_weights(0).unwrap(), &Device::flex()).unwrap();
    let sampled = Subnet::sample(&SearchSpace::get(SpaceName::Mbv3), Sample::Random(3)).network(input).unwrap();
    supernet.check(&sampled).unwrap();
    // mmpose's published subnet: its head (160 channels in 160 groups) is outside
    // Table 1's head rows, but its tensors are still slices of the supernet's.
    let published = vipnas::arch::published::published(SpaceName::Mbv3).unwrap().subnet.network(input).unwrap();
    supernet.check(&published).unwrap();
    // A stem wider than Table 1 allows is not.
    let mut wide = Subnet::sample(&SearchSpace::get(SpaceName::Mbv3), Sample::Max);
    wide.stem.width += 8;
    let e = format!("{:#}", supernet.check(&wide.network(input).unwrap()).unwrap_err());
    assert!(e.starts_with("`stem.conv.weight` of shape [") && e.contains("is not a slice of the supernet's"), "{e}");
    println!("{e}");
}
