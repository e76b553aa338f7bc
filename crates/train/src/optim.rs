//! One optimiser interface for every model, with a state that a checkpoint
//! holds, so `--resume` continues a run exactly.
//!
//! [`Optim`] names an optimiser in a run's `config.json`; [`Optim::build`]
//! makes it over a `VarStore`. Adam and AdamW are `models::Adam` (PyTorch's
//! update rule, moments kept as named tensors, tested against libtorch's);
//! SGD without momentum is libtorch's own (it has no state to save); SGD
//! with momentum is [`SgdMomentum`], whose velocity buffers are named tensors.

use models::Adam;
use serde::{Deserialize, Serialize};
use tch::nn::{self, OptimizerConfig};
use tch::Tensor;

/// What the training engine asks of an optimiser.
pub trait Optimizer {
    /// The learning rate of the next [`Optimizer::step`].
    fn set_lr(&mut self, lr: f64);
    fn zero_grad(&mut self);
    /// One update from the gradients in place.
    fn step(&mut self);
    /// Everything the next step depends on besides the parameters, as named
    /// tensors (empty for stateless SGD).
    fn state(&self) -> Vec<(String, Tensor)>;
    /// Restores what [`Optimizer::state`] gave; an error names a missing tensor.
    fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<(), String>;
}

/// An optimiser and its settings (the learning rate comes from the schedule).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Optim {
    /// `torch.optim.Adam(params, lr, betas, eps=1e-8)`.
    Adam { betas: (f64, f64) },
    /// `torch.optim.AdamW(params, lr, betas, eps=1e-8, weight_decay)`, with the
    /// variables of optimiser group `exempt_group` (if any) not decayed.
    AdamW { betas: (f64, f64), weight_decay: f64, exempt_group: Option<usize> },
    /// `torch.optim.SGD(params, lr)`: `p -= lr * grad`.
    Sgd,
    /// `torch.optim.SGD(params, lr, momentum)`: `b = momentum·b + grad`,
    /// `p -= lr·b` (the blitz's optimiser).
    SgdMomentum { momentum: f64 },
}

impl Optim {
    /// PyTorch's default Adam.
    pub fn adam() -> Self {
        Optim::Adam { betas: (0.9, 0.999) }
    }

    /// The optimiser over every trainable variable of `vs`, at rate `lr`.
    pub fn build(&self, vs: &nn::VarStore, lr: f64) -> anyhow::Result<Box<dyn Optimizer>> {
        Ok(match *self {
            Optim::Adam { betas } => Box::new(Adam::new(vs, lr).with_betas(betas)),
            Optim::AdamW { betas, weight_decay, exempt_group } => {
                Box::new(Adam::new(vs, lr).with_betas(betas).with_weight_decay(
                    vs,
                    weight_decay,
                    exempt_group,
                ))
            }
            Optim::Sgd => Box::new(Sgd(nn::Sgd::default().build(vs, lr)?)),
            Optim::SgdMomentum { momentum } => Box::new(SgdMomentum::new(vs, lr, momentum)),
        })
    }
}

/// The step count's name among an Adam state's tensors.
const STEP: &str = "step";

impl Optimizer for Adam {
    fn set_lr(&mut self, lr: f64) {
        Adam::set_lr(self, lr)
    }

    fn zero_grad(&mut self) {
        Adam::zero_grad(self)
    }

    fn step(&mut self) {
        Adam::step(self)
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        let (mut tensors, step) = Adam::state(self);
        tensors.push((STEP.into(), Tensor::from(step)));
        tensors
    }

    fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<(), String> {
        let step = tensors
            .iter()
            .find(|(n, _)| n == STEP)
            .map(|(_, t)| t.int64_value(&[]))
            .ok_or_else(|| STEP.to_string())?;
        Adam::load_state(self, tensors, step)
    }
}

/// libtorch's SGD without momentum or weight decay: no state.
pub struct Sgd(nn::Optimizer);

impl Optimizer for Sgd {
    fn set_lr(&mut self, lr: f64) {
        self.0.set_lr(lr)
    }

    fn zero_grad(&mut self) {
        self.0.zero_grad()
    }

    fn step(&mut self) {
        self.0.step()
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        Vec::new()
    }

