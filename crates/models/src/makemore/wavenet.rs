//! The WaveNet-style hierarchical MLP of makemore part 5: characters are
//! embedded, then fused two at a time in a tree (`FlattenConsecutive(2)` +
//! `Linear` + `BatchNorm1d` + `Tanh` per level) until one vector remains,
//! then a `Linear` to the vocabulary's logits.
//!
//! The lecture's scaled-up model (n_embd 24, n_hidden 128, context 8, three
//! levels) has 76,579 parameters and reaches a validation loss of 1.993.

use super::layers::{
    BatchNorm1d, BatchNorm1dConfig, Embedding, FlattenConsecutive, Linear, LinearConfig,
    Sequential, Tanh,
};
use super::{MakemoreError, Vocab};
use tch::nn::{self, ModuleT};
use tch::{Kind, Tensor};

/// The optimiser group of the BatchNorm1d parameters (γ, β), so that an
/// optimiser can exempt them from weight decay; everything else is in group 0.
pub const NO_DECAY_GROUP: usize = 1;

/// Sizes of a [`WaveNet`]; the default is the lecture's scaled-up model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WaveNetConfig {
    /// Characters in the vocabulary (27 for names: `.` and `a`-`z`).
    pub vocab_size: i64,
    /// Context length: `group^levels` characters (8).
    pub block_size: i64,
    /// Embedding width per character (24).
    pub n_embd: i64,
    /// Width of every hidden level (128).
    pub n_hidden: i64,
    /// Consecutive elements fused per level (2).
    pub group: i64,
}

impl Default for WaveNetConfig {
    fn default() -> Self {
        Self { vocab_size: 27, block_size: 8, n_embd: 24, n_hidden: 128, group: 2 }
    }
}

impl WaveNetConfig {
    /// Levels of the tree: `log_group(block_size)`.
    pub fn levels(&self) -> u32 {
        let mut levels = 0;
        let mut t = self.block_size;
        while t > 1 && self.group > 1 {
            t /= self.group;
            levels += 1;
        }
        levels
    }

    /// Checks every size, naming the bad one.
    pub fn validate(&self) -> Result<(), MakemoreError> {
        let bad = |what: String| Err(MakemoreError::Config(what));
        if self.n_embd <= 0 {
            return bad(format!("embedding size (--embd) must be positive, got {}", self.n_embd));
        }
        if self.n_hidden <= 0 {
            return bad(format!("hidden size (--hidden) must be positive, got {}", self.n_hidden));
        }
        if self.vocab_size < 2 {
            return bad(format!("vocabulary size must be at least 2, got {}", self.vocab_size));
        }
        if self.group < 2 {
            return bad(format!("group must be at least 2, got {}", self.group));
        }
        if self.block_size < self.group || self.group.pow(self.levels()) != self.block_size {
            return bad(format!(
                "context length {} is not a power of the group size {}",
                self.block_size, self.group
            ));
        }
        Ok(())
    }

    /// Trainable parameters: embedding, per level a bias-free Linear and a
    /// BatchNorm1d's γ and β, and the output Linear with its bias.
    pub fn num_parameters(&self) -> i64 {
        let Self { vocab_size: v, n_embd: e, n_hidden: h, group: g, .. } = *self;
        let levels = self.levels() as i64;
        v * e + e * g * h + (levels - 1) * h * g * h + levels * 2 * h + h * v + v
    }
}

/// The hierarchical model: `layers` is the lecture's `Sequential`, variables
/// named `layers.{i}.weight` (and `bias`, `running_mean`, `running_var`).
#[derive(Debug)]
pub struct WaveNet {
    pub config: WaveNetConfig,
    pub layers: Sequential,
    device: tch::Device,
}

impl WaveNet {
    /// Builds the model under `path / "layers"` with the lecture's
    /// initialisation (output layer weights scaled by 0.1). BatchNorm1d
    /// parameters go to optimiser group [`NO_DECAY_GROUP`].
    pub fn new(path: &nn::Path, config: WaveNetConfig) -> Result<Self, MakemoreError> {
        config.validate()?;
        let WaveNetConfig { vocab_size, n_embd, n_hidden, group, .. } = config;
        let root = path / "layers";
        // layer i lives at `layers.{i}`, counting the parameter-free layers too
        // (as PyTorch's `nn.Sequential` numbers them)
        let mut layers = Sequential::new();
        let at = |i: usize| &root / i;
        let embedding = Embedding::new(at(0), vocab_size, n_embd);
        let device = embedding.weight.device();
        layers.push(embedding);
        let mut width = n_embd;
        for _ in 0..config.levels() {
            layers.push(FlattenConsecutive::new(group));
            let no_bias = LinearConfig { bias: false, gain: 1.0 };
            layers.push(Linear::new(at(layers.len()), width * group, n_hidden, no_bias));
            let bn = BatchNorm1dConfig::default();
            let bn_path = at(layers.len()).set_group(NO_DECAY_GROUP);
            layers.push(BatchNorm1d::new(bn_path, n_hidden, bn));
            layers.push(Tanh);
            width = n_hidden;
        }
        let out = LinearConfig { bias: true, gain: 0.1 };
        layers.push(Linear::new(at(layers.len()), width, vocab_size, out));
        Ok(Self { config, layers, device })
    }

