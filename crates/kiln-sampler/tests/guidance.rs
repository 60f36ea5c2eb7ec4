//! Classifier-free guidance against the class-conditional Gaussian-mixture oracle: the limits
//! w = 0 and w = 1, the doubled-batch arithmetic, rescale and interval, guided samples landing
//! in their class's component, and bad settings as typed errors. Then adaptive projected
//! guidance: its update worked by hand on two-value samples (projection, norm threshold,
//! momentum and when it starts afresh, the learned variance beside it, a noise prediction where
//! x̂_0 is undefined), η = 1 as classifier-free guidance, one step for every output kind,
//! guided samples in their class, and bad settings as typed errors. Last, autoguidance: the
//! combination of two models' outputs, a too-wide model guided by a wider one sampling closer
//! to the data than alone, and what it refuses.

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use kiln_forward::standard_normal;
use kiln_sampler::{
    AutoGuided, ClassConditional, Denoiser, DpmSolver, DpmSolverConfig, GaussianMixture,
    GuidanceConfig, Guided, Prediction, ProjectedGuidance, ProjectedGuided, SamplerError, sample,
    sliced_wasserstein_2,
};
use kiln_schedule::{BetaSchedule, NoiseSchedule};
use rand::{SeedableRng, rngs::StdRng};

type B = Flex;

fn schedule() -> NoiseSchedule {
    NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap()
}

/// Three overlapping classes in 2-D, one per component, with unequal weights.
fn mixture(prediction: Prediction) -> GaussianMixture {
    GaussianMixture::new(
        vec![0.5, 0.3, 0.2],
        vec![vec![-0.6, 0.0], vec![0.6, 0.2], vec![0.0, -0.7]],
        vec![0.09, 0.09, 0.09],
        schedule(),
    )
    .unwrap()
    .with_prediction(prediction)
}

fn points(count: usize, seed: u64) -> Tensor<B, 2> {
    standard_normal::<B, 2>(
        [count, 2],
        &mut StdRng::seed_from_u64(seed),
        &Default::default(),
    )
}

fn values(x: Tensor<B, 2>) -> Vec<f32> {
    x.into_data().into_vec::<f32>().unwrap()
}

