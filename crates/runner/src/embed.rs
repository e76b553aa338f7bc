//! `rnnlab embed` and `rnnlab cluster`: a trained speaker run applied to new
//! recordings.
//!
//! Every WAV file under a folder (any depth, any rate or channel count the
//! data crate reads) is cut or padded to the run's 1.5 s window, turned into
//! MFCCs, standardised with the run's training statistics and embedded by
//! the run's chosen checkpoint (`best` when it had validation speakers,
//! `last` otherwise; `--checkpoint` overrides), pooling over the clip's
//! valid frames.
//!
//! - `embed` writes `file,e0,...,e<E-1>` (one row per WAV, `file` relative
//!   to the folder);
//! - `cluster -k K` groups the recordings with k-means (the one that scores
//!   the runs: k-means++ seeding, 10 restarts, seed 0) and writes
//!   `file,cluster` and a scatter of the embeddings on their first two
//!   principal components, coloured by cluster. With `--speaker-folders`
//!   each file's speaker is the folder it lies in below FOLDER, and the
//!   clusters' purity is printed beside the no-learning baseline's (the same
//!   k-means on each file's standardised MFCC mean and standard deviation),
//!   as training reports `unseen_purity` and `baseline_purity`.

use crate::config::RunConfig;
use crate::speaker::{embed_all, SpeakerRunConfig};
use anyhow::{anyhow, bail, Context};
use clap::Args;
use data::cache::FeatureCache;
use data::loader::DataLoader;
use data::speakers::WINDOW_SAMPLES;
use figures::register_fonts;
use figures::scatter::{draw_legend, draw_panel, Point, PointKind};
use models::cluster::{baseline_purity, kmeans, pca_2d, purity, KMeansConfig};
use models::speaker::SpeakerModel;
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{nn, Device, Tensor};
use train::RunDir;

/// Flags of `rnnlab embed`.
#[derive(Args, Debug, Clone)]
pub struct EmbedArgs {
    /// A speaker run folder (`rnnlab train --model speaker`).
    #[arg(long)]
    pub run: PathBuf,
    /// The folder of WAV files to embed (searched at any depth).
    pub folder: PathBuf,
    /// The CSV to write.
    #[arg(long, default_value = "embeddings.csv")]
    pub out: PathBuf,
    /// `best` or `last` (default: the checkpoint the run's summary scores).
    #[arg(long)]
    pub checkpoint: Option<String>,
}

/// Flags of `rnnlab cluster`.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// A speaker run folder (`rnnlab train --model speaker`).
    #[arg(long)]
    pub run: PathBuf,
    /// The folder of WAV files to group by speaker (searched at any depth).
    pub folder: PathBuf,
    /// How many speakers (clusters) to find.
    #[arg(short)]
    pub k: usize,
    /// The CSV to write (`file,cluster`); the scatter plot goes beside it as `.png`.
    #[arg(long, default_value = "clusters.csv")]
    pub out: PathBuf,
    /// `best` or `last` (default: the checkpoint the run's summary scores).
    #[arg(long)]
    pub checkpoint: Option<String>,
    /// The recordings are known: each file's speaker is its first folder below
    /// FOLDER. Prints the clusters' purity and the baseline's.
    #[arg(long)]
    pub speaker_folders: bool,
}

/// A row of `rnnlab embed`'s CSV: the file (relative to the folder) and its
/// embedding, one column each (`e0`, `e1`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmbedRow(pub String, pub Vec<f64>);

/// A row of `rnnlab cluster`'s CSV.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRow {
    pub file: String,
    pub cluster: usize,
}

/// Every `.wav` under `folder` (any depth, hidden entries skipped), sorted.
fn wav_files(folder: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !folder.is_dir() {
        bail!("{}: no such folder of WAV files", folder.display());
    }
    let mut out = Vec::new();
    let mut stack = vec![folder.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?;
        for e in entries {
            let p = e.with_context(|| format!("listing {}", dir.display()))?.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or(".");
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| x.eq_ignore_ascii_case("wav"))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("{}: holds no .wav file", folder.display());
    }
    Ok(out)
}

