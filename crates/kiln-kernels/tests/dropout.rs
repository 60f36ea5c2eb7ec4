//! Kiln's dropout on `Autodiff<Flex>`: the share of kept elements, their scale, the gradient,
//! the mask's dependence on the backend's seed only (not on the thread count), and inside a
//! keyed pass on the pass's key and each item's place in the batch only. Its own test binary:
//! the tests seed Flex's global generator, which other tests running alongside would draw from.

use std::sync::Mutex;

use burn::backend::{Autodiff, Flex};
use burn::nn::{Dropout, DropoutConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use kiln_kernels::{DropoutKey, dropout, with_dropout_key};

type A = Autodiff<Flex>;

/// Held by each test while it seeds and draws.
static GENERATOR: Mutex<()> = Mutex::new(());

fn module(prob: f64) -> Dropout {
    DropoutConfig::new(prob).init()
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec().expect("f32 values")
}

/// x, y = dropout(x) and dL/dx for L = Σ w·y, after seeding the backend with `seed`.
fn run(prob: f64, x: &Tensor<Flex, 4>, w: &Tensor<Flex, 4>, seed: u64) -> [Vec<f32>; 3] {
    A::seed(&Default::default(), seed);
    let input = Tensor::<A, 4>::from_inner(x.clone()).require_grad();
    let y = dropout(&module(prob), input.clone());
    let grads = (y.clone() * Tensor::from_inner(w.clone())).sum().backward();
    let dx = input.grad(&grads).expect("x has a gradient");
    [values(x.clone()), values(y.inner()), values(dx)]
}

fn normal(shape: [usize; 4]) -> Tensor<Flex, 4> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
}

#[test]
fn keeps_one_minus_p_scaled_by_its_inverse_with_the_matching_gradient() {
    let _turn = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    // 8·16·33·31 elements: not a multiple of the chunk size.
    let shape = [8, 16, 33, 31];
    let (x, w) = (normal(shape), normal(shape));
    for prob in [0.1, 0.5] {
        let [x, y, dx] = run(prob, &x, &w, 3);
        let w = values(w.clone());
        let scale = (1.0 / (1.0 - prob)) as f32;
        let mut kept = 0usize;
        for i in 0..x.len() {
            if y[i] == 0.0 {
                assert_eq!(dx[i], 0.0, "a dropped element passes no gradient");
            } else {
                kept += 1;
                assert_eq!(y[i], x[i] * scale, "a kept element is scaled by 1/(1 − p)");
                assert_eq!(dx[i], w[i] * scale, "its gradient is w/(1 − p)");
            }
        }
        let n = x.len() as f64;
        let share = kept as f64 / n;
        let sigma = (prob * (1.0 - prob) / n).sqrt();
        assert!(
            (share - (1.0 - prob)).abs() < 5.0 * sigma,
            "p = {prob}: kept {share}, expected {} ± {}",
            1.0 - prob,
            5.0 * sigma
        );
    }
}

#[test]
fn the_mask_follows_the_seed_and_not_the_thread_count() {
    let _turn = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let shape = [4, 8, 32, 32];
    let (x, w) = (normal(shape), normal(shape));
    let [_, first, _] = run(0.3, &x, &w, 11);
    let [_, again, _] = run(0.3, &x, &w, 11);
    let one_thread = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a pool of one thread");
    let [_, alone, _] = one_thread.install(|| run(0.3, &x, &w, 11));
    let [_, other, _] = run(0.3, &x, &w, 12);
    assert_eq!(first, again, "the same seed gives the same mask");
    assert_eq!(first, alone, "one thread gives the same mask as several");
    assert_ne!(first, other, "another seed gives another mask");
}

#[test]
fn outside_training_and_at_p_zero_it_is_the_identity() {
    let _turn = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let x = normal([2, 3, 5, 7]);
    let inference = dropout(&module(0.5), x.clone());
    assert_eq!(values(inference), values(x.clone()));
    let training = dropout(&module(0.0), Tensor::<A, 4>::from_inner(x.clone()));
    assert_eq!(values(training.inner()), values(x));
}

/// The two masks of one keyed pass over a tensor of `shape` (two dropouts of p = 0.5, seen as
/// dropout(1)·(1 − p) so kept is 1 and dropped 0), after seeding the backend with `seed`.
fn pass_masks(shape: [usize; 4], first_item: usize, seed: u64) -> [Vec<f32>; 2] {
    A::seed(&Default::default(), seed);
    let ones = Tensor::<A, 4>::ones(shape, &Default::default());
    let pass = DropoutKey { key: 9, first_item };
    let mask = || values(dropout(&module(0.5), ones.clone()).inner().mul_scalar(0.5));
    with_dropout_key(pass, || [mask(), mask()])
}

#[test]
fn a_keyed_pass_masks_each_item_by_its_place_in_the_batch() {
    let _turn = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let shape = [4, 3, 17, 9];
    let (x, w) = (normal(shape), normal(shape));
    let [_, before, _] = run(0.3, &x, &w, 11);
    let whole = pass_masks(shape, 0, 1);
    let front = pass_masks([3, 3, 17, 9], 0, 2);
    let back = pass_masks([1, 3, 17, 9], 3, 3);
    for n in 0..2 {
        assert_eq!(
            whole[n],
            [front[n].clone(), back[n].clone()].concat(),
            "mask {n}"
        );
    }
    assert_ne!(whole[0], whole[1], "a pass's second mask is another");
    let kept = whole[0].iter().filter(|&&m| m == 1.0).count();
    assert!(whole[0].iter().all(|&m| m == 0.0 || m == 1.0));
    assert!(
        (kept as f64 / whole[0].len() as f64 - 0.5).abs() < 0.05,
        "kept {kept}"
    );
    let [_, after, _] = run(0.3, &x, &w, 11);
    assert_eq!(before, after, "outside the pass the seed decides again");
}
