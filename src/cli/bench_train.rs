//! `vipnas bench train`: burn (ours) vs PyTorch (peer), one supernet training
//! step of the same subnet, batch and thread count, back to back.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use vipnas::arch::{InputSize, Sample, SearchSpace, SpaceName, Subnet, SupernetLayout};
use vipnas::host::train::TrainConfig;
use vipnas::host::train_bench::{burn_sandwich, burn_step, torch_step, StepTiming};

/// Training-step benchmark against PyTorch CPU.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  scripts/bench-train.sh                 # installs PyTorch into .cache/venv-torch, then runs this\n  vipnas bench train --batch 16 --input 256x192 --threads 1,2\n\nThe peer runs benches/train_step.py with $VIPNAS_TORCH_PYTHON (default .cache/venv-torch/bin/python)."
)]
pub struct TrainArgs {
    #[arg(long, default_value = "mbv3")]
    space: SpaceName,
    /// The subnets one step trains.
    #[arg(long, value_enum, default_value_t = StepSubnets::Max)]
    sample: StepSubnets,
    #[arg(long, default_value = "256x192")]
    input: InputSize,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// Timed steps (the median is reported).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Repository root (peer script).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Internal: measure burn only, in this process (its thread count is fixed at start).
    #[arg(long, hide = true)]
    child: bool,
}

/// What one benchmarked training step trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum StepSubnets {
    /// The space's largest subnet.
    Max,
    /// The space's smallest subnet.
    Min,
    /// A whole `vipnas train` step: max, min, 2 random subnets, distillation.
    Sandwich,
}

pub fn run(a: TrainArgs) -> Result<()> {
    let space = SearchSpace::get(a.space);
    let sample = a.sample.to_possible_value().expect("no variant is skipped");
    let sample = sample.get_name();
    let subnets = match a.sample {
        StepSubnets::Max => vec![Subnet::sample(&space, Sample::Max)],
        StepSubnets::Min => vec![Subnet::sample(&space, Sample::Min)],
        // The subnets of step 0 of a default `vipnas train` run.
        StepSubnets::Sandwich => TrainConfig::new(a.space, "-".into(), "-".into(), 1).subnets(0),
    };
    let nets: Vec<_> = subnets.iter().map(|s| s.network(a.input)).collect::<Result<_, _>>()?;
    if a.child {
        let t = if nets.len() > 1 {
            burn_sandwich(SupernetLayout::of(a.space, a.input)?, &nets, a.batch, a.warmup, a.steps)?
        } else {
            burn_step(&subnets[0], a.input, a.batch, a.warmup, a.steps)?
        };
        outln!("ms_per_step={:.2} loss={:.5}", t.ms, t.loss);
        return Ok(());
    }
    let python = std::env::var("VIPNAS_TORCH_PYTHON").unwrap_or_else(|_| {
        let venv = a.repo.join(".cache/venv-torch/bin/python");
        if venv.exists() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    });
    let script = a.repo.join("benches/train_step.py");
    outln!(
        "== one training step, {} {} ({} subnets) at {}, batch {} (median of {} after {} warm-up; ms); ratio = burn / PyTorch",
        a.space,
        sample,
        nets.len(),
        a.input,
        a.batch,
        a.steps,
        a.warmup
    );
    outln!(
        "{:>7} {:>10} {:>10} {:>8} {:>14} {:>14}",
        "threads",
        "burn",
        "pytorch",
        "ratio",
        "burn img/s",
        "torch img/s"
    );
    let exe = std::env::current_exe()?;
    for &t in &a.threads {
        // Flex sizes its thread pool once per process: one child per count.
        let out = Command::new(&exe)
            .args(["bench", "train", "--child", "--space", a.space.as_str(), "--sample", sample])
            .args(["--input", &a.input.to_string(), "--batch", &a.batch.to_string()])
            .args(["--warmup", &a.warmup.to_string(), "--steps", &a.steps.to_string()])
            .env("RAYON_NUM_THREADS", t.to_string())
            .output()
            .context("cannot start the burn measurement")?;
        let ours = StepTiming::parse(&String::from_utf8_lossy(&out.stdout))
            .with_context(|| format!("burn child failed: {}", String::from_utf8_lossy(&out.stderr)))?;
        let peer = torch_step(&python, &script, &nets, a.batch, t, a.warmup, a.steps)?;
        let ips = |ms: f64| a.batch as f64 * 1e3 / ms;
        match peer {
            Ok(p) => outln!(
                "{t:>7} {:>10.1} {:>10.1} {:>7.2}x {:>14.2} {:>14.2}",
                ours.ms,
                p.ms,
                ours.ms / p.ms,
                ips(ours.ms),
                ips(p.ms)
            ),
            Err(why) => {
                outln!("{t:>7} {:>10.1} {:>10} {:>8} {:>14.2} {:>14}", ours.ms, "n/a", "n/a", ips(ours.ms), "n/a");
                eprintln!("peer skipped: {why}");
            }
        }
    }
    Ok(())
}
