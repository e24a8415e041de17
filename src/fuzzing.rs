//! Entry points for the fuzzers (`fuzz/`, cargo-fuzz) and for the test that
//! replays their corpus on stable Rust (`tests/fuzz_corpus.rs`): each feeds
//! arbitrary bytes to one parser the way a user's file reaches it. Any
//! outcome but a panic, a hang or an unbounded allocation is fine — bad input
//! must come back as an `Err`.

use std::path::Path;

/// Which parser a fuzz target drives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Manifest,
    Board,
    LatencyTable,
    Subnet,
    Y4m,
    #[cfg(feature = "host")]
    Coco,
    #[cfg(feature = "host")]
    Checkpoint,
    /// Pretrained initial weights (`train --init`).
    #[cfg(feature = "host")]
    Weights,
}

impl Target {
    pub const ALL: &'static [Target] = &[
        Target::Manifest,
        Target::Board,
        Target::LatencyTable,
        Target::Subnet,
        Target::Y4m,
        #[cfg(feature = "host")]
        Target::Coco,
        #[cfg(feature = "host")]
        Target::Checkpoint,
        #[cfg(feature = "host")]
        Target::Weights,
    ];

    /// The fuzz target's (and its corpus directory's) name.
    pub fn name(self) -> &'static str {
        match self {
            Target::Manifest => "manifest",
            Target::Board => "board",
            Target::LatencyTable => "latency_table",
            Target::Subnet => "subnet",
            Target::Y4m => "y4m",
            #[cfg(feature = "host")]
            Target::Coco => "coco",
            #[cfg(feature = "host")]
            Target::Checkpoint => "checkpoint",
            #[cfg(feature = "host")]
            Target::Weights => "weights",
        }
    }

    /// Feeds `data` to the parser; returns whether it was accepted.
    pub fn run(self, data: &[u8]) -> bool {
        let text = || std::str::from_utf8(data).ok();
        match self {
            Target::Manifest => text().is_some_and(|t| crate::bundle::Manifest::parse(t).is_ok()),
            Target::Board => {
                text().is_some_and(|t| crate::board::BoardProfile::parse(t, Path::new("fuzz.toml")).is_ok())
            }
            Target::LatencyTable => text().is_some_and(|t| crate::board::LatencyTable::parse(t).is_ok()),
            Target::Subnet => text().is_some_and(|t| {
                crate::arch::Subnet::from_json(t, "fuzz")
                    .and_then(|s| Ok(s.network(crate::arch::InputSize::new(64, 64).map_err(anyhow::Error::msg)?)?))
                    .is_ok()
            }),
            Target::Y4m => y4m(data),
            #[cfg(feature = "host")]
            Target::Coco => text().is_some_and(|t| crate::host::coco::CocoDataset::parse(t).is_ok()),
            #[cfg(feature = "host")]
            Target::Checkpoint => crate::host::train::checkpoint::Checkpoint::parse(data).is_ok(),
            #[cfg(feature = "host")]
            Target::Weights => crate::host::train::init::InitWeights::parse(data).is_ok(),
        }
    }
}

/// Every frame of a y4m stream, as `run` reads them.
fn y4m(data: &[u8]) -> bool {
    use crate::runtime::source::{FrameRead, FrameSource, Y4mSource};
    let input = Box::new(std::io::Cursor::new(data.to_vec()));
    let Ok(mut source) = Y4mSource::from_reader(Path::new("fuzz.y4m"), input) else {
        return false;
    };
    // A header may claim up to 16384² pixels, which is allowed; the fuzzer's
    // time goes to the framing logic instead.
    if source.header().frame_bytes() > 1 << 20 {
        return true;
    }
    let mut frame = crate::runtime::Frame::default();
    // Each read consumes at least one byte or ends the stream.
    for _ in 0..=data.len() {
        match source.read(&mut frame) {
            Ok(FrameRead::End) | Err(_) => break,
            Ok(_) => {}
        }
    }
    let s = source.stats();
    s.delivered + s.lost <= data.len() as u64
}
