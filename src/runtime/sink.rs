//! Where poses go: `poses.jsonl` (one line per frame, written without
//! allocating) and overlay PNGs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::pose::Pose;

/// What the pipeline did for one frame.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FrameRecord<'a> {
    pub index: u64,
    /// The source's number for the frame ([`crate::runtime::frame::Frame::sequence`]).
    pub sequence: u64,
    /// The spatial (key-frame) net ran.
    pub key: bool,
    /// The tracker restarted from the whole frame.
    pub reinit: bool,
    /// `spatial`, or the temporal net's name.
    pub net: &'a str,
    pub latency_ms: f64,
}

/// `poses.jsonl` writer, with an optional live copy of every line and
/// optional rotation (a service's disk is never filled).
pub struct JsonlSink {
    out: BufWriter<File>,
    /// Named in write errors (a full disk must say which file).
    path: PathBuf,
    /// The line being written (its capacity reused: no allocation per frame).
    line: Vec<u8>,
    live: Option<LiveOutput>,
    /// The file becomes `PATH.1` when it reaches this many bytes.
    rotate_at: Option<u64>,
    /// Bytes in the current file.
    written: u64,
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
    /// A new, empty file at `path` (one already there is replaced).
    pub fn create(path: &Path) -> Result<JsonlSink> {
        Ok(JsonlSink {
            out: Self::new_file(path)?,
            path: path.to_path_buf(),
            line: Vec::with_capacity(1024),
            live: None,
            rotate_at: None,
            written: 0,
        })
    }

    /// Like [`JsonlSink::create`], but what is already at `path` is kept as
    /// `PATH.1` (a restarted service keeps its last run's poses), and the file
    /// is rotated the same way whenever it reaches `max_bytes`: at most about
    /// twice that on disk, the newest lines always in `path`.
    pub fn rotating(path: &Path, max_bytes: u64) -> Result<JsonlSink> {
        anyhow::ensure!(max_bytes > 0, "{}: rotation needs a size above 0 bytes", path.display());
        if std::fs::metadata(path).is_ok_and(|m| m.len() > 0) {
            Self::keep_as_previous(path)?;
        }
        Ok(JsonlSink { rotate_at: Some(max_bytes), ..Self::create(path)? })
    }

    fn new_file(path: &Path) -> Result<BufWriter<File>> {
        let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        Ok(BufWriter::with_capacity(1 << 16, f))
    }

    /// `PATH` → `PATH.1`, replacing the one before.
    fn keep_as_previous(path: &Path) -> Result<()> {
        let mut previous = path.as_os_str().to_owned();
        previous.push(".1");
        std::fs::rename(path, &previous)
            .with_context(|| format!("cannot rotate {} to {}", path.display(), Path::new(&previous).display()))
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
    pub fn write(&mut self, r: &FrameRecord<'_>, pose: &Pose) -> Result<()> {
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
        self.written += self.line.len() as u64;
        if self.rotate_at.is_some_and(|max| self.written >= max) {
            Self::keep_as_previous(&self.path)?;
            self.out = Self::new_file(&self.path)?;
            self.written = 0;
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
    fn rotation_keeps_the_newest_lines_and_the_last_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("poses.jsonl");
        let previous = dir.path().join("poses.jsonl.1");
        let r = |i| FrameRecord { index: i, sequence: i, key: true, reinit: false, net: "spatial", latency_ms: 1.0 };
        let frames = |p: &Path| -> Vec<u64> {
            let text = std::fs::read_to_string(p).unwrap();
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["frame"].as_u64().unwrap())
                .collect()
        };
        std::fs::write(&path, "{\"frame\":99}\n").unwrap(); // the last run's
        let mut sink = JsonlSink::rotating(&path, 1).unwrap();
        assert_eq!(frames(&previous), [99], "kept at start");
        let line_len = {
            sink.write(&r(0), &Pose::default()).unwrap();
            std::fs::metadata(&previous).unwrap().len()
        };
        assert_eq!(frames(&previous), [0], "a 1-byte limit rotates after every line");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        // Three lines' worth: rotated after each third line.
        let mut sink = JsonlSink::rotating(&path, 3 * line_len).unwrap();
        for i in 1..=7 {
            sink.write(&r(i), &Pose::default()).unwrap();
        }
        sink.finish().unwrap();
        assert_eq!(frames(&previous), [4, 5, 6]);
        assert_eq!(frames(&path), [7]);
        let e = JsonlSink::rotating(&path, 0).err().unwrap().to_string();
        assert!(e.ends_with("poses.jsonl: rotation needs a size above 0 bytes"), "{e}");
    }

    #[test]
    fn a_full_disk_names_the_file() {
        let Ok(mut sink) = JsonlSink::create(Path::new("/dev/full")) else { return };
        let r = FrameRecord { index: 0, sequence: 0, key: true, reinit: false, net: "spatial", latency_ms: 1.0 };
        let e = sink.write(&r, &Pose::default()).unwrap_err();
        assert_eq!(format!("{e:#}"), "cannot write /dev/full: No space left on device (os error 28)");
    }
}
