//! Kiln's own checkpoints: self-describing, exact, atomic, and strict about architecture.

use burn::backend::Flex;
use burn::tensor::Tensor;
use kiln_unet::{
    UNetConfig, UNetError, load_checkpoint, load_weights, read_config, save_checkpoint,
};

type B = Flex;

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-unet-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_checkpoint_restores_config_and_outputs_exactly() {
    let device = Default::default();
    let dir = temp_dir("roundtrip");
    let path = dir.join("model.safetensors");
    let config = UNetConfig::tiny(1)
        .with_scale_shift(true)
        .with_num_class_embeds(Some(3));
    let model = config.init::<B>(&device).unwrap();
    save_checkpoint(&model, &config, &path).unwrap();
    assert!(!dir.join("model.safetensors.tmp").exists());
    assert_eq!(read_config(&path).unwrap(), config);

    let (loaded_config, loaded) = load_checkpoint::<B>(&path, &device).unwrap();
    assert_eq!(loaded_config, config);
    let x = Tensor::<B, 4>::ones([1, 1, 8, 8], &device);
    let t = Tensor::<B, 1>::from_floats([42.0], &device);
    let a = model.forward(x.clone(), t.clone(), None).unwrap();
    let b = loaded.forward(x, t, None).unwrap();
    assert_eq!(a.into_data(), b.into_data());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A fresh `tiny(1)` model saved as `model.safetensors` in the scratch folder `name`: the
/// folder and the file.
fn tiny_checkpoint(name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = temp_dir(name);
    let path = dir.join("model.safetensors");
    let config = UNetConfig::tiny(1);
    save_checkpoint(
        &config.init::<B>(&Default::default()).unwrap(),
        &config,
        &path,
    )
    .unwrap();
    (dir, path)
}

/// A checkpoint without a tensor of the module (an unconditional model loaded as a
/// class-conditional one) is an error naming it, not a weight left to be drawn at random.
#[test]
fn weights_without_a_tensor_of_the_module_name_it() {
    let device = Default::default();
    let (dir, path) = tiny_checkpoint("missing");
    let conditional = UNetConfig::tiny(1).with_num_class_embeds(Some(3));
    let error = load_weights(conditional.init_for_loading::<B>(&device).unwrap(), &path);
    let message = error.unwrap_err().to_string();
    assert!(message.contains("class_embedding.weight"), "{message}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn weights_into_another_architecture_name_the_tensor_and_shapes() {
    let device = Default::default();
    let (dir, path) = tiny_checkpoint("mismatch");
    let wider = UNetConfig::new(vec![32, 128], vec![false, true])
        .with_in_channels(1)
        .with_out_channels(1)
        .with_layers_per_block(1)
        .with_norm_num_groups(8);
    let error = load_weights(wider.init::<B>(&device).unwrap(), &path).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, UNetError::Weights { .. }), "{message}");
    assert!(
        message.contains("down_blocks.1") && message.contains("[128") && message.contains("[64"),
        "{message}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn damaged_or_foreign_files_are_errors() {
    let device = Default::default();
    let dir = temp_dir("damaged");
    let path = dir.join("model.safetensors");
    let config = UNetConfig::tiny(1);
    save_checkpoint(&config.init::<B>(&device).unwrap(), &config, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(load_checkpoint::<B>(&path, &device).is_err());
    std::fs::write(&path, b"not a checkpoint").unwrap();
    assert!(matches!(read_config(&path), Err(UNetError::Io { .. })));
    assert!(load_checkpoint::<B>(&dir.join("missing.safetensors"), &device).is_err());
    std::fs::remove_dir_all(&dir).unwrap();
}
