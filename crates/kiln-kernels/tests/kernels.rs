//! Kiln's kernels against burn's own ops on Flex: values, and gradients through
//! `Autodiff<Flex>`, on random inputs with awkward shapes (batch 1, channel and row lengths that
//! are not multiples of any SIMD width, odd image sizes, strided inputs).

use burn::backend::{Autodiff, Flex};
use burn::nn::GroupNormConfig;
use burn::tensor::backend::Backend;
use burn::tensor::module;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, ElementConversion, Tensor, TensorData, activation};
use kiln_kernels::{
    cat_channels, conv2d, group_norm, multi_head_attention, on_worker_thread, pixels_to_tokens,
    silu, softmax, tokens_to_pixels,
};

type A = Autodiff<Flex>;

/// The largest difference relative to the largest magnitude of `expected`.
fn relative_error<B: Backend, const D: usize>(actual: Tensor<B, D>, expected: Tensor<B, D>) -> f32 {
    let scale: f32 = expected.clone().abs().max().into_scalar().elem();
    let difference: f32 = (actual - expected).abs().max().into_scalar().elem();
    difference / scale.max(f32::MIN_POSITIVE)
}

fn random<B: Backend, const D: usize>(shape: [usize; D], scale: f64) -> Tensor<B, D> {
    Tensor::random(shape, Distribution::Normal(0.0, scale), &Default::default())
}

/// Checks `kiln` against `burn` on `x`: values on Flex, and on `Autodiff<Flex>` the output and the
/// gradient of Σ w·f(x) for a random w.
fn check_unary<const D: usize>(
    x: Tensor<Flex, D>,
    kiln: impl Fn(Tensor<A, D>) -> Tensor<A, D>,
    burn: impl Fn(Tensor<A, D>) -> Tensor<A, D>,
    what: &str,
) {
    let weights = random::<A, D>(x.dims(), 1.0);
    let run = |op: &dyn Fn(Tensor<A, D>) -> Tensor<A, D>| {
        let input = Tensor::<A, D>::from_inner(x.clone()).require_grad();
        let y = op(input.clone());
        let grads = (y.clone() * weights.clone()).sum().backward();
        (y.inner(), input.grad(&grads).expect("x has a gradient"))
    };
    let (y_kiln, grad_kiln) = run(&kiln);
    let (y_burn, grad_burn) = run(&burn);
    let error = relative_error(y_kiln, y_burn);
    assert!(
        error <= 1e-4,
        "{what} {:?}: values differ by {error:e}",
        x.dims()
    );
    let error = relative_error(grad_kiln, grad_burn);
    assert!(
        error <= 1e-4,
        "{what} {:?}: gradients differ by {error:e}",
        x.dims()
    );
}

#[test]
fn silu_matches_burn() {
    for shape in [[1, 3, 5, 7], [2, 17, 9, 9], [16, 32, 32, 32]] {
        let x = random::<Flex, 4>(shape, 4.0);
        let error = relative_error(silu(x.clone()), activation::silu(x.clone()));
        assert!(error <= 1e-4, "silu {shape:?}: {error:e}");
        check_unary(x, silu, activation::silu, "silu");
    }
    // Extreme inputs saturate instead of overflowing.
    let x = Tensor::<Flex, 1>::from_floats([-200.0, -30.0, 0.0, 30.0, 200.0], &Default::default());
    let error = relative_error(silu(x.clone()), activation::silu(x));
    assert!(error <= 1e-6, "{error:e}");
}

#[test]
fn silu_of_a_strided_tensor() {
    let x = random::<Flex, 4>([2, 5, 6, 3], 2.0).swap_dims(1, 3);
    let error = relative_error(silu(x.clone()), activation::silu(x.clone()));
    assert!(error <= 1e-4, "{error:e}");
    check_unary(x, silu, activation::silu, "strided silu");
}

#[test]
fn softmax_matches_burn() {
    for shape in [[1, 1, 1, 1], [1, 2, 3, 7], [2, 3, 17, 33], [16, 8, 64, 64]] {
        let x = random::<Flex, 4>(shape, 3.0);
        let error = relative_error(softmax(x.clone(), 3), activation::softmax(x.clone(), 3));
        assert!(error <= 1e-4, "softmax {shape:?}: {error:e}");
        check_unary(
            x,
            |x| softmax(x, 3),
            |x| activation::softmax(x, 3),
            "softmax",
        );
    }
}

