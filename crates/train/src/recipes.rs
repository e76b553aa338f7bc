//! The named training recipes, shared by `rnnlab train` and the notebooks so
//! that a number is written once.
//!
//! Speech commands: `default` (tuned on the validation split to generalise
//! to unseen voices in 5 epochs) and `coursework` (the notebook's exact
//! settings). makemore's WaveNet: `lecture` (the lecture's loop) and `tuned`.
//! The speaker BiLSTM: `default` (chosen on validation speakers) and `lab`
//! (the lab's proxy loss).

use models::Mode;

/// A recurrent classifier's recipe on Speech Commands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeechRecipe {
    pub name: &'static str,
    pub hidden_size: i64,
    pub num_layers: i64,
    pub batch_size: i64,
    /// Adam's learning rate (see [`SpeechRecipe::lr_for`]).
    pub lr: f64,
    /// The tanh RNN's learning rate, where it differs from `lr`.
    pub tanh_lr: Option<f64>,
    /// Every model's rate when fine-tuning, starting from an earlier run's
    /// weights (`--init-from`); `lr_for`'s when none.
    pub fine_tune_lr: Option<f64>,
    pub epochs: usize,
    /// The fewest optimisation steps of a run for each version of its
    /// training split (the clips, and each speed's copies): a small corpus
    /// trains for more epochs than `epochs`, so that its budget is counted in
    /// updates, not passes (see [`SpeechRecipe::epochs_with_copies`]).
    pub min_steps: usize,
    /// Validation (and test) scored every this many steps.
    pub valid_every: usize,
    /// Cosine decay of the learning rate from `lr` to 0 over the run, per
    /// step; constant when false.
    pub cosine: bool,
    /// `clip_grad_norm_` of all gradients before every step.
    pub clip_grad_norm: Option<f64>,
    /// The LSTM's initial forget-gate bias (PyTorch's uniform draw when none).
    pub forget_bias: Option<f64>,
    /// SpecAugment masks on the gated cells' training batches.
    pub augment: bool,
    /// MFCCs standardised with the train split's statistics (the coursework
    /// keeps the raw int16 scale).
    pub standardize: bool,
    /// MFCCs per frame fed to the model: the first `n_mfcc` of librosa's
    /// coefficients.
    pub n_mfcc: usize,
    /// Speed perturbation: on a small corpus (one whose epochs fall short of
    /// `min_steps`), every training clip is also played at these speeds.
    pub speed_perturb: &'static [f64],
    /// On a small corpus, the gated cells (LSTM, GRU) first train on a
    /// synthetic set of this many clips per word, spoken by many voices, and
    /// then fine-tune on the corpus at `fine_tune_lr` (see
    /// [`SpeechRecipe::pretrains`]); never when none.
    pub pretrain_clips: Option<usize>,
}