fn max_abs_diff(a: Tensor<B, 2>, b: Tensor<B, 2>) -> f32 {
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn weight_zero_is_unconditional_and_weight_one_is_conditional() {
    let oracle = mixture(Prediction::Epsilon);
    let x = points(6, 1);
    let labels = vec![0, 1, 2, 0, 1, 2];
    let conditional: Vec<Option<usize>> = labels.iter().map(|&k| Some(k)).collect();
    for t in [999.0, 500.0, 20.5] {
        let unguided =
            Guided::new::<B, 2>(&oracle, labels.clone(), GuidanceConfig::new(0.0)).unwrap();
        let plain = Guided::new::<B, 2>(&oracle, labels.clone(), GuidanceConfig::new(1.0)).unwrap();
        assert_eq!(
            values(unguided.denoise(x.clone(), t).unwrap()),
            values(Denoiser::<B, 2>::denoise(&oracle, x.clone(), t).unwrap()),
            "w = 0 at t = {t}"
        );
        assert_eq!(
            values(plain.denoise(x.clone(), t).unwrap()),
            values(oracle.denoise_labelled(x.clone(), t, &conditional).unwrap()),
            "w = 1 at t = {t}"
        );
    }
}

#[test]
fn one_doubled_call_combines_the_two_predictions_for_every_output_kind() {
    let x = points(4, 2);
    let labels = vec![2, 0, 1, 1];
    let conditional: Vec<Option<usize>> = labels.iter().map(|&k| Some(k)).collect();
    for prediction in [Prediction::Epsilon, Prediction::Sample, Prediction::V] {
        let oracle = mixture(prediction);
        let t = 400.0;
        let c = oracle.denoise_labelled(x.clone(), t, &conditional).unwrap();
        let u = oracle.denoise_labelled(x.clone(), t, &[None; 4]).unwrap();
        let expected = u.clone() + (c - u).mul_scalar(3.0);
        let guided =
            Guided::new::<B, 2>(&oracle, labels.clone(), GuidanceConfig::new(3.0)).unwrap();
        let diff = max_abs_diff(guided.denoise(x.clone(), t).unwrap(), expected);
        assert!(diff < 1e-5, "{prediction:?}: {diff}");
    }
    // ε, x_0 and v guided outputs describe one and the same step.
    let schedule = schedule();
    let alpha_cumprod = schedule.alphas_cumprod()[400];
    let x0_of = |prediction: Prediction| {
        let guided = Guided::new::<B, 2>(
            mixture(prediction),
            labels.clone(),
            GuidanceConfig::new(3.0),
        )
        .unwrap();
        let output = guided.denoise(x.clone(), 400.0).unwrap();
        let [on_x, on_output] =
            prediction.conversion_coefficients(Prediction::Sample, alpha_cumprod);
        x.clone().mul_scalar(on_x) + output.mul_scalar(on_output)
    };
    let from_epsilon = x0_of(Prediction::Epsilon);
    for prediction in [Prediction::Sample, Prediction::V] {
        let diff = max_abs_diff(x0_of(prediction), from_epsilon.clone());
        assert!(diff < 1e-4, "x̂_0 from {prediction:?} vs ε: {diff}");
    }
}

#[test]
fn rescale_moves_the_spread_towards_the_conditional_one() {
    let oracle = mixture(Prediction::Epsilon);
    let x = points(3, 3);
    let labels = vec![0, 1, 2];
    let conditional: Vec<Option<usize>> = labels.iter().map(|&k| Some(k)).collect();
    let t = 300.0;
    let std_of = |y: Tensor<B, 2>| y.var(1).sqrt().into_data().into_vec::<f32>().unwrap();
    let target = std_of(oracle.denoise_labelled(x.clone(), t, &conditional).unwrap());
    let plain = Guided::new::<B, 2>(&oracle, labels.clone(), GuidanceConfig::new(5.0)).unwrap();
    let full = Guided::new::<B, 2>(
        &oracle,
        labels.clone(),
        GuidanceConfig::new(5.0).with_rescale(1.0),
    )
    .unwrap();
    let half =
        Guided::new::<B, 2>(&oracle, labels, GuidanceConfig::new(5.0).with_rescale(0.5)).unwrap();
    let guided = plain.denoise(x.clone(), t).unwrap();
    let rescaled = std_of(full.denoise(x.clone(), t).unwrap());
    for (got, want) in rescaled.iter().zip(&target) {
        assert!(
            (got - want).abs() < 1e-5 * want.max(1.0),
            "φ = 1: {got} vs {want}"
        );
    }
    // φ = 1/2 is the average of the plain and the fully rescaled outputs.
    let expected = (guided.clone() + full.denoise(x.clone(), t).unwrap()).mul_scalar(0.5);
    let diff = max_abs_diff(half.denoise(x, t).unwrap(), expected);
    assert!(diff < 1e-5, "φ = 1/2: {diff}");
    assert_ne!(std_of(guided), target, "w = 5 changes the spread");
}

#[test]
fn outside_its_interval_guidance_is_plain_conditional() {
    let oracle = mixture(Prediction::Epsilon);
    let x = points(2, 4);
    let labels = vec![1, 2];
    let conditional = [Some(1), Some(2)];
    let guided = Guided::new::<B, 2>(
        &oracle,
        labels.clone(),
        GuidanceConfig::new(4.0).with_interval(200.0..=700.0),
    )
    .unwrap();
    let always = Guided::new::<B, 2>(&oracle, labels, GuidanceConfig::new(4.0)).unwrap();
    for t in [100.0, 800.0] {
        assert_eq!(
            values(guided.denoise(x.clone(), t).unwrap()),
            values(oracle.denoise_labelled(x.clone(), t, &conditional).unwrap()),
            "t = {t}"
        );
    }
    assert_eq!(
        values(guided.denoise(x.clone(), 450.0).unwrap()),
        values(always.denoise(x, 450.0).unwrap())
    );
}

/// The share of `samples` whose most likely component is `k`, for each k.
fn component_shares(oracle: &GaussianMixture, samples: Tensor<B, 2>) -> Vec<f64> {
    let components = oracle.components_of(&values(samples));
    let mut counts = vec![0usize; oracle.components()];
    for &k in &components {
        counts[k] += 1;
    }
    counts
        .iter()
        .map(|&n| n as f64 / components.len() as f64)
        .collect()
}

fn dpm_samples(model: &impl Denoiser<B, 2>, count: usize, seed: u64) -> Tensor<B, 2> {
    let mut sampler = DpmSolver::new(DpmSolverConfig::default(), &schedule(), 25).unwrap();
    let noise = points(count, seed);
    sample(
        &mut sampler,
        model,
        noise,
        &mut StdRng::seed_from_u64(seed),
        |_| {},
    )
    .unwrap()
}

#[test]
fn guided_samples_land_in_their_class_and_unguided_ones_follow_the_weights() {
    let oracle = mixture(Prediction::Epsilon);
    let count = 400;
    for class in 0..3 {
        let guided =
            Guided::new::<B, 2>(&oracle, vec![class; count], GuidanceConfig::new(3.0)).unwrap();
        let shares = component_shares(&oracle, dpm_samples(&guided, count, 10 + class as u64));
        println!("class {class}, w = 3: shares per component {shares:.3?}");
        assert!(shares[class] >= 0.95, "class {class}: {shares:?}");
        let plain =
            Guided::new::<B, 2>(&oracle, vec![class; count], GuidanceConfig::new(1.0)).unwrap();
        let shares = component_shares(&oracle, dpm_samples(&plain, count, 20 + class as u64));
        println!("class {class}, w = 1: shares per component {shares:.3?}");
    }
    let shares = component_shares(&oracle, dpm_samples(&oracle, 2000, 30));
    println!("unguided: shares per component {shares:.3?} (weights 0.5, 0.3, 0.2)");
    for (share, weight) in shares.iter().zip([0.5, 0.3, 0.2]) {
        // Classification of overlapping components: loose bounds, but far from uniform.
        assert!((share - weight).abs() < 0.06, "{shares:?}");
    }
}

#[test]
fn bad_guidance_is_a_typed_error() {
    let oracle = mixture(Prediction::Epsilon);
    let new = |labels: Vec<usize>, config| Guided::new::<B, 2>(&oracle, labels, config).err();
    assert_eq!(
        new(vec![0, 3], GuidanceConfig::new(2.0)),
        Some(SamplerError::ClassOutOfRange {
            class: 3,
            classes: 3
        })
    );
    for config in [
        GuidanceConfig::new(-1.0),
        GuidanceConfig::new(f64::NAN),
        GuidanceConfig::new(2.0).with_rescale(1.5),
        GuidanceConfig::new(2.0).with_interval(600.0..=100.0),
    ] {
        assert!(
            matches!(
                new(vec![0], config.clone()),
                Some(SamplerError::OutOfRange { .. })
            ),
            "{config:?}"
        );
    }
    let guided = Guided::new::<B, 2>(&oracle, vec![0, 1], GuidanceConfig::new(2.0)).unwrap();
    assert_eq!(
        guided.check_batch(3),
        Err(SamplerError::LabelCount {
            labels: 2,
            batch: 3
        })
    );
    assert_eq!(guided.check_batch(2), Ok(()));

    // A model without classes cannot be guided.
    struct Unconditional;
    impl ClassConditional<B, 2> for Unconditional {
        fn prediction(&self) -> Prediction {
            Prediction::Epsilon
        }
        fn classes(&self) -> usize {
            0
        }
        fn denoise_labelled(
            &self,
            sample: Tensor<B, 2>,
            _timestep: f64,
            _labels: &[Option<usize>],
        ) -> Result<Tensor<B, 2>, SamplerError> {
            Ok(sample)
        }
    }
    assert_eq!(
        Guided::new::<B, 2>(Unconditional, vec![0], GuidanceConfig::new(2.0)).err(),
        Some(SamplerError::Unconditional)
    );
}

fn assert_close(got: Tensor<B, 2>, want: &[f32], what: &str) {
    let got = values(got);
    let close = got.len() == want.len() && got.iter().zip(want).all(|(g, w)| (g - w).abs() < 1e-5);
    assert!(close, "{what}: {got:?}, expected {want:?}");
}

/// A one-class model of `prediction` (x_0: x̂_0 is its output): row i of a batch of n rows
/// is `conditional(t)[i % n]` for the class and `unconditional(t)[i % n]` for the null label,
/// with a learned variance of (7, 7) for the class and (`null_variance`, …) for the null label.
struct Table {
    prediction: Prediction,
    null_variance: f32,
    conditional: fn(f64) -> Vec<[f32; 2]>,
    unconditional: fn(f64) -> Vec<[f32; 2]>,
}

impl ClassConditional<B, 2> for Table {
    fn prediction(&self) -> Prediction {
        self.prediction
    }

    fn classes(&self) -> usize {
        1
    }

    fn denoise_labelled(
        &self,
        sample: Tensor<B, 2>,
        timestep: f64,
        labels: &[Option<usize>],
    ) -> Result<Tensor<B, 2>, SamplerError> {
        let (conditional, unconditional) =
            ((self.conditional)(timestep), (self.unconditional)(timestep));
        let rows: Vec<f32> = labels
            .iter()
            .enumerate()
            .flat_map(|(i, label)| match label {
                Some(_) => conditional[i % conditional.len()],
                None => unconditional[i % unconditional.len()],
            })
            .collect();
        Ok(Tensor::from_data(
            TensorData::new(rows, [labels.len(), 2]),
            &sample.device(),
        ))
    }

    fn learns_variance(&self) -> bool {
        true
    }

    fn denoise_labelled_with_variance(
        &self,
        sample: Tensor<B, 2>,
        timestep: f64,
        labels: &[Option<usize>],
    ) -> Result<Tensor<B, 2>, SamplerError> {
        let variance: Vec<f32> = labels
            .iter()
            .flat_map(|label| {
                [if label.is_some() {
                    7.0
                } else {
                    self.null_variance
                }; 2]
            })
            .collect();
        let variance = Tensor::from_data(
            TensorData::new(variance, [labels.len(), 2]),
            &sample.device(),
        );
        let prediction = self.denoise_labelled(sample, timestep, labels)?;
        Ok(Tensor::cat(vec![prediction, variance], 1))
    }
}

/// Unlabelled, the table is its null label's rows.
impl Denoiser<B, 2> for Table {
    fn prediction(&self) -> Prediction {
        self.prediction
    }

    fn denoise(&self, sample: Tensor<B, 2>, timestep: f64) -> Result<Tensor<B, 2>, SamplerError> {
        let labels = vec![None; sample.dims()[0]];
        self.denoise_labelled(sample, timestep, &labels)
    }

    fn learns_variance(&self) -> bool {
        true
    }

    fn denoise_with_variance(
        &self,
        sample: Tensor<B, 2>,
        timestep: f64,
    ) -> Result<Tensor<B, 2>, SamplerError> {
        let labels = vec![None; sample.dims()[0]];
        self.denoise_labelled_with_variance(sample, timestep, &labels)
    }
}

/// Two samples: D_c = (1, 0), D_∅ = (0, 1), so Δ = (1, −1) with Δ_∥ = (1, 0), and
/// D_c = (0, 2), D_∅ = (1, 1), so Δ = (−1, 1) with Δ_∥ = (0, 1).
fn two_samples(prediction: Prediction) -> Table {
    Table {
        prediction,
        null_variance: 9.0,
        conditional: |_| vec![[1.0, 0.0], [0.0, 2.0]],
        unconditional: |_| vec![[0.0, 1.0], [1.0, 1.0]],
    }
}

fn guide(
    model: Table,
    schedule: &NoiseSchedule,
    scale: f64,
    projection: ProjectedGuidance,
) -> ProjectedGuided<'_, B, 2, Table> {
    let batch = (model.conditional)(0.0).len();
    let guided = Guided::new::<B, 2>(model, vec![0; batch], GuidanceConfig::new(scale)).unwrap();
    ProjectedGuided::new(guided, schedule, projection).unwrap()
}

