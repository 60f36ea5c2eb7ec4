//! A folder of images as a training set, decoded once into memory.
//!
//! [`ImageFolder::load`] walks a folder recursively, decodes every JPEG, PNG, WebP, BMP and PNM
//! file in parallel, converts it to the model's channel count (any colour type: grayscale,
//! RGBA, 16-bit, palette), crops the largest centred square and resizes it to the training
//! size. The result is kept as `u8` (30,000 RGB faces at 64×64 take 369 MB); a batch is made
//! on demand as x = p/127.5 − 1 ∈ [−1, 1], optionally mirrored left to right.
//!
//! Every file is decoded by its content ([`pixels::open_sniffed`]): a PNG named `.jpg`, or a
//! WebP named `.png`, trains like a correctly named file, with a [`LoadEvent::Misnamed`]
//! warning naming both formats. Files without an extension are read when their first bytes are
//! an image's; files with other extensions are ignored. A file that has an image extension but
//! cannot be decoded (corrupt, truncated, empty, or text) is reported by path: skipped with a
//! [`LoadEvent::Skipped`] event by default, or the error itself with
//! [`ImageFolderOptions::strict`].
//!
//! With [`Labels::Folders`] each image's class is the folder directly under the root that holds
//! it (`faces/s7/3.png` is class `s7`); classes are numbered in natural order of their names
//! (`s2` before `s10`), and an image directly in the root is an error naming it.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData, backend::Backend};
use image::ImageFormat;
use rayon::prelude::*;
use thiserror::Error;

use kiln_pipeline::pixels::{self, Formats, PixelError};

/// The file extensions (lower case) read as images.
pub const IMAGE_EXTENSIONS: [&str; 9] = [
    "jpg", "jpeg", "png", "webp", "bmp", "pnm", "pbm", "pgm", "ppm",
];

/// How many files are decoded between two progress events.
const CHUNK: usize = 64;

/// Why a dataset could not be loaded.
#[derive(Debug, Error)]
pub enum DatasetError {
    /// The folder (or a folder inside it) could not be listed.
    #[error("cannot read folder {path}: {source}")]
    Folder {
        /// The folder.
        path: PathBuf,
        /// What the OS reported.
        source: std::io::Error,
    },
    /// The folder holds no files at all.
    #[error("the folder {0} is empty")]
    Empty(PathBuf),
    /// The folder holds files, none with an image extension.
    #[error("no image files (JPEG, PNG, WebP, BMP or PNM) in {0}")]
    NoImages(PathBuf),
    /// Every image in the folder failed to decode.
    #[error("none of the {count} images in {path} could be read")]
    NoneReadable {
        /// The folder.
        path: PathBuf,
        /// How many image files were tried.
        count: usize,
    },
    /// In strict mode: the first image that failed to decode.
    #[error(transparent)]
    Unreadable(#[from] PixelError),
    /// Only 1 (grayscale) or 3 (RGB) channels are supported.
    #[error("cannot train on {0} channels; expected 1 (grayscale) or 3 (RGB)")]
    Channels(usize),
    /// The training size must be at least one pixel.
    #[error("the image size must be at least 1 pixel")]
    ZeroSize,
    /// With labels from folders, an image lies directly in the root, outside every class folder.
    #[error(
        "{0} is not in a class folder; with labels from folders every image must be in a folder under the root"
    )]
    Unlabelled(PathBuf),
    /// An image index past the end of the dataset.
    #[error("image {index} asked of a dataset of {images}")]
    NoSuchImage {
        /// The index.
        index: usize,
        /// Images in the dataset.
        images: usize,
    },
    /// Fewer mirror flags than images asked for.
    #[error("{flips} mirror flags for {images} images; expected one per image")]
    FlipCount {
        /// The flags given.
        flips: usize,
        /// The images asked for.
        images: usize,
    },
}

/// Every index of `indices` is below `images`.
pub(crate) fn check_indices(indices: &[usize], images: usize) -> Result<(), DatasetError> {
    match indices.iter().find(|&&index| index >= images) {
        Some(&index) => Err(DatasetError::NoSuchImage { index, images }),
        None => Ok(()),
    }
}

