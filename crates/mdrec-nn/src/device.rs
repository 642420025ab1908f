//! Compute device selection.
//!
//! The default is burn's `flex` CPU backend. A CUDA device is available when the crate is
//! built with the `cuda` feature. Training uses the autodiff flavour of the device; evaluation
//! uses the plain one, so inference pays no autodiff bookkeeping.

use burn::tensor::Device;

/// Which device to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// burn `flex` CPU backend.
    Cpu,
    /// CUDA device 0 (needs the `cuda` feature).
    Cuda,
}

impl DeviceKind {
    /// Parse `cpu` or `cuda`.
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceKind::Cpu),
            "cuda" => Ok(DeviceKind::Cuda),
            other => Err(format!(
                "unknown device `{other}`, expected `cpu` or `cuda`"
            )),
        }
    }

    /// The plain (inference) device.
    pub fn device(self) -> Result<Device, String> {
        match self {
            DeviceKind::Cpu => Ok(Device::flex()),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => Ok(Device::cuda(0)),
            #[cfg(not(feature = "cuda"))]
            DeviceKind::Cuda => Err(
                "device `cuda` needs a build with `--features cuda` (mdrec-nn/cuda)".to_string(),
            ),
        }
    }
}

/// The default CPU device, without autodiff.
pub fn cpu() -> Device {
    Device::flex()
}
