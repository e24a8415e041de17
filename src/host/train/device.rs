//! Where training runs: burn's Flex CPU backend (always built), or CUDA with
//! the `cuda` cargo feature (`cargo build --release --features cuda`; burn's
//! CubeCL CUDA backend, loading the driver at run time). The model code only
//! ever sees a `burn::tensor::Device`.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

/// `cpu`, or `cuda[:N]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TrainDevice {
    #[default]
    Cpu,
    Cuda(usize),
}

impl FromStr for TrainDevice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let d = match s {
            "cpu" => TrainDevice::Cpu,
            "cuda" => TrainDevice::Cuda(0),
            _ => match s.strip_prefix("cuda:").map(str::parse) {
                Some(Ok(n)) => TrainDevice::Cuda(n),
                _ => return Err(format!("device `{s}`: expected cpu, cuda or cuda:N")),
            },
        };
        if matches!(d, TrainDevice::Cuda(_)) && !cfg!(feature = "cuda") {
            return Err(format!(
                "device `{s}`: this vipnas was built without CUDA (cargo build --release --features cuda)"
            ));
        }
        Ok(d)
    }
}

impl fmt::Display for TrainDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrainDevice::Cpu => f.write_str("cpu"),
            TrainDevice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl TrainDevice {
    /// The burn device, with autodiff.
    pub fn autodiff(&self) -> Device {
        match self {
            TrainDevice::Cpu => Device::flex().autodiff(),
            #[cfg(feature = "cuda")]
            TrainDevice::Cuda(n) => Device::cuda(*n).autodiff(),
            #[cfg(not(feature = "cuda"))]
            TrainDevice::Cuda(_) => unreachable!("parsing refuses cuda without the feature"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_cuda_needs_its_feature() {
        assert_eq!("cpu".parse::<TrainDevice>(), Ok(TrainDevice::Cpu));
        assert_eq!("gpu".parse::<TrainDevice>().unwrap_err(), "device `gpu`: expected cpu, cuda or cuda:N");
        if cfg!(feature = "cuda") {
            assert_eq!("cuda:1".parse::<TrainDevice>(), Ok(TrainDevice::Cuda(1)));
        } else {
            assert!("cuda".parse::<TrainDevice>().unwrap_err().contains("built without CUDA"));
        }
    }
}
