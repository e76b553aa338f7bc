//! The names data set of makemore: `names.txt` (one name a line), its
//! 27-character vocabulary (`.` then `a`-`z`), the lecture's seeded 80/10/10
//! split of the words and its `build_dataset` of (context, next character)
//! pairs.
//!
//! The split reproduces the lecture's `random.seed(42); random.shuffle(words)`
//! exactly: [`PyRandom`] is CPython's Mersenne Twister (MT19937 seeded with
//! `init_by_array`, `_randbelow` by rejection over `getrandbits`), so the
//! train, validation and test words are the lecture's (182,625 / 22,655 /
//! 22,866 examples with a context of 8).

use super::MakemoreError;
use std::path::Path;
use tch::{Device, Kind, Tensor};

/// The character vocabulary: index 0 is `.` (start and end of a name), then
/// the sorted characters of the file (for names.txt: `a`..`z`, 27 in all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vocab {
    chars: Vec<char>,
}

impl Vocab {
    /// The vocabulary of `words`: `.` followed by their sorted distinct characters.
    pub fn from_words(words: &[String]) -> Self {
        let mut chars: Vec<char> = words.iter().flat_map(|w| w.chars()).collect();
        chars.sort_unstable();
        chars.dedup();
        chars.insert(0, '.');
        Self { chars }
    }

    /// The lecture's vocabulary for names.txt: `.abcdefghijklmnopqrstuvwxyz`.
    pub fn names() -> Self {
        Self { chars: std::iter::once('.').chain('a'..='z').collect() }
    }

    pub fn len(&self) -> usize {
        self.chars.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chars.is_empty()
    }

    /// `stoi`.
    pub fn index(&self, c: char) -> Option<i64> {
        self.chars.iter().position(|&x| x == c).map(|i| i as i64)
    }

    /// `itos`; `None` out of range.
    pub fn char(&self, i: i64) -> Option<char> {
        usize::try_from(i).ok().and_then(|i| self.chars.get(i).copied())
    }

    pub fn chars(&self) -> &[char] {
        &self.chars
    }
}

/// Reads `names.txt`: one name per line, lower-case `a`-`z` only (as
/// makemore's file). Empty lines are an error, as are other characters: the
/// error names the file, the line and the character.
pub fn load_words(path: &Path) -> Result<Vec<String>, MakemoreError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| MakemoreError::Io { path: path.to_path_buf(), source })?;
    let words: Vec<String> = text.lines().map(|l| l.trim_end_matches('\r').to_owned()).collect();
    if words.is_empty() {
        return Err(MakemoreError::EmptyNames { path: path.to_path_buf() });
    }
    for (i, w) in words.iter().enumerate() {
        if w.is_empty() {
            return Err(MakemoreError::BadName {
                path: path.to_path_buf(),
                line: i + 1,
                word: w.clone(),
            });
        }
        if !w.chars().all(|c| c.is_ascii_lowercase()) {
            return Err(MakemoreError::BadName {
                path: path.to_path_buf(),
                line: i + 1,
                word: w.clone(),
            });
        }
    }
    Ok(words)
}

/// The three word lists of the lecture's split.
#[derive(Debug, Clone)]
pub struct Split {
    pub train: Vec<String>,
    pub val: Vec<String>,
    pub test: Vec<String>,
}

/// `random.seed(seed); random.shuffle(words)`, then the first 80% train, the
/// next 10% validation, the rest test (`n1 = int(0.8 n)`, `n2 = int(0.9 n)`).
pub fn split_words(words: &[String], seed: u32) -> Split {
    let mut words = words.to_vec();
    PyRandom::new(seed).shuffle(&mut words);
    let n = words.len();
    let (n1, n2) = ((0.8 * n as f64) as usize, (0.9 * n as f64) as usize);
    let test = words.split_off(n2);
    let val = words.split_off(n1);
    Split { train: words, val, test }
}

/// The lecture's `build_dataset`: for each word, every (context of
/// `block_size` previous characters, padded with `.`) -> next character,
/// ending with `.`. Returns `X [N, block_size]` and `Y [N]`, int64 on `device`.
/// Characters outside `vocab` are an error naming them.
pub fn build_dataset(
    words: &[String],
    vocab: &Vocab,
    block_size: usize,
    device: Device,
) -> Result<(Tensor, Tensor), MakemoreError> {
    let mut xs: Vec<i64> = Vec::new();
    let mut ys: Vec<i64> = Vec::new();
    for w in words {
        let mut context = vec![0i64; block_size];
        for c in w.chars().chain(std::iter::once('.')) {
            let ix = vocab.index(c).ok_or(MakemoreError::OutOfVocab(c))?;
            xs.extend_from_slice(&context);
            ys.push(ix);
            context.remove(0);
            context.push(ix);
        }
    }
    let n = ys.len() as i64;
    let x = Tensor::from_slice(&xs).reshape([n, block_size as i64]).to_kind(Kind::Int64);
    Ok((x.to_device(device), Tensor::from_slice(&ys).to_device(device)))
}

