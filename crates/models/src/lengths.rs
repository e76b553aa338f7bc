//! Utterances of different lengths in one zero-padded batch, as PyTorch's
//! `pack_padded_sequence` means them: every recurrent state and every pooling
//! sees only an utterance's own frames.
//!
//! `lengths [B]` (Int64, each in `1..=T`) counts the valid leading frames of
//! each row of a `[B, T, ·]` batch. A forward recurrence needs nothing: its
//! output at step `t` depends on steps `<= t` only, so the valid steps are the
//! same as the utterance's alone, and the last one is picked by a gather at
//! `length - 1` ([`last_valid`]). A backward recurrence reads each row
//! reversed within its own length ([`reverse_index`]: step `t` reads
//! `length - 1 - t`, padding stays behind), and its outputs are put back in
//! the input's time order by the same gather (the index is its own inverse).
//! Means run over valid frames only ([`masked_mean`]). Outputs at padded
//! steps are left as computed and never read, so no gradient reaches them.
//!
//! Both engines use these gathers (the fused engine runs libtorch's kernels
//! over the same gathered batch), so the two engines share one mechanism.

use tch::{Kind, Tensor};

/// Checks `lengths` against a batch `[batch, steps, ·]`: Int64 `[batch]`,
/// and, for lengths in CPU memory, every value in `1..=steps` (on a GPU that
/// check would wait for the device every step; an index out of range stops
/// the gather there instead).
///
/// # Panics
/// With a message naming the problem (as tch's ops panic on bad shapes).
pub fn check(lengths: &Tensor, batch: i64, steps: i64) {
    assert_eq!(lengths.kind(), Kind::Int64, "lengths must be Int64, got {:?}", lengths.kind());
    assert_eq!(lengths.size(), [batch], "lengths must be [batch] = [{batch}]");
    if batch > 0 && lengths.device() == tch::Device::Cpu {
        let (lo, hi) = (lengths.min().int64_value(&[]), lengths.max().int64_value(&[]));
        assert!(
            lo >= 1 && hi <= steps,
            "lengths must lie in 1..={steps} (the batch's steps), got {lo}..={hi}"
        );
    }
}

/// `[B, T]` Int64 on `lengths`' device: `length - 1 - t` for `t < length`,
/// `t` otherwise. Gathering time by it reverses each row within its own length.
pub fn reverse_index(lengths: &Tensor, steps: i64) -> Tensor {
    let t = Tensor::arange(steps, (Kind::Int64, lengths.device())).unsqueeze(0); // [1, T]
    let l = lengths.unsqueeze(1); // [B, 1]
    let reversed = &l - 1 - &t; // [B, T]
    reversed.where_self(&t.lt_tensor(&l), &t.expand_as(&reversed))
}

/// `x [B, T, C]` with time gathered by `index [B, T]`: `out[b, t] = x[b, index[b, t]]`.
pub fn gather_time(x: &Tensor, index: &Tensor) -> Tensor {
    let c = x.size()[2];
    let idx = index.unsqueeze(2).expand([-1, -1, c], false);
    x.gather(1, &idx, false)
}

/// Each row of `x [B, T, C]` reversed within its own length; padding stays
/// in place. Its own inverse.
pub fn reverse_within(x: &Tensor, lengths: &Tensor) -> Tensor {
    gather_time(x, &reverse_index(lengths, x.size()[1]))
}

/// The output at each row's last valid step: `[B, T, H] -> [B, H]`
/// (`out[b, length_b - 1]`); the last step of all when `lengths` is `None`.
pub fn last_valid(out: &Tensor, lengths: Option<&Tensor>) -> Tensor {
    match lengths {
        None => out.select(1, -1),
        Some(l) => gather_time(out, &(l - 1).unsqueeze(1)).squeeze_dim(1),
    }
}