/// The speaker run in `dir` and its model with the chosen checkpoint loaded.
fn load_run(
    dir: &Path,
    checkpoint: Option<&str>,
) -> anyhow::Result<(SpeakerRunConfig, SpeakerModel, nn::VarStore)> {
    let cfg = match RunConfig::read(dir).with_context(|| format!("--run {}", dir.display()))? {
        RunConfig::Speaker(c) => c,
        other => bail!("--run {}: a {:?} run, not a speaker run", dir.display(), other.kind()),
    };
    let name = checkpoint.unwrap_or_else(|| cfg.train.chosen_checkpoint());
    if ![train::BEST, train::LAST].contains(&name) {
        bail!("--checkpoint {name}: expected best or last");
    }
    let vs = nn::VarStore::new(Device::Cpu);
    let model = SpeakerModel::new(vs.root(), cfg.speaker);
    RunDir::open(dir)?
        .load_checkpoint(&vs, name)
        .with_context(|| format!("--run {}: loading the {name} checkpoint", dir.display()))?;
    Ok((cfg, model, vs))
}

/// Each file's speaker index (in sorted order of the names) and the names:
/// a file's speaker is its first folder below `folder`.
fn speakers_of_folders(
    files: &[PathBuf],
    folder: &Path,
) -> anyhow::Result<(Vec<usize>, Vec<String>)> {
    let mut names = Vec::with_capacity(files.len());
    for f in files {
        let rel = relative(f, folder);
        match rel.split_once('/') {
            Some((speaker, _)) => names.push(speaker.to_owned()),
            None => bail!(
                "--speaker-folders: {} lies directly in {}; put each speaker's files in a \
                 folder named after the speaker",
                rel,
                folder.display()
            ),
        }
    }
    let mut speakers = names.clone();
    speakers.sort();
    speakers.dedup();
    if speakers.len() < 2 {
        bail!(
            "--speaker-folders: {} holds one speaker's folder ({}); purity needs at least two",
            folder.display(),
            speakers.join(", ")
        );
    }
    let labels = names.iter().map(|n| speakers.binary_search(n).expect("a listed name")).collect();
    Ok((labels, speakers))
}

/// The files' features as the run's model reads them: cut or padded to the
/// run's window, standardised with the run's statistics, one batch on the CPU.
fn features_of(cfg: &SpeakerRunConfig, files: &[PathBuf]) -> anyhow::Result<DataLoader> {
    if cfg.window_samples != WINDOW_SAMPLES {
        bail!(
            "the run used {}-sample windows; this build reads {WINDOW_SAMPLES}",
            cfg.window_samples
        );
    }
    let cache = FeatureCache::uncached(cfg.mfcc, Some(cfg.window_samples));
    let feats = cache.features_many(files)?;
    let labels = vec![0i64; feats.len()];
    Ok(DataLoader::from_features(&feats, &labels, 1, Device::Cpu)?.standardize(&cfg.standardizer))
}

/// Embeddings `[N, E]` of the files behind `loader` by the run's model.
fn embed_loader(model: &SpeakerModel, loader: &DataLoader) -> Tensor {
    embed_all(model, loader.tensors().0, loader.lengths())
}