    /// Samples `count` names, one character at a time from the softmax of the
    /// logits (evaluation mode, so BatchNorm1d uses its running statistics),
    /// each until it draws `.` or reaches `max_len` characters. Uses tch's
    /// global generator: seed it with `tch::manual_seed` for repeatable names.
    pub fn sample(&self, vocab: &Vocab, count: usize, max_len: usize) -> Vec<String> {
        let _guard = tch::no_grad_guard();
        let device = self.device;
        let n = count as i64;
        let mut context = Tensor::zeros([n, self.config.block_size], (Kind::Int64, device));
        let mut drawn: Vec<Vec<i64>> = vec![Vec::new(); count];
        for _ in 0..max_len {
            let logits = self.forward_t(&context, false); // [n, V]
            let ix = logits.softmax(-1, Kind::Float).multinomial(1, true); // [n, 1]
            let ixs = Vec::<i64>::try_from(ix.reshape([-1]).to_device(tch::Device::Cpu))
                .expect("sampled indices are int64");
            for (d, &c) in drawn.iter_mut().zip(&ixs) {
                if d.last() != Some(&0) {
                    d.push(c);
                }
            }
            if drawn.iter().all(|d| d.last() == Some(&0)) {
                break;
            }
            context = Tensor::cat(&[context.narrow(1, 1, self.config.block_size - 1), ix], 1);
        }
        drawn
            .into_iter()
            .map(|d| d.into_iter().take_while(|&c| c != 0).filter_map(|c| vocab.char(c)).collect())
            .collect()
    }
}

impl ModuleT for WaveNet {
    /// `[B, block_size]` int64 contexts -> `[B, vocab_size]` logits.
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        self.layers.forward_t(xs, train)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn lecture_model_has_76579_parameters_and_pytorch_names() {
        let vs = nn::VarStore::new(Device::Cpu);
        let config = WaveNetConfig::default();
        let model = WaveNet::new(&vs.root(), config).unwrap();
        assert_eq!(model.layers.len(), 14);
        let trainable: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        assert_eq!(trainable, 76_579);
        assert_eq!(config.num_parameters(), 76_579);
        let mut names: Vec<_> = vs.variables().into_keys().collect();
        names.sort();
        let mut want = vec!["layers.0.weight".to_owned()];
        for i in [2, 6, 10] {
            want.push(format!("layers.{i}.weight"));
            for v in ["bias", "running_mean", "running_var", "weight"] {
                want.push(format!("layers.{}.{v}", i + 1));
            }
        }
        want.extend(["layers.13.bias".to_owned(), "layers.13.weight".to_owned()]);
        want.sort();
        assert_eq!(names, want);
    }

    #[test]
    fn shapes_through_the_tree() {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = WaveNet::new(&vs.root(), WaveNetConfig::default()).unwrap();
        let x = Tensor::randint(27, [4, 8], (Kind::Int64, Device::Cpu));
        let mut h = x.shallow_clone();
        let mut shapes = Vec::new();
        for layer in &model.layers.layers {
            h = layer.forward_t(&h, true);
            shapes.push(h.size());
        }
        let want: Vec<Vec<i64>> = vec![
            vec![4, 8, 24],
            vec![4, 4, 48],
            vec![4, 4, 128],
            vec![4, 4, 128],
            vec![4, 4, 128],
            vec![4, 2, 256],
            vec![4, 2, 128],
            vec![4, 2, 128],
            vec![4, 2, 128],
            vec![4, 256],
            vec![4, 128],
            vec![4, 128],
            vec![4, 128],
            vec![4, 27],
        ];
        assert_eq!(shapes, want);
    }

    #[test]
    fn bad_sizes_are_named() {
        let vs = nn::VarStore::new(Device::Cpu);
        for (config, needle) in [
            (WaveNetConfig { n_embd: 0, ..Default::default() }, "--embd"),
            (WaveNetConfig { n_embd: -3, ..Default::default() }, "--embd"),
            (WaveNetConfig { n_hidden: 0, ..Default::default() }, "--hidden"),
            (WaveNetConfig { block_size: 6, ..Default::default() }, "context length 6"),
        ] {
            let err = WaveNet::new(&vs.root(), config).unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        let small = WaveNetConfig { block_size: 4, n_embd: 5, n_hidden: 7, ..Default::default() };
        let vs = nn::VarStore::new(Device::Cpu);
        WaveNet::new(&vs.root(), small).unwrap();
        let n: i64 = vs.trainable_variables().iter().map(|t| t.numel() as i64).sum();
        assert_eq!(n, small.num_parameters());
    }

    #[test]
    fn samples_are_names_from_the_vocabulary() {
        // (repeatability under a seed is checked in the runner's tests: tch's
        // generator is global and unit tests run in parallel threads)
        let vs = nn::VarStore::new(Device::Cpu);
        let model = WaveNet::new(&vs.root(), WaveNetConfig::default()).unwrap();
        let vocab = Vocab::names();
        let names = model.sample(&vocab, 50, 30);
        assert_eq!(names.len(), 50);
        for name in &names {
            assert!(name.len() <= 30);
            assert!(name.chars().all(|c| c.is_ascii_lowercase()), "{name:?}");
        }
    }
}
