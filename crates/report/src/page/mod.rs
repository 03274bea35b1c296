//! Pages: what a run's report and a comparison of runs show, built as a
//! [`Document`](crate::document::Document) that any format renders.

pub mod compare;
pub mod run;
pub mod sweep;

use crate::schema::PowerRecord;
use power::energy::TotalPart;
use power::meter::Provenance;

/// The figure a page leads with: the measured total, or with none the
/// estimated one (and it says so).
pub fn headline_total(p: &PowerRecord) -> Option<&TotalPart> {
    p.total.measured.as_ref().or(p.total.estimated.as_ref())
}

/// `" (estimated)"` for estimated figures, else empty.
pub fn tag(provenance: Provenance) -> &'static str {
    match provenance {
        Provenance::Estimated => " (estimated)",
        Provenance::Measured => "",
    }
}

/// A number with about four significant digits, no exponent for everyday sizes.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.001 {
        format!("{v:.4}")
    } else {
        format!("{v:.3e}")
    }
}

pub fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), num)
}

/// Nanoseconds in the unit that reads best.
pub fn ns(v: i64) -> String {
    let f = v as f64;
    if v >= 1_000_000_000 {
        format!("{:.3} s", f / 1e9)
    } else if v >= 1_000_000 {
        format!("{:.3} ms", f / 1e6)
    } else if v >= 1_000 {
        format!("{:.1} µs", f / 1e3)
    } else {
        format!("{v} ns")
    }
}

/// Joules with watt-hours beside them.
pub fn joules(j: f64) -> String {
    format!("{} J ({} Wh)", num(j), num(j / 3600.0))
}

/// A value as result.json spells it (`cpu_package`, `measured`).
pub fn serde_name<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_at_every_size() {
        assert_eq!(num(12345.6), "12346");
        assert_eq!(num(123.45), "123.5");
        assert_eq!(num(1.2345), "1.23");
        assert_eq!(num(0.012345), "0.0123");
        assert_eq!(num(0.0000123), "1.230e-5");
        assert_eq!(num(f64::NAN), "-");
        assert_eq!(ns(2_500_000), "2.500 ms");
        assert_eq!(joules(7200.0), "7200 J (2.00 Wh)");
    }
}
