//! Numerical parity with diffusers' `UNet2DModel`: `fixtures/make_parity.py` saved two small
//! random-weight models (scale-shift time conditioning; additive with class labels, both with
//! multi-head attention at every level), their inputs and diffusers' outputs. Kiln loads each
//! folder and must match the outputs to 1e-4 max abs error in f32; saved back as a diffusers
//! folder, each must be diffusers' own files again: every tensor under its name with the same
//! bytes, and the same architecture in `config.json`.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::tensor::{Int, Tensor, TensorData};
use kiln_unet::{UNetError, load_diffusers, save_diffusers};
use safetensors::SafeTensors;
use serde_json::Value;

type B = Flex;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A float32 tensor of io.safetensors as (values, shape).
fn read(tensors: &SafeTensors, name: &str) -> (Vec<f32>, Vec<usize>) {
    let view = tensors.tensor(name).unwrap();
    let values = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    (values, view.shape().to_vec())
}

fn max_error_against_diffusers(name: &str) -> f32 {
    max_error_of(&fixture(name), name)
}

/// The max abs error of the diffusers folder `folder` on fixture `name`'s inputs.
fn max_error_of(folder: &Path, name: &str) -> f32 {
    let device = Default::default();
    let (config, model) = load_diffusers::<B>(folder, &device).unwrap();
    let bytes = std::fs::read(fixture(name).join("io.safetensors")).unwrap();
    let io = SafeTensors::deserialize(&bytes).unwrap();
    let (sample, shape) = read(&io, "sample");
    let sample = Tensor::<B, 4>::from_data(TensorData::new(sample, shape), &device);
    let (timestep, _) = read(&io, "timestep");
    let timestep = Tensor::<B, 1>::from_floats(timestep.as_slice(), &device);
    let labels = config.num_class_embeds.map(|_| {
        let (labels, _) = read(&io, "class_labels");
        let labels: Vec<i64> = labels.iter().map(|&l| l as i64).collect();
        Tensor::<B, 1, Int>::from_ints(labels.as_slice(), &device)
    });
    let (expected, shape) = read(&io, "output");
    let expected = Tensor::<B, 4>::from_data(TensorData::new(expected, shape), &device);
    let output = model.forward(sample, timestep, labels).unwrap();
    let error = (output - expected).abs().max().into_scalar();
    println!("{}: max abs error {error:e}", folder.display());
    error
}

#[test]
fn scale_shift_model_matches_diffusers() {
    let error = max_error_against_diffusers("unet_scale_shift");
    assert!(error < 1e-4, "max abs error {error}");
}

#[test]
fn class_conditional_model_matches_diffusers() {
    let error = max_error_against_diffusers("unet_classes");
    assert!(error < 1e-4, "max abs error {error}");
}

#[test]
fn a_saved_model_is_diffusers_own_files_again() {
    for name in ["unet_scale_shift", "unet_classes"] {
        let original = fixture(name);
        let saved =
            std::env::temp_dir().join(format!("kiln-unet-saved-{name}-{}", std::process::id()));
        let (config, model) = load_diffusers::<B>(&original, &Default::default()).unwrap();
        save_diffusers(&model, &config, Some(16), &saved).unwrap();

        let file = |folder: &Path| {
            std::fs::read(folder.join("diffusion_pytorch_model.safetensors")).unwrap()
        };
        let (theirs, ours) = (file(&original), file(&saved));
        let (theirs, ours) = (
            SafeTensors::deserialize(&theirs).unwrap(),
            SafeTensors::deserialize(&ours).unwrap(),
        );
        let mut names = ours.names();
        names.sort();
        let mut expected = theirs.names();
        expected.sort();
        assert_eq!(names, expected, "{name}");
        for tensor in names {
            let (a, b) = (theirs.tensor(tensor).unwrap(), ours.tensor(tensor).unwrap());
            assert_eq!((a.dtype(), a.shape()), (b.dtype(), b.shape()), "{tensor}");
            assert!(a.data() == b.data(), "{name}: {tensor} differs");
        }

        let json = |folder: &Path| -> Value {
            serde_json::from_str(&std::fs::read_to_string(folder.join("config.json")).unwrap())
                .unwrap()
        };
        let (theirs, ours) = (json(&original), json(&saved));
        let ours = ours.as_object().unwrap();
        assert!(ours.len() >= 25, "{ours:?}");
        for (key, value) in ours {
            let same = match (value, &theirs[key]) {
                (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
                (a, b) => a == b,
            };
            assert!(
                same,
                "{name}: {key} is {value}, diffusers wrote {}",
                theirs[key]
            );
        }

        assert!(max_error_of(&saved, name) < 1e-4);
        std::fs::remove_dir_all(&saved).unwrap();
    }
}

#[test]
fn unsupported_configs_name_the_field() {
    let dir = std::env::temp_dir().join(format!("kiln-unet-unsupported-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = std::fs::read_to_string(fixture("unet_classes").join("config.json")).unwrap();
    let changed = config.replace(
        "\"time_embedding_type\": \"positional\"",
        "\"time_embedding_type\": \"fourier\"",
    );
    std::fs::write(dir.join("config.json"), changed).unwrap();
    let error = load_diffusers::<B>(&dir, &Default::default()).unwrap_err();
    assert!(
        matches!(
            error,
            UNetError::Unsupported {
                field: "time_embedding_type",
                ..
            }
        ),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn weights_of_another_architecture_are_an_error() {
    let dir = std::env::temp_dir().join(format!("kiln-unet-mismatch-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The class-conditional model's config with the scale-shift model's weights.
    std::fs::copy(
        fixture("unet_classes").join("config.json"),
        dir.join("config.json"),
    )
    .unwrap();
    std::fs::copy(
        fixture("unet_scale_shift").join("diffusion_pytorch_model.safetensors"),
        dir.join("diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    let error = load_diffusers::<B>(&dir, &Default::default()).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, UNetError::Weights { .. }), "{message}");
    assert!(
        message.contains("time_emb_proj") && message.contains("[64, 16]"),
        "{message}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
