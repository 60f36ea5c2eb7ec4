//! Loading models to sample from (a diffusers model or pipeline folder), saving one as a
//! diffusers pipeline, every sampler by name, and guidance of a class-conditional UNet.

use std::fs;
use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::tensor::Tensor;
use kiln_forward::Prediction;
use kiln_pipeline::{
    Condition, Generation, NamedRun, PipelineError, SamplerName, SamplingModel, UNetDenoiser,
    load_for_sampling,
};
use kiln_sampler::{
    AutoGuided, ClassConditional, Denoiser, GuidanceConfig, Guided, ProjectedGuidance,
    ProjectedGuided, SamplerError, VarianceType,
};
use kiln_schedule::{BetaSchedule, NoiseSchedule};
use kiln_unet::UNetConfig;

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
            seed: 1,
            ..Generation::new(*sampler, 4, 2, size)
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
    let generation = Generation::with_run(NamedRun::new(SamplerName::Ddim, 2, false), 1, 7);
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
    let cosine = NoiseSchedule::new(&BetaSchedule::cosine(), 500).unwrap();
    // Rescaled to zero terminal SNR as diffusers' schedulers do with `rescale_betas_zero_snr`.
    let zero_snr = cosine.rescale_zero_terminal_snr().unwrap();
    assert_eq!(zero_snr.alphas_cumprod()[499], 0.0);
    // The sigmoid schedule's range, like the linear ones', comes from the config.
    let sigmoid = BetaSchedule::Sigmoid {
        beta_start: 1e-3,
        beta_end: 0.03,
    };
    let sigmoid = NoiseSchedule::new(&sigmoid, 500).unwrap();
    for (schedule, expected) in [
        (
            r#""squaredcos_cap_v2", "rescale_betas_zero_snr": false"#,
            &cosine,
        ),
        (
            r#""squaredcos_cap_v2", "rescale_betas_zero_snr": true"#,
            &zero_snr,
        ),
        (
            r#""sigmoid", "beta_start": 0.001, "beta_end": 0.03"#,
            &sigmoid,
        ),
    ] {
        fs::write(
            pipeline.join("scheduler/scheduler_config.json"),
            format!(
                r#"{{"num_train_timesteps": 500, "prediction_type": "v_prediction",
                    "beta_schedule": {schedule}}}"#
            ),
        )
        .unwrap();
        let loaded = load_for_sampling::<Flex>(&pipeline, &Default::default()).unwrap();
        assert_eq!(loaded.prediction, Prediction::V);
        assert_eq!(&loaded.schedule, expected, "{schedule}");
    }
}

/// diffusers' flow-matching models take x_σ, not the x_t Kiln gives a model with a β schedule:
/// their scheduler configs (a `FlowMatch*` class, `use_flow_sigmas`, `flow_prediction`) are
/// refused, as is Kiln's own `rectified_flow` name in a diffusers file, and saving a Kiln flow
/// model (trained on x_t) for diffusers, whose `DDPMScheduler` has no flow prediction.
#[test]
fn flow_models_neither_come_from_nor_go_to_diffusers_folders() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-unet/tests/fixtures/unet_scale_shift");
    let folder = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("flow-model");
    let _ = fs::remove_dir_all(&folder);
    fs::create_dir_all(&folder).unwrap();
    for file in ["config.json", "diffusion_pytorch_model.safetensors"] {
        fs::copy(fixture.join(file), folder.join(file)).unwrap();
    }
    let device = Default::default();
    for (config, field, value) in [
        (
            r#"{"num_train_timesteps": 1000, "prediction_type": "flow_prediction"}"#,
            "prediction_type",
            "flow_prediction",
        ),
        (
            r#"{"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0}"#,
            "_class_name",
            "FlowMatchEulerDiscreteScheduler",
        ),
        (
            r#"{"_class_name": "UniPCMultistepScheduler", "use_flow_sigmas": true}"#,
            "use_flow_sigmas",
            "true",
        ),
        (
            r#"{"beta_schedule": "rectified_flow"}"#,
            "beta_schedule",
            "rectified_flow",
        ),
    ] {
        fs::write(folder.join("scheduler_config.json"), config).unwrap();
        let refused = load_for_sampling::<Flex>(&folder, &device).unwrap_err();
        assert!(
            matches!(&refused, PipelineError::Unsupported { field: f, value: v, .. }
                if f == field && v == value),
            "{config}: {refused}"
        );
    }
    let mut model = load_for_sampling::<Flex>(&fixture, &device).unwrap();
    model.prediction = Prediction::Flow;
    model.schedule = NoiseSchedule::new(&BetaSchedule::rectified_flow(), 1000).unwrap();
    let saved = folder.join("saved");
    assert!(matches!(
        model.save_diffusers(&saved),
        Err(PipelineError::Unsupported { .. })
    ));
    assert!(!saved.exists());
}