#[test]
fn softmax_over_other_dimensions_and_strided_rows() {
    let x = random::<Flex, 3>([4, 9, 5], 2.0);
    check_unary(
        x.clone(),
        |x| softmax(x, 1),
        |x| activation::softmax(x, 1),
        "dim 1",
    );
    let strided = x.swap_dims(1, 2);
    check_unary(
        strided,
        |x| softmax(x, 2),
        |x| activation::softmax(x, 2),
        "strided",
    );
}

#[test]
fn group_norm_matches_burn() {
    let device = Default::default();
    for ([batch, channels, height, width], groups) in [
        ([1, 4, 3, 5], 2),
        ([2, 12, 7, 9], 3),
        ([3, 24, 8, 8], 8),
        ([16, 64, 16, 16], 32),
    ] {
        let shape = [batch, channels, height, width];
        // A mean far from zero checks the two-pass variance.
        let x = random::<Flex, 4>(shape, 2.0).add_scalar(5.0);
        let norm = GroupNormConfig::new(groups, channels)
            .with_epsilon(1e-5)
            .init::<A>(&device);
        let gamma = random::<A, 1>([channels], 1.0)
            .add_scalar(1.0)
            .require_grad();
        let beta = random::<A, 1>([channels], 1.0).require_grad();
        let weights = random::<A, 4>(shape, 1.0);
        let run = |kiln: bool| {
            let input = Tensor::<A, 4>::from_inner(x.clone()).require_grad();
            let (gamma, beta) = (gamma.clone(), beta.clone());
            let y = if kiln {
                group_norm(
                    input.clone(),
                    groups,
                    Some((gamma.clone(), beta.clone())),
                    1e-5,
                )
            } else {
                let mut reference = norm.clone();
                reference.gamma = Some(burn::module::Param::from_tensor(gamma.clone()));
                reference.beta = Some(burn::module::Param::from_tensor(beta.clone()));
                reference.forward(input.clone())
            };
            let grads = (y.clone() * weights.clone()).sum().backward();
            let grad = |t: &Tensor<A, 1>| t.grad(&grads).expect("γ and β have gradients");
            (
                y.inner(),
                input.grad(&grads).expect("x has a gradient"),
                grad(&gamma),
                grad(&beta),
            )
        };
        let (kiln, burn) = (run(true), run(false));
        // Flex without autodiff takes the same kernel.
        let plain = group_norm(x, groups, Some((gamma.inner(), beta.inner())), 1e-5);
        let errors = [
            relative_error(plain, burn.0.clone()),
            relative_error(kiln.0, burn.0),
            relative_error(kiln.1, burn.1),
            relative_error(kiln.2, burn.2),
            relative_error(kiln.3, burn.3),
        ];
        assert!(
            errors.iter().all(|&e| e <= 1e-4),
            "{shape:?} / {groups}: y (Flex), y, dx, dγ, dβ errors {errors:?}"
        );
    }
}

#[test]
fn group_norm_without_affine_and_of_strided_input() {
    let x = random::<Flex, 4>([2, 6, 5, 4], 1.0);
    let strided = x.clone().swap_dims(2, 3);
    let gamma = random::<Flex, 1>([6], 1.0);
    let beta = random::<Flex, 1>([6], 1.0);
    let kiln = group_norm(
        strided.clone(),
        3,
        Some((gamma.clone(), beta.clone())),
        1e-6,
    );
    let plain = group_norm(strided, 3, None, 1e-6);
    let expected = plain * gamma.reshape([1, 6, 1, 1]) + beta.reshape([1, 6, 1, 1]);
    let error = relative_error(kiln, expected);
    assert!(error <= 1e-4, "{error:e}");
}

