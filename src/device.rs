//! Picking a backend and device by name at run time.
//!
//! Kiln's crates are generic over `B: Backend`; a program that lets its user choose the device
//! writes its work once as a [`BackendTask`] and hands it to [`run_on`] with a [`DeviceSpec`]
//! parsed from the command line (`flex`, `ndarray`, `wgpu`, `wgpu:N`, `cuda`, `cuda:N`).
//!
//! A backend that was not compiled in, or a GPU that this machine does not have, is a
//! [`DeviceError`], not a panic: the device is probed with a one-element computation first.
//! Data-parallel work on several devices of one backend is a [`MultiDeviceTask`] run with
//! [`run_on_all`]. Before a GPU backend's first device starts, its kernel and autotune caches
//! are pointed at Kiln's per-user folder (`gpu_cache`).

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use burn::tensor::{Tensor, backend::Backend};
use thiserror::Error;

/// A compute device named on a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// `flex`: burn's pure-Rust CPU backend (feature `flex`, the default).
    #[default]
    Flex,
    /// `ndarray`: burn's ndarray CPU backend (feature `ndarray`).
    NdArray,
    /// `wgpu` or `wgpu:N`: the default or the N-th discrete GPU through wgpu (feature `wgpu`).
    Wgpu(Option<usize>),
    /// `cuda` or `cuda:N`: the N-th CUDA GPU, 0 by default (feature `cuda`).
    Cuda(usize),
}