/// The default recipe: hidden 128, 2 layers, batch 32, Adam at 0.004 on a
/// cosine, gradient norm clipped to 1, LSTM forget gates at 1, SpecAugment,
/// standardised features, the first 10 MFCCs, 5 epochs but at least 450
/// steps for each version of the training split, validation every 25 steps.
///
/// The floor makes the budget fit the corpus: 5 epochs of the default set's
/// 3,000 training clips are 470 steps, but 5 epochs of a 600-clip corpus are
/// only 95, far too few. On such a small corpus (one whose 5 epochs fall
/// short of 450 steps) every training clip is also played at speeds 0.9 and
/// 1.1 (speed perturbation): more voices to learn from, where a few voices
/// are all there is. The floor then counts each version, 1,350 steps in
/// all, so that the copies add updates as well as voices; the default set
/// gets no copies and keeps its 5 epochs. Floor, copies and the floor per
/// version were each chosen on small corpora's validation splits.
///
/// The first 10 MFCCs keep the spectral envelope's broad shape, which carries
/// the word, and leave out the fine detail that differs most between voices;
/// with few training voices the model would otherwise learn those voices.
///
/// The rate, 0.004, was chosen over 0.002, 0.003 and 0.006 on the validation
/// splits of small corpora (a few hundred clips, four training voices),
/// where the floor is the whole budget, and held its place when the floor
/// came to count each version. The tanh RNN keeps 0.002: at 0.004 its
/// validation accuracy on the default set collapses.
///
/// Fine-tuning (a run that starts from an earlier run's weights, for
/// example one trained on many synthetic voices of the same words) trains
/// at 0.001, with the same speed copies and budget: 0.004 pulls the weights
/// towards the few voices of a small corpus and away from the many they
/// learned first, and much lower rates leave them short of the corpus's own
/// voices. Chosen on small corpora's validation splits, with pretraining sets
/// that share none of their held-out voices, over 0.0001 to 0.004, and with
/// the copies over without them.
///
/// On a small corpus the LSTM and the GRU are pretrained that way by
/// default: a corpus of a few voices cannot teach the accents it never
/// speaks, and no change screened in training from scratch made up for it,
/// while many synthetic voices first did. The synthetic set has 2,500 clips
/// per word: chosen over 1,250 (the default synthetic set's size) on the
/// small corpora's validation splits.
pub const SPEECH_DEFAULT: SpeechRecipe = SpeechRecipe {
    name: "default",
    hidden_size: 128,
    num_layers: 2,
    batch_size: 32,
    lr: 0.004,
    tanh_lr: Some(0.002),
    fine_tune_lr: Some(0.001),
    epochs: 5,
    min_steps: 450,
    valid_every: 25,
    cosine: true,
    clip_grad_norm: Some(1.0),
    forget_bias: Some(1.0),
    augment: true,
    standardize: true,
    n_mfcc: 10,
    speed_perturb: &[0.9, 1.1],
    pretrain_clips: Some(2500),
};

/// The coursework notebook's settings: raw int16 scale, hidden 32, 2 layers,
/// lr 0.01 constant, batch 100, 5 epochs, validation every 20 steps.
pub const SPEECH_COURSEWORK: SpeechRecipe = SpeechRecipe {
    name: "coursework",
    hidden_size: 32,
    num_layers: 2,
    batch_size: 100,
    lr: 0.01,
    tanh_lr: None,
    fine_tune_lr: None,
    epochs: 5,
    min_steps: 0,
    valid_every: 20,
    cosine: false,
    clip_grad_norm: None,
    forget_bias: None,
    augment: false,
    standardize: false,
    n_mfcc: 20,
    speed_perturb: &[],
    pretrain_clips: None,
};

impl SpeechRecipe {
    /// The learning rate of a model of `mode`: `tanh_lr` for the tanh RNN
    /// where the recipe sets one, `lr` otherwise.
    pub fn lr_for(&self, mode: Mode) -> f64 {
        match (mode, self.tanh_lr) {
            (Mode::RnnTanh, Some(lr)) => lr,
            _ => self.lr,
        }
    }

    /// The learning rate of a model of `mode` fine-tuned from an earlier
    /// run's weights: `fine_tune_lr` where the recipe sets one.
    pub fn fine_tune_lr_for(&self, mode: Mode) -> f64 {
        self.fine_tune_lr.unwrap_or_else(|| self.lr_for(mode))
    }

    /// The epochs of a run whose training split makes `steps_per_epoch`
    /// batches: the recipe's epochs, or as many more as reach `min_steps`.
    pub fn epochs_for(&self, steps_per_epoch: usize) -> usize {
        self.epochs_with_copies(steps_per_epoch, steps_per_epoch, 0)
    }

    /// [`Self::epochs_for`] a split of `original` batches to which speed
    /// perturbation adds `copies` played-again versions, making it
    /// `with_copies` batches. The recipe's epochs count passes over the
    /// original split; the floor counts every version: `min_steps` for each,
    /// so that the copies add updates as well as voices.
    pub fn epochs_with_copies(&self, original: usize, with_copies: usize, copies: usize) -> usize {
        let w = with_copies.max(1);
        let own = if original == with_copies {
            self.epochs
        } else {
            (self.epochs * original).div_ceil(w)
        };
        own.max((self.min_steps * (1 + copies)).div_ceil(w)).max(1)
    }