/// One mirror flag per image of a batch: `flips` has at least `images` (the rest are unused).
pub(crate) fn check_flips(flips: &[bool], images: usize) -> Result<(), DatasetError> {
    if flips.len() >= images {
        return Ok(());
    }
    Err(DatasetError::FlipCount {
        flips: flips.len(),
        images,
    })
}

/// Where the class labels of a dataset come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Labels {
    /// No labels: an unconditional dataset.
    #[default]
    None,
    /// Each image's class is the name of the folder directly under the root that holds it.
    Folders,
}

impl std::str::FromStr for Labels {
    type Err = String;

    /// `none` or `folders`.
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "none" => Ok(Self::None),
            "folders" => Ok(Self::Folders),
            other => Err(format!(
                "unknown labels {other:?}; expected none or folders"
            )),
        }
    }
}

/// How to load an [`ImageFolder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageFolderOptions {
    /// Height and width of the training images.
    pub image_size: u32,
    /// 1 (grayscale) or 3 (RGB).
    pub channels: usize,
    /// Fail on the first unreadable image instead of skipping it.
    pub strict: bool,
    /// Where class labels come from.
    pub labels: Labels,
}

/// A file that was skipped because it could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedFile {
    /// The file.
    pub path: PathBuf,
    /// What the decoder reported.
    pub reason: String,
}

/// Progress of [`ImageFolder::load`], reported on the calling thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadEvent<'a> {
    /// `done` of `total` image files have been decoded or skipped.
    Progress {
        /// Files handled so far.
        done: usize,
        /// Image files found.
        total: usize,
    },
    /// A file could not be decoded and is left out (not in strict mode).
    Skipped(&'a SkippedFile),
    /// A file was decoded as the format its bytes say, which is not the one its extension names.
    Misnamed {
        /// The file.
        path: &'a Path,
        /// The format of its bytes, which it was decoded as.
        content: ImageFormat,
        /// The format its extension names.
        extension: ImageFormat,
    },
}

/// Decoded training images, `channels × size × size` bytes each.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    pixels: Vec<u8>,
    channels: usize,
    image_size: usize,
    skipped: Vec<SkippedFile>,
    /// The class of each image, when loaded with labels.
    labels: Vec<usize>,
    class_names: Vec<String>,
}