/// CPython's `random.Random` restricted to what `shuffle` needs, so the
/// lecture's split is reproduced word for word.
pub struct PyRandom {
    mt: [u32; 624],
    index: usize,
}

impl PyRandom {
    /// `random.seed(seed)` for a non-negative integer below 2³²
    /// (`init_by_array([seed])`).
    pub fn new(seed: u32) -> Self {
        let mut r = Self { mt: [0; 624], index: 624 };
        r.init_genrand(19_650_218);
        let key = [seed];
        let (mut i, mut j) = (1usize, 0usize);
        for _ in 0..624usize.max(key.len()) {
            let prev = r.mt[i - 1] ^ (r.mt[i - 1] >> 30);
            r.mt[i] = (r.mt[i] ^ prev.wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= 624 {
                r.mt[0] = r.mt[623];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..623 {
            let prev = r.mt[i - 1] ^ (r.mt[i - 1] >> 30);
            r.mt[i] = (r.mt[i] ^ prev.wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= 624 {
                r.mt[0] = r.mt[623];
                i = 1;
            }
        }
        r.mt[0] = 0x8000_0000;
        r.index = 624;
        r
    }

    fn init_genrand(&mut self, s: u32) {
        self.mt[0] = s;
        for i in 1..624 {
            let prev = self.mt[i - 1] ^ (self.mt[i - 1] >> 30);
            self.mt[i] = 1_812_433_253u32.wrapping_mul(prev).wrapping_add(i as u32);
        }
    }

    /// `genrand_uint32`, i.e. `random.getrandbits(32)`.
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for k in 0..624 {
                let y = (self.mt[k] & 0x8000_0000) | (self.mt[(k + 1) % 624] & 0x7fff_ffff);
                let mag = if y & 1 == 1 { 0x9908_b0df } else { 0 };
                self.mt[k] = self.mt[(k + 397) % 624] ^ (y >> 1) ^ mag;
            }
            self.index = 0;
        }
        let mut y = self.mt[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `_randbelow(n)` for `0 < n < 2³²`: `getrandbits(n.bit_length())`,
    /// rejecting values `>= n`.
    pub fn randbelow(&mut self, n: u32) -> u32 {
        let k = 32 - n.leading_zeros();
        loop {
            let r = self.next_u32() >> (32 - k);
            if r < n {
                return r;
            }
        }
    }

    /// `random.shuffle(x)`.
    pub fn shuffle<T>(&mut self, x: &mut [T]) {
        for i in (1..x.len()).rev() {
            let j = self.randbelow(i as u32 + 1) as usize;
            x.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values from CPython 3 (`random.seed(42)`), see
    /// scripts/wavenet_reference.py `--golden`.
    #[test]
    fn py_random_matches_cpython() {
        let mut r = PyRandom::new(42);
        assert_eq!([r.next_u32(), r.next_u32(), r.next_u32()], [2746317213, 478163327, 107420369]);
        let mut l: Vec<u32> = (0..10).collect();
        PyRandom::new(42).shuffle(&mut l);
        assert_eq!(l, [7, 3, 2, 8, 5, 6, 9, 4, 0, 1]);
    }

    #[test]
    fn build_dataset_windows() {
        let vocab = Vocab::names();
        let (x, y) = build_dataset(&["emma".to_owned()], &vocab, 3, Device::Cpu).unwrap();
        assert_eq!(x.size(), [5, 3]);
        let x = Vec::<i64>::try_from(x.reshape([-1])).unwrap();
        assert_eq!(x, [0, 0, 0, 0, 0, 5, 0, 5, 13, 5, 13, 13, 13, 13, 1]);
        assert_eq!(Vec::<i64>::try_from(y).unwrap(), [5, 13, 13, 1, 0]);
        assert!(matches!(
            build_dataset(&["é".to_owned()], &vocab, 3, Device::Cpu),
            Err(MakemoreError::OutOfVocab('é'))
        ));
    }

    #[test]
    fn vocab_of_words() {
        let words: Vec<String> = ["cab", "ba"].iter().map(|s| s.to_string()).collect();
        let v = Vocab::from_words(&words);
        assert_eq!(v.chars(), ['.', 'a', 'b', 'c']);
        assert_eq!(v.index('c'), Some(3));
        assert_eq!(v.char(0), Some('.'));
        assert_eq!(v.char(4), None);
        assert_eq!(Vocab::names().len(), 27);
    }
}
