//! `vipnas bench` (host): tract vs onnxruntime, pipeline stage costs, tract's
//! per-op profile. Prints ratios measured in one run.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use vipnas::arch::{InputSize, SpaceName};
use vipnas::board::{BoardProfile, LatencyTable};
use vipnas::host::bench::{
    default_models, op_profile, ort_latency, peer_python, pipeline_stages, tract_latency, LatencyRow,
};
use vipnas::host::latency_bench::{error_stats, evaluate, scatter};
use vipnas::runtime::grouped_conv::{kernel::active_isa, KERNEL_VERSION};
use vipnas::runtime::Convolutions;

/// Benchmarks that print ratios against a peer measured in the same run.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    kind: BenchKind,
}

#[derive(clap::Subcommand, Debug)]
enum BenchKind {
    Runtime(RuntimeArgs),
    Latency(LatencyArgs),
    Peers(PeersArgs),
    Train(super::bench_train::TrainArgs),
    Temporal(TemporalArgs),
}

pub fn run(a: BenchArgs) -> Result<()> {
    match a.kind {
        BenchKind::Runtime(r) => run_runtime(r),
        BenchKind::Latency(l) => run_latency(l),
        BenchKind::Peers(p) => run_peers(p),
        BenchKind::Train(t) => super::bench_train::run(t),
        BenchKind::Temporal(t) => run_temporal(t),
    }
}

/// Temporal bundle vs its spatial net on every frame, in one run: AP, cost per
/// frame and keypoint jitter on a labelled sequence; frames in budget at a
/// frame rate the key net alone cannot hold, idle and with the cores busy.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  vipnas bench temporal --model models/movenet-temporal")]
pub struct TemporalArgs {
    /// A temporal bundle.
    #[arg(long)]
    model: PathBuf,
    /// Labelled sequence (COCO keypoints, frames in file-name order) and its images.
    #[arg(long, default_value = "tests/data/pose2sim-cam03.json")]
    coco: PathBuf,
    #[arg(long, default_value = "tests/data/pose2sim-cam03")]
    images: PathBuf,
    /// Frames for the budget runs (a directory of images).
    #[arg(long, default_value = "tests/data/pose2sim-cam03")]
    clip: PathBuf,
    /// The frame budget as a share of the key net's mean time per frame (< 1:
    /// a rate the key net alone cannot hold).
    #[arg(long, default_value_t = 0.75)]
    budget_share: f64,
    /// Busy processes beside the run, one budget measurement each.
    #[arg(long, value_delimiter = ',', default_value = "0,2")]
    loads: Vec<usize>,
    /// Passes over the sequence per measurement.
    #[arg(long, default_value_t = 3)]
    passes: usize,
    /// The per-frame latency plot.
    #[arg(long, default_value = "out/bench-temporal.png")]
    plot: PathBuf,
}

/// `bench temporal`'s accuracy table: a row per way of running the bundle.
pub(super) fn print_accuracy(rows: &[vipnas::host::temporal_bench::AccuracyRow]) -> Result<()> {
    outln!(
        "{:<14} {:>7} {:>8} {:>8} {:>9} {:>10} {:>10}",
        "run",
        "AP",
        "PCK@0.1",
        "PCK@0.2",
        "ms/frame",
        "jitter_px",
        "key_frames"
    );
    for r in rows {
        outln!(
            "{:<14} {:>7.4} {:>8.3} {:>8.3} {:>9.2} {:>10.2} {:>10}",
            r.name,
            r.ap,
            r.pck01,
            r.pck02,
            r.ms_per_frame,
            r.jitter_px,
            r.key_frames
        );
    }
    Ok(())
}

