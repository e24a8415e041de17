//! `dir:PATH`: JPEG and PNG files of a directory, in file-name order. A file
//! that does not decode is reported and counted as lost, never fatal.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{FrameSource, Read, SourceStats};
use crate::runtime::frame::Frame;

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

impl DirSource {
    pub fn open(dir: &Path) -> Result<DirSource> {
        let entries = fs::read_dir(dir).with_context(|| format!("cannot read frame directory {}", dir.display()))?;
        let mut files: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_image(p)).collect();
        if files.is_empty() {
            bail!("{}: no .jpg, .jpeg or .png frames", dir.display());
        }
        files.sort();
        Ok(DirSource { files, next: 0, stats: SourceStats::default() })
    }

    /// The files, in the order they are read.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }
}

impl FrameSource for DirSource {
    fn read(&mut self, frame: &mut Frame) -> Result<Read> {
        let Some(path) = self.files.get(self.next) else {
            return Ok(Read::End);
        };
        self.next += 1;
        match load_rgb(path, frame) {
            Ok(()) => {
                frame.sequence = self.next as u64 - 1;
                self.stats.delivered += 1;
                Ok(Read::Frame)
            }
            Err(e) => {
                self.stats.lost += 1;
                Ok(Read::Lost(format!("{}: {e:#}", path.display())))
            }
        }
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}

/// Decodes an image file into `frame` (RGB8).
pub fn load_rgb(path: &Path, frame: &mut Frame) -> Result<()> {
    let img = image::ImageReader::open(path)?.with_guessed_format()?.decode()?;
    if img.width() == 0 || img.height() == 0 {
        bail!("zero-size image");
    }
    let rgb = img.into_rgb8();
    frame.resize(rgb.width(), rgb.height());
    frame.rgb.copy_from_slice(rgb.as_raw());
    Ok(())
}
