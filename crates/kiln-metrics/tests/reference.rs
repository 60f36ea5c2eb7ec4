//! The metrics against their reference implementations on the same feature arrays: FD against
//! pytorch-fid's `calculate_frechet_distance`, KID against torch-fidelity's
//! `kid_features_to_metric` (the whole sets, and its own random subsets), precision and recall
//! against torch-fidelity's `prc_features_to_metric`. The fixture comes from
//! `benches/peer/metrics_fixtures.py`.

use kiln_metrics::{
    Features, GaussianStats, PolynomialKernel, frechet_distance, kid_over_subsets, mmd2_unbiased,
    precision_recall,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    dims: usize,
    generated: Vec<f32>,
    real: Vec<f32>,
    fd: f64,
    mmd2_whole: f64,
    kid_subsets: Vec<[Vec<usize>; 2]>,
    kid_mean: f64,
    kid_std: f64,
    precision: f64,
    recall: f64,
    f_score: f64,
}

fn cases() -> Vec<Case> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/reference.json");
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str::<Reference>(&text).unwrap().cases
}

fn relative(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs().max(1e-12)
}

fn sets(case: &Case) -> (Features, Features) {
    (
        Features::new(&case.generated, case.dims).unwrap(),
        Features::new(&case.real, case.dims).unwrap(),
    )
}

#[test]
fn frechet_distance_is_pytorch_fid_s() {
    for case in cases() {
        let (generated, real) = sets(&case);
        let stats = |f: &Features| GaussianStats::of(f).unwrap();
        let fd = frechet_distance(&stats(&generated), &stats(&real)).unwrap();
        let error = relative(fd, case.fd);
        println!(
            "{}: FD {fd} against {} (relative {error:.1e})",
            case.name, case.fd
        );
        assert!(error <= 1e-6, "{}: {fd} against {}", case.name, case.fd);
    }
}

#[test]
fn kid_is_torch_fidelity_s_on_the_whole_sets_and_on_its_subsets() {
    let kernel = PolynomialKernel::default();
    for case in cases() {
        let (generated, real) = sets(&case);
        // The first n rows of each set, n the smaller size: one subset of n is a permutation.
        let n = generated.len().min(real.len());
        let first = |f: &Features| f.select(&(0..n).collect::<Vec<_>>()).unwrap();
        let mmd = mmd2_unbiased(&first(&generated), &first(&real), &kernel).unwrap();
        let error = relative(mmd, case.mmd2_whole);
        println!(
            "{}: MMD² {mmd} against {} (relative {error:.1e})",
            case.name, case.mmd2_whole
        );
        assert!(error <= 1e-6, "{}", case.name);
        let kid = kid_over_subsets(&generated, &real, &case.kid_subsets, &kernel).unwrap();
        let (mean_error, std_error) = (
            relative(kid.mean, case.kid_mean),
            relative(kid.std, case.kid_std),
        );
        println!(
            "{}: KID {} ± {} against {} ± {} (relative {mean_error:.1e}, {std_error:.1e})",
            case.name, kid.mean, kid.std, case.kid_mean, case.kid_std
        );
        assert!(mean_error <= 1e-6 && std_error <= 1e-6, "{}", case.name);
    }
}

#[test]
fn precision_and_recall_are_torch_fidelity_s() {
    for case in cases() {
        let (generated, real) = sets(&case);
        let got = precision_recall(&generated, &real, 3).unwrap();
        println!(
            "{}: precision {} recall {} against {} {}",
            case.name, got.precision, got.recall, case.precision, case.recall
        );
        // The reference reports float32 shares.
        assert!(
            relative(got.precision, case.precision) <= 1e-6,
            "{}",
            case.name
        );
        assert!(relative(got.recall, case.recall) <= 1e-6, "{}", case.name);
        assert!(relative(got.f_score, case.f_score) <= 1e-6, "{}", case.name);
    }
}