#[test]
fn the_update_keeps_eta_of_its_component_along_the_conditional_prediction() {
    let schedule = schedule();
    let x = Tensor::<B, 2>::zeros([2, 2], &Default::default());
    let at = |parallel: f64, norm_threshold: f64| {
        let projection = ProjectedGuidance {
            parallel,
            norm_threshold,
            momentum: 0.0,
        };
        guide(two_samples(Prediction::Sample), &schedule, 3.0, projection)
            .denoise(x.clone(), 500.0)
            .unwrap()
    };
    // D_c + 2 Δ_⊥: (1, 0) + 2 (0, −1) and (0, 2) + 2 (−1, 0).
    assert_close(at(0.0, 0.0), &[1.0, -2.0, -2.0, 2.0], "η = 0");
    // + 2 η Δ_∥ with η = 1/2.
    assert_close(at(0.5, 0.0), &[2.0, -2.0, -2.0, 3.0], "η = 1/2");
    // η = 1 is classifier-free guidance: D_∅ + 3 Δ.
    assert_close(at(1.0, 0.0), &[3.0, -2.0, -2.0, 4.0], "η = 1");
    // ‖Δ‖ = √2 capped at 1/2: Δ scaled by 1/(2√2) first.
    let r = 0.5 / 2f32.sqrt();
    assert_close(
        at(0.0, 0.5),
        &[1.0, -2.0 * r, -2.0 * r, 2.0],
        "η = 0, r = 1/2",
    );
    // A cap above the norm leaves Δ alone.
    assert_close(at(0.0, 2.0), &[1.0, -2.0, -2.0, 2.0], "η = 0, r = 2");
    // The class's learned variance follows the guided prediction.
    let guided = guide(
        two_samples(Prediction::Sample),
        &schedule,
        3.0,
        ProjectedGuidance::default(),
    );
    assert_close(
        guided.denoise_with_variance(x, 500.0).unwrap(),
        &[1.0, -2.0, 7.0, 7.0, -2.0, 2.0, 7.0, 7.0],
        "with the variance",
    );
}

