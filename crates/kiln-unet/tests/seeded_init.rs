//! The same seed builds the same weights. (Alone in its own test binary: burn's backend RNG is
//! global, and tests running in parallel threads would draw from it in between.)

use burn::backend::Flex;
use burn::tensor::backend::Backend;
use kiln_unet::{UNet, UNetConfig};

#[test]
fn seeded_init_repeats() {
    let device = Default::default();
    let config = UNetConfig::tiny(1).with_num_class_embeds(Some(3));
    let build = |seed| {
        Flex::seed(&device, seed);
        config.init::<Flex>(&device).unwrap()
    };
    let weights = |model: &UNet<Flex>| {
        [
            model.conv_in.weight.val().into_data(),
            model.up_blocks[1].resnets[0].conv2.weight.val().into_data(),
        ]
    };
    let (a, b, c) = (build(5), build(5), build(6));
    assert_eq!(weights(&a), weights(&b));
    assert_ne!(weights(&a), weights(&c));
}
