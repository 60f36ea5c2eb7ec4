//! The same seed builds the same weights, and loading weights draws nothing from the seeded
//! RNG. (Alone in their own test binary, taking turns: burn's backend RNG is global, and tests
//! running in parallel threads would draw from it in between.)

use std::sync::{Mutex, MutexGuard};

use burn::backend::Flex;
use burn::tensor::TensorData;
use burn::tensor::backend::Backend;
use kiln_unet::{
    UNet, UNetConfig, load_checkpoint, load_diffusers, save_checkpoint, save_diffusers,
};

/// The backend RNG, one test at a time.
static BACKEND_RNG: Mutex<()> = Mutex::new(());

fn my_turn() -> MutexGuard<'static, ()> {
    BACKEND_RNG
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn config() -> UNetConfig {
    UNetConfig::tiny(1).with_num_class_embeds(Some(3))
}

/// A model built by `init` right after seeding the RNG with `seed`.
fn build(seed: u64) -> UNet<Flex> {
    let device = Default::default();
    Flex::seed(&device, seed);
    config().init::<Flex>(&device).unwrap()
}

/// Two of `model`'s weights, one from each end of the module.
fn weights(model: &UNet<Flex>) -> [TensorData; 2] {
    [
        model.conv_in.weight.val().into_data(),
        model.up_blocks[1].resnets[0].conv2.weight.val().into_data(),
    ]
}

#[test]
fn seeded_init_repeats() {
    let _turn = my_turn();
    let (a, b, c) = (build(5), build(5), build(6));
    assert_eq!(weights(&a), weights(&b));
    assert_ne!(weights(&a), weights(&c));
}

/// A load between seeding and `init` leaves `init`'s weights those of the seed alone, for
/// Kiln's checkpoints and for diffusers folders, and the loaded weights are the saved ones;
/// so does asking a model built to be loaded into for its output channels.
#[test]
fn loading_draws_nothing_from_the_backend_rng() {
    let _turn = my_turn();
    let dir = std::env::temp_dir().join(format!("kiln-unet-rng-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let saved = build(5);
    let checkpoint = dir.join("model.safetensors");
    save_checkpoint(&saved, &config(), &checkpoint).unwrap();
    let diffusers = dir.join("diffusers");
    save_diffusers(&saved, &config(), None, &diffusers).unwrap();
    let unseeded = weights(&build(7));
    let device = Default::default();
    let loads: [&dyn Fn() -> UNet<Flex>; 2] = [
        &|| load_checkpoint::<Flex>(&checkpoint, &device).unwrap().1,
        &|| load_diffusers::<Flex>(&diffusers, &device).unwrap().1,
    ];
    for load in loads {
        Flex::seed(&device, 7);
        let unloaded = config().init_for_loading::<Flex>(&device).unwrap();
        assert_eq!(unloaded.out_channels(), 1);
        let loaded = load();
        assert_eq!(weights(&config().init::<Flex>(&device).unwrap()), unseeded);
        assert_eq!(weights(&loaded), weights(&saved));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
