//! The lecture's split of data/names.txt, reproduced word for word.
//! Golden values: scripts/wavenet_reference.py --golden (CPython's
//! `random.seed(42); random.shuffle(words)`).

use models::makemore::{build_dataset, load_words, split_words, MakemoreError, Vocab};
use std::path::PathBuf;
use tch::Device;

fn names_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/names.txt")
}

#[test]
fn lecture_split_of_names() {
    let words = load_words(&names_file()).unwrap();
    assert_eq!(words.len(), 32_033);
    let vocab = Vocab::from_words(&words);
    assert_eq!(vocab, Vocab::names());
    let split = split_words(&words, 42);
    assert_eq!(split.train[..5], ["yuheng", "diondre", "xavien", "jori", "juanluis"]);
    assert_eq!(split.val[0], "amay");
    assert_eq!(split.test[0], "mustafa");
    assert_eq!(split.test[split.test.len() - 3..], ["opal", "zaylynn", "yovani"]);
    let sizes: Vec<i64> = [&split.train, &split.val, &split.test]
        .iter()
        .map(|w| build_dataset(w, &vocab, 8, Device::Cpu).unwrap().1.size()[0])
        .collect();
    assert_eq!(sizes, [182_625, 22_655, 22_866], "the lecture's Xtr, Xdev, Xte sizes");
}

#[test]
fn missing_or_bad_names_file_is_named() {
    let missing = PathBuf::from("/nonexistent/names.txt");
    let err = load_words(&missing).unwrap_err();
    assert!(matches!(err, MakemoreError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/names.txt"), "{err}");

    let dir = std::env::temp_dir().join(format!("rnnlab-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("names.txt");
    std::fs::write(&bad, "emma\nOlivia\n").unwrap();
    let err = load_words(&bad).unwrap_err().to_string();
    assert!(err.contains("line 2") && err.contains("Olivia"), "{err}");
    std::fs::write(&bad, "").unwrap();
    let err = load_words(&bad).unwrap_err().to_string();
    assert!(err.contains("empty"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
