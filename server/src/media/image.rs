//! Turning an upload into the files Kith serves: the format decided by the bytes, the
//! size checked before decoding, the picture turned upright (EXIF orientation), scaled to
//! at most [`MAX_SIDE`] pixels with a [`THUMBNAIL_SIDE`]-pixel thumbnail, and re-encoded,
//! which leaves every piece of metadata behind (EXIF with its GPS position, XMP, comments,
//! colour profiles). CPU-bound and blocking: callers run it off the async runtime.

use image::{
    codecs::{
        jpeg::JpegEncoder,
        png::{CompressionType, FilterType as PngFilter, PngEncoder},
    },
    DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits,
};
use sha2::{Digest, Sha256};
use std::io::Cursor;

/// Largest upload, in bytes.
pub const MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;
/// Largest picture, in pixels (width × height), checked before it is decoded.
pub const MAX_PIXELS: u64 = 40_000_000;
/// Longest side of the served image.
pub const MAX_SIDE: u32 = 2048;
/// Longest side of the thumbnail.
pub const THUMBNAIL_SIDE: u32 = 400;
/// JPEG quality of both files: visually lossless for photographs at a third of the size
/// of 95.
const JPEG_QUALITY: u8 = 85;
/// Memory a decoder may take: a 40-megapixel RGBA picture at 8 bits is 160 MiB; 16-bit
/// PNGs twice that.
const MAX_DECODER_ALLOC: u64 = 384 * 1024 * 1024;

/// One file to store: named by its content.
#[derive(Debug, Clone)]
pub struct Encoded {
    /// `{sha256}.{ext}`.
    pub name: String,
    pub data: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// An upload made ready: the image and its thumbnail, of one content type.
#[derive(Debug, Clone)]
pub struct Processed {
    pub image: Encoded,
    pub thumbnail: Encoded,
    pub content_type: &'static str,
}

/// Why an upload is refused (422 `unsupported_media`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not an image Kith accepts: send a JPEG, PNG, WebP or GIF file")]
    UnknownFormat,
    #[error("{0} images are not accepted: send a JPEG, PNG, WebP or GIF file")]
    OtherFormat(&'static str),
    #[error("the image is {width}×{height} pixels; at most 40 megapixels are accepted")]
    TooManyPixels { width: u32, height: u32 },
    #[error("the image could not be read: {0}")]
    Undecodable(String),
}

/// The output format: photographs stay JPEG; pictures that are lossless already (PNG,
/// GIF) or have transparency stay lossless, as PNG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Output {
    Jpeg,
    Png,
}

impl Output {
    fn extension(self) -> &'static str {
        match self {
            Output::Jpeg => "jpg",
            Output::Png => "png",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Output::Jpeg => "image/jpeg",
            Output::Png => "image/png",
        }
    }
}

/// The content type of a served file's extension (`None`: not one Kith writes).
pub fn content_type_of(extension: &str) -> Option<&'static str> {
    match extension {
        "jpg" => Some(Output::Jpeg.content_type()),
        "png" => Some(Output::Png.content_type()),
        _ => None,
    }
}

/// Decodes, checks, scales and re-encodes an upload.
pub fn process(data: &[u8]) -> Result<Processed, Refusal> {
    let format = image::guess_format(data).map_err(|_| Refusal::UnknownFormat)?;
    match format {
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP | ImageFormat::Gif => {}
        other => return Err(Refusal::OtherFormat(other.to_mime_type())),
    }
    let mut reader = ImageReader::with_format(Cursor::new(data), format);
    let mut limits = Limits::default();
    limits.max_alloc = Some(MAX_DECODER_ALLOC);
    reader.limits(limits);
    let undecodable = |e: image::ImageError| Refusal::Undecodable(e.to_string());
    let mut decoder = reader.into_decoder().map_err(undecodable)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(Refusal::TooManyPixels { width, height });
    }
    if width == 0 || height == 0 {
        return Err(Refusal::Undecodable("it has no pixels".into()));
    }
    // An unreadable orientation tag is ignored, as browsers do.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    // A GIF decodes to its first frame.
    let mut picture = DynamicImage::from_decoder(decoder).map_err(undecodable)?;
    picture.apply_orientation(orientation);

    let has_alpha = picture.color().has_alpha();
    let output = match format {
        ImageFormat::Jpeg => Output::Jpeg,
        ImageFormat::WebP if !has_alpha => Output::Jpeg,
        _ => Output::Png,
    };
    // Area averaging: as sharp as a triangle filter when shrinking, a sixth of its time
    // (the filter was half of an upload's CPU).
    let picture = if picture.width() > MAX_SIDE || picture.height() > MAX_SIDE {
        picture.thumbnail(MAX_SIDE, MAX_SIDE)
    } else {
        picture
    };
    let thumbnail = if picture.width() > THUMBNAIL_SIDE || picture.height() > THUMBNAIL_SIDE {
        picture.thumbnail(THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    } else {
        picture.clone()
    };
    Ok(Processed {
        image: encode(&picture, output, has_alpha)?,
        thumbnail: encode(&thumbnail, output, has_alpha)?,
        content_type: output.content_type(),
    })
}

