//! The layers of makemore part 5 ("Building makemore Part 5: Building a
//! WaveNet", Karpathy), one small module each, with the lecture's
//! initialisation and PyTorch's parameter names.
//!
//! Every layer implements tch's [`ModuleT`]: `forward_t(xs, train)`; `train`
//! selects BatchNorm1d's batch statistics (and updates its running
//! statistics) or its running statistics. Parameters live in a
//! [`nn::VarStore`] under PyTorch's names (`weight`, `bias`, `running_mean`,
//! `running_var`), the running statistics as non-trainable variables so they
//! are saved in checkpoints.

use std::fmt;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// `Embedding(num_embeddings, embedding_dim)`: a lookup table `weight [V, D]`
/// drawn from N(0, 1) as the lecture's `torch.randn((num_embeddings, embedding_dim))`.
#[derive(Debug)]
pub struct Embedding {
    pub weight: Tensor,
}

impl Embedding {
    pub fn new(path: nn::Path, num_embeddings: i64, embedding_dim: i64) -> Self {
        Self { weight: path.randn_standard("weight", &[num_embeddings, embedding_dim]) }
    }
}

impl ModuleT for Embedding {
    /// `[B, T]` int64 indices -> `[B, T, D]`.
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        Tensor::embedding(&self.weight, xs, -1, false, false)
    }
}

/// `FlattenConsecutive(n)`: concatenates `n` consecutive time steps,
/// `[B, T, C] -> [B, T/n, C*n]`, and drops the time dimension when one group
/// remains (`[B, 1, C*n] -> [B, C*n]`), as the lecture's
/// `x.view(B, T//n, C*n)` followed by `squeeze(1)`.
#[derive(Debug, Clone, Copy)]
pub struct FlattenConsecutive {
    pub n: i64,
}

impl FlattenConsecutive {
    pub fn new(n: i64) -> Self {
        assert!(n > 0, "FlattenConsecutive: n must be positive, got {n}");
        Self { n }
    }
}

impl ModuleT for FlattenConsecutive {
    /// `[B, T, C] -> [B, T/n, C*n]`, or `[B, C*n]` when `T == n`.
    /// Panics when `T` is not a multiple of `n` (the model's configuration
    /// checks `block_size` up front, so this is a programming error).
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        let (b, t, c) = xs.size3().expect("FlattenConsecutive expects [B, T, C]");
        assert!(t % self.n == 0, "FlattenConsecutive({}): T = {t} is not a multiple", self.n);
        let out = xs.reshape([b, t / self.n, c * self.n]); // [B, T/n, C*n]
        if t / self.n == 1 {
            out.squeeze_dim(1) // [B, C*n]
        } else {
            out
        }
    }
}

/// `Linear(fan_in, fan_out, bias)`: `y = x Wᵀ + b` over the last dimension.
///
/// Stored as PyTorch's `nn.Linear`, `weight [fan_out, fan_in]`, so a PyTorch
/// state dict loads unchanged. The lecture keeps `W [fan_in, fan_out]` and
/// computes `x @ W`; its initialisation, `randn(fan_in, fan_out) / fan_in**0.5`
/// (every entry i.i.d. N(0, 1/fan_in)), is the same distribution in either
/// layout, so this layer draws `weight` from N(0, (gain/√fan_in)²) with
/// `gain = 1` (the output layer uses 0.1: the lecture's `weight *= 0.1`).
/// The bias, when present, starts at zero.
#[derive(Debug)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

/// Options of [`Linear`]; the default is the lecture's `Linear(.., bias=True)`.
#[derive(Debug, Clone, Copy)]
pub struct LinearConfig {
    pub bias: bool,
    /// Multiplies the weight's standard deviation `1/√fan_in`.
    pub gain: f64,
}

impl Default for LinearConfig {
    fn default() -> Self {
        Self { bias: true, gain: 1.0 }
    }
}

impl Linear {
    pub fn new(path: nn::Path, fan_in: i64, fan_out: i64, config: LinearConfig) -> Self {
        let std = config.gain / (fan_in as f64).sqrt();
        let weight = path.randn("weight", &[fan_out, fan_in], 0.0, std);
        let bias = config.bias.then(|| path.zeros("bias", &[fan_out]));
        Self { weight, bias }
    }
}

