//! Pixel-format conversion to RGB8: YUYV (V4L2 webcams), packed RGB24 (V4L2
//! `RGB3`), planar YCbCr 4:2:0 / 4:2:2 / 4:4:4 (y4m) and MJPEG. BT.601 coefficients, limited ("TV", 16–235)
//! or full range.

use anyhow::{ensure, Context, Result};

use crate::runtime::frame::Frame;

/// Luma/chroma value range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Range {
    /// Y in 16–235, Cb/Cr in 16–240 (V4L2's default for YUV, most video).
    Limited,
    /// 0–255 (JPEG, `XCOLORRANGE=FULL`).
    Full,
}

#[inline]
fn clamp(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

/// BT.601 YCbCr → RGB with fixed-point arithmetic (16-bit fractions).
#[inline]
pub fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8, range: Range) -> [u8; 3] {
    let (y, cb, cr) = (y as i32, cb as i32 - 128, cr as i32 - 128);
    match range {
        Range::Limited => {
            let y = (y - 16) * 76_309; // 255/219
            [
                clamp((y + 104_597 * cr + 32_768) >> 16),
                clamp((y - 25_675 * cb - 53_279 * cr + 32_768) >> 16),
                clamp((y + 132_201 * cb + 32_768) >> 16),
            ]
        }
        Range::Full => {
            let y = y << 16;
            [
                clamp((y + 91_881 * cr + 32_768) >> 16),
                clamp((y - 22_553 * cb - 46_802 * cr + 32_768) >> 16),
                clamp((y + 116_130 * cb + 32_768) >> 16),
            ]
        }
    }
}

/// Packed YUYV (Y0 U Y1 V per two pixels), `stride` bytes per row, into `out`.
pub fn yuyv_to_rgb(src: &[u8], width: u32, height: u32, stride: usize, range: Range, out: &mut Frame) -> Result<()> {
    ensure!(width % 2 == 0, "YUYV width {width} is odd");
    let stride = stride.max(width as usize * 2);
    ensure!(
        src.len() >= stride * (height as usize - 1) + width as usize * 2,
        "YUYV buffer has {} bytes, {width}x{height} needs {}",
        src.len(),
        stride * height as usize
    );
    out.resize(width, height);
    for y in 0..height as usize {
        let row = &src[y * stride..y * stride + width as usize * 2];
        let dst = &mut out.rgb[y * width as usize * 3..(y + 1) * width as usize * 3];
        for (quad, px) in row.chunks_exact(4).zip(dst.chunks_exact_mut(6)) {
            let (y0, u, y1, v) = (quad[0], quad[1], quad[2], quad[3]);
            px[..3].copy_from_slice(&ycbcr_to_rgb(y0, u, v, range));
            px[3..].copy_from_slice(&ycbcr_to_rgb(y1, u, v, range));
        }
    }
    Ok(())
}

/// Packed RGB24 rows of `stride` bytes into `out` (a copy without the padding).
pub fn rgb24_to_rgb(src: &[u8], width: u32, height: u32, stride: usize, out: &mut Frame) -> Result<()> {
    let row_bytes = width as usize * 3;
    let stride = stride.max(row_bytes);
    ensure!(
        height > 0 && src.len() >= stride * (height as usize - 1) + row_bytes,
        "RGB3 buffer has {} bytes, {width}x{height} needs {}",
        src.len(),
        stride * height as usize
    );
    out.resize(width, height);
    for (y, dst) in out.rgb.chunks_exact_mut(row_bytes).enumerate() {
        dst.copy_from_slice(&src[y * stride..y * stride + row_bytes]);
    }
    Ok(())
}

/// Planar Y, Cb, Cr with chroma subsampled by `(sx, sy)` (4:2:0 = (2, 2)).
#[allow(clippy::too_many_arguments)]
pub fn planar_to_rgb(
    y_plane: &[u8],
    cb: &[u8],
    cr: &[u8],
    width: u32,
    height: u32,
    (sx, sy): (u32, u32),
    range: Range,
    out: &mut Frame,
) {
    out.resize(width, height);
    let (w, cw) = (width as usize, width.div_ceil(sx) as usize);
    for y in 0..height as usize {
        let crow = (y / sy as usize) * cw;
        let dst = &mut out.rgb[y * w * 3..(y + 1) * w * 3];
        for (x, px) in dst.chunks_exact_mut(3).enumerate() {
            let c = crow + x / sx as usize;
            px.copy_from_slice(&ycbcr_to_rgb(y_plane[y * w + x], cb[c], cr[c], range));
        }
    }
}

/// Decodes a JPEG (MJPEG frame) into `out`. The JPEG decoder allocates its own
/// working memory; this path is not allocation-free.
pub fn jpeg_to_rgb(data: &[u8], out: &mut Frame) -> Result<()> {
    let img = image::load_from_memory_with_format(data, image::ImageFormat::Jpeg).context("corrupt JPEG frame")?;
    let rgb = img.to_rgb8();
    ensure!(rgb.width() > 0 && rgb.height() > 0, "zero-size JPEG frame");
    out.resize(rgb.width(), rgb.height());
    out.rgb.copy_from_slice(rgb.as_raw());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bt601_reference_colours() {
        // Limited range: (16,128,128) black, (235,128,128) white, BT.601 red.
        assert_eq!(ycbcr_to_rgb(16, 128, 128, Range::Limited), [0, 0, 0]);
        assert_eq!(ycbcr_to_rgb(235, 128, 128, Range::Limited), [255, 255, 255]);
        let red = ycbcr_to_rgb(81, 90, 240, Range::Limited);
        assert!(red[0] >= 253 && red[1] <= 2 && red[2] <= 2, "{red:?}");
        assert_eq!(ycbcr_to_rgb(128, 128, 128, Range::Full), [128, 128, 128]);
        let blue = ycbcr_to_rgb(29, 255, 107, Range::Full);
        assert!(blue[2] >= 253 && blue[0] <= 2 && blue[1] <= 2, "{blue:?}");
    }

    #[test]
    fn yuyv_pairs_share_chroma_and_respect_stride() {
        // 2x2 image, stride 6 (2 padding bytes per row).
        let src = [235, 128, 16, 128, 0, 0, 81, 90, 81, 240, 0, 0];
        let mut f = Frame::default();
        yuyv_to_rgb(&src, 2, 2, 6, Range::Limited, &mut f).unwrap();
        assert_eq!(f.pixel(0, 0), [255, 255, 255]);
        assert_eq!(f.pixel(1, 0), [0, 0, 0]);
        assert_eq!(f.pixel(0, 1), f.pixel(1, 1));
        assert!(yuyv_to_rgb(&src[..8], 2, 2, 6, Range::Limited, &mut f).is_err());
        assert!(yuyv_to_rgb(&src, 3, 1, 6, Range::Limited, &mut f).is_err());
    }
}
