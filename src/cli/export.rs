//! `vipnas export`: write a model bundle (manifest + ONNX) for a subnet,
//! with trained weights from a checkpoint or seeded random ones.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use vipnas::arch::Weights;
use vipnas::bundle::{write_bundle, Manifest, SPATIAL_ONNX};
use vipnas::onnx::{to_bytes, write_network, WriteOptions};

use super::subnet_args::SubnetArgs;

/// Write a model bundle: manifest.json + spatial.onnx (BatchNorm folded).
/// With --checkpoint the subnet's weights are cut from the trained supernet
/// after BatchNorm recalibration; without, they are random (seeded): for
/// profiling and tests.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  vipnas export --checkpoint runs/mbv3/checkpoint.vnck --sample max --out models/mbv3-max
  vipnas export --checkpoint runs/mbv3/checkpoint.vnck --subnet searched.json --out models/pi4
  vipnas export --space mbv3 --sample random --seed 1 --out /tmp/b
  vipnas export --checkpoint runs/mbv3/checkpoint.vnck --weights-only --out models/mbv3-supernet")]
pub struct ExportArgs {
    #[command(flatten)]
    pick: SubnetArgs,
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A training checkpoint (`vipnas train`): trained weights, the run's input size.
    #[arg(long, value_name = "FILE")]
    checkpoint: Option<PathBuf>,
    /// Images for BatchNorm recalibration (with --checkpoint).
    #[arg(long, default_value_t = 256, requires = "checkpoint")]
    calib_images: usize,
    /// Recalibrate on this COCO file instead of the run's training set (with --calib-dir).
    #[arg(long, value_name = "ANN.json", requires_all = ["checkpoint", "calib_dir"])]
    calib_coco: Option<PathBuf>,
    /// The images of --calib-coco.
    #[arg(long, value_name = "DIR", requires = "calib_coco")]
    calib_dir: Option<PathBuf>,
    /// Seed of the random weights (without --checkpoint).
    #[arg(long, default_value_t = 0, conflicts_with = "checkpoint")]
    weight_seed: u64,
    /// Write the whole trained supernet without the optimiser's state, in half
    /// floats (`DIR/supernet.vnck`, a sixth of the checkpoint): what `train
    /// --init`, `export --checkpoint` and `search --checkpoint` read; not resumable.
    #[arg(long, requires = "checkpoint", conflicts_with_all = ["subnet", "sample", "published", "board", "calib_coco"])]
    weights_only: bool,
    /// Bundle name (defaults to the output directory's name).
    #[arg(long)]
    name: Option<String>,
    /// Write this board's predicted latency into the manifest (`latency_ms.<board>`),
    /// from its latency table (which must hold the subnet's blocks), and, when
    /// that table was measured on this machine's CPU, the latency measured here
    /// (`measured_ms.<board>`).
    #[arg(long, value_name = "BOARD")]
    board: Option<String>,
}

/// `latency_ms` and `measured_ms` for the manifest, if a board is asked for:
/// its table's prediction, and the subnet measured here when that table was
/// measured on this machine's CPU.
fn board_latency(
    board: Option<&str>,
    subnet: &vipnas::arch::Subnet,
    input: vipnas::arch::InputSize,
) -> Result<(BTreeMap<String, f64>, BTreeMap<String, f64>)> {
    let Some(name) = board else { return Ok(Default::default()) };
    let board = vipnas::board::BoardProfile::load(name)?;
    let (path, table) = super::profile::board_table(&board, None)?;
    let net = subnet.network(input)?;
    let p = table
        .predict(&net, subnet.space)
        .with_context(|| format!("{}: no prediction for --board {}", path.display(), board.name))?;
    let measured = vipnas::board::profiler::measure_if_here(&table, &net)?;
    Ok((BTreeMap::from([(board.name.clone(), p.ms)]), measured.map(|ms| (board.name, ms)).into_iter().collect()))
}