impl ModuleT for Linear {
    /// `[..., fan_in] -> [..., fan_out]`.
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.linear(&self.weight, self.bias.as_ref())
    }
}

/// Options of [`BatchNorm1d`]; the default is the lecture's layer.
#[derive(Debug, Clone, Copy)]
pub struct BatchNorm1dConfig {
    pub eps: f64,
    pub momentum: f64,
    /// Normalise a training batch with the unbiased variance (divide by
    /// `n - 1`), as the lecture's `x.var(dim, keepdim=True)` does (`true`, the
    /// default); `false` normalises with the biased variance as PyTorch's
    /// `nn.BatchNorm1d`. The running variance is the unbiased one in both.
    pub unbiased: bool,
}

impl Default for BatchNorm1dConfig {
    fn default() -> Self {
        Self { eps: 1e-5, momentum: 0.1, unbiased: true }
    }
}

/// `BatchNorm1d(dim)` over the last dimension, with statistics over every
/// other dimension: dim 0 of a `[B, C]` input, dims (0, 1) of a `[B, T, C]`
/// input (the lecture's fix of its own bug, which first reduced dim 0 only).
///
/// Training: `y = γ (x - mean) / √(var + eps) + β` with the batch's mean and
/// (by default unbiased) variance, and `running = (1 - momentum) running +
/// momentum · stat` for both statistics. Evaluation: the running statistics.
/// γ (`weight`) starts at ones, β (`bias`) at zeros, `running_mean` at zeros
/// and `running_var` at ones.
///
/// The computation runs in libtorch's fused `batch_norm` kernel (one op
/// forward and one backward instead of the lecture's ten) on the `[N, C]`
/// view of the input. The kernel normalises with the biased variance
/// `v_b = v_u (n-1)/n`; the lecture's unbiased normalisation is the exact
/// identity `γ (x-m)/√(v_u + eps) = γ√((n-1)/n) · (x-m)/√(v_b + eps(n-1)/n)`,
/// so training passes `γ√((n-1)/n)` and `eps (n-1)/n`. The kernel updates the
/// running variance with `v_u`, as the lecture. The tests check both modes
/// against the lecture's formula written out and against libtorch's
/// `batch_norm` on the channels-first layout.
pub struct BatchNorm1d {
    pub weight: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub config: BatchNorm1dConfig,
}

impl fmt::Debug for BatchNorm1d {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BatchNorm1d({}, {:?})", self.weight.size()[0], self.config)
    }
}

impl BatchNorm1d {
    pub fn new(path: nn::Path, dim: i64, config: BatchNorm1dConfig) -> Self {
        Self {
            weight: path.ones("weight", &[dim]),
            bias: path.zeros("bias", &[dim]),
            running_mean: path.zeros_no_train("running_mean", &[dim]),
            running_var: path.ones_no_train("running_var", &[dim]),
            config,
        }
    }
}

impl ModuleT for BatchNorm1d {
    /// `[B, C]` or `[B, T, C]` -> the same shape. In training the running
    /// statistics are updated in place (without gradient).
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let shape = xs.size();
        let c = *shape.last().expect("BatchNorm1d expects [B, C] or [B, T, C]");
        assert!(
            shape.len() == 2 || shape.len() == 3,
            "BatchNorm1d expects [B, C] or [B, T, C], got {shape:?}"
        );
        let flat = xs.reshape([-1, c]); // [N, C], N = B or B*T
        let n = flat.size()[0];
        let BatchNorm1dConfig { eps, momentum, unbiased } = self.config;
        let out = if train && unbiased {
            let k = (n - 1) as f64 / n as f64;
            let weight = &self.weight * k.sqrt();
            flat.batch_norm(
                Some(&weight),
                Some(&self.bias),
                Some(&self.running_mean),
                Some(&self.running_var),
                true,
                momentum,
                eps * k,
                false,
            )
        } else {
            flat.batch_norm(
                Some(&self.weight),
                Some(&self.bias),
                Some(&self.running_mean),
                Some(&self.running_var),
                train,
                momentum,
                eps,
                false,
            )
        };
        out.reshape(&shape[..])
    }
}

