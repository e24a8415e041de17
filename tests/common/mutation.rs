//! Edits that turn a valid file into a hostile one, as proptest strategies:
//! flipped bits, cut and repeated spans, spans spliced in from another seed,
//! numbers swapped for hostile ones, truncation, stray bytes. The one mutator
//! of the parser property tests and of the fuzzers' short pass; a failing
//! case shrinks to the fewest, smallest edits that still fail.

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

/// Numbers a careless or hostile file holds.
const HOSTILE: &[&[u8]] =
    &[b"0", b"-1", b"1e308", b"-1e308", b"NaN", b"18446744073709551616", b"4294967296", b"99999999", b"0.0", b"\"\""];

/// Bytes that break the structure of JSON, TOML and y4m headers.
const STRAY: &[u8] = b"\0\xff-9\"{}[]\n=:, .eWHFC";

/// One edit; positions are shares of the input's length at the time.
#[derive(Clone, Debug)]
pub enum Edit {
    FlipBit(Index, u8),
    Cut(Index, usize),
    Repeat(Index, usize),
    /// `len` bytes of the other seed from `from`, inserted at `at`.
    Splice {
        at: Index,
        from: Index,
        len: usize,
    },
    /// The number starting at or after the position becomes a hostile one.
    Hostile(Index, Index),
    Truncate(Index),
    Insert(Index, u8),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(at, bit)| Edit::FlipBit(at, bit)),
        (any::<Index>(), 1usize..64).prop_map(|(at, n)| Edit::Cut(at, n)),
        (any::<Index>(), 1usize..64).prop_map(|(at, n)| Edit::Repeat(at, n)),
        (any::<Index>(), any::<Index>(), 1usize..256).prop_map(|(at, from, len)| Edit::Splice { at, from, len }),
        (any::<Index>(), any::<Index>()).prop_map(|(at, which)| Edit::Hostile(at, which)),
        any::<Index>().prop_map(Edit::Truncate),
        (any::<Index>(), proptest::sample::select(STRAY)).prop_map(|(at, b)| Edit::Insert(at, b)),
    ]
}

/// One to four edits.
pub fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(edit(), 1..=4)
}

/// Mutations of `seeds`: one of them edited, spans spliced in from another
/// (or itself).
pub fn of(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = seeds.len();
    (0..n, 0..n, edits()).prop_map(move |(s, o, e)| apply(&seeds[s], &seeds[o], &e))
}

/// `seed` with `edits` applied in order; spliced spans come from `other`.
pub fn apply(seed: &[u8], other: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut v = seed.to_vec();
    for e in edits {
        // A position in 0..=len: every edit also applies at the end.
        let at = |i: &Index, v: &[u8]| i.index(v.len() + 1);
        match e {
            Edit::FlipBit(i, bit) => {
                if !v.is_empty() {
                    let i = i.index(v.len());
                    v[i] ^= 1 << bit;
                }
            }
            Edit::Cut(i, n) => {
                let a = at(i, &v);
                let end = (a + n).min(v.len());
                v.drain(a..end);
            }
            Edit::Repeat(i, n) => {
                let a = at(i, &v);
                let span = v[a..(a + n).min(v.len())].to_vec();
                v.splice(a..a, span);
            }
            Edit::Splice { at: i, from, len } => {
                let a = at(i, &v);
                let f = from.index(other.len() + 1);
                v.splice(a..a, other[f..(f + len).min(other.len())].iter().copied());
            }
            Edit::Hostile(i, which) => {
                let a = at(i, &v);
                if let Some(start) = v[a..].iter().position(u8::is_ascii_digit).map(|p| p + a) {
                    let end = v[start..]
                        .iter()
                        .position(|b| !b.is_ascii_digit() && *b != b'.')
                        .map_or(v.len(), |p| p + start);
                    v.splice(start..end, HOSTILE[which.index(HOSTILE.len())].iter().copied());
                }
            }
            Edit::Truncate(i) => {
                let a = at(i, &v);
                v.truncate(a);
            }
            Edit::Insert(i, b) => {
                let a = at(i, &v);
                v.insert(a, *b);
            }
        }
    }
    v
}

/// A runner of `cases` cases from a fixed seed: the same inputs on every
/// run, and no failure files written into the source tree.
pub fn runner(cases: u32) -> TestRunner {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
}