    fn load_state(&mut self, _tensors: &[(String, Tensor)]) -> Result<(), String> {
        Ok(())
    }
}

/// SGD with momentum and PyTorch's rule (no dampening, no Nesterov): the
/// buffer starts at zero, so the first step's buffer is the gradient, as
/// PyTorch's `clone(grad)`. Buffers are named `<param>.momentum_buffer`.
pub struct SgdMomentum {
    lr: f64,
    momentum: f64,
    /// Parameter name, parameter, velocity buffer.
    slots: Vec<(String, Tensor, Tensor)>,
}

impl SgdMomentum {
    /// Over every trainable variable of `vs`, in name order.
    pub fn new(vs: &nn::VarStore, lr: f64, momentum: f64) -> Self {
        let mut vars: Vec<_> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars.into_iter().map(|(n, p)| (n, p.shallow_clone(), p.zeros_like())).collect();
        Self { lr, momentum, slots }
    }
}

impl Optimizer for SgdMomentum {
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    fn zero_grad(&mut self) {
        for (_, p, _) in &mut self.slots {
            p.zero_grad();
        }
    }

    fn step(&mut self) {
        tch::no_grad(|| {
            for (_, p, b) in &mut self.slots {
                let g = p.grad();
                if !g.defined() {
                    continue;
                }
                let _ = b.g_mul_scalar_(self.momentum).g_add_(&g);
                let _ = p.g_sub_(&b.g_mul_scalar(self.lr));
            }
        });
    }

    fn state(&self) -> Vec<(String, Tensor)> {
        self.slots
            .iter()
            .map(|(n, _, b)| (format!("{n}.momentum_buffer"), b.shallow_clone()))
            .collect()
    }