/// `Tanh`: elementwise `tanh`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tanh;

impl ModuleT for Tanh {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.tanh()
    }
}

/// `Sequential(layers)`: applies its layers in order, passing `train` to each.
/// Build each layer under `path / "layers" / i` so its variables are named
/// `layers.{i}.weight` etc., as the lecture's `Sequential.layers` list.
#[derive(Debug, Default)]
pub struct Sequential {
    pub layers: Vec<Box<dyn ModuleT>>,
}

impl Sequential {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a layer.
    pub fn push(&mut self, layer: impl ModuleT + 'static) {
        self.layers.push(Box::new(layer));
    }

    /// How many layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

impl ModuleT for Sequential {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut iter = self.layers.iter();
        let Some(first) = iter.next() else { return xs.shallow_clone() };
        iter.fold(first.forward_t(xs, train), |x, layer| layer.forward_t(&x, train))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    fn close(a: &Tensor, b: &Tensor, tol: f64) -> bool {
        let diff = (a - b).abs().max().double_value(&[]);
        diff <= tol
    }

    #[test]
    fn flatten_consecutive_shapes() {
        let x = Tensor::arange(2 * 8 * 3, (Kind::Float, Device::Cpu)).reshape([2, 8, 3]);
        let f = FlattenConsecutive::new(2);
        let y = f.forward_t(&x, true);
        assert_eq!(y.size(), [2, 4, 6]);
        // consecutive steps concatenated: step 0 then step 1 of sample 0
        let expected = Tensor::from_slice(&[0.0f32, 1., 2., 3., 4., 5.]);
        assert!(close(&y.get(0).get(0), &expected, 0.0));
        let y = f.forward_t(&y, true);
        assert_eq!(y.size(), [2, 2, 12]);
        let y = f.forward_t(&y, true);
        assert_eq!(y.size(), [2, 24], "one group left: the time dimension is squeezed");
        // the whole context, in order
        assert!(close(&y, &x.reshape([2, 24]), 0.0));
        // a group of 4 at once
        let y = FlattenConsecutive::new(4).forward_t(&x, false);
        assert_eq!(y.size(), [2, 2, 12]);
        // batch of one keeps its batch dimension
        let y = FlattenConsecutive::new(8).forward_t(&x.narrow(0, 0, 1), false);
        assert_eq!(y.size(), [1, 24]);
    }

    #[test]
    #[should_panic(expected = "not a multiple")]
    fn flatten_consecutive_rejects_ragged_time() {
        let x = Tensor::zeros([2, 6, 3], (Kind::Float, Device::Cpu));
        let _ = FlattenConsecutive::new(4).forward_t(&x, true);
    }

    /// The lecture's BatchNorm1d written out (training mode): statistics over
    /// `dims`, unbiased variance, returns (out, new running mean, new running var).
    fn lecture_bn(
        x: &Tensor,
        dims: &[i64],
        gamma: &Tensor,
        beta: &Tensor,
        rm: &Tensor,
        rv: &Tensor,
    ) -> (Tensor, Tensor, Tensor) {
        let xmean = x.mean_dim(dims, true, Kind::Float);
        let xvar = x.var_dim(dims, true, true);
        let xhat = (x - &xmean) / (&xvar + 1e-5).sqrt();
        let out = gamma * xhat + beta;
        let c = *x.size().last().unwrap();
        let rm = rm * 0.9 + xmean.reshape([c]) * 0.1;
        let rv = rv * 0.9 + xvar.reshape([c]) * 0.1;
        (out, rm, rv)
    }

    fn bn_with_random_affine(vs: &nn::VarStore, c: i64, config: BatchNorm1dConfig) -> BatchNorm1d {
        let bn = BatchNorm1d::new(vs.root(), c, config);
        tch::no_grad(|| {
            bn.weight
                .shallow_clone()
                .copy_(&(Tensor::randn([c], (Kind::Float, Device::Cpu)) + 1.0));
            bn.bias.shallow_clone().copy_(&Tensor::randn([c], (Kind::Float, Device::Cpu)));
            bn.running_mean.shallow_clone().copy_(&Tensor::randn([c], (Kind::Float, Device::Cpu)));
            bn.running_var.shallow_clone().copy_(&Tensor::rand([c], (Kind::Float, Device::Cpu)));
        });
        bn
    }

