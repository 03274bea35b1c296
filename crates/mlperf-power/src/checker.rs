//! Our reading of MLPerf's power checker: the eleven checks of
//! `shared/reference/ptd-protocol.md`, run on a result folder.
//!
//! Written from the reference's description so our tests can say which
//! checks a folder passes. Checks 1 and 2 compare `sources` with power-dev's
//! released source checksums (`sources_checksums.json`, shipped with MLPerf's
//! checker): a folder written by joulebench's client or server fails them,
//! by design — only power-dev's own programs can pass them honestly, and we
//! never write their checksums. Given that file, the check is done for real.

use crate::loadgen_logs::power_window;
use crate::result_folder::REQUIRED_FILES;
use crate::summary::hash_dir;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The checker's PTDaemon versions and models.
pub const SUPPORTED_VERSION: &str = "1.11.1";
pub const SUPPORTED_MODELS: [(&str, u32); 11] = [
    ("YokogawaWT210", 8),
    ("YokogawaWT500", 35),
    ("YokogawaWT500_multichannel", 48),
    ("YokogawaWT310", 49),
    ("YokogawaWT310E", 49),
    ("YokogawaWT330", 52),
    ("YokogawaWT330E", 52),
    ("YokogawaWT330_multichannel", 77),
    ("YokogawaWT210_DC", 508),
    ("YokogawaWT310_DC", 549),
    ("YokogawaWT330_DC", 586),
];
/// Phase timestamps of client and server may differ by at most this.
pub const PHASE_TOLERANCE_S: f64 = 0.8;

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    /// Passed, with something an auditor should look at.
    Warning(String),
    Failed(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub name: &'static str,
    pub outcome: Outcome,
}

impl CheckResult {
    pub fn passed(&self) -> bool {
        !matches!(self.outcome, Outcome::Failed(_))
    }
}

/// Why a check fails. Its text is the check's verdict
/// ([`Outcome::Failed`]); a file the check cannot read fails it too.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CheckError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: Arc<std::io::Error>,
    },
    #[error("{}: {source}", path.display())]
    Json {
        path: PathBuf,
        source: Arc<serde_json::Error>,
    },
    #[error("{}: required field `{field}` is absent", path.display())]
    MissingField { path: PathBuf, field: &'static str },
    #[error("{}: not a json list", path.display())]
    NotAList { path: PathBuf },
    #[error("{}: no positive samples inside the LoadGen window", path.display())]
    NoSamples { path: PathBuf },
    #[error("{}: no power_begin/power_end", path.display())]
    NoPowerWindow { path: PathBuf },
    #[error("cannot read initial ranges from {reply:?}")]
    InitialRanges { reply: String },
    /// The folder breaks one of the checker's rules; the text says which
    /// and by how much (it is the verdict, as MLPerf's checker words it).
    #[error("{0}")]
    Rule(String),
}

impl CheckError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckError + '_ {
        move |e| CheckError::Io {
            path: path.to_path_buf(),
            source: Arc::new(e),
        }
    }

    fn json(path: &Path) -> impl FnOnce(serde_json::Error) -> CheckError + '_ {
        move |e| CheckError::Json {
            path: path.to_path_buf(),
            source: Arc::new(e),
        }
    }
}

/// A rule broken: the verdict text.
fn rule(msg: impl Into<String>) -> CheckError {
    CheckError::Rule(msg.into())
}

/// `Ok(Some(warning))` passes with a warning.
type Check = Result<Option<String>, CheckError>;

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Result<(), CheckError> {
    if cond {
        Ok(())
    } else {
        Err(rule(msg()))
    }
}

fn read_json(path: &Path) -> Result<Value, CheckError> {
    let text = std::fs::read_to_string(path).map_err(CheckError::io(path))?;
    let v: Value = serde_json::from_str(&text).map_err(CheckError::json(path))?;
    for key in [
        "version",
        "timezone",
        "modules",
        "sources",
        "messages",
        "uuid",
        "session_name",
        "results",
        "phases",
    ] {
        if v.get(key).is_none() {
            return Err(CheckError::MissingField {
                path: path.to_path_buf(),
                field: key,
            });
        }
    }
    Ok(v)
}

