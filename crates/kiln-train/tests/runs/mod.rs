//! The small run that the training tests compare between setups: its data (discs), its
//! config, and the weights it ends with, read back from its checkpoint.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use burn::backend::Flex;
use burn::module::Module;
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use image::{DynamicImage, ImageBuffer, Luma};
use kiln_pipeline::RunFolder;
use kiln_train::{ImageFolder, ImageFolderOptions, Labels, TrainConfig};
use kiln_unet::{UNet, UNetConfig, read_config, save_checkpoint};
use safetensors::SafeTensors;

use crate::common::my_turn;

/// Writes 32 grayscale 16×16 images into `dir`: a bright disc at one of a few positions on a
/// dark background.
pub fn write_discs(dir: &Path) {
    for i in 0..32u32 {
        let (cx, cy) = (4.0 + (i % 4) as f32 * 2.5, 5.0 + (i / 8) as f32 * 2.0);
        let image = ImageBuffer::from_fn(16, 16, |x, y| {
            let d2 = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2);
            Luma([if d2 < 10.0 { 230u8 } else { 20 }])
        });
        DynamicImage::from(image)
            .save(dir.join(format!("{i:02}.png")))
            .unwrap();
    }
}

/// The discs written by [`write_discs`] into `dir`.
pub fn load_discs(dir: &Path) -> ImageFolder {
    load_discs_as(dir, 1)
}

/// The discs written by [`write_discs`] into `dir`, with `channels` channels (3: the gray
/// value in each).
pub fn load_discs_as(dir: &Path, channels: usize) -> ImageFolder {
    let options = ImageFolderOptions {
        image_size: 16,
        channels,
        strict: true,
        labels: Labels::None,
    };
    ImageFolder::load(dir, options, |_| {}).unwrap()
}

/// A tiny model on the discs, batch 8 (4 steps an epoch), for `epochs` epochs.
pub fn config(epochs: usize) -> TrainConfig {
    TrainConfig::new(UNetConfig::tiny(1), 16)
        .with_epochs(epochs)
        .with_batch_size(8)
        .with_learning_rate(1e-3)
        .with_warmup_steps(5)
        .with_sample_every_epochs(100)
        .with_sample_count(4)
        .with_sample_steps(2)
        .with_checkpoint_every_epochs(2)
        .with_seed(3)
}

/// The final checkpoint's trained and EMA weights, tensor by tensor. (The recorder files also
/// hold parameter ids, which are random per process, and safetensors metadata is unordered, so
/// the weights are compared by value.)
pub fn final_weights(out: &Path) -> [BTreeMap<String, Vec<u8>>; 2] {
    let checkpoint = RunFolder::new(out).latest_checkpoint().unwrap().unwrap();
    let config = read_config(&checkpoint.join("ema.safetensors")).unwrap();
    let device = Default::default();
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    // burn's `load_file` draws the parameters inside `Option` fields before replacing them.
    let _turn = my_turn();
    let model: UNet<Flex> = config
        .init_for_loading(&device)
        .unwrap()
        .load_file(checkpoint.join("model"), &recorder, &device)
        .unwrap();
    let exported = out.join("model-export.safetensors");
    save_checkpoint(&model, &config, &exported).unwrap();
    [exported, checkpoint.join("ema.safetensors")].map(|file| {
        let bytes = fs::read(file).unwrap();
        let tensors = SafeTensors::deserialize(&bytes).unwrap();
        tensors
            .tensors()
            .into_iter()
            .map(|(name, view)| (name, view.data().to_vec()))
            .collect()
    })
}

/// The largest absolute difference between two runs' tensors of the same names.
pub fn max_difference(a: &BTreeMap<String, Vec<u8>>, b: &BTreeMap<String, Vec<u8>>) -> f32 {
    assert_eq!(a.len(), b.len(), "different tensors");
    let floats = |bytes: &[u8]| -> Vec<f32> {
        bytes
            .chunks_exact(4)
            .map(|chunk| f32::from_le_bytes(chunk.try_into().unwrap()))
            .collect()
    };
    a.iter()
        .flat_map(|(name, ours)| {
            let (ours, theirs) = (floats(ours), floats(&b[name]));
            assert_eq!(ours.len(), theirs.len(), "{name}");
            ours.into_iter()
                .zip(theirs)
                .map(|(x, y)| (x - y).abs())
                .collect::<Vec<_>>()
        })
        .fold(0.0, f32::max)
}
