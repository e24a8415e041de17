//! Property tests (proptest) for the parsers that read untrusted input: y4m
//! headers and streams, Subnet JSON and bundle manifests. Thousands of random
//! and mutated inputs (`common::mutation`); the property is "an error or a
//! value, never a panic", plus round-trips where a value comes back.

mod common;

use std::cell::Cell;
use std::path::Path;

use proptest::prelude::*;
use vipnas::arch::{Sample, SearchSpace, SpaceName, Subnet};
use vipnas::bundle::Manifest;
use vipnas::runtime::source::{FrameRead, FrameSource, Y4mHeader, Y4mSource};
use vipnas::runtime::Frame;

use common::mutation;

#[test]
fn y4m_headers_never_panic() {
    let tokens = [
        "YUV4MPEG2",
        "W640",
        "H480",
        "W0",
        "H-3",
        "W99999999999",
        "F30:1",
        "F0:0",
        "F1:0",
        "Ip",
        "A1:1",
        "C420jpeg",
        "C444",
        "Cmono",
        "C420p10",
        "XCOLORRANGE=FULL",
        "X",
        "",
        "  ",
    ];
    let lines = prop::collection::vec(prop::sample::select(tokens.to_vec()), 0..7).prop_map(|t| t.join(" "));
    mutation::runner(5000)
        .run(&lines, |line| {
            if let Ok(h) = Y4mHeader::parse(&line) {
                prop_assert!(h.width > 0 && h.height > 0 && h.frame_bytes() > 0, "{line}");
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn y4m_streams_of_garbage_end_or_err_never_panic() {
    let path = common::scratch("y4m_props").join("case.y4m");
    let mut valid = b"YUV4MPEG2 W4 H2 F30:1 C420jpeg\n".to_vec();
    for _ in 0..3 {
        valid.extend_from_slice(b"FRAME\n");
        valid.extend((0..12).map(|i| (i * 20) as u8));
    }
    mutation::runner(400)
        .run(&mutation::of(vec![valid]), |bytes| {
            std::fs::write(&path, &bytes).unwrap();
            let Ok(mut src) = Y4mSource::open(&path) else {
                return Ok(());
            };
            let mut f = Frame::default();
            for _ in 0..10 {
                match src.read(&mut f) {
                    Ok(FrameRead::End) | Err(_) => break,
                    Ok(FrameRead::Frame) => {
                        prop_assert_eq!(f.rgb.len(), f.width as usize * f.height as usize * 3)
                    }
                    Ok(FrameRead::Lost(_) | FrameRead::Interrupted(_)) => {}
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn subnet_json_mutations_never_panic_and_valid_ones_round_trip() {
    // One case in ten is a sampled subnet as written: those must round-trip.
    let edits = prop::option::weighted(0.9, mutation::edits());
    let texts = (0..3usize, any::<u64>(), edits).prop_map(|(space, seed, e)| {
        let space = SearchSpace::get(SpaceName::ALL[space]);
        let text = serde_json::to_vec(&Subnet::sample(&space, Sample::Random(seed))).unwrap();
        mutation::apply(&text, &text, &e.unwrap_or_default())
    });
    let accepted = Cell::new(0);
    mutation::runner(3000)
        .run(&texts, |bytes| {
            let Ok(s) = std::str::from_utf8(&bytes) else {
                return Ok(());
            };
            if let Ok(subnet) = Subnet::from_json(s, "fuzz.json") {
                accepted.set(accepted.get() + 1);
                let again = serde_json::to_string(&subnet).unwrap();
                prop_assert_eq!(Subnet::from_json(&again, "again.json").unwrap(), subnet.clone());
                subnet.network(vipnas::arch::InputSize::new(64, 64).unwrap()).unwrap();
            }
            Ok(())
        })
        .unwrap();
    // The unmutated tenth and the mutations that stay valid (equal values, cut whitespace).
    assert!(accepted.get() > 250, "accepted {} of 3000", accepted.get());
}

#[test]
fn manifest_mutations_never_panic() {
    let dir = common::scratch("manifest_props");
    let original =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/movenet-lightning/manifest.json")).unwrap();
    let (ok, err) = (Cell::new(0), Cell::new(0));
    mutation::runner(2000)
        .run(&mutation::of(vec![original]), |bytes| {
            std::fs::write(dir.join("manifest.json"), bytes).unwrap();
            match Manifest::load(&dir) {
                Ok(m) => {
                    ok.set(ok.get() + 1);
                    prop_assert_eq!(m.keypoints.len(), 17);
                }
                Err(e) => {
                    err.set(err.get() + 1);
                    prop_assert!(format!("{e:#}").contains("manifest.json"), "{e:#}");
                }
            }
            Ok(())
        })
        .unwrap();
    assert!(ok.get() > 0 && err.get() > 0, "ok={} err={}", ok.get(), err.get());
}