/// Kiln's `conv2d` against burn's on Flex, values and the gradients of x, w and the bias.
fn check_conv(x: Tensor<Flex, 4>, weight_shape: [usize; 4], bias: bool, options: ConvOptions<2>) {
    let weight = random::<Flex, 4>(weight_shape, 0.3);
    let bias_values = bias.then(|| random::<Flex, 1>([weight_shape[0]], 1.0));
    let case = format!(
        "x {:?}, w {weight_shape:?}, bias {bias}, {options:?}",
        x.dims()
    );

    let plain = conv2d(
        x.clone(),
        weight.clone(),
        bias_values.clone(),
        options.clone(),
    );
    let reference = module::conv2d(
        x.clone(),
        weight.clone(),
        bias_values.clone(),
        options.clone(),
    );
    let error = relative_error(plain, reference.clone());
    assert!(error <= 1e-4, "{case}: Flex values differ by {error:e}");

    let weights = random::<A, 4>(reference.dims(), 1.0);
    let run = |kiln: bool| {
        let x = Tensor::<A, 4>::from_inner(x.clone()).require_grad();
        let w = Tensor::<A, 4>::from_inner(weight.clone()).require_grad();
        let b = bias_values
            .clone()
            .map(|b| Tensor::<A, 1>::from_inner(b).require_grad());
        let y = if kiln {
            conv2d(x.clone(), w.clone(), b.clone(), options.clone())
        } else {
            module::conv2d(x.clone(), w.clone(), b.clone(), options.clone())
        };
        let grads = (y.clone() * weights.clone()).sum().backward();
        let grad_b = b.map(|b| b.grad(&grads).expect("the bias has a gradient"));
        (
            y.inner(),
            x.grad(&grads).expect("x has a gradient"),
            w.grad(&grads).expect("w too"),
            grad_b,
        )
    };
    let (kiln, burn) = (run(true), run(false));
    let mut errors = vec![
        relative_error(kiln.0, burn.0),
        relative_error(kiln.1, burn.1),
        relative_error(kiln.2, burn.2),
    ];
    if let (Some(kiln), Some(burn)) = (kiln.3, burn.3) {
        errors.push(relative_error(kiln, burn));
    }
    assert!(
        errors.iter().all(|&e| e <= 1e-4),
        "{case}: y, dx, dw, dbias errors {errors:?}"
    );
}

#[test]
fn conv2d_matches_burn() {
    let options =
        |stride, padding| ConvOptions::new([stride, stride], [padding, padding], [1, 1], 1);
    // 3×3 same-size, as in every UNet resnet; batch 1 and channel counts off any SIMD width.
    check_conv(random([1, 3, 5, 7], 1.0), [5, 3, 3, 3], true, options(1, 1));
    check_conv(
        random([4, 17, 9, 8], 1.0),
        [11, 17, 3, 3],
        true,
        options(1, 1),
    );
    // Stride 2 (the downsamplers) on even and odd sizes.
    check_conv(random([2, 8, 8, 8], 1.0), [8, 8, 3, 3], true, options(2, 1));
    check_conv(
        random([3, 5, 7, 9], 1.0),
        [6, 5, 3, 3],
        false,
        options(2, 1),
    );
    // 1×1 (the resnet shortcuts), with and without padding.
    check_conv(
        random([2, 12, 6, 5], 1.0),
        [7, 12, 1, 1],
        true,
        options(1, 0),
    );
    check_conv(
        random([2, 4, 3, 3], 1.0),
        [3, 4, 1, 1],
        false,
        options(1, 1),
    );
    // No padding, a non-square kernel, padding wider than the kernel's reach.
    check_conv(random([2, 3, 8, 9], 1.0), [4, 3, 3, 3], true, options(1, 0));
    check_conv(random([2, 3, 6, 7], 1.0), [4, 3, 2, 3], true, options(1, 1));
    check_conv(random([1, 2, 4, 4], 1.0), [2, 2, 3, 3], true, options(3, 3));
    // A non-square kernel with unequal padding along the two axes.
    check_conv(
        random([2, 5, 10, 21], 1.0),
        [6, 5, 3, 5],
        true,
        ConvOptions::new([1, 1], [1, 2], [1, 1], 1),
    );
    // Patch matrices built a block of output rows at a time (512 KiB each), the last block
    // shorter: 64 channels at 37×40, and stride 2 with 96 channels at 33×32.
    check_conv(
        random([2, 64, 37, 40], 1.0),
        [5, 64, 3, 3],
        true,
        options(1, 1),
    );
    check_conv(
        random([1, 96, 33, 32], 1.0),
        [4, 96, 3, 3],
        true,
        options(2, 1),
    );
    // The stride-1 weight gradient's products over 2 + 1 taps of a kernel row (100 channels),
    // and over one tap each (130 channels).
    check_conv(
        random([2, 100, 6, 7], 1.0),
        [3, 100, 3, 3],
        true,
        options(1, 1),
    );
    check_conv(
        random([1, 130, 5, 4], 1.0),
        [2, 130, 3, 3],
        false,
        options(1, 1),
    );
    // A kernel taller than the image, on an image one pixel wide.
    check_conv(
        random([2, 3, 2, 1], 1.0),
        [4, 3, 5, 3],
        true,
        ConvOptions::new([1, 1], [2, 1], [1, 1], 1),
    );
    // A strided (non-contiguous) input, and the sizes of the tiny UNet's first layer.
    check_conv(
        random::<Flex, 4>([2, 9, 6, 4], 1.0).swap_dims(1, 3),
        [4, 4, 3, 3],
        true,
        options(1, 1),
    );
    check_conv(
        random([16, 32, 32, 32], 1.0),
        [32, 32, 3, 3],
        true,
        options(1, 1),
    );
}