fn run_temporal(a: TemporalArgs) -> Result<()> {
    use vipnas::host::temporal_bench::{accuracy, budget, plot_trace};
    let gt = vipnas::host::coco::CocoDataset::load(&a.coco)?;
    let rows = accuracy(&a.model, &gt, &a.images, a.passes)?;
    outln!("== {} on {} ({} frames in order), 1 thread, same run", a.model.display(), a.coco.display(), rows[0].frames);
    print_accuracy(&rows)?;
    let (s, t, held) = (&rows[0], &rows[1], &rows[2]);
    outln!("(held: the key net's pose of each key frame kept over its cycle, costed at the key frames alone)");
    outln!(
        "temporal / spatial-only: cost {:.3}x (goal <= 0.35x), AP {:.3}x (goal >= 0.97x), jitter {:.2}x; AP vs held {:+.4}",
        t.ms_per_frame / s.ms_per_frame,
        t.ap / s.ap,
        t.jitter_px / s.jitter_px,
        t.ap - held.ap
    );
    let budget_ms = a.budget_share * s.ms_per_frame;
    let fps = 1000.0 / budget_ms;
    outln!(
        "== frames in budget at {fps:.1} fps ({budget_ms:.1} ms = {:.2} x the key net's {:.1} ms), 1 thread, budget controller on",
        a.budget_share,
        s.ms_per_frame
    );
    let scratch = std::env::temp_dir().join(format!("vipnas-bench-temporal-{}", std::process::id()));
    let rows = budget(&a.model, &a.clip, fps, &a.loads, a.passes, &scratch)?;
    outln!(
        "{:<16} {:>13} {:>10} {:>11} {:>15} {:>11}",
        "busy processes",
        "spatial-only",
        "temporal",
        "key frames",
        "+ key thread",
        "key frames"
    );
    for r in &rows {
        outln!(
            "{:<16} {:>12.1}% {:>9.1}% {:>11} {:>14.1}% {:>11}",
            r.load,
            r.spatial_pct,
            r.temporal_pct,
            format!("{}/{}", r.temporal_key_frames, r.frames),
            r.async_pct,
            format!("{}/{}", r.async_key_frames, r.frames)
        );
    }
    if let Some(dir) = a.plot.parent() {
        std::fs::create_dir_all(dir)?;
    }
    outln!("plot: {}", plot_trace(&a.plot, &rows, budget_ms)?.display());
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

/// Runtime benchmark: tract (ours) vs onnxruntime (peer) on the same ONNX files
/// at 1 and 2 threads, back to back; pipeline overhead; tract's time per op.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  vipnas bench runtime --runs 30\n\nThe peer runs through benches/ort_latency.py with $VIPNAS_PYTHON (default .cache/venv/bin/python)."
)]
pub struct RuntimeArgs {
    /// Timed inferences per measurement (after 5 warm-ups).
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Thread counts to compare.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<usize>,
    /// Repository root (bundled model, clip, peer script).
    #[arg(long, default_value = ".")]
    repo: PathBuf,
    /// Op kinds to list in the per-op profile.
    #[arg(long, default_value_t = 8)]
    top: usize,
}

fn run_runtime(a: RuntimeArgs) -> Result<()> {
    let python = peer_python(&a.repo);
    let script = a.repo.join("benches/ort_latency.py");
    let scratch = std::env::temp_dir().join(format!("vipnas-bench-{}", std::process::id()));
    let models = default_models(&a.repo, &scratch)?;
    outln!(
        "== inference latency, median of {} runs (ms); ours = tract + {KERNEL_VERSION} ({}), ratio = ours / onnxruntime",
        a.runs,
        active_isa().name()
    );
    outln!(
        "{:<26} {:>7} {:>12} {:>9} {:>9} {:>8} {:>10}",
        "model",
        "threads",
        "tract's conv",
        "ours",
        "ort",
        "ratio",
        "was"
    );
    for m in &models {
        for &t in &a.threads {
            // Ours, tract alone and the peer back to back, same machine state.
            let row = LatencyRow {
                model: m.name.clone(),
                threads: t,
                tract_own_ms: tract_latency(m, t, a.runs, Convolutions::Tract)?,
                tract_ms: tract_latency(m, t, a.runs, Convolutions::Fast)?,
                ort_ms: ort_latency(&python, &script, m, t, a.runs)?,
            };
            let times = |r: Option<f64>| r.map_or("n/a".into(), |r| format!("{r:.2}x"));
            let ort = row.ort_ms.map_or("n/a".into(), |o| format!("{o:.2}"));
            let (ratio, was) = (times(row.ratio()), times(row.ratio_before()));
            outln!(
                "{:<26} {:>7} {:>12.2} {:>9.2} {:>9} {:>8} {:>10}",
                row.model,
                t,
                row.tract_own_ms,
                row.tract_ms,
                ort,
                ratio,
                was
            );
        }
    }
    let s = pipeline_stages(&a.repo.join("models/movenet-lightning"), &a.repo.join("tests/data/pose2sim-cam03"), 1)?;
    outln!("\n== pipeline on {} real frames (MoveNet Lightning, 1 thread), ms per frame", s.frames);
    outln!(
        "capture(jpeg)={:.2} preprocess={:.2} infer={:.2} decode+track={:.3} render={:.3}",
        s.capture,
        s.preprocess,
        s.infer,
        s.decode_track,
        s.render
    );
    outln!("overhead = (capture+preprocess+decode+track+render)/infer = {:.1}%", 100.0 * s.overhead_fraction());
    for m in &models {
        let ops = op_profile(m, a.runs.min(10))?;
        let total: f64 = ops.iter().map(|o| o.ms).sum();
        outln!("\n== tract per-op profile, {} (1 thread): {total:.2} ms in {} op kinds", m.name, ops.len());
        for o in ops.iter().take(a.top) {
            outln!("{:<28} {:>8.2} ms {:>5.1}% {:>4} nodes", o.op, o.ms, 100.0 * o.ms / total, o.nodes);
        }
    }
    Ok(())
}

