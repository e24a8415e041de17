//! Architecture vocabulary shared by device and host: the search spaces of
//! Tables 1–3, `Subnet` choices, their layer graphs, costs and weights.

pub mod blocks;
pub mod cost;
pub mod elastic;
pub mod lower;
pub mod net;
pub mod published;
pub mod rng;
pub mod space;
pub mod subnet;
pub mod tables;
pub mod temporal;
pub mod weights;

pub use cost::Cost;
pub use elastic::SupernetLayout;
pub use lower::InputSize;
pub use net::{Network, Shape};
pub use space::{SearchSpace, SpaceName};
pub use subnet::{Sample, Subnet, SubnetError};
pub use temporal::{Fusion, FusionOp, TemporalNet};
pub use weights::{Tensor, Weights};

#[cfg(test)]
mod tests;