fn encode(picture: &DynamicImage, output: Output, has_alpha: bool) -> Result<Encoded, Refusal> {
    let mut data = Vec::new();
    let written = match output {
        Output::Jpeg => DynamicImage::ImageRgb8(picture.to_rgb8())
            .write_with_encoder(JpegEncoder::new_with_quality(&mut data, JPEG_QUALITY)),
        Output::Png => {
            // 8 bits a channel: what every screen shows, half the bytes of 16.
            let eight_bit = if has_alpha {
                DynamicImage::ImageRgba8(picture.to_rgba8())
            } else {
                DynamicImage::ImageRgb8(picture.to_rgb8())
            };
            eight_bit.write_with_encoder(PngEncoder::new_with_quality(
                &mut data,
                CompressionType::Default,
                PngFilter::Adaptive,
            ))
        }
    };
    written.map_err(|e| Refusal::Undecodable(format!("re-encoding failed: {e}")))?;
    let digest = Sha256::digest(&data);
    let mut name = String::with_capacity(64 + 4);
    for byte in digest {
        name.push_str(&format!("{byte:02x}"));
    }
    name.push('.');
    name.push_str(output.extension());
    Ok(Encoded {
        name,
        data,
        width: picture.width(),
        height: picture.height(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Rgb, Rgba};

    fn encoded(picture: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        picture.write_to(&mut out, format).unwrap_or_default();
        out.into_inner()
    }

    fn photo(width: u32, height: u32) -> DynamicImage {
        DynamicImage::ImageRgb8(ImageBuffer::from_fn(width, height, |x, y| {
            Rgb([(x % 256) as u8, (y % 256) as u8, 128])
        }))
    }

    #[test]
    fn a_large_jpeg_is_scaled_and_thumbnailed_keeping_its_aspect() -> Result<(), Refusal> {
        let done = process(&encoded(photo(3000, 1500), ImageFormat::Jpeg))?;
        assert_eq!((done.image.width, done.image.height), (2048, 1024));
        assert_eq!((done.thumbnail.width, done.thumbnail.height), (400, 200));
        assert_eq!(done.content_type, "image/jpeg");
        assert!(done.image.name.ends_with(".jpg") && done.image.name.len() == 68);
        Ok(())
    }

    #[test]
    fn transparency_stays_png_and_small_pictures_keep_their_size() -> Result<(), Refusal> {
        let clear = DynamicImage::ImageRgba8(ImageBuffer::from_pixel(40, 30, Rgba([1, 2, 3, 0])));
        for format in [ImageFormat::Png, ImageFormat::WebP, ImageFormat::Gif] {
            let done = process(&encoded(clear.clone(), format))?;
            assert_eq!(done.content_type, "image/png", "{format:?}");
            assert_eq!((done.image.width, done.image.height), (40, 30));
        }
        Ok(())
    }

    #[test]
    fn the_same_picture_gets_the_same_name() -> Result<(), Refusal> {
        let bytes = encoded(photo(64, 64), ImageFormat::Png);
        assert_eq!(process(&bytes)?.image.name, process(&bytes)?.image.name);
        Ok(())
    }

    #[test]
    fn other_formats_and_non_images_are_refused() {
        let mut bmp = b"BM".to_vec();
        bmp.resize(64, 0);
        assert_eq!(process(&bmp).err(), Some(Refusal::OtherFormat("image/bmp")));
        let svg = b"<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'/>";
        assert_eq!(process(svg).err(), Some(Refusal::UnknownFormat));
        let truncated = &encoded(photo(64, 64), ImageFormat::Png)[..60];
        assert!(matches!(process(truncated), Err(Refusal::Undecodable(_))));
    }
}