#[test]
fn a_model_saved_as_a_diffusers_pipeline_loads_back_the_same() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-unet/tests/fixtures/unet_classes");
    let device = Default::default();
    let mut model = load_for_sampling::<Flex>(&fixture, &device).unwrap();
    // A schedule no diffusers name gives: cosine over 500 steps, rescaled to zero terminal SNR.
    model.schedule = NoiseSchedule::new(&BetaSchedule::cosine(), 500)
        .and_then(|schedule| schedule.rescale_zero_terminal_snr())
        .unwrap();
    model.prediction = Prediction::V;
    let pipeline = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("saved-pipeline");
    let _ = fs::remove_dir_all(&pipeline);
    model.save_diffusers(&pipeline).unwrap();
    for file in [
        "model_index.json",
        "unet/config.json",
        "scheduler/scheduler_config.json",
    ] {
        assert!(pipeline.join(file).is_file(), "{file}");
    }
    // Ending in pure noise, its steps are laid from there; other schedules keep diffusers'
    // default spacing.
    let spacing = |pipeline: &Path| {
        let scheduler = pipeline.join("scheduler/scheduler_config.json");
        let scheduler: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(scheduler).unwrap()).unwrap();
        scheduler.get("timestep_spacing").cloned()
    };
    assert_eq!(spacing(&pipeline), Some("trailing".into()));

    let loaded = load_for_sampling::<Flex>(&pipeline, &device).unwrap();
    assert_eq!(loaded.prediction, Prediction::V);
    assert_eq!(loaded.schedule.betas(), model.schedule.betas());
    assert_eq!(loaded.image_size, model.image_size);
    assert_eq!(loaded.config, model.config);
    let generation = Generation {
        seed: 3,
        condition: Condition::Classes {
            labels: vec![0, 1],
            guidance: GuidanceConfig::new(2.0),
            projection: None,
        },
        ..Generation::new(SamplerName::Ddim, 3, 2, model.image_size.unwrap())
    };
    let images = |model: &kiln_pipeline::SamplingModel<Flex>| -> Vec<f32> {
        let images = model.generate(generation.clone(), &device, |_| {}).unwrap();
        images.into_data().to_vec().unwrap()
    };
    assert_eq!(images(&loaded), images(&model));

    model.schedule = NoiseSchedule::new(&BetaSchedule::cosine(), 500).unwrap();
    let unscaled = pipeline.with_file_name("saved-pipeline-unscaled");
    let _ = fs::remove_dir_all(&unscaled);
    model.save_diffusers(&unscaled).unwrap();
    assert_eq!(spacing(&unscaled), None);
}

#[test]
fn trained_betas_must_cover_every_timestep() {
    let file = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("short-betas");
    let _ = fs::remove_dir_all(&file);
    fs::create_dir_all(&file).unwrap();
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-unet/tests/fixtures/unet_scale_shift");
    for name in ["config.json", "diffusion_pytorch_model.safetensors"] {
        fs::copy(fixture.join(name), file.join(name)).unwrap();
    }
    fs::write(
        file.join("scheduler_config.json"),
        r#"{"num_train_timesteps": 3, "trained_betas": [0.1, 0.2]}"#,
    )
    .unwrap();
    let error = load_for_sampling::<Flex>(&file, &Default::default()).unwrap_err();
    assert!(
        error.to_string().contains("trained_betas holds 2 values"),
        "{error}"
    );
    assert!(
        matches!(error, PipelineError::Inconsistent { .. }),
        "{error:?}"
    );
}

#[test]
fn an_unconditional_model_cannot_be_guided() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-unet/tests/fixtures/unet_scale_shift");
    let device = Default::default();
    let loaded = load_for_sampling::<Flex>(&fixture, &device).unwrap();
    assert!(loaded.class_names.is_empty());
    assert!(matches!(
        loaded.class_label("0"),
        Err(PipelineError::Sampler(SamplerError::Unconditional))
    ));
    let generation = Generation {
        condition: Condition::Classes {
            labels: vec![0],
            guidance: GuidanceConfig::new(2.0),
            projection: None,
        },
        ..Generation::new(SamplerName::Ddim, 2, 1, loaded.image_size.unwrap())
    };
    let error = loaded.generate(generation, &device, |_| {}).unwrap_err();
    assert!(error.to_string().contains("unconditional"), "{error}");
}

