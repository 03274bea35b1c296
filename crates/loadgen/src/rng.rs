//! LoadGen's random streams, bit for bit.
//!
//! MLPerf LoadGen draws its sample indices, query schedule and loaded sample
//! sets from `std::mt19937` through libstdc++'s distributions. To issue the
//! same samples at the same scheduled times for the same seeds (so a run with
//! joulebench is comparable query by query with one under LoadGen), this module
//! reproduces the engine and the exact algorithms libstdc++ (GCC 11 and newer)
//! uses: Lemire's multiply-shift for bounded integers from a 32-bit engine,
//! the two-at-a-time Fisher–Yates of `std::shuffle`, and `generate_canonical`
//! with two engine calls per `double`.
//!
//! The engine itself is `rand_mt`'s reference Mersenne Twister; the
//! workloads crate draws its seeded weights and data from the same engine.

/// The 32-bit Mersenne Twister (`std::mt19937`, the engine from `rand_mt`)
/// with the distributions libstdc++ draws from it.
#[derive(Clone)]
pub(crate) struct Mt19937(rand_mt::Mt);

impl Mt19937 {
    /// Seeds like `std::mt19937(seed)`: the engine keeps the low 32 bits.
    pub(crate) fn new(seed: u64) -> Self {
        Mt19937(rand_mt::Mt::new(seed as u32))
    }