/// `[B, T]` of 1 at valid steps and 0 at padding, in `kind` on `lengths`' device.
pub fn mask(lengths: &Tensor, steps: i64, kind: Kind) -> Tensor {
    let t = Tensor::arange(steps, (Kind::Int64, lengths.device())).unsqueeze(0);
    t.lt_tensor(&lengths.unsqueeze(1)).to_kind(kind)
}

/// The mean over valid steps: `[B, T, H] -> [B, H]`; over all steps when
/// `lengths` is `None`. Padded steps are multiplied by zero, so they get a
/// zero gradient whatever they hold.
pub fn masked_mean(out: &Tensor, lengths: Option<&Tensor>) -> Tensor {
    match lengths {
        None => out.mean_dim(1, false, out.kind()),
        Some(l) => {
            let m = mask(l, out.size()[1], out.kind()).unsqueeze(2); // [B, T, 1]
            (out * &m).sum_dim_intlist(1, false, out.kind())
                / m.sum_dim_intlist(1, false, out.kind())
        }
    }
}

/// Runs `run` over `input [B, T, ·]` read forwards or, with `reverse`,
/// backwards (each row within its own length when `lengths` is given, the
/// whole padded row otherwise); returns its `[B, T, ·]` output in the input's
/// time order.
pub fn in_time_order(
    input: &Tensor,
    reverse: bool,
    lengths: Option<&Tensor>,
    run: impl FnOnce(&Tensor) -> Tensor,
) -> Tensor {
    match (reverse, lengths) {
        (false, _) => run(input),
        (true, None) => run(&input.flip([1])).flip([1]),
        (true, Some(l)) => {
            let index = reverse_index(l, input.size()[1]);
            gather_time(&run(&gather_time(input, &index)), &index)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn lens(v: &[i64]) -> Tensor {
        Tensor::from_slice(v)
    }

    #[test]
    fn reverse_index_by_hand() {
        let idx = reverse_index(&lens(&[3, 1, 4]), 4);
        let got: Vec<Vec<i64>> = idx.try_into().unwrap();
        assert_eq!(got, [vec![2, 1, 0, 3], vec![0, 1, 2, 3], vec![3, 2, 1, 0]]);
    }

    #[test]
    fn last_valid_and_mean_by_hand() {
        // out[b, t, 0] = 10 b + t
        let out = (Tensor::arange(2, (Kind::Double, Device::Cpu)).view([2, 1, 1]) * 10
            + Tensor::arange(4, (Kind::Double, Device::Cpu)).view([1, 4, 1]))
        .set_requires_grad(true);
        let l = lens(&[2, 4]);
        let last: Vec<f64> = last_valid(&out, Some(&l)).view([-1]).try_into().unwrap();
        assert_eq!(last, [1.0, 13.0]);
        let mean = masked_mean(&out, Some(&l));
        let m: Vec<f64> = mean.view([-1]).try_into().unwrap();
        assert_eq!(m, [0.5, 11.5]);
        mean.sum(Kind::Double).backward();
        let g: Vec<f64> = out.grad().view([-1]).try_into().unwrap();
        assert_eq!(g, [0.5, 0.5, 0.0, 0.0, 0.25, 0.25, 0.25, 0.25]);
        let all: Vec<f64> = last_valid(&out, None).view([-1]).try_into().unwrap();
        assert_eq!(all, [3.0, 13.0]);
    }

    #[test]
    fn reversing_twice_is_the_identity() {
        let x = Tensor::randn([3, 5, 2], (Kind::Float, Device::Cpu));
        let l = lens(&[5, 2, 3]);
        assert!(reverse_within(&reverse_within(&x, &l), &l).equal(&x));
        let r = reverse_within(&x, &l);
        assert!(r.get(1).get(0).equal(&x.get(1).get(1)));
        assert!(r.get(1).get(4).equal(&x.get(1).get(4)));
        assert!(r.get(0).equal(&x.get(0).flip([0])));
    }

    #[test]
    #[should_panic(expected = "lengths must lie in 1..=4")]
    fn lengths_beyond_the_batch_are_refused() {
        check(&lens(&[2, 5]), 2, 4);
    }
}