/// Why a device cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DeviceError {
    /// The name is not one of the known devices.
    #[error("unknown device {0:?}; expected flex, ndarray, wgpu, wgpu:N, cuda or cuda:N")]
    Unknown(String),
    /// The backend exists but this build does not include it.
    #[error("this build has no {device} backend; rebuild with `--features {feature}`")]
    NotCompiled {
        /// The requested device.
        device: DeviceSpec,
        /// The Cargo feature that enables it.
        feature: &'static str,
    },
    /// No device was named.
    #[error("no device given")]
    NoDevices,
    /// Devices of different backends were named together.
    #[error("{0} and {1} belong to different backends; train on devices of one backend")]
    Mixed(DeviceSpec, DeviceSpec),
    /// The backend is compiled in but the device failed its first computation (no such GPU,
    /// no driver).
    #[error("the {device} device is not usable on this machine: {reason}")]
    Unavailable {
        /// The requested device.
        device: DeviceSpec,
        /// What the backend reported.
        reason: String,
    },
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        let unknown = || DeviceError::Unknown(name.to_string());
        let (kind, index) = match name.split_once(':') {
            Some((kind, index)) => (kind, Some(index.parse().map_err(|_| unknown())?)),
            None => (name, None),
        };
        match (kind, index) {
            ("flex", None) => Ok(Self::Flex),
            ("ndarray", None) => Ok(Self::NdArray),
            ("wgpu", index) => Ok(Self::Wgpu(index)),
            ("cuda", index) => Ok(Self::Cuda(index.unwrap_or(0))),
            _ => Err(unknown()),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Flex => write!(f, "flex"),
            Self::NdArray => write!(f, "ndarray"),
            Self::Wgpu(None) => write!(f, "wgpu"),
            Self::Wgpu(Some(index)) => write!(f, "wgpu:{index}"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

/// Work written once for any backend, run on the one the user picks with [`run_on`].
pub trait BackendTask {
    /// What the work returns.
    type Output;

    /// Does the work on `device` of backend `B`.
    fn run<B: Backend>(self, device: B::Device) -> Self::Output;
}

/// Work that uses several devices of one backend (data-parallel training), run with
/// [`run_on_all`].
pub trait MultiDeviceTask {
    /// What the work returns.
    type Output;

    /// Does the work on `devices` (at least one) of backend `B`.
    fn run<B: Backend>(self, devices: Vec<B::Device>) -> Self::Output;
}

/// Runs `task` on the device `spec` names, after checking that the device works.
pub fn run_on<T: BackendTask>(spec: DeviceSpec, task: T) -> Result<T::Output, DeviceError> {
    run_on_all(&[spec], OnFirst(task))
}

/// Runs `task` on all the devices `specs` names, after checking that each works. They must
/// all belong to one backend (`cuda:0,cuda:1`, not `cuda:0,wgpu`).
pub fn run_on_all<T: MultiDeviceTask>(
    specs: &[DeviceSpec],
    task: T,
) -> Result<T::Output, DeviceError> {
    let first = *specs.first().ok_or(DeviceError::NoDevices)?;
    if let Some(other) = specs
        .iter()
        .find(|spec| feature_of(**spec) != feature_of(first))
    {
        return Err(DeviceError::Mixed(first, *other));
    }
    match first {
        #[cfg(feature = "flex")]
        DeviceSpec::Flex => {
            run_checked::<burn::backend::Flex, T>(specs, |_| Default::default(), task)
        }
        #[cfg(feature = "ndarray")]
        DeviceSpec::NdArray => {
            run_checked::<burn::backend::NdArray, T>(specs, |_| Default::default(), task)
        }
        #[cfg(feature = "wgpu")]
        DeviceSpec::Wgpu(_) => {
            use burn_wgpu::WgpuDevice;
            crate::gpu_cache::use_kiln_gpu_caches();
            let device = |spec| match spec {
                DeviceSpec::Wgpu(Some(index)) => WgpuDevice::DiscreteGpu(index),
                _ => WgpuDevice::DefaultDevice,
            };
            run_checked::<burn_wgpu::Wgpu, T>(specs, device, task)
        }
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(_) => {
            crate::gpu_cache::use_kiln_gpu_caches();
            let device = |spec| match spec {
                DeviceSpec::Cuda(index) => burn_cuda::CudaDevice { index },
                _ => burn_cuda::CudaDevice { index: 0 },
            };
            run_checked::<burn_cuda::Cuda, T>(specs, device, task)
        }
        #[allow(unreachable_patterns)]
        _ => Err(DeviceError::NotCompiled {
            device: first,
            feature: feature_of(first),
        }),
    }
}

/// A [`BackendTask`] run as a [`MultiDeviceTask`] on the first device.
struct OnFirst<T>(T);

impl<T: BackendTask> MultiDeviceTask for OnFirst<T> {
    type Output = T::Output;

    fn run<B: Backend>(self, devices: Vec<B::Device>) -> T::Output {
        let device = devices
            .into_iter()
            .next()
            .expect("run_on_all checks for one device");
        self.0.run::<B>(device)
    }
}

/// The Cargo feature that compiles in the backend of `spec`.
fn feature_of(spec: DeviceSpec) -> &'static str {
    match spec {
        DeviceSpec::Flex => "flex",
        DeviceSpec::NdArray => "ndarray",
        DeviceSpec::Wgpu(_) => "wgpu",
        DeviceSpec::Cuda(_) => "cuda",
    }
}

#[allow(dead_code)] // Unused only in a build with no backend feature at all.
fn run_checked<B: Backend, T: MultiDeviceTask>(
    specs: &[DeviceSpec],
    device_of: impl Fn(DeviceSpec) -> B::Device,
    task: T,
) -> Result<T::Output, DeviceError> {
    let devices: Vec<B::Device> = specs.iter().map(|spec| device_of(*spec)).collect();
    for (spec, device) in specs.iter().zip(&devices) {
        probe::<B>(device).map_err(|reason| DeviceError::Unavailable {
            device: *spec,
            reason,
        })?;
    }
    Ok(task.run::<B>(devices))
}

/// Runs a one-element computation on `device` and reads it back.
///
/// burn's GPU backends panic when they find no adapter or driver, often on cubecl's device
/// thread, which leaves the calling thread with only a `RecvError` (cubecl 0.10's
/// `cubecl-runtime` device handle). So the probe catches the panic and, with its own panic hook
/// installed meanwhile, records the first panic message from any thread as the reason. This is
/// the one place Kiln catches a panic.
fn probe<B: Backend>(device: &B::Device) -> Result<(), String> {
    let first_message = Arc::new(Mutex::new(None::<String>));
    let sink = Arc::clone(&first_message);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let mut first = sink.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        first.get_or_insert_with(|| info.payload_as_str().unwrap_or("a panic").to_string());
    }));
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let one = Tensor::<B, 1>::from_floats([1.0], device);
        (one + 1.0).into_data()
    }));
    std::panic::set_hook(hook);
    let message = first_message
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .take();
    match outcome {
        Ok(data) if data.to_vec::<f32>().ok() == Some(vec![2.0]) => Ok(()),
        Ok(data) => Err(format!("1 + 1 gave {data}")),
        Err(_) => Err(message.unwrap_or_else(|| "the backend panicked".to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in ["flex", "ndarray", "wgpu", "wgpu:1", "cuda:0", "cuda:3"] {
            assert_eq!(name.parse::<DeviceSpec>().unwrap().to_string(), name);
        }
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        for bad in ["gpu", "cuda:x", "flex:1", ""] {
            assert_eq!(
                bad.parse::<DeviceSpec>(),
                Err(DeviceError::Unknown(bad.into()))
            );
        }
    }

    struct AddOne;

    impl BackendTask for AddOne {
        type Output = Vec<f32>;

        fn run<B: Backend>(self, device: B::Device) -> Vec<f32> {
            let x = Tensor::<B, 1>::from_floats([1.0, 2.0], &device);
            (x + 1.0).into_data().to_vec().unwrap()
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn runs_on_the_default_device() {
        assert_eq!(run_on(DeviceSpec::Flex, AddOne), Ok(vec![2.0, 3.0]));
    }

    #[test]
    fn devices_of_several_backends_are_refused() {
        let error = run_on_all(&[DeviceSpec::Flex, DeviceSpec::Cuda(1)], OnFirst(AddOne));
        assert_eq!(
            error,
            Err(DeviceError::Mixed(DeviceSpec::Flex, DeviceSpec::Cuda(1)))
        );
        assert_eq!(
            run_on_all(&[], OnFirst(AddOne)),
            Err(DeviceError::NoDevices)
        );
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn a_backend_not_compiled_in_is_an_error() {
        let error = run_on(DeviceSpec::Cuda(0), AddOne).unwrap_err();
        assert!(error.to_string().contains("--features cuda"), "{error}");
    }
}
