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

/// `poses.jsonl` writer, with an optional live copy of every line.
pub struct JsonlSink {
    out: BufWriter<File>,
    /// Named in write errors (a full disk must say which file).
    path: PathBuf,
    /// The line being written (its capacity reused: no allocation per frame).
    line: Vec<u8>,
    live: Option<LiveOutput>,
}

/// A live copy of the poses for another program: a named pipe (FIFO) or any
/// writable file. Best effort, never blocking the pipeline: a FIFO without a
/// reader is opened again at the next frame, a full or closed one drops the
/// line (counted); `poses.jsonl` keeps every line either way.
pub struct LiveOutput {
    path: PathBuf,
    file: Option<File>,
    /// Lines that did not reach a reader.
    pub dropped: u64,
}

impl LiveOutput {
    pub fn new(path: &Path) -> LiveOutput {
        LiveOutput { path: path.to_path_buf(), file: None, dropped: 0 }
    }

    fn send(&mut self, line: &[u8]) {
        use std::os::unix::fs::OpenOptionsExt;
        if self.file.is_none() {
            // O_NONBLOCK: a FIFO with no reader fails at once (ENXIO) instead of waiting.
            self.file = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.path)
                .map_err(|e| log::debug!("live output {}: {e}", self.path.display()))
                .ok();
        }
        let Some(f) = &mut self.file else {
            self.dropped += 1;
            return;
        };
        match f.write(line) {
            Ok(n) if n == line.len() => {}
            Ok(_) => self.dropped += 1,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.dropped += 1,
            Err(e) => {
                // The reader went away (EPIPE): reopen when one is back.
                log::debug!("live output {}: {e}", self.path.display());
                self.file = None;
                self.dropped += 1;
            }
        }
    }
}

impl JsonlSink {
    pub fn create(path: &Path) -> Result<JsonlSink> {
        let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(JsonlSink {
            out: BufWriter::with_capacity(1 << 16, f),
            path: path.to_path_buf(),
            line: Vec::with_capacity(1024),
            live: None,
        })
    }

    /// Also sends every line to `live`.
    pub fn with_live(mut self, live: Option<LiveOutput>) -> JsonlSink {
        self.live = live;
        self
    }

    /// Lines the live output dropped (0 without one).
    pub fn live_dropped(&self) -> u64 {
        self.live.as_ref().map_or(0, |l| l.dropped)
    }

    /// One line: `{"frame":…,"seq":…,"key":…,"reinit":…,"net":…,"latency_ms":…,"box":[x,y,w,h],
    /// "keypoints":[[x,y,score]×17]}`, coordinates in COCO pixel convention.
    pub fn write(&mut self, r: &FrameRecord, pose: &Pose) -> Result<()> {
        self.line.clear();
        Self::format_line(&mut self.line, r, pose).expect("writing to a Vec cannot fail");
        // Whole lines reach the file as they are made: a live consumer can tail it.
        self.out
            .write_all(&self.line)
            .and_then(|()| self.out.flush())
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        if let Some(live) = &mut self.live {
            live.send(&self.line);
        }
        Ok(())
    }

    fn format_line(o: &mut Vec<u8>, r: &FrameRecord, pose: &Pose) -> std::io::Result<()> {
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
        o.write_all(b"]}\n")
    }

    pub fn finish(mut self) -> Result<()> {
        self.out.flush().with_context(|| format!("cannot write {}", self.path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::OpenOptionsExt;

    #[test]
    fn a_fifo_gets_each_line_when_read_and_never_blocks_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("live");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let mut sink =
            JsonlSink::create(&dir.path().join("poses.jsonl")).unwrap().with_live(Some(LiveOutput::new(&fifo)));
        let r = |i| FrameRecord { index: i, sequence: i, key: true, reinit: false, net: "spatial", latency_ms: 1.0 };
        sink.write(&r(0), &Pose::default()).unwrap(); // no reader yet: dropped, not blocked
        let reader = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&fifo).unwrap();
        sink.write(&r(1), &Pose::default()).unwrap();
        sink.write(&r(2), &Pose::default()).unwrap();
        let mut got = String::new();
        std::io::Read::read_to_string(&mut &reader, &mut got).ok();
        let frames: Vec<&str> = got.lines().map(|l| &l[..11]).collect();
        assert_eq!(frames, ["{\"frame\":1,", "{\"frame\":2,"]);
        assert_eq!(sink.live_dropped(), 1);
        drop(reader);
        sink.write(&r(3), &Pose::default()).unwrap(); // the reader left: dropped again
        assert_eq!(sink.live_dropped(), 2);
        sink.finish().unwrap();
        let file = std::fs::read_to_string(dir.path().join("poses.jsonl")).unwrap();
        assert_eq!(file.lines().count(), 4, "the file has every line");
    }

    #[test]
    fn a_full_disk_names_the_file() {
        let Ok(mut sink) = JsonlSink::create(Path::new("/dev/full")) else { return };
        let r = FrameRecord { index: 0, sequence: 0, key: true, reinit: false, net: "spatial", latency_ms: 1.0 };
        let e = sink.write(&r, &Pose::default()).unwrap_err();
        assert_eq!(format!("{e:#}"), "cannot write /dev/full: No space left on device (os error 28)");
    }
}
