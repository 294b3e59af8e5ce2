//! The start of Calico's walk over a pool's blocks, bit for bit: libcalico-go's
//! `randomBlockGenerator` draws it with `big.Int.Rand(rand.New(rand.NewSource(seed)), numBlocks)`,
//! so the same node gets the same first block as under Calico. That needs Go's original `math/rand`
//! source (an additive lagged-Fibonacci generator, Mitchell and Reeds) and `math/big`'s sampling.
use super::gorand_cooked::RNG_COOKED;

const RNG_LEN: usize = 607;
const RNG_TAP: usize = 273;
const INT32_MAX: i64 = (1 << 31) - 1;

/// Go's `rngSource` (math/rand, `rand.NewSource`).
///
/// Seeding fills 607 words from ~1,800 steps of a Lehmer generator, yet a block walk start needs a
/// handful of draws. Draw k (k ≤ 273) of a fresh source reads only the untouched seeded words 334 − k
/// and 607 − k, and the seeded word i is a function of `seed · 48271^(21 + 3i) mod (2³¹ − 1)`; so the
/// first 273 draws compute just the words they read (powers from a table built at compile time).
/// A longer run switches to the full state, replaying its draws.
pub(crate) struct GoRand {
    seed: u64,
    draws: usize,
    full: Option<Box<FullState>>,
}

struct FullState {
    tap: usize,
    feed: usize,
    vec: [i64; RNG_LEN],
}

const LEHMER_A: u64 = 48271;
const LEHMER_M: u64 = (1 << 31) - 1;

/// `LEHMER_A^(21 + 3i) mod LEHMER_M`: the multiplier from the seed to the first of the three
/// generator values that make seeded word i (Go runs 20 steps, then three per word).
const POW: [u64; RNG_LEN] = {
    let mut t = [0u64; RNG_LEN];
    let mut p = 1u64;
    let mut n = 0;
    while n < 21 {
        p = p * LEHMER_A % LEHMER_M;
        n += 1;
    }
    let a3 = LEHMER_A * LEHMER_A % LEHMER_M * LEHMER_A % LEHMER_M;
    let mut i = 0;
    while i < RNG_LEN {
        t[i] = p;
        p = p * a3 % LEHMER_M;
        i += 1;
    }
    t
};

/// x[n+1] = 48271 · x[n] mod (2³¹ − 1), Schrage's method as Go computes it.
fn seedrand(x: i32) -> i32 {
    const A: i32 = 48271;
    const Q: i32 = 44488;
    const R: i32 = 3399;
    let (hi, lo) = (x / Q, x % Q);
    let x = A * lo - R * hi;
    if x < 0 { x + INT32_MAX as i32 } else { x }
}

impl GoRand {
    /// `rand.NewSource(seed)`.
    pub(crate) fn new(seed: i64) -> GoRand {
        let mut seed = seed % INT32_MAX;
        if seed < 0 {
            seed += INT32_MAX;
        }
        if seed == 0 {
            seed = 89_482_311;
        }
        GoRand {
            seed: seed as u64,
            draws: 0,
            full: None,
        }
    }

    /// Seeded word i (`rngSource.Seed`'s `rng.vec[i]`).
    fn seeded(&self, i: usize) -> i64 {
        let a = self.seed * POW[i] % LEHMER_M;
        let b = a * LEHMER_A % LEHMER_M;
        let c = b * LEHMER_A % LEHMER_M;
        ((a << 40) ^ (b << 20) ^ c) as i64 ^ RNG_COOKED[i]
    }

    /// The whole seeded state, as `rngSource.Seed` builds it (Go's loop, step by step).
    fn full_state(&self) -> FullState {
        let mut x = self.seed as i32;
        let mut vec = [0i64; RNG_LEN];
        for i in -20..RNG_LEN as i32 {
            x = seedrand(x);
            if i >= 0 {
                let mut u = i64::from(x) << 40;
                x = seedrand(x);
                u ^= i64::from(x) << 20;
                x = seedrand(x);
                u ^= i64::from(x);
                vec[i as usize] = u ^ RNG_COOKED[i as usize];
            }
        }
        FullState {
            tap: 0,
            feed: RNG_LEN - RNG_TAP,
            vec,
        }
    }

    /// `rngSource.Uint64`.
    pub(crate) fn uint64(&mut self) -> u64 {
        if self.full.is_none() && self.draws < RNG_TAP {
            self.draws += 1;
            let k = self.draws;
            let feed = self.seeded(RNG_LEN - RNG_TAP - k);
            let tap = self.seeded(RNG_LEN - k);
            return feed.wrapping_add(tap) as u64;
        }
        if self.full.is_none() {
            let mut st = self.full_state();
            for _ in 0..self.draws {
                st.next();
            }
            self.full = Some(Box::new(st));
        }
        self.full.as_mut().expect("set above").next()
    }