/// Runs the eleven checks on `dir`. `sources_checksums` is MLPerf's
/// `sources_checksums.json` (a list of accepted `sources` objects).
pub fn check(dir: &Path, sources_checksums: Option<&Path>) -> Vec<CheckResult> {
    let client = read_json(&dir.join("power/client.json"));
    let server = read_json(&dir.join("power/server.json"));
    let both = |f: &dyn Fn(&Value, &Value) -> Check| -> Check {
        match (&client, &server) {
            (Ok(c), Ok(s)) => f(c, s),
            (Err(e), _) | (_, Err(e)) => Err(e.clone()),
        }
    };
    let one = |v: &Result<Value, CheckError>, f: &dyn Fn(&Value) -> Check| -> Check {
        match v {
            Ok(v) => f(v),
            Err(e) => Err(e.clone()),
        }
    };
    let checks: Vec<(&'static str, Check)> = vec![
        (
            "Check client sources checksum",
            one(&client, &|c| sources_check(c, sources_checksums)),
        ),
        (
            "Check server sources checksum",
            one(&server, &|s| sources_check(s, sources_checksums)),
        ),
        (
            "Check PTD commands and replies",
            one(&server, &ptd_messages_check),
        ),
        ("Check UUID", both(&uuid_check)),
        (
            "Check session name",
            both(&|c, s| {
                ensure(c["session_name"] == s["session_name"], || {
                    format!(
                        "session names differ: {} vs {}",
                        c["session_name"], s["session_name"]
                    )
                })?;
                Ok(None)
            }),
        ),
        (
            "Check time difference",
            both(&|c, s| phases_check(c, s, dir)),
        ),
        ("Check client server messages", both(&messages_check)),
        (
            "Check results checksum",
            both(&|c, s| results_check(c, s, dir)),
        ),
        (
            "Check errors and warnings from PTD logs",
            both(&|c, s| ptd_logs_check(c, s, dir)),
        ),
        ("Check PTD configuration", one(&server, &ptd_config_check)),
        (
            "Check debug is disabled on server-side",
            one(&server, &|s| {
                ensure(s.get("debug") != Some(&Value::Bool(true)), || {
                    "the server ran in debug mode".into()
                })?;
                Ok(None)
            }),
        ),
    ];
    checks
        .into_iter()
        .map(|(name, r)| CheckResult {
            name,
            outcome: match r {
                Ok(None) => Outcome::Passed,
                Ok(Some(w)) => Outcome::Warning(w),
                Err(e) => Outcome::Failed(e.to_string()),
            },
        })
        .collect()
}

fn sources_check(v: &Value, list: Option<&Path>) -> Check {
    let Some(list) = list else {
        return Err(rule(
            "sources are not power-dev's released files (no sources_checksums.json given; a \
             joulebench client or server never passes this check, by design)",
        ));
    };
    let accepted = read_json_list(list)?;
    ensure(accepted.contains(&v["sources"]), || {
        format!("{} is not among the released sources", v["sources"])
    })?;
    Ok(None)
}

fn read_json_list(path: &Path) -> Result<Vec<Value>, CheckError> {
    let text = std::fs::read_to_string(path).map_err(CheckError::io(path))?;
    match serde_json::from_str::<Value>(&text).map_err(CheckError::json(path))? {
        Value::Array(a) => Ok(a),
        _ => Err(CheckError::NotAList {
            path: path.to_path_buf(),
        }),
    }
}

