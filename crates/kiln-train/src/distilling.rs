//! A distillation's loss in a training step, with UNets as the distillations' models.

use burn::module::AutodiffModule;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Int, Tensor, TensorData};
use kiln_distill::{ConsistencyDistillation, DistillError, ProgressiveDistillation, Teacher};
use kiln_forward::Prediction;
use kiln_pipeline::SamplingModel;
use kiln_sampler::{ModelError, SamplerError};
use kiln_unet::UNet;
use rand::{Rng, RngExt};

use crate::TrainError;

/// What a [`crate::Distillation`] run trains its student with. Methods may be added, so
/// matches on it need a `_` arm.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Distiller {
    /// One round of progressive distillation: two teacher DDIM steps in one.
    Progressive(ProgressiveDistillation),
    /// Consistency distillation: the teacher's DDIM map down its grid in one evaluation.
    Consistency(ConsistencyDistillation),
    /// Trajectory consistency distillation: the same pairs, each answer a jump to a point of
    /// the trajectory drawn below them (from [`ConsistencyDistillation::landings_below`]).
    Trajectory(ConsistencyDistillation),
}

impl Distiller {
    /// The timesteps the student is trained at, noisiest first: the student's grid of a
    /// progressive round, the teacher's grid of a consistency distillation.
    pub fn student_timesteps(&self) -> Vec<f64> {
        match self {
            Self::Progressive(round) => round.student_timesteps(),
            Self::Consistency(distillation) | Self::Trajectory(distillation) => {
                distillation.timesteps().to_vec()
            }
        }
    }

    /// For trajectory consistency distillation, a landing for each of `timesteps` (grid
    /// timesteps), drawn uniformly from those below it ([`ConsistencyDistillation::landings_below`]);
    /// nothing for the other methods.
    pub(crate) fn draw_landings(
        &self,
        timesteps: &[usize],
        rng: &mut impl Rng,
    ) -> Result<Vec<f64>, DistillError> {
        let Self::Trajectory(distillation) = self else {
            return Ok(Vec::new());
        };
        timesteps
            .iter()
            .map(|&t| {
                let below = distillation.landings_below(distillation.index_of(t as f64)?)?;
                Ok(below[rng.random_range(0..below.len())])
            })
            .collect()
    }

    /// The loss of a shard of images `clean` noised with `noise` to their `timesteps` (each
    /// one of [`Self::student_timesteps`]; for trajectory consistency, landing at `landings`):
    /// the distillation's, between the `student`'s answers and targets from the `teacher`
    /// (and, for both consistency methods, from the student's weights without gradient). Averaged over the
    /// shard.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn loss<B: AutodiffBackend>(
        &self,
        student: &UNet<B>,
        prediction: Prediction,
        teacher: &SamplingModel<B::InnerBackend>,
        clean: Tensor<B, 4>,
        noise: Tensor<B, 4>,
        timesteps: &[usize],
        landings: &[f64],
        labels: Option<Tensor<B, 1, Int>>,
    ) -> Result<Tensor<B, 1>, TrainError> {
        let timesteps: Vec<f64> = timesteps.iter().map(|&t| t as f64).collect();
        let inner_labels = labels.clone().map(Tensor::inner);
        let teacher = UNetModel {
            model: &teacher.model,
            prediction: teacher.prediction,
            labels: inner_labels.clone(),
        };
        let student = UNetModel {
            model: student,
            prediction,
            labels,
        };
        let loss = match self {
            Self::Progressive(round) => {
                let indices = indices_of(&timesteps, |t| round.student_index(t))?;
                let noisy = round.noisy(clean, noise, &indices)?;
                let target = round.target(&teacher, noisy.clone().inner(), &indices)?;
                let output = student
                    .predict(noisy.clone(), &timesteps)
                    .map_err(DistillError::from)?;
                round.loss(
                    output,
                    prediction,
                    noisy,
                    Tensor::from_inner(target),
                    &indices,
                )?
            }
            Self::Consistency(distillation) | Self::Trajectory(distillation) => {
                let indices = indices_of(&timesteps, |t| distillation.index_of(t))?;
                let noisy = distillation.noisy(clean, noise, &indices)?;
                let previous =
                    distillation.teacher_step(&teacher, noisy.clone().inner(), &indices)?;
                let frozen = student.model.valid();
                let target_network = UNetModel {
                    model: &frozen,
                    prediction,
                    labels: inner_labels,
                };
                let below = distillation.previous_timesteps_of(&indices)?;
                if let Self::Trajectory(_) = self {
                    let targets = distillation.trajectory(
                        "the target",
                        &target_network,
                        previous,
                        &below,
                        landings,
                    )?;
                    let answers = distillation.trajectory(
                        "the student",
                        &student,
                        noisy,
                        &timesteps,
                        landings,
                    )?;
                    distillation.trajectory_loss(answers, Tensor::from_inner(targets))?
                } else {
                    let targets = distillation.consistency(
                        "the target",
                        &target_network,
                        previous,
                        &below,
                    )?;
                    let answers =
                        distillation.consistency("the student", &student, noisy, &timesteps)?;
                    distillation.loss(answers, Tensor::from_inner(targets), &indices)?
                }
            }
        };
        Ok(loss)
    }
}

/// The grid index of each of `timesteps`.
fn indices_of(
    timesteps: &[f64],
    index_of: impl Fn(f64) -> Result<usize, DistillError>,
) -> Result<Vec<usize>, DistillError> {
    timesteps.iter().map(|&t| index_of(t)).collect()
}

/// A UNet as a distillation's model (teacher, student or target), with the labels of the
/// images it answers for.
struct UNetModel<'a, B: Backend> {
    model: &'a UNet<B>,
    prediction: Prediction,
    labels: Option<Tensor<B, 1, Int>>,
}

impl<B: Backend> Teacher<B, 4> for UNetModel<'_, B> {
    fn prediction(&self) -> Prediction {
        self.prediction
    }

    fn predict(
        &self,
        sample: Tensor<B, 4>,
        timesteps: &[f64],
    ) -> Result<Tensor<B, 4>, SamplerError> {
        let t = Tensor::<B, 1>::from_data(
            TensorData::new(
                timesteps.iter().map(|&t| t as f32).collect(),
                [timesteps.len()],
            ),
            &sample.device(),
        );
        self.model
            .forward(sample, t, self.labels.clone())
            .map_err(|error| SamplerError::Model(ModelError::new(error)))
    }
}
