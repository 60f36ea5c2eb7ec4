//! Images to tensors in [−1, 1] and back.
//!
//! Diffusion models work on data scaled to [−1, 1] (Ho et al. 2020, §3.3): a pixel value
//! p ∈ {0, …, 255} becomes x = p/127.5 − 1, and x becomes p = round((x + 1)·127.5). The inverse
//! saturates: values of x_t beyond ±1 (common under noise, whose standard deviation is up to 1)
//! show as black or white rather than wrapping around.

use std::fs;
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData, backend::Backend};
use image::imageops::{self, FilterType};
use image::{DynamicImage, GrayImage, ImageFormat, RgbImage};
use thiserror::Error;

/// Why an image could not be read, converted or written.
#[derive(Debug, Error)]
pub enum PixelError {
    /// The file could not be opened or decoded.
    #[error("cannot read image {path}{}: {source}", clash_note(.formats))]
    Read {
        /// The file.
        path: PathBuf,
        /// The formats its bytes and its name say it is in.
        formats: Formats,
        /// What the decoder reported.
        source: image::ImageError,
    },
    /// The file could not be encoded or written.
    #[error("cannot write image {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the encoder reported.
        source: image::ImageError,
    },
    /// Only grayscale (1) and RGB (3) channels can be shown as an image.
    #[error("cannot make an image of {0} channels; expected 1 (grayscale) or 3 (RGB)")]
    Channels(usize),
    /// A grid was asked for with no columns.
    #[error("a grid needs at least one column")]
    NoColumns,
    /// Images of no pixels (a side of 0) cannot be shown.
    #[error("cannot make an image of {width} × {height} pixels")]
    Empty {
        /// Pixels across.
        width: usize,
        /// Pixels down.
        height: usize,
    },
    /// A montage larger than an image can be (2³² − 1 pixels a side).
    #[error("a montage of {width} × {height} pixels is too large for one image")]
    TooLarge {
        /// Pixels across.
        width: u64,
        /// Pixels down.
        height: u64,
    },
}

/// The format of an image file as its first bytes say ([`image::guess_format`]'s magic
/// numbers) and as its extension names it; either may be unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Formats {
    /// What the bytes say.
    pub content: Option<ImageFormat>,
    /// What the file name says.
    pub extension: Option<ImageFormat>,
}

impl Formats {
    /// Both are known and differ: a WebP file named `.jpg`, say.
    pub fn clash(&self) -> Option<(ImageFormat, ImageFormat)> {
        match (self.content, self.extension) {
            (Some(content), Some(extension)) if content != extension => Some((content, extension)),
            _ => None,
        }
    }

    /// The format to decode with: the content's, else the extension's.
    pub fn chosen(&self) -> Option<ImageFormat> {
        self.content.or(self.extension)
    }
}

/// `" (its bytes are WebP, its name says Jpeg)"` when the formats clash, else nothing.
fn clash_note(formats: &Formats) -> String {
    match formats.clash() {
        Some((content, extension)) => {
            format!(" (its bytes are {content:?}, its name says {extension:?})")
        }
        None => String::new(),
    }
}

/// An image decoded by [`open_sniffed`], with the formats its bytes and its name gave.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The pixels.
    pub image: DynamicImage,
    /// The formats; [`Formats::clash`] is worth a warning naming both.
    pub formats: Formats,
}

/// Opens and decodes an image file by its content: the format is sniffed from the first bytes,
/// and the extension is used only when the bytes match no known format. A PNG named `.jpg` or
/// a JPEG without an extension decodes; a file that is no image fails with both formats named.
pub fn open(path: &Path) -> Result<DynamicImage, PixelError> {
    open_sniffed(path).map(|opened| opened.image)
}

/// [`open`], also returning the formats the bytes and the name gave, so a caller can warn
/// about a misnamed file.
pub fn open_sniffed(path: &Path) -> Result<Opened, PixelError> {
    let bytes = fs::read(path).map_err(|error| PixelError::Read {
        path: path.to_path_buf(),
        formats: Formats::default(),
        source: image::ImageError::IoError(error),
    })?;
    let formats = Formats {
        content: image::guess_format(&bytes).ok(),
        extension: ImageFormat::from_path(path).ok(),
    };
    let read_error = |source| PixelError::Read {
        path: path.to_path_buf(),
        formats,
        source,
    };
    let format = formats.chosen().ok_or_else(|| {
        read_error(image::ImageError::Unsupported(
            image::error::UnsupportedError::from_format_and_kind(
                image::error::ImageFormatHint::Unknown,
                image::error::UnsupportedErrorKind::GenericFeature(
                    "neither its bytes nor its name say which image format it is".into(),
                ),
            ),
        ))
    })?;
    let image = image::load_from_memory_with_format(&bytes, format).map_err(read_error)?;
    Ok(Opened { image, formats })
}

