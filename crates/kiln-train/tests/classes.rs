//! Class-conditional training and sampling: labels from folders, label dropout deciding which
//! class embeddings learn, class names kept with the run and asked for by name, guidance of a
//! UNet in one doubled call, and bad requests as typed errors.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use image::{DynamicImage, ImageBuffer, Luma};
use kiln_pipeline::{Condition, Generation, PipelineError, SamplerName, load_for_sampling};
use kiln_sampler::{GuidanceConfig, SamplerError};
use kiln_train::{
    ClassConditioning, DatasetError, ImageFolder, ImageFolderOptions, Labels, RunOptions,
    TrainConfig, TrainError, train,
};
use kiln_unet::{UNet, UNetConfig};

type B = Autodiff<Flex>;

mod common;

/// A fresh scratch folder for this target's test `name`.
fn scratch(name: &str) -> PathBuf {
    common::scratch("classes", name)
}

fn options(labels: Labels) -> ImageFolderOptions {
    ImageFolderOptions {
        image_size: 16,
        channels: 1,
        strict: true,
        labels,
    }
}

/// Writes `count` 16×16 images of brightness `level` into `folder`.
fn write_images(folder: &Path, count: usize, level: u8) {
    fs::create_dir_all(folder).unwrap();
    for i in 0..count {
        let image = ImageBuffer::from_fn(16, 16, |x, _| Luma([level.saturating_add(x as u8)]));
        DynamicImage::from(image)
            .save(folder.join(format!("{i}.png")))
            .unwrap();
    }
}

#[test]
fn labels_come_from_the_folders_in_natural_order() {
    let faces = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/faces");
    let data = ImageFolder::load(&faces, options(Labels::Folders), |_| {}).unwrap();
    let expected: Vec<String> = (1..=40).map(|i| format!("s{i}")).collect();
    assert_eq!(data.class_names(), expected.as_slice());
    assert_eq!(data.len(), 400);
    let labels = data.labels().unwrap();
    for class in 0..40 {
        assert_eq!(labels.iter().filter(|&&l| l == class).count(), 10);
    }

    let root = scratch("folders");
    write_images(&root.join("b10"), 2, 40);
    write_images(&root.join("b2"), 3, 80);
    write_images(&root.join("a"), 1, 120);
    let data = ImageFolder::load(&root, options(Labels::Folders), |_| {}).unwrap();
    assert_eq!(data.class_names(), ["a", "b2", "b10"]);
    // Images are in path order: a/0, b10/0, b10/1, b2/0, b2/1, b2/2.
    assert_eq!(data.labels(), Some(&[0, 2, 2, 1, 1, 1][..]));
    assert_eq!(
        data.labels_of(&[0, 1, 2, 3, 5]).unwrap(),
        Some(vec![0, 2, 2, 1, 1])
    );
    let unlabelled = ImageFolder::load(&root, options(Labels::None), |_| {}).unwrap();
    assert_eq!(unlabelled.labels_of(&[0]).unwrap(), None);
    assert_eq!(unlabelled.labels(), None);

    // A subset keeps its images' labels and every class; without labels it has none.
    let device = Default::default();
    let subset = data.subset(&[5, 0]).unwrap();
    assert_eq!(subset.len(), 2);
    assert_eq!(subset.class_names(), ["a", "b2", "b10"]);
    assert_eq!(subset.labels(), Some(&[1, 0][..]));
    let pixels = |data: &ImageFolder, indices: &[usize]| {
        data.batch::<Flex>(indices, &[false; 2], &device)
            .unwrap()
            .into_data()
            .to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(pixels(&subset, &[0, 1]), pixels(&data, &[5, 0]));
    let plain = subset.without_labels();
    assert_eq!((plain.labels(), plain.class_names().len()), (None, 0));

    write_images(&root, 1, 10);
    match ImageFolder::load(&root, options(Labels::Folders), |_| {}) {
        Err(DatasetError::Unlabelled(path)) => assert_eq!(path, root.join("0.png")),
        other => panic!("expected Unlabelled, got {other:?}"),
    }
}

/// Two classes of 8 images each, dark and bright, written for test `name` alone (tests run
/// at once, and one rewriting another's files makes it read a half-written image).
fn two_classes(name: &str) -> ImageFolder {
    let root = scratch(&format!("two-classes-{name}"));
    write_images(&root.join("dark"), 8, 20);
    write_images(&root.join("bright"), 8, 200);
    ImageFolder::load(&root, options(Labels::Folders), |_| {}).unwrap()
}

fn conditional_config(label_dropout: f64) -> TrainConfig {
    let names = vec!["bright".to_string(), "dark".to_string()];
    TrainConfig::new(UNetConfig::tiny(1).with_num_class_embeds(Some(3)), 16)
        .with_classes(Some(
            ClassConditioning::new(names).with_label_dropout(label_dropout),
        ))
        .with_epochs(1)
        .with_batch_size(8)
        .with_warmup_steps(1)
        .with_sample_count(2)
        .with_sample_steps(2)
        .with_seed(5)
}

fn train_into(config: &TrainConfig, data: &ImageFolder, out: &Path) -> Result<(), TrainError> {
    let _turn = common::my_turn();
    let stop = AtomicBool::new(false);
    let options = RunOptions::new(out, false, &stop);
    train::<B>(config, data, &[Default::default()], options, |_| {}).map(|_| ())
}

/// The class-embedding rows of a trained run's EMA weights, and of its initial weights.
fn embedding_rows(config: &TrainConfig, out: &Path) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
    let rows = |model: &UNet<Flex>| {
        let table = model.class_embedding.as_ref().unwrap().weight.val();
        let [count, width] = table.dims();
        let values: Vec<f32> = table.into_data().into_vec().unwrap();
        (0..count)
            .map(|row| values[row * width..][..width].to_vec())
            .collect::<Vec<_>>()
    };
    let device = Default::default();
    let trained = load_for_sampling::<Flex>(out, &device).unwrap();
    let _turn = common::my_turn();
    Flex::seed(&device, config.seed);
    let initial = config.unet.init::<Flex>(&device).unwrap();
    (rows(&trained.model), rows(&initial))
}

