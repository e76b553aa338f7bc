//! The grid: `--grid FLAG=V1,V2,...` axes and `--seeds` expanded into runs,
//! one per combination of axis values and seed, each with its folder name and
//! its `rnnlab train` flags. Pure functions; `rnnlab train`'s own parser
//! ([`check_train_flags`]) checks every run's flags before any run starts.

use crate::train::TrainArgs;
use anyhow::{bail, Context};
use clap::{ArgAction, Args, Parser};
use serde::{Deserialize, Serialize};

/// One axis of the grid: a `rnnlab train` flag (without `--`) and its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Axis {
    pub flag: String,
    pub values: Vec<String>,
}

/// One combination of axis values: its folder name and `flag=value` pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Combo {
    pub slug: String,
    pub values: Vec<(String, String)>,
}

/// Flags a sweep sets itself, refused as axes or fixed flags.
const OWN_FLAGS: [(&str, &str); 4] = [
    ("out", "each run's folder is <sweep>/<combination>/seed<k>"),
    ("resume", "re-running the sweep resumes its unfinished runs"),
    ("seed", "give the seeds with --seeds, e.g. --seeds 0-7"),
    ("threads", "give it to the sweep: rnnlab sweep run --threads N"),
];

/// `rnnlab train`'s flags alone, to check a run's flags with its own parser.
#[derive(Parser, Debug)]
#[command(name = "rnnlab train", no_binary_name = true)]
struct TrainOnly {
    #[command(flatten)]
    args: TrainArgs,
}

/// Whether `flag` (without `--`) is a `rnnlab train` flag, and whether it is
/// a switch (takes no value); an error names the flag otherwise.
pub fn train_flag(flag: &str) -> anyhow::Result<bool> {
    if let Some((_, why)) = OWN_FLAGS.iter().find(|(f, _)| *f == flag) {
        bail!("--{flag} cannot be set in a sweep: {why}");
    }
    let cmd = TrainArgs::augment_args(clap::Command::new("train"));
    let arg = cmd.get_arguments().find(|a| a.get_long() == Some(flag)).with_context(|| {
        format!("--{flag} is not a flag of `rnnlab train` (see `rnnlab train --help`)")
    })?;
    Ok(matches!(arg.get_action(), ArgAction::SetTrue))
}

/// Parses one `--grid FLAG=V1,V2,...` (the flag with or without `--`).
pub fn parse_axis(text: &str) -> anyhow::Result<Axis> {
    let syntax = "write it as --grid FLAG=V1,V2,... (e.g. --grid lr=0.001,0.002)";
    let (flag, values) =
        text.split_once('=').with_context(|| format!("--grid {text:?}: no '='; {syntax}"))?;
    let flag = flag.trim().trim_start_matches("--").to_string();
    if flag.is_empty() {
        bail!("--grid {text:?}: no flag before '='; {syntax}");
    }
    let switch = train_flag(&flag).with_context(|| format!("--grid {text:?}"))?;
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_string()).collect();
    if values.iter().any(String::is_empty) {
        bail!("--grid {text:?}: an empty value; {syntax}");
    }
    for (i, v) in values.iter().enumerate() {
        if values[..i].contains(v) {
            bail!("--grid {text:?}: {v:?} is given twice");
        }
        if switch && !["true", "false"].contains(&v.as_str()) {
            bail!("--grid {text:?}: --{flag} is a switch; its values are true and false");
        }
    }
    Ok(Axis { flag, values })
}

/// Parses `--seeds`: numbers and inclusive ranges, comma-separated
/// (`0-7`, `0,3,5`, `0-3,10`), each seed once.
pub fn parse_seeds(text: &str) -> anyhow::Result<Vec<u64>> {
    let bad = |part: &str| {
        format!(
            "--seeds {text:?}: {part:?} is not a seed or a range A-B (e.g. --seeds 0-7 or 0,3,5)"
        )
    };
    let mut seeds = Vec::new();
    for part in text.split(',').map(str::trim) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: u64 = a.trim().parse().with_context(|| bad(part))?;
                let b: u64 = b.trim().parse().with_context(|| bad(part))?;
                if a > b {
                    bail!("--seeds {text:?}: the range {part:?} runs backwards");
                }
                seeds.extend(a..=b);
            }
            None => seeds.push(part.parse().with_context(|| bad(part))?),
        }
    }
    for (i, s) in seeds.iter().enumerate() {
        if seeds[..i].contains(s) {
            bail!("--seeds {text:?}: seed {s} is given twice");
        }
    }
    Ok(seeds)
}