    fn load_state(&mut self, tensors: &[(String, Tensor)]) -> Result<(), String> {
        for (name, _, b) in &mut self.slots {
            let key = format!("{name}.momentum_buffer");
            let saved = tensors.iter().find(|(n, _)| *n == key).map(|(_, t)| t).ok_or(key)?;
            tch::no_grad(|| b.copy_(saved));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    /// A double-precision `w [2]` starting at (1, -2) with loss `Σ w²/2`, so
    /// the gradient is `w` itself and every step can be done by hand.
    fn quadratic() -> (nn::VarStore, Tensor) {
        let mut vs = nn::VarStore::new(Device::Cpu);
        vs.set_kind(Kind::Double);
        let w = vs.root().zeros("w", &[2]);
        tch::no_grad(|| w.shallow_clone().copy_(&Tensor::from_slice(&[1.0f64, -2.0])));
        (vs, w)
    }

    fn steps(opt: &mut dyn Optimizer, w: &Tensor, n: usize) -> Vec<f64> {
        for _ in 0..n {
            opt.zero_grad();
            (w * w / 2.0).sum(Kind::Double).backward();
            opt.step();
        }
        Vec::<f64>::try_from(w.detach()).unwrap()
    }

    /// SGD: `w ← w − lr·w`, twice at lr 0.1 gives `0.81 w`.
    #[test]
    fn sgd_is_the_textbook_rule() {
        let (vs, w) = quadratic();
        let mut opt = Optim::Sgd.build(&vs, 0.1).unwrap();
        let got = steps(opt.as_mut(), &w, 2);
        assert!((got[0] - 0.81).abs() < 1e-15 && (got[1] + 1.62).abs() < 1e-15, "{got:?}");
        assert!(opt.state().is_empty());
    }

    /// Momentum SGD follows libtorch's own `SGD(momentum=0.9)` step for step
    /// (an independent implementation), and its buffers round-trip through a
    /// checkpoint: two steps, a reload into a fresh optimiser, two more equal
    /// four straight steps.
    #[test]
    fn sgd_momentum_matches_libtorch_and_resumes() {
        let (vs_ref, w_ref) = quadratic();
        let mut reference =
            nn::Sgd { momentum: 0.9, ..Default::default() }.build(&vs_ref, 0.1).unwrap();
        let (vs, w) = quadratic();
        let optim = Optim::SgdMomentum { momentum: 0.9 };
        let mut ours = optim.build(&vs, 0.1).unwrap();
        for _ in 0..5 {
            reference.zero_grad();
            (&w_ref * &w_ref / 2.0).sum(Kind::Double).backward();
            reference.step();
            let got = steps(ours.as_mut(), &w, 1);
            let want = Vec::<f64>::try_from(w_ref.detach()).unwrap();
            for (g, r) in got.iter().zip(&want) {
                assert!((g - r).abs() < 1e-14, "{got:?} vs libtorch {want:?}");
            }
        }
        let (vs1, w1) = quadratic();
        let straight = steps(optim.build(&vs1, 0.1).unwrap().as_mut(), &w1, 4);
        let (vs2, w2) = quadratic();
        let mut first = optim.build(&vs2, 0.1).unwrap();
        steps(first.as_mut(), &w2, 2);
        let saved: Vec<(String, Tensor)> =
            first.state().iter().map(|(n, t)| (n.clone(), t.copy())).collect();
        let mut again = optim.build(&vs2, 0.1).unwrap();
        again.load_state(&saved).unwrap();
        assert_eq!(steps(again.as_mut(), &w2, 2), straight);
        assert_eq!(again.load_state(&[]), Err("w.momentum_buffer".to_string()));
    }

    /// Adam's first step moves every coordinate by `lr` against its gradient's
    /// sign (m̂ = g, v̂ = g², so m̂/(√v̂ + ε) = ±1 up to ε); the second, with
    /// PyTorch's bias corrections worked out by hand for g₁ = w₀, g₂ = w₁.
    #[test]
    fn adam_first_steps_by_hand() {
        let (vs, w) = quadratic();
        let mut opt = Optim::adam().build(&vs, 0.1).unwrap();
        let one = steps(opt.as_mut(), &w, 1);
        assert!((one[0] - 0.9).abs() < 1e-7 && (one[1] + 1.9).abs() < 1e-7, "{one:?}");
        let two = steps(opt.as_mut(), &w, 1);
        for (k, (w0, w1)) in [(1.0f64, one[0]), (-2.0, one[1])].into_iter().enumerate() {
            let m = 0.9 * 0.1 * w0 + 0.1 * w1;
            let v = 0.999 * 0.001 * w0 * w0 + 0.001 * w1 * w1;
            let (mh, vh) = (m / (1.0 - 0.81), v / (1.0 - 0.999f64.powi(2)));
            let want = w1 - 0.1 * mh / (vh.sqrt() + 1e-8);
            assert!((two[k] - want).abs() < 1e-12, "coordinate {k}: {} vs {want}", two[k]);
        }
    }

    /// AdamW's decay shrinks the weights by `lr·wd` before Adam's step.
    #[test]
    fn adamw_decays_before_the_update() {
        let (vs, w) = quadratic();
        let optim = Optim::AdamW { betas: (0.9, 0.99), weight_decay: 0.5, exempt_group: None };
        let mut opt = optim.build(&vs, 0.1).unwrap();
        let got = steps(opt.as_mut(), &w, 1);
        // (1 − 0.1·0.5)·w₀ − 0.1·sign(w₀)
        assert!((got[0] - 0.85).abs() < 1e-7 && (got[1] + 1.8).abs() < 1e-7, "{got:?}");
    }

    /// A state saved after two steps and loaded into a fresh optimiser
    /// continues exactly as the optimiser that never stopped.
    #[test]
    fn adam_state_round_trips_through_the_trait() {
        let (vs1, w1) = quadratic();
        let mut a = Optim::adam().build(&vs1, 0.1).unwrap();
        let straight = steps(a.as_mut(), &w1, 4);
        let (vs2, w2) = quadratic();
        let mut b = Optim::adam().build(&vs2, 0.1).unwrap();
        steps(b.as_mut(), &w2, 2);
        let saved: Vec<(String, Tensor)> =
            b.state().iter().map(|(n, t)| (n.clone(), t.copy())).collect();
        let mut c = Optim::adam().build(&vs2, 0.1).unwrap();
        c.load_state(&saved).unwrap();
        assert_eq!(steps(c.as_mut(), &w2, 2), straight);
        let without_step: Vec<_> = saved.into_iter().filter(|(n, _)| n != STEP).collect();
        assert_eq!(c.load_state(&without_step), Err(STEP.to_string()));
    }
}