    #[test]
    fn batchnorm_lecture_mode_matches_the_lecture_formula_2d_and_3d() {
        tch::manual_seed(1);
        for (shape, dims) in [(vec![32i64, 5], vec![0i64]), (vec![32, 4, 5], vec![0, 1])] {
            let vs = nn::VarStore::new(Device::Cpu);
            let bn = bn_with_random_affine(&vs, 5, BatchNorm1dConfig::default());
            let x = Tensor::randn(&shape[..], (Kind::Float, Device::Cpu)) * 3.0 + 1.5;
            let (want, rm, rv) = lecture_bn(
                &x,
                &dims,
                &bn.weight.detach(),
                &bn.bias.detach(),
                &bn.running_mean.copy(),
                &bn.running_var.copy(),
            );
            let got = bn.forward_t(&x, true);
            assert_eq!(got.size(), shape);
            assert!(close(&got, &want, 1e-5), "output, shape {shape:?}");
            assert!(close(&bn.running_mean, &rm, 1e-5), "running mean, shape {shape:?}");
            assert!(close(&bn.running_var, &rv, 1e-4), "running var, shape {shape:?}");
        }
    }

    #[test]
    fn batchnorm_3d_reduces_over_batch_and_time_not_batch_only() {
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = BatchNorm1d::new(vs.root(), 3, BatchNorm1dConfig::default());
        // each time step has its own offset: reducing over dim 0 only (the
        // lecture's bug) would remove it, reducing over (0, 1) keeps it
        let offsets = Tensor::from_slice(&[-2.0f32, 0.0, 2.0, 4.0]).reshape([1, 4, 1]);
        let x = Tensor::randn([64, 4, 3], (Kind::Float, Device::Cpu)) + offsets;
        let y = bn.forward_t(&x, true);
        let per_step = y.mean_dim(&[0i64, 2][..], false, Kind::Float);
        let step_means = Vec::<f32>::try_from(per_step).unwrap();
        assert!(step_means[0] < -0.8 && step_means[3] > 0.8, "{step_means:?}");
        // the running mean saw every step: close to 0.1 * (mean offset 1.0)
        let rm = Vec::<f32>::try_from(&bn.running_mean).unwrap();
        for m in rm {
            assert!((m - 0.1).abs() < 0.03, "running mean {m}");
        }
    }

    #[test]
    fn batchnorm_pytorch_mode_matches_libtorch_channels_first() {
        tch::manual_seed(3);
        let config = BatchNorm1dConfig { unbiased: false, ..Default::default() };
        for shape in [vec![16i64, 6], vec![16, 4, 6]] {
            let vs = nn::VarStore::new(Device::Cpu);
            let bn = bn_with_random_affine(&vs, 6, config);
            let (w, b) = (bn.weight.detach(), bn.bias.detach());
            let (rm, rv) = (bn.running_mean.copy(), bn.running_var.copy());
            let x = Tensor::randn(&shape[..], (Kind::Float, Device::Cpu)) * 2.0 - 1.0;
            // libtorch wants channels at dim 1: [B, T, C] -> [B, C, T]
            let chan_first = if shape.len() == 3 { x.permute([0, 2, 1]) } else { x.copy() };
            for train in [true, false] {
                let want = chan_first.batch_norm(
                    Some(&w),
                    Some(&b),
                    Some(&rm),
                    Some(&rv),
                    train,
                    0.1,
                    1e-5,
                    false,
                );
                let want = if shape.len() == 3 { want.permute([0, 2, 1]) } else { want };
                let got = bn.forward_t(&x, train);
                assert!(close(&got, &want, 1e-5), "shape {shape:?} train {train}");
                assert!(close(&bn.running_mean, &rm, 1e-6), "running mean {shape:?}");
                assert!(close(&bn.running_var, &rv, 1e-6), "running var {shape:?}");
            }
        }
    }

