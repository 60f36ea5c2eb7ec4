use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use kiln_forward::Prediction;
use kiln_sampler::{Denoiser, SamplerError};

/// A model evaluated at its own timestep for each sample of a batch, as a training step needs
/// it (a UNet takes one timestep per image; a sampler's [`Denoiser`] one per batch, which
/// [`PerTimestep`] adapts).
pub trait Teacher<B: Backend, const D: usize> {
    /// The kind of output the model makes.
    fn prediction(&self) -> Prediction;

    /// The model's output for each sample of `sample` (x_t, batch first) at its timestep.
    fn predict(
        &self,
        sample: Tensor<B, D>,
        timesteps: &[f64],
    ) -> Result<Tensor<B, D>, SamplerError>;
}

/// A [`Denoiser`] as a [`Teacher`]: one call per distinct timestep of the batch.
#[derive(Debug, Clone)]
pub struct PerTimestep<M>(pub M);

impl<B: Backend, const D: usize, M: Denoiser<B, D>> Teacher<B, D> for PerTimestep<M> {
    fn prediction(&self) -> Prediction {
        self.0.prediction()
    }

    fn predict(
        &self,
        sample: Tensor<B, D>,
        timesteps: &[f64],
    ) -> Result<Tensor<B, D>, SamplerError> {
        let batch = timesteps.len();
        if batch != sample.dims()[0] {
            return Err(SamplerError::ShapeMismatch {
                what: "timesteps",
                expected: vec![sample.dims()[0]],
                found: vec![batch],
            });
        }
        if batch == 0 {
            return Err(SamplerError::OutOfRange {
                name: "batch",
                value: 0.0,
                expected: "at least one sample",
            });
        }
        if timesteps.iter().all(|&t| t == timesteps[0]) {
            return self.0.denoise(sample, timesteps[0]);
        }
        // Sort the batch by timestep, denoise each run of equal timesteps, and undo the sort.
        let mut order: Vec<usize> = (0..batch).collect();
        order.sort_by(|&a, &b| timesteps[a].total_cmp(&timesteps[b]));
        let device = sample.device();
        let rows = |indices: &[usize]| {
            let indices: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
            Tensor::<B, 1, Int>::from_data(TensorData::new(indices, [batch]), &device)
        };
        let sorted = sample.select(0, rows(&order));
        let mut outputs = Vec::new();
        let mut start = 0;
        while start < batch {
            let timestep = timesteps[order[start]];
            let end = (start..batch)
                .find(|&k| timesteps[order[k]] != timestep)
                .unwrap_or(batch);
            outputs.push(
                self.0
                    .denoise(sorted.clone().narrow(0, start, end - start), timestep)?,
            );
            start = end;
        }
        let mut inverse = vec![0; batch];
        for (position, &index) in order.iter().enumerate() {
            inverse[index] = position;
        }
        Ok(Tensor::cat(outputs, 0).select(0, rows(&inverse)))
    }
}
