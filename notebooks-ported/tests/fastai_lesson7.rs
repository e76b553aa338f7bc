//! fastai-lesson7 in quick mode: it runs, has its sections in order, draws
//! real figures, and what its narration claims is what it printed.

mod common;

use common::QuickRun;

const SECTIONS: [&str; 6] = [
    "The data: one stream of names in bs parallel streams",
    "A stateful character-level language model",
    "Truncated BPTT: detaching the hidden state",
    "Training the GRU and the LSTM with SGDR",
    "BatchNorm's effect on a small net",
    "Activation statistics, forward-hook style",
];

/// The text after `prefix` on the first line that starts with it.
fn after<'a>(transcript: &'a str, prefix: &str) -> &'a str {
    transcript
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}"))
}

/// The first `"..."` of a line.
fn quoted(line: &str) -> &str {
    line.split('"').nth(1).unwrap_or_else(|| panic!("nothing quoted in {line:?}"))
}

/// The cells of a markdown table row.
fn cells(row: &str) -> Vec<&str> {
    row.trim().trim_matches('|').split('|').map(str::trim).collect()
}

/// The rows (cells) of the table whose header line starts with `header`,
/// one list per table, in order.
fn tables<'a>(transcript: &'a str, header: &str) -> Vec<Vec<Vec<&'a str>>> {
    let lines: Vec<&str> = transcript.lines().collect();
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if l.starts_with(header) {
            let rows = lines[i + 2..].iter().take_while(|r| r.starts_with('|')).map(|r| cells(r));
            out.push(rows.collect());
        }
    }
    out
}

#[test]
fn fastai_lesson7_quick() {
    let run = QuickRun::new(env!("CARGO_BIN_EXE_fastai-lesson7"), "fastai-lesson7", &SECTIONS);
    let t = &run.transcript;
    for png in [
        "bptt_backward_time.png",
        "sgdr_lr.png",
        "lm_loss.png",
        "batchnorm_loss.png",
        "act_std.png",
        "act_saturated.png",
    ] {
        assert!(run.figure_links().iter().any(|l| l == png), "{png} not linked");
    }

    // the LMDataLoader layout: the targets are the inputs one character on,
    // and row 0 of chunk 1 continues row 0 of chunk 0
    let row0 = quoted(after(t, "row 0 of chunk 0: "));
    let next = quoted(after(t, "row 0 of chunk 1: "));
    let targets = quoted(after(t, "targets of row 0, chunk 0: "));
    assert_eq!(targets, format!("{}{}", &row0[1..], &next[..1]));

    // the untrained model guesses uniformly
    let init: f64 = after(t, "loss before training ").split(' ').next().unwrap().parse().unwrap();
    assert!((init - 27f64.ln()).abs() < 0.2, "initial loss {init}");

    // backward through a state that was not detached is an error, from libtorch
    let failed = after(t, "chunk 1 without detach: backward failed: ");
    assert!(failed.contains("Trying to backward through the graph a second time"), "{failed}");
    // (the detached backward succeeding is the run succeeding; how much slower
    // the growing graph makes backward is printed and drawn, not asserted:
    // timings belong to benchmarks, not tests)

    // SGDR: every cycle starts at the base rate and anneals far below it
    let base: f64 = after(t, "SGDR: base lr ").split(',').next().unwrap().parse().unwrap();
    let cycles = &tables(t, "| cycle | steps |")[0];
    assert_eq!(cycles.len(), 3, "{cycles:?}");
    let ln27 = 27f64.ln();
    let mut expected_first = 0;
    for row in cycles {
        let (first, last) = row[1].split_once('-').unwrap();
        assert_eq!(first.parse::<usize>().unwrap(), expected_first, "cycles are contiguous");
        expected_first = last.parse::<usize>().unwrap() + 1;
        let (lr_first, lr_last): (f64, f64) = (row[2].parse().unwrap(), row[3].parse().unwrap());
        assert!((lr_first - base).abs() < 1e-9, "cycle {} starts at {lr_first}", row[0]);
        assert!(lr_last < base / 10.0, "cycle {} ends at {lr_last}", row[0]);
        for val in &row[4..6] {
            assert!(val.parse::<f64>().unwrap() < ln27, "validation loss {val} >= ln 27");
        }
    }
    for col in [4, 5] {
        let first: f64 = cycles[0][col].parse().unwrap();
        let last: f64 = cycles[2][col].parse().unwrap();
        assert!(last < first, "validation loss did not fall over the cycles: {first} -> {last}");
    }

    // sampled names use the vocabulary only
    for model in ["GRU", "LSTM"] {
        let names: Vec<&str> =
            after(t, &format!("names sampled from the {model}: ")).split(", ").collect();
        assert_eq!(names.len(), 12);
        assert!(names.iter().any(|n| !n.is_empty()));
        for n in names {
            assert!(n.chars().all(|c| c.is_ascii_lowercase()), "{model} sampled {n:?}");
        }
    }

    // BatchNorm: the verdict printed is the one the narration gives
    assert!(t.contains("BatchNorm trains better at this learning rate"), "BatchNorm did not help");
    let saturation = |name: &str| -> f64 {
        let line = after(t, &format!("{name}: saturated tanh units "));
        let last = line.split(", ").nth(1).unwrap();
        last.split('%').next().unwrap().parse().unwrap()
    };
    assert!(saturation("without BatchNorm") > saturation("with BatchNorm"));

    // activation statistics: a row per layer, in the nets' order (first and
    // last step of each net)
    let plain = ["Embedding", "FlattenConsecutive"]
        .into_iter()
        .chain(["Linear", "Tanh"].repeat(4))
        .chain(["Linear"])
        .collect::<Vec<_>>();
    let bn = ["Embedding", "FlattenConsecutive"]
        .into_iter()
        .chain(["Linear", "BatchNorm1d", "Tanh"].repeat(4))
        .chain(["Linear"])
        .collect::<Vec<_>>();
    let stats = tables(t, "| layer | kind |");
    assert_eq!(stats.len(), 4);
    for (table, kinds) in stats.iter().zip([&plain, &plain, &bn, &bn]) {
        let got: Vec<&str> = table.iter().map(|r| r[1]).collect();
        assert_eq!(&got, kinds);
        for row in table {
            let std: f64 = row[3].parse().unwrap();
            assert!(std.is_finite() && std > 0.0, "{row:?}");
        }
    }
}