    /// The next raw 32-bit output.
    pub(crate) fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }

    /// A uniform integer in `[0, range)` (`range >= 1`), as
    /// `std::uniform_int_distribution` draws it from a 32-bit engine
    /// (Lemire's nearly divisionless method).
    pub(crate) fn below(&mut self, range: u64) -> u64 {
        debug_assert!(range >= 1);
        if range > u64::from(u32::MAX) {
            // Upscaling path: never used by LoadGen's ranges (sample counts fit
            // in 32 bits); kept correct but simple for completeness.
            return self.below_upscaled(range);
        }
        let range32 = range as u32;
        if range32 == 0 {
            return 0;
        }
        let mut product = u64::from(self.next_u32()) * u64::from(range32);
        let mut low = product as u32;
        if low < range32 {
            let threshold = range32.wrapping_neg() % range32;
            while low < threshold {
                product = u64::from(self.next_u32()) * u64::from(range32);
                low = product as u32;
            }
        }
        product >> 32
    }

    /// libstdc++'s upscaling for ranges wider than the engine: two draws
    /// combined, rejecting results outside the range.
    fn below_upscaled(&mut self, range: u64) -> u64 {
        let urange = range - 1;
        let engine_range_plus_1: u64 = 1 << 32;
        loop {
            let high = self.below(urange / engine_range_plus_1 + 1);
            let tmp = high.wrapping_mul(engine_range_plus_1);
            let ret = tmp.wrapping_add(u64::from(self.next_u32()));
            if ret <= urange && ret >= tmp {
                return ret;
            }
        }
    }

    /// `std::generate_canonical<double, 53>`: a double in `[0, 1)` from two
    /// engine calls.
    pub(crate) fn canonical(&mut self) -> f64 {
        let r = 4_294_967_296.0_f64; // 2^32
        let mut sum = 0.0_f64;
        let mut scale = 1.0_f64;
        for _ in 0..2 {
            sum += f64::from(self.next_u32()) * scale;
            scale *= r;
        }
        let value = sum / scale;
        if value >= 1.0 {
            // libstdc++ clamps to the largest double below one.
            f64::from_bits(1.0_f64.to_bits() - 1)
        } else {
            value
        }
    }

    /// `std::exponential_distribution<double>(lambda)`.
    pub(crate) fn exponential(&mut self, lambda: f64) -> f64 {
        -(1.0 - self.canonical()).ln() / lambda
    }

    /// `std::shuffle` as libstdc++ implements it: when the engine's range is
    /// at least the square of the length, it draws two swap positions per call.
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        let len = items.len() as u64;
        if len == 0 {
            return;
        }
        let engine_range = u64::from(u32::MAX);
        if engine_range / len >= len {
            let mut i: u64 = 1;
            if len.is_multiple_of(2) {
                let j = self.below(2);
                items.swap(i as usize, j as usize);
                i += 1;
            }
            while i != len {
                let swap_range = i + 1;
                let x = self.below(swap_range * (swap_range + 1));
                let first = x / (swap_range + 1);
                let second = x % (swap_range + 1);
                items.swap(i as usize, first as usize);
                i += 1;
                items.swap(i as usize, second as usize);
                i += 1;
            }
            return;
        }
        for i in 1..len {
            let j = self.below(i + 1);
            items.swap(i as usize, j as usize);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mt19937_matches_the_standard_10000th_output() {
        // The C++ standard requires the 10000th output of a default-seeded
        // (5489) mt19937 to be 4123659995.
        let mut rng = Mt19937::new(5489);
        let mut last = 0;
        for _ in 0..10_000 {
            last = rng.next_u32();
        }
        assert_eq!(last, 4_123_659_995);
    }

    #[test]
    fn seed_keeps_low_32_bits() {
        let mut a = Mt19937::new(0x1_0000_0007);
        let mut b = Mt19937::new(7);
        assert_eq!(a.next_u32(), b.next_u32());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Mt19937::new(1);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[rng.below(7) as usize] += 1;
        }
        assert!(seen.iter().all(|&n| n > 800 && n < 1200), "{seen:?}");
    }

    #[test]
    fn canonical_is_in_unit_interval() {
        let mut rng = Mt19937::new(3);
        for _ in 0..10_000 {
            let x = rng.canonical();
            assert!((0.0..1.0).contains(&x));
        }
    }

    /// The streams as loadgen drew them from its own Mersenne Twister before
    /// the engine came from `rand_mt` (pinned then, from that code): raw
    /// outputs across several twists, seeds wider than 32 bits, and every
    /// distribution above.
    #[test]
    fn streams_are_the_pinned_ones() {
        fn fnv(rng: &mut Mt19937, n: usize) -> u64 {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for _ in 0..n {
                h = (h ^ u64::from(rng.next_u32())).wrapping_mul(0x100_0000_01b3);
            }
            h
        }
        for (seed, first, next_2000) in [
            (0x0u64, 2_357_136_044u32, 0x7339_191f_835e_f099u64),
            (0x1, 1_791_095_845, 0xcd7f_fef7_d99a_ca58),
            (0x1571, 3_499_211_612, 0x8f29_8685_b9a3_15df),
            (0x1_0000_0007, 327_741_615, 0x5139_116c_02ce_8f1e),
            (0xffff_ffff_ffff_ffff, 419_326_371, 0x083a_48fb_c097_1dce),
            (0x9e37_79b9_7f4a_7c15, 598_765_154, 0x5c22_4693_08e4_e78e),
        ] {
            let mut rng = Mt19937::new(seed);
            assert_eq!(rng.next_u32(), first, "seed {seed:#x}");
            assert_eq!(fnv(&mut rng, 2000), next_2000, "seed {seed:#x}");
        }
        let mut rng = Mt19937::new(42);
        let canonical: Vec<u64> = (0..4).map(|_| rng.canonical().to_bits()).collect();
        assert_eq!(
            canonical,
            [
                0x3fe9_7d47_b66b_fc3c,
                0x3fc7_7aca_8779_b102,
                0x3fe8_f33a_88f7_6c7f,
                0x3fe3_1965_8293_2836
            ]
        );
        let below: Vec<u64> = [
            1u64,
            2,
            7,
            1000,
            1 << 31,
            u64::from(u32::MAX),
            1 << 40,
            u64::MAX,
        ]
        .iter()
        .map(|&n| rng.below(n))
        .collect();
        assert_eq!(
            below,
            [
                0,
                0,
                1,
                99,
                124_733_605,
                1_972_458_953,
                950_621_039_988,
                2_635_427_562_620_468_887
            ]
        );
        let exponential: Vec<u64> = (0..3)
            .map(|_| rng.exponential(20_000.0).to_bits())
            .collect();
        assert_eq!(
            exponential,
            [
                0x3eb1_729e_4f21_4599,
                0x3f26_f5fe_677e_884c,
                0x3f17_6a43_456d_c32e
            ]
        );
        let mut even: Vec<u32> = (0..10).collect();
        rng.shuffle(&mut even);
        assert_eq!(even, [5, 6, 7, 0, 2, 4, 1, 3, 8, 9]);
        let mut odd: Vec<u32> = (0..11).collect();
        rng.shuffle(&mut odd);
        assert_eq!(odd, [1, 5, 10, 0, 7, 9, 2, 3, 8, 6, 4]);
        // Above 2^16 items: one draw per swap.
        let mut long: Vec<u32> = (0..70_000).collect();
        rng.shuffle(&mut long);
        assert_eq!(
            long[..8],
            [67418, 53573, 43856, 25531, 61668, 51982, 68256, 12009]
        );
        assert_eq!(rng.next_u32(), 616_453_541);
    }
}