/// The gradient of Σ y² with respect to `weight`, for y = conv2d(x, weight) with a 3×3 kernel
/// and padding 1, through `Autodiff<Flex>`.
fn squared_conv_weight_gradient(x: &Tensor<Flex, 4>, weight: &Tensor<Flex, 4>) -> TensorData {
    let w = Tensor::<A, 4>::from_inner(weight.clone()).require_grad();
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    let y = conv2d(Tensor::from_inner(x.clone()), w.clone(), None, options);
    let grads = (y.clone() * y).sum().backward();
    w.grad(&grads).expect("w has a gradient").into_data()
}

/// The weight gradient sums over the batch; the sum must come out the same on every run (a
/// training run resumes bit for bit), however rayon's threads happen to share the images.
#[test]
fn conv2d_weight_gradient_is_the_same_on_every_run() {
    let x = random::<Flex, 4>([16, 8, 12, 12], 1.0);
    let weight = random::<Flex, 4>([8, 8, 3, 3], 1.0);
    let gradient = || squared_conv_weight_gradient(&x, &weight);
    // From outside rayon's pool and from inside it (as the trainer runs its steps).
    let first = gradient();
    for _ in 0..10 {
        assert_eq!(gradient(), first);
        assert_eq!(on_worker_thread::<A, _>(gradient), first);
    }
}

#[test]
fn conv2d_falls_back_for_groups_and_dilation() {
    let x = random::<Flex, 4>([2, 4, 7, 7], 1.0);
    for (weight_shape, options) in [
        ([6, 2, 3, 3], ConvOptions::new([1, 1], [1, 1], [1, 1], 2)),
        ([6, 4, 3, 3], ConvOptions::new([1, 1], [2, 2], [2, 2], 1)),
    ] {
        check_conv(x.clone(), weight_shape, true, options);
    }
}

/// Multi-head attention written out with burn's ops: split the packed projections, heads
/// forward, softmax(QKᵀ·scale)V, heads back.
fn attention_reference<B: Backend>(qkv: Tensor<B, 3>, heads: usize, scale: f64) -> Tensor<B, 3> {
    let [batch, tokens, width] = qkv.dims();
    let channels = width / 3;
    let part = |index: usize| {
        qkv.clone()
            .slice([
                0..batch,
                0..tokens,
                index * channels..(index + 1) * channels,
            ])
            .reshape([batch, tokens, heads, channels / heads])
            .permute([0, 2, 1, 3])
    };
    let scores = part(0)
        .matmul(part(1).permute([0, 1, 3, 2]))
        .mul_scalar(scale);
    activation::softmax(scores, 3)
        .matmul(part(2))
        .permute([0, 2, 1, 3])
        .reshape([batch, tokens, channels])
}