impl ImageFolder {
    /// Loads every image under `root` (recursively, in path order) as described in the module
    /// documentation, reporting progress through `on_event`.
    pub fn load(
        root: &Path,
        options: ImageFolderOptions,
        mut on_event: impl FnMut(LoadEvent<'_>),
    ) -> Result<Self, DatasetError> {
        if options.channels != 1 && options.channels != 3 {
            return Err(DatasetError::Channels(options.channels));
        }
        if options.image_size == 0 {
            return Err(DatasetError::ZeroSize);
        }
        let (files, others) = image_files(root)?;
        if files.is_empty() {
            return Err(if others == 0 {
                DatasetError::Empty(root.to_path_buf())
            } else {
                DatasetError::NoImages(root.to_path_buf())
            });
        }
        let (file_classes, class_names) = match options.labels {
            Labels::None => (Vec::new(), Vec::new()),
            Labels::Folders => classes_by_folder(root, &files)?,
        };
        let per_image = options.channels * (options.image_size as usize).pow(2);
        let mut folder = Self {
            pixels: Vec::with_capacity(files.len() * per_image),
            channels: options.channels,
            image_size: options.image_size as usize,
            skipped: Vec::new(),
            labels: Vec::new(),
            class_names,
        };
        on_event(LoadEvent::Progress {
            done: 0,
            total: files.len(),
        });
        for (chunk_index, chunk) in files.chunks(CHUNK).enumerate() {
            let decoded: Vec<Result<(Vec<u8>, Formats), PixelError>> =
                chunk.par_iter().map(|path| decode(path, options)).collect();
            for (offset, (path, result)) in chunk.iter().zip(decoded).enumerate() {
                match result {
                    Ok((bytes, formats)) => {
                        folder.pixels.extend_from_slice(&bytes);
                        if let Some(&class) = file_classes.get(chunk_index * CHUNK + offset) {
                            folder.labels.push(class);
                        }
                        if let Some((content, extension)) = formats.clash() {
                            on_event(LoadEvent::Misnamed {
                                path,
                                content,
                                extension,
                            });
                        }
                    }
                    Err(error) if options.strict => return Err(error.into()),
                    Err(error) => {
                        folder.skipped.push(SkippedFile {
                            path: path.clone(),
                            reason: error.to_string(),
                        });
                        on_event(LoadEvent::Skipped(folder.skipped.last().expect("pushed")));
                    }
                }
            }
            on_event(LoadEvent::Progress {
                done: (chunk_index * CHUNK + chunk.len()),
                total: files.len(),
            });
        }
        if folder.is_empty() {
            return Err(DatasetError::NoneReadable {
                path: root.to_path_buf(),
                count: files.len(),
            });
        }
        Ok(folder)
    }

    /// The number of images.
    pub fn len(&self) -> usize {
        self.pixels.len() / self.image_len()
    }

    /// Whether there are no images (never true for a loaded folder).
    pub fn is_empty(&self) -> bool {
        self.pixels.is_empty()
    }

    /// Channels per image: 1 or 3.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Height and width of every image.
    pub fn image_size(&self) -> usize {
        self.image_size
    }

    /// The files that were skipped because they could not be decoded.
    pub fn skipped(&self) -> &[SkippedFile] {
        &self.skipped
    }

    /// The class names in label order (label i is `class_names()[i]`); empty without labels.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Every image's class label, in image order, or `None` for a dataset without labels.
    pub fn labels(&self) -> Option<&[usize]> {
        (!self.class_names.is_empty()).then_some(&self.labels[..])
    }

    /// The class label of each image at `indices`, or `None` for a dataset without labels.
    pub fn labels_of(&self, indices: &[usize]) -> Result<Option<Vec<usize>>, DatasetError> {
        check_indices(indices, self.len())?;
        Ok((!self.class_names.is_empty())
            .then(|| indices.iter().map(|&i| self.labels[i]).collect()))
    }

    /// The images at `indices` (in that order) as a dataset of their own, with their labels and
    /// the class names (every class is kept, even one with no image left); the list of
    /// skipped files stays with the whole folder's.
    pub fn subset(&self, indices: &[usize]) -> Result<Self, DatasetError> {
        let labels = self.labels_of(indices)?.unwrap_or_default();
        let image_len = self.image_len();
        let mut pixels = Vec::with_capacity(indices.len() * image_len);
        for &index in indices {
            pixels.extend_from_slice(&self.pixels[index * image_len..][..image_len]);
        }
        Ok(Self {
            pixels,
            labels,
            skipped: Vec::new(),
            class_names: self.class_names.clone(),
            ..*self
        })
    }

    /// The same images without class labels (an unconditional dataset).
    pub fn without_labels(self) -> Self {
        Self {
            labels: Vec::new(),
            class_names: Vec::new(),
            ..self
        }
    }

    /// The images at `indices` as a `[batch, channels, size, size]` tensor in [−1, 1]; image
    /// `i` of the batch is mirrored left to right where `flips[i]` is true (`flips` holds at
    /// least one flag per image).
    pub fn batch<B: Backend>(
        &self,
        indices: &[usize],
        flips: &[bool],
        device: &B::Device,
    ) -> Result<Tensor<B, 4>, DatasetError> {
        check_indices(indices, self.len())?;
        check_flips(flips, indices.len())?;
        let size = self.image_size;
        let mut values = Vec::with_capacity(indices.len() * self.image_len());
        for (&index, &flip) in indices.iter().zip(flips) {
            let image = &self.pixels[index * self.image_len()..][..self.image_len()];
            for row in image.chunks(size) {
                let scale = |&p: &u8| pixel_value(p);
                if flip {
                    values.extend(row.iter().rev().map(scale));
                } else {
                    values.extend(row.iter().map(scale));
                }
            }
        }
        let shape = [indices.len(), self.channels, size, size];
        Ok(Tensor::from_data(TensorData::new(values, shape), device))
    }

    /// Every image's bytes, one image after the other (`channels × size × size` each).
    pub(crate) fn pixels(&self) -> &[u8] {
        &self.pixels
    }

    fn image_len(&self) -> usize {
        self.channels * self.image_size * self.image_size
    }
}

/// The value x = p/127.5 − 1 ∈ [−1, 1] that a training image's byte p stands for.
pub(crate) fn pixel_value(p: u8) -> f32 {
    p as f32 / 127.5 - 1.0
}

/// The image files under `root`, sorted, and the number of other files.
fn image_files(root: &Path) -> Result<(Vec<PathBuf>, usize), DatasetError> {
    let mut images = Vec::new();
    let mut others = 0;
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let listing_error = |source| DatasetError::Folder {
            path: folder.clone(),
            source,
        };
        for entry in fs::read_dir(&folder).map_err(listing_error)? {
            let path = entry.map_err(listing_error)?.path();
            if path.is_dir() {
                folders.push(path);
            } else if has_image_extension(&path)
                || (path.extension().is_none() && starts_like_an_image(&path))
            {
                images.push(path);
            } else {
                others += 1;
            }
        }
    }
    images.sort();
    Ok((images, others))
}

