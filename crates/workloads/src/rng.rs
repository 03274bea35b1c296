//! The seeded stream behind random weights and synthetic data: the 32-bit
//! Mersenne Twister (`rand_mt`, the engine loadgen draws LoadGen's streams
//! from) and libstdc++'s `generate_canonical<double, 53>` on top, so a seed
//! gives the same network and the same samples as it always has.

/// A seeded stream of doubles in `[0, 1)`.
pub(crate) struct Mt19937(rand_mt::Mt);

impl Mt19937 {
    /// Seeds like `std::mt19937(seed)`: the engine keeps the low 32 bits.
    pub(crate) fn new(seed: u64) -> Self {
        Mt19937(rand_mt::Mt::new(seed as u32))
    }

    /// `std::generate_canonical<double, 53>`: a double in `[0, 1)` from two
    /// engine calls.
    pub(crate) fn canonical(&mut self) -> f64 {
        let low = f64::from(self.0.next_u32());
        let high = f64::from(self.0.next_u32());
        let r = 4_294_967_296.0_f64; // 2^32
        let value = (low + high * r) / (r * r);
        if value >= 1.0 {
            // libstdc++ clamps to the largest double below one.
            f64::from_bits(1.0_f64.to_bits() - 1)
        } else {
            value
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream as it was when it came from loadgen's own engine (pinned
    /// then): the same doubles, bit for bit, for a seed wider than 32 bits too.
    #[test]
    fn canonical_stream_is_the_pinned_one() {
        let mut rng = Mt19937::new(42);
        let values: Vec<u64> = (0..4).map(|_| rng.canonical().to_bits()).collect();
        assert_eq!(
            values,
            [
                0x3fe9_7d47_b66b_fc3c,
                0x3fc7_7aca_8779_b102,
                0x3fe8_f33a_88f7_6c7f,
                0x3fe3_1965_8293_2836
            ]
        );
        let mut wide = Mt19937::new(0x7_0000_002a);
        assert_eq!(wide.canonical().to_bits(), 0x3fe9_7d47_b66b_fc3c);
    }
}
