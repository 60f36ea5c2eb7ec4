//! `FidInception` against pytorch-fid's `InceptionV3` on the bundled faces, both built with the
//! same deterministic weights (a formula computed on each side, so no weights are committed),
//! and the `.pth` reader on a file `torch.save` wrote. The fixtures come from
//! `benches/peer/inception_fixtures.py`, whose doc gives the formula.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use kiln_metrics::{
    FeatureExtractor, Features, FidInception, GaussianStats, MetricsError, PthWeights,
    WeightSource, extract, frechet_distance, inception_weights,
};
use serde::Deserialize;

type B = Flex;

/// The fixture script's weights: v_i = sin(12.9898 i + 0.618034 s), s the byte sum of the name,
/// scaled by the tensor's role.
struct FormulaWeights;

impl WeightSource for FormulaWeights {
    fn tensor(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>, MetricsError> {
        let phase = f64::from(name.bytes().map(u32::from).sum::<u32>()) * 0.618034;
        let fan_in = shape.iter().skip(1).product::<usize>() as f64;
        let role = |v: f64| match name.rsplit_once('.').map_or(name, |(_, last)| last) {
            "weight" if name.ends_with("conv.weight") => 2.0 / fan_in.sqrt() * v,
            "weight" => 1.0 + 0.2 * v,
            "bias" | "running_mean" => 0.1 * v,
            "running_var" => 1.0 + 0.5 * v,
            _ => 0.01 * v,
        };
        let count = shape.iter().product::<usize>();
        Ok((0..count)
            .map(|i| role((i as f64 * 12.9898 + phase).sin()) as f32)
            .collect())
    }
}

#[derive(Deserialize)]
struct Fixture {
    set_a: Vec<String>,
    set_b: Vec<String>,
    features_a: Vec<f32>,
    fd: f64,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn fixture() -> Fixture {
    let text = std::fs::read_to_string(fixtures().join("inception.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The bundled grayscale photos as a `[n, 1, 112, 92]` batch in [0, 1].
fn faces(paths: &[String]) -> Tensor<B, 4> {
    let faces = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/faces");
    let mut values = Vec::new();
    let mut size = (0, 0);
    for path in paths {
        let image = image::open(faces.join(path)).unwrap().to_luma8();
        size = image.dimensions();
        values.extend(image.pixels().map(|p| f32::from(p.0[0]) / 255.0));
    }
    let (width, height) = (size.0 as usize, size.1 as usize);
    Tensor::from_data(
        TensorData::new(values, [paths.len(), 1, height, width]),
        &Default::default(),
    )
}

fn network() -> FidInception<B> {
    FidInception::load(&mut FormulaWeights, &Default::default()).unwrap()
}

#[test]
fn pool3_features_and_their_frechet_distance_are_pytorch_fid_s() {
    let fixture = fixture();
    let network = network();
    let a = extract(&network, [faces(&fixture.set_a)]).unwrap();
    let b = extract(&network, [faces(&fixture.set_b)]).unwrap();
    assert_eq!((a.len(), a.dims()), (fixture.set_a.len(), 2048));

    let stored = fixture.features_a.len() / 2048;
    let mut worst = 0.0f64;
    for row in 0..stored {
        for j in 0..2048 {
            let want = f64::from(fixture.features_a[row * 2048 + j]);
            worst = worst.max((a.matrix()[(row, j)] - want).abs());
        }
    }
    println!("pool3: largest difference {worst:.2e} over {stored} images");
    assert!(worst <= 1e-4, "pool3 features differ by {worst:e}");

    let stats = |f: &Features| GaussianStats::of(f).unwrap();
    let fd = frechet_distance(&stats(&a), &stats(&b)).unwrap();
    let relative = (fd - fixture.fd).abs() / fixture.fd;
    println!(
        "FD {fd} against pytorch-fid's {} ({relative:.1e})",
        fixture.fd
    );
    assert!(relative <= 1e-3, "FD {fd} against {}", fixture.fd);
}

#[test]
fn grayscale_is_taken_as_rgb_and_other_channel_counts_are_refused() {
    let network = network();
    let gray = faces(&["s1/2.png".into()]);
    let rgb = gray.clone().repeat_dim(1, 3);
    let difference = (network.features(gray).unwrap() - network.features(rgb).unwrap())
        .abs()
        .max()
        .into_scalar();
    assert_eq!(difference, 0.0);

    let two = Tensor::<B, 4>::zeros([1, 2, 8, 8], &Default::default());
    assert!(matches!(
        network.features(two),
        Err(MetricsError::Images { .. })
    ));
    let empty = Tensor::<B, 4>::zeros([0, 3, 8, 8], &Default::default());
    assert!(matches!(
        network.features(empty),
        Err(MetricsError::Images { .. })
    ));
}

#[test]
fn the_pth_reader_reads_what_torch_save_wrote() {
    let path = fixtures().join("inception_stem.pth");
    let mut weights = PthWeights::open(&path).unwrap();
    for (name, shape) in [
        ("Conv2d_1a_3x3.conv.weight", vec![32, 3, 3, 3]),
        ("Conv2d_1a_3x3.bn.running_var", vec![32]),
    ] {
        assert_eq!(
            weights.tensor(name, &shape).unwrap(),
            FormulaWeights.tensor(name, &shape).unwrap(),
            "{name}"
        );
    }
    assert_eq!(weights.names().count(), 5);
}

#[test]
fn missing_or_misshapen_weights_are_named() {
    let path = fixtures().join("inception_stem.pth");
    let error = FidInception::<B>::from_pth(&path, &Default::default()).unwrap_err();
    assert!(
        matches!(&error, MetricsError::MissingWeight { name, .. } if name == "Conv2d_2a_3x3.conv.weight"),
        "{error}"
    );
    let mut weights = PthWeights::open(&path).unwrap();
    assert!(matches!(
        weights.tensor("Conv2d_1a_3x3.bn.weight", &[64]),
        Err(MetricsError::WeightShape { expected, found, .. }) if expected == [64] && found == [32]
    ));
    assert!(matches!(
        PthWeights::open(fixtures().join("no-such-file.pth")),
        Err(MetricsError::WeightFile { .. })
    ));
    assert!(matches!(
        PthWeights::open(fixtures().join("inception.json")),
        Err(MetricsError::WeightFile { .. })
    ));
}

#[test]
fn the_weights_path_is_the_one_given_before_the_environment_s() {
    let given = Path::new("given.pth");
    assert_eq!(inception_weights(Some(given)).unwrap(), given);
    if std::env::var_os(kiln_metrics::INCEPTION_WEIGHTS_ENV).is_none() {
        let error = inception_weights(None).unwrap_err();
        assert!(
            error
                .to_string()
                .contains(kiln_metrics::INCEPTION_WEIGHTS_URL)
        );
    }
}
