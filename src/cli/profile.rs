//! `vipnas profile` and `vipnas predict`: measure a board's latency table;
//! predict (and measure) a subnet's latency with it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use vipnas::arch::{SpaceName, Subnet};
use vipnas::board::profiler::{measure, profile, ProfileOptions};
use vipnas::board::{BoardProfile, LatencyTable};
use vipnas::bundle::Manifest;

use super::subnet_args::SubnetArgs;

/// Measure this machine's latency table for a board profile: every block a
/// space can produce, timed in tract. Resumes an interrupted run.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  vipnas profile --board rpi4                  # on the Pi: boards/rpi4.lut.json\n  vipnas profile --board host --quick --out /tmp/host.lut.json\n  vipnas profile --board rpi4 --estimate-from host   # no Pi at hand: an ESTIMATE from the host's table"
)]
pub struct ProfileArgs {
    /// Board profile name (boards/NAME.toml) or a .toml path.
    #[arg(long)]
    board: String,
    /// Output table (default: the profile's latency_table).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Only the blocks of a few subnets, few repeats (tests, smoke checks).
    #[arg(long)]
    quick: bool,
    /// Search space to profile.
    #[arg(long, default_value = "mbv3")]
    space: SpaceName,
    /// Network input HEIGHTxWIDTH.
    #[arg(long, default_value = "256x192")]
    input: vipnas::arch::InputSize,
    /// Inference threads (default: the board's).
    #[arg(long)]
    threads: Option<usize>,
    /// Fit the space's correction again (whole subnets, timed in rounds,
    /// against their blocks timed again now), keeping the blocks already
    /// measured.
    #[arg(long, conflicts_with = "estimate_from")]
    recalibrate: bool,
    /// Measure nothing: write an estimate (`measured: false`) scaling board
    /// SOURCE's measured 1-thread table by the published numbers in this
    /// board's profile ([estimate]). Search and predict warn on it.
    #[arg(long, value_name = "SOURCE", conflicts_with_all = ["quick", "threads"])]
    estimate_from: Option<String>,
}

pub fn run_profile(a: ProfileArgs) -> Result<()> {
    let board = BoardProfile::load(&a.board)?;
    let out = a.out.clone().unwrap_or_else(|| board.latency_table_path());
    if let Some(source) = &a.estimate_from {
        if out.is_file() && LatencyTable::load(&out).is_ok_and(|t| t.measured) {
            anyhow::bail!("{}: a measured table: an estimate never replaces one (choose another --out)", out.display());
        }
        let source = BoardProfile::load(source)?;
        let (path, table) = board_table(&source, None)?;
        let est = vipnas::board::estimate::estimate(&table, &path, &board)?;
        est.save(&out)?;
        outln!(
            "wrote {}: {} entries, an ESTIMATE for board {} ({} thread(s))",
            out.display(),
            est.entries.len(),
            est.board,
            est.threads
        );
        outln!("{}", est.method.as_deref().unwrap_or_default());
        return Ok(());
    }
    let threads = a.threads.unwrap_or(board.threads);
    let opts = ProfileOptions { recalibrate: a.recalibrate, ..ProfileOptions::new(a.space, a.input, threads, a.quick) };
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} blocks, ETA {eta} {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    let start = Instant::now();
    let table = profile(&board, &out, &opts, |done, total, what| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        bar.set_message(what.chars().take(40).collect::<String>());
    })?;
    bar.finish_and_clear();
    outln!(
        "wrote {}: {} entries, board {} ({}), {} thread(s), tract {}, {:.0} s",
        out.display(),
        table.entries.len(),
        table.board,
        table.cpu,
        table.threads,
        table.tract_version,
        start.elapsed().as_secs_f64()
    );
    if let Some(c) = table.corrections.get(&a.space) {
        outln!(
            "correction: measured ≈ {:.4} · Σblocks + {:.3} ms (fitted on {} subnets)",
            c.scale,
            c.offset_ms,
            c.fitted_on
        );
    }
    Ok(())
}

/// Predict a subnet's latency on a board from its latency table; --measure
/// also times the whole exported subnet here.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  vipnas predict --board host --space mbv3 --sample random --seed 3 --measure\n  vipnas predict --board rpi4 --model models/my-subnet"
)]
pub struct PredictArgs {
    /// Board profile name (boards/NAME.toml) or a .toml path.
    #[arg(long)]
    board: String,
    /// A model bundle (its manifest's subnet and input size are used).
    #[arg(long, conflicts_with_all = ["subnet", "sample", "published"])]
    model: Option<PathBuf>,
    #[command(flatten)]
    pick: SubnetArgs,
    /// Latency table (default: the board profile's).
    #[arg(long)]
    table: Option<PathBuf>,
    /// Also measure the whole subnet here (with the board's threads).
    #[arg(long)]
    measure: bool,
    /// Timed runs for --measure (after 5 warm-ups).
    #[arg(long, default_value_t = 30, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u64).range(1..), |n| n as usize))]
    runs: usize,
}

pub fn run_predict(a: PredictArgs) -> Result<()> {
    let board = BoardProfile::load(&a.board)?;
    let (subnet, input): (Subnet, _) = match &a.model {
        Some(dir) => {
            let m = Manifest::load(dir)?;
            let s = m.subnet.ok_or_else(|| {
                anyhow::anyhow!("{}: not a vipnas subnet bundle (no subnet in the manifest)", dir.display())
            })?;
            let input = vipnas::arch::InputSize::new(m.input.height, m.input.width).map_err(anyhow::Error::msg)?;
            (s, input)
        }
        None => (a.pick.resolve()?, a.pick.input()),
    };
    let (path, table) = board_table(&board, a.table.as_deref())?;
    let net = subnet.network(input)?;
    // A table that lacks some blocks stops the prediction, not the measurement.
    let prediction = table.predict(&net, subnet.space);
    if let Ok(p) = &prediction {
        outln!("blocks={} sum_ms={:.3}", p.blocks, p.sum_ms);
        outln!("predicted_ms={:.3}", p.ms);
    }
    if a.measure {
        let m = measure(&net, board.threads, 5, a.runs)?;
        match &prediction {
            Ok(p) => outln!("measured_ms={:.3} error={:+.1}%", m.p50_ms, 100.0 * (p.ms - m.p50_ms) / m.p50_ms),
            Err(_) => outln!("measured_ms={:.3}", m.p50_ms),
        }
    }
    prediction.map(|_| ()).with_context(|| format!("{}: no prediction", path.display()))
}

/// The board's latency table (or `table`), checked against the board; an
/// estimated table is warned about loudly.
pub fn board_table(board: &BoardProfile, table: Option<&std::path::Path>) -> Result<(PathBuf, LatencyTable)> {
    let path = table.map_or_else(|| board.latency_table_path(), |p| p.to_path_buf());
    if !path.exists() {
        anyhow::bail!(
            "{}: no latency table for board {}: measure one on the board with `vipnas profile --board {}` (tables are never estimated silently)",
            path.display(),
            board.name,
            board.name
        );
    }
    let t = LatencyTable::load(&path)?;
    t.check_compatible(&path, &board.name, board.threads)?;
    if !t.measured {
        eprintln!(
            "WARNING: {} is an ESTIMATE, not measured on {} ({}): do not trust these numbers; run `vipnas profile --board {}` on the board",
            path.display(),
            board.name,
            t.method.as_deref().unwrap_or("method unknown"),
            board.name
        );
    }
    Ok((path, t))
}
