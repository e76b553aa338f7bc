//! Looking at embeddings: k-means (Lloyd's algorithm with k-means++ seeding and
//! several restarts, as scikit-learn's `KMeans(n_init=10)`), cluster purity,
//! and a 2-D PCA projection for plots.
//!
//! Points are rows of an `[N, D]` tensor; the work is done in f64 on the CPU
//! (a few hundred embeddings), so results do not depend on the training device.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// Options of [`kmeans`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KMeansConfig {
    /// Independent runs from different seeds; the one with the lowest inertia wins.
    pub n_init: usize,
    /// Lloyd iterations per run at most.
    pub max_iter: usize,
    pub seed: u64,
}

impl Default for KMeansConfig {
    fn default() -> Self {
        Self { n_init: 10, max_iter: 300, seed: 0 }
    }
}

/// The result of [`kmeans`].
#[derive(Debug)]
pub struct KMeans {
    /// Cluster of each point, in `0..k`.
    pub labels: Vec<usize>,
    /// `[k, D]`, f64 on the CPU.
    pub centroids: Tensor,
    /// Sum of squared distances of points to their centroid.
    pub inertia: f64,
}

/// Clusters the rows of `points` `[N, D]` into `k` groups. Panics when
/// `k == 0` or `k > N`.
pub fn kmeans(points: &Tensor, k: usize, config: KMeansConfig) -> KMeans {
    let x = points.to_device(Device::Cpu).to_kind(Kind::Double).detach(); // [N, D]
    let n = x.size()[0] as usize;
    assert!(k > 0 && k <= n, "k-means needs 0 < k <= N (k = {k}, N = {n})");
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut best: Option<KMeans> = None;
    for _ in 0..config.n_init.max(1) {
        let run = lloyd(&x, init_plus_plus(&x, k, &mut rng), config.max_iter);
        if best.as_ref().is_none_or(|b| run.inertia < b.inertia) {
            best = Some(run);
        }
    }
    best.expect("at least one run")
}

/// Squared distances `[N, k]` from every point to every centroid.
fn sq_dists(x: &Tensor, c: &Tensor) -> Tensor {
    let d = x.unsqueeze(1) - c.unsqueeze(0); // [N, k, D]
    d.square().sum_dim_intlist(-1, false, Kind::Double)
}

/// k-means++ (Arthur & Vassilvitskii 2007): each next centre drawn with
/// probability proportional to the squared distance to the nearest chosen one.
fn init_plus_plus(x: &Tensor, k: usize, rng: &mut ChaCha8Rng) -> Tensor {
    let n = x.size()[0];
    let mut chosen = vec![rng.gen_range(0..n)];
    while chosen.len() < k {
        let c = x.index_select(0, &Tensor::from_slice(&chosen));
        let d: Vec<f64> = sq_dists(x, &c).amin(-1, false).try_into().expect("f64 distances");
        let total: f64 = d.iter().sum();
        let next = if total <= 0.0 {
            // Every point coincides with a centre: take any point not chosen yet.
            (0..n).find(|i| !chosen.contains(i)).unwrap_or(0)
        } else {
            let mut r = rng.gen::<f64>() * total;
            let mut pick = n - 1;
            for (i, di) in d.iter().enumerate() {
                r -= di;
                if r < 0.0 {
                    pick = i as i64;
                    break;
                }
            }
            pick
        };
        chosen.push(next);
    }
    x.index_select(0, &Tensor::from_slice(&chosen))
}

fn lloyd(x: &Tensor, mut centroids: Tensor, max_iter: usize) -> KMeans {
    let k = centroids.size()[0];
    let mut labels = Tensor::zeros([x.size()[0]], (Kind::Int64, Device::Cpu));
    for it in 0..max_iter {
        let new_labels = sq_dists(x, &centroids).argmin(-1, false); // [N]
        if it > 0 && new_labels.equal(&labels) {
            break;
        }
        labels = new_labels;
        let one_hot = labels.one_hot(k).to_kind(Kind::Double); // [N, k]
        let counts = one_hot.sum_dim_intlist(0, false, Kind::Double); // [k]
        let sums = one_hot.tr().matmul(x); // [k, D]
                                           // An emptied cluster keeps its old centre.
        let empty = counts.eq(0.0).unsqueeze(-1);
        centroids = centroids.where_self(&empty, &(sums / counts.clamp_min(1.0).unsqueeze(-1)));
    }
    let d = sq_dists(x, &centroids);
    let inertia = d.amin(-1, false).sum(Kind::Double).double_value(&[]);
    let labels: Vec<i64> = d.argmin(-1, false).try_into().expect("i64 labels");
    KMeans { labels: labels.into_iter().map(|l| l as usize).collect(), centroids, inertia }
}

