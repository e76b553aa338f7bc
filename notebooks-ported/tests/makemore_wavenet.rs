//! The makemore part 5 notebook in quick mode: its sections in the lecture's
//! order, its figures, and the claims its narration makes.

mod common;
use common::{numbers_after, section, QuickRun};

const SECTIONS: &[&str] = &[
    "Starter code",
    "Fixing the learning-rate plot",
    "Layers and containers: Embedding, FlattenConsecutive, Sequential",
    "Context of 8: the flat MLP",
    "The hierarchical model (WaveNet)",
    "Fixing the BatchNorm1d bug",
    "Scaling up",
    "Performance log",
    "Sampling names",
];

#[test]
fn makemore_wavenet_quick() {
    let run = QuickRun::new(env!("CARGO_BIN_EXE_makemore-wavenet"), "makemore-wavenet", SECTIONS);
    let t = &run.transcript;
    for figure in ["loss-raw.png", "loss-fixed.png", "stages.png"] {
        assert!(run.figure_links().iter().any(|f| f == figure), "no figure {figure}");
    }

    // the data and the lecture's split
    assert!(t.contains("32033 words"), "names.txt has 32,033 names");
    assert!(t.contains("vocabulary of 27 characters: .abcdefghijklmnopqrstuvwxyz"));
    assert!(t.contains("25626 / 3203 / 3204 words"), "the 80/10/10 split");
    assert!(t.contains("Xtr [182625, 8]"), "182,625 training examples with a context of 8");

    // parameter counts measured in the VarStores, in the lecture's order;
    // 76,579 is also what the formula gives
    let counted = numbers_after(t, "parameters counted in the VarStore: ");
    assert_eq!(counted, [12097.0, 22097.0, 22397.0, 22397.0, 76579.0]);
    assert!(t.contains("WaveNetConfig::num_parameters() = 76579"));

    // the Sequential is the starter model, and BatchNorm's training mode on
    // one example erases the input while evaluation mode does not
    let containers = section(&run.transcript, SECTIONS[2]);
    assert!(containers.contains("(difference 0.0e0)"), "{containers}");
    let eval_gap = numbers_after(containers, "evaluation mode: ");
    let train_gap = numbers_after(containers, "training mode: ");
    assert!(eval_gap[0] > 0.1, "evaluation mode depends on the context: {eval_gap:?}");
    assert_eq!(train_gap, [0.0], "training mode on one example ignores it");

    // the BatchNorm1d bug: [1, T, C] running statistics, fixed to [C]
    let bug = section(&run.transcript, "Fixing the BatchNorm1d bug");
    assert!(bug.contains("buggy BatchNorm1d layers.3.running_mean: [1, 4, 68]"), "{bug}");
    assert!(bug.contains("buggy BatchNorm1d layers.7.running_mean: [1, 2, 68]"), "{bug}");
    for i in [3, 7, 11] {
        assert!(bug.contains(&format!("fixed BatchNorm1d layers.{i}.running_mean: [68]")));
    }

    // losses: finite, starting near ln 27 and trained below it
    let ln27 = 27f64.ln();
    let first = numbers_after(t, "loss at step 1: ");
    assert_eq!(first.len(), 5);
    for l in &first {
        assert!((l - ln27).abs() < 0.15, "first loss {l} is not near ln 27");
    }
    let measured: Vec<&str> = t.lines().filter(|l| l.starts_with("measured: ")).collect();
    let measured = measured.join("\n");
    let train = numbers_after(&measured, "train ");
    let val = numbers_after(&measured, "val ");
    assert_eq!((train.len(), val.len()), (5, 5), "{train:?} {val:?}");
    for l in train.iter().chain(&val) {
        assert!(l.is_finite() && *l < ln27 - 0.3, "loss {l} not trained below ln 27");
    }

    // sampled names: 20, made of a-z only
    let names: Vec<&str> = section(&run.transcript, "Sampling names")
        .lines()
        .filter_map(|l| l.strip_prefix("    "))
        .collect();
    assert_eq!(names.len(), 20, "{names:?}");
    for name in &names {
        assert!(name.chars().all(|c| c.is_ascii_lowercase()), "{name:?}");
    }
    assert!(names.iter().any(|n| n.len() > 1), "{names:?}");
}
