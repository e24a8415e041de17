//! Evolutionary architecture search over a space's subnets under a latency
//! budget, as once-for-all does it ([`evolution`]): a population (default
//! 100) of subnets that fit the budget; each generation keeps the best
//! quarter as parents and breeds the rest, half by mutation (each choice
//! redrawn with probability 0.1, [`Subnet::mutate`]) and half by crossover
//! ([`Subnet::crossover`]); a child over the budget is bred again. The same
//! loop searches temporal cycles ([`temporal`]).
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
pub mod evolution;
pub mod pareto;
pub mod predictor;
pub mod temporal;

use anyhow::Result;
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

pub type Outcome = evolution::Outcome<Candidate>;

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
        if let Some(c) = self.log.get(&Candidate::key_of(subnet, self.fitness.name())) {
            return Ok(c.clone());
        }
        evolution::check_stop(self.log.all.len())?;
        let measured = self.fitness.measure(subnet)?;
        let gflops = subnet.network(self.input)?.cost().gflops();
        let c = Candidate { subnet: subnet.clone(), fitness: self.fitness.name().into(), ms, gflops, measured };
        self.log.push(c.clone())?;
        Ok(c)
    }

    /// Runs one evolution for `budget_ms`; `progress(generation, best)` after each generation.
    pub fn evolve(
        &mut self,
        budget_ms: f64,
        cfg: &EvolutionConfig,
        progress: impl FnMut(usize, &Candidate),
    ) -> Result<Outcome> {
        evolution::evolve(self, budget_ms, cfg, progress)
    }

    /// Random search: `n` random subnets within budget, the best of them (the
    /// baseline an evolution must beat at the same number of evaluations).
    pub fn random(&mut self, budget_ms: f64, n: usize, seed: u64) -> Result<Candidate> {
        evolution::random_search(self, budget_ms, n, seed)
    }
}

impl evolution::Evolvable for Search<'_> {
    type Genome = Subnet;
    type Candidate = Candidate;

    fn id(&self, s: &Subnet) -> String {
        s.to_string()
    }
    fn latency(&self, s: &Subnet) -> Result<f64> {
        Search::latency(self, s)
    }
    fn sample(&self, rng: &mut Rng) -> Subnet {
        Subnet::sample(&self.space, Sample::Random(rng.next_u64()))
    }
    fn mutate(&self, s: &Subnet, prob: f64, rng: &mut Rng) -> Subnet {
        s.mutate(&self.space, prob, rng)
    }
    fn crossover(&self, a: &Subnet, b: &Subnet, rng: &mut Rng) -> Subnet {
        a.clone().crossover(b, rng)
    }
    fn evaluate(&mut self, s: &Subnet, ms: f64) -> Result<Candidate> {
        Search::evaluate(self, s, ms)
    }
    fn nothing_within(&self, budget_ms: f64) -> anyhow::Error {
        match self.latency(&Subnet::sample(&self.space, Sample::Min)) {
            Ok(min) => anyhow::anyhow!(
                "no subnet of {} within {budget_ms} ms in {} random draws (the min subnet predicts {min:.2} ms)",
                self.space.name,
                evolution::DRAWS
            ),
            Err(e) => e,
        }
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
}

#[cfg(test)]
mod tests;
