//! Loading models to sample from: a diffusers model folder and every sampler by name.

use std::fs;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use kiln_forward::Prediction;
use kiln_train::{Condition, Generation, SamplerName, load_for_sampling};

#[test]
fn a_diffusers_folder_generates_with_every_sampler() {
    let folder =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-unet/tests/fixtures/unet_scale_shift");
    let device = Default::default();
    let loaded = load_for_sampling::<Flex>(&folder, &device).unwrap();
    let size = loaded.image_size.unwrap();
    for (sampler, name) in SamplerName::ALL.iter().zip(SamplerName::NAMES) {
        assert_eq!(name.parse::<SamplerName>(), Ok(*sampler));
        assert_eq!(sampler.to_string(), name);
        let generation = Generation {
            sampler: *sampler,
            steps: 4,
            count: 2,
            image_size: size,
            seed: 1,
            clip: true,
            condition: Condition::Unconditional,
        };
        let mut steps = 0;
        let images = loaded
            .generate(generation, &device, |_| steps += 1)
            .unwrap();
        assert_eq!(images.dims()[0], 2, "{name}");
        assert!(steps >= 4, "{name}: {steps} steps");
        let values: Vec<f32> = images.into_data().to_vec().unwrap();
        assert!(values.iter().all(|v| v.is_finite()), "{name}");
    }
    assert!("dpm".parse::<SamplerName>().unwrap_err().contains("dpm++"));
    let missing = load_for_sampling::<Flex>(&folder.join("missing"), &device).unwrap_err();
    assert!(
        missing.to_string().contains("missing: no such file"),
        "{missing}"
    );
}

#[test]
fn a_size_the_model_cannot_take_is_an_error() {
    let folder =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-unet/tests/fixtures/unet_scale_shift");
    let device = Default::default();
    let loaded = load_for_sampling::<Flex>(&folder, &device).unwrap();
    let generation = Generation {
        sampler: SamplerName::Ddim,
        steps: 2,
        count: 1,
        image_size: 7,
        seed: 0,
        clip: false,
        condition: Condition::Unconditional,
    };
    let error = loaded.generate(generation, &device, |_| {}).unwrap_err();
    assert!(error.to_string().contains("multiples"), "{error}");
}

#[test]
fn a_pipeline_folder_with_unet_and_scheduler_loads_the_schedule() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-unet/tests/fixtures/unet_scale_shift");
    let pipeline = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("sampling-pipeline");
    let _ = fs::remove_dir_all(&pipeline);
    fs::create_dir_all(pipeline.join("unet")).unwrap();
    fs::create_dir_all(pipeline.join("scheduler")).unwrap();
    for file in ["config.json", "diffusion_pytorch_model.safetensors"] {
        fs::copy(fixture.join(file), pipeline.join("unet").join(file)).unwrap();
    }
    fs::write(
        pipeline.join("scheduler/scheduler_config.json"),
        r#"{"num_train_timesteps": 500, "beta_schedule": "squaredcos_cap_v2",
            "prediction_type": "v_prediction"}"#,
    )
    .unwrap();
    let loaded = load_for_sampling::<Flex>(&pipeline, &Default::default()).unwrap();
    assert_eq!(loaded.prediction, Prediction::V);
    assert_eq!(loaded.schedule.num_timesteps(), 500);
}
