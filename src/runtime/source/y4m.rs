//! `y4m:PATH`: YUV4MPEG2 raw video, what `ffmpeg -i clip.mp4 -pix_fmt yuv420p
//! clip.y4m` writes. Planar 4:2:0 / 4:2:2 / 4:4:4 and mono, 8 bits; limited
//! range unless the header says `XCOLORRANGE=FULL`. Frames are read into one
//! reused buffer: this source does not allocate per frame.

use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind, Read as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::convert::{planar_to_rgb, Range};
use super::{FrameRead, FrameSource, SourceStats};
use crate::runtime::frame::Frame;

/// Chroma layout of a y4m stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chroma {
    /// Subsampling (x, y): 4:2:0 = (2, 2), 4:2:2 = (2, 1), 4:4:4 = (1, 1).
    Planar(u32, u32),
    Mono,
}

/// The stream header.
#[derive(Clone, Debug, PartialEq)]
pub struct Y4mHeader {
    pub width: u32,
    pub height: u32,
    pub fps: Option<f64>,
    pub chroma: Chroma,
    pub range: Range,
}

impl Y4mHeader {
    /// Parses the first line (without its newline).
    pub fn parse(line: &str) -> Result<Y4mHeader> {
        let mut parts = line.split(' ');
        if parts.next() != Some("YUV4MPEG2") {
            bail!("not a YUV4MPEG2 stream (missing signature)");
        }
        let (mut width, mut height, mut fps) = (None, None, None);
        let mut chroma = Chroma::Planar(2, 2);
        let mut range = Range::Limited;
        for p in parts.filter(|p| !p.is_empty()) {
            // A parameter starting with a non-ASCII character is no tag (found by the fuzzer:
            // `split_at(1)` panicked inside a multi-byte character).
            let Some((tag, v)) = p.split_at_checked(1) else { continue };
            match tag {
                "W" => width = v.parse::<u32>().ok(),
                "H" => height = v.parse::<u32>().ok(),
                "F" => {
                    fps = v
                        .split_once(':')
                        .and_then(|(n, d)| Some(n.parse::<f64>().ok()? / d.parse::<f64>().ok()?))
                        .filter(|f| f.is_finite() && *f > 0.0)
                }
                "C" => {
                    chroma = match v {
                        "420jpeg" | "420paldv" | "420mpeg2" | "420" => Chroma::Planar(2, 2),
                        "422" => Chroma::Planar(2, 1),
                        "444" => Chroma::Planar(1, 1),
                        "mono" => Chroma::Mono,
                        other => bail!("colour space C{other} is not supported (8-bit 420, 422, 444 or mono)"),
                    }
                }
                "X" if v == "COLORRANGE=FULL" => range = Range::Full,
                _ => {}
            }
        }
        match (width, height) {
            (Some(w), Some(h)) if w > 0 && h > 0 && w <= 16384 && h <= 16384 => {
                Ok(Y4mHeader { width: w, height: h, fps, chroma, range })
            }
            _ => bail!("header lacks a valid frame size (W and H)"),
        }
    }

    /// Bytes of one frame's planes.
    pub fn frame_bytes(&self) -> usize {
        let luma = self.width as usize * self.height as usize;
        match self.chroma {
            Chroma::Mono => luma,
            Chroma::Planar(sx, sy) => luma + 2 * (self.width.div_ceil(sx) as usize * self.height.div_ceil(sy) as usize),
        }
    }
}

/// What a stream is read from: a file, or any bytes (a pipe, the fuzzer's).
type Input = BufReader<Box<dyn std::io::Read + Send>>;

pub struct Y4mSource {
    path: PathBuf,
    reader: Input,
    header: Y4mHeader,
    raw: Vec<u8>,
    line: Vec<u8>,
    stats: SourceStats,
}

/// Longest header or FRAME line read: real ones are well under 100 bytes, and
/// a stream without newlines must not be read into memory whole.
const MAX_LINE: u64 = 1024;

/// Reads up to and including the next `\n`, at most [`MAX_LINE`] bytes; the
/// line lacks its `\n` when the stream ended or the limit was hit first.
fn read_line(reader: &mut Input, line: &mut Vec<u8>) -> std::io::Result<usize> {
    line.clear();
    reader.by_ref().take(MAX_LINE).read_until(b'\n', line)
}

impl Y4mSource {
    pub fn open(path: &Path) -> Result<Y4mSource> {
        let file = File::open(path).with_context(|| format!("cannot open y4m file {}", path.display()))?;
        Self::from_reader(path, Box::new(file))
    }

    /// A stream from any reader; `path` names it in messages.
    pub fn from_reader(path: &Path, input: Box<dyn std::io::Read + Send>) -> Result<Y4mSource> {
        let mut reader = BufReader::new(input);
        let mut line = Vec::new();
        read_line(&mut reader, &mut line).with_context(|| format!("{}: cannot read header", path.display()))?;
        let Some(text) = line.strip_suffix(b"\n").and_then(|l| std::str::from_utf8(l).ok()) else {
            bail!(
                "{}: the header line is cut short or not text ({} bytes, no newline within {MAX_LINE})",
                path.display(),
                line.len()
            );
        };
        let header = Y4mHeader::parse(text).with_context(|| format!("{}", path.display()))?;
        let raw = vec![0; header.frame_bytes()];
        Ok(Y4mSource { path: path.to_path_buf(), reader, header, raw, line, stats: SourceStats::default() })
    }

    pub fn header(&self) -> &Y4mHeader {
        &self.header
    }
}

