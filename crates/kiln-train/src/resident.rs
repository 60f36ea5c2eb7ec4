//! The training set held on a device, so that a step gathers its batch there instead of
//! copying images from the host.
//!
//! The pixels of an [`ImageFolder`] are uploaded once, four bytes to an integer (the only
//! integer type every burn backend stores; 30,000 RGB faces at 64×64 take 369 MB, as on the
//! host): image n's L = C·H·W bytes p₀ … p_{L−1}, padded with zeros to 4·Q bytes, become the Q
//! integers
//!
//! ```text
//! word_j = p_j | p_{j+Q} << 8 | p_{j+2Q} << 16 | p_{j+3Q} << 24        (j < Q)
//! ```
//!
//! so unpacking is four shifts and masks whose results are laid end to end. A batch is then
//! `select` by index, unpacked, looked up in a 256-entry table of x = p/127.5 − 1 computed on
//! the host (so every backend gives exactly the values of [`ImageFolder::batch`]) and mirrored
//! where asked. The per-step uploads are the indices and the mirror flags: a few bytes an image.

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, ElementConversion, Int, Tensor, TensorData};

use crate::dataset::{DatasetError, ImageFolder, check_flips, check_indices, pixel_value};

/// An [`ImageFolder`]'s images on one device (see the module documentation).
#[derive(Debug, Clone)]
pub struct DeviceImages<B: Backend> {
    /// `[images, Q]`: four pixels to an integer.
    words: Tensor<B, 2, Int>,
    /// x = p/127.5 − 1 for p = 0, …, 255.
    table: Tensor<B, 1>,
    channels: usize,
    image_size: usize,
}

impl<B: Backend> DeviceImages<B> {
    /// Uploads every image of `data` to `device` (one copy, at the start of a run).
    pub fn new(data: &ImageFolder, device: &B::Device) -> Self {
        let image_len = data.channels() * data.image_size() * data.image_size();
        let quarter = image_len.div_ceil(4);
        let mut words = Vec::with_capacity(data.len() * quarter);
        for image in data.pixels().chunks_exact(image_len) {
            let byte = |index: usize| image.get(index).copied().unwrap_or(0) as u32;
            words.extend((0..quarter).map(|j| {
                let word = (0..4).fold(0, |word, k| word | byte(j + k * quarter) << (8 * k));
                word as i32
            }));
        }
        let table: Vec<f32> = (0..=u8::MAX).map(pixel_value).collect();
        Self {
            words: Tensor::from_data(TensorData::new(words, [data.len(), quarter]), device),
            table: Tensor::from_data(TensorData::new(table, [256]), device),
            channels: data.channels(),
            image_size: data.image_size(),
        }
    }

    /// Images held.
    pub fn len(&self) -> usize {
        self.words.dims()[0]
    }

    /// Whether no image is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Channels of each image.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Values in one image: channels × size × size.
    pub fn image_len(&self) -> usize {
        self.channels * self.image_size * self.image_size
    }

    /// The images `indices` as a `[batch, channels, size, size]` tensor in [−1, 1], image i
    /// mirrored left to right where `flips[i]`: the same numbers as [`ImageFolder::batch`].
    /// The indices are checked on the host (a backend's `select` past the end may panic or
    /// read what lies there).
    pub fn batch(&self, indices: &[usize], flips: &[bool]) -> Result<Tensor<B, 4>, DatasetError> {
        check_indices(indices, self.len())?;
        check_flips(flips, indices.len())?;
        let device = self.words.device();
        let count = indices.len();
        let [size, channels] = [self.image_size, self.channels];
        let indices: Vec<i64> = indices.iter().map(|&index| index as i64).collect();
        let words = self.words.clone().select(
            0,
            Tensor::from_data(TensorData::new(indices, [count]), &device),
        );
        let bytes: Vec<Tensor<B, 2, Int>> = (0..4)
            .map(|k| {
                words
                    .clone()
                    .bitwise_right_shift_scalar((8 * k).elem())
                    .bitwise_and_scalar(0xff.elem())
            })
            .collect();
        let pixels = Tensor::cat(bytes, 1).narrow(1, 0, self.image_len());
        let images = self
            .table
            .clone()
            .select(0, pixels.reshape([-1]))
            .reshape([count, channels, size, size]);
        let flips = Tensor::<B, 1, Bool>::from_data(
            TensorData::new(flips[..count].to_vec(), [count]),
            &device,
        )
        .reshape([count, 1, 1, 1])
        .expand([count, channels, size, size]);
        Ok(images.clone().mask_where(flips, images.flip([3])))
    }
}
