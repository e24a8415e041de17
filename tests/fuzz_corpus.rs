//! The fuzzers' short pass on stable Rust, for CI: every parser gets the
//! committed corpus (`fuzz/corpus/<target>`), every crash the fuzzers ever
//! found (`fuzz/regressions/<target>`), and a few thousand mutations of the
//! seeds from a fixed proptest seed — flipped bits, cut and repeated spans,
//! spliced seeds, numbers swapped for hostile ones (`common::mutation`). Not
//! coverage-guided (that is `scripts/fuzz.sh`, on nightly): a fast net under
//! the same entry points. Any outcome but a panic is a pass; a panic shrinks
//! to its smallest input and saves it for `fuzz/regressions/`.

mod common;

use std::cell::Cell;
use std::path::{Path, PathBuf};

use proptest::test_runner::TestError;
use vipnas::fuzzing::Target;

use common::mutation;

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect()).unwrap_or_default();
    v.sort();
    v
}

/// Runs one input, naming it if the parser panics.
fn run_one(target: Target, data: &[u8], what: &str) -> bool {
    std::panic::catch_unwind(|| target.run(data)).unwrap_or_else(|_| panic!("{} panicked on {what}", target.name()))
}

#[test]
fn every_parser_survives_its_corpus_and_mutations_of_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let cases = if common::under_qemu() { 2_000 } else { 20_000 };
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
        let n = seeds.len();
        let inputs = mutation::of(seeds.into_iter().map(|(_, d)| d).collect());
        let still_valid = Cell::new(0usize);
        let result = mutation::runner(cases).run(&inputs, |input| {
            still_valid.set(still_valid.get() + target.run(&input) as usize);
            Ok(())
        });
        match result {
            Ok(()) => {}
            Err(TestError::Fail(why, input)) => {
                let crash = common::scratch(&format!("fuzz-crash-{}", target.name())).join("input");
                std::fs::write(&crash, &input).unwrap();
                panic!(
                    "{} panicked ({why}); smallest input saved to {} (add it to fuzz/regressions/)",
                    target.name(),
                    crash.display()
                );
            }
            Err(e) => panic!("{}: {e}", target.name()),
        }
        println!("{}: {n} seeds, {cases} mutations ({} still accepted)", target.name(), still_valid.get());
    }
}

#[test]
fn a_planted_panic_is_found_and_shrunk_to_its_cause() {
    let inputs = mutation::of(vec![br#"{"fps": 30, "name": "rpi4"}"#.to_vec()]);
    let result = mutation::runner(2000).run(&inputs, |input| {
        assert!(!input.windows(3).any(|w| w == b"NaN"), "planted");
        Ok(())
    });
    let Err(TestError::Fail(_, input)) = result else { panic!("the planted panic was not found: {result:?}") };
    assert_eq!(String::from_utf8_lossy(&input), r#"{"fps": NaN, "name": "rpi4"}"#, "one edit, nothing else");
}
