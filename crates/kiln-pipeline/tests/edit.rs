//! Editing and generating with a loaded model: every bad request is a typed error naming the
//! setting, before the model runs, and a refused input carries the UNet's own error.

use std::path::Path;

use burn::backend::Flex;
use burn::tensor::{Distribution, Tensor};
use kiln_forward::Prediction;
use kiln_pipeline::edit::box_mask;
use kiln_pipeline::{
    EditSettings, Generation, Inversion, PipelineError, PixelBox, SamplerName, SamplingModel,
    load_for_sampling,
};
use kiln_sampler::{
    Ddpm, DdpmConfig, Denoiser, DpmSolver, DpmSolverConfig, InversionMethod, Resampling, Sampler,
    SamplerError, SigmaSpacing, VarianceType, inpaint, sample,
};
use kiln_schedule::{BetaSchedule, NoiseSchedule};
use kiln_unet::{UNetConfig, UNetError};
use rand::{SeedableRng, rngs::StdRng};

type B = Flex;

fn model() -> SamplingModel<B> {
    let folder =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../kiln-unet/tests/fixtures/unet_scale_shift");
    load_for_sampling::<B>(&folder, &Default::default()).unwrap()
}

const SETTINGS: EditSettings = EditSettings { steps: 2, seed: 0 };

fn photo(model: &SamplingModel<B>) -> Tensor<B, 4> {
    let size = model.image_size.unwrap();
    Tensor::zeros(
        [1, model.model.in_channels(), size, size],
        &Default::default(),
    )
}

fn setting(error: PipelineError) -> &'static str {
    match error {
        PipelineError::Edit { setting, .. } => setting,
        other => panic!("expected an edit setting's error, got {other}"),
    }
}

fn is_empty_batch(error: &PipelineError) -> bool {
    matches!(error, PipelineError::UNet(UNetError::Input { shape, problem })
        if shape[0] == 0 && problem.contains("empty"))
}

#[test]
fn an_empty_batch_is_refused_before_the_model_runs() {
    let model = model();
    let generation = Generation::new(SamplerName::DpmSolver, 2, 0, model.image_size.unwrap());
    let error = model
        .generate(generation, &Default::default(), |_| {})
        .unwrap_err();
    assert!(is_empty_batch(&error), "{error}");
    let resampling = Resampling {
        jump_length: 1,
        repeats: 1,
    };
    let mask = Tensor::ones_like(&photo(&model));
    let error = model
        .inpaint(photo(&model), mask, 0, resampling, SETTINGS, |_| {})
        .unwrap_err();
    assert!(is_empty_batch(&error), "{error}");
    let error = model
        .image_to_image(photo(&model), 0, 0.5, SETTINGS, |_| {})
        .unwrap_err();
    assert!(is_empty_batch(&error), "{error}");
}

/// RePaint on a model that learns its variance samples DDPM with that variance
/// (`learned_range`), not with the fixed one.
#[test]
fn inpainting_samples_with_the_variance_a_model_learns() {
    let device = Default::default();
    let config = UNetConfig::tiny(1).with_out_channels(2);
    let unet = config.init::<B>(&device).unwrap();
    let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap();
    let model = SamplingModel::new(unet, config, Prediction::Epsilon, schedule, Some(8), None);
    let resampling = Resampling {
        jump_length: 1,
        repeats: 2,
    };
    let photo = Tensor::<B, 4>::random([1, 1, 8, 8], Distribution::Uniform(-1.0, 1.0), &device);
    let covered = PixelBox {
        x: 2,
        y: 2,
        width: 4,
        height: 4,
    };
    let mask = box_mask::<B>([1, 1, 8, 8], covered, &device).unwrap();
    let count = 2;
    let filled = model
        .inpaint(
            photo.clone(),
            mask.clone(),
            count,
            resampling,
            SETTINGS,
            |_| {},
        )
        .unwrap();
    let with = |variance_type| -> Tensor<B, 4> {
        let config = DdpmConfig {
            variance_type,
            ..DdpmConfig::default()
        };
        let mut ddpm = Ddpm::new(config, &model.schedule, SETTINGS.steps).unwrap();
        inpaint(
            &mut ddpm,
            &model.denoiser(),
            &model.schedule,
            photo.clone().repeat_dim(0, count),
            mask.clone().repeat_dim(0, count),
            Some(resampling),
            &mut StdRng::seed_from_u64(SETTINGS.seed),
            |_| {},
        )
        .unwrap()
    };
    let gap = |other: Tensor<B, 4>| -> f32 { (filled.clone() - other).abs().max().into_scalar() };
    assert_eq!(gap(with(VarianceType::LearnedRange)), 0.0);
    assert!(gap(with(VarianceType::FixedSmall)) > 1e-3);
}

