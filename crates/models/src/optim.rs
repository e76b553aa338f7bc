//! Adam (Kingma & Ba 2015) with PyTorch's update rule and a state that can be
//! saved, so `rnnlab train --resume` continues a run exactly.
//!
//! tch's `nn::Adam` runs libtorch's optimiser, whose moments cannot be read
//! back out; a resumed run would restart them at zero and drift from the
//! uninterrupted one. This one keeps `exp_avg` and `exp_avg_sq` as tensors
//! beside the parameters, named after them. Tested against `nn::Adam`.

use tch::{nn, Tensor};

/// `torch.optim.Adam(params, lr, betas=(0.9, 0.999), eps=1e-8)`, or with
/// [`Adam::with_weight_decay`] `torch.optim.AdamW`.
#[derive(Debug)]
pub struct Adam {
    lr: f64,
    betas: (f64, f64),
    eps: f64,
    step: i64,
    /// Parameter name, parameter, first and second moment, weight decay.
    slots: Vec<(String, Tensor, Tensor, Tensor, f64)>,
}

impl Adam {
    /// Over every trainable variable of `vs`, in name order.
    pub fn new(vs: &nn::VarStore, lr: f64) -> Self {
        let mut vars: Vec<_> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars
            .into_iter()
            .map(|(name, p)| {
                let (m, v) = (p.zeros_like(), p.zeros_like());
                (name, p, m, v, 0.0)
            })
            .collect();
        Self { lr, betas: (0.9, 0.999), eps: 1e-8, step: 0, slots }
    }

    /// Other `(β1, β2)` than PyTorch's default `(0.9, 0.999)`.
    pub fn with_betas(mut self, betas: (f64, f64)) -> Self {
        self.betas = betas;
        self
    }

    /// AdamW (Loshchilov & Hutter 2019): before each update every parameter
    /// shrinks by `lr · weight_decay` (PyTorch's `p.mul_(1 - lr * wd)`), except
    /// the variables of `vs` in optimiser group `exempt_group` (e.g. BatchNorm's
    /// γ and β).
    pub fn with_weight_decay(
        mut self,
        vs: &nn::VarStore,
        weight_decay: f64,
        exempt_group: Option<usize>,
    ) -> Self {
        let exempt: Vec<Tensor> = {
            let vars = vs.variables_.lock().unwrap();
            vars.trainable_variables
                .iter()
                .filter(|v| Some(v.group) == exempt_group)
                .map(|v| v.tensor.shallow_clone())
                .collect()
        };
        for (_, p, _, _, wd) in &mut self.slots {
            let skip = exempt.iter().any(|e| e.data_ptr() == p.data_ptr());
            *wd = if skip { 0.0 } else { weight_decay };
        }
        self
    }

    pub fn lr(&self) -> f64 {
        self.lr
    }

    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    pub fn zero_grad(&mut self) {
        for (_, p, _, _, _) in &mut self.slots {
            p.zero_grad();
        }
    }

    /// `loss.backward()` then one update; gradients are cleared first.
    pub fn backward_step(&mut self, loss: &Tensor) {
        self.zero_grad();
        loss.backward();
        self.step();
    }

    /// One update from the gradients in place (parameters without one are skipped).
    pub fn step(&mut self) {
        self.step += 1;
        let (b1, b2) = self.betas;
        let bc1 = 1.0 - b1.powi(self.step as i32);
        let bc2_sqrt = (1.0 - b2.powi(self.step as i32)).sqrt();
        let step_size = self.lr / bc1;
        tch::no_grad(|| {
            for (_, p, m, v, wd) in &mut self.slots {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                if *wd != 0.0 {
                    let _ = p.g_mul_scalar_(1.0 - self.lr * *wd);
                }
                let _ = m.lerp_(&g, 1.0 - b1);
                let _ = v.g_mul_scalar_(b2).addcmul_(&g, &g.g_mul_scalar(1.0 - b2));
                // PyTorch's `denom = (v.sqrt() / bc2_sqrt).add_(eps)`, then
                // `p.addcdiv_(m, denom, value=-step_size)`, in place where it can be
                let mut denom = v.sqrt();
                let _ = denom.g_div_scalar_(bc2_sqrt).g_add_scalar_(self.eps);
                let mut update = &*m / &denom;
                let _ = p.g_sub_(&update.g_mul_scalar_(step_size));
            }
        });
    }

    /// The moments as named tensors (`<param>.exp_avg`, `<param>.exp_avg_sq`)
    /// and the step count, for a checkpoint.
    pub fn state(&self) -> (Vec<(String, Tensor)>, i64) {
        let mut t = Vec::new();
        for (name, _, m, v, _) in &self.slots {
            t.push((format!("{name}.exp_avg"), m.shallow_clone()));
            t.push((format!("{name}.exp_avg_sq"), v.shallow_clone()));
        }
        (t, self.step)
    }

