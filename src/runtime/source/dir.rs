//! `dir:PATH`: JPEG and PNG files of a directory, in file-name order. A file
//! that does not decode is reported and counted as lost, never fatal.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{FrameRead, FrameSource, SourceStats};
use crate::runtime::frame::{load_image, Frame};

pub struct DirSource {
    files: Vec<PathBuf>,
    next: usize,
    stats: SourceStats,
}

fn is_image(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref(),
        Some("jpg" | "jpeg" | "png")
    )
}

/// The JPEG and PNG files of `dir`, in file-name order (possibly none).
pub fn image_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> =
        fs::read_dir(dir)?.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_image(p)).collect();
    files.sort();
    Ok(files)
}

impl DirSource {
    pub fn open(dir: &Path) -> Result<DirSource> {
        let files = image_files(dir).with_context(|| format!("cannot read frame directory {}", dir.display()))?;
        if files.is_empty() {
            bail!("{}: no .jpg, .jpeg or .png frames", dir.display());
        }
        Ok(DirSource { files, next: 0, stats: SourceStats::default() })
    }

    /// The files, in the order they are read.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl FrameSource for DirSource {
    fn read(&mut self, frame: &mut Frame) -> Result<FrameRead> {
        let Some(path) = self.files.get(self.next) else {
            return Ok(FrameRead::End);
        };
        self.next += 1;
        match load_image(path, frame) {
            Ok(()) => {
                frame.sequence = self.next as u64 - 1;
                self.stats.delivered += 1;
                Ok(FrameRead::Frame)
            }
            Err(e) => {
                self.stats.lost += 1;
                Ok(FrameRead::Lost(format!("{}: {e:#}", path.display())))
            }
        }
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_truncated_jpeg_is_lost_not_a_grey_frame() {
        let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/pose2sim-cam03/000000.jpg");
        let bytes = fs::read(&real).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        fs::write(dir.join("0.jpg"), &bytes).unwrap();
        fs::write(dir.join("1.jpg"), &bytes[..bytes.len() / 20]).unwrap();
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0; 100]);
        fs::write(dir.join("2.jpg"), &padded).unwrap();
        let mut src = DirSource::open(dir).unwrap();
        let mut frame = Frame::default();
        assert_eq!(src.read(&mut frame).unwrap(), FrameRead::Frame);
        match src.read(&mut frame).unwrap() {
            FrameRead::Lost(why) => assert!(why.contains("1.jpg") && why.contains("truncated JPEG"), "{why}"),
            other => panic!("a JPEG cut to 5 % read as {other:?}"),
        }
        assert_eq!(src.read(&mut frame).unwrap(), FrameRead::Frame, "zero padding after the end marker is fine");
        assert_eq!((src.stats().delivered, src.stats().lost), (2, 1));
    }
}