/// A value as it may stand in a folder name: letters, digits, `.`, `-` and
/// `_` stay, anything else becomes `_`.
fn slug_value(v: &str) -> String {
    v.chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' })
        .collect()
}

/// Every combination of the axes' values, the first axis slowest; a grid
/// without axes has one combination, `default`. Folder names join
/// `flag-value` with `_` (`lr-0.001_clip-grad-norm-inf`).
pub fn combos(axes: &[Axis]) -> anyhow::Result<Vec<Combo>> {
    for (i, a) in axes.iter().enumerate() {
        if axes[..i].iter().any(|b| b.flag == a.flag) {
            bail!("--grid {}: the flag has two axes; give its values in one --grid", a.flag);
        }
    }
    let mut out = vec![Vec::<(String, String)>::new()];
    for axis in axes {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                axis.values.iter().map(move |v| {
                    let mut c = prefix.clone();
                    c.push((axis.flag.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    let combos: Vec<Combo> = out
        .into_iter()
        .map(|values| {
            let slug = if values.is_empty() {
                "default".to_string()
            } else {
                values
                    .iter()
                    .map(|(f, v)| format!("{f}-{}", slug_value(v)))
                    .collect::<Vec<_>>()
                    .join("_")
            };
            Combo { slug, values }
        })
        .collect();
    for (i, c) in combos.iter().enumerate() {
        if let Some(other) = combos[..i].iter().find(|o| o.slug == c.slug) {
            bail!(
                "--grid: {:?} and {:?} would share the folder {}; use values that differ in \
                 letters, digits, '.', '-' or '_'",
                other.values,
                c.values,
                c.slug
            );
        }
    }
    Ok(combos)
}

/// The `rnnlab train` flags of one run: the fixed flags, the combination's
/// values (a switch given `true` appears bare, `false` leaves it out; a
/// negative number is joined as `--flag=-1`), the seed and the threads.
pub fn train_argv(fixed: &[String], combo: &Combo, seed: u64, threads: i32) -> Vec<String> {
    let mut argv: Vec<String> = fixed.to_vec();
    for (flag, value) in &combo.values {
        match (train_flag(flag), value.as_str()) {
            (Ok(true), "true") => argv.push(format!("--{flag}")),
            (Ok(true), _) => {}
            // `--flag=-1`: a value that starts with '-' would read as a flag
            _ if value.starts_with('-') => argv.push(format!("--{flag}={value}")),
            _ => argv.extend([format!("--{flag}"), value.clone()]),
        }
    }
    argv.extend(["--seed".into(), seed.to_string(), "--threads".into(), threads.to_string()]);
    argv
}

/// Checks the fixed flags (given after `--`) for flags a sweep sets itself.
pub fn check_fixed(fixed: &[String]) -> anyhow::Result<()> {
    for word in fixed {
        if let Some(flag) = word.strip_prefix("--") {
            let flag = flag.split('=').next().unwrap_or_default();
            if let Some((_, why)) = OWN_FLAGS.iter().find(|(f, _)| *f == flag) {
                bail!("--{flag} cannot be set in a sweep: {why}");
            }
        }
    }
    Ok(())
}

/// Parses a run's flags with `rnnlab train`'s own parser: an unknown flag or
/// a value of the wrong type fails here, before any run starts.
pub fn check_train_flags(argv: &[String]) -> anyhow::Result<()> {
    TrainOnly::try_parse_from(argv).map(|_| ()).map_err(|e| anyhow::anyhow!("{}", e.render()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axes(specs: &[&str]) -> Vec<Axis> {
        specs.iter().map(|s| parse_axis(s).unwrap()).collect()
    }

    #[test]
    fn axes_times_seeds_give_every_run() {
        let a = axes(&["lr=0.001,0.002,0.004", "--clip-grad-norm=1,inf"]);
        let c = combos(&a).unwrap();
        let seeds = parse_seeds("0-7").unwrap();
        assert_eq!(c.len() * seeds.len(), 3 * 2 * 8);
        let slugs: Vec<&str> = c.iter().map(|c| c.slug.as_str()).collect();
        assert_eq!(
            slugs,
            [
                "lr-0.001_clip-grad-norm-1",
                "lr-0.001_clip-grad-norm-inf",
                "lr-0.002_clip-grad-norm-1",
                "lr-0.002_clip-grad-norm-inf",
                "lr-0.004_clip-grad-norm-1",
                "lr-0.004_clip-grad-norm-inf",
            ]
        );
        assert_eq!(combos(&[]).unwrap()[0].slug, "default");
    }

    #[test]
    fn argv_carries_values_seed_and_threads_and_parses_as_train_flags() {
        let a = axes(&["clip-grad-norm=inf,-1", "bidir=true,false"]);
        let c = combos(&a).unwrap();
        let fixed: Vec<String> = ["--model", "gru", "--epochs", "1"].map(String::from).to_vec();
        let argv = train_argv(&fixed, &c[0], 3, 1);
        assert_eq!(
            argv.join(" "),
            "--model gru --epochs 1 --clip-grad-norm inf --bidir --seed 3 --threads 1"
        );
        check_train_flags(&argv).unwrap();
        let argv = train_argv(&fixed, &c[1], 3, 1);
        assert_eq!(
            argv.join(" "),
            "--model gru --epochs 1 --clip-grad-norm inf --seed 3 --threads 1"
        );
        assert_eq!(c[1].slug, "clip-grad-norm-inf_bidir-false");
        let argv = train_argv(&fixed, &c[3], 0, 1);
        assert_eq!(
            argv.join(" "),
            "--model gru --epochs 1 --clip-grad-norm=-1 --seed 0 --threads 1"
        );
        check_train_flags(&argv).unwrap();
        // a value of the wrong type fails before any run starts
        let bad = combos(&axes(&["lr=fast"])).unwrap();
        let err = check_train_flags(&train_argv(&fixed, &bad[0], 0, 1)).unwrap_err();
        assert!(err.to_string().contains("--lr"), "{err}");
    }

    #[test]
    fn seeds_take_ranges_and_lists() {
        assert_eq!(parse_seeds("0-3").unwrap(), [0, 1, 2, 3]);
        assert_eq!(parse_seeds("5").unwrap(), [5]);
        assert_eq!(parse_seeds("0,3, 5-6").unwrap(), [0, 3, 5, 6]);
        for bad in ["", "a", "3-1", "1,1", "0-2,2", "-1"] {
            let err = parse_seeds(bad).unwrap_err().to_string();
            assert!(err.contains("--seeds"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn bad_grid_syntax_names_the_flag() {
        let cases = [
            ("lr", "no '='"),
            ("=1,2", "no flag"),
            ("lr=1,,2", "empty value"),
            ("lr=1,1", "given twice"),
            ("learning-rate=1", "--learning-rate is not a flag of `rnnlab train`"),
            ("seed=1,2", "--seeds"),
            ("out=a", "--out cannot be set"),
            ("bidir=yes", "switch"),
        ];
        for (spec, want) in cases {
            let err = format!("{:#}", parse_axis(spec).unwrap_err());
            assert!(err.contains("--grid") && err.contains(want), "{spec:?}: {err}");
        }
        let twice = vec![parse_axis("lr=1").unwrap(), parse_axis("lr=2").unwrap()];
        assert!(combos(&twice).unwrap_err().to_string().contains("two axes"));
        let clash = axes(&["data-dir=a/b,a_b"]);
        assert!(combos(&clash).unwrap_err().to_string().contains("share the folder"));
        let fixed: Vec<String> = ["--model", "gru", "--seed", "1"].map(String::from).to_vec();
        assert!(check_fixed(&fixed).unwrap_err().to_string().contains("--seeds"));
    }
}