#[test]
fn a_noise_prediction_where_x0_is_undefined_is_guided_in_its_own_output() {
    // ᾱ = 0 at the last timestep: x̂_0 = (x_t − ε̂)/0.
    let schedule = schedule().rescale_zero_terminal_snr().unwrap();
    let projection = ProjectedGuidance {
        momentum: -0.5,
        ..ProjectedGuidance::default()
    };
    let guided = guide(two_samples(Prediction::Epsilon), &schedule, 3.0, projection);
    // At x_t = 0, x̂_0 = c ε̂ with one c for both samples, so the update is the same in either.
    let x = Tensor::<B, 2>::zeros([2, 2], &Default::default());
    for t in [999.0, 500.0] {
        let output = guided.denoise(x.clone(), t).unwrap();
        assert_close(output, &[1.0, -2.0, -2.0, 2.0], &format!("t = {t}"));
    }
}

#[test]
fn momentum_adds_the_last_update_and_starts_afresh_above_its_start_or_at_a_reset() {
    let schedule = schedule();
    // D_c = (1, 0) and D_∅ = (0, t/1000): Δ = (1, −t/1000).
    let model = || Table {
        prediction: Prediction::Sample,
        null_variance: 9.0,
        conditional: |_| vec![[1.0, 0.0]],
        unconditional: |t| vec![[0.0, t as f32 / 1000.0]],
    };
    let projection = ProjectedGuidance {
        parallel: 1.0,
        norm_threshold: 0.0,
        momentum: -0.5,
    };
    let guided = guide(model(), &schedule, 3.0, projection);
    let x = Tensor::<B, 2>::zeros([1, 2], &Default::default());
    let call = |t: f64| guided.denoise(x.clone(), t).unwrap();
    // D_c + 2 m with m = Δ, then Δ − m/2 at each later call.
    assert_close(call(500.0), &[3.0, -1.0], "first call: m = (1, −0.5)");
    assert_close(call(400.0), &[2.0, -0.3], "m = (1, −0.4) − (0.5, −0.25)");
    assert_close(
        call(400.0),
        &[2.5, -0.65],
        "same t: m = (1, −0.4) − (0.25, −0.075)",
    );
    // Above the last call but not above the start (Heun's churn): carried on.
    assert_close(
        call(450.0),
        &[2.25, -0.575],
        "m = (1, −0.45) − (0.375, −0.1625)",
    );
    assert_close(
        call(600.0),
        &[3.0, -1.2],
        "a t above the start starts afresh",
    );
    guided.reset();
    assert_close(call(500.0), &[3.0, -1.0], "after reset");
    // The momentum keeps the update before the cap: with r = 1/2, (1, −0.5) is capped to
    // (0.4472, −0.2236), and the next call's (1, −0.4) − (0.5, −0.25) = (0.5, −0.15) to
    // 0.9578 of itself.
    let capped = guide(
        model(),
        &schedule,
        3.0,
        ProjectedGuidance {
            norm_threshold: 0.5,
            ..projection
        },
    );
    assert_close(
        capped.denoise(x.clone(), 500.0).unwrap(),
        &[1.894427, -0.447214],
        "capped, first call",
    );
    assert_close(
        capped.denoise(x, 400.0).unwrap(),
        &[1.957826, -0.287348],
        "capped, second call",
    );
}

