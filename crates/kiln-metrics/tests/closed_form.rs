//! The metrics where the answer is known in closed form, and their errors.

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use kiln_metrics::{
    Features, GaussianStats, MetricsError, PolynomialKernel, frechet_distance, kid_over_subsets,
    memorisation_rate, mmd2_unbiased, precision_recall,
};

/// Rows of a `dims`-wide set.
fn rows(values: &[f64], dims: usize) -> Features {
    Features::new(values, dims).unwrap()
}

/// `count` points x_i = centre + scale · s_i for fixed, zero-mean, unit-variance signs s_i
/// (one column of ±1 in a balanced pattern per dimension).
fn balanced(count: usize, centre: &[f64], scale: &[f64]) -> Features {
    let dims = centre.len();
    let values: Vec<f64> = (0..count)
        .flat_map(|i| (0..dims).map(move |j| (i, j)))
        .map(|(i, j)| {
            let sign = if (i >> j) & 1 == 0 { 1.0 } else { -1.0 };
            centre[j] + scale[j] * sign
        })
        .collect();
    rows(&values, dims)
}

#[test]
fn the_frechet_distance_of_independent_coordinates_is_the_sum_of_one_dimensional_ones() {
    // With s_i the rows of a full ±1 design, each coordinate has mean c_j, (biased) variance
    // scale_j², and the coordinates are uncorrelated; np.cov's 1/(n − 1) scales Σ by n/(n − 1).
    let (n, centre_a, centre_b) = (16, [0.0, 1.0, -2.0, 0.5], [1.0, 1.0, 0.0, 0.0]);
    let (scale_a, scale_b) = ([1.0, 2.0, 0.5, 1.0], [2.0, 1.0, 0.5, 3.0]);
    let a = GaussianStats::of(&balanced(n, &centre_a, &scale_a)).unwrap();
    let b = GaussianStats::of(&balanced(n, &centre_b, &scale_b)).unwrap();
    let unbias = n as f64 / (n - 1) as f64;
    let expected: f64 = (0..4)
        .map(|j| {
            let mean = (centre_a[j] - centre_b[j]).powi(2);
            mean + unbias * (scale_a[j] - scale_b[j]).powi(2)
        })
        .sum();
    let fd = frechet_distance(&a, &b).unwrap();
    assert!(
        (fd - expected).abs() < 1e-9 * expected,
        "{fd} against {expected}"
    );
    assert!(frechet_distance(&a, &a).unwrap().abs() < 1e-9);
}

#[test]
fn identical_sets_cover_each_other() {
    let set = balanced(16, &[0.0, 0.0, 0.0], &[1.0, 2.0, 3.0]);
    let both = precision_recall(&set, &set, 3).unwrap();
    assert_eq!((both.precision, both.recall, both.f_score), (1.0, 1.0, 1.0));
    // A set far away covers nothing and is covered by nothing.
    let far = balanced(16, &[100.0, 0.0, 0.0], &[1.0, 2.0, 3.0]);
    let apart = precision_recall(&far, &set, 3).unwrap();
    assert_eq!((apart.precision, apart.recall), (0.0, 0.0));
}

#[test]
fn copies_of_training_samples_are_memorised_and_new_samples_are_not() {
    let training = rows(&[0.0, 0.0, 10.0, 0.0, 0.0, 10.0, 10.0, 10.0], 2);
    // New data lies between 1 and 2 from the nearest training point.
    let held_out = rows(&[1.0, 0.0, 10.0, 2.0, 0.0, 8.5], 2);
    let copies = rows(&[0.0, 0.0, 10.0, 10.0, 10.0, 0.0], 2);
    let memorised = memorisation_rate(&copies, &training, &held_out, 0.0).unwrap();
    assert_eq!((memorised.rate, memorised.threshold), (1.0, 1.0));
    let new = rows(&[5.0, 5.0, 1.5, 0.0, 0.0, 1.0], 2);
    assert_eq!(
        memorisation_rate(&new, &training, &held_out, 0.0)
            .unwrap()
            .rate,
        0.0
    );
    // The median of the held-out distances 1, 1.5, 2 is 1.5: only the point 1 away counts.
    let median = memorisation_rate(&new, &training, &held_out, 0.5).unwrap();
    assert_eq!((median.threshold, median.rate), (1.5, 1.0 / 3.0));
}

