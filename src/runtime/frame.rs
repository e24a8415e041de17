//! `Frame`: one RGB8 image, reused from frame to frame (its buffer only grows
//! when a larger frame arrives, so steady-state capture does not allocate).

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
