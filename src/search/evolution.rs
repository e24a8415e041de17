//! The evolution loop every search shares — over a space's subnets
//! ([`super::Search`]) and over temporal cycles ([`super::temporal`]) — as
//! once-for-all runs it: a population of genomes within the budget; each
//! generation keeps the best share as parents and breeds the rest, part by
//! mutation and part by crossover; a child over the budget is bred again.
//!
//! What a genome is, what it costs and how good it is come from an
//! [`Evolvable`]; the loop only draws, breeds, ranks and counts. Its random
//! draws depend on the seed and on fitness *values*, never on timing, so a
//! search replayed from its log takes the same path.

use std::collections::HashSet;

use anyhow::Result;

use super::{EvolutionConfig, Score};
use crate::arch::rng::Rng;

/// How many draws may fail the budget before a search gives up.
pub const DRAWS: usize = 10_000;

/// An evaluated genome, as the loop ranks it.
pub trait Ranked: Clone {
    type Genome;
    fn genome(&self) -> &Self::Genome;
    fn score(&self) -> Score;
    /// Its predicted latency (ties of the score go to the faster).
    fn ms(&self) -> f64;
}

/// A search the loop can drive.
pub trait Evolvable {
    type Genome: Clone;
    type Candidate: Ranked<Genome = Self::Genome>;
    /// A name that identifies the genome (distinct genomes, distinct ids).
    fn id(&self, g: &Self::Genome) -> String;
    /// Predicted latency, ms.
    fn latency(&self, g: &Self::Genome) -> Result<f64>;
    fn sample(&self, rng: &mut Rng) -> Self::Genome;
    fn mutate(&self, g: &Self::Genome, prob: f64, rng: &mut Rng) -> Self::Genome;
    fn crossover(&self, a: &Self::Genome, b: &Self::Genome, rng: &mut Rng) -> Self::Genome;
    /// Measures `g` (or reads it from the log), logging it.
    fn evaluate(&mut self, g: &Self::Genome, ms: f64) -> Result<Self::Candidate>;
    /// The error when no random genome fits `budget_ms`.
    fn nothing_within(&self, budget_ms: f64) -> anyhow::Error;
    /// Pre-screening: the `keep` of `bred` worth evaluating; default the first `keep`.
    fn screen(&self, bred: Vec<(Self::Genome, f64)>, keep: usize, _seed: u64) -> Vec<(Self::Genome, f64)> {
        bred.into_iter().take(keep).collect()
    }
}

/// One evolution's outcome.
#[derive(Clone, Debug)]
pub struct Outcome<C> {
    pub best: C,
    /// Best fitness after each generation (the first included).
    pub history: Vec<f64>,
    /// Distinct genomes evaluated in this evolution (cached ones included).
    pub evaluated: usize,
}

/// The first of up to [`DRAWS`] genomes made by `make` that fits `budget_ms`, with its latency.
fn within<E: Evolvable>(
    e: &E,
    budget_ms: f64,
    rng: &mut Rng,
    mut make: impl FnMut(&mut Rng) -> E::Genome,
) -> Result<Option<(E::Genome, f64)>> {
    for _ in 0..DRAWS {
        let g = make(rng);
        let ms = e.latency(&g)?;
        if ms <= budget_ms {
            return Ok(Some((g, ms)));
        }
    }
    Ok(None)
}

/// A random genome within `budget_ms` (and its latency).
pub fn draw<E: Evolvable>(e: &E, budget_ms: f64, rng: &mut Rng) -> Result<(E::Genome, f64)> {
    match within(e, budget_ms, rng, |r| e.sample(r))? {
        Some(found) => Ok(found),
        None => Err(e.nothing_within(budget_ms)),
    }
}

/// A child within budget: bred by `breed` until one fits (a random genome
/// within budget if none does in [`DRAWS`] tries).
fn child<E: Evolvable>(
    e: &E,
    budget_ms: f64,
    rng: &mut Rng,
    breed: impl FnMut(&mut Rng) -> E::Genome,
) -> Result<(E::Genome, f64)> {
    match within(e, budget_ms, rng, breed)? {
        Some(found) => Ok(found),
        None => draw(e, budget_ms, rng),
    }
}

