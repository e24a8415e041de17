//! `vipnas train-temporal` (host): a temporal net trained on consecutive
//! frames and written, with a key bundle, as a temporal bundle.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use vipnas::arch::{Fusion, TemporalNet};
use vipnas::bundle::{write_temporal_bundle, Provenance, Temporal, TemporalNetSpec};
use vipnas::host::temporal::{train_temporal, TemporalTrainConfig};
use vipnas::host::train::device::TrainDevice;

use super::subnet_args::SubnetArgs;

/// Train a temporal net (T-ViPNet) on consecutive video frames — frame t
/// cropped around the pose of a frame before it, that pose (noisy) as its
/// prior, frame t's labels as the target — and write a temporal bundle: the
/// key bundle's spatial net on key frames, the new net on the frames between.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  vipnas train-temporal --key models/movenet-lightning --space mbv3 --sample min --input 128x128 --fusion add@2 \\
      --coco .cache/data/splits/train.json --images .cache/data --steps 1500 --out models/movenet-temporal
  vipnas run --model models/movenet-temporal --fps 60
  vipnas eval --model models/movenet-temporal --coco tests/data/pose2sim-cam03.json --images tests/data/pose2sim-cam03")]
pub struct TrainTemporalArgs {
    /// The temporal net's subnet.
    #[command(flatten)]
    pick: SubnetArgs,
    /// Where the previous pose joins the subnet: OP@STAGE, OP one of add, concat, mul.
    #[arg(long, default_value = "add@2")]
    fusion: Fusion,
    /// The key bundle (its spatial net runs on key frames; any bundle or model with a manifest).
    #[arg(long, value_name = "DIR")]
    key: PathBuf,
    /// COCO person-keypoints file: video frames (a video: one directory, images with a
    /// `frame_index`) and stills (trained as their own previous frame).
    #[arg(long, value_name = "ANN.json")]
    coco: PathBuf,
    /// Directory the annotation's `file_name`s are relative to.
    #[arg(long, value_name = "DIR")]
    images: PathBuf,
    /// The temporal bundle to write.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    /// Adam learning rate (linear warm-up, ×0.1 at 81 % and 95 % of the run).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    #[arg(long, default_value_t = 0)]
    weight_seed: u64,
    /// Pairs up to this many frames apart (faster motion, lower frame rates).
    #[arg(long, default_value_t = 3)]
    max_gap: usize,
    /// σ of the noise on the prior's keypoints, as a fraction of the person's size.
    #[arg(long, default_value_t = 0.03)]
    jitter: f32,
    /// Probability that a prior keypoint is left out.
    #[arg(long, default_value_t = 0.1)]
    drop: f32,
    /// Initial weights for the space (e.g. the ImageNet file of `vipnas train --init`).
    #[arg(long, value_name = "FILE")]
    init: Option<PathBuf>,
    /// Frames the temporal net propagates after each key frame.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=Temporal::MAX_KEY_INTERVAL as i64))]
    key_interval: u32,
    /// Keypoints of the previous pose scoring below this stay out of the prior.
    #[arg(long, default_value_t = 0.3)]
    prior_min_score: f32,
    /// The board whose latency table predicts the net's latency
    /// (`latency_ms.<board>`); the net is also measured here as this board
    /// (`measured_ms.<board>`) when the table was measured on this machine's CPU.
    #[arg(long, value_name = "BOARD", default_value = "host")]
    board: String,
    /// Training device: cpu, or cuda[:N] (built with --features cuda).
    #[arg(long, default_value = "cpu")]
    device: TrainDevice,
    /// Bundle name (defaults to the output directory's name).
    #[arg(long)]
    name: Option<String>,
}

pub fn run(a: TrainTemporalArgs) -> Result<()> {
    let subnet = a.pick.resolve()?;
    let input = a.pick.input();
    let net = TemporalNet { subnet, fusion: a.fusion };
    net.check()?;
    let key = vipnas::bundle::Manifest::load(&a.key).with_context(|| format!("--key {}", a.key.display()))?;
    anyhow::ensure!(
        (input.width as f32 / input.height as f32 - key.input.width as f32 / key.input.height as f32).abs() < 1e-3,
        "--input {input}: the temporal net must have the key net's aspect ({}x{})",
        key.input.height,
        key.input.width
    );
    let cfg = TemporalTrainConfig {
        net: net.clone(),
        input,
        coco: a.coco.clone(),
        images: a.images.clone(),
        batch: a.batch,
        steps: a.steps,
        lr: a.lr,
        seed: a.weight_seed,
        max_gap: a.max_gap,
        jitter: a.jitter,
        drop: a.drop,
        init: a.init.clone(),
    };
    let (weights, summary) = train_temporal(&cfg, a.device, std::io::IsTerminal::is_terminal(&std::io::stderr()))?;
    outln!(
        "trained {} fused {} at {input}: {} steps on {} pairs ({} person-frames) in {:.0} s, loss {:.3e} → {:.3e}",
        net.subnet.space,
        net.fusion,
        summary.losses.len(),
        summary.pairs,
        summary.people,
        summary.seconds,
        summary.first_loss,
        summary.last_loss
    );
    let provenance = Provenance {
        created_by: format!("vipnas {}", env!("CARGO_PKG_VERSION")),
        created_at: vipnas::timestamp::utc_now_rfc3339(),
        weights: format!(
            "vipnas train-temporal: {} steps × {} on {} (seed {}){}",
            summary.losses.len(),
            a.batch,
            a.coco.display(),
            a.weight_seed,
            a.init.as_ref().map_or(String::new(), |p| format!(", initialised from {}", p.display()))
        ),
        license: None,
    };
    let (mut spec, onnx) = TemporalNetSpec::write(&net, input, &weights, 0, provenance)?;
    let board = vipnas::board::BoardProfile::load(&a.board)?;
    let (table_path, table) = super::profile::board_table(&board, None)?;
    let graph = net.network(input)?;
    // Predicted where the table covers the net's blocks (its input size and fusion).
    match table.predict(&graph, net.subnet.space) {
        Ok(p) => {
            spec.latency_ms = BTreeMap::from([(board.name.clone(), p.ms)]);
        }
        Err(e) => log::warn!("{}: no predicted latency for the temporal net: {e:#}", table_path.display()),
    }
    if let Some(ms) = vipnas::board::profiler::measure_if_here(&table, &graph)? {
        spec.measured_ms = BTreeMap::from([(board.name.clone(), ms)]);
    }
    let name = a.name.clone().unwrap_or_else(|| {
        a.out.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "temporal".into())
    });
    let losses: String = summary.losses.iter().map(|(s, l)| format!("{s}\t{l:.6e}\n")).collect();
    let temporal = Temporal::single(spec, a.key_interval, a.prior_min_score);
    let path = write_temporal_bundle(&a.key, &a.out, &name, temporal, vec![onnx])?;
    vipnas::bundle::write_atomic(&a.out.join("temporal-losses.tsv"), format!("step\tloss\n{losses}").as_bytes())?;
    outln!(
        "wrote {} (key net {}, temporal_0.onnx every {} frames after a key frame)",
        path.display(),
        key.name,
        a.key_interval
    );
    Ok(())
}