/// The class of each of `files` (all under `root`) by the folder directly under `root` that
/// holds it, and the class names in natural order.
fn classes_by_folder(
    root: &Path,
    files: &[PathBuf],
) -> Result<(Vec<usize>, Vec<String>), DatasetError> {
    let folder_of = |file: &PathBuf| -> Result<String, DatasetError> {
        let relative = file.strip_prefix(root).unwrap_or(file);
        let mut parts = relative.components();
        match (parts.next(), parts.next()) {
            (Some(folder), Some(_)) => Ok(folder.as_os_str().to_string_lossy().into_owned()),
            _ => Err(DatasetError::Unlabelled(file.clone())),
        }
    };
    let folders = files.iter().map(folder_of).collect::<Result<Vec<_>, _>>()?;
    let mut names = folders.clone();
    names.sort_by(|a, b| natural_order(a, b));
    names.dedup();
    let classes = folders
        .iter()
        .map(|folder| {
            names
                .iter()
                .position(|name| name == folder)
                .expect("listed")
        })
        .collect();
    Ok((classes, names))
}

/// Compares names with runs of digits taken as numbers: `s2` < `s10`.
fn natural_order(a: &str, b: &str) -> std::cmp::Ordering {
    natural_key(a).cmp(&natural_key(b)).then_with(|| a.cmp(b))
}

/// The runs of a name, each digit run as (its length without leading zeros, the digits) so
/// that runs compare as numbers, and each other run as (`usize::MAX`, the text), after numbers.
fn natural_key(name: &str) -> Vec<(usize, &str)> {
    let mut runs = Vec::new();
    let mut rest = name;
    while let Some(first) = rest.chars().next() {
        let digits = first.is_ascii_digit();
        let end = rest
            .find(|c: char| c.is_ascii_digit() != digits)
            .unwrap_or(rest.len());
        let (run, tail) = rest.split_at(end);
        runs.push(if digits {
            let number = run.trim_start_matches('0');
            (number.len(), number)
        } else {
            (usize::MAX, run)
        });
        rest = tail;
    }
    runs
}

fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|extension| extension.to_str())
        .is_some_and(|extension| IMAGE_EXTENSIONS.contains(&extension.to_lowercase().as_str()))
}

/// Whether the first bytes of the file at `path` are an image format's magic number.
fn starts_like_an_image(path: &Path) -> bool {
    let mut head = Vec::with_capacity(MAGIC_BYTES);
    fs::File::open(path)
        .and_then(|file| file.take(MAGIC_BYTES as u64).read_to_end(&mut head))
        .is_ok_and(|_| image::guess_format(&head).is_ok())
}

/// Enough leading bytes for every magic number [`image::guess_format`] knows.
const MAGIC_BYTES: usize = 32;

/// One file as `channels × size × size` bytes (planar), and the formats it was found in.
fn decode(path: &Path, options: ImageFolderOptions) -> Result<(Vec<u8>, Formats), PixelError> {
    let opened = pixels::open_sniffed(path)?;
    let image = pixels::center_square(&opened.image, Some(options.image_size));
    let interleaved = match options.channels {
        1 => image.to_luma8().into_raw(),
        _ => image.to_rgb8().into_raw(),
    };
    let channels = options.channels;
    let planar = (0..channels)
        .flat_map(|channel| interleaved.iter().skip(channel).step_by(channels).copied())
        .collect();
    Ok((planar, opened.formats))
}
