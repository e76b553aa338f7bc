//! `nn.Linear` with PyTorch's default initialisation.
//!
//! tch's `nn::linear` draws weights with Kaiming-uniform for ReLU (bound
//! sqrt(6 / fan_in)) and zero biases; PyTorch draws both from
//! U(-1/sqrt(fan_in), 1/sqrt(fan_in)). The coursework's curves assume
//! PyTorch's, so the models build their output layers here.

use tch::nn::{self, Init};

/// `nn.Linear(in_features, out_features)` at `path` (`weight [out, in]`,
/// `bias [out]`), initialised as PyTorch does.
pub fn torch_linear(path: &nn::Path, in_features: i64, out_features: i64) -> nn::Linear {
    let k = 1.0 / (in_features as f64).sqrt();
    let init = Init::Uniform { lo: -k, up: k };
    nn::Linear {
        ws: path.var("weight", &[out_features, in_features], init),
        bs: Some(path.var("bias", &[out_features], init)),
    }
}
