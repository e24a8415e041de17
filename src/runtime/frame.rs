//! `Frame`: one RGB8 image, reused from frame to frame (its buffer only grows
//! when a larger frame arrives, so steady-state capture does not allocate),
//! and [`load_image`], which decodes JPEG/PNG files into one (frame
//! directories, datasets, evaluation).

use std::path::Path;

use anyhow::{bail, Result};

/// An interleaved RGB8 image.
#[derive(Clone, Debug, Default)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    /// `width * height * 3` bytes, row-major RGB.
    pub rgb: Vec<u8>,
    /// The source's number for this frame: the driver's sequence counter for a
    /// camera (gaps are frames the driver dropped), the file or frame index otherwise.
    pub sequence: u64,
}

impl Frame {
    pub fn new(width: u32, height: u32) -> Frame {
        Frame { width, height, rgb: vec![0; width as usize * height as usize * 3], sequence: 0 }
    }

    /// Sets the size, reusing the buffer (allocates only if it must grow).
    pub fn resize(&mut self, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        self.rgb.resize(width as usize * height as usize * 3, 0);
    }

    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    #[inline]
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    #[inline]
    pub fn set_pixel(&mut self, x: u32, y: u32, c: [u8; 3]) {
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.rgb[i..i + 3].copy_from_slice(&c);
    }
}

/// Decodes an image file into `frame` (RGB8). A JPEG without its
/// end-of-image marker is refused: the decoder would fill what is missing
/// with grey and call it a frame.
pub fn load_image(path: &Path, frame: &mut Frame) -> Result<()> {
    let bytes = std::fs::read(path)?;
    if bytes.starts_with(&[0xFF, 0xD8]) && !has_jpeg_end(&bytes) {
        bail!("truncated JPEG ({} bytes, no end-of-image marker)", bytes.len());
    }
    let img = image::ImageReader::new(std::io::Cursor::new(&bytes)).with_guessed_format()?.decode()?;
    if img.width() == 0 || img.height() == 0 {
        bail!("zero-size image");
    }
    let rgb = img.into_rgb8();
    frame.resize(rgb.width(), rgb.height());
    frame.rgb.copy_from_slice(rgb.as_raw());
    Ok(())
}

/// Whether a JPEG ends with its end-of-image marker (FF D9), allowing for
/// trailing padding some writers add. Inside entropy-coded data FF is
/// always followed by 00 or a restart marker, so a cut stream has none there.
fn has_jpeg_end(bytes: &[u8]) -> bool {
    bytes[bytes.len().saturating_sub(4096)..].windows(2).any(|w| w == [0xFF, 0xD9])
}
