//! Property tests for the parsers that read untrusted input: y4m headers and
//! streams, Subnet JSON and bundle manifests. Thousands of random and mutated
//! inputs; the property is "an error or a value, never a panic", plus
//! round-trips where a value comes back.

mod common;

use std::path::Path;

use vipnas::arch::rng::Rng;
use vipnas::arch::{Sample, SearchSpace, SpaceName, Subnet};
use vipnas::bundle::Manifest;
use vipnas::runtime::source::{FrameRead, FrameSource, Y4mHeader, Y4mSource};
use vipnas::runtime::Frame;

/// Random edits: flip, delete, insert or duplicate bytes.
fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(v.len().max(1));
        match rng.below(4) {
            0 if !v.is_empty() => v[at] ^= 1 << rng.below(8),
            1 if !v.is_empty() => {
                v.remove(at);
            }
            2 => v.insert(at.min(v.len()), b"{}[]\":,0123456789-e.xW H F C"[rng.below(28)]),
            _ => {
                let end = (at + rng.below(16)).min(v.len());
                let piece = v[at.min(end)..end].to_vec();
                v.splice(at.min(v.len())..at.min(v.len()), piece);
            }
        }
    }
    v
}

#[test]
fn y4m_headers_never_panic() {
    let mut rng = Rng::new(1);
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
    for _ in 0..5000 {
        let n = rng.below(7);
        let line: Vec<&str> = (0..n).map(|_| tokens[rng.below(tokens.len())]).collect();
        let line = line.join(" ");
        if let Ok(h) = Y4mHeader::parse(&line) {
            assert!(h.width > 0 && h.height > 0 && h.frame_bytes() > 0, "{line}");
        }
    }
}

#[test]
fn y4m_streams_of_garbage_end_or_err_never_panic() {
    let dir = common::scratch("y4m_props");
    let mut rng = Rng::new(2);
    let valid = {
        let mut b = b"YUV4MPEG2 W4 H2 F30:1 C420jpeg\n".to_vec();
        for _ in 0..3 {
            b.extend_from_slice(b"FRAME\n");
            b.extend((0..12).map(|i| (i * 20) as u8));
        }
        b
    };
    for case in 0..400 {
        let bytes = mutate(&mut rng, &valid);
        let path = dir.join(format!("{case}.y4m"));
        std::fs::write(&path, &bytes).unwrap();
        let Ok(mut src) = Y4mSource::open(&path) else {
            continue;
        };
        let mut f = Frame::default();
        for _ in 0..10 {
            match src.read(&mut f) {
                Ok(FrameRead::End) | Err(_) => break,
                Ok(FrameRead::Frame) => {
                    assert_eq!(f.rgb.len(), f.width as usize * f.height as usize * 3)
                }
                Ok(FrameRead::Lost(_) | FrameRead::Interrupted(_)) => {}
            }
        }
    }
}

#[test]
fn subnet_json_mutations_never_panic_and_valid_ones_round_trip() {
    let mut rng = Rng::new(3);
    let mut accepted = 0;
    for i in 0..3000 {
        let space = SearchSpace::get(SpaceName::ALL[i % 3]);
        let text = serde_json::to_vec(&Subnet::sample(&space, Sample::Random(i as u64))).unwrap();
        let bytes = mutate(&mut rng, &text);
        let Ok(s) = std::str::from_utf8(&bytes) else {
            continue;
        };
        if let Ok(subnet) = Subnet::from_json(s, "fuzz.json") {
            accepted += 1;
            let again = serde_json::to_string(&subnet).unwrap();
            assert_eq!(Subnet::from_json(&again, "again.json").unwrap(), subnet);
            subnet.network(vipnas::arch::InputSize::new(64, 64).unwrap()).unwrap();
        }
    }
    assert!(accepted > 10, "some mutations stay valid (whitespace, equal values): {accepted}");
}

#[test]
fn manifest_mutations_never_panic() {
    let dir = common::scratch("manifest_props");
    let original =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/movenet-lightning/manifest.json")).unwrap();
    let mut rng = Rng::new(4);
    let (mut ok, mut err) = (0, 0);
    for _ in 0..2000 {
        std::fs::write(dir.join("manifest.json"), mutate(&mut rng, &original)).unwrap();
        match Manifest::load(&dir) {
            Ok(m) => {
                ok += 1;
                assert_eq!(m.keypoints.len(), 17);
            }
            Err(e) => {
                err += 1;
                assert!(format!("{e:#}").contains("manifest.json"), "{e:#}");
            }
        }
    }
    assert!(ok > 0 && err > 0, "ok={ok} err={err}");
}
