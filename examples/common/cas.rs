//! The classification accuracy score of faces drawn for the bundled people.

use std::error::Error;

use burn::backend::Autodiff;
use burn::tensor::{Tensor, backend::Backend};
use kiln::metrics::{
    FACE_ENCODER_INPUT, FACE_ENCODER_PEOPLE, FaceTraining, IdentitySplit,
    classification_accuracy_score,
};
use kiln::train::{ImageFolder, ImageFolderOptions, Labels};

use crate::bundled::BUNDLED_FACES;
use crate::scorer::in_unit_range;

/// Photos of each bundled person held out of training (the face encoder's and CAS's test set).
const HELD_OUT_PER_PERSON: usize = 2;

/// The classification accuracy score of `batches` (in [−1, 1]) drawn for `people` (one batch
/// per person): a face encoder trained on them by the bundled encoder's recipe, tested on the
/// held-out photos of those of them who are bundled people; with the number of test photos.
/// `None` when none of them is.
pub fn classification_accuracy<B: Backend>(
    batches: &[Tensor<B, 4>],
    people: &[&str],
    device: &B::Device,
) -> Result<Option<(f64, usize)>, Box<dyn Error>> {
    let identity = |person: &str| FACE_ENCODER_PEOPLE.iter().position(|&p| p == person);
    let mut samples = Vec::new();
    let mut sample_identities = Vec::new();
    for (batch, person) in batches.iter().zip(people) {
        if let Some(identity) = identity(person) {
            sample_identities.extend(std::iter::repeat_n(identity, batch.dims()[0]));
            samples.push(in_unit_range(batch.clone()));
        }
    }
    if samples.is_empty() {
        return Ok(None);
    }
    let options = ImageFolderOptions {
        image_size: FACE_ENCODER_INPUT as u32,
        channels: 1,
        strict: true,
        labels: Labels::Folders,
    };
    let faces = ImageFolder::load(BUNDLED_FACES.as_ref(), options, |_| {})?;
    let labels = faces.labels().ok_or("the bundled faces have no folders")?;
    let test: Vec<usize> = IdentitySplit::new(labels, HELD_OUT_PER_PERSON)
        .held_out
        .into_iter()
        .filter(|&i| sample_identities.contains(&labels[i]))
        .collect();
    let real = in_unit_range(faces.batch::<B>(&test, &vec![false; test.len()], device)?);
    let real_identities: Vec<usize> = test.iter().map(|&i| labels[i]).collect();
    let score = classification_accuracy_score::<Autodiff<B>>(
        Tensor::from_inner(Tensor::cat(samples, 0)),
        &sample_identities,
        real,
        &real_identities,
        &FaceTraining::default(),
    )?;
    Ok(Some((score, test.len())))
}
