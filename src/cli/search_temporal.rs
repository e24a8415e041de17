//! `vipnas search-temporal` (host): the temporal configuration for a board's
//! frame budget — key interval and a temporal net per propagated frame, from
//! a pool of trained temporal nets — by the evolution of `vipnas search`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use super::profile::board_table;
use vipnas::board::BoardProfile;
use vipnas::host::coco::CocoDataset;
use vipnas::host::temporal_bench::accuracy;
use vipnas::host::temporal_search::{CycleApFitness, PoolBundles};
use vipnas::search::evolution::sort_best_first;
use vipnas::search::temporal::{CycleCandidate, CycleSearch};
use vipnas::search::{Candidates, EvolutionConfig};

/// Search the temporal configuration that fits a frame budget: how many
/// frames each key frame's pose is propagated over, and which temporal net
/// (fusion stage, fusion op, T-subnet) runs on each of them, chosen from a
/// pool of trained temporal bundles that share one key net. Latency: each
/// net's on the board (the table's prediction recorded in the bundle, else
/// the latency measured there, else measured now when the board is this
/// machine); fitness: OKS AP of the cycle on a labelled video through the
/// runtime. Every evaluation is logged; the same command resumes a stopped search.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  vipnas search-temporal --nets runs/pool/min-add2,runs/pool/min-mul2,runs/pool/min-add4 \\
      --board host --budget-ms 8 --coco data/splits/val.json --images data --out runs/tsearch

