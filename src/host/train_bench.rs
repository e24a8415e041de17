//! `vipnas bench train`: one supernet training step of a subnet — forward
//! with batch-statistics BatchNorm, MSE against heatmap targets, backward
//! through the weight slicing, Adam — on burn's Flex CPU backend, against
//! PyTorch CPU running the same layer graph (benches/train_step.py) with the
//! same batch and thread count. Also a whole sandwich step (max, min and
//! random subnets, in-place distillation) as `vipnas train` runs it.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};

use super::bench::median;
use super::supernet::{Norm, Supernet};
use crate::arch::{InputSize, Network, Subnet, SupernetLayout};

/// Median time of one step and the last loss.
#[derive(Clone, Copy, Debug)]
pub struct StepTiming {
    pub ms: f64,
    pub loss: f64,
}

impl StepTiming {
    /// Parses `ms_per_step=… loss=…` (what the child processes print).
    pub fn parse(text: &str) -> Option<StepTiming> {
        let line = text.lines().rev().find(|l| l.starts_with("ms_per_step="))?;
        let mut ms = None;
        let mut loss = None;
        for kv in line.split_whitespace() {
            match kv.split_once('=') {
                Some(("ms_per_step", v)) => ms = v.parse().ok(),
                Some(("loss", v)) => loss = v.parse().ok(),
                _ => {}
            }
        }
        Some(StepTiming { ms: ms?, loss: loss? })
    }
}

/// Times `steps` training steps of `subnet` inside its supernet on burn
/// (threads: `RAYON_NUM_THREADS` of this process), after `warmup`.
pub fn burn_step(subnet: &Subnet, input: InputSize, batch: usize, warmup: usize, steps: usize) -> Result<StepTiming> {
    let device = Device::flex().autodiff();
    device.seed(0);
    let layout = SupernetLayout::of(subnet.space, input)?;
    let weights = layout.training_weights(0);
    let mut sn = Supernet::from_weights(layout, &weights, &device)?;
    let net = subnet.network(input)?;
    let out = net.output_shape();
    let mut optim = AdamConfig::new().with_epsilon(1e-8).init();
    let (h, w) = (input.height as usize, input.width as usize);
    let x: Tensor<4> = Tensor::random([batch, 3, h, w], Distribution::Normal(0.0, 1.0), &device);
    let target: Tensor<4> =
        Tensor::random([batch, out.c as usize, out.h as usize, out.w as usize], Distribution::Default, &device);
    let mut times = Vec::new();
    let mut loss_value = 0.0;
    for i in 0..warmup + steps {
        let t0 = Instant::now();
        let y = sn.forward(&net, x.clone(), Norm::Batch, None);
        let loss = (y - target.clone()).powi_scalar(2).mean();
        let grads = loss.backward();
        let grads = GradientsParams::from_grads(grads, &sn.params);
        sn.params = optim.step(1e-3, sn.params, grads);
        loss_value = loss.into_scalar::<f32>() as f64;
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(StepTiming { ms: median(times), loss: loss_value })
}

/// Times `steps` sandwich steps exactly as `vipnas train` runs them (max on
/// targets, the others distilled from it, our Adam), after `warmup`. `nets[0]`
/// is the max subnet.
pub fn burn_sandwich(
    layout: SupernetLayout,
    nets: &[Network],
    batch: usize,
    warmup: usize,
    steps: usize,
) -> Result<StepTiming> {
    use super::sandwich::{sandwich_loss, Batch};
    use super::train::optim::{Adam, AdamConfig as Constants};
    let device = Device::flex().autodiff();
    device.seed(0);
    let input = layout.input;
    let weights = layout.training_weights(0);
    let mut sn = Supernet::from_weights(layout, &weights, &device)?;
    let mut adam = Adam::new(Constants::default(), &sn);
    let (h, w) = (input.height as usize, input.width as usize);
    let batch = Batch {
        x: Tensor::random([batch, 3, h, w], Distribution::Normal(0.0, 1.0), &device),
        targets: Tensor::random([batch, 17, h / 4, w / 4], Distribution::Default, &device),
        weights: Tensor::ones([batch, 17, 1, 1], &device),
        dense: None,
    };
    let (mut times, mut loss_value) = (Vec::new(), 0.0);
    for i in 0..warmup + steps {
        let t0 = Instant::now();
        let loss = sandwich_loss(&sn, nets, &batch);
        let grads = loss.total.backward();
        adam.step(&mut sn, &grads, 1e-3);
        loss_value = loss.each.iter().sum::<f32>() as f64;
        if i >= warmup {
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    Ok(StepTiming { ms: median(times), loss: loss_value })
}

/// The same step in PyTorch (one net: a plain step; several: the sandwich,
/// first = max); `Err` with the reason when torch is missing.
pub fn torch_step(
    python: &str,
    script: &Path,
    nets: &[Network],
    batch: usize,
    threads: usize,
    warmup: usize,
    steps: usize,
) -> Result<std::result::Result<StepTiming, String>> {
    let dir = std::env::temp_dir().join(format!("vipnas-train-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut specs = Vec::new();
    for (i, net) in nets.iter().enumerate() {
        let spec = dir.join(format!("net{i}.json"));
        std::fs::write(&spec, serde_json::to_vec(net)?)?;
        specs.push(spec.display().to_string());
    }
    let out = Command::new(python)
        .arg(script)
        .arg(specs.join(","))
        .args([batch, threads, warmup, steps].map(|v| v.to_string()))
        .env("OMP_NUM_THREADS", threads.to_string())
        .output()
        .with_context(|| format!("cannot start {python}"))?;
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if err.contains("No module named 'torch'") {
            return Ok(Err(format!("{python} has no torch (scripts/bench-train.sh installs it)")));
        }
        bail!("{}: {err}", script.display());
    }
    Ok(StepTiming::parse(&text).ok_or_else(|| format!("{}: no ms_per_step in its output", script.display())))
}