#[test]
fn eta_one_is_classifier_free_guidance_and_every_output_kind_takes_one_step() {
    let schedule = schedule();
    let x = points(4, 2);
    let labels = vec![2, 0, 1, 1];
    let t = 400.0;
    let plain = ProjectedGuidance {
        parallel: 1.0,
        norm_threshold: 0.0,
        momentum: 0.0,
    };
    let projected = ProjectedGuidance {
        parallel: 0.0,
        norm_threshold: 0.5,
        momentum: 0.0,
    };
    let x0_of = |prediction: Prediction, projection: ProjectedGuidance| {
        let guided = Guided::new::<B, 2>(
            mixture(prediction),
            labels.clone(),
            GuidanceConfig::new(4.0),
        )
        .unwrap();
        let output = ProjectedGuided::new(guided, &schedule, projection)
            .unwrap()
            .denoise(x.clone(), t)
            .unwrap();
        let [on_x, on_output] =
            prediction.conversion_coefficients(Prediction::Sample, schedule.alphas_cumprod()[400]);
        x.clone().mul_scalar(on_x) + output.mul_scalar(on_output)
    };
    let kinds = [
        Prediction::Epsilon,
        Prediction::Sample,
        Prediction::V,
        Prediction::Flow,
    ];
    for prediction in kinds {
        let guided = Guided::new::<B, 2>(
            mixture(prediction),
            labels.clone(),
            GuidanceConfig::new(4.0),
        )
        .unwrap();
        let classifier_free = guided.denoise(x.clone(), t).unwrap();
        let as_projected = ProjectedGuided::new(guided, &schedule, plain)
            .unwrap()
            .denoise(x.clone(), t)
            .unwrap();
        let diff = max_abs_diff(as_projected, classifier_free);
        assert!(diff < 1e-5, "{prediction:?}, η = 1: {diff}");
    }
    let from_epsilon = x0_of(Prediction::Epsilon, projected);
    let moved = max_abs_diff(from_epsilon.clone(), x0_of(Prediction::Epsilon, plain));
    assert!(moved > 1e-2, "the projection changes the step: {moved}");
    for prediction in &kinds[1..] {
        let diff = max_abs_diff(x0_of(*prediction, projected), from_epsilon.clone());
        assert!(diff < 1e-4, "x̂_0 from {prediction:?} vs ε: {diff}");
    }
}

