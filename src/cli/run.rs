//! `vipnas run`: the main job — poses from a camera, a clip or a directory.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use vipnas::runtime::budget::FrameBudget;
use vipnas::runtime::decode::Refine;
use vipnas::runtime::source::SourceSpec;
use vipnas::runtime::track::{OneEuroConfig, TrackConfig};
use vipnas::runtime::{run_frames, Estimator, RunOptions};

/// Estimate poses frame by frame: writes OUT/poses.jsonl (and OUT/overlay/*.png
/// with --overlay) and prints a summary ending in `frames=… fps=… in_budget=…%`.
#[derive(Args, Debug)]
#[command(
    args_override_self = true,
    after_help = "Examples:\n  vipnas run --overlay                          # bundled model and clip\n  vipnas run --config /etc/vipnas/vipnas.toml --frames 100\n  vipnas run --source v4l:/dev/video0 --wait-source --rotate-mb 64 --out /var/lib/vipnas\n  vipnas run --source v4l:/dev/video0@640x480 --fps 30\n  vipnas run --model models/my-subnet --source y4m:clip.y4m --frames 300\n  vipnas run --model models/my-temporal --fps 60             # key frames + temporal nets\n  vipnas run --model models/my-temporal --spatial-only       # its spatial net on every frame\n  vipnas run --model models/my-temporal --threads 2 --async-key  # key net on its own thread\n\nSources: v4l:/dev/videoN[@WxH][:YUYV|MJPG|RGB3], dir:PATH (JPEG/PNG), y4m:PATH, synthetic[:N]"
)]
pub struct RunArgs {
    /// A TOML file of these options (long names as keys, e.g. `source = "v4l:/dev/video0"`,
    /// `overlay = true`); options given on the command line override it.
    #[arg(long, value_name = "FILE")]
    #[allow(dead_code)] // expanded into options by `config::expand` before parsing
    config: Option<PathBuf>,
    /// A model bundle directory or a bare .onnx (MoveNet, heatmap models); a relative
    /// path not found here is looked for in the installation (/usr/share/vipnas/).
    #[arg(long, default_value = "models/movenet-lightning")]
    model: PathBuf,
    /// Where frames come from.
    #[arg(long, default_value = "dir:tests/data/pose2sim-cam03")]
    source: SourceSpec,
    /// Stop after N frames.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    frames: Option<u64>,
    /// Board profile (boards/NAME.toml): its threads and frame budget become the defaults.
    #[arg(long)]
    board: Option<String>,
    /// Frame budget as a frame rate (a frame within 1000/F ms is in budget);
    /// default: the board's budget, else 30.
    #[arg(long)]
    fps: Option<f64>,
    /// Output directory.
    #[arg(long, default_value = "out/run")]
    out: PathBuf,
    /// Also send every poses.jsonl line to this named pipe (mkfifo) or file as it is
    /// made, for another program; best effort: lines with no reader are dropped there.
    #[arg(long, value_name = "PATH")]
    live: Option<PathBuf>,
    /// Rotate poses.jsonl at this many megabytes: it becomes poses.jsonl.1 (replacing
    /// the one before), and a poses.jsonl already there at start is kept that way too;
    /// at most ~2×MB on disk. Default: one file, replaced at start.
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    rotate_mb: Option<u64>,
    /// A camera missing at start, or lost while running, is waited for as long as it
    /// takes (retried with back-off up to a minute, each failure logged) instead of
    /// ending the run after ~2 minutes of retries: what a service wants.
    #[arg(long)]
    wait_source: bool,
    /// Also write overlay PNGs (skeleton coloured by score).
    #[arg(long)]
    overlay: bool,
    /// Inference threads (tract's multithreaded executor when > 1); default:
    /// the board's, else 1.
    #[arg(long)]
    threads: Option<usize>,
    /// Keypoint smoothing (One-Euro) off.
    #[arg(long)]
    no_smooth: bool,
    /// A temporal bundle's spatial net on every frame (its temporal nets unused):
    /// the peer of a temporal run.
    #[arg(long)]
    spatial_only: bool,
    /// A temporal bundle on its own cycle, frame for frame, without the budget
    /// controller (by default late frames make cycles longer and nets lighter).
    #[arg(long, conflicts_with = "spatial_only")]
    fixed_cycle: bool,
    /// A temporal bundle's key net on its own thread (needs --threads 2 or more: the
    /// key net gets threads − 1, the temporal nets 1): temporal nets give every
    /// frame's pose on time, key results refresh what they propagate.
    #[arg(long, conflicts_with = "spatial_only")]
    async_key: bool,
    /// Heatmap sub-pixel refinement for every net [default: quarter for
    /// spatial nets, dark for temporal nets].
    #[arg(long, value_enum)]
    refine: Option<Refine>,
}

