//! The teacher's deterministic DDIM step, sample by sample: what both distillations make
//! their targets of.

use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_sampler::SamplerError;

use crate::batch::{check_input_shape, combine};
use crate::{DistillError, Teacher};

/// x̂ of `model`'s output at z = `noisy`, each sample at its timestep and ᾱ (`name` says
/// which model in an error).
pub(crate) fn clean_estimate<B: Backend, const D: usize, T: Teacher<B, D> + ?Sized>(
    name: &'static str,
    model: &T,
    noisy: Tensor<B, D>,
    timesteps: &[f64],
    alphas: &[f64],
) -> Result<Tensor<B, D>, DistillError> {
    let output = model.predict(noisy.clone(), timesteps)?;
    let [on_noisy, on_output] = conversion(name, model.prediction(), timesteps, alphas)?;
    Ok(combine(&noisy, &on_noisy, &output, &on_output))
}

/// Per sample, the coefficients (on z, on the output) of x̂ from a `prediction` at ᾱ.
pub(crate) fn conversion(
    model: &'static str,
    prediction: Prediction,
    timesteps: &[f64],
    alphas: &[f64],
) -> Result<[Vec<f64>; 2], SamplerError> {
    let mut on_noisy = Vec::with_capacity(alphas.len());
    let mut on_output = Vec::with_capacity(alphas.len());
    for (&alpha, &timestep) in alphas.iter().zip(timesteps) {
        let [a, b] = prediction.conversion_coefficients(Prediction::Sample, alpha);
        if !(a.is_finite() && b.is_finite()) {
            return Err(SamplerError::UnsupportedPrediction {
                sampler: model,
                prediction,
                timestep,
            });
        }
        on_noisy.push(a);
        on_output.push(b);
    }
    Ok([on_noisy, on_output])
}

/// The DDIM step (η = 0) from z at ᾱ = `from` to ᾱ = `to` with clean estimate x̂:
/// (s_to/s_from) z + (a_to − s_to a_from/s_from) x̂, per sample.
pub(crate) fn ddim_step<B: Backend, const D: usize>(
    noisy: &Tensor<B, D>,
    clean: &Tensor<B, D>,
    from: &[f64],
    to: &[f64],
) -> Tensor<B, D> {
    let (on_noisy, on_clean): (Vec<f64>, Vec<f64>) = from
        .iter()
        .zip(to)
        .map(|(&from, &to)| {
            let k = ((1.0 - to) / (1.0 - from)).sqrt();
            (k, to.sqrt() - k * from.sqrt())
        })
        .unzip();
    combine(noisy, &on_noisy, clean, &on_clean)
}

/// z = √ᾱ x_0 + √(1 − ᾱ) ε per sample (Ho et al. 2020, eq. 4), each at its ᾱ in `alphas`;
/// the noise must have the clean batch's shape (not one that broadcasts to it).
pub(crate) fn forward_jump<B: Backend, const D: usize>(
    clean: &Tensor<B, D>,
    noise: &Tensor<B, D>,
    alphas: &[f64],
) -> Result<Tensor<B, D>, DistillError> {
    check_input_shape("noise", clean, noise)?;
    let signal: Vec<f64> = alphas.iter().map(|a| a.sqrt()).collect();
    let noise_scale: Vec<f64> = alphas.iter().map(|a| (1.0 - a).sqrt()).collect();
    Ok(combine(clean, &signal, noise, &noise_scale))
}