#[test]
fn features_come_from_a_tensor_row_by_row() {
    let values = vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let tensor =
        Tensor::<Flex, 2>::from_data(TensorData::new(values.clone(), [3, 2]), &Default::default());
    let features = Features::from_tensor(tensor).unwrap();
    assert_eq!((features.len(), features.dims()), (3, 2));
    assert_eq!(features, Features::new(&values, 2).unwrap());
}

#[test]
fn bad_input_is_a_typed_error() {
    assert_eq!(
        Features::new(&[1.0f32, 2.0, 3.0], 2),
        Err(MetricsError::Shape { values: 3, dims: 2 })
    );
    assert!(matches!(
        Features::new(&[1.0, 2.0, 3.0, f64::INFINITY], 2),
        Err(MetricsError::NotFinite {
            row: 1,
            index: 1,
            ..
        })
    ));
    let narrow = rows(&[0.0, 1.0, 2.0], 1);
    let wide = rows(&[0.0, 1.0, 2.0, 3.0], 2);
    assert_eq!(
        precision_recall(&narrow, &wide, 1),
        Err(MetricsError::Dimensions { a: 1, b: 2 })
    );
    assert!(matches!(
        GaussianStats::of(&rows(&[1.0, 2.0], 2)),
        Err(MetricsError::TooFew {
            needed: 2,
            found: 1,
            ..
        })
    ));
    assert!(matches!(
        precision_recall(&narrow, &narrow, 3),
        Err(MetricsError::TooFew {
            needed: 4,
            found: 3,
            ..
        })
    ));
    // k + 1 would wrap around to 0 rows needed.
    assert!(matches!(
        precision_recall(&narrow, &narrow, usize::MAX),
        Err(MetricsError::TooFew {
            needed: usize::MAX,
            found: 3,
            ..
        })
    ));
    assert!(memorisation_rate(&narrow, &narrow, &narrow, 1.5).is_err());
    assert_eq!(
        narrow.select(&[0, 3]),
        Err(MetricsError::NoSuchRow { row: 3, rows: 3 })
    );
    let kernel = PolynomialKernel::default();
    assert_eq!(
        mmd2_unbiased(&narrow, &rows(&[0.0, 1.0], 1), &kernel),
        Err(MetricsError::Sizes { a: 3, b: 2 })
    );
    let not_kernels = [
        (
            "the kernel's degree",
            PolynomialKernel {
                degree: 0,
                ..kernel
            },
        ),
        (
            "the kernel's degree",
            PolynomialKernel {
                degree: -3,
                ..kernel
            },
        ),
        (
            "the kernel's gamma",
            PolynomialKernel {
                gamma: Some(f64::NAN),
                ..kernel
            },
        ),
        (
            "the kernel's gamma",
            PolynomialKernel {
                gamma: Some(0.0),
                ..kernel
            },
        ),
        (
            "the kernel's coef0",
            PolynomialKernel {
                coef0: -1.0,
                ..kernel
            },
        ),
        (
            "the kernel's coef0",
            PolynomialKernel {
                coef0: f64::INFINITY,
                ..kernel
            },
        ),
    ];
    for (setting, not_a_kernel) in not_kernels {
        assert!(
            matches!(
                mmd2_unbiased(&narrow, &narrow, &not_a_kernel),
                Err(MetricsError::OutOfRange { name, .. }) if name == setting
            ),
            "{not_a_kernel:?}"
        );
        // Checked first: with no subsets at all the kernel is what is reported.
        assert!(matches!(
            kid_over_subsets(&narrow, &narrow, &[], &not_a_kernel),
            Err(MetricsError::OutOfRange { name, .. }) if name == setting
        ));
    }
    assert!(kid_over_subsets(&narrow, &narrow, &[], &kernel).is_err());
    assert!(kid_over_subsets(&narrow, &narrow, &[[vec![0, 1], vec![0, 5]]], &kernel).is_err());
    // Statistics of mismatched shapes, made by hand, are refused rather than crashing.
    let mut broken = GaussianStats::of(&wide).unwrap();
    broken.mean.push(0.0);
    let fine = GaussianStats::of(&rows(&[0.0, 1.0, 2.0, 4.0, 1.0, 1.0], 3)).unwrap();
    assert!(matches!(
        frechet_distance(&broken, &fine),
        Err(MetricsError::Dimensions { .. })
    ));
}