#[test]
fn projected_guidance_still_samples_the_class_asked_for() {
    let oracle = mixture(Prediction::Epsilon);
    let schedule = schedule();
    for class in 0..3 {
        let guided =
            Guided::new::<B, 2>(&oracle, vec![class; 400], GuidanceConfig::new(3.0)).unwrap();
        let projection = ProjectedGuidance {
            parallel: 0.0,
            norm_threshold: 0.0,
            momentum: -0.5,
        };
        let projected = ProjectedGuided::new(guided, &schedule, projection).unwrap();
        let samples = dpm_samples(&projected, 400, 7 + class as u64);
        let share = component_shares(&oracle, samples)[class];
        assert!(share > 0.97, "class {class}: {share}");
    }
}

#[test]
fn bad_projected_guidance_settings_are_typed_errors() {
    let schedule = schedule();
    for (projection, name) in [
        (
            ProjectedGuidance {
                parallel: f64::NAN,
                ..ProjectedGuidance::default()
            },
            "projected guidance eta",
        ),
        (
            ProjectedGuidance {
                norm_threshold: -1.0,
                ..ProjectedGuidance::default()
            },
            "projected guidance norm threshold",
        ),
        (
            ProjectedGuidance {
                momentum: 1.5,
                ..ProjectedGuidance::default()
            },
            "projected guidance momentum",
        ),
    ] {
        let guided = Guided::new::<B, 2>(
            two_samples(Prediction::Sample),
            vec![0],
            GuidanceConfig::new(2.0),
        )
        .unwrap();
        let result = ProjectedGuided::<B, 2, _>::new(guided, &schedule, projection);
        assert!(
            matches!(result, Err(SamplerError::OutOfRange { name: got, .. }) if got == name),
            "{name}"
        );
    }
    let guided = guide(
        two_samples(Prediction::Sample),
        &schedule,
        2.0,
        ProjectedGuidance::default(),
    );
    let three = Tensor::<B, 2>::zeros([3, 2], &Default::default());
    assert!(matches!(
        guided.denoise(three, 500.0),
        Err(SamplerError::LabelCount {
            labels: 2,
            batch: 3
        })
    ));
}