/// Purity of k-means with `k` clusters on `points` `[N, D]` against the
/// labels `[N]` (a label tensor, on any device): how well the embeddings
/// separate the classes without being told them.
pub fn kmeans_purity(
    points: &Tensor,
    labels: &Tensor,
    k: usize,
    config: KMeansConfig,
) -> Result<f64, tch::TchError> {
    let km = kmeans(points, k, config);
    let labels = Vec::<i64>::try_from(&labels.to_device(Device::Cpu).to_kind(Kind::Int64))?;
    let labels: Vec<usize> = labels.into_iter().map(|l| l as usize).collect();
    Ok(purity(&km.labels, &labels))
}

/// Purity of a clustering: for each cluster, the count of its most common true
/// label, summed over clusters and divided by the number of points. 1 when
/// every cluster holds one label only.
pub fn purity(clusters: &[usize], labels: &[usize]) -> f64 {
    assert_eq!(clusters.len(), labels.len(), "one cluster per label");
    if clusters.is_empty() {
        return 0.0;
    }
    let k = clusters.iter().max().map_or(0, |m| m + 1);
    let l = labels.iter().max().map_or(0, |m| m + 1);
    let mut counts = vec![vec![0usize; l]; k];
    for (&c, &y) in clusters.iter().zip(labels) {
        counts[c][y] += 1;
    }
    let majority: usize = counts.iter().map(|row| row.iter().copied().max().unwrap_or(0)).sum();
    majority as f64 / clusters.len() as f64
}

/// Each column of `points` `[N, D]` shifted to mean 0 and scaled to standard
/// deviation 1 over the rows (population std; a constant column becomes 0).
pub fn zscore_columns(points: &Tensor) -> Tensor {
    let x = points.to_device(Device::Cpu).to_kind(Kind::Double).detach();
    let mean = x.mean_dim(0, true, Kind::Double);
    let std = (&x - &mean).square().mean_dim(0, true, Kind::Double).sqrt();
    let safe = std.where_self(&std.gt(1e-12), &std.ones_like());
    (x - mean) / safe
}

/// The no-learning baseline of speaker clustering: each utterance of
/// `frames` `[N, T, C]` (with `lengths` `[N]` valid frames) summarised by the
/// mean and standard deviation of its features over its valid frames
/// ([`crate::speaker::stats_pool`]), standardised per dimension over the `N`
/// utterances ([`zscore_columns`]): `[N, 2C]` f64.
pub fn baseline_features(frames: &Tensor, lengths: &Tensor) -> Tensor {
    let x = frames.to_device(Device::Cpu).to_kind(Kind::Double).detach();
    zscore_columns(&crate::speaker::stats_pool(&x, &lengths.to_device(Device::Cpu)))
}

/// Purity of k-means (`k` clusters, `config` as for the embeddings) on the
/// [`baseline_features`] of `frames` against `labels`.
pub fn baseline_purity(
    frames: &Tensor,
    lengths: &Tensor,
    labels: &Tensor,
    k: usize,
    config: KMeansConfig,
) -> Result<f64, tch::TchError> {
    kmeans_purity(&baseline_features(frames, lengths), labels, k, config)
}

/// How well distances between the rows of `points` `[N, D]` tell speakers
/// apart: the probability that a random same-label pair is closer (Euclidean)
/// than a random different-label pair, ties counting one half (the area under
/// the ROC curve of a verification test; 1 is perfect, 0.5 chance). A smooth
/// score for choosing a checkpoint, where purity moves in steps. `None` when
/// there are no same-label or no different-label pairs.
pub fn pair_auc(points: &Tensor, labels: &Tensor) -> Option<f64> {
    let x = points.to_device(Device::Cpu).to_kind(Kind::Double).detach();
    let y = labels.to_device(Device::Cpu).to_kind(Kind::Int64);
    let n = x.size()[0];
    if n < 2 {
        return None;
    }
    let d = sq_dists(&x, &x); // [N, N]
    let pairs = Tensor::ones([n, n], (Kind::Bool, Device::Cpu)).triu(1);
    let same = y.unsqueeze(1).eq_tensor(&y.unsqueeze(0));
    let d_same = d.masked_select(&pairs.logical_and(&same));
    let d_diff = d.masked_select(&pairs.logical_and(&same.logical_not()));
    let (ns, nd) = (d_same.size()[0], d_diff.size()[0]);
    if ns == 0 || nd == 0 {
        return None;
    }
    // Mann-Whitney: rank all distances together (ties get their mean rank);
    // a same-label pair wins against every larger different-label distance.
    let all: Vec<f64> = Tensor::cat(&[&d_same, &d_diff], 0).try_into().ok()?;
    let mut idx: Vec<usize> = (0..all.len()).collect();
    idx.sort_by(|&a, &b| all[a].total_cmp(&all[b]));
    let mut ranks = vec![0.0; all.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && all[idx[j + 1]] == all[idx[i]] {
            j += 1;
        }
        let mean_rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            ranks[k] = mean_rank;
        }
        i = j + 1;
    }
    let (ns, nd) = (ns as f64, nd as f64);
    let rank_sum_diff: f64 = ranks[ns as usize..].iter().sum();
    // U of the different-label distances: how often one exceeds a same-label one.
    let u = rank_sum_diff - nd * (nd + 1.0) / 2.0;
    Some(u / (ns * nd))
}

