//! Every sampler by name over a schedule it must handle.

use burn::backend::Flex;
use burn::tensor::Tensor;
use kiln_forward::{Prediction, standard_normal};
use kiln_pipeline::{NamedRun, SamplerName, sample_by_name};
use kiln_sampler::FnDenoiser;
use kiln_schedule::{BetaSchedule, NoiseSchedule, TimestepSpacing};
use rand::{SeedableRng, rngs::StdRng};

type B = Flex;

/// A v-prediction model over a zero-terminal-SNR schedule, from t = 999 (ᾱ = 0) on `trailing`
/// grids and from each sampler's default grid: every sampler ends on finite values. The σ
/// samplers take σ ≈ 4096 for the infinite σ of t = 999, as diffusers does.
#[test]
fn every_sampler_samples_zero_terminal_snr_with_v_prediction() {
    let schedule = NoiseSchedule::new(&BetaSchedule::linear(), 1000)
        .and_then(|schedule| schedule.rescale_zero_terminal_snr())
        .unwrap();
    let model = FnDenoiser::new(Prediction::V, |x: Tensor<B, 2>, _| x.mul_scalar(0.1));
    let noise = standard_normal::<B, 2>([4, 2], &mut StdRng::seed_from_u64(1), &Default::default());
    for sampler in SamplerName::ALL {
        for spacing in [None, Some(TimestepSpacing::Trailing)] {
            let run = NamedRun {
                spacing,
                ..NamedRun::new(sampler, 10, false)
            };
            let mut rng = StdRng::seed_from_u64(2);
            let x = sample_by_name(run, &schedule, &model, noise.clone(), &mut rng, |_| {})
                .unwrap_or_else(|error| panic!("{sampler} ({spacing:?}): {error}"));
            let values: Vec<f32> = x.into_data().to_vec().unwrap();
            assert!(
                values.iter().all(|v| v.is_finite()),
                "{sampler} ({spacing:?}): {values:?}"
            );
        }
    }
}