pub fn run_cmd(a: RunArgs) -> Result<()> {
    let board = a.board.as_deref().map(vipnas::board::BoardProfile::load).transpose()?;
    let fps = a.fps.or(board.as_ref().map(|b| b.budget.fps)).unwrap_or(30.0);
    let mut threads = a.threads.or(board.as_ref().map(|b| b.threads)).unwrap_or(1);
    FrameBudget::check_fps(fps).context("--fps")?;
    anyhow::ensure!(threads >= 1, "--threads must be at least 1");
    let cores = vipnas::runtime::engine::cores();
    if let (Some(b), None) = (&board, a.threads) {
        if threads > cores {
            log::warn!("board {} runs {threads} threads but this machine has {cores} core(s): running {cores}", b.name);
            threads = cores;
        }
    }
    anyhow::ensure!(threads <= cores, "--threads {threads}: this machine has {cores} core(s)");
    let mut source = a.source.open_at(Some(fps), a.wait_source)?;
    let track = TrackConfig { smoothing: (!a.no_smooth).then(OneEuroConfig::default), ..TrackConfig::default() };
    let budget = FrameBudget::from_fps(fps);
    let controller = (!a.fixed_cycle).then_some(budget.ms);
    let model_path = vipnas::install::data_path(&a.model);
    anyhow::ensure!(
        !a.async_key || threads >= 2,
        "--async-key needs --threads 2 or more (one for the key net's thread)"
    );
    let main_threads = if a.async_key { 1 } else { threads };
    let mut est = Estimator::load(&model_path, main_threads, track, a.spatial_only, controller)?;
    if a.async_key {
        let mut key = vipnas::runtime::PoseModel::load(&model_path, threads - 1)?;
        key.refine = a.refine.unwrap_or(key.refine);
        est.start_key_worker(key).with_context(|| format!("--async-key: {}", a.model.display()))?;
    }
    if let Some(refine) = a.refine {
        est.set_refine(refine);
    }
    let board_name = board.as_ref().map_or("host", |b| b.name.as_str());
    for warning in est.budget_warnings(board_name, budget) {
        log::warn!("{warning}");
    }
    let opts = RunOptions {
        max_frames: a.frames,
        budget,
        out_dir: a.out.clone(),
        overlay: a.overlay,
        draw_min_score: 0.3,
        live: a.live.clone(),
        rotate_bytes: a.rotate_mb.map(|mb| mb << 20),
    };
    let summary = run_frames(source.as_mut(), &mut est, &opts)?;
    outln!("model={} source={} threads={threads} out={}", a.model.display(), a.source, a.out.display());
    outln!("{summary}");
    if let Some(stop) = vipnas::shutdown::requested() {
        return Err(anyhow::Error::new(stop).context(format!("after {} frames", summary.frames)));
    }
    let s = summary.source;
    anyhow::ensure!(
        summary.frames > 0,
        "{}: no frame was processed ({} lost, {} device errors): nothing in {} is a pose",
        a.source,
        s.lost,
        s.errors,
        a.out.join("poses.jsonl").display()
    );
    Ok(())
}
