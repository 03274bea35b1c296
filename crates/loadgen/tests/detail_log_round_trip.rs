//! `mlperf_log_detail.txt` written → read: every `:::MLLOG` line is JSON
//! that MLCommons' tools (and ours) parse back to the key and value logged,
//! whatever text a SUT or QSL name, a conf value or an error message holds
//! (quotes, backslashes, control characters, any Unicode), and numbers as
//! LoadGen prints them (integers exactly, doubles to six significant digits,
//! NaN and infinities as null).

use hostile_input::strategies::{config, nasty_value};
use loadgen::log::detail::{DetailLog, LogValue, Severity};
use proptest::prelude::*;
use serde_json::Value;
use std::time::Instant;

fn logged(key: &str, value: LogValue) -> Value {
    let mut log = DetailLog::in_memory(Instant::now());
    log.log(key, value, Severity::Info, "test.rs", 1);
    let line = &log.lines()[0];
    let json = line.strip_prefix(":::MLLOG ").expect("the MLLOG prefix");
    assert!(!json.contains('\n'), "one line: {line:?}");
    let parsed: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(parsed["key"], Value::String(key.to_string()));
    parsed["value"].clone()
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        nasty_value(),
        "\\PC{0,60}",
        any::<String>(),
        "[\"\\\\\u{0}-\u{1f}\u{7f}\u{2028}]{0,20}"
    ]
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_text_reads_back_as_logged(key in any_text(), text in any_text()) {
        prop_assert_eq!(logged(&key, LogValue::Str(text.clone())), Value::String(text));
    }

    #[test]
    fn integers_read_back_exactly(i in any::<i64>(), u in any::<u64>()) {
        prop_assert_eq!(logged("i", LogValue::Int(i)).as_i64(), Some(i));
        prop_assert_eq!(logged("u", LogValue::UInt(u)).as_u64(), Some(u));
    }

    #[test]
    fn doubles_read_back_to_six_significant_digits(x in any::<f64>()) {
        let got = logged("x", LogValue::Float(x));
        if x.is_finite() {
            let y = got.as_f64().unwrap_or_else(|| panic!("{x} logged as {got}"));
            prop_assert!((y - x).abs() <= 5e-6 * x.abs(), "{} logged as {}", x, y);
        } else {
            prop_assert_eq!(got, Value::Null);
        }
    }

    #[test]
    fn index_lists_read_back(v in proptest::collection::vec(any::<usize>(), 0..40), b in any::<bool>()) {
        let got: Vec<usize> = serde_json::from_value(logged("v", LogValue::Indices(v.clone()))).unwrap();
        prop_assert_eq!(got, v);
        prop_assert_eq!(logged("b", LogValue::Bool(b)), Value::Bool(b));
    }
}
