//! The log of every evaluated subnet (`candidates.jsonl`) or temporal cycle:
//! one JSON line per candidate, appended and flushed as it is measured, read
//! back on the next run so that nothing is evaluated twice and a stopped
//! search resumes.
//! A last line cut by a kill is dropped (and rewritten by the next run);
//! any other bad line stops the search naming file and line.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::evolution::Ranked;
use super::{Measured, Score};
use crate::arch::Subnet;

/// One evaluated subnet.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    pub subnet: Subnet,
    /// The fitness that measured it (`flops`, `ap`, `predictor`).
    pub fitness: String,
    /// The latency table's prediction.
    pub ms: f64,
    pub gflops: f64,
    #[serde(flatten)]
    pub measured: Measured,
}

impl Candidate {
    /// Its fitness (higher is better).
    pub fn value(&self) -> f64 {
        self.measured.score.value
    }

    /// The log key of `subnet` measured by `fitness`.
    pub fn key_of(subnet: &Subnet, fitness: &str) -> (String, String) {
        (fitness.to_string(), subnet.to_string())
    }
}

impl Record for Candidate {
    fn key(&self) -> (String, String) {
        Candidate::key_of(&self.subnet, &self.fitness)
    }
}

impl Ranked for Candidate {
    type Genome = Subnet;
    fn genome(&self) -> &Subnet {
        &self.subnet
    }
    fn score(&self) -> Score {
        self.measured.score
    }
    fn ms(&self) -> f64 {
        self.ms
    }
}

/// One line of a log, identified by (fitness, genome).
pub trait Record: Clone + Serialize + DeserializeOwned {
    fn key(&self) -> (String, String);
}

/// The evaluations so far, by (fitness, genome).
#[derive(Debug)]
pub struct Candidates<C = Candidate> {
    pub all: Vec<C>,
    index: HashMap<(String, String), usize>,
    file: Option<(PathBuf, std::fs::File)>,
}

impl<C> Default for Candidates<C> {
    fn default() -> Self {
        Candidates { all: Vec::new(), index: HashMap::new(), file: None }
    }
}

impl<C: Record> Candidates<C> {
    /// A log kept in memory only.
    pub fn in_memory() -> Candidates<C> {
        Candidates::default()
    }

    /// Reads a log without writing to it.
    pub fn open_read_only(path: &Path) -> Result<Candidates<C>> {
        Ok(Self::read(path)?.0)
    }

    /// Opens (or creates) the log at `path`, reading what it holds.
    pub fn open(path: &Path) -> Result<Candidates<C>> {
        let (mut log, keep) = Self::read(path)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.set_len(keep as u64).with_context(|| format!("cannot write {}", path.display()))?;
        log.file = Some((path.to_path_buf(), file));
        Ok(log)
    }

    /// The candidates of `path` and the length of its whole lines.
    fn read(path: &Path) -> Result<(Candidates<C>, usize)> {
        let mut log = Candidates::default();
        let mut keep = 0usize;
        if path.exists() {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let complete = text.ends_with('\n');
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                match serde_json::from_str::<C>(line) {
                    Ok(c) => {
                        log.insert(c);
                        keep += line.len() + 1;
                    }
                    Err(_) if i + 1 == lines.len() && !complete => {
                        log::warn!("{}: dropping a last line cut short (a stopped run)", path.display());
                    }
                    Err(e) => anyhow::bail!("{}:{}: not a candidate: {e}", path.display(), i + 1),
                }
            }
        }
        Ok((log, keep))
    }

    fn insert(&mut self, c: C) {
        let key = c.key();
        if let Some(&i) = self.index.get(&key) {
            self.all[i] = c;
        } else {
            self.index.insert(key, self.all.len());
            self.all.push(c);
        }
    }

    /// The candidate logged under `key` ([`Record::key`]).
    pub fn get(&self, key: &(String, String)) -> Option<&C> {
        self.index.get(key).map(|&i| &self.all[i])
    }

    /// Records `c`, appending it to the file at once.
    pub fn push(&mut self, c: C) -> Result<()> {
        if let Some((path, f)) = &mut self.file {
            let mut line = serde_json::to_vec(&c)?;
            line.push(b'\n');
            f.write_all(&line).and_then(|_| f.flush()).with_context(|| format!("cannot write {}", path.display()))?;
        }
        self.insert(c);
        Ok(())
    }
}