/// Projects the rows of `points` `[N, D]` on their first two principal
/// components: `[N, 2]` f64 on the CPU. Each component's sign is fixed so that
/// its largest loading is positive, which keeps successive plots from
/// mirroring at random.
pub fn pca_2d(points: &Tensor) -> Tensor {
    let x = points.to_device(Device::Cpu).to_kind(Kind::Double).detach(); // [N, D]
    let (n, d) = (x.size()[0], x.size()[1]);
    let centred = &x - x.mean_dim(0, true, Kind::Double);
    if n < 2 || d < 1 {
        return Tensor::zeros([n, 2], (Kind::Double, Device::Cpu));
    }
    let (_u, _s, v) = centred.svd(true, true); // v [D, min(N, D)]
    let r = v.size()[1].min(2);
    let comps = v.narrow(1, 0, r).tr(); // [r, D]
    let pivot = comps.abs().argmax(-1, true); // [r, 1]
    let signs = comps.gather(-1, &pivot, false).sign(); // [r, 1]
    let comps = comps * signs.where_self(&signs.ne(0.0), &signs.ones_like());
    let proj = centred.matmul(&comps.tr()); // [N, r]
    if r < 2 {
        Tensor::cat(&[proj, Tensor::zeros([n, 2 - r], (Kind::Double, Device::Cpu))], 1)
    } else {
        proj
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purity_of_constructed_clusterings() {
        // Clusters {0,0,1}, {1,1}, {2}: majorities 2 + 2 + 1 of 6.
        let clusters = [0, 0, 0, 1, 1, 2];
        let labels = [0, 0, 1, 1, 1, 2];
        assert!((purity(&clusters, &labels) - 5.0 / 6.0).abs() < 1e-12);
        // Cluster ids need not match label ids.
        assert_eq!(purity(&[2, 2, 0, 0, 1], &[0, 0, 1, 1, 2]), 1.0);
        // One cluster for two equal-sized labels: 1/2.
        assert_eq!(purity(&[0, 0, 0, 0], &[0, 1, 0, 1]), 0.5);
    }

    #[test]
    fn kmeans_recovers_separated_blobs() {
        let centres = Tensor::from_slice2(&[[0.0, 0.0, 0.0], [10.0, 0.0, 0.0], [0.0, 10.0, 5.0]]);
        let labels: Vec<usize> = (0..60).map(|i| i % 3).collect();
        let idx = Tensor::from_slice(&labels.iter().map(|&l| l as i64).collect::<Vec<_>>());
        let points =
            centres.index_select(0, &idx) + Tensor::randn([60, 3], (Kind::Double, Device::Cpu));
        let km = kmeans(&points, 3, KMeansConfig::default());
        assert_eq!(purity(&km.labels, &labels), 1.0);
        assert_eq!(km.centroids.size(), [3, 3]);
        // Same seed, same answer.
        let again = kmeans(&points, 3, KMeansConfig::default());
        assert_eq!(km.labels, again.labels);
        // from a label tensor, as the speaker model scores its embeddings
        assert_eq!(kmeans_purity(&points, &idx, 3, KMeansConfig::default()).unwrap(), 1.0);
        // labels unrelated to the blobs (blocks of 20) make impure clusters
        let blocks = Tensor::arange(60, (Kind::Int64, Device::Cpu)).divide_scalar_mode(20, "floor");
        let mixed = kmeans_purity(&points, &blocks, 3, KMeansConfig::default()).unwrap();
        assert!(mixed < 0.5, "purity {mixed} for labels unrelated to the clusters");
    }

    #[test]
    fn kmeans_handles_duplicate_points() {
        let points = Tensor::from_slice2(&[[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [5.0, 5.0]]);
        let km = kmeans(&points, 3, KMeansConfig::default());
        assert_eq!(km.labels.len(), 4);
        assert!(km.inertia.abs() < 1e-12);
    }

    #[test]
    fn pca_finds_the_main_axis() {
        // Points on the line y = 2x (plus a tiny z): all variance on one axis.
        let pts: Vec<[f64; 3]> = (0..10).map(|i| [i as f64, 2.0 * i as f64, 0.0]).collect();
        let p = pca_2d(&Tensor::from_slice2(&pts));
        assert_eq!(p.size(), [10, 2]);
        let second: f64 = p.select(1, 1).abs().max().double_value(&[]);
        assert!(second < 1e-9, "second component should be empty, got {second}");
        // Distances along the first component match the originals.
        let first: Vec<f64> = p.select(1, 0).try_into().unwrap();
        let step = (first[1] - first[0]).abs();
        assert!((step - 5f64.sqrt()).abs() < 1e-9);
        // Sign fixed: the largest loading (y) is positive, so the projection grows with i.
        assert!(first[9] > first[0]);
    }

    /// Utterances `[N, T, 2]` of `per` clips a speaker whose frames are drawn
    /// around `centres[label]` with standard deviation `spreads[label]`, and
    /// 1e6 after each clip's length (10, 13 or 16 frames), which the baseline
    /// must ignore.
    fn clouds(centres: &[[f64; 2]], spreads: &[f64], per: usize) -> (Tensor, Tensor, Tensor) {
        let opts = (Kind::Double, Device::Cpu);
        let n = (centres.len() * per) as i64;
        let y = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(centres.len() as i64);
        let c = Tensor::from_slice2(centres).index_select(0, &y).unsqueeze(1); // [N, 1, 2]
        let s = Tensor::from_slice(spreads).index_select(0, &y).view([-1, 1, 1]);
        let x = c + Tensor::randn([n, 20, 2], opts) * s;
        let lengths = Tensor::arange(n, (Kind::Int64, Device::Cpu)).remainder(3) * 3 + 10;
        let steps = Tensor::arange(20, (Kind::Int64, Device::Cpu));
        let pad = steps.unsqueeze(0).ge_tensor(&lengths.unsqueeze(1)).unsqueeze(-1);
        (x.masked_fill(&pad, 1e6), lengths, y)
    }

    #[test]
    fn baseline_separates_distinct_speakers_and_not_identical_ones() {
        tch::manual_seed(1);
        let cfg = KMeansConfig::default();
        let (x, len, y) = clouds(&[[0.0, 0.0], [8.0, -8.0]], &[1.0, 1.5], 30);
        assert_eq!(baseline_purity(&x, &len, &y, 2, cfg).unwrap(), 1.0);
        // The features: 2 means and 2 stds, z-scored over the utterances;
        // utterance 0's first mean over its 10 valid frames, by hand.
        let f = baseline_features(&x, &len);
        assert_eq!(f.size(), [60, 4]);
        let means: Vec<f64> = (0..60)
            .map(|i| {
                let l = len.int64_value(&[i]);
                let v: Vec<f64> = x.get(i).narrow(0, 0, l).select(1, 0).try_into().unwrap();
                v.iter().sum::<f64>() / l as f64
            })
            .collect();
        let mu = means.iter().sum::<f64>() / 60.0;
        let sd = (means.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / 60.0).sqrt();
        assert!((f.double_value(&[0, 0]) - (means[0] - mu) / sd).abs() < 1e-9);
        let col: Vec<f64> = f.select(1, 3).try_into().unwrap();
        let (m, v) =
            (col.iter().sum::<f64>() / 60.0, col.iter().map(|c| c * c).sum::<f64>() / 60.0);
        assert!(m.abs() < 1e-9 && (v - 1.0).abs() < 1e-9, "column mean {m}, variance {v}");
        // Identical speakers: the clusters follow noise, about half right.
        let (x, len, y) = clouds(&[[0.0, 0.0], [0.0, 0.0]], &[1.0, 1.0], 40);
        let p = baseline_purity(&x, &len, &y, 2, cfg).unwrap();
        assert!(p < 0.7, "purity {p} for indistinguishable speakers");
    }

    #[test]
    fn pair_auc_of_hand_made_cases() {
        // On a line: a = {0, 1}, b = {10, 12}. Same pairs: 1 and 4 (squared);
        // different pairs: 100, 144, 81, 121. Every same pair is closer.
        let p = Tensor::from_slice2(&[[0.0], [1.0], [10.0], [12.0]]);
        let y = Tensor::from_slice(&[0i64, 0, 1, 1]);
        assert_eq!(pair_auc(&p, &y), Some(1.0));
        // a = {0, 10}, b = {1, 12}: same 100, 121; different 1, 144, 81, 4.
        // Same 100 beats 144 only; 121 beats 144 only: 2 of 8.
        let y = Tensor::from_slice(&[0i64, 1, 0, 1]);
        assert_eq!(pair_auc(&p, &y), Some(0.25));
        // A tie counts one half.
        let y = Tensor::from_slice(&[0i64, 0, 1]);
        let q = Tensor::from_slice2(&[[0.0], [1.0], [-1.0]]);
        // q: same (0,1) = 1; different (0,2) = 1, (1,2) = 4: one tie, one win.
        assert_eq!(pair_auc(&q, &y), Some(0.75));
        assert_eq!(pair_auc(&q, &Tensor::from_slice(&[0i64, 0, 0])), None);
    }
}
