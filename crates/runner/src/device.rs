//! `--device auto|cpu|cuda`, resolved once for every command.

use anyhow::bail;
use clap::ValueEnum;
use tch::{Cuda, Device};

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceArg {
    /// CUDA device 0 when libtorch sees one, else the CPU.
    Auto,
    Cpu,
    /// CUDA device 0; an error (never a silent CPU run) when there is none.
    Cuda,
}

impl DeviceArg {
    pub fn resolve(self) -> anyhow::Result<Device> {
        match self {
            Self::Cpu => Ok(Device::Cpu),
            Self::Auto => Ok(Device::cuda_if_available()),
            Self::Cuda if Cuda::is_available() => Ok(Device::Cuda(0)),
            Self::Cuda => bail!(
                "--device cuda: libtorch sees no CUDA device (Cuda::is_available() is false). \
                 Check `nvidia-smi`, that the installed torch is a CUDA build (`rnnlab info`), \
                 or run with --device cpu"
            ),
        }
    }
}
