//! Number formatting as LoadGen's C++ streams produce it, so parsers written
//! against LoadGen's files read ours the same way.

/// A double as `std::ostream << double` prints it by default: `%g` with six
/// significant digits (`427397`, `20123.5`, `0.99`, `1e+06`).
pub fn g6(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    if !value.is_finite() {
        return if value.is_nan() {
            "nan".into()
        } else if value > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    const PRECISION: i32 = 6;
    // The exponent after rounding to six significant digits decides the style.
    let sci = format!("{:.*e}", (PRECISION - 1) as usize, value);
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..PRECISION).contains(&exp) {
        let mantissa = trim_zeros(mantissa);
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        let decimals = (PRECISION - 1 - exp).max(0) as usize;
        trim_zeros(&format!("{value:.decimals$}")).to_string()
    }
}

fn trim_zeros(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

/// LoadGen's `DoubleToString`: fixed notation with `precision` decimals.
pub fn fixed(value: f64, precision: usize) -> String {
    format!("{value:.precision$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn g6_matches_cpp_streams() {
        for (v, want) in [
            (427_397.3, "427397"),
            (20_123.54, "20123.5"),
            (106_228.61, "106229"),
            (0.99, "0.99"),
            (0.9, "0.9"),
            (100_000.0, "100000"),
            (1_000_000.0, "1e+06"),
            (1_234_567.0, "1.23457e+06"),
            (0.0001, "0.0001"),
            (0.00001234, "1.234e-05"),
            (1.0, "1"),
            (0.0, "0"),
            (-2.5, "-2.5"),
            (999_999.6, "1e+06"),
        ] {
            assert_eq!(g6(v), want, "{v}");
        }
    }

    #[test]
    fn fixed_rounds_like_double_to_string() {
        assert_eq!(fixed(20_122.091_2, 2), "20122.09");
        assert_eq!(fixed(90.0, 1), "90.0");
        assert_eq!(fixed(99.9, 2), "99.90");
    }
}