    /// Restores what [`Adam::state`] gave; every moment must be present.
    pub fn load_state(&mut self, tensors: &[(String, Tensor)], step: i64) -> Result<(), String> {
        let find = |key: String| tensors.iter().find(|(n, _)| *n == key).map(|(_, t)| t).ok_or(key);
        for (name, _, m, v, _) in &mut self.slots {
            let (sm, sv) = (find(format!("{name}.exp_avg"))?, find(format!("{name}.exp_avg_sq"))?);
            tch::no_grad(|| {
                m.copy_(sm);
                v.copy_(sv);
            });
        }
        self.step = step;
        Ok(())
    }
}

/// `torch.nn.utils.clip_grad_norm_(parameters, max_norm)`: scales every
/// gradient by `max_norm / (total + 1e-6)` when the 2-norm `total` of all of
/// them together exceeds `max_norm`, and returns `total` (a 0-d tensor).
///
/// As PyTorch does, the scale is clamped to 1 on the device instead of being
/// compared on the host, so clipping never waits for a GPU. Parameters without
/// a gradient are skipped.
pub fn clip_grad_norm_(parameters: &[Tensor], max_norm: f64) -> Tensor {
    tch::no_grad(|| {
        let grads: Vec<Tensor> =
            parameters.iter().map(|p| p.grad()).filter(|g| g.defined()).collect();
        if grads.is_empty() {
            return Tensor::zeros([], (tch::Kind::Float, tch::Device::Cpu));
        }
        let norms: Vec<Tensor> = grads.iter().map(|g| g.norm()).collect();
        let total = Tensor::stack(&norms, 0).norm();
        let scale = (max_norm / (&total + 1e-6)).clamp_max(1.0);
        for g in &grads {
            let _ = g.shallow_clone().g_mul_(&scale);
        }
        total
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::nn::OptimizerConfig;
    use tch::{Device, Kind};

    /// A double-precision linear layer whose weights are copied from `init`.
    ///
    /// Runs that must start equal copy the same tensors in rather than
    /// reseeding: `tch::manual_seed` is global, and the test harness draws
    /// from that generator on other threads at the same time.
    fn linear_from(init: &[Tensor; 2]) -> (nn::VarStore, nn::Linear) {
        let mut vs = nn::VarStore::new(Device::Cpu);
        vs.set_kind(Kind::Double);
        let (o, i) = (init[0].size()[0], init[0].size()[1]);
        let mut lin = nn::linear(vs.root() / "lin", i, o, Default::default());
        tch::no_grad(|| {
            lin.ws.copy_(&init[0]);
            lin.bs.as_mut().unwrap().copy_(&init[1]);
        });
        (vs, lin)
    }

    fn randn(shape: &[i64]) -> Tensor {
        Tensor::randn(shape, (Kind::Double, Device::Cpu))
    }

    /// Five steps on a small regression equal libtorch's own Adam.
    #[test]
    fn matches_libtorch_adam() {
        let init = [randn(&[3, 4]), randn(&[3])];
        let (x, y) = (randn(&[8, 4]), randn(&[8, 3]));
        let loss = |l: &nn::Linear| x.apply(l).mse_loss(&y, tch::Reduction::Mean);
        let run = |ours: bool| -> Vec<f64> {
            let (vs, lin) = linear_from(&init);
            if ours {
                let mut opt = Adam::new(&vs, 0.05);
                for _ in 0..5 {
                    opt.backward_step(&loss(&lin));
                }
            } else {
                let mut opt = nn::Adam::default().build(&vs, 0.05).unwrap();
                for _ in 0..5 {
                    opt.backward_step(&loss(&lin));
                }
            }
            Vec::<f64>::try_from(lin.ws.flatten(0, -1)).unwrap()
        };
        let (a, b) = (run(true), run(false));
        for (x, y) in a.iter().zip(&b) {
            assert!((x - y).abs() < 1e-12, "{a:?}\n{b:?}");
        }
        // And it moved: the weights are not where they started.
        let start = Vec::<f64>::try_from(init[0].flatten(0, -1)).unwrap();
        assert!(a.iter().zip(&start).any(|(x, y)| (x - y).abs() > 1e-3));
    }

    /// AdamW with β (0.9, 0.99), weight decay 0.1 and group 1 exempt equals
    /// libtorch's AdamW with `set_weight_decay_group(1, 0.0)` for five steps.
    #[test]
    fn weight_decay_matches_libtorch_adamw() {
        let init = [randn(&[3, 4]), randn(&[3])];
        let (x, y) = (randn(&[8, 4]), randn(&[8, 3]));
        let run = |ours: bool, wd: f64| -> (Vec<f64>, Vec<f64>) {
            let mut vs = nn::VarStore::new(Device::Cpu);
            vs.set_kind(Kind::Double);
            let w = vs.root().zeros("w", &[3, 4]);
            let b = vs.root().set_group(1).zeros("b", &[3]);
            tch::no_grad(|| {
                w.shallow_clone().copy_(&init[0]);
                b.shallow_clone().copy_(&init[1]);
            });
            let loss = || (x.matmul(&w.tr()) + &b).mse_loss(&y, tch::Reduction::Mean);
            if ours {
                let mut opt = Adam::new(&vs, 0.05).with_betas((0.9, 0.99)).with_weight_decay(
                    &vs,
                    wd,
                    Some(1),
                );
                for _ in 0..5 {
                    opt.backward_step(&loss());
                }
            } else {
                let cfg = nn::AdamW { beta1: 0.9, beta2: 0.99, wd, ..Default::default() };
                let mut opt = cfg.build(&vs, 0.05).unwrap();
                opt.set_weight_decay_group(1, 0.0);
                for _ in 0..5 {
                    opt.backward_step(&loss());
                }
            }
            let flat = |t: &Tensor| Vec::<f64>::try_from(t.flatten(0, -1)).unwrap();
            (flat(&w), flat(&b))
        };
        let ((wa, ba), (wb, bb)) = (run(true, 0.1), run(false, 0.1));
        for (x, y) in wa.iter().chain(&ba).zip(wb.iter().chain(&bb)) {
            assert!((x - y).abs() < 1e-12, "{wa:?} {ba:?}\n{wb:?} {bb:?}");
        }
        // the decay acted: without it the weights end elsewhere
        let (w0, _) = run(true, 0.0);
        assert!(w0.iter().zip(&wa).any(|(x, y)| (x - y).abs() > 1e-4), "{w0:?} {wa:?}");
    }

    /// Equal to tch's `Optimizer::clip_grad_norm` (which reads the norm on the
    /// host) above the limit and below it, and the total is the norm of every
    /// gradient flattened into one vector.
    #[test]
    fn clip_grad_norm_matches_tch_and_the_definition() {
        let init = [randn(&[3, 4]), randn(&[3])];
        let (x, y) = (randn(&[8, 4]), randn(&[8, 3]));
        let grads = |max_norm: f64, ours: bool| -> (Vec<f64>, f64) {
            let (vs, lin) = linear_from(&init);
            let loss = x.apply(&lin).mse_loss(&y, tch::Reduction::Sum);
            loss.backward();
            let params = vec![lin.ws.shallow_clone(), lin.bs.as_ref().unwrap().shallow_clone()];
            let flat = |ps: &[Tensor]| {
                Tensor::cat(&ps.iter().map(|p| p.grad().flatten(0, -1)).collect::<Vec<_>>(), 0)
            };
            let before = flat(&params).norm().double_value(&[]);
            if ours {
                let total = clip_grad_norm_(&params, max_norm).double_value(&[]);
                assert!((total - before).abs() < 1e-10 * before, "{total} vs {before}");
            } else {
                let opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
                opt.clip_grad_norm(max_norm);
            }
            (Vec::<f64>::try_from(flat(&params)).unwrap(), before)
        };
        let (_, norm) = grads(f64::INFINITY, true);
        assert!(norm > 1.0, "the test needs a gradient norm above 1, got {norm}");
        for max_norm in [norm / 3.0, 2.0 * norm] {
            let ((a, _), (b, _)) = (grads(max_norm, true), grads(max_norm, false));
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-12, "max_norm {max_norm}: {a:?}\n{b:?}");
            }
            let clipped = a.iter().map(|g| g * g).sum::<f64>().sqrt();
            let expected = norm.min(max_norm);
            assert!((clipped - expected).abs() < 1e-5, "max_norm {max_norm}: norm {clipped}");
        }
    }

    #[test]
    fn state_round_trip_continues_identically() {
        let init = [randn(&[2, 3]), randn(&[2])];
        let x = randn(&[5, 3]);
        let loss = |l: &nn::Linear| x.apply(l).pow_tensor_scalar(2).mean(Kind::Double);
        // Four steps straight.
        let (vs1, l1) = linear_from(&init);
        let mut o1 = Adam::new(&vs1, 0.1);
        for _ in 0..4 {
            o1.backward_step(&loss(&l1));
        }
        // Two steps, state saved, a fresh optimiser restored, two more.
        let (vs2, l2) = linear_from(&init);
        let mut o2 = Adam::new(&vs2, 0.1);
        for _ in 0..2 {
            o2.backward_step(&loss(&l2));
        }
        let (state, step) = o2.state();
        let saved: Vec<_> = state.iter().map(|(n, t)| (n.clone(), t.copy())).collect();
        let mut o3 = Adam::new(&vs2, 0.1);
        o3.load_state(&saved, step).unwrap();
        for _ in 0..2 {
            o3.backward_step(&loss(&l2));
        }
        assert!(l1.ws.allclose(&l2.ws, 0.0, 1e-15, false));
        assert!(!l1.ws.allclose(&init[0], 0.0, 1e-3, false), "the steps moved the weights");
        assert!(o3.load_state(&saved[1..], step).is_err());
    }
}
