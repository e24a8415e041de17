//! Where poses go: `poses.jsonl` (one line per frame, written without
//! allocating) and overlay PNGs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};

use super::pose::Pose;

/// What the pipeline did for one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameRecord {
    pub index: u64,
    /// The source's number for the frame ([`crate::runtime::frame::Frame::sequence`]).
    pub sequence: u64,
    /// The spatial (key-frame) net ran (always, until temporal nets exist).
    pub key: bool,
    /// The tracker restarted from the whole frame.
    pub reinit: bool,
    pub net: &'static str,
    pub latency_ms: f64,
}

/// `poses.jsonl` writer.
pub struct JsonlSink {
    out: BufWriter<File>,
}

impl JsonlSink {
    pub fn create(path: &Path) -> Result<JsonlSink> {
        let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(JsonlSink { out: BufWriter::with_capacity(1 << 16, f) })
    }

    /// One line: `{"frame":…,"seq":…,"key":…,"reinit":…,"net":…,"latency_ms":…,"box":[x,y,w,h],
    /// "keypoints":[[x,y,score]×17]}`, coordinates in COCO pixel convention.
    pub fn write(&mut self, r: &FrameRecord, pose: &Pose) -> Result<()> {
        let o = &mut self.out;
        let [bx, by, bw, bh] = pose.bbox;
        write!(
            o,
            "{{\"frame\":{},\"seq\":{},\"key\":{},\"reinit\":{},\"net\":\"{}\",\"latency_ms\":{:.3},\"box\":[{:.2},{:.2},{:.2},{:.2}],\"keypoints\":[",
            r.index,
            r.sequence,
            r.key,
            r.reinit,
            r.net,
            r.latency_ms,
            bx - 0.5,
            by - 0.5,
            bw,
            bh
        )?;
        for (i, k) in pose.keypoints.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(o, "{sep}[{:.2},{:.2},{:.4}]", k[0] - 0.5, k[1] - 0.5, k[2])?;
        }
        o.write_all(b"]}\n")?;
        // Whole lines reach the file as they are made: a live consumer can tail it.
        o.flush()?;
        Ok(())
    }

    pub fn finish(mut self) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}