/// The mixture of [`mixture`] with every component's variance `variance` (the data's: 0.09):
/// wider, a model that has not learned the data's detail yet.
fn widened(variance: f64, prediction: Prediction) -> GaussianMixture {
    GaussianMixture::new(
        vec![0.5, 0.3, 0.2],
        vec![vec![-0.6, 0.0], vec![0.6, 0.2], vec![0.0, -0.7]],
        vec![variance; 3],
        schedule(),
    )
    .unwrap()
    .with_prediction(prediction)
}

/// A model of kind `prediction` that fails the test if it is called.
fn uncalled(prediction: Prediction) -> impl Denoiser<B, 2> {
    kiln_sampler::FnDenoiser::new(prediction, |_: Tensor<B, 2>, _| -> Tensor<B, 2> {
        panic!("a model that w = 0 leaves out was called")
    })
}

#[test]
fn autoguidance_combines_the_two_models_for_every_kind_and_label() {
    let x = points(4, 3);
    let labels = [Some(2), None, Some(0), Some(1)];
    for prediction in [Prediction::Epsilon, Prediction::Sample, Prediction::V] {
        let (model, guide) = (widened(0.12, prediction), widened(0.2, prediction));
        for t in [900.0, 400.0, 20.5] {
            let f = Denoiser::<B, 2>::denoise(&model, x.clone(), t).unwrap();
            let g = Denoiser::<B, 2>::denoise(&guide, x.clone(), t).unwrap();
            let guided = AutoGuided::new::<B, 2>(model.clone(), guide.clone(), 2.5).unwrap();
            let expected = g.clone() + (f.clone() - g.clone()).mul_scalar(2.5);
            let diff = max_abs_diff(guided.denoise(x.clone(), t).unwrap(), expected);
            assert!(diff < 1e-5, "{prediction:?} at t = {t}: {diff}");
            let alone = AutoGuided::new::<B, 2>(model.clone(), guide.clone(), 1.0).unwrap();
            assert_eq!(values(alone.denoise(x.clone(), t).unwrap()), values(f));
            let guide_alone = AutoGuided::new::<B, 2>(uncalled(prediction), guide.clone(), 0.0);
            let got = guide_alone.unwrap().denoise(x.clone(), t).unwrap();
            assert_eq!(values(got), values(g.clone()), "w = 0");
            let fl = model.denoise_labelled(x.clone(), t, &labels).unwrap();
            let gl = guide.denoise_labelled(x.clone(), t, &labels).unwrap();
            let expected = gl.clone() + (fl - gl).mul_scalar(2.5);
            let got = guided.denoise_labelled(x.clone(), t, &labels).unwrap();
            let diff = max_abs_diff(got, expected);
            assert!(diff < 1e-5, "{prediction:?} labelled at t = {t}: {diff}");
        }
    }
}