fn ptd_messages_check(s: &Value) -> Check {
    let msgs: Vec<(String, String)> = s["ptd_messages"]
        .as_array()
        .ok_or_else(|| rule("server.json has no ptd_messages"))?
        .iter()
        .map(|m| {
            (
                m["cmd"].as_str().unwrap_or_default().to_string(),
                m["reply"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let identify = msgs
        .iter()
        .find(|(c, _)| c == "Identify")
        .map(|(_, r)| r.as_str())
        .unwrap_or("");
    ensure(!identify.is_empty(), || "no answer to `Identify`".into())?;
    let model = identify.split(',').next().unwrap_or("");
    let version = identify
        .split_once("version=")
        .and_then(|(_, v)| v.split_once('-'))
        .map(|(v, _)| v)
        .unwrap_or("");
    ensure(version == SUPPORTED_VERSION, || {
        format!("PTD version {version:?} is not supported ({SUPPORTED_VERSION})")
    })?;
    ensure(SUPPORTED_MODELS.iter().any(|(m, _)| *m == model), || {
        format!("power meter {model:?} is not supported")
    })?;
    let mut stops = 0;
    for (cmd, reply) in &msgs {
        let want = if cmd.starts_with("SR,A") {
            "Range A changed"
        } else if cmd.starts_with("SR,V") {
            "Range V changed"
        } else if cmd.starts_with("Go,1000,") {
            "Starting untimed measurement, maximum 500000 samples at 1000ms with 0 rampup samples"
        } else if cmd == "Stop" {
            stops += 1;
            if stops == 3 {
                "Error: no measurement to stop"
            } else {
                "Stopping untimed measurement"
            }
        } else {
            continue;
        };
        ensure(reply == want, || {
            format!("wrong reply to {cmd:?}: expected {want:?}, got {reply:?}")
        })?;
    }
    let gos = msgs
        .iter()
        .filter(|(c, _)| c.starts_with("Go,1000,"))
        .count();
    ensure(gos == 2, || {
        format!("{gos} `Go,1000,` commands, expected 2")
    })?;
    let rr = msgs
        .get(2)
        .filter(|(c, _)| c == "RR")
        .ok_or_else(|| rule("`RR` is not the third command"))?;
    let f: Vec<&str> = rr.1.split(',').collect();
    let unreadable = || CheckError::InitialRanges {
        reply: rr.1.clone(),
    };
    let initial = |i: usize| -> Result<String, CheckError> {
        match (f.get(i), f.get(i + 1)) {
            (Some(&"0"), Some(v)) => match v.parse::<f64>() {
                Ok(x) if x > 0.0 => Ok(v.to_string()),
                Ok(_) => Ok("Auto".into()),
                Err(_) => Err(unreadable()),
            },
            (Some(_), Some(_)) => Ok("Auto".into()),
            _ => Err(unreadable()),
        }
    };
    let (amps, volts) = (initial(1)?, initial(3)?);
    let nth = |prefix: &str, n: usize| {
        msgs.iter()
            .filter(|(c, _)| c.starts_with(prefix))
            .nth(n - 1)
            .map(|(c, _)| c.clone())
    };
    let a_ok = [3, 4]
        .iter()
        .any(|&n| nth("SR,A", n).as_deref() == Some(format!("SR,A,{amps}").as_str()));
    ensure(a_ok, || {
        format!("the current range was not restored to {amps}")
    })?;
    ensure(
        nth("SR,V", 3).as_deref() == Some(format!("SR,V,{volts}").as_str()),
        || format!("the voltage range was not restored to {volts}"),
    )?;
    Ok(None)
}

fn uuid_check(c: &Value, s: &Value) -> Check {
    for side in ["client", "server"] {
        let a = c["uuid"][side]
            .as_str()
            .and_then(|u| uuid::Uuid::parse_str(u).ok());
        let b = s["uuid"][side]
            .as_str()
            .and_then(|u| uuid::Uuid::parse_str(u).ok());
        ensure(a.is_some() && a == b, || {
            format!("{side} uuids differ or are missing")
        })?;
    }
    Ok(None)
}

fn pairs(v: &Value) -> Vec<(f64, f64)> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p[0].as_f64().unwrap_or(f64::NAN),
                        p[1].as_f64().unwrap_or(f64::NAN),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Mean watts of `spl.txt` samples strictly inside `(begin, end)`, watts > 0.
pub fn average_watts(spl: &Path, begin: f64, end: f64) -> Result<f64, CheckError> {
    let text = std::fs::read_to_string(spl).map_err(CheckError::io(spl))?;
    let watts: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("Time"))
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let t = mlperf_time::Timestamp::parse(f.get(1)?)?.unix_ms() as f64 / 1000.0;
            let w: f64 = f.get(3)?.parse().ok()?;
            (t > begin && t < end && w > 0.0).then_some(w)
        })
        .collect();
    if watts.is_empty() {
        return Err(CheckError::NoSamples {
            path: spl.to_path_buf(),
        });
    }
    Ok(watts.iter().sum::<f64>() / watts.len() as f64)
}

fn window(dir: &Path, stage: &str) -> Result<(f64, f64), CheckError> {
    let p = dir.join(stage).join("mlperf_log_detail.txt");
    match power_window(&p).map_err(CheckError::io(&p))? {
        Some(w) => Ok(w),
        None => Err(CheckError::NoPowerWindow { path: p }),
    }
}

fn phases_check(c: &Value, s: &Value, dir: &Path) -> Check {
    let mut warning = None;
    for (mode, stage) in [("ranging", "ranging"), ("testing", "run_1")] {
        let pc = pairs(&c["phases"][mode]);
        let ps = pairs(&s["phases"][mode]);
        ensure(pc.len() == ps.len() && pc.len() == 4, || {
            format!(
                "{mode}: {} client and {} server phases, expected 4 each",
                pc.len(),
                ps.len()
            )
        })?;
        for (i, (a, b)) in pc.iter().zip(&ps).enumerate() {
            let d = (a.0 - b.0).abs();
            ensure(d <= PHASE_TOLERANCE_S, || {
                format!(
                    "{mode} phase {}: client and server differ by {:.0} ms",
                    i + 1,
                    d * 1000.0
                )
            })?;
        }
        let (begin, end) = window(dir, stage)?;
        ensure(
            pc[1].0 < begin && begin < pc[2].0 && pc[1].0 < end && end < pc[2].0,
            || format!("LoadGen's power window is not inside the client's {mode} run"),
        )?;
    }
    let (rb, re) = window(dir, "ranging")?;
    let (tb, te) = window(dir, "run_1")?;
    let ranging = average_watts(&dir.join("ranging/spl.txt"), rb, re)?;
    let testing = average_watts(&dir.join("run_1/spl.txt"), tb, te)?;
    let delta = (testing / ranging - 1.0) * 100.0;
    ensure(delta > -5.0, || {
        format!("testing averages {testing:.3} W, {delta:.2}% below ranging's {ranging:.3} W")
    })?;
    if (re - rb - (te - tb)) / (re - rb) > 0.5 {
        warning = Some("the testing run is much shorter than the ranging run".to_string());
    }
    Ok(warning)
}

fn messages_check(c: &Value, s: &Value) -> Check {
    let mc = c["messages"]
        .as_array()
        .ok_or_else(|| rule("client.json: no messages"))?;
    let ms = s["messages"]
        .as_array()
        .ok_or_else(|| rule("server.json: no messages"))?;
    ensure(mc.len() == ms.len(), || {
        format!("{} client messages, {} server messages", mc.len(), ms.len())
    })?;
    for (i, (a, b)) in mc.iter().zip(ms).enumerate() {
        ensure(a["cmd"] == b["cmd"], || {
            format!("command {i} differs: {} vs {}", a["cmd"], b["cmd"])
        })?;
        if a["cmd"] != "time" {
            ensure(a["reply"] == b["reply"], || {
                format!(
                    "reply to {} differs: {} vs {}",
                    a["cmd"], a["reply"], b["reply"]
                )
            })?;
        }
    }
    let first = ms.first().ok_or_else(|| rule("no messages"))?;
    let version = |text: &Value, who: &str| {
        text.as_str()
            .and_then(|t| t.strip_prefix(&format!("mlcommons/power {who} v")))
            .map(str::to_string)
    };
    let cv = version(&first["cmd"], "client");
    let sv = version(&first["reply"], "server");
    ensure(cv.is_some() && cv == sv, || {
        format!("client version {cv:?} and server version {sv:?} differ")
    })?;
    Ok(None)
}

fn results_check(c: &Value, s: &Value, dir: &Path) -> Check {
    let as_map = |v: &Value| -> BTreeMap<String, String> {
        v.as_object()
            .map(|o| {
                o.iter()
                    .filter(|(k, _)| REQUIRED_FILES.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (rc, rs) = (as_map(&c["results"]), as_map(&s["results"]));
    for (k, v) in &rc {
        if let Some(w) = rs.get(k) {
            ensure(v == w, || {
                format!("client and server disagree on the sha1 of {k}")
            })?;
        }
    }
    let actual = hash_dir(dir).map_err(CheckError::io(dir))?;
    let mut recorded = rc.clone();
    recorded.extend(rs);
    for f in REQUIRED_FILES {
        if f == "power/client.json" || f == "power/server.json" {
            continue;
        }
        let want = recorded
            .get(f)
            .ok_or_else(|| rule(format!("{f} is not in the recorded results")))?;
        let got = actual
            .get(f)
            .ok_or_else(|| rule(format!("{f} is missing")))?;
        ensure(want == got, || {
            format!("{f}: sha1 {got} differs from the recorded {want}")
        })?;
    }
    Ok(None)
}

fn ptd_logs_check(_c: &Value, s: &Value, dir: &Path) -> Check {
    let path = dir.join("power/ptd_logs.txt");
    let text = std::fs::read_to_string(&path).map_err(CheckError::io(&path))?;
    let tz = s["timezone"].as_f64().unwrap_or(0.0);
    let mark = format!("{}_ranging", s["session_name"].as_str().unwrap_or_default());
    let stamped = |line: &str| -> Option<(f64, String)> {
        let (head, rest) = line.split_at_checked(23)?;
        let t = mlperf_time::Timestamp::parse(head)?.unix_ms() as f64 / 1000.0 + tz;
        Some((t, rest.trim().to_string()))
    };
    let mut start = None;
    let mut stop = None;
    for line in text.lines() {
        if let Some((t, msg)) = stamped(line) {
            if start.is_none() && msg == format!(": Go with mark '{mark}'") {
                start = Some(t);
            } else if start.is_some() && msg == ": Completed test" {
                stop = Some(t);
                break;
            }
        }
    }
    let (Some(start), Some(_stop)) = (start, stop) else {
        return Err(rule("cannot find the ranging run in ptd_logs.txt"));
    };
    let activated = text
        .lines()
        .find(|l| l.contains("Uncertainty checking for Yokogawa") && l.contains(" is activated"));
    let t = activated
        .and_then(stamped)
        .ok_or_else(|| {
            rule("ptd_logs.txt: no timestamped `Uncertainty checking for Yokogawa... is activated`")
        })?
        .0;
    ensure(t < start, || {
        "uncertainty checking was activated after ranging started".into()
    })?;
    let (lb, le) = window(dir, "run_1")?;
    let mut warning = None;
    for line in text.lines() {
        let Some((t, msg)) = stamped(line) else {
            continue;
        };
        let in_load = t > lb && t < le;
        if msg.contains("ERROR:") && t > lb - 0.5 && t < le + 0.5 {
            return Err(rule(format!("{line:?} during the testing load")));
        }
        if let Some(w) = msg.split_once("WARNING:").map(|(_, w)| w.trim()) {
            if in_load && w.starts_with("Uncertainty") && w.contains("above 1.00% limit") {
                return Err(rule(format!("{line:?} during the testing load")));
            }
            if in_load {
                warning = Some(format!("{line:?} during the testing load"));
            }
        }
    }
    Ok(warning)
}

/// `ptd_config` is a list, one entry per analyzer (power-dev's director
/// writes it so; MLPerf's `check_ptd_config` iterates it and fails on an
/// object). Each entry's device type must be supported; device 77 needs two
/// channels both in `channel` and after `-c` in `command`.
fn ptd_config_check(s: &Value) -> Check {
    let list = s["ptd_config"].as_array().ok_or_else(|| {
        rule(format!(
            "server.json: ptd_config must be a list, one entry per analyzer; got {}",
            s["ptd_config"]
        ))
    })?;
    ensure(!list.is_empty(), || {
        "server.json: ptd_config lists no analyzer".into()
    })?;
    for (i, cfg) in list.iter().enumerate() {
        let dt = cfg["device_type"]
            .as_u64()
            .ok_or_else(|| rule(format!("server.json: ptd_config[{i}] has no device_type")))?;
        ensure(
            SUPPORTED_MODELS.iter().any(|(_, n)| u64::from(*n) == dt),
            || format!("device type {dt} is not supported"),
        )?;
        if dt == 77 {
            let command: Vec<&str> = cfg["command"]
                .as_array()
                .map(|c| c.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let dash_c = command
                .iter()
                .position(|a| *a == "-c")
                .and_then(|p| command.get(p + 1))
                .copied()
                .unwrap_or("");
            let two = cfg["channel"].as_array().is_some_and(|c| c.len() == 2)
                && dash_c.split(',').count() == 2;
            ensure(two, || {
                format!("device type 77 needs two channels (ptd_config[{i}])")
            })?;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// MLPerf's `check_ptd_config` (mlcommons/inference,
    /// `tools/submission/submission_checker/checks/power/power_checker.py`,
    /// commit b66003e) runs `for analyzer in ptd_config: analyzer["device_type"]`:
    /// a list passes, an object crashes it (a failed check).
    #[test]
    fn ptd_config_must_be_a_list_as_power_devs_director_writes_it() {
        let entry = json!({"command": ["ptd", "-l", "l", "-p", "8888", "49", "/dev/null"],
            "device_type": 49, "interface_flag": "", "dc_flag": null,
            "device_port": "/dev/null", "channel": null});
        assert_eq!(
            ptd_config_check(&json!({ "ptd_config": [entry.clone()] })).unwrap(),
            None
        );
        let e = ptd_config_check(&json!({ "ptd_config": entry }))
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be a list"), "{e}");
        let multi = |cmd_ch: &str, ch: Value| {
            json!({"ptd_config": [{"command": ["ptd", "-l", "l", "-p", "8888", "-c", cmd_ch, "77", "x"],
                "device_type": 77, "interface_flag": "", "dc_flag": null,
                "device_port": "x", "channel": ch}]})
        };
        assert_eq!(
            ptd_config_check(&multi("1,2", json!([1, 2]))).unwrap(),
            None
        );
        assert!(ptd_config_check(&multi("1", json!([1, 2]))).is_err());
        assert!(ptd_config_check(&multi("1,2", json!([1]))).is_err());
        let bad = json!({"ptd_config": [entry, {"device_type": 3}]});
        assert!(ptd_config_check(&bad)
            .unwrap_err()
            .to_string()
            .contains("device type 3"));
    }
}
