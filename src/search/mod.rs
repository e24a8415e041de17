//! Evolutionary architecture search over a space's subnets under a latency
//! budget, as once-for-all does it: a population (default 100) of subnets
//! that fit the budget; each generation keeps the best quarter as parents and
//! breeds the rest, half by mutation (each choice redrawn with probability
//! 0.1, [`Subnet::mutate`]) and half by crossover ([`Subnet::crossover`]);
//! a child over the budget is bred again.
//!
//! Latency is the board's [`LatencyTable`] prediction (with its correction);
//! fitness is whatever a [`Fitness`] measures — OKS AP of the subnet with
//! inherited supernet weights, an accuracy predictor, or FLOPs. Every
//! evaluation is kept in a [`Candidates`] log by subnet, so a search that is
//! stopped and run again with the same seed replays its generations from the
//! log and continues where it was (the generator's draws do not depend on the
//! fitness' timing, only on its values).

pub mod ap;
pub mod candidates;
pub mod pareto;
pub mod predictor;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::arch::rng::Rng;
use crate::arch::{InputSize, Sample, SearchSpace, Subnet};
use crate::board::lut::LatencyTable;

pub use candidates::{Candidate, Candidates};
pub use pareto::front;

/// What a fitness function measured for one subnet; higher is better,
/// `tie` breaks ties of `value` (PCK under AP).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Score {
    pub value: f64,
    pub tie: f64,
}

/// How good a subnet is. Implementations: FLOPs (no data), OKS AP with
/// inherited weights (`host`), an accuracy predictor.
pub trait Fitness {
    /// `flops`, `ap`, `predictor` (stored with every candidate).
    fn name(&self) -> &'static str;
    /// Measures one subnet; the result is cached by the caller.
    fn measure(&mut self, subnet: &Subnet) -> Result<Measured>;
}

/// A fitness' measurement: its score and what it saw (for the log).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub score: Score,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ap: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pck: Option<f64>,
}

impl Measured {
    /// A bare score (no AP or PCK seen, no tie-break).
    pub fn score(value: f64) -> Measured {
        Measured { score: Score { value, tie: 0.0 }, ap: None, pck: None }
    }
}

/// FLOPs as fitness: the largest network that fits the budget. Needs no
/// checkpoint or data.
pub struct FlopsFitness {
    pub input: InputSize,
}

impl Fitness for FlopsFitness {
    fn name(&self) -> &'static str {
        "flops"
    }
    fn measure(&mut self, subnet: &Subnet) -> Result<Measured> {
        let g = subnet.network(self.input)?.cost().gflops();
        Ok(Measured::score(g))
    }
}

/// The settings of one evolution (defaults: once-for-all's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvolutionConfig {
    /// Subnets per generation; default 100.
    pub population: usize,
    /// Generations after the first; default 30.
    pub generations: usize,
    /// Share of a generation kept as parents; default 0.25.
    pub parent_ratio: f64,
    /// Share of the children bred by mutation (the rest by crossover); default 0.5.
    pub mutation_ratio: f64,
    /// Probability that a mutation redraws a choice; default 0.1.
    pub mutate_prob: f64,
    pub seed: u64,
    /// Stop once this many distinct subnets have been evaluated in this evolution.
    pub max_evals: Option<usize>,
    /// Pre-screening: breed this many times the children and evaluate only
    /// those the accuracy predictor ranks best; default 1 (off).
    #[serde(default)]
    pub screen: usize,
}

impl Default for EvolutionConfig {
    fn default() -> Self {
        EvolutionConfig {
            population: 100,
            generations: 30,
            parent_ratio: 0.25,
            mutation_ratio: 0.5,
            mutate_prob: 0.1,
            seed: 0,
            max_evals: None,
            screen: 1,
        }
    }
}

impl EvolutionConfig {
    pub fn check(&self) -> Result<()> {
        anyhow::ensure!(self.population >= 4, "--population must be at least 4");
        anyhow::ensure!((0.0..1.0).contains(&self.parent_ratio) && self.parent_ratio > 0.0, "parent ratio in (0, 1)");
        anyhow::ensure!((0.0..=1.0).contains(&self.mutation_ratio), "mutation ratio in [0, 1]");
        anyhow::ensure!((0.0..=1.0).contains(&self.mutate_prob), "mutation probability in [0, 1]");
        anyhow::ensure!(self.max_evals != Some(0), "--evals must be at least 1");
        Ok(())
    }
}