#[test]
fn guiding_a_unet_in_one_doubled_call_matches_two_calls() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-unet/tests/fixtures/unet_classes");
    let device = Default::default();
    let loaded = load_for_sampling::<Flex>(&fixture, &device).unwrap();
    // Five class embeddings: four classes and the null label.
    assert_eq!(loaded.class_names, ["0", "1", "2", "3"]);
    let size = loaded.image_size.unwrap();
    let model = UNetDenoiser::new(&loaded.model, Prediction::Epsilon);
    let x = kiln_forward::standard_normal::<Flex, 4>(
        [3, loaded.model.in_channels(), size, size],
        &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(4),
        &device,
    );
    let labels = vec![3, 0, 2];
    let conditional: Vec<Option<usize>> = labels.iter().map(|&k| Some(k)).collect();
    let beyond = model.denoise_labelled(x.clone(), 500.0, &[Some(4), None, Some(0)]);
    assert_eq!(
        beyond.unwrap_err(),
        SamplerError::ClassOutOfRange {
            class: 4,
            classes: 4
        }
    );
    let c = model
        .denoise_labelled(x.clone(), 500.0, &conditional)
        .unwrap();
    let u = model
        .denoise_labelled(x.clone(), 500.0, &[None; 3])
        .unwrap();
    assert_eq!(
        u.clone().into_data(),
        Denoiser::denoise(&model, x.clone(), 500.0)
            .unwrap()
            .into_data(),
        "no label is the null label"
    );
    let expected: Tensor<Flex, 4> = u.clone() + (c - u).mul_scalar(2.5);
    let guided = Guided::new(model, labels, GuidanceConfig::new(2.5)).unwrap();
    let got = guided.denoise(x, 500.0).unwrap();
    let diff = (got - expected.clone()).abs().max().into_scalar();
    let scale = expected.abs().max().into_scalar();
    assert!(diff <= 1e-5 * scale, "max |Δ| {diff} of {scale}");
}

