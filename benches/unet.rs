//! The UNet on the default CPU device (Flex): a forward pass and a full training step
//! (forward, MSE on ε, backward, AdamW) at batch 16, for `tiny` at 32×32 and `faces64` at
//! 64×64; and each of Kiln's kernels (`kiln::kernels`) against burn's op for the same work, on a
//! 16×32×32×32 activation, forward and forward + backward.
//!
//! ```text
//! cargo bench --bench unet                 # everything (faces64 takes minutes per sample)
//! cargo bench --bench unet -- tiny         # just the tiny model
//! cargo bench --bench unet -- kernels      # Kiln's kernels against burn's ops
//! ```
//!
//! `examples/unet_step.rs` measures the same workloads with a median of a few runs, which is
//! what docs/performance.md compares with PyTorch (`benches/peer/unet_step.py`).

use std::time::Duration;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Distribution, Tensor, activation, module};
use criterion::{Criterion, criterion_group, criterion_main};
use kiln::forward::standard_normal;
use kiln::kernels;
use kiln::unet::{UNet, UNetConfig};
use rand::{SeedableRng, rngs::StdRng};

type B = Autodiff<Flex>;

fn unet(c: &mut Criterion) {
    let device = Default::default();
    let mut group = c.benchmark_group("unet_batch16");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (name, config, size) in [
        ("tiny_32", UNetConfig::tiny(3), 32),
        ("faces64_64", UNetConfig::faces64(3), 64),
    ] {
        let mut rng = StdRng::seed_from_u64(0);
        let shape = [16, 3, size, size];
        let x = standard_normal::<B, 4>(shape, &mut rng, &device);
        let noise = standard_normal::<B, 4>(shape, &mut rng, &device);
        let t = Tensor::<B, 1>::from_floats([500.0; 16], &device);
        let mut model: UNet<B> = config.init(&device).expect("valid preset");

        let inference = model.valid();
        let (x_inner, t_inner) = (x.clone().inner(), t.clone().inner());
        // Each run starts on one of rayon's threads, as the trainer's steps do.
        group.bench_function(format!("{name}/forward"), |b| {
            b.iter(|| {
                kernels::on_worker_thread::<B, _>(|| {
                    inference
                        .forward(x_inner.clone(), t_inner.clone(), None)
                        .expect("valid input")
                        .into_data()
                })
            })
        });

        let mut optimizer = AdamWConfig::new().init::<B, UNet<B>>();
        group.bench_function(format!("{name}/train_step"), |b| {
            b.iter(|| {
                kernels::on_worker_thread::<B, _>(|| {
                    let prediction = model
                        .forward(x.clone(), t.clone(), None)
                        .expect("valid input");
                    let loss = (prediction - noise.clone()).powi_scalar(2).mean();
                    let grads = GradientsParams::from_grads(loss.backward(), &model);
                    model = optimizer.step(1e-4, model.clone(), grads);
                })
            })
        });
    }
    group.finish();
}

/// One op, Kiln's kernel and burn's: the forward pass on Flex, and forward + backward of Σ f(x)
/// through `Autodiff<Flex>`.
fn compare<const D: usize>(
    c: &mut Criterion,
    name: &str,
    x: &Tensor<Flex, D>,
    kiln: impl Fn(Tensor<B, D>) -> Tensor<B, D>,
    burn: impl Fn(Tensor<B, D>) -> Tensor<B, D>,
) {
    let mut group = c.benchmark_group(format!("kernels/{name}"));
    for (who, op) in [
        ("kiln", &kiln as &dyn Fn(Tensor<B, D>) -> Tensor<B, D>),
        ("burn", &burn),
    ] {
        group.bench_function(format!("{who}/forward"), |b| {
            b.iter(|| op(Tensor::from_inner(x.clone())).inner().into_data())
        });
        group.bench_function(format!("{who}/forward_backward"), |b| {
            b.iter(|| {
                let input = Tensor::<B, D>::from_inner(x.clone()).require_grad();
                let grads = op(input.clone()).sum().backward();
                input.grad(&grads).expect("x has a gradient").into_data()
            })
        });
    }
    group.finish();
}