/// Saves an image, choosing the format from the file extension.
pub fn save(image: &DynamicImage, path: &Path) -> Result<(), PixelError> {
    image.save(path).map_err(|source| PixelError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The largest centred square of `image`, resized to `size`×`size` (Catmull-Rom filter) unless
/// `size` is `None`.
pub fn center_square(image: &DynamicImage, size: Option<u32>) -> DynamicImage {
    let side = image.width().min(image.height());
    let square = image.crop_imm(
        (image.width() - side) / 2,
        (image.height() - side) / 2,
        side,
        side,
    );
    match size {
        Some(size) if size != side => square.resize_exact(size, size, FilterType::CatmullRom),
        _ => square,
    }
}

/// An image as a `[channels, height, width]` tensor in [−1, 1]: 1 channel (luma) or 3 (RGB),
/// whatever the image's own colour type.
pub fn to_tensor<B: Backend>(
    image: &DynamicImage,
    channels: usize,
    device: &B::Device,
) -> Result<Tensor<B, 3>, PixelError> {
    let (width, height) = (image.width() as usize, image.height() as usize);
    let bytes = match channels {
        1 => image.to_luma8().into_raw(),
        3 => image.to_rgb8().into_raw(),
        other => return Err(PixelError::Channels(other)),
    };
    let values: Vec<f32> = bytes.iter().map(|&p| p as f32 / 127.5 - 1.0).collect();
    let interleaved =
        Tensor::<B, 3>::from_data(TensorData::new(values, [height, width, channels]), device);
    Ok(interleaved.permute([2, 0, 1]))
}

/// A `[batch, channels, height, width]` tensor in [−1, 1] laid out as one image: `columns`
/// tiles per row, `gap` white pixels between tiles. Reads the tensor back to the host.
pub fn grid<B: Backend>(
    images: Tensor<B, 4>,
    columns: usize,
    gap: u32,
) -> Result<DynamicImage, PixelError> {
    montage(&to_images(images)?, columns, gap)
}

/// A `[batch, channels, height, width]` tensor in [−1, 1] as one image per sample (grayscale
/// for 1 channel, RGB for 3). Reads the tensor back to the host.
pub fn to_images<B: Backend>(images: Tensor<B, 4>) -> Result<Vec<DynamicImage>, PixelError> {
    let [_, channels, height, width] = images.dims();
    if channels != 1 && channels != 3 {
        return Err(PixelError::Channels(channels));
    }
    if height == 0 || width == 0 {
        return Err(PixelError::Empty { width, height });
    }
    let pixels: Vec<u8> = images
        .permute([0, 2, 3, 1])
        .into_data()
        .iter::<f32>()
        .map(to_pixel)
        .collect();
    let (tile_w, tile_h) = (width as u32, height as u32);
    Ok(pixels
        .chunks(height * width * channels)
        .map(|tile| {
            if channels == 1 {
                DynamicImage::from(
                    GrayImage::from_raw(tile_w, tile_h, tile.to_vec()).expect("tile size"),
                )
            } else {
                DynamicImage::from(
                    RgbImage::from_raw(tile_w, tile_h, tile.to_vec()).expect("tile size"),
                )
            }
        })
        .collect())
}

/// Images laid out row by row, `columns` per row, `gap` white pixels between them, each cell
/// the size of the largest image. Grayscale if every image is grayscale, RGB otherwise.
pub fn montage(
    images: &[DynamicImage],
    columns: usize,
    gap: u32,
) -> Result<DynamicImage, PixelError> {
    if columns == 0 {
        return Err(PixelError::NoColumns);
    }
    let cell_w = images.iter().map(DynamicImage::width).max().unwrap_or(0);
    let cell_h = images.iter().map(DynamicImage::height).max().unwrap_or(0);
    // Sizes in u64, where no count of u32 cells and gaps overflows, then checked into u32.
    let columns_used = columns.min(images.len().max(1)) as u64;
    let rows = images.len().div_ceil(columns) as u64;
    let (cell_w, cell_h, gap) = (u64::from(cell_w), u64::from(cell_h), u64::from(gap));
    let width = columns_used * cell_w + (columns_used - 1) * gap;
    let height = rows * cell_h + rows.saturating_sub(1) * gap;
    let (Ok(canvas_w), Ok(canvas_h)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(PixelError::TooLarge { width, height });
    };
    let mut canvas = DynamicImage::from(RgbImage::from_pixel(
        canvas_w,
        canvas_h,
        image::Rgb([255, 255, 255]),
    ));
    for (index, image) in images.iter().enumerate() {
        let (column, row) = ((index % columns) as u64, (index / columns) as u64);
        let x = column * (cell_w + gap);
        let y = row * (cell_h + gap);
        imageops::overlay(&mut canvas, image, x as i64, y as i64);
    }
    let grayscale = images.iter().all(|image| image.color().channel_count() < 3);
    Ok(if grayscale {
        DynamicImage::from(canvas.to_luma8())
    } else {
        canvas
    })
}

/// x ∈ [−1, 1] to a pixel value, saturating outside the range.
fn to_pixel(x: f32) -> u8 {
    ((x + 1.0) * 127.5).round().clamp(0.0, 255.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn pixels_survive_the_round_trip() {
        let device = Default::default();
        let original = DynamicImage::from(GrayImage::from_fn(5, 4, |x, y| {
            image::Luma([(x * 60 + y * 7) as u8])
        }));
        let tensor = to_tensor::<Flex>(&original, 1, &device).unwrap();
        assert_eq!(tensor.dims(), [1, 4, 5]);
        let back = grid(tensor.unsqueeze::<4>(), 1, 0).unwrap();
        assert_eq!(back.to_luma8(), original.to_luma8());
    }

    #[test]
    fn values_map_to_the_full_range_and_saturate_beyond() {
        assert_eq!(to_pixel(-1.0), 0);
        assert_eq!(to_pixel(1.0), 255);
        assert_eq!(to_pixel(0.0), 128);
        assert_eq!(to_pixel(-3.0), 0);
        assert_eq!(to_pixel(2.5), 255);
    }

    #[test]
    fn grid_places_tiles_with_gaps() {
        let device = Default::default();
        let tiles = Tensor::<Flex, 4>::full([3, 3, 2, 2], -1.0, &device);
        let image = grid(tiles, 2, 1).unwrap().to_rgb8();
        assert_eq!(image.dimensions(), (5, 5));
        assert_eq!(image.get_pixel(0, 0).0, [0, 0, 0]);
        assert_eq!(image.get_pixel(2, 0).0, [255, 255, 255]);
        assert_eq!(image.get_pixel(3, 3).0, [255, 255, 255]);
        assert!(grid(Tensor::<Flex, 4>::zeros([1, 2, 2, 2], &device), 1, 0).is_err());
    }

    #[test]
    fn images_without_pixels_and_montages_past_u32_are_errors() {
        let flat = Tensor::<Flex, 4>::zeros([2, 3, 0, 4], &Default::default());
        assert!(matches!(
            to_images(flat),
            Err(PixelError::Empty {
                width: 4,
                height: 0
            })
        ));
        let tile = DynamicImage::from(GrayImage::new(2, 2));
        let wide = montage(&[tile.clone(), tile], 2, u32::MAX);
        assert!(
            matches!(wide, Err(PixelError::TooLarge { width, height: 2 }) if width == 4 + u64::from(u32::MAX)),
            "{wide:?}"
        );
    }

    #[test]
    fn each_sample_becomes_its_own_image() {
        let device = Default::default();
        let levels = Tensor::<Flex, 1>::from_floats([-1.0, 0.0, 1.0], &device);
        let samples = levels
            .reshape([3, 1, 1, 1])
            .repeat_dim(2, 2)
            .repeat_dim(3, 3);
        let images = to_images(samples).unwrap();
        let values: Vec<u8> = images
            .iter()
            .map(|i| i.to_luma8().get_pixel(2, 1).0[0])
            .collect();
        assert_eq!(values, [0, 128, 255]);
        assert!(images.iter().all(|i| (i.width(), i.height()) == (3, 2)));
    }

    #[test]
    fn center_square_crops_the_middle() {
        let tall = DynamicImage::from(GrayImage::from_fn(4, 8, |_, y| image::Luma([y as u8])));
        let square = center_square(&tall, None).to_luma8();
        assert_eq!(square.dimensions(), (4, 4));
        assert_eq!(square.get_pixel(0, 0).0, [2]);
        assert_eq!(center_square(&tall, Some(2)).width(), 2);
    }
}