    /// The speeds of speed perturbation for a training split of
    /// `steps_per_epoch` batches: the recipe's when the corpus is small (its
    /// epochs alone fall short of `min_steps`), none otherwise.
    pub fn speed_perturb_for(&self, steps_per_epoch: usize) -> &'static [f64] {
        if self.is_small(steps_per_epoch) {
            self.speed_perturb
        } else {
            &[]
        }
    }

    /// Whether a model of `mode` on a training split of `steps_per_epoch`
    /// batches is first pretrained on synthetic voices: where the recipe
    /// does, for the gated cells (the only ones measured with it), on a
    /// small corpus.
    pub fn pretrains(&self, mode: Mode, steps_per_epoch: usize) -> bool {
        self.pretrain_clips.is_some() && mode.is_gated() && self.is_small(steps_per_epoch)
    }

    /// A small corpus: its epochs alone fall short of `min_steps`.
    fn is_small(&self, steps_per_epoch: usize) -> bool {
        self.epochs * steps_per_epoch < self.min_steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default set (3,000 clips, 94 batches of 32) keeps its 5 epochs; a
    /// 600-clip corpus (19 batches) trains 24 epochs, 456 steps, and with its
    /// two speed copies 1,368; the coursework's budget is always its 5 epochs.
    #[test]
    fn the_budget_has_a_floor_in_steps() {
        assert_eq!(SPEECH_DEFAULT.epochs_for(94), 5);
        assert_eq!(SPEECH_DEFAULT.epochs_for(19), 24);
        assert!(SPEECH_DEFAULT.epochs_for(19) * 19 >= SPEECH_DEFAULT.min_steps);
        assert_eq!(SPEECH_DEFAULT.epochs_for(1), 450);
        // speed perturbation only where the floor applies
        assert!(SPEECH_DEFAULT.speed_perturb_for(94).is_empty());
        assert_eq!(SPEECH_DEFAULT.speed_perturb_for(19), [0.9, 1.1]);
        assert!(SPEECH_COURSEWORK.speed_perturb_for(19).is_empty());
        // and so does pretraining, for the gated cells of the default recipe
        assert!(
            SPEECH_DEFAULT.pretrains(Mode::Gru, 19) && SPEECH_DEFAULT.pretrains(Mode::Lstm, 89)
        );
        assert!(
            !SPEECH_DEFAULT.pretrains(Mode::Gru, 90) && !SPEECH_DEFAULT.pretrains(Mode::Gru, 94)
        );
        assert!(!SPEECH_DEFAULT.pretrains(Mode::RnnTanh, 19));
        assert!(!SPEECH_COURSEWORK.pretrains(Mode::Gru, 19));
        // the floor counts every version: two copies of a 19-batch split
        // make 57 batches an epoch, and 3 x 450 steps over them are 24 epochs
        let epochs = SPEECH_DEFAULT.epochs_with_copies(19, 57, 2);
        assert_eq!(epochs, 24);
        let floor = 3 * SPEECH_DEFAULT.min_steps;
        assert!(epochs * 57 >= floor && (epochs - 1) * 57 < floor);
        assert_eq!(SPEECH_DEFAULT.epochs_with_copies(94, 94, 0), 5);
        // copies asked of a large split: its own 5 epochs (470 steps) fall
        // short of the floor with two copies, 1,350 steps: 5 epochs of 282
        assert_eq!(SPEECH_DEFAULT.epochs_with_copies(94, 282, 2), 5);
        assert_eq!(SPEECH_COURSEWORK.epochs_for(3), 5);
        assert_eq!(SPEECH_COURSEWORK.epochs_for(0), 5);
    }

    /// The default recipe's tanh RNN trains at its own rate; the coursework
    /// trains every mode at one.
    #[test]
    fn the_tanh_rnn_keeps_its_own_rate() {
        assert_eq!(SPEECH_DEFAULT.lr_for(Mode::RnnTanh), 0.002);
        for mode in [Mode::Lstm, Mode::Gru, Mode::RnnRelu] {
            assert_eq!(SPEECH_DEFAULT.lr_for(mode), 0.004, "{mode:?}");
        }
        for mode in [Mode::Lstm, Mode::Gru, Mode::RnnTanh, Mode::RnnRelu] {
            assert_eq!(SPEECH_COURSEWORK.lr_for(mode), 0.01, "{mode:?}");
        }
    }

    /// Fine-tuning: the default recipe trains every model at its lower
    /// rate; the coursework keeps its one rate.
    #[test]
    fn fine_tuning_takes_the_recipes_lower_rate() {
        for mode in [Mode::Lstm, Mode::Gru, Mode::RnnTanh, Mode::RnnRelu] {
            assert_eq!(SPEECH_DEFAULT.fine_tune_lr_for(mode), 0.001, "{mode:?}");
            assert!(SPEECH_DEFAULT.fine_tune_lr_for(mode) < SPEECH_DEFAULT.lr_for(mode));
            assert_eq!(SPEECH_COURSEWORK.fine_tune_lr_for(mode), 0.01, "{mode:?}");
        }
    }
}

