//! Editing with the Gaussian-mixture oracle: image-to-image at its limits, inpainting against
//! the mixture's exact conditional distribution (with and without resampling), slerp, and a
//! morph between two inverted points whose ends are the points themselves.

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use kiln_forward::standard_normal;
use kiln_sampler::{
    Ddim, DdimConfig, Ddpm, DdpmConfig, DpmSolver, DpmSolverConfig, DpmSolverSde,
    DpmSolverSdeConfig, Euler, EulerConfig, GaussianMixture, Heun, HeunConfig, InversionMethod,
    Pndm, PndmConfig, Resampling, SaSolver, SaSolverConfig, SampleClipping, Sampler, SamplerError,
    image_to_image, inpaint, invert, sample, slerp, sliced_wasserstein_2,
};
use kiln_schedule::{BetaSchedule, NoiseSchedule};
use rand::{SeedableRng, rngs::StdRng};

type B = Flex;

fn schedule() -> NoiseSchedule {
    NoiseSchedule::new(&BetaSchedule::linear(), 1000).unwrap()
}

fn values<const D: usize>(x: Tensor<B, D>) -> Vec<f32> {
    x.into_data().into_vec::<f32>().unwrap()
}

/// Two components in 4 dimensions, apart in every coordinate.
fn mixture() -> GaussianMixture {
    GaussianMixture::new(
        vec![0.5, 0.5],
        vec![vec![-0.6, -0.6, -0.6, -0.6], vec![0.6, 0.6, 0.6, 0.6]],
        vec![0.1, 0.1],
        schedule(),
    )
    .unwrap()
}

fn data(count: usize, seed: u64) -> Tensor<B, 2> {
    mixture().sample_data(count, &mut StdRng::seed_from_u64(seed), &Default::default())
}