impl FrameSource for Y4mSource {
    fn read(&mut self, frame: &mut Frame) -> Result<FrameRead> {
        let n = read_line(&mut self.reader, &mut self.line)
            .with_context(|| format!("{}: read error", self.path.display()))?;
        if n == 0 {
            return Ok(FrameRead::End);
        }
        if !(self.line.starts_with(b"FRAME") && self.line.ends_with(b"\n")) {
            // Lost sync: nothing after this point can be trusted.
            let index = self.stats.captured();
            self.stats.lost += 1;
            log::warn!(
                "{}: frame {index}: no FRAME marker where it should start ({}), stopping: the previous frame is longer than the header's {}x{} frame of {} bytes, or the stream is corrupt",
                self.path.display(),
                if index == 0 { "after the header".to_string() } else { format!("after frame {}", index - 1) },
                self.header.width,
                self.header.height,
                self.header.frame_bytes()
            );
            return Ok(FrameRead::End);
        }
        if let Err(e) = self.reader.read_exact(&mut self.raw) {
            self.stats.lost += 1;
            let index = self.stats.captured() - 1;
            if e.kind() == ErrorKind::UnexpectedEof {
                log::warn!("{}: frame {index} is truncated", self.path.display());
                return Ok(FrameRead::End);
            }
            return Ok(FrameRead::Lost(format!("{}: frame {index}: {e}", self.path.display())));
        }
        let (w, h) = (self.header.width, self.header.height);
        let luma = w as usize * h as usize;
        match self.header.chroma {
            Chroma::Mono => {
                frame.resize(w, h);
                for (px, &y) in frame.rgb.chunks_exact_mut(3).zip(&self.raw[..luma]) {
                    px.copy_from_slice(&super::ycbcr_to_rgb(y, 128, 128, self.header.range));
                }
            }
            Chroma::Planar(sx, sy) => {
                let c = w.div_ceil(sx) as usize * h.div_ceil(sy) as usize;
                let (y, rest) = self.raw.split_at(luma);
                let (cb, cr) = rest.split_at(c);
                planar_to_rgb(y, cb, cr, w, h, (sx, sy), self.header.range, frame);
            }
        }
        frame.sequence = self.stats.captured();
        self.stats.delivered += 1;
        Ok(FrameRead::Frame)
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }

    fn fps(&self) -> Option<f64> {
        self.header.fps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_or_fail_clearly() {
        let h = Y4mHeader::parse("YUV4MPEG2 W640 H480 F30000:1001 Ip A1:1 C420jpeg XYSCSS=420JPEG").unwrap();
        assert_eq!((h.width, h.height, h.chroma, h.range), (640, 480, Chroma::Planar(2, 2), Range::Limited));
        assert!((h.fps.unwrap() - 29.97).abs() < 0.01);
        assert_eq!(h.frame_bytes(), 640 * 480 * 3 / 2);
        let h = Y4mHeader::parse("YUV4MPEG2 W5 H3 C444 XCOLORRANGE=FULL").unwrap();
        assert_eq!((h.chroma, h.range, h.frame_bytes()), (Chroma::Planar(1, 1), Range::Full, 45));
        assert_eq!(Y4mHeader::parse("YUV4MPEG2 W5 H3 C420").unwrap().frame_bytes(), 15 + 2 * 6);
        assert!(Y4mHeader::parse("P6 640 480").unwrap_err().to_string().contains("signature"));
        assert!(Y4mHeader::parse("YUV4MPEG2 W640").unwrap_err().to_string().contains("frame size"));
        assert!(Y4mHeader::parse("YUV4MPEG2 W0 H0").is_err());
        assert!(Y4mHeader::parse("YUV4MPEG2 W4 H4 C420p10").unwrap_err().to_string().contains("C420p10"));
        assert_eq!(Y4mHeader::parse("YUV4MPEG2 W4 H2 \u{7e7}LO").unwrap().frame_bytes(), 8 + 2 * 2);
    }

    fn clip(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn streams_that_break_their_header_are_refused_or_stopped_at_the_right_frame() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        // A header cut mid-line (no newline): refused, not a 64x4 stream.
        let e = Y4mSource::open(&clip(dir, "cut.y4m", b"YUV4MPEG2 W64 H4")).err().unwrap().to_string();
        assert!(e.contains("cut short"), "{e}");
        let e = Y4mSource::open(&clip(dir, "bin.y4m", &[0xFF; 5000])).err().unwrap().to_string();
        assert!(e.contains("cut short or not text"), "{e}");

        // 2x2 mono frames; the second one has 4 bytes too many (binary, not UTF-8).
        let mut s = b"YUV4MPEG2 W2 H2 Cmono\n".to_vec();
        s.extend_from_slice(b"FRAME\n\x10\x20\x30\x40");
        s.extend_from_slice(b"FRAME\n\x10\x20\x30\x40\xff\xfe\xfd\xfc");
        s.extend_from_slice(b"FRAME\n\x10\x20\x30\x40");
        let mut src = Y4mSource::open(&clip(dir, "long.y4m", &s)).unwrap();
        let mut frame = Frame::default();
        assert_eq!(src.read(&mut frame).unwrap(), FrameRead::Frame);
        assert_eq!(src.read(&mut frame).unwrap(), FrameRead::Frame);
        // Frame 2's marker is not where it should be: the stream stops there,
        // one frame lost, the same way whatever the extra bytes are.
        assert_eq!(src.read(&mut frame).unwrap(), FrameRead::End);
        assert_eq!((src.stats().delivered, src.stats().lost), (2, 1));

        // A header-only stream ends at once.
        let mut src = Y4mSource::open(&clip(dir, "empty.y4m", b"YUV4MPEG2 W2 H2 Cmono\n")).unwrap();
        assert_eq!(src.read(&mut frame).unwrap(), FrameRead::End);
    }
}