/// `file` relative to `folder`, with `/` separators.
fn relative(file: &Path, folder: &Path) -> String {
    let rel = file.strip_prefix(folder).unwrap_or(file);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Writes `path` through a temporary file beside it and a rename.
fn write_atomic(
    path: &Path,
    write: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).context("an output file name")?;
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    write(&tmp).with_context(|| format!("writing {}", path.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Writes `rnnlab embed`'s CSV: a header `file,e0,...` and one [`EmbedRow`] a file.
pub fn write_embeddings(path: &Path, rows: &[EmbedRow]) -> anyhow::Result<()> {
    let dim = rows.first().map_or(0, |r| r.1.len());
    write_atomic(path, |tmp| {
        let mut w = csv::WriterBuilder::new().has_headers(false).from_path(tmp)?;
        let header: Vec<String> =
            std::iter::once("file".to_string()).chain((0..dim).map(|i| format!("e{i}"))).collect();
        w.write_record(&header)?;
        for r in rows {
            w.serialize(r)?;
        }
        w.flush()?;
        Ok(())
    })
}

/// Reads what [`write_embeddings`] wrote; every row must have the header's width.
#[cfg(test)]
pub fn read_embeddings(path: &Path) -> anyhow::Result<Vec<EmbedRow>> {
    let mut r =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let width = r.headers().with_context(|| format!("reading {}", path.display()))?.len();
    let mut rows = Vec::new();
    for (i, row) in r.deserialize::<EmbedRow>().enumerate() {
        let row = row.with_context(|| format!("{}: row {}", path.display(), i + 2))?;
        if row.1.len() + 1 != width {
            bail!(
                "{}: row {} has {} columns, the header {width}",
                path.display(),
                i + 2,
                row.1.len() + 1
            );
        }
        rows.push(row);
    }
    Ok(rows)
}

pub fn embed(args: &EmbedArgs) -> anyhow::Result<()> {
    let files = wav_files(&args.folder)?;
    let (cfg, model, _vs) = load_run(&args.run, args.checkpoint.as_deref())?;
    let emb = embed_loader(&model, &features_of(&cfg, &files)?);
    let values: Vec<Vec<f64>> = Vec::<Vec<f64>>::try_from(&emb.to_kind(tch::Kind::Double))?;
    let rows: Vec<EmbedRow> =
        files.iter().zip(values).map(|(f, v)| EmbedRow(relative(f, &args.folder), v)).collect();
    write_embeddings(&args.out, &rows)?;
    println!(
        "{} recordings embedded in {} dimensions; wrote {}",
        rows.len(),
        cfg.speaker.embedding_size(),
        args.out.display()
    );
    Ok(())
}

pub fn cluster(args: &ClusterArgs) -> anyhow::Result<()> {
    let files = wav_files(&args.folder)?;
    if args.k == 0 || args.k > files.len() {
        bail!(
            "-k {}: must be between 1 and the {} recordings in {}",
            args.k,
            files.len(),
            args.folder.display()
        );
    }
    let known =
        args.speaker_folders.then(|| speakers_of_folders(&files, &args.folder)).transpose()?;
    let (cfg, model, _vs) = load_run(&args.run, args.checkpoint.as_deref())?;
    let loader = features_of(&cfg, &files)?;
    let emb = embed_loader(&model, &loader);
    let km = kmeans(&emb, args.k, KMeansConfig::default());
    let rows: Vec<ClusterRow> = files
        .iter()
        .zip(&km.labels)
        .map(|(f, &c)| ClusterRow { file: relative(f, &args.folder), cluster: c })
        .collect();
    write_atomic(&args.out, |tmp| {
        let mut w = csv::Writer::from_path(tmp)?;
        for r in &rows {
            w.serialize(r)?;
        }
        w.flush()?;
        Ok(())
    })?;
    // with known speakers: the clusters' purity and the no-learning baseline's
    let scores = known
        .map(|(labels, speakers)| -> anyhow::Result<_> {
            let y = Tensor::from_slice(&labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
            let (x, lengths) = (loader.tensors().0, loader.lengths());
            let baseline = baseline_purity(x, lengths, &y, args.k, KMeansConfig::default())?;
            Ok((purity(&km.labels, &labels), baseline, speakers))
        })
        .transpose()?;
    let png = args.out.with_extension("png");
    let pcs: Vec<Vec<f64>> = Vec::<Vec<f64>>::try_from(&pca_2d(&emb))?;
    let points: Vec<(f64, f64, usize)> =
        pcs.iter().zip(&km.labels).map(|(p, &c)| (p[0], p[1], c)).collect();
    let title = match &scores {
        Some((learned, baseline, _)) => format!(
            "{} recordings, k = {}: purity {:.1}% (baseline {:.1}%)",
            files.len(),
            args.k,
            100.0 * learned,
            100.0 * baseline
        ),
        None => format!("{} recordings, k = {} (PCA of the embeddings)", files.len(), args.k),
    };
    write_atomic(&png, |tmp| {
        // the temporary name keeps the extension the bitmap backend picks the format from
        let tmp_png = tmp.with_extension("tmp.png");
        draw_clusters(&tmp_png, &points, args.k, &title)?;
        std::fs::rename(&tmp_png, tmp)?;
        Ok(())
    })?;
    let mut sizes = vec![0usize; args.k];
    for &c in &km.labels {
        sizes[c] += 1;
    }
    println!(
        "{} recordings in {} clusters (sizes {:?}); wrote {} and {}",
        files.len(),
        args.k,
        sizes,
        args.out.display(),
        png.display()
    );
    if let Some((learned, baseline, speakers)) = scores {
        println!(
            "{} speakers ({}): purity {:.1}%, baseline {:.1}% (k-means on standardised MFCC \
             mean and std)",
            speakers.len(),
            speakers.join(", "),
            100.0 * learned,
            100.0 * baseline
        );
    }
    Ok(())
}

/// A scatter of embeddings on their first two principal components
/// (`points`: x, y, cluster), coloured by cluster, drawn as the runs'
/// `embeddings.png` panels are.
fn draw_clusters(
    path: &Path,
    points: &[(f64, f64, usize)],
    k: usize,
    title: &str,
) -> anyhow::Result<()> {
    register_fonts()?;
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let root = BitMapBackend::new(path, (1000, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (chart, legend) = root.split_horizontally(740);
    let pts: Vec<Point> = points
        .iter()
        .map(|&(x, y, c)| Point { kind: PointKind::Unseen, speaker: c, x, y })
        .collect();
    draw_panel(&chart, &pts, title, 15, k)?;
    let names: Vec<String> = (0..k).map(|c| format!("cluster {c}")).collect();
    draw_legend(&legend, &[], &names, &[])?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("rnnlab-embed-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn embedding_csv_round_trips_and_refuses_ragged_rows() {
        let dir = scratch("csv");
        let path = dir.join("e.csv");
        let rows = vec![
            EmbedRow("a/0000.wav".into(), vec![0.5, -1.25, 3.0]),
            EmbedRow("b, with comma.wav".into(), vec![1e-7, 0.0, -2.0]),
        ];
        write_embeddings(&path, &rows).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("file,e0,e1,e2\na/0000.wav,0.5,-1.25,3.0\n"), "{text}");
        assert_eq!(read_embeddings(&path).unwrap(), rows);
        std::fs::write(&path, "file,e0,e1\nx.wav,1.0\n").unwrap();
        let e = format!("{:#}", read_embeddings(&path).unwrap_err());
        assert!(e.contains("e.csv") && e.contains("row 2"), "{e}");
        assert!(!dir.join(".e.csv.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wav_files_are_found_at_any_depth_and_an_empty_folder_is_refused() {
        let dir = scratch("wavs");
        std::fs::create_dir_all(dir.join("s1/deep")).unwrap();
        for f in ["s1/b.wav", "s1/deep/a.WAV", "top.wav", "notes.txt", ".hidden.wav"] {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        let found: Vec<String> =
            wav_files(&dir).unwrap().iter().map(|f| relative(f, &dir)).collect();
        assert_eq!(found, ["s1/b.wav", "s1/deep/a.WAV", "top.wav"]);
        let empty = dir.join("s1/deep/none");
        std::fs::create_dir(&empty).unwrap();
        let e = wav_files(&empty).unwrap_err().to_string();
        assert!(e.contains("none") && e.contains("no .wav file"), "{e}");
        let e = wav_files(&dir.join("missing")).unwrap_err().to_string();
        assert!(e.contains("missing") && e.contains("no such folder"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