/// How many draws may fail the budget before the search gives up.
const DRAWS: usize = 10_000;

/// One evolution's outcome.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub best: Candidate,
    /// Best fitness after each generation (the first included).
    pub history: Vec<f64>,
    /// Distinct subnets evaluated in this evolution (cached ones included).
    pub evaluated: usize,
}

/// A search over one space at one input size against one latency table.
pub struct Search<'a> {
    pub space: SearchSpace,
    pub input: InputSize,
    pub table: &'a LatencyTable,
    pub fitness: &'a mut dyn Fitness,
    pub log: &'a mut Candidates,
}

impl Search<'_> {
    /// The table's prediction for `subnet`, in ms.
    pub fn latency(&self, subnet: &Subnet) -> Result<f64> {
        Ok(self.table.predict(&subnet.network(self.input)?, self.space.name)?.ms)
    }

    /// `subnet`'s candidate: from the log, or measured and logged.
    pub fn evaluate(&mut self, subnet: &Subnet, ms: f64) -> Result<Candidate> {
        if let Some(c) = self.log.get(subnet, self.fitness.name()) {
            return Ok(c.clone());
        }
        // SIGINT/SIGTERM: stop between evaluations; the log holds every one so far.
        if let Some(stop) = crate::shutdown::requested() {
            return Err(anyhow::Error::new(stop).context(format!(
                "search stopped after {} evaluations; the same command resumes it",
                self.log.all.len()
            )));
        }
        let measured = self.fitness.measure(subnet)?;
        let gflops = subnet.network(self.input)?.cost().gflops();
        let c = Candidate { subnet: subnet.clone(), fitness: self.fitness.name().into(), ms, gflops, measured };
        self.log.push(c.clone())?;
        Ok(c)
    }

    /// The first of up to [`DRAWS`] subnets made by `make` that fits
    /// `budget_ms`, with its latency.
    fn within(
        &self,
        budget_ms: f64,
        rng: &mut Rng,
        mut make: impl FnMut(&mut Rng) -> Subnet,
    ) -> Result<Option<(Subnet, f64)>> {
        for _ in 0..DRAWS {
            let s = make(rng);
            let ms = self.latency(&s)?;
            if ms <= budget_ms {
                return Ok(Some((s, ms)));
            }
        }
        Ok(None)
    }

    /// A random subnet within `budget_ms` (and its latency).
    fn draw(&self, budget_ms: f64, rng: &mut Rng) -> Result<(Subnet, f64)> {
        if let Some(found) =
            self.within(budget_ms, rng, |r| Subnet::sample(&self.space, Sample::Random(r.next_u64())))?
        {
            return Ok(found);
        }
        let min = self.latency(&Subnet::sample(&self.space, Sample::Min))?;
        bail!(
            "no subnet of {} within {budget_ms} ms in {DRAWS} random draws (the min subnet predicts {min:.2} ms)",
            self.space.name
        )
    }

    /// A child within budget: bred by `breed` until one fits (a random
    /// subnet within budget if none does in [`DRAWS`] tries).
    fn child(&self, budget_ms: f64, rng: &mut Rng, breed: impl FnMut(&mut Rng) -> Subnet) -> Result<(Subnet, f64)> {
        match self.within(budget_ms, rng, breed)? {
            Some(found) => Ok(found),
            None => self.draw(budget_ms, rng),
        }
    }

    /// Runs one evolution for `budget_ms`; `progress(generation, best)` after each generation.
    pub fn evolve(
        &mut self,
        budget_ms: f64,
        cfg: &EvolutionConfig,
        mut progress: impl FnMut(usize, &Candidate),
    ) -> Result<Outcome> {
        cfg.check()?;
        anyhow::ensure!(budget_ms.is_finite() && budget_ms > 0.0, "budget {budget_ms} ms: must be a positive number");
        let mut rng = Rng::new(cfg.seed ^ budget_ms.to_bits().rotate_left(17));
        let mut seen = std::collections::HashSet::new();
        // Whether `s` may be evaluated under --evals (distinct subnets count).
        let admit = |seen: &mut std::collections::HashSet<String>, s: &Subnet| -> bool {
            seen.insert(s.to_string());
            cfg.max_evals.is_none_or(|n| seen.len() <= n)
        };
        let mut population = Vec::with_capacity(cfg.population);
        for _ in 0..cfg.population {
            let (s, ms) = self.draw(budget_ms, &mut rng)?;
            if !admit(&mut seen, &s) {
                break;
            }
            population.push(self.evaluate(&s, ms)?);
        }
        let parents_n = ((cfg.parent_ratio * cfg.population as f64).round() as usize).max(2);
        let mutations_n =
            (cfg.mutation_ratio * (cfg.population - parents_n.min(cfg.population)) as f64).round() as usize;
        let mut history = Vec::new();
        let mut out_of_evals = population.len() < cfg.population;
        for generation in 0..=cfg.generations {
            sort_best_first(&mut population);
            population.truncate(parents_n.min(population.len()));
            history.push(population[0].value());
            progress(generation, &population[0]);
            if generation == cfg.generations || out_of_evals {
                break;
            }
            let parents = population.clone();
            let pick = |rng: &mut Rng| &parents[rng.below(parents.len())].subnet;
            let children = cfg.population - parents.len().min(cfg.population);
            let factor = cfg.screen.max(1);
            let mut bred = Vec::with_capacity(children * factor);
            for i in 0..children * factor {
                bred.push(if i < mutations_n * factor {
                    self.child(budget_ms, &mut rng, |r| pick(r).mutate(&self.space, cfg.mutate_prob, r))?
                } else {
                    self.child(budget_ms, &mut rng, |r| {
                        let a = pick(r).clone();
                        a.crossover(pick(r), r)
                    })?
                });
            }
            if factor > 1 {
                bred = self.screen(bred, children, cfg.seed);
            }
            for (s, ms) in bred {
                if !admit(&mut seen, &s) {
                    out_of_evals = true;
                    break;
                }
                population.push(self.evaluate(&s, ms)?);
            }
        }
        Ok(Outcome {
            best: population[0].clone(),
            history,
            evaluated: seen.len().min(cfg.max_evals.unwrap_or(usize::MAX)),
        })
    }

    /// Pre-screening: the `keep` of `bred` that an accuracy predictor, fitted
    /// on this fitness' evaluations so far (the latest 400), ranks best; all
    /// of them, in order, while fewer than 16 evaluations exist to fit on.
    fn screen(&self, bred: Vec<(Subnet, f64)>, keep: usize, seed: u64) -> Vec<(Subnet, f64)> {
        let data: Vec<(Subnet, f64)> = self
            .log
            .all
            .iter()
            .rev()
            .filter(|c| c.fitness == self.fitness.name())
            .map(|c| (c.subnet.clone(), c.value()))
            .take(400)
            .collect();
        let fitted = (data.len() >= 16).then(|| predictor::AccuracyPredictor::fit(&self.space, &data, seed));
        let p = match fitted {
            Some(Ok(p)) => p,
            unfit => {
                if let Some(Err(e)) = unfit {
                    log::warn!("screening: {e:#}");
                }
                return bred.into_iter().take(keep).collect();
            }
        };
        let mut scored: Vec<(f64, (Subnet, f64))> = bred.into_iter().map(|b| (p.predict(&b.0), b)).collect();
        scored.sort_by(|a, b| b.0.total_cmp(&a.0));
        scored.into_iter().map(|(_, b)| b).take(keep).collect()
    }

    /// Random search: `n` random subnets within budget, the best of them (the
    /// baseline an evolution must beat at the same number of evaluations).
    pub fn random(&mut self, budget_ms: f64, n: usize, seed: u64) -> Result<Candidate> {
        let mut rng = Rng::new(seed ^ 0x5EA5C4 ^ budget_ms.to_bits());
        let mut all = Vec::new();
        for _ in 0..n.max(1) {
            let (s, ms) = self.draw(budget_ms, &mut rng)?;
            all.push(self.evaluate(&s, ms)?);
        }
        sort_best_first(&mut all);
        Ok(all.swap_remove(0))
    }
}

/// Best first: by fitness, then its tie-break, then lower latency.
fn sort_best_first(v: &mut [Candidate]) {
    v.sort_by(|a, b| {
        let (sa, sb) = (a.measured.score, b.measured.score);
        sb.value.total_cmp(&sa.value).then(sb.tie.total_cmp(&sa.tie)).then(a.ms.total_cmp(&b.ms))
    });
}

#[cfg(test)]
mod tests;