#[test]
fn multi_head_attention_matches_burn() {
    // [b, t, 3·c] packed projections: the tiny UNet's 16×16 level (8 heads of 8 channels), odd
    // sizes, batch 1 (products threaded inside), one head.
    for (shape, heads) in [
        ([2, 256, 3 * 64], 8),
        ([1, 7, 3 * 15], 3),
        ([3, 5, 3 * 6], 2),
        ([2, 9, 3 * 4], 1),
    ] {
        let scale = 1.0 / ((shape[2] / 3 / heads) as f64).sqrt();
        let qkv = random::<Flex, 3>(shape, 1.0);
        let error = relative_error(
            multi_head_attention(qkv.clone(), heads, scale),
            attention_reference(qkv.clone(), heads, scale),
        );
        assert!(error <= 1e-4, "{shape:?}: Flex values differ by {error:e}");

        let weights = random::<A, 3>([shape[0], shape[1], shape[2] / 3], 1.0);
        let run = |kiln: bool| {
            let input = Tensor::<A, 3>::from_inner(qkv.clone()).require_grad();
            let out = if kiln {
                multi_head_attention(input.clone(), heads, scale)
            } else {
                attention_reference(input.clone(), heads, scale)
            };
            let grads = (out.clone() * weights.clone()).sum().backward();
            (out.inner(), input.grad(&grads).expect("qkv has a gradient"))
        };
        let (kiln, burn) = (run(true), run(false));
        let errors = [
            relative_error(kiln.0, burn.0),
            relative_error(kiln.1, burn.1),
        ];
        assert!(
            errors.iter().all(|&e| e <= 1e-4),
            "{shape:?}: out, dqkv errors {errors:?}"
        );
    }
}

/// Feature map → tokens → feature map with a token-wise weight between, as an attention block
/// does, by Kiln's ops (`kiln`) or burn's reshape and `swap_dims`; returns the tokens, the
/// result and the gradient of Σ w·result with respect to `x`.
fn tokens_round_trip(
    x: Tensor<Flex, 4>,
    token_weights: Tensor<A, 3>,
    weights: Tensor<A, 4>,
    kiln: bool,
) -> (Tensor<Flex, 3>, Tensor<Flex, 4>, Tensor<Flex, 4>) {
    let [batch, channels, height, width] = x.dims();
    let input = Tensor::<A, 4>::from_inner(x).require_grad();
    let tokens = if kiln {
        pixels_to_tokens(input.clone())
    } else {
        input
            .clone()
            .reshape([batch, channels, height * width])
            .swap_dims(1, 2)
    };
    let weighted = tokens.clone() * token_weights;
    let pixels = if kiln {
        tokens_to_pixels(weighted, height, width)
    } else {
        weighted
            .swap_dims(1, 2)
            .reshape([batch, channels, height, width])
    };
    let grads = (pixels.clone() * weights).sum().backward();
    let grad = input.grad(&grads).expect("x has a gradient");
    (tokens.inner(), pixels.inner(), grad)
}

#[test]
fn tokens_match_burns_reshape_and_swap() {
    // Batch 1, sizes off the 16 × 16 tile, more channels than one tile, a strided input, and the
    // tiny UNet's attention level.
    for (shape, strided) in [
        ([1, 3, 5, 7], false),
        ([2, 17, 9, 4], false),
        ([3, 40, 6, 6], true),
        ([16, 64, 16, 16], false),
    ] {
        let [batch, channels, height, width] = shape;
        let x = if strided {
            random::<Flex, 4>([batch, width, height, channels], 1.0).swap_dims(1, 3)
        } else {
            random::<Flex, 4>(shape, 1.0)
        };
        let tokens = pixels_to_tokens(x.clone());
        let reference = x.clone().reshape([batch, channels, height * width]);
        assert_eq!(
            relative_error(tokens.clone(), reference.swap_dims(1, 2)),
            0.0,
            "{shape:?}: tokens on Flex"
        );
        let pixels = tokens_to_pixels(tokens, height, width);
        assert_eq!(
            relative_error(pixels, x.clone()),
            0.0,
            "{shape:?}: round trip on Flex"
        );
        let token_weights = random::<A, 3>([batch, height * width, channels], 1.0);
        let weights = random::<A, 4>(shape, 1.0);
        let kiln = tokens_round_trip(x.clone(), token_weights.clone(), weights.clone(), true);
        let burn = tokens_round_trip(x, token_weights, weights, false);
        // A transpose moves values without arithmetic: equal, not merely close.
        assert_eq!(relative_error(kiln.0, burn.0), 0.0, "{shape:?}: tokens");
        assert_eq!(relative_error(kiln.1, burn.1), 0.0, "{shape:?}: pixels");
        assert_eq!(relative_error(kiln.2, burn.2), 0.0, "{shape:?}: gradient");
    }
}