pub fn run(mut a: ExportArgs) -> Result<()> {
    let name = a.name.clone().unwrap_or_else(|| {
        a.out.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "bundle".into())
    });
    if let Some(ckpt) = a.checkpoint.clone() {
        return from_checkpoint(&mut a, &ckpt, &name);
    }
    let subnet = a.pick.resolve()?;
    let input = a.pick.input();
    let net = subnet.network(input)?;
    let weights = Weights::random(&net, a.weight_seed);
    let opts =
        WriteOptions { doc: subnet.to_string(), graph_name: format!("vipnas-{}", subnet.space), ..Default::default() };
    let model = write_network(&net, &weights, &opts)?;
    let cost = net.cost();
    let mut manifest = Manifest::for_subnet(&name, &subnet, input, cost, format!("random (seed {})", a.weight_seed));
    (manifest.latency_ms, manifest.measured_ms) = board_latency(a.board.as_deref(), &subnet, input)?;
    let path = write_bundle(&a.out, &manifest, &[(SPATIAL_ONNX, to_bytes(&model))])?;
    outln!(
        "wrote {} ({} {}, {} nodes, flops={:.4}G params={:.4}M)",
        path.display(),
        subnet.space,
        input,
        model.graph.as_ref().map_or(0, |g| g.node.len()),
        cost.gflops(),
        cost.mparams()
    );
    Ok(())
}

#[cfg(feature = "host")]
fn from_checkpoint(a: &mut ExportArgs, ckpt: &std::path::Path, name: &str) -> Result<()> {
    use vipnas::host::train::checkpoint::Checkpoint;
    use vipnas::host::train::export::{BundleNotes, Calibration, Exporter};
    if a.weights_only {
        return weights_only(ckpt, &a.out);
    }
    let config = Checkpoint::read_header(ckpt)?.config;
    if let Some(input) = a.pick.input {
        anyhow::ensure!(
            input == config.input,
            "--input {input}: checkpoint {} was trained at {}; its subnets export at that size",
            ckpt.display(),
            config.input
        );
    }
    if a.pick.subnet.is_none() {
        a.pick.space.get_or_insert(config.space);
    }
    let subnet = a.pick.resolve()?;
    let calib = Calibration { set: a.calib_coco.clone().zip(a.calib_dir.clone()), images: a.calib_images };
    let (latency_ms, measured_ms) = board_latency(a.board.as_deref(), &subnet, config.input)?;
    let notes = BundleNotes { latency_ms, measured_ms, ..Default::default() };
    let path = Exporter::open(ckpt, &calib)?.export(&subnet, &a.out, name, &notes)?;
    let cost = subnet.network(config.input)?.cost();
    outln!(
        "wrote {} ({} {}, trained, flops={:.4}G params={:.4}M)",
        path.display(),
        subnet.space,
        config.input,
        cost.gflops(),
        cost.mparams()
    );
    Ok(())
}

/// `--weights-only`: the checkpoint without Adam's moments, as f16, provenance resolved.
#[cfg(feature = "host")]
fn weights_only(ckpt: &std::path::Path, out: &std::path::Path) -> Result<()> {
    use vipnas::host::train::checkpoint::Checkpoint;
    let c = Checkpoint::load(ckpt)?;
    let provenance = vipnas::host::train::init::provenance(ckpt, &c.header)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let path = out.join("supernet.vnck");
    let (step, space) = (c.header.step, c.header.config.space);
    c.weights_only(provenance).save(&path)?;
    let mb = |p: &std::path::Path| std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / 1e6);
    outln!(
        "wrote {} ({space} supernet at step {step}, weights only, f16: {:.1} MB of the checkpoint's {:.1} MB)",
        path.display(),
        mb(&path),
        mb(ckpt)
    );
    Ok(())
}

#[cfg(not(feature = "host"))]
fn from_checkpoint(_: &mut ExportArgs, _: &std::path::Path, _: &str) -> Result<()> {
    anyhow::bail!("--checkpoint needs the host build (cargo build --release --features host)")
}