/// A UNet with twice its input channels out learns its variance: DDPM reads it by default
/// (`learned_range`), guided or not, every other sampler takes the prediction alone, and a
/// diffusers export says `variance_type = "learned_range"` and loads back as one.
#[test]
fn a_unet_that_learns_its_variance_samples_and_round_trips_through_diffusers() {
    let device = Default::default();
    // Two classes and the null label.
    let config = UNetConfig::tiny(1)
        .with_out_channels(2)
        .with_num_class_embeds(Some(3));
    let unet = config.init::<Flex>(&device).unwrap();
    assert!(unet.learns_variance());
    let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap();
    let model = SamplingModel::new(unet, config, Prediction::Epsilon, schedule, Some(8), None);
    let ddpm = |model: &SamplingModel<Flex>, variance, condition| -> Vec<f32> {
        let run = NamedRun {
            variance,
            ..NamedRun::new(SamplerName::Ddpm, 5, true)
        };
        let generation = Generation {
            seed: 2,
            condition,
            ..Generation::with_run(run, 2, 8)
        };
        let images = model.generate(generation, &device, |_| {}).unwrap();
        images.into_data().to_vec().unwrap()
    };
    let guided = Condition::Classes {
        labels: vec![1, 0],
        guidance: GuidanceConfig::new(2.0),
        projection: None,
    };
    // Guided, the prediction is guided and the variance the classes' own (GLIDE's choice).
    let x = kiln_forward::standard_normal::<Flex, 4>(
        [2, 1, 8, 8],
        &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(4),
        &device,
    );
    let labelled = [Some(1), Some(0)];
    let with_variance = model
        .denoiser()
        .denoise_labelled_with_variance(x.clone(), 300.0, &labelled)
        .unwrap();
    let unconditional = model
        .denoiser()
        .denoise_labelled_with_variance(x.clone(), 300.0, &[None, None])
        .unwrap();
    assert_ne!(
        unconditional.clone().narrow(1, 1, 1).into_data(),
        with_variance.clone().narrow(1, 1, 1).into_data()
    );
    // Rescaled, outside its interval (where the classes' own call is the answer) or at weight
    // 0 (the unconditional call's), the prediction is the guided one and the variance the
    // call's whose prediction leads.
    for (guidance, variance_from) in [
        (GuidanceConfig::new(2.0), &with_variance),
        (GuidanceConfig::new(2.0).with_rescale(0.7), &with_variance),
        (
            GuidanceConfig::new(2.0).with_interval(500.0..=900.0),
            &with_variance,
        ),
        (GuidanceConfig::new(0.0), &unconditional),
    ] {
        let guide = Guided::new(model.denoiser(), vec![1, 0], guidance).unwrap();
        let guided_output = guide.denoise_with_variance(x.clone(), 300.0).unwrap();
        assert_eq!(
            guided_output.clone().narrow(1, 0, 1).into_data(),
            guide.denoise(x.clone(), 300.0).unwrap().into_data()
        );
        assert_eq!(
            guided_output.narrow(1, 1, 1).into_data(),
            variance_from.clone().narrow(1, 1, 1).into_data()
        );
    }
    for condition in [Condition::Unconditional, guided] {
        let learned = ddpm(&model, Some(VarianceType::LearnedRange), condition.clone());
        assert_eq!(ddpm(&model, None, condition.clone()), learned);
        assert_ne!(
            ddpm(&model, Some(VarianceType::FixedSmall), condition),
            learned
        );
    }
    let ddim = Generation::new(SamplerName::Ddim, 3, 2, 8);
    let images = model.generate(ddim.clone(), &device, |_| {}).unwrap();
    assert_eq!(images.dims(), [2, 1, 8, 8]);
    let variance_elsewhere = NamedRun {
        variance: Some(VarianceType::FixedLarge),
        ..NamedRun::new(SamplerName::Ddim, 3, true)
    };
    let refused = model.generate(
        Generation::with_run(variance_elsewhere, 2, 8),
        &device,
        |_| {},
    );
    assert!(matches!(
        refused.unwrap_err(),
        PipelineError::Sampler(SamplerError::Incompatible {
            sampler: "ddim",
            ..
        })
    ));

    let pipeline = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("learned-variance-pipeline");
    let _ = fs::remove_dir_all(&pipeline);
    model.save_diffusers(&pipeline).unwrap();
    let scheduler_file = pipeline.join("scheduler/scheduler_config.json");
    let scheduler: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&scheduler_file).unwrap()).unwrap();
    assert_eq!(scheduler["variance_type"], "learned_range");
    let loaded = load_for_sampling::<Flex>(&pipeline, &device).unwrap();
    assert!(loaded.model.learns_variance());
    let reloaded = loaded.generate(ddim, &device, |_| {}).unwrap();
    assert_eq!(reloaded.into_data(), images.into_data());
    let unconditional = Condition::Unconditional;
    assert_eq!(
        ddpm(&loaded, None, unconditional.clone()),
        ddpm(&model, None, unconditional)
    );

    // A model whose output holds no variance cannot be `learned_range`; diffusers' `learned`
    // (the output taken as the variance itself) is not Kiln's.
    let plain =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-unet/tests/fixtures/unet_scale_shift");
    let folder = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("claims-learned-variance");
    let _ = fs::remove_dir_all(&folder);
    fs::create_dir_all(&folder).unwrap();
    for name in ["config.json", "diffusion_pytorch_model.safetensors"] {
        fs::copy(plain.join(name), folder.join(name)).unwrap();
    }
    for (variance, complaint) in [
        ("learned_range", "output channels do not hold a variance"),
        ("learned", "unsupported variance_type \"learned\""),
    ] {
        let config = format!(r#"{{"variance_type": "{variance}"}}"#);
        fs::write(folder.join("scheduler_config.json"), config).unwrap();
        let error = load_for_sampling::<Flex>(&folder, &device).unwrap_err();
        assert!(error.to_string().contains(complaint), "{error}");
        let typed = match variance {
            "learned_range" => matches!(error, PipelineError::Inconsistent { .. }),
            _ => matches!(error, PipelineError::Unsupported { .. }),
        };
        assert!(typed, "{error:?}");
    }
}

/// A noise-predicting model whose every output is divided by λ: epsilon scaling written out.
struct Divided<'a> {
    model: &'a dyn Denoiser<Flex, 4>,
    lambda: f64,
}

impl Denoiser<Flex, 4> for Divided<'_> {
    fn prediction(&self) -> Prediction {
        Prediction::Epsilon
    }

    fn denoise(&self, x: Tensor<Flex, 4>, t: f64) -> Result<Tensor<Flex, 4>, SamplerError> {
        Ok(self.model.denoise(x, t)? / self.lambda)
    }
}