#[test]
fn a_box_outside_the_image_or_without_area_is_named() {
    let dims = [1, 3, 8, 8];
    let device = Default::default();
    let area = |x, y, width, height| PixelBox {
        x,
        y,
        width,
        height,
    };
    let huge = area(usize::MAX, 0, 2, 2);
    for bad in [area(6, 0, 4, 2), area(0, 7, 2, 2), area(9, 9, 1, 1), huge] {
        let error = box_mask::<B>(dims, bad, &device).unwrap_err();
        assert_eq!(setting(error), "box", "{bad:?}");
    }
    for empty in [area(1, 1, 0, 3), area(1, 1, 3, 0)] {
        let error = box_mask::<B>(dims, empty, &device).unwrap_err();
        assert!(error.to_string().contains("no area"), "{error}");
    }
    // A box reaching the last row and column is inside: 3 × 2 pixels in each of 3 channels,
    // for each of 2 samples.
    let mask = box_mask::<B>([2, 3, 8, 8], area(5, 6, 3, 2), &device).unwrap();
    assert_eq!(mask.dims(), [2, 3, 8, 8]);
    let zeros = mask.equal_elem(0.0).int().sum().into_scalar();
    assert_eq!(zeros, 36);
}

#[test]
fn a_morph_needs_two_frames_and_a_mask_the_photo_s_size() {
    let model = model();
    for frames in [0, 1] {
        let error = model
            .interpolate(
                photo(&model),
                photo(&model),
                frames,
                Inversion::Ddim(InversionMethod::Plain),
                SETTINGS,
                |_| {},
            )
            .unwrap_err();
        assert_eq!(setting(error), "frames");
    }
    let pair = Tensor::cat(vec![photo(&model), photo(&model)], 0);
    let error = model
        .interpolate(
            pair,
            photo(&model),
            4,
            Inversion::Ddim(InversionMethod::Plain),
            SETTINGS,
            |_| {},
        )
        .unwrap_err();
    assert_eq!(setting(error), "the images to morph");
    let small = Tensor::ones([1, 3, 4, 4], &Default::default());
    let resampling = Resampling {
        jump_length: 1,
        repeats: 1,
    };
    let error = model
        .inpaint(photo(&model), small, 1, resampling, SETTINGS, |_| {})
        .unwrap_err();
    assert_eq!(setting(error), "mask");
}

#[test]
fn the_unet_s_refusal_reaches_the_sampler_s_caller_as_its_own_error() {
    let model = model();
    let size = model.image_size.unwrap();
    let one_channel = Tensor::<B, 4>::zeros([2, 1, size, size], &Default::default());
    let error = model.denoiser().denoise(one_channel, 10.0).unwrap_err();
    let SamplerError::Model(refusal) = &error else {
        panic!("expected the model's refusal, got {error}");
    };
    assert!(
        matches!(refusal.downcast_ref::<UNetError>(), Some(UNetError::Input { problem, .. }) if problem.contains("channels")),
        "{error}"
    );
    // A photo of the wrong size for the UNet is refused by every edit that takes one.
    let odd = Tensor::<B, 4>::zeros([1, 3, size + 1, size + 1], &Default::default());
    let error = model
        .invert(odd, Inversion::Ddim(InversionMethod::Plain), 2, |_| {})
        .unwrap_err();
    assert!(error.to_string().contains("multiples"), "{error}");
}

/// DPM-Solver++ inversion is the sampler crate's `DpmSolver::inverse` over λ-uniform steps,
/// reporting one step fewer than asked (it starts at the photo's own level) and the levels it
/// reaches, up to where decoding starts; its decoder is the same solver forwards.
#[test]
fn dpm_solver_inversion_runs_the_solver_up_over_uniform_lambda_and_decodes_down() {
    let model = model();
    let size = model.image_size.unwrap();
    let photo = Tensor::<B, 4>::random(
        [1, 3, size, size],
        Distribution::Uniform(-1.0, 1.0),
        &Default::default(),
    );
    let inversion = Inversion::DpmSolverPlusPlus { order: 2 };
    let mut reported = Vec::new();
    let noise = model
        .invert(photo.clone(), inversion, 6, |step| {
            reported.push((step.done, step.steps, step.timestep))
        })
        .unwrap();
    let back = model
        .decode(noise.clone(), inversion, SETTINGS, |_| {})
        .unwrap();

    let config = DpmSolverConfig {
        sigma_spacing: SigmaSpacing::Exponential,
        ..DpmSolverConfig::default()
    };
    let sampling = DpmSolver::<B, 4>::new(config, &model.schedule, 6).unwrap();
    let levels = sampling.timesteps()[..5].iter().rev();
    let expected: Vec<_> = (1..=5).zip(levels).map(|(done, &t)| (done, 5, t)).collect();
    assert_eq!(reported, expected);
    let mut rng = StdRng::seed_from_u64(0);
    let mut inverse = DpmSolver::inverse(config, &model.schedule, 6).unwrap();
    let expected = sample(&mut inverse, &model.denoiser(), photo, &mut rng, |_| {}).unwrap();
    assert_eq!(max_difference(noise.clone(), expected), 0.0);
    let mut forward = DpmSolver::new(config, &model.schedule, SETTINGS.steps).unwrap();
    let expected = sample(&mut forward, &model.denoiser(), noise, &mut rng, |_| {}).unwrap();
    assert_eq!(max_difference(back, expected), 0.0);
}

fn max_difference(a: Tensor<B, 4>, b: Tensor<B, 4>) -> f32 {
    (a - b).abs().max().into_scalar()
}