fn kernels(c: &mut Criterion) {
    let device = Default::default();
    let random = |shape| Tensor::<Flex, 4>::random(shape, Distribution::Normal(0.0, 1.0), &device);
    let x = random([16, 32, 32, 32]);
    let weight = Tensor::<B, 4>::from_inner(random([32, 32, 3, 3]).mul_scalar(0.1));
    let bias = Tensor::<B, 1>::zeros([32], &device);
    let options = ConvOptions::new([1, 1], [1, 1], [1, 1], 1);
    compare(
        c,
        "conv3x3_32to32",
        &x,
        |x| kernels::conv2d(x, weight.clone(), Some(bias.clone()), options.clone()),
        |x| module::conv2d(x, weight.clone(), Some(bias.clone()), options.clone()),
    );
    compare(c, "silu", &x, kernels::silu, activation::silu);
    let dropout = burn::nn::DropoutConfig::new(0.1).init();
    compare(
        c,
        "dropout_0.1",
        &x,
        |x| kernels::dropout(&dropout, x),
        |x| dropout.forward(x),
    );
    let (gamma, beta) = (
        Tensor::<B, 1>::ones([32], &device),
        Tensor::<B, 1>::zeros([32], &device),
    );
    let norm = burn::nn::GroupNormConfig::new(8, 32).init::<B>(&device);
    compare(
        c,
        "group_norm_8",
        &x,
        |x| kernels::group_norm(x, 8, Some((gamma.clone(), beta.clone())), 1e-5),
        |x| norm.forward(x),
    );
    // An up block's input: the path and its skip connection joined (here x twice, so that the
    // backward pass also adds two gradients, as it does for a skip connection).
    compare(
        c,
        "cat_channels_32_32",
        &x,
        |x| kernels::cat_channels(x.clone(), x),
        |x| Tensor::cat(vec![x.clone(), x], 1),
    );
    // An attention block's way in and out: pixels to tokens, a token-wise op, and back.
    compare(
        c,
        "tokens_round_trip",
        &x,
        |x| kernels::tokens_to_pixels(kernels::pixels_to_tokens(x).mul_scalar(2.0), 32, 32),
        |x| {
            let tokens = x.reshape([16, 32, 32 * 32]).swap_dims(1, 2).mul_scalar(2.0);
            tokens.swap_dims(1, 2).reshape([16, 32, 32, 32])
        },
    );
    // The tiny UNet's attention at 16×16: 256 tokens, 8 heads of 8 channels, packed Q, K, V.
    let scores = random([16, 8, 256, 256]);
    compare(
        c,
        "softmax_16x8x256x256",
        &scores,
        |x| kernels::softmax(x, 3),
        |x| activation::softmax(x, 3),
    );
    let qkv = Tensor::<Flex, 3>::random([16, 256, 3 * 64], Distribution::Normal(0.0, 1.0), &device);
    let scale = 1.0 / 8f64.sqrt();
    compare(
        c,
        "attention_16x256x64_8heads",
        &qkv,
        |qkv| kernels::multi_head_attention(qkv, 8, scale),
        |qkv| attention_with_burn_ops(qkv, 8, scale),
    );
}

/// Multi-head attention on packed `[b, t, 3·c]` projections with burn's ops, as the UNet ran it
/// before Kiln's kernel.
fn attention_with_burn_ops(qkv: Tensor<B, 3>, heads: usize, scale: f64) -> Tensor<B, 3> {
    let [batch, tokens, width] = qkv.dims();
    let channels = width / 3;
    let part = |index: usize| {
        qkv.clone()
            .narrow(2, index * channels, channels)
            .reshape([batch, tokens, heads, channels / heads])
            .swap_dims(1, 2)
    };
    activation::softmax(part(0).matmul(part(1).transpose()).mul_scalar(scale), 3)
        .matmul(part(2))
        .swap_dims(1, 2)
        .reshape([batch, tokens, channels])
}

criterion_group!(benches, unet, kernels);
criterion_main!(benches);