/// Runs image-to-image with every kind of sampler at `strength`, returning each result, how
/// many model calls it took, and how many of the sampler's calls are below strength · T.
type Run = (&'static str, Tensor<B, 2>, usize, usize);

fn every_sampler(strength: f64, image: &Tensor<B, 2>) -> Vec<Run> {
    fn run<S: Sampler<B, 2>>(
        mut sampler: S,
        strength: f64,
        image: &Tensor<B, 2>,
    ) -> (Tensor<B, 2>, usize, usize) {
        let below = (sampler.timesteps().iter())
            .filter(|&&t| t < strength * 1000.0)
            .count();
        let mut steps = 0;
        let out = image_to_image(
            &mut sampler,
            &mixture(),
            &schedule(),
            image.clone(),
            strength,
            &mut StdRng::seed_from_u64(9),
            |_| steps += 1,
        )
        .unwrap();
        (out, steps, below)
    }
    let s = schedule();
    let mut results = Vec::new();
    let mut add = |name, (out, steps, below)| results.push((name, out, steps, below));
    add(
        "ddpm",
        run(
            Ddpm::new(DdpmConfig::default(), &s, 10).unwrap(),
            strength,
            image,
        ),
    );
    add(
        "ddim",
        run(
            Ddim::new(DdimConfig::default(), &s, 10).unwrap(),
            strength,
            image,
        ),
    );
    add(
        "pndm",
        run(
            Pndm::new(PndmConfig::default(), &s, 10).unwrap(),
            strength,
            image,
        ),
    );
    add(
        "euler",
        run(
            Euler::new(EulerConfig::default(), &s, 10).unwrap(),
            strength,
            image,
        ),
    );
    add(
        "heun",
        run(
            Heun::new(HeunConfig::default(), &s, 10).unwrap(),
            strength,
            image,
        ),
    );
    add(
        "dpm++ sde",
        run(
            DpmSolverSde::new(DpmSolverSdeConfig::default(), &s, 10).unwrap(),
            strength,
            image,
        ),
    );
    add(
        "sa-solver",
        run(
            SaSolver::new(SaSolverConfig::default(), &s, 10).unwrap(),
            strength,
            image,
        ),
    );
    add(
        "dpm++",
        run(
            DpmSolver::new(DpmSolverConfig::default(), &s, 10).unwrap(),
            strength,
            image,
        ),
    );
    results
}

#[test]
fn image_to_image_at_strength_zero_and_one() {
    let image = data(8, 1);
    for (name, out, steps, _) in every_sampler(0.0, &image) {
        assert_eq!(values(out), values(image.clone()), "{name}");
        assert_eq!(steps, 0, "{name}");
    }
    // Strength 1 is sampling from the noise drawn first from the same RNG.
    let noise = standard_normal::<B, 2>([8, 4], &mut StdRng::seed_from_u64(9), &image.device());
    let mut ddim = Ddim::new(DdimConfig::default(), &schedule(), 10).unwrap();
    let mut rng = StdRng::seed_from_u64(9);
    let _ = standard_normal::<B, 2>([8, 4], &mut rng, &image.device());
    let expected = sample(&mut ddim, &mixture(), noise, &mut rng, |_| {}).unwrap();
    let (_, out, steps, _) = every_sampler(1.0, &image)
        .into_iter()
        .find(|(name, ..)| *name == "ddim")
        .unwrap();
    assert_eq!(values(out), values(expected));
    assert_eq!(steps, 10);
}

#[test]
fn image_to_image_runs_the_last_steps_and_stays_near_the_image() {
    let image = data(64, 2);
    for (name, out, steps, below) in every_sampler(0.3, &image) {
        // The calls below t = 300 run; the first such call of Heun and DPM-Solver++ SDE is
        // the second of a step (Heun's corrector, the SDE solver's midpoint), so they start
        // one call later, at the next step's first.
        let expected = match name {
            "heun" | "dpm++ sde" => below - 1,
            _ => below,
        };
        assert_eq!(steps, expected, "{name}");
        assert!(steps >= 2, "{name}: {steps}");
        let moved = values(out.clone() - image.clone());
        let rms = (moved.iter().map(|v| v * v).sum::<f32>() / moved.len() as f32).sqrt();
        // Noised to t ≈ 270 (ᾱ ≈ 0.6), an exact denoiser returns a point of the same
        // component: closer than two independent draws (RMS ≈ 0.45 within, 1.0 across).
        assert!(rms < 0.6, "{name}: moved {rms}");
        println!("{name}: strength 0.3, {steps} steps, RMS change {rms:.3}");
    }
    let mut ddim = Ddim::new(DdimConfig::default(), &schedule(), 10).unwrap();
    let bad = image_to_image(
        &mut ddim,
        &mixture(),
        &schedule(),
        image,
        1.5,
        &mut StdRng::seed_from_u64(0),
        |_| {},
    );
    assert!(
        matches!(
            bad,
            Err(SamplerError::OutOfRange {
                name: "strength",
                ..
            })
        ),
        "{bad:?}"
    );
}

/// The exact conditional of the unknown coordinates (2, 3) given the known ones (0, 1) = `at`
/// of the mixture: components reweighted by how well they explain the known values.
fn exact_conditional(at: [f64; 2], count: usize, rng: &mut StdRng) -> Vec<f32> {
    let (mean, variance) = (0.6f64, 0.1f64);
    let log_weight = |sign: f64| -> f64 {
        -at.iter().map(|v| (v - sign * mean).powi(2)).sum::<f64>() / (2.0 * variance)
    };
    let (a, b) = (log_weight(-1.0), log_weight(1.0));
    let second = 1.0 / (1.0 + (a - b).exp());
    let mut points = Vec::with_capacity(count * 2);
    for _ in 0..count {
        let sign = if rand::RngExt::random::<f64>(rng) < second {
            1.0
        } else {
            -1.0
        };
        for _ in 0..2 {
            let z: f64 = rand_distr::Distribution::sample(&rand_distr::StandardNormal, rng);
            points.push((sign * mean + variance.sqrt() * z) as f32);
        }
    }
    points
}

#[test]
fn inpainting_keeps_the_known_region_and_resampling_fills_the_rest_better() {
    let count = 256;
    // Known coordinates between the components, leaning to the second one.
    let known = [0.25f32, 0.1];
    let image = Tensor::<B, 2>::from_data(
        TensorData::new(
            (0..count)
                .flat_map(|_| [known[0], known[1], 0.0, 0.0])
                .collect(),
            [count, 4],
        ),
        &Default::default(),
    );
    let mask = Tensor::<B, 2>::from_data(
        TensorData::new(
            (0..count).flat_map(|_| [1.0f32, 1.0, 0.0, 0.0]).collect(),
            [count, 4],
        ),
        &Default::default(),
    );
    let exact = exact_conditional(
        [known[0] as f64, known[1] as f64],
        count,
        &mut StdRng::seed_from_u64(3),
    );
    let mut errors = Vec::new();
    for resampling in [
        None,
        // RePaint's setting.
        Some(Resampling {
            jump_length: 10,
            repeats: 10,
        }),
        Some(Resampling {
            jump_length: 1,
            repeats: 10,
        }),
    ] {
        let mut ddpm = Ddpm::new(DdpmConfig::default(), &schedule(), 50).unwrap();
        let out = inpaint(
            &mut ddpm,
            &mixture(),
            &schedule(),
            image.clone(),
            mask.clone(),
            resampling,
            &mut StdRng::seed_from_u64(4),
            |_| {},
        )
        .unwrap();
        let out = values(out);
        for row in out.chunks(4) {
            assert_eq!(
                [row[0], row[1]],
                known,
                "the known region is the input exactly"
            );
        }
        let filled: Vec<f32> = out.chunks(4).flat_map(|row| [row[2], row[3]]).collect();
        let error =
            sliced_wasserstein_2(&filled, &exact, 2, 64, &mut StdRng::seed_from_u64(5)).unwrap();
        println!(
            "inpainting, resampling {resampling:?}: sliced W2 to the exact conditional {error:.3}"
        );
        errors.push(error);
    }
    let again = exact_conditional(
        [known[0] as f64, known[1] as f64],
        count,
        &mut StdRng::seed_from_u64(6),
    );
    let floor = sliced_wasserstein_2(&again, &exact, 2, 64, &mut StdRng::seed_from_u64(5)).unwrap();
    println!("two exact draws of {count}: sliced W2 {floor:.3}");
    assert!(
        errors[1] < errors[0] && errors[2] < errors[1],
        "resampling should help: {errors:?}"
    );

    let mut ddpm = Ddpm::new(DdpmConfig::default(), &schedule(), 10).unwrap();
    let small_mask = Tensor::<B, 2>::ones([count, 3], &Default::default());
    let bad = inpaint(
        &mut ddpm,
        &mixture(),
        &schedule(),
        image,
        small_mask,
        None,
        &mut StdRng::seed_from_u64(0),
        |_| {},
    );
    assert_eq!(
        bad.err(),
        Some(SamplerError::ShapeMismatch {
            what: "mask",
            expected: vec![count, 4],
            found: vec![count, 3]
        })
    );
}

#[test]
fn slerp_keeps_its_ends_and_the_norm_between_them() {
    let device = Default::default();
    let a = Tensor::<B, 2>::from_data(TensorData::new(vec![3.0f32, 0.0], [1, 2]), &device);
    let b = Tensor::<B, 2>::from_data(TensorData::new(vec![0.0f32, 3.0], [1, 2]), &device);
    assert_eq!(
        values(slerp(a.clone(), b.clone(), 0.0).unwrap()),
        [3.0, 0.0]
    );
    assert_eq!(
        values(slerp(a.clone(), b.clone(), 1.0).unwrap()),
        [0.0, 3.0]
    );
    let middle = values(slerp(a.clone(), b.clone(), 0.5).unwrap());
    let half = 3.0 / 2f32.sqrt();
    assert!(
        (middle[0] - half).abs() < 1e-5 && (middle[1] - half).abs() < 1e-5,
        "{middle:?}"
    );
    assert!(matches!(
        slerp(a.clone(), Tensor::<B, 2>::ones([1, 3], &device), 0.5),
        Err(SamplerError::ShapeMismatch { .. })
    ));
    assert!(matches!(
        slerp(a, b, -0.1),
        Err(SamplerError::OutOfRange { name: "weight", .. })
    ));
}

#[test]
fn a_morph_between_two_inverted_points_ends_at_the_points() {
    let points = data(2, 6);
    let oracle = mixture();
    let config = DdimConfig {
        clipping: SampleClipping::thresholding_only(None),
        ..DdimConfig::default()
    };
    let mut ddim = Ddim::new(config, &schedule(), 100).unwrap();
    let method = InversionMethod::Exact { iterations: 5 };
    let noise = invert(&ddim, &oracle, points.clone(), method, |_| {}).unwrap();
    let (first, second) = (noise.clone().narrow(0, 0, 1), noise.narrow(0, 1, 1));
    let mut frames = Vec::new();
    for k in 0..5 {
        let x_t = slerp(first.clone(), second.clone(), k as f64 / 4.0).unwrap();
        let frame = sample(
            &mut ddim,
            &oracle,
            x_t,
            &mut StdRng::seed_from_u64(0),
            |_| {},
        )
        .unwrap();
        frames.push(values(frame));
    }
    let all = values(points);
    let rms = |a: &[f32], b: &[f32]| {
        (a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f32>() / a.len() as f32).sqrt()
    };
    assert!(rms(&frames[0], &all[..4]) < 1e-4, "first end");
    assert!(rms(&frames[4], &all[4..]) < 1e-4, "second end");
    // Every frame is a point of the data: near one component's mean (RMS ≈ 0.32 within).
    for frame in &frames {
        let nearest = [-0.6f32, 0.6]
            .map(|m| rms(frame, &[m; 4]))
            .into_iter()
            .fold(f32::MAX, f32::min);
        assert!(nearest < 0.8, "{frame:?}");
    }
}
