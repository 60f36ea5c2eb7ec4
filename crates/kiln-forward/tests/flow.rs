//! Rectified flow's forward process, training densities and loss weights against their
//! closed forms (Esser et al. 2024, §3.1).

use std::f64::consts::PI;

use burn::backend::Flex;
use burn::tensor::Tensor;
use kiln_forward::{FlowProcess, FlowTimeDensity, FlowWeighting, ForwardError, standard_normal};
use rand::{RngExt, SeedableRng, rngs::StdRng};

type B = Flex;

fn values<const D: usize>(x: Tensor<B, D>) -> Vec<f32> {
    x.into_data().to_vec::<f32>().unwrap()
}

/// x_σ = (1 − σ) x_0 + σ ε per batch element: the data at σ = 0, the noise at σ = 1; the
/// target is ε − x_0, so x_σ − σ·u = x_0 at every σ.
#[test]
fn the_path_is_straight_from_data_to_noise() {
    let device = Default::default();
    let x0 = standard_normal::<B, 2>([3, 4], &mut StdRng::seed_from_u64(1), &device);
    let noise = standard_normal::<B, 2>([3, 4], &mut StdRng::seed_from_u64(2), &device);
    let sigmas = [0.0, 1.0, 0.3];
    let x = FlowProcess::q_sample(x0.clone(), &sigmas, noise.clone()).unwrap();
    let u = FlowProcess::velocity(x0.clone(), noise.clone()).unwrap();
    let (x, u, clean, eps) = (values(x), values(u), values(x0), values(noise));
    for (row, &sigma) in sigmas.iter().enumerate() {
        let sigma = sigma as f32;
        for col in 0..4 {
            let i = row * 4 + col;
            let want = (1.0 - sigma) * clean[i] + sigma * eps[i];
            assert!(
                (x[i] - want).abs() < 1e-6,
                "row {row}: {} against {want}",
                x[i]
            );
            assert!((u[i] - (eps[i] - clean[i])).abs() < 1e-6);
            assert!((x[i] - sigma * u[i] - clean[i]).abs() < 1e-5);
        }
    }
    assert_eq!(x[..4], clean[..4]);
    assert_eq!(x[4..8], eps[4..8]);
}

#[test]
fn bad_inputs_are_refused() {
    let device = Default::default();
    let x0 = Tensor::<B, 2>::zeros([2, 3], &device);
    let noise = Tensor::<B, 2>::zeros([2, 3], &device);
    assert!(matches!(
        FlowProcess::q_sample(x0.clone(), &[0.5], noise.clone()),
        Err(ForwardError::BatchMismatch {
            timesteps: 1,
            batch: 2
        })
    ));
    for sigma in [-0.1, 1.5, f64::NAN] {
        assert!(matches!(
            FlowProcess::q_sample(x0.clone(), &[0.5, sigma], noise.clone()),
            Err(ForwardError::OutOfRange { name: "sigma", .. })
        ));
    }
    let short = Tensor::<B, 2>::zeros([1, 3], &device);
    assert!(matches!(
        FlowProcess::velocity(x0, short),
        Err(ForwardError::ShapeMismatch { name: "noise", .. })
    ));
    assert!(matches!(
        FlowProcess::loss_weights::<B>(FlowWeighting::SigmaSqrt, &[0.5, 0.0], &device),
        Err(ForwardError::OutOfRange { name: "sigma", .. })
    ));
    // Weights of a σ outside [0, 1], or 1/σ² past f32's range.
    for (weighting, sigma) in [
        (FlowWeighting::Uniform, f64::NAN),
        (FlowWeighting::CosMap, 1.5),
        (FlowWeighting::SigmaSqrt, 1e-30),
    ] {
        assert!(
            matches!(
                weighting.weight(sigma),
                Err(ForwardError::OutOfRange { name: "sigma", .. })
            ),
            "{weighting:?} at {sigma}"
        );
    }
    for density in [
        FlowTimeDensity::LogitNormal {
            mean: 0.0,
            std: 0.0,
        },
        FlowTimeDensity::LogitNormal {
            mean: f64::INFINITY,
            std: 1.0,
        },
        FlowTimeDensity::Mode { scale: 1.8 },
        FlowTimeDensity::Mode { scale: -1.5 },
    ] {
        assert!(matches!(
            density.sample(4, &mut StdRng::seed_from_u64(0)),
            Err(ForwardError::OutOfRange { .. })
        ));
    }
}

/// The densities transform uniform (or normal) draws of the same generator exactly as SD3's
/// equations 19–21 say: mode with s = 0 and the cosine map send u to 1 − u and to
/// 1 − 1/(tan(πu/2) + 1); logit-normal draws are symmetric about ½ for mean 0 and move toward
/// noise for a positive mean.
#[test]
fn densities_follow_their_equations() {
    let draws =
        |density: FlowTimeDensity| density.sample(4000, &mut StdRng::seed_from_u64(5)).unwrap();
    let uniform: Vec<f64> = {
        let mut rng = StdRng::seed_from_u64(5);
        (0..4000).map(|_| rng.random::<f64>()).collect()
    };
    assert_eq!(draws(FlowTimeDensity::Uniform), uniform);
    for (t, u) in draws(FlowTimeDensity::Mode { scale: 0.0 })
        .iter()
        .zip(&uniform)
    {
        assert!((t - (1.0 - u)).abs() < 1e-15);
    }
    for (t, u) in draws(FlowTimeDensity::CosMap).iter().zip(&uniform) {
        assert!((t - (1.0 - 1.0 / ((PI * u / 2.0).tan() + 1.0))).abs() < 1e-12);
    }
    let mean = |t: &[f64]| t.iter().sum::<f64>() / t.len() as f64;
    let centred = draws(FlowTimeDensity::LogitNormal {
        mean: 0.0,
        std: 1.0,
    });
    assert!(centred.iter().all(|t| (0.0..=1.0).contains(t)));
    assert!((mean(&centred) - 0.5).abs() < 0.01, "{}", mean(&centred));
    let noisier = draws(FlowTimeDensity::LogitNormal {
        mean: 1.0,
        std: 1.0,
    });
    assert!(mean(&noisier) > 0.65, "{}", mean(&noisier));
    // Mode sampling with s > 0 favours the middle: fewer draws near the ends than uniform.
    let ends = |t: &[f64]| t.iter().filter(|&&t| !(0.1..0.9).contains(&t)).count();
    let mode = draws(FlowTimeDensity::Mode { scale: 1.29 });
    assert!(
        ends(&mode) < ends(&uniform) * 3 / 4,
        "{} and {}",
        ends(&mode),
        ends(&uniform)
    );
}

/// SD3's weights: 1/σ² and 2/(π(1 − 2σ + 2σ²)), one per batch element.
#[test]
fn loss_weights_are_sd3s() {
    let device = Default::default();
    let sigmas = [0.5, 0.25, 1.0];
    let weights =
        |weighting| values(FlowProcess::loss_weights::<B>(weighting, &sigmas, &device).unwrap());
    assert_eq!(weights(FlowWeighting::Uniform), [1.0; 3]);
    assert_eq!(weights(FlowWeighting::SigmaSqrt), [4.0, 16.0, 1.0]);
    let cosmap = weights(FlowWeighting::CosMap);
    for (got, sigma) in cosmap.iter().zip(sigmas) {
        let want = 2.0 / (PI * (1.0 - 2.0 * sigma + 2.0 * sigma * sigma));
        assert!((f64::from(*got) - want).abs() < 1e-6);
    }
    assert!((f64::from(cosmap[0]) - 4.0 / PI).abs() < 1e-6);
}
