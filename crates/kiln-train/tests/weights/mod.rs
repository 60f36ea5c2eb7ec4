//! The weights a run ends with, read back from its checkpoint for comparison (shared by the
//! test targets that compare runs).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use burn::backend::Flex;
use burn::module::Module;
use burn::record::{BinFileRecorder, FullPrecisionSettings};
use kiln_train::latest_checkpoint;
use kiln_unet::{UNet, UNetConfig, save_checkpoint};
use safetensors::SafeTensors;

use crate::common::my_turn;

/// The final checkpoint's trained and EMA weights, tensor by tensor. (The recorder files also
/// hold parameter ids, which are random per process, and safetensors metadata is unordered, so
/// the weights are compared by value.)
pub fn final_weights(out: &Path) -> [BTreeMap<String, Vec<u8>>; 2] {
    let checkpoint = latest_checkpoint(&out.join("checkpoints"))
        .unwrap()
        .unwrap();
    let config = UNetConfig::tiny(1);
    let device = Default::default();
    let recorder = BinFileRecorder::<FullPrecisionSettings>::new();
    let _turn = my_turn();
    let model: UNet<Flex> = config
        .init(&device)
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