/// A generation's epsilon scaling divides every step's noise prediction by λ, after guidance
/// where there is guidance; a λ that is not positive is refused.
#[test]
fn epsilon_scaling_divides_each_steps_noise_prediction() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-unet/tests/fixtures/unet_classes");
    let device = Default::default();
    let loaded = load_for_sampling::<Flex>(&fixture, &device).unwrap();
    assert_eq!(loaded.prediction, Prediction::Epsilon);
    let size = loaded.image_size.unwrap();
    let lambda = 1.05;
    let run = NamedRun::new(SamplerName::Ddim, 3, true);
    let by_hand = |model: &dyn Denoiser<Flex, 4>| {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
        let shape = [2, loaded.model.in_channels(), size, size];
        let noise = kiln_forward::standard_normal::<Flex, 4>(shape, &mut rng, &device);
        let divided = Divided { model, lambda };
        kiln_pipeline::sample_by_name(run, &loaded.schedule, &divided, noise, &mut rng, |_| {})
            .unwrap()
    };
    let guidance = GuidanceConfig::new(2.0);
    let guided = Guided::new(loaded.denoiser(), vec![1, 3], guidance.clone()).unwrap();
    let conditions = [
        (Condition::Unconditional, by_hand(&loaded.denoiser())),
        (
            Condition::Classes {
                labels: vec![1, 3],
                guidance,
                projection: None,
            },
            by_hand(&guided),
        ),
    ];
    for (condition, expected) in conditions {
        let generation = Generation {
            seed: 5,
            condition: condition.clone(),
            epsilon_scaling: lambda,
            ..Generation::with_run(run, 2, size)
        };
        let images = loaded
            .generate(generation.clone(), &device, |_| {})
            .unwrap();
        let diff = (images - expected.clone()).abs().max().into_scalar();
        assert!(diff <= 1e-5, "{condition:?}: max |Δ| {diff}");
        let plain = Generation {
            epsilon_scaling: 1.0,
            ..generation
        };
        let unscaled = loaded.generate(plain, &device, |_| {}).unwrap();
        let moved = (unscaled - expected).abs().max().into_scalar();
        assert!(moved > 1e-3, "{condition:?}: λ moved the images by {moved}");
    }
    let refused = Generation {
        epsilon_scaling: 0.0,
        ..Generation::with_run(run, 1, size)
    };
    assert!(matches!(
        loaded.generate(refused, &device, |_| {}),
        Err(PipelineError::Sampler(SamplerError::OutOfRange {
            name: "epsilon scaling",
            ..
        }))
    ));
}

/// Generation with adaptive projected guidance is a sampler run over `ProjectedGuided` (the
/// momentum starting afresh), it moves the images away from classifier-free guidance's, and a
/// setting out of range is refused before the first step.
#[test]
fn projected_guidance_generates_as_the_wrapper_samples() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-unet/tests/fixtures/unet_classes");
    let device = Default::default();
    let loaded = load_for_sampling::<Flex>(&fixture, &device).unwrap();
    let size = loaded.image_size.unwrap();
    let run = NamedRun::new(SamplerName::Ddim, 3, true);
    let (labels, guidance) = (vec![1, 3], GuidanceConfig::new(3.0));
    let projection = ProjectedGuidance {
        parallel: 0.0,
        norm_threshold: 2.0,
        momentum: -0.5,
    };
    let guided = Guided::new(loaded.denoiser(), labels.clone(), guidance.clone()).unwrap();
    let projected = ProjectedGuided::new(guided, &loaded.schedule, projection).unwrap();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
    let shape = [2, loaded.model.in_channels(), size, size];
    let noise = kiln_forward::standard_normal::<Flex, 4>(shape, &mut rng, &device);
    let expected =
        kiln_pipeline::sample_by_name(run, &loaded.schedule, &projected, noise, &mut rng, |_| {})
            .unwrap();
    let generation = |projection| Generation {
        seed: 5,
        condition: Condition::Classes {
            labels: labels.clone(),
            guidance: guidance.clone(),
            projection,
        },
        ..Generation::with_run(run, 2, size)
    };
    let images = loaded
        .generate(generation(Some(projection)), &device, |_| {})
        .unwrap();
    let diff = (images - expected.clone()).abs().max().into_scalar();
    assert!(diff <= 1e-5, "max |Δ| {diff}");
    let classifier_free = loaded.generate(generation(None), &device, |_| {}).unwrap();
    let moved = (classifier_free - expected).abs().max().into_scalar();
    assert!(moved > 1e-3, "the projection moved the images by {moved}");
    let refused = generation(Some(ProjectedGuidance {
        momentum: -2.0,
        ..projection
    }));
    assert!(matches!(
        loaded.generate(refused, &device, |_| {}),
        Err(PipelineError::Sampler(SamplerError::OutOfRange {
            name: "projected guidance momentum",
            ..
        }))
    ));
}