    #[test]
    fn batchnorm_eval_uses_running_statistics_and_leaves_them() {
        tch::manual_seed(4);
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = bn_with_random_affine(&vs, 4, BatchNorm1dConfig::default());
        let (rm, rv) = (bn.running_mean.copy(), bn.running_var.copy());
        let x = Tensor::randn([8, 2, 4], (Kind::Float, Device::Cpu));
        let want = (&x - &rm) / (&rv + 1e-5).sqrt() * bn.weight.detach() + bn.bias.detach();
        let got = bn.forward_t(&x, false);
        assert!(close(&got, &want, 1e-5));
        assert!(close(&bn.running_mean, &rm, 0.0) && close(&bn.running_var, &rv, 0.0));
        // a single example in evaluation mode is fine (sampling)
        assert_eq!(bn.forward_t(&x.narrow(0, 0, 1).select(1, 0), false).size(), [1, 4]);
    }

    #[test]
    fn batchnorm_running_statistics_converge_to_the_data() {
        tch::manual_seed(5);
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = BatchNorm1d::new(vs.root(), 2, BatchNorm1dConfig::default());
        for _ in 0..200 {
            let x = Tensor::randn([256, 2], (Kind::Float, Device::Cpu)) * 3.0 + 5.0;
            let _ = bn.forward_t(&x, true);
        }
        let rm = Vec::<f32>::try_from(&bn.running_mean).unwrap();
        let rv = Vec::<f32>::try_from(&bn.running_var).unwrap();
        for (m, v) in rm.iter().zip(&rv) {
            assert!((m - 5.0).abs() < 0.2, "mean {m}");
            assert!((v - 9.0).abs() < 1.0, "var {v}");
        }
    }

    #[test]
    fn batchnorm_gradients_match_the_lecture_formula() {
        tch::manual_seed(6);
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = bn_with_random_affine(&vs, 3, BatchNorm1dConfig::default());
        let x = Tensor::randn([10, 2, 3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let target = Tensor::randn([10, 2, 3], (Kind::Float, Device::Cpu));
        let gamma = bn.weight.detach().set_requires_grad(true);
        let (rm, rv) = (bn.running_mean.copy(), bn.running_var.copy());
        let (want, _, _) = lecture_bn(&x, &[0, 1], &gamma, &bn.bias.detach(), &rm, &rv);
        let want_grads =
            Tensor::run_backward(&[(want * &target).sum(Kind::Float)], &[&x, &gamma], false, false);
        let got = bn.forward_t(&x, true);
        let got_grads = Tensor::run_backward(
            &[(got * &target).sum(Kind::Float)],
            &[&x, &bn.weight],
            false,
            false,
        );
        assert!(close(&got_grads[0], &want_grads[0], 1e-5), "dx");
        assert!(close(&got_grads[1], &want_grads[1], 1e-4), "dgamma");
    }

    #[test]
    fn linear_initialisation_and_names() {
        tch::manual_seed(7);
        let vs = nn::VarStore::new(Device::Cpu);
        let lin = Linear::new(vs.root() / "l", 400, 300, LinearConfig { bias: false, gain: 1.0 });
        assert_eq!(lin.weight.size(), [300, 400]);
        let std = lin.weight.std(true).double_value(&[]);
        assert!((std - 0.05).abs() < 0.002, "std {std}, want 1/sqrt(400)");
        let out = Linear::new(vs.root() / "o", 400, 27, LinearConfig { bias: true, gain: 0.1 });
        let std = out.weight.std(true).double_value(&[]);
        assert!((std - 0.005).abs() < 0.0005, "std {std}, want 0.1/sqrt(400)");
        let mut names: Vec<_> = vs.variables().into_keys().collect();
        names.sort();
        assert_eq!(names, ["l.weight", "o.bias", "o.weight"]);
        let x = Tensor::randn([5, 3, 400], (Kind::Float, Device::Cpu));
        let want = x.matmul(&out.weight.tr()) + out.bias.as_ref().unwrap();
        assert!(close(&out.forward_t(&x, true), &want, 1e-5));
    }
}
