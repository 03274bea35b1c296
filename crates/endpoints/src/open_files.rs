//! The open-file limit, raised for a client that may hold thousands of
//! connections: the soft limit (often 1024) to the hard one, as Go's runtime
//! does at start. Without it a Server run at some 16 k requests/s ran out of
//! descriptors and its requests failed as `connect` errors that said nothing
//! of why.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Raises the soft limit on open files to the hard limit. Returns the limit
/// now in force, and a warning when it is below `wanted` (none asked: `None`).
pub fn raise(wanted: Option<u64>) -> (u64, Option<String>) {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return (0, None);
    };
    let now = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let warning = wanted.filter(|&w| now < w).map(|w| {
        format!(
            "this process may open {now} files, and --max-concurrency asks for up to {w} \
             connections and their files: requests past the limit fail to connect \
             (raise it: `ulimit -n {w}`, or LimitNOFILE= in a systemd unit)"
        )
    });
    (now, warning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_rises_to_the_hard_one_and_a_shortfall_is_said() {
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        let (now, warning) = raise(Some(1));
        assert_eq!(now, hard);
        assert_eq!(warning, None);
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap().0, hard);
        if hard < u64::MAX {
            let (_, warning) = raise(Some(hard + 1));
            assert!(warning.unwrap().contains("ulimit -n"));
        }
    }
}