#[test]
fn label_dropout_decides_which_class_embeddings_learn() {
    let data = two_classes("dropout");
    // Without dropout the null label is never trained; with dropout 1 only the null label is.
    for (dropout, learning) in [(0.0, [true, true, false]), (1.0, [false, false, true])] {
        let config = conditional_config(dropout);
        let out = scratch(&format!("dropout-{dropout}"));
        train_into(&config, &data, &out).unwrap();
        let (trained, initial) = embedding_rows(&config, &out);
        for (row, learns) in learning.iter().enumerate() {
            // The EMA mixes a row that did not learn with itself: equal up to rounding.
            let moved = trained[row]
                .iter()
                .zip(&initial[row])
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            println!("label dropout {dropout}: class-embedding row {row} moved {moved:.1e}");
            assert_eq!(
                moved > 1e-5,
                *learns,
                "label dropout {dropout}: row {row} moved by {moved:e}"
            );
        }
    }
}

#[test]
fn a_run_keeps_its_class_names_and_samples_a_class_by_name() {
    let data = two_classes("names");
    let config = conditional_config(0.1);
    let out = scratch("names");
    train_into(&config, &data, &out).unwrap();
    let device = Default::default();
    let loaded = load_for_sampling::<Flex>(&out, &device).unwrap();
    assert_eq!(loaded.class_names, ["bright", "dark"]);
    assert_eq!(loaded.class_label("dark").unwrap(), 1);
    assert_eq!(loaded.class_label("0").unwrap(), 0);
    let unknown = loaded.class_label("grey").unwrap_err();
    assert!(
        matches!(&unknown, PipelineError::UnknownClass { name, classes: 2, .. } if name == "grey"),
        "{unknown}"
    );
    assert!(unknown.to_string().contains("\"bright\""), "{unknown}");

    let generation = |labels: Vec<usize>, count| Generation {
        seed: 2,
        condition: Condition::Classes {
            labels,
            guidance: GuidanceConfig::new(3.0),
            projection: None,
        },
        ..Generation::new(SamplerName::Ddim, 3, count, 16)
    };
    let sample = |generation| loaded.generate(generation, &device, |_| {});
    let images = sample(generation(vec![1, 0], 2)).unwrap();
    assert_eq!(images.dims(), [2, 1, 16, 16]);
    assert!(matches!(
        sample(generation(vec![1], 2)),
        Err(PipelineError::Sampler(SamplerError::LabelCount {
            labels: 1,
            batch: 2
        }))
    ));
    assert!(matches!(
        sample(generation(vec![2], 1)),
        Err(PipelineError::Sampler(SamplerError::ClassOutOfRange {
            class: 2,
            classes: 2
        }))
    ));
}

#[test]
fn class_settings_that_do_not_fit_are_named() {
    let mut no_null = conditional_config(0.1);
    no_null.unet = UNetConfig::tiny(1).with_num_class_embeds(Some(2));
    let error = no_null.validate().unwrap_err().to_string();
    assert!(error.starts_with("unet.num_class_embeds"), "{error}");
    let error = conditional_config(1.5).validate().unwrap_err().to_string();
    assert!(error.starts_with("classes.label_dropout"), "{error}");
    let unnamed = TrainConfig::new(UNetConfig::tiny(1).with_num_class_embeds(Some(3)), 16);
    let error = unnamed.validate().unwrap_err().to_string();
    assert!(error.contains("no classes"), "{error}");
    // An empty class list (with only the null label) is refused, not sliced into at training.
    let mut empty = conditional_config(0.1).with_classes(Some(ClassConditioning::new(vec![])));
    empty.unet = UNetConfig::tiny(1).with_num_class_embeds(Some(1));
    let error = empty.validate().unwrap_err().to_string();
    assert!(error.starts_with("classes.names"), "{error}");

    // A dataset without images is refused before training starts.
    let data = two_classes("empty");
    let error = train_into(
        &conditional_config(0.1),
        &data.subset(&[]).unwrap(),
        &scratch("empty"),
    );
    assert!(
        matches!(&error, Err(TrainError::Config { field, .. }) if field == "data"),
        "{error:?}"
    );

    // The run's classes must be the data's.
    let other = conditional_config(0.1).with_classes(Some(ClassConditioning::new(vec![
        "bright".into(),
        "grey".into(),
    ])));
    let error = train_into(&other, &two_classes("mismatch"), &scratch("mismatch")).unwrap_err();
    assert!(
        matches!(&error, TrainError::Config { field, .. } if field == "classes"),
        "{error}"
    );
}
