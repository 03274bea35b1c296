//! The sample lines a session writes to `spl.txt`, as power-dev writes them.

/// A sample line for `spl.txt`: PTDaemon's `RL` line with the stage's mark
/// (kept when the line has one, inserted after the totals when it has not,
/// as power-dev does).
pub fn spl_line(raw: &str, mark: &str) -> String {
    let raw = raw.trim_end();
    if raw.split(',').any(|f| f == "Mark") {
        return raw.to_string();
    }
    let fields: Vec<&str> = raw.split(',').collect();
    if fields.len() < 10 {
        return format!("{raw},Mark,{mark}");
    }
    let (head, tail) = fields.split_at(10);
    let mut out = head.join(",");
    out.push_str(&format!(",Mark,{mark}"));
    for (i, group) in tail.chunks(8).enumerate() {
        out.push_str(&format!(",Ch{},{}", i + 1, group.join(",")));
    }
    out
}

/// One analyzer: its lines. Several: power-dev's merged form (total watts
/// first, each analyzer's line after).
pub(super) fn merge_analyzers(per: &[Vec<String>]) -> Vec<String> {
    if per.len() == 1 {
        return per[0].clone();
    }
    let rows = per.iter().map(Vec::len).min().unwrap_or(0);
    (0..rows)
        .map(|r| {
            let first: Vec<&str> = per[0][r].split(',').collect();
            let total: f64 = per
                .iter()
                .filter_map(|lines| lines[r].split(',').nth(3)?.parse::<f64>().ok())
                .filter(|w| *w != -1.0)
                .map(f64::abs)
                .sum();
            let mark = first
                .iter()
                .position(|f| *f == "Mark")
                .and_then(|i| first.get(i + 1))
                .copied()
                .unwrap_or("");
            let mut line = format!(
                "Time,{},Watts,{total:.6},Volts,-1.000000,Amps,-1.000000,PF,-1.000000,Mark,{mark}",
                first.get(1).copied().unwrap_or("")
            );
            for (i, lines) in per.iter().enumerate() {
                line.push_str(&format!(",Analyzer{},{}", i + 1, lines[r]));
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rl_lines_get_the_stage_mark() {
        let with = "Time,11-24-2026 10:00:00.000,Watts,1.000000,Volts,2.000000,Amps,3.000000,PF,0.5,Mark,x_ranging";
        assert_eq!(spl_line(with, "x_ranging"), with);
        let without = "Time,11-24-2026 10:00:00.000,Watts,1.0,Volts,2.0,Amps,3.0,PF,0.5";
        assert_eq!(spl_line(without, "m"), format!("{without},Mark,m"));
        let multi = "Time,t,Watts,3,Volts,-1,Amps,-1,PF,-1,Watts,1,Volts,2,Amps,3,PF,4,Watts,2,Volts,2,Amps,3,PF,4";
        assert_eq!(
            spl_line(multi, "m"),
            "Time,t,Watts,3,Volts,-1,Amps,-1,PF,-1,Mark,m,Ch1,Watts,1,Volts,2,Amps,3,PF,4,Ch2,Watts,2,Volts,2,Amps,3,PF,4"
        );
    }
}