    /// `Rand.Int63`.
    pub(crate) fn int63(&mut self) -> i64 {
        (self.uint64() & (u64::MAX >> 1)) as i64
    }

    /// `Rand.Uint32`: the top 32 of the 63 bits.
    pub(crate) fn uint32(&mut self) -> u32 {
        (self.int63() >> 31) as u32
    }

    /// `new(big.Int).Rand(r, limit)` on a 64-bit machine: uniform in [0, limit), 0 when limit is 0.
    /// Go fills whole 64-bit words (low 32 bits drawn first), masks the top word to the bit length
    /// of `limit` and draws again until the value is below `limit`.
    pub(crate) fn big_rand(&mut self, limit: u128) -> u128 {
        if limit == 0 {
            return 0;
        }
        let bits = 128 - limit.leading_zeros();
        let words = bits.div_ceil(64);
        let top_bits = match bits % 64 {
            0 => 64,
            b => b,
        };
        let top_mask = if top_bits == 64 {
            u64::MAX
        } else {
            (1u64 << top_bits) - 1
        };
        loop {
            let mut v: u128 = 0;
            for i in 0..words {
                let lo = u64::from(self.uint32());
                let hi = u64::from(self.uint32());
                let mut w = lo | hi << 32;
                if i == words - 1 {
                    w &= top_mask;
                }
                v |= u128::from(w) << (64 * i);
            }
            if v < limit {
                return v;
            }
        }
    }
}

impl FullState {
    /// `rngSource.Uint64` on the full state.
    fn next(&mut self) -> u64 {
        self.tap = self.tap.checked_sub(1).unwrap_or(RNG_LEN - 1);
        self.feed = self.feed.checked_sub(1).unwrap_or(RNG_LEN - 1);
        let x = self.vec[self.feed].wrapping_add(self.vec[self.tap]);
        self.vec[self.feed] = x;
        x as u64
    }
}

/// The index of the first block Calico tries for `host` in a pool of `num_blocks` blocks: the
/// generator is seeded with FNV-1 32 of the host name (`fnv.New32`, not New32a). One deviation:
/// for /32 (/128) blocks Calico seeds with the current time (determineSeed), which no pure function
/// can reproduce; the host hash is used there too, so the choice stays deterministic.
pub fn block_walk_start(host: &str, num_blocks: u128) -> u128 {
    GoRand::new(i64::from(super::fnv32(host))).big_rand(num_blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_matches_go() {
        // rand.New(rand.NewSource(seed)).Uint64(), printed by Go 1.26; seed 0 is Go's 89482311.
        for (seed, want) in [
            (
                1,
                [
                    5577006791947779410,
                    8674665223082153551,
                    15352856648520921629,
                ],
            ),
            (0, [8717895732742165505, 2259404117704393152, 0]),
            (-5, [1811683815564572222, 4427849682616757295, 0]),
        ] {
            let mut r = GoRand::new(seed);
            let got = [r.uint64(), r.uint64(), r.uint64()];
            let n = if want[2] == 0 { 2 } else { 3 };
            assert_eq!(got[..n], want[..n], "seed {seed}");
        }
    }

    #[test]
    fn computed_words_match_the_full_state_past_the_switch() {
        for seed in [1, 0, -5, 0x811c_9dc5, i64::from(u32::MAX)] {
            let mut lazy = GoRand::new(seed);
            let mut full = lazy.full_state();
            for i in 0..RNG_LEN {
                assert_eq!(lazy.seeded(i), full.vec[i], "seed {seed} word {i}");
            }
            for n in 0..1000 {
                assert_eq!(lazy.uint64(), full.next(), "seed {seed} draw {n}");
            }
        }
    }

    #[test]
    fn block_walk_start_matches_go() {
        let data = include_str!("testdata/go_block_start.txt");
        let mut checked = 0;
        for line in data.lines().filter(|l| !l.starts_with('#')) {
            let f: Vec<&str> = line.split('|').collect();
            let n: u128 = match f[1].strip_prefix('n') {
                Some(v) => v.parse().unwrap(),
                None => 1u128 << f[1].parse::<u32>().unwrap(),
            };
            let want: u128 = f[2].parse().unwrap();
            assert_eq!(block_walk_start(f[0], n), want, "host {:?} n {n}", f[0]);
            checked += 1;
        }
        assert_eq!(checked, 133);
    }
}
