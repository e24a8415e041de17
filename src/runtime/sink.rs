//! Where poses go: `poses.jsonl` (one line per frame, written without
//! allocating) and overlay PNGs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

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
    /// Named in write errors (a full disk must say which file).
    path: PathBuf,
}

impl JsonlSink {
    pub fn create(path: &Path) -> Result<JsonlSink> {
        let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(JsonlSink { out: BufWriter::with_capacity(1 << 16, f), path: path.to_path_buf() })
    }

    /// One line: `{"frame":…,"seq":…,"key":…,"reinit":…,"net":…,"latency_ms":…,"box":[x,y,w,h],
    /// "keypoints":[[x,y,score]×17]}`, coordinates in COCO pixel convention.
    pub fn write(&mut self, r: &FrameRecord, pose: &Pose) -> Result<()> {
        Self::write_line(&mut self.out, r, pose).with_context(|| format!("cannot write {}", self.path.display()))
    }

    fn write_line(o: &mut BufWriter<File>, r: &FrameRecord, pose: &Pose) -> std::io::Result<()> {
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
        self.out.flush().with_context(|| format!("cannot write {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_names_the_file() {
        let Ok(mut sink) = JsonlSink::create(Path::new("/dev/full")) else { return };
        let r = FrameRecord { index: 0, sequence: 0, key: true, reinit: false, net: "spatial", latency_ms: 1.0 };
        let e = sink.write(&r, &Pose::default()).unwrap_err();
        assert_eq!(format!("{e:#}"), "cannot write /dev/full: No space left on device (os error 28)");
    }
}