#[test]
fn cat_channels_matches_burns_cat() {
    // Batch 1, odd sizes, a strided input; gradients through a random weighting.
    for (a_shape, second, strided) in [
        ([1, 3, 5, 7], 2, false),
        ([2, 17, 9, 4], 5, true),
        ([16, 64, 16, 16], 64, false),
    ] {
        let [batch, first, height, width] = a_shape;
        let a = random::<Flex, 4>(a_shape, 1.0);
        let s = if strided {
            random::<Flex, 4>([batch, width, height, second], 1.0).swap_dims(1, 3)
        } else {
            random::<Flex, 4>([batch, second, height, width], 1.0)
        };
        let joined = cat_channels(a.clone(), s.clone());
        let reference = Tensor::cat(vec![a.clone(), s.clone()], 1);
        assert_eq!(
            relative_error(joined, reference),
            0.0,
            "{a_shape:?}: on Flex"
        );

        let weights = random::<A, 4>([batch, first + second, height, width], 1.0);
        let run = |kiln: bool| {
            let a = Tensor::<A, 4>::from_inner(a.clone()).require_grad();
            let s = Tensor::<A, 4>::from_inner(s.clone()).require_grad();
            let joined = if kiln {
                cat_channels(a.clone(), s.clone())
            } else {
                Tensor::cat(vec![a.clone(), s.clone()], 1)
            };
            let grads = (joined.clone() * weights.clone()).sum().backward();
            let grad = |t: &Tensor<A, 4>| t.grad(&grads).expect("an input has a gradient");
            (joined.inner(), grad(&a), grad(&s))
        };
        let (kiln, burn) = (run(true), run(false));
        assert_eq!(relative_error(kiln.0, burn.0), 0.0, "{a_shape:?}: joined");
        assert_eq!(relative_error(kiln.1, burn.1), 0.0, "{a_shape:?}: da");
        assert_eq!(relative_error(kiln.2, burn.2), 0.0, "{a_shape:?}: ds");
    }
}

/// Threads that each train through `on_worker_thread` while others run autodiff work directly
/// (as test threads do, or a program with several models) never wait on one another: burn's
/// autodiff holds a lock of its graph while a backward pass runs its ops on rayon's threads, so a
/// caller's work must never run on a thread beneath another thread's op.
#[test]
fn concurrent_callers_do_not_deadlock() {
    let x = random::<Flex, 4>([4, 8, 12, 12], 1.0);
    let weight = random::<Flex, 4>([8, 8, 3, 3], 1.0);
    let gradient = move || squared_conv_weight_gradient(&x, &weight);
    let expected = gradient();
    let (finished, results) = std::sync::mpsc::channel();
    for caller in 0..4 {
        let (gradient, expected) = (gradient.clone(), expected.clone());
        let finished = finished.clone();
        std::thread::spawn(move || {
            // A panic reaches the receiver as a dropped sender.
            let all_equal = (0..40).all(|_| {
                let value = if caller % 2 == 0 {
                    on_worker_thread::<A, _>(&gradient)
                } else {
                    gradient()
                };
                value == expected
            });
            finished.send(all_equal).ok();
        });
    }
    drop(finished);
    for _ in 0..4 {
        let same = results
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("every caller finishes within two minutes (no deadlock, no panic)");
        assert!(same, "a caller's gradient differs from the first one");
    }
}

/// `on_worker_thread` runs Flex work on one of rayon's workers while the others are kept looking
/// for work; they stop when the work returns or unwinds, and every later call runs as the first.
#[test]
fn on_worker_thread_returns_and_passes_panics_on() {
    let x = random::<Flex, 4>([4, 8, 16, 16], 1.0);
    let expected = silu(x.clone()).into_data();
    let (thread, values) = on_worker_thread::<Flex, _>(|| {
        (rayon::current_thread_index(), silu(x.clone()).into_data())
    });
    assert!(thread.is_some(), "the work ran on a worker thread");
    assert_eq!(values, expected);
    let panicked = std::panic::catch_unwind(|| {
        on_worker_thread::<Flex, _>(|| panic!("a panic inside the work"));
    });
    assert!(panicked.is_err(), "the panic reaches the caller");
    for _ in 0..3 {
        assert_eq!(
            on_worker_thread::<Flex, _>(|| silu(x.clone()).into_data()),
            expected
        );
    }
}