/// Runs one evolution for `budget_ms`; `progress(generation, best)` after each generation.
pub fn evolve<E: Evolvable>(
    e: &mut E,
    budget_ms: f64,
    cfg: &EvolutionConfig,
    mut progress: impl FnMut(usize, &E::Candidate),
) -> Result<Outcome<E::Candidate>> {
    cfg.check()?;
    anyhow::ensure!(budget_ms.is_finite() && budget_ms > 0.0, "budget {budget_ms} ms: must be a positive number");
    let mut rng = Rng::new(cfg.seed ^ budget_ms.to_bits().rotate_left(17));
    let mut seen = HashSet::new();
    // Whether `g` may be evaluated under --evals (distinct genomes count).
    let admit = |seen: &mut HashSet<String>, id: String| -> bool {
        seen.insert(id);
        cfg.max_evals.is_none_or(|n| seen.len() <= n)
    };
    let mut population = Vec::with_capacity(cfg.population);
    for _ in 0..cfg.population {
        let (g, ms) = draw(e, budget_ms, &mut rng)?;
        if !admit(&mut seen, e.id(&g)) {
            break;
        }
        population.push(e.evaluate(&g, ms)?);
    }
    let parents_n = ((cfg.parent_ratio * cfg.population as f64).round() as usize).max(2);
    let mutations_n = (cfg.mutation_ratio * (cfg.population - parents_n.min(cfg.population)) as f64).round() as usize;
    let mut history = Vec::new();
    let mut out_of_evals = population.len() < cfg.population;
    for generation in 0..=cfg.generations {
        sort_best_first(&mut population);
        population.truncate(parents_n.min(population.len()));
        history.push(population[0].score().value);
        progress(generation, &population[0]);
        if generation == cfg.generations || out_of_evals {
            break;
        }
        let parents = population.clone();
        let pick = |rng: &mut Rng| parents[rng.below(parents.len())].genome();
        let children = cfg.population - parents.len().min(cfg.population);
        let factor = cfg.screen.max(1);
        let mut bred = Vec::with_capacity(children * factor);
        for i in 0..children * factor {
            bred.push(if i < mutations_n * factor {
                child(e, budget_ms, &mut rng, |r| e.mutate(pick(r), cfg.mutate_prob, r))?
            } else {
                child(e, budget_ms, &mut rng, |r| {
                    let a = pick(r).clone();
                    e.crossover(&a, pick(r), r)
                })?
            });
        }
        if factor > 1 {
            bred = e.screen(bred, children, cfg.seed);
        }
        for (g, ms) in bred {
            if !admit(&mut seen, e.id(&g)) {
                out_of_evals = true;
                break;
            }
            population.push(e.evaluate(&g, ms)?);
        }
    }
    Ok(Outcome { best: population[0].clone(), history, evaluated: seen.len().min(cfg.max_evals.unwrap_or(usize::MAX)) })
}

/// Random search: `n` random genomes within budget, the best of them (the
/// baseline an evolution must beat at the same number of evaluations).
pub fn random_search<E: Evolvable>(e: &mut E, budget_ms: f64, n: usize, seed: u64) -> Result<E::Candidate> {
    let mut rng = Rng::new(seed ^ 0x5EA5C4 ^ budget_ms.to_bits());
    let mut all = Vec::new();
    for _ in 0..n.max(1) {
        let (g, ms) = draw(e, budget_ms, &mut rng)?;
        all.push(e.evaluate(&g, ms)?);
    }
    sort_best_first(&mut all);
    Ok(all.swap_remove(0))
}

/// Best first: by fitness, then its tie-break, then lower latency.
pub fn sort_best_first<C: Ranked>(v: &mut [C]) {
    v.sort_by(|a, b| {
        let (sa, sb) = (a.score(), b.score());
        sb.value.total_cmp(&sa.value).then(sb.tie.total_cmp(&sa.tie)).then(a.ms().total_cmp(&b.ms()))
    });
}

/// Stops a search between evaluations on SIGINT/SIGTERM; its log holds
/// the `done` evaluations so far and the same command resumes it.
pub fn check_stop(done: usize) -> Result<()> {
    match crate::shutdown::requested() {
        Some(stop) => Err(anyhow::Error::new(stop)
            .context(format!("search stopped after {done} evaluations; the same command resumes it"))),
        None => Ok(()),
    }
}
