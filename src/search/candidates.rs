//! The log of every evaluated subnet (`candidates.jsonl`): one JSON line per
//! candidate, appended and flushed as it is measured, read back on the next
//! run so that no subnet is evaluated twice and a stopped search resumes.
//! A last line cut by a kill is dropped (and rewritten by the next run);
//! any other bad line stops the search naming file and line.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::Measured;
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
}

/// The evaluations so far, by (fitness, subnet).
#[derive(Debug, Default)]
pub struct Candidates {
    pub all: Vec<Candidate>,
    index: HashMap<(String, String), usize>,
    file: Option<(PathBuf, std::fs::File)>,
}

impl Candidates {
    /// A log kept in memory only.
    pub fn in_memory() -> Candidates {
        Candidates::default()
    }

    /// Reads a log without writing to it.
    pub fn open_read_only(path: &Path) -> Result<Candidates> {
        Ok(Self::read(path)?.0)
    }

    /// Opens (or creates) the log at `path`, reading what it holds.
    pub fn open(path: &Path) -> Result<Candidates> {
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
    fn read(path: &Path) -> Result<(Candidates, usize)> {
        let mut log = Candidates::default();
        let mut keep = 0usize;
        if path.exists() {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
            let complete = text.ends_with('\n');
            let lines: Vec<&str> = text.lines().collect();
            for (i, line) in lines.iter().enumerate() {
                match serde_json::from_str::<Candidate>(line) {
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

    fn key(subnet: &Subnet, fitness: &str) -> (String, String) {
        (fitness.to_string(), subnet.to_string())
    }

    fn insert(&mut self, c: Candidate) {
        let key = Self::key(&c.subnet, &c.fitness);
        if let Some(&i) = self.index.get(&key) {
            self.all[i] = c;
        } else {
            self.index.insert(key, self.all.len());
            self.all.push(c);
        }
    }

    pub fn get(&self, subnet: &Subnet, fitness: &str) -> Option<&Candidate> {
        self.index.get(&Self::key(subnet, fitness)).map(|&i| &self.all[i])
    }

    /// Records `c`, appending it to the file at once.
    pub fn push(&mut self, c: Candidate) -> Result<()> {
        if let Some((path, f)) = &mut self.file {
            let mut line = serde_json::to_vec(&c)?;
            line.push(b'\n');
            f.write_all(&line).and_then(|_| f.flush()).with_context(|| format!("cannot write {}", path.display()))?;
        }
        self.insert(c);
        Ok(())
    }
}