/// A model whose components have twice the data's variance (0.18 against 0.09), guided by one
/// with four times it, with w = 2: for one Gaussian component of variance v, the model's
/// denoiser shrinks x − μ by v/(v + σ²), and following the guided probability-flow ODE from
/// σ_max down to 0 ends at variance v_m^w / v_g^(w−1) = 0.18²/0.36 = 0.09, the data's. The
/// components overlap, so the mixture lands near it rather than on it, closer than the model
/// alone.
#[test]
fn a_too_wide_model_guided_by_a_wider_one_samples_closer_to_the_data() {
    let (data, model, guide) = (
        mixture(Prediction::Epsilon),
        widened(0.18, Prediction::Epsilon),
        widened(0.36, Prediction::Epsilon),
    );
    let count = 2000;
    let truth =
        values(data.sample_data::<B>(count, &mut StdRng::seed_from_u64(9), &Default::default()));
    let distance = |samples: Tensor<B, 2>| {
        let rng = &mut StdRng::seed_from_u64(10);
        sliced_wasserstein_2(&values(samples), &truth, 2, 64, rng).unwrap()
    };
    let alone = distance(dpm_samples(&model, count, 11));
    let guided = AutoGuided::new::<B, 2>(model.clone(), guide, 2.0).unwrap();
    let autoguided = distance(dpm_samples(&guided, count, 11));
    let floor =
        distance(data.sample_data::<B>(count, &mut StdRng::seed_from_u64(12), &Default::default()));
    assert!(
        autoguided < 0.6 * alone,
        "alone {alone}, autoguided {autoguided} (two exact draws: {floor})"
    );
}

#[test]
fn autoguidance_keeps_the_models_learned_variance_beside_the_guided_prediction() {
    // The model's rows (0, 1) and (1, 1), its guide's (1, 0) and (0, 2): f_g + 3 (f − f_g).
    let model = two_samples(Prediction::Sample);
    let guide = Table {
        prediction: Prediction::Sample,
        null_variance: 5.0,
        conditional: |_| vec![[0.0, 0.0]],
        unconditional: |_| vec![[1.0, 0.0], [0.0, 2.0]],
    };
    let guided = AutoGuided::new::<B, 2>(model, guide, 3.0).unwrap();
    let x = Tensor::<B, 2>::zeros([2, 2], &Default::default());
    assert_close(
        guided.denoise_with_variance(x.clone(), 500.0).unwrap(),
        &[-2.0, 3.0, 9.0, 9.0, 3.0, -1.0, 9.0, 9.0],
        "prediction, then the model's variance",
    );
    // Labelled: the model's class rows (1, 0) and (0, 2) against the guide's (0, 0).
    assert_close(
        guided
            .denoise_labelled_with_variance(x, 500.0, &[Some(0), Some(0)])
            .unwrap(),
        &[3.0, 0.0, 7.0, 7.0, 0.0, 6.0, 7.0, 7.0],
        "labelled",
    );
}

#[test]
fn autoguidance_refuses_a_bad_weight_another_output_kind_and_a_misshapen_output() {
    let model = widened(0.12, Prediction::Epsilon);
    let refused = AutoGuided::new::<B, 2>(model.clone(), model.clone(), -1.0);
    assert!(matches!(
        refused,
        Err(SamplerError::OutOfRange {
            name: "autoguidance scale",
            ..
        })
    ));
    let other = widened(0.2, Prediction::V);
    assert!(matches!(
        AutoGuided::new::<B, 2>(model.clone(), other, 2.0),
        Err(SamplerError::Incompatible {
            sampler: "autoguidance",
            ..
        })
    ));
    let wrong = kiln_sampler::FnDenoiser::new(Prediction::Epsilon, |x: Tensor<B, 2>, _| {
        Tensor::cat(vec![x.clone(), x], 1)
    });
    let guided = AutoGuided::new::<B, 2>(model, wrong, 2.0).unwrap();
    assert!(matches!(
        guided.denoise(points(3, 1), 500.0),
        Err(SamplerError::ShapeMismatch { .. })
    ));
}
