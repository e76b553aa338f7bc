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
}
