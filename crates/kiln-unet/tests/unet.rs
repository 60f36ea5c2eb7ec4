//! The UNet's architecture against diffusers' `UNet2DModel` (parameter counts from
//! `fixtures/param_counts.py`), its shapes, conditioning and input checks.

use burn::backend::Flex;
use burn::module::Module;
use burn::tensor::{Int, Tensor};
use kiln_unet::{UNetConfig, UNetError};

type B = Flex;

/// Parameter counts printed by `fixtures/param_counts.py` for the same architectures.
#[test]
fn parameter_counts_equal_diffusers() {
    let device = Default::default();
    let count = |config: UNetConfig| config.init::<B>(&device).unwrap().num_params();
    assert_eq!(count(UNetConfig::tiny(1)), 701_345);
    assert_eq!(
        count(UNetConfig::tiny(3).with_num_class_embeds(Some(11))),
        703_907
    );
    assert_eq!(count(UNetConfig::faces32(1)), 2_734_945);
    assert_eq!(count(UNetConfig::faces64(3)), 27_659_075);
    assert_eq!(count(UNetConfig::ddpm_cifar10()), 35_746_307);
    assert_eq!(count(UNetConfig::ddpm_celebahq256()), 113_673_219);
}

#[test]
fn output_has_the_input_shape() {
    let device = Default::default();
    for (config, size) in [
        (UNetConfig::tiny(1), 16),
        (UNetConfig::tiny(3), 24),
        (UNetConfig::ddpm_cifar10(), 32),
    ] {
        let model = config.init::<B>(&device).unwrap();
        let channels = config.in_channels;
        let x = Tensor::<B, 4>::ones([2, channels, size, size], &device);
        let t = Tensor::<B, 1>::from_floats([3.0, 700.5], &device);
        let y = model.forward(x, t, None).unwrap();
        assert_eq!(y.dims(), [2, config.out_channels, size, size]);
    }
}

#[test]
fn class_labels_change_the_output_and_none_is_the_null_label() {
    let device = Default::default();
    let model = UNetConfig::tiny(1)
        .with_num_class_embeds(Some(4))
        .init::<B>(&device)
        .unwrap();
    let x = Tensor::<B, 4>::ones([2, 1, 8, 8], &device);
    let t = Tensor::<B, 1>::from_floats([10.0, 10.0], &device);
    let run = |labels: Option<[i64; 2]>| {
        let labels = labels.map(|l| Tensor::<B, 1, Int>::from_ints(l, &device));
        model.forward(x.clone(), t.clone(), labels).unwrap()
    };
    let difference =
        |a: Tensor<B, 4>, b: Tensor<B, 4>| -> f32 { (a - b).abs().max().into_scalar() };
    assert!(difference(run(Some([0, 0])), run(Some([1, 1]))) > 1e-4);
    assert_eq!(difference(run(None), run(Some([3, 3]))), 0.0);
}

#[test]
fn timesteps_change_the_output() {
    let device = Default::default();
    let model = UNetConfig::tiny(1).init::<B>(&device).unwrap();
    let x = Tensor::<B, 4>::ones([1, 1, 8, 8], &device);
    let at = |t: f32| {
        model
            .forward(x.clone(), Tensor::from_floats([t], &device), None)
            .unwrap()
    };
    let difference: f32 = (at(1.0) - at(900.0)).abs().max().into_scalar();
    assert!(difference > 1e-4);
}

#[test]
fn bad_inputs_and_configs_are_errors() {
    let device = Default::default();
    let model = UNetConfig::tiny(1).init::<B>(&device).unwrap();
    let t = Tensor::<B, 1>::from_floats([1.0], &device);
    let odd = Tensor::<B, 4>::ones([1, 1, 9, 8], &device);
    assert!(matches!(
        model.forward(odd, t.clone(), None),
        Err(UNetError::Input { .. })
    ));
    let rgb = Tensor::<B, 4>::ones([1, 3, 8, 8], &device);
    assert!(matches!(
        model.forward(rgb, t.clone(), None),
        Err(UNetError::Input { .. })
    ));
    let gray = Tensor::<B, 4>::ones([1, 1, 8, 8], &device);
    let labels = Some(Tensor::<B, 1, Int>::from_ints([0], &device));
    assert!(matches!(
        model.forward(gray, t, labels),
        Err(UNetError::Input { .. })
    ));

    let bad = |config: UNetConfig| config.init::<B>(&device).unwrap_err();
    assert!(matches!(
        bad(UNetConfig::new(vec![], vec![])),
        UNetError::Config {
            field: "block_out_channels",
            ..
        }
    ));
    let deep = bad(UNetConfig::new(vec![32; 65], vec![false; 65]));
    assert!(deep.to_string().contains("65 levels; at most 32"), "{deep}");
    assert!(matches!(
        bad(UNetConfig::new(vec![32], vec![true, false])),
        UNetError::Config {
            field: "attention",
            ..
        }
    ));
    assert!(matches!(
        bad(UNetConfig::new(vec![30], vec![false])),
        UNetError::Config {
            field: "block_out_channels",
            ..
        }
    ));
    assert!(matches!(
        bad(UNetConfig::new(vec![32], vec![true]).with_attention_head_dim(Some(5))),
        UNetError::Config {
            field: "attention_head_dim",
            ..
        }
    ));
    for eps in [0.0, -1e-5, f64::NAN] {
        assert!(matches!(
            bad(UNetConfig::new(vec![32], vec![false]).with_norm_eps(eps)),
            UNetError::Config {
                field: "norm_eps",
                ..
            }
        ));
    }
}

/// Every parameter (the class embedding included) gets a non-zero gradient from a loss on the
/// output.
#[test]
fn gradients_reach_every_parameter() {
    use burn::backend::Autodiff;
    use burn::backend::autodiff::grads::Gradients;
    use burn::module::{ModuleVisitor, Param};

    type A = Autodiff<B>;
    struct Check<'a> {
        grads: &'a Gradients,
        seen: usize,
        zero: Vec<String>,
    }
    impl ModuleVisitor<A> for Check<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<A, D>>) {
            self.seen += 1;
            let gradient = param.val().grad(self.grads);
            let magnitude: f32 = gradient.map_or(0.0, |g| g.abs().sum().into_scalar());
            if magnitude == 0.0 {
                self.zero.push(format!("{:?}", param.val().dims()));
            }
        }
    }

    let device = Default::default();
    let config = UNetConfig::tiny(1)
        .with_scale_shift(true)
        .with_num_class_embeds(Some(3));
    let model = config.init::<A>(&device).unwrap();
    let x = Tensor::<A, 4>::ones([2, 1, 8, 8], &device);
    let t = Tensor::<A, 1>::from_floats([3.0, 600.0], &device);
    let labels = Tensor::<A, 1, Int>::from_ints([0, 1], &device);
    let loss = model
        .forward(x, t, Some(labels))
        .unwrap()
        .powi_scalar(2)
        .mean();
    let grads = loss.backward();
    let mut check = Check {
        grads: &grads,
        seen: 0,
        zero: Vec::new(),
    };
    model.visit(&mut check);
    assert!(check.seen > 20);
    // Labels 0 and 1 are used, so only the null label's row (index 2) has no gradient: the
    // embedding table is one parameter, whose gradient is non-zero as a whole.
    assert!(
        check.zero.is_empty(),
        "parameters without gradient: {:?}",
        check.zero
    );
}