/// makemore part 5's optimisation recipe for the WaveNet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MakemoreRecipe {
    pub name: &'static str,
    pub steps: usize,
    pub batch_size: i64,
    /// Peak (tuned) or first (lecture) learning rate.
    pub lr: f64,
}

/// The lecture: SGD, lr 0.1 then 0.01 for the last quarter, batch 32, 200,000 steps.
pub const MAKEMORE_LECTURE: MakemoreRecipe =
    MakemoreRecipe { name: "lecture", steps: 200_000, batch_size: 32, lr: 0.1 };

/// Beyond the lecture: AdamW with a warm-up and cosine decay from 1.5e-3,
/// batch 64, 100,000 steps.
pub const MAKEMORE_TUNED: MakemoreRecipe =
    MakemoreRecipe { name: "tuned", steps: 100_000, batch_size: 64, lr: 1.5e-3 };

/// The speaker-clustering BiLSTM's recipe: its head and optimisation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeakerRecipe {
    pub name: &'static str,
    pub head: models::speaker::SpeakerHead,
    pub hidden_size: i64,
    pub num_layers: i64,
    pub batch_size: i64,
    pub lr: f64,
    pub epochs: usize,
    /// StepLR: epochs between decays, and the decay factor.
    pub step_size: usize,
    pub gamma: f64,
    /// Whole speakers kept out of training to choose the checkpoint on (the
    /// lab chooses none and keeps the last epoch).
    pub val_speakers: usize,
    /// Speaker augmentation: the speeds at which every training utterance is
    /// played again as a new speaker (`data::speakers::speed_speakers`), when
    /// fewer than `few_speakers` speakers train.
    pub speed_speakers: &'static [f64],
    pub few_speakers: usize,
}

impl SpeakerRecipe {
    /// The speeds of speaker augmentation for a run with `train_speakers`
    /// training speakers: the recipe's when they are few, none otherwise.
    pub fn speed_speakers_for(&self, train_speakers: usize) -> &'static [f64] {
        if train_speakers < self.few_speakers {
            self.speed_speakers
        } else {
            &[]
        }
    }
}

/// The lab's recipe: last states and time-mean, Euclidean proxy loss, hidden
/// 64, batch 32, Adam at 2e-3 halved every 20 epochs, 60 epochs, the last
/// epoch kept.
pub const SPEAKER_LAB: SpeakerRecipe = SpeakerRecipe {
    name: "lab",
    head: models::speaker::SpeakerHead::LAB,
    hidden_size: 64,
    num_layers: 1,
    batch_size: 32,
    lr: 2e-3,
    epochs: 60,
    step_size: 20,
    gamma: 0.5,
    val_speakers: 0,
    speed_speakers: &[],
    few_speakers: 0,
};

/// The default recipe: statistics pooling over valid frames, a projection to
/// 128 dimensions, AM-softmax on cosine proxies (scale 30, margin 0.2), the
/// checkpoint chosen on 4 validation speakers, and with fewer than 8
/// training speakers each of them again at speeds 0.9 and 1.1 as new speakers
/// (speaker augmentation); otherwise the lab's numbers.
pub const SPEAKER_DEFAULT: SpeakerRecipe = SpeakerRecipe {
    name: "default",
    head: models::speaker::SpeakerHead {
        pooling: models::speaker::Pooling::Stats,
        loss: models::speaker::ProxyLoss::Cosine { scale: 30.0, margin: 0.2 },
        projection: Some(128),
        dropout: 0.0,
    },
    val_speakers: 4,
    speed_speakers: &[0.9, 1.1],
    few_speakers: 8,
    ..SPEAKER_LAB
};

/// The speaker recipes by name.
pub const SPEAKER_RECIPES: [SpeakerRecipe; 2] = [SPEAKER_DEFAULT, SPEAKER_LAB];
