//! A model ready to sample from, with what a sampler needs to know about its training.

use burn::tensor::{Tensor, backend::Backend};
use kiln_forward::Prediction;
use kiln_sampler::{AutoGuided, SamplerError, StepEvent};
use kiln_schedule::NoiseSchedule;
use kiln_unet::{UNet, UNetConfig};

use crate::generate::{generate_with, image_shape};
use crate::{Condition, Generation, PipelineError, UNetDenoiser, generate};

/// A model ready to generate with ([`crate::load_for_sampling`] makes one), and what a
/// sampler needs to know about its training. Editing real images: see [`crate::edit`].
#[derive(Debug)]
pub struct SamplingModel<B: Backend> {
    /// The weights (a run's EMA weights).
    pub model: UNet<B>,
    /// Its architecture.
    pub config: UNetConfig,
    /// What it predicts.
    pub prediction: Prediction,
    /// The noise schedule it was trained with.
    pub schedule: NoiseSchedule,
    /// The image size it was trained at, where known.
    pub image_size: Option<usize>,
    /// The names of its classes in label order (a class-conditional run's folder names, or
    /// the label numbers where the model has classes but no names); empty for an
    /// unconditional model.
    pub class_names: Vec<String>,
}

impl<B: Backend> SamplingModel<B> {
    /// `model` predicting `prediction` over `schedule`, with `class_names` if given, else its
    /// label numbers.
    pub fn new(
        model: UNet<B>,
        config: UNetConfig,
        prediction: Prediction,
        schedule: NoiseSchedule,
        image_size: Option<usize>,
        class_names: Option<Vec<String>>,
    ) -> Self {
        let class_names = class_names.unwrap_or_else(|| {
            (0..model.null_label().unwrap_or(0))
                .map(|label| label.to_string())
                .collect()
        });
        Self {
            model,
            config,
            prediction,
            schedule,
            image_size,
            class_names,
        }
    }

    /// [`generate`] with this model, what it predicts and its schedule.
    pub fn generate(
        &self,
        generation: Generation,
        device: &B::Device,
        on_step: impl FnMut(StepEvent<'_, B, 4>),
    ) -> Result<Tensor<B, 4>, PipelineError> {
        generate(
            &self.model,
            self.prediction,
            &self.schedule,
            generation,
            device,
            on_step,
        )
    }

    /// [`Self::generate`] with the model guided by `guide`, a weaker version of it (smaller,
    /// or trained for less long, on the same data, schedule and prediction type), with weight
    /// `scale`: autoguidance ([`AutoGuided`]; 1 is the model alone, 0 the guide alone). Each
    /// step at any other weight runs both models.
    ///
    /// A guide trained on another schedule, for another number of channels, predicting
    /// another kind of output or, for class-conditional generation, with other classes is a
    /// [`SamplerError::Incompatible`]; the rest is checked as [`Self::generate`] checks it.
    pub fn generate_autoguided(
        &self,
        guide: &SamplingModel<B>,
        scale: f64,
        generation: Generation,
        device: &B::Device,
        on_step: impl FnMut(StepEvent<'_, B, 4>),
    ) -> Result<Tensor<B, 4>, PipelineError> {
        let incompatible = |reason| {
            Err(SamplerError::Incompatible {
                sampler: "autoguidance",
                reason,
            }
            .into())
        };
        if guide.schedule.alphas_cumprod() != self.schedule.alphas_cumprod() {
            return incompatible("the guiding model was trained on another noise schedule");
        }
        if guide.model.in_channels() != self.model.in_channels() {
            return incompatible("the guiding model takes images of another number of channels");
        }
        let classes = matches!(generation.condition, Condition::Classes { .. });
        if classes && guide.class_names != self.class_names {
            return incompatible("the guiding model was trained on other classes");
        }
        let shape = image_shape(&self.model, &generation)?;
        guide.model.check_shape(shape)?;
        let guided = AutoGuided::new(self.denoiser(), guide.denoiser(), scale)?;
        generate_with(guided, &self.schedule, shape, generation, device, on_step)
    }

    /// The model as a sampler sees it.
    pub fn denoiser(&self) -> UNetDenoiser<'_, B> {
        UNetDenoiser::new(&self.model, self.prediction)
    }

    /// The label of the class `name`: one of [`Self::class_names`], or a label number.
    pub fn class_label(&self, name: &str) -> Result<usize, PipelineError> {
        if self.class_names.is_empty() {
            return Err(SamplerError::Unconditional.into());
        }
        let count = self.class_names.len();
        let by_number = name.parse::<usize>().ok().filter(|&label| label < count);
        self.class_names
            .iter()
            .position(|known| known == name)
            .or(by_number)
            .ok_or_else(|| PipelineError::UnknownClass {
                name: name.to_string(),
                classes: count,
                example: self.class_names[0].clone(),
            })
    }
}