Outputs under --out: candidates.jsonl (every evaluated cycle), best-<ms>.json, and per budget
a temporal bundle (bundle-<ms>/) with the best cycle measured (the evolution's, or random
search's should it have found a better one); the summary compares it, on the same
frames, with the key net on every frame and with the key net's pose held over the cycle.")]
pub struct SearchTemporalArgs {
    /// Temporal bundles (from `vipnas train-temporal`), comma-separated: the pool.
    #[arg(long, value_name = "DIR[,DIR…]", value_delimiter = ',', required = true)]
    nets: Vec<PathBuf>,
    /// Board profile name (boards/NAME.toml) or a .toml path.
    #[arg(long, default_value = "host")]
    board: String,
    /// Latency table (default: the board profile's); decides whether the board is this machine.
    #[arg(long)]
    table: Option<PathBuf>,
    /// The key net's latency on the board, ms (default: the table's prediction,
    /// else the latency recorded in the bundle, else measured here when the
    /// board is this machine) — e.g. `vipnas run`'s p50 on the board.
    #[arg(long, value_name = "MS")]
    key_ms: Option<f64>,
    /// Budgets: the mean latency per frame of a cycle, ms, comma-separated; one configuration per budget.
    #[arg(long, value_name = "MS[,MS…]", value_delimiter = ',', required = true)]
    budget_ms: Vec<f64>,
    /// The labelled video the cycles are scored on (its images in order).
    #[arg(long, value_name = "VAL.json")]
    coco: PathBuf,
    /// Directory the video's file names are relative to.
    #[arg(long, value_name = "DIR")]
    images: PathBuf,
    /// The longest cycle searched: frames propagated per key frame.
    #[arg(long, default_value_t = 8)]
    max_interval: usize,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Cycles per generation.
    #[arg(long, default_value_t = 24)]
    population: usize,
    /// Generations after the first.
    #[arg(long, default_value_t = 10)]
    generations: usize,
    /// At most this many distinct cycles evaluated per budget.
    #[arg(long, value_name = "N")]
    evals: Option<usize>,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(a: SearchTemporalArgs) -> Result<()> {
    for (i, &b) in a.budget_ms.iter().enumerate() {
        anyhow::ensure!(
            b.is_finite() && b > 0.0 && b <= 1e6,
            "--budget-ms {b}: each budget must be a number of ms above 0 and at most 1e6"
        );
        anyhow::ensure!(!a.budget_ms[..i].contains(&b), "--budget-ms {b}: given twice");
    }
    let board = BoardProfile::load(&a.board)?;
    let (table_path, table) = board_table(&board, a.table.as_deref())?;
    if let Some(ms) = a.key_ms {
        anyhow::ensure!(ms.is_finite() && ms > 0.0, "--key-ms {ms}: must be a positive number of ms");
    }
    let bundles = PoolBundles::load(&a.nets, &board.name, &table, a.max_interval, a.key_ms)?;
    let val = CocoDataset::load(&a.coco)?;
    anyhow::ensure!(!val.annotations.is_empty(), "{}: no annotations to score cycles on", a.coco.display());
    std::fs::create_dir_all(&a.out).with_context(|| format!("cannot create {}", a.out.display()))?;
    outln!(
        "key net {}: {:.2} ms on {} ({})",
        bundles.key_dir.display(),
        bundles.pool.key_ms,
        board.name,
        bundles.key_source.name()
    );
    for (k, (n, e)) in bundles.pool.nets.iter().zip(&bundles.entries).enumerate() {
        outln!("  net {k}: {} — {} — {:.2} ms ({})", n.name, e.spec.net.fusion, n.ms, e.source.name());
    }
    let cfg = EvolutionConfig {
        population: a.population,
        generations: a.generations,
        seed: a.seed,
        max_evals: a.evals,
        ..EvolutionConfig::default()
    };
    cfg.check()?;
    let mut log: Candidates<CycleCandidate> = Candidates::open(&a.out.join("candidates.jsonl"))?;
    let resumed = log.all.len();
    let t0 = std::time::Instant::now();
    let mut fitness =
        CycleApFitness { bundles: &bundles, val, images: a.images.clone(), scratch: a.out.join(".candidate") };
    let mut chosen = Vec::new();
    {
        let mut search = CycleSearch { pool: &bundles.pool, fitness: &mut fitness, log: &mut log };
        for &budget in &a.budget_ms {
            let bar = super::search::generation_bar(cfg.generations);
            let outcome = search.evolve(budget, &cfg, |g, best| {
                bar.set_position(g as u64 + 1);
                bar.set_message(format!("{budget} ms: best {} ({:.2} ms/frame)", describe(best), best.ms));
            })?;
            bar.finish_and_clear();
            let random = search.random(budget, outcome.evaluated, cfg.seed)?;
            let best_path = a.out.join(format!("best-{budget}.json"));
            let best = serde_json::json!({
                "budget_ms": budget, "board": board.name, "table": table_path, "seed": a.seed,
                "best": outcome.best, "history": outcome.history, "evaluated": outcome.evaluated,
                "random_search_best": random,
            });
            vipnas::bundle::write_atomic(&best_path, serde_json::to_string_pretty(&best)?.as_bytes())?;
            outln!(
                "{budget} ms/frame: key + {} ({} frames propagated) — {} at {:.2} ms/frame ({} evaluated; random search with as many: {} at {:.2} ms/frame)",
                outcome.best.nets.join(" + "),
                outcome.best.cycle.0.len(),
                describe(&outcome.best),
                outcome.best.ms,
                outcome.evaluated,
                describe(&random),
                random.ms
            );
            // The bundle gets the best cycle measured, should random search have found it.
            let mut both = [outcome.best, random];
            sort_best_first(&mut both);
            let [best, _] = both;
            chosen.push((budget, best));
        }
    }
    let evaluated = log.all.len();
    for (budget, best) in &chosen {
        let dir = a.out.join(format!("bundle-{budget}"));
        bundles.write(&best.cycle, &dir, &format!("vipnas-temporal-{}-{budget}ms", board.name))?;
        // The chosen cycle against the key net on every frame and the key net's pose held, same frames.
        let rows = accuracy(&dir, &fitness.val, &a.images, 1)?;
        outln!(
            "bundle {} — on {} ({} frames), measured here at 1 thread:",
            dir.display(),
            a.coco.display(),
            rows[0].frames
        );
        super::bench::print_accuracy(&rows)?;
    }
    let _ = std::fs::remove_dir_all(a.out.join(".candidate"));
    outln!(
        "{evaluated} cycles evaluated ({resumed} from an earlier run) in {:.1} s: {}",
        t0.elapsed().as_secs_f64(),
        a.out.join("candidates.jsonl").display()
    );
    Ok(())
}

/// `AP 0.812 (PCK@0.2 0.981)`.
fn describe(c: &CycleCandidate) -> String {
    match (c.measured.ap, c.measured.pck) {
        (Some(ap), Some(pck)) => format!("AP {ap:.4} (PCK@0.2 {pck:.3})"),
        _ => format!("{:.4}", c.measured.score.value),
    }
}
