//! The fuzzers' short pass on stable Rust, for CI: every parser gets the
//! committed corpus (`fuzz/corpus/<target>`), every crash the fuzzers ever
//! found (`fuzz/regressions/<target>`), and a few thousand seeded mutations
//! of each seed — flipped bits, cut and repeated spans, spliced seeds,
//! numbers swapped for hostile ones. Not coverage-guided (that is
//! `scripts/fuzz.sh`, on nightly): a fast net under the same entry points.
//! Any outcome but a panic is a pass; a panic saves its input for
//! `fuzz/regressions/`.

mod common;

use std::path::{Path, PathBuf};

use vipnas::arch::rng::Rng;
use vipnas::fuzzing::Target;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect()).unwrap_or_default();
    v.sort();
    v
}

/// Numbers a careless or hostile file holds.
const HOSTILE: &[&[u8]] =
    &[b"0", b"-1", b"1e308", b"-1e308", b"NaN", b"18446744073709551616", b"4294967296", b"99999999", b"0.0", b"\"\""];

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len() + 1);
        match rng.below(7) {
            0 if !v.is_empty() => {
                let i = at.min(v.len() - 1);
                v[i] ^= 1 << rng.below(8);
            }
            1 => {
                let end = (at + rng.below(64)).min(v.len());
                v.drain(at..end);
            }
            2 => {
                let end = (at + rng.below(64)).min(v.len());
                let span = v[at..end].to_vec();
                v.splice(at..at, span);
            }
            3 => {
                let from = rng.below(other.len() + 1);
                let end = (from + rng.below(256)).min(other.len());
                v.splice(at..at, other[from..end].iter().copied());
            }
            4 => {
                // Replace the number starting at or after `at`.
                if let Some(start) = v[at..].iter().position(u8::is_ascii_digit).map(|p| p + at) {
                    let end = v[start..]
                        .iter()
                        .position(|b| !b.is_ascii_digit() && *b != b'.')
                        .map_or(v.len(), |p| p + start);
                    v.splice(start..end, rng.pick(HOSTILE).iter().copied());
                }
            }
            5 => v.truncate(at),
            _ => v.insert(at, rng.pick(&[0u8, 0xFF, b'-', b'9', b'"', b'{', b'[', b'\n', b'=', b' '])),
        }
    }
    v
}

fn run_one(target: Target, data: &[u8], what: &str) -> bool {
    match std::panic::catch_unwind(|| target.run(data)) {
        Ok(accepted) => accepted,
        Err(_) => {
            let crash = common::scratch(&format!("fuzz-crash-{}", target.name())).join("input");
            std::fs::write(&crash, data).unwrap();
            panic!(
                "{} panicked on {what}; input saved to {} (add it to fuzz/regressions/)",
                target.name(),
                crash.display()
            );
        }
    }
}

#[test]
fn every_parser_survives_its_corpus_and_mutations_of_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mutations = if common::under_qemu() { 2_000 } else { 20_000 };
    for &target in Target::ALL {
        let seeds: Vec<(PathBuf, Vec<u8>)> = files(&root.join("corpus").join(target.name()))
            .into_iter()
            .map(|p| (p.clone(), std::fs::read(p).unwrap()))
            .collect();
        assert!(!seeds.is_empty(), "{}: no corpus", target.name());
        let accepted = seeds.iter().filter(|(p, d)| run_one(target, d, &p.display().to_string())).count();
        // The seeds are valid files: the mutations start deep in the parser.
        assert_eq!(accepted, seeds.len(), "{}: a seed is refused", target.name());
        for p in files(&root.join("regressions").join(target.name())) {
            run_one(target, &std::fs::read(&p).unwrap(), &p.display().to_string());
        }
        let mut rng = Rng::new(target as u64 + 1);
        let mut still_valid = 0;
        for i in 0..mutations {
            let (_, seed) = &seeds[i % seeds.len()];
            let (_, other) = &seeds[rng.below(seeds.len())];
            let input = mutate(&mut rng, seed, other);
            still_valid += run_one(target, &input, &format!("mutation {i}")) as usize;
        }
        println!("{}: {} seeds, {mutations} mutations ({still_valid} still accepted)", target.name(), seeds.len());
    }
}