/// Latency-model accuracy: random subnets predicted from the board's table and
/// measured whole here; error statistics before/after the correction, and a
/// scatter plot.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  vipnas bench latency --board host --mbv3 50 --resnet50 20 --hrnet 20 --plot docs/latency-host.png"
)]
pub struct LatencyArgs {
    #[arg(long, default_value = "host")]
    board: String,
    /// Latency table (default: the board profile's).
    #[arg(long)]
    table: Option<PathBuf>,
    /// Random MobileNetV3 subnets.
    #[arg(long, default_value_t = 50)]
    mbv3: usize,
    /// Random ResNet-50 subnets.
    #[arg(long, default_value_t = 20)]
    resnet50: usize,
    /// Random HRNet-W32 subnets.
    #[arg(long, default_value_t = 20)]
    hrnet: usize,
    /// Every subnet as a temporal net (its fusion after a stage, op and stage
    /// varying with the seed): the table's fusion entries checked too.
    #[arg(long)]
    temporal: bool,
    #[arg(long, default_value = "256x192")]
    input: InputSize,
    /// Timed runs per subnet (6 a round by default: fewer, and one slow run
    /// moves a round's share).
    #[arg(long, default_value_t = 30)]
    runs: usize,
    /// Rounds the runs are split into: each round visits every subnet in turn,
    /// so a burst of load elsewhere on the machine costs every subnet a few
    /// runs instead of one subnet all of them.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Scatter plot PNG; its points go beside it as CSV (same name, `.csv`).
    #[arg(long, default_value = "out/latency-scatter.png")]
    plot: PathBuf,
}