/// Autoguided generation is a sampler run over `AutoGuided` (unconditional and guided towards
/// classes on top), it moves the images away from the model's own, and a guide of another
/// schedule, other classes or other channels is refused.
#[test]
fn autoguided_generation_samples_the_model_guided_by_its_guide() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-unet/tests/fixtures/unet_classes");
    let device = Default::default();
    let loaded = load_for_sampling::<Flex>(&fixture, &device).unwrap();
    let size = loaded.image_size.unwrap();
    // The guide: the same architecture, freshly initialised.
    let guide = |schedule: NoiseSchedule, classes: Option<Vec<String>>| {
        let unet = loaded.config.init::<Flex>(&device).unwrap();
        let config = loaded.config.clone();
        SamplingModel::new(
            unet,
            config,
            loaded.prediction,
            schedule,
            Some(size),
            classes,
        )
    };
    let weak = guide(loaded.schedule.clone(), Some(loaded.class_names.clone()));
    let run = NamedRun::new(SamplerName::Ddim, 3, true);
    let classes = Condition::Classes {
        labels: vec![1, 3],
        guidance: GuidanceConfig::new(2.0),
        projection: None,
    };
    for condition in [Condition::Unconditional, classes.clone()] {
        let generation = Generation {
            seed: 5,
            condition: condition.clone(),
            ..Generation::with_run(run, 2, size)
        };
        let images = loaded
            .generate_autoguided(&weak, 2.5, generation.clone(), &device, |_| {})
            .unwrap();
        let autoguided = AutoGuided::new(loaded.denoiser(), weak.denoiser(), 2.5).unwrap();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
        let shape = [2, loaded.model.in_channels(), size, size];
        let noise = kiln_forward::standard_normal::<Flex, 4>(shape, &mut rng, &device);
        let schedule = &loaded.schedule;
        let expected = match &condition {
            Condition::Unconditional => {
                kiln_pipeline::sample_by_name(run, schedule, &autoguided, noise, &mut rng, |_| {})
            }
            Condition::Classes { guidance, .. } => {
                let guided = Guided::new(autoguided, vec![1, 3], guidance.clone()).unwrap();
                kiln_pipeline::sample_by_name(run, schedule, &guided, noise, &mut rng, |_| {})
            }
        }
        .unwrap();
        let diff = (images.clone() - expected).abs().max().into_scalar();
        assert!(diff <= 1e-5, "{condition:?}: max |Δ| {diff}");
        let alone = loaded.generate(generation, &device, |_| {}).unwrap();
        let moved = (alone - images).abs().max().into_scalar();
        assert!(
            moved > 1e-3,
            "{condition:?}: autoguidance moved the images by {moved}"
        );
    }
    let incompatible = |guide: &SamplingModel<Flex>, condition: Condition| {
        let generation = Generation {
            condition,
            ..Generation::with_run(run, 2, size)
        };
        matches!(
            loaded.generate_autoguided(guide, 2.0, generation, &device, |_| {}),
            Err(PipelineError::Sampler(SamplerError::Incompatible {
                sampler: "autoguidance",
                ..
            }))
        )
    };
    let cosine = NoiseSchedule::new(&BetaSchedule::cosine(), 1000).unwrap();
    let other_schedule = guide(cosine, None);
    assert!(incompatible(&other_schedule, Condition::Unconditional));
    let other_classes = guide(loaded.schedule.clone(), Some(vec!["a".into(); 4]));
    assert!(incompatible(&other_classes, classes));
    let channels = loaded.model.in_channels() + 1;
    let config = UNetConfig::tiny(channels).with_num_class_embeds(Some(5));
    let unet = config.init::<Flex>(&device).unwrap();
    let schedule = loaded.schedule.clone();
    let other_channels =
        SamplingModel::new(unet, config, loaded.prediction, schedule, Some(size), None);
    assert!(incompatible(&other_channels, Condition::Unconditional));
}
