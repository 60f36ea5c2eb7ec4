//! Classifier-free guidance against the class-conditional Gaussian-mixture oracle: the limits
//! w = 0 and w = 1, the doubled-batch arithmetic, rescale and interval, guided samples landing
//! in their class's component, and bad settings as typed errors.

use burn::backend::Flex;
use burn::tensor::Tensor;
use kiln_forward::standard_normal;
use kiln_sampler::{
    ClassConditional, Denoiser, DpmSolver, DpmSolverConfig, GaussianMixture, GuidanceConfig,
    Guided, Prediction, SamplerError, sample,
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