fn run_latency(a: LatencyArgs) -> Result<()> {
    let board = BoardProfile::load(&a.board)?;
    let path = a.table.clone().unwrap_or_else(|| board.latency_table_path());
    let table = LatencyTable::load(&path)?;
    table.check_compatible(&path, &board.name, board.threads)?;
    let mut results = Vec::new();
    for (space, n) in [(SpaceName::Mbv3, a.mbv3), (SpaceName::Resnet50, a.resnet50), (SpaceName::HrnetW32, a.hrnet)] {
        if n == 0 {
            continue;
        }
        let rounds = vipnas::board::profiler::rounds_for(a.runs, a.rounds);
        let mut visits = 0;
        let pts = evaluate(&table, space, a.input, n, board.threads, a.runs, rounds, a.temporal, || {
            visits += 1;
            eprint!("\r{space}: {visits}/{} subnet visits ({n} subnets, {rounds} rounds, twice)", 2 * n * rounds)
        })?;
        eprintln!();
        let before = error_stats(pts.iter().map(|p| (p.sum_ms, p.measured_ms)));
        let after = error_stats(pts.iter().map(|p| (p.predicted_ms, p.measured_ms)));
        let c = table.corrections.get(&space);
        let what = if a.temporal { "temporal nets" } else { "subnets" };
        outln!("== {space}: {n} random {what} at {}, {} thread(s), board {}", a.input, board.threads, board.name);
        outln!("{:<28} {:>8} {:>8} {:>8}", "|pred - meas| / meas", "median", "p90", "max");
        outln!(
            "{:<28} {:>7.1}% {:>7.1}% {:>7.1}%",
            "plain sum of blocks",
            100.0 * before.median,
            100.0 * before.p90,
            100.0 * before.max
        );
        outln!(
            "{:<28} {:>7.1}% {:>7.1}% {:>7.1}%",
            c.map_or("no correction".to_string(), |c| format!("corrected ({:.3}x{:+.2}ms)", c.scale, c.offset_ms)),
            100.0 * after.median,
            100.0 * after.p90,
            100.0 * after.max
        );
        let again = error_stats(pts.iter().map(|p| (p.remeasured_ms, p.measured_ms)));
        outln!(
            "{:<28} {:>7.1}% {:>7.1}% {:>7.1}%",
            "measured again (the floor)",
            100.0 * again.median,
            100.0 * again.p90,
            100.0 * again.max
        );
        let range = pts.iter().fold((f64::MAX, 0f64), |(lo, hi), p| (lo.min(p.measured_ms), hi.max(p.measured_ms)));
        outln!("measured range {:.1}–{:.1} ms", range.0, range.1);
        results.push((space, pts));
    }
    if let Some(dir) = a.plot.parent() {
        std::fs::create_dir_all(dir)?;
    }
    scatter(&a.plot, &board.name, &results)?;
    let csv = a.plot.with_extension("csv");
    let mut rows = String::from("space,seed,sum_ms,predicted_ms,measured_ms,remeasured_ms\n");
    for (space, pts) in &results {
        for p in pts {
            rows += &format!(
                "{space},{},{:.4},{:.4},{:.4},{:.4}\n",
                p.seed, p.sum_ms, p.predicted_ms, p.measured_ms, p.remeasured_ms
            );
        }
    }
    std::fs::write(&csv, rows).with_context(|| format!("cannot write {}", csv.display()))?;
    outln!("scatter plot: {} (points: {})", a.plot.display(), csv.display());
    Ok(())
}

/// Peer numbers: MoveNet Lightning and Thunder through our runtime on the
/// labelled pose2sim cameras (AP, PCK@0.1, ms/frame at 1 and 2 threads), and
/// tract / onnxruntime latency on the same files. Prints a markdown table.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  scripts/fetch-data.sh && vipnas bench peers --data .cache/data")]
pub struct PeersArgs {
    /// Output of scripts/fetch-data.sh.
    #[arg(long, default_value = ".cache/data")]
    data: PathBuf,
    #[arg(long, default_value_t = 30)]
    runs: usize,
    #[arg(long, default_value = ".")]
    repo: PathBuf,
}

fn run_peers(a: PeersArgs) -> Result<()> {
    use vipnas::bundle::InputType;
    use vipnas::host::bench::{peer_rows, BenchModel};
    let rows = peer_rows(&a.data)?;
    outln!("| model | set | AP | PCK@0.1 | ms/frame 1 thread | ms/frame 2 threads |");
    outln!("|---|---|---|---|---|---|");
    for r in &rows {
        outln!("| {} | {} | {:.3} | {:.3} | {:.1} | {:.1} |", r.model, r.set, r.ap, r.pck10, r.ms[0], r.ms[1]);
    }
    let python = peer_python(&a.repo);
    outln!("\n| model | threads | tract ms | onnxruntime ms | tract / ort |\n|---|---|---|---|---|");
    for (m, s) in [("lightning", 192), ("thunder", 256)] {
        let bm = BenchModel {
            name: format!("movenet-{m}"),
            onnx: a.data.join(format!("models/movenet-{m}/spatial.onnx")),
            shape: vec![1, s, s, 3],
            datum: InputType::I32,
        };
        for t in [1, 2] {
            let tract = tract_latency(&bm, t, a.runs, Convolutions::Fast)?;
            let ort = ort_latency(&python, &a.repo.join("benches/ort_latency.py"), &bm, t, a.runs)?;
            let (o, r) =
                ort.map_or(("n/a".into(), "n/a".into()), |o| (format!("{o:.1}"), format!("{:.2}x", tract / o)));
            outln!("| {} | {t} | {tract:.1} | {o} | {r} |", bm.name);
        }
    }
    Ok(())
}
