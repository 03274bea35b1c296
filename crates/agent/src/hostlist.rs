//! Slurm's compressed host lists (`SLURM_JOB_NODELIST`): `jbn[1-2]`,
//! `gpu[01-03,07],login1` → one name per node, zero padding kept.

/// The node names of `list`; `None` for a list that does not parse.
pub fn expand(list: &str) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for item in split_top_level(list.trim()) {
        match item.find('[') {
            None if !item.is_empty() => names.push(item.to_string()),
            None => return None,
            Some(open) => {
                let close = item.rfind(']')?;
                let (prefix, ranges, suffix) =
                    (&item[..open], &item[open + 1..close], &item[close + 1..]);
                for range in ranges.split(',') {
                    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                    let width = lo.len();
                    let (a, b): (u64, u64) = (lo.parse().ok()?, hi.parse().ok()?);
                    if b < a || b - a > 100_000 {
                        return None;
                    }
                    names.extend((a..=b).map(|n| format!("{prefix}{n:0width$}{suffix}")));
                }
            }
        }
    }
    Some(names)
}

/// Splits on the commas that are not inside brackets.
fn split_top_level(list: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&list[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&list[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_expand_as_slurm_writes_them() {
        assert_eq!(expand("jbn[1-2]").unwrap(), ["jbn1", "jbn2"]);
        assert_eq!(
            expand("gpu[01-03,07],login1").unwrap(),
            ["gpu01", "gpu02", "gpu03", "gpu07", "login1"]
        );
        assert_eq!(expand("n1").unwrap(), ["n1"]);
        assert_eq!(
            expand("rack[2]-n[1-2]"),
            None,
            "two bracket groups are not handled"
        );
        assert_eq!(expand("a[3-1]"), None);
        assert_eq!(expand("a[x]"), None);
    }
}
