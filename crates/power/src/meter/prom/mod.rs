//! A remote node's energy from a Prometheus exporter's page over HTTP:
//! `--power prom://HOST[:PORT][/PATH][?OPTIONS]`.
//!
//! The page is read in the text exposition format ([`text`]); the series
//! joulebench understands ([`series`]) are those of joulebench's own
//! exporter (`joulebench exporter`, [`crate::prometheus`]) and of NVIDIA's
//! DCGM exporter. Each becomes one meter: energy counters as
//! [`ReadingKind::EnergyCounter`](super::ReadingKind) (energy by
//! difference; a counter that goes backwards, as after an exporter restart,
//! is a reset: that interval is not counted and is reported), power gauges
//! as power samples (integrated).
//!
//! Spec:
//! - `prom://HOST[:PORT][/PATH]`: plain HTTP; `prom+https://…` for HTTPS
//!   (certificates checked). The path defaults to `/metrics`. No credentials.
//! - `?match=METRIC` (repeatable): only these families
//!   (`joulebench_energy_joules_total`, `joulebench_power_watts`,
//!   `DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION`, `DCGM_FI_DEV_POWER_USAGE`).
//! - `?gpu=N` (repeatable, `&gpu=M`): only these GPUs' series (no CPU or node
//!   series). Not `gpu=0,1`: `--power` splits its value at commas.
//!
//! The options are joulebench's, never sent to the exporter.
//!
//! The meters of one page share one scraper: a read within
//! [`SHARE_WITHIN`] of the last fetch (or one that waited on a fetch in
//! flight) uses that page, so eight GPUs' meters do not fetch it eight times
//! per interval. Every fetch is bounded in time ([`PromConfig::timeout`]) and
//! size ([`MAX_BODY_BYTES`]).

mod http;
pub mod series;
pub mod text;

pub use http::MAX_BODY_BYTES;
use series::{file_safe, Family, Page, Site};

use super::{Meter, MeterError, MeterInfo, Probe, Reading};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

pub(crate) const METER: &str = "prom";

/// Reads of one page's meters this close to the last fetch share it.
pub const SHARE_WITHIN: Duration = Duration::from_millis(50);

/// What to read of a page (the spec's options).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only these families; all when empty.
    pub metrics: Vec<Family>,
    /// Only these GPUs; everything when empty.
    pub gpus: Vec<u32>,
}

/// One exporter page to read.
#[derive(Debug, Clone, PartialEq)]
pub struct PromConfig {
    /// `http://HOST[:PORT]/PATH` (or `https://`).
    pub url: String,
    /// The host as the spec names it (for domains).
    pub host: String,
    /// Start of every meter id: `prom-HOST[-PORT]`.
    pub id_prefix: String,
    pub filter: Filter,
    /// Limit for each GET, connection included.
    pub timeout: Duration,
    /// Reads of this page's meters this close to its last fetch share it
    /// ([`SHARE_WITHIN`]; zero: every read fetches).
    pub share_within: Duration,
}

fn config_error(spec: &str, reason: impl std::fmt::Display) -> MeterError {
    MeterError::Config {
        meter: METER.into(),
        reason: format!("`{spec}`: {reason}"),
    }
}

impl PromConfig {
    /// From `prom://HOST[:PORT][/PATH][?match=METRIC&gpu=N…]` or
    /// `prom+https://…`.
    pub fn from_spec(spec: &str) -> Result<PromConfig, MeterError> {
        let (scheme, rest) = if let Some(rest) = spec.strip_prefix("prom://") {
            ("http", rest)
        } else if let Some(rest) = spec.strip_prefix("prom+https://") {
            ("https", rest)
        } else {
            return Err(config_error(
                spec,
                "not a Prometheus spec; write prom://HOST[:PORT][/PATH]",
            ));
        };
        if rest.contains(|c: char| c.is_whitespace() || c.is_control() || c == '#') {
            return Err(config_error(spec, "spaces and `#` have no place in it"));
        }
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match location.find('/') {
            Some(i) => location.split_at(i),
            None => (location, ""),
        };
        let path = if path.is_empty() || path == "/" {
            "/metrics"
        } else {
            path
        };
        if authority.contains('@') {
            return Err(config_error(
                spec,
                "carries credentials; joulebench reads only open exporter pages",
            ));
        }
        let (host, port) = split_authority(authority).map_err(|e| config_error(spec, e))?;
        let mut filter = Filter::default();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            match key {
                "match" => match Family::from_metric(value) {
                    Some(f) if !filter.metrics.contains(&f) => filter.metrics.push(f),
                    Some(_) => {}
                    None => {
                        let known: Vec<&str> = Family::ALL.iter().map(|f| f.metric()).collect();
                        return Err(config_error(
                            spec,
                            format!(
                                "match={value}: not a series joulebench reads ({})",
                                known.join(", ")
                            ),
                        ));
                    }
                },
                "gpu" => match value.parse::<u32>() {
                    Ok(g) if !filter.gpus.contains(&g) => filter.gpus.push(g),
                    Ok(_) => {}
                    Err(_) => {
                        return Err(config_error(
                            spec,
                            format!(
                                "gpu={value}: expected one GPU index; repeat the option \
                                 for more (?gpu=0&gpu=1)"
                            ),
                        ))
                    }
                },
                _ => {
                    return Err(config_error(
                        spec,
                        format!("unknown option `{key}` (known: match=METRIC, gpu=N)"),
                    ))
                }
            }
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let id_prefix = match port {
            Some(p) => format!("prom-{}-{p}", file_safe(bare)),
            None => format!("prom-{}", file_safe(bare)),
        };
        Ok(PromConfig {
            url: format!("{scheme}://{authority}{path}"),
            host: bare.to_string(),
            id_prefix,
            filter,
            timeout: Duration::from_secs(5),
            share_within: SHARE_WITHIN,
        })
    }
}

/// `HOST[:PORT]`, `[V6]:PORT`: the host and the port when given.
fn split_authority(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => {
                let (h, rest) = authority.split_at(end + 1);
                match rest.strip_prefix(':') {
                    Some(p) => (h, Some(p)),
                    None if rest.is_empty() => (h, None),
                    None => return Err("expected `:PORT` after `]`".into()),
                }
            }
            None => return Err("`[` opens an IPv6 address that `]` never closes".into()),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err("expected a host after the scheme".into());
    }
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => return Err(format!("port `{p}`: expected a number from 1 to 65535")),
        },
    };
    Ok((host, port))
}

/// One fetch's outcome, shared by the meters of its page.
struct Scrape {
    done: Instant,
    result: Result<Arc<Page>, MeterError>,
}

/// The page's fetcher, shared by its meters.
struct Scraper {
    agent: ureq::Agent,
    url: String,
    share_within: Duration,
    last: Mutex<Option<Scrape>>,
}

impl Scraper {
    fn new(config: &PromConfig) -> Scraper {
        Scraper {
            agent: http::agent(config.timeout),
            url: config.url.clone(),
            share_within: config.share_within,
            last: Mutex::new(None),
        }
    }

    /// The page as of now: the last fetch's if it ended within
    /// `share_within` (or while this call waited on it), else a new one.
    fn page(&self) -> Result<Arc<Page>, MeterError> {
        let asked = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(s) = last.as_ref() {
            if s.done + self.share_within >= asked {
                return s.result.clone();
            }
        }
        let result = http::get(&self.agent, &self.url)
            .and_then(|text| Page::scan(&text, &self.url))
            .map(Arc::new);
        *last = Some(Scrape {
            done: Instant::now(),
            result: result.clone(),
        });
        result
    }
}

/// One series of an exporter's page.
pub struct PromMeter {
    info: MeterInfo,
    scraper: Arc<Scraper>,
    family: Family,
    identity: String,
}

impl std::fmt::Debug for PromMeter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromMeter")
            .field("id", &self.info.id)
            .field("url", &self.scraper.url)
            .field("series", &self.series())
            .finish()
    }
}

impl PromMeter {
    /// `METRIC{LABEL="VALUE"}`, as the page writes it.
    fn series(&self) -> String {
        format!(
            "{}{{{}=\"{}\"}}",
            self.family.metric(),
            self.family.identity_label(),
            self.identity
        )
    }
}

impl Meter for PromMeter {
    fn info(&self) -> &MeterInfo {
        &self.info
    }

    fn read(&mut self) -> Result<Reading, MeterError> {
        let page = self.scraper.page()?;
        let url = &self.scraper.url;
        let found = page.get(self.family, &self.identity).ok_or_else(|| {
            http::read_error(format!(
                "GET {url}: {} is no longer on the page",
                self.series()
            ))
        })?;
        let v = found.value;
        let at = |what: &str| {
            http::read_error(format!(
                "GET {url}: line {}: {} is {v}; expected {what}",
                found.line,
                self.series()
            ))
        };
        if self.identity_is_down(&page) {
            return Err(http::read_error(format!(
                "GET {url}: the exporter's meter `{}` is down ({}{{meter=\"{}\"}} 0): its last \
                 read there failed",
                self.identity,
                series::JOULEBENCH_UP,
                self.identity
            )));
        }
        if self.family.is_blank(v) {
            return Err(at(
                "a value; DCGM has none for this field now (its blank sentinel)",
            ));
        }
        if !(v.is_finite() && v >= 0.0) {
            return Err(at("a finite number, not negative"));
        }
        match self.family.kind() {
            super::ReadingKind::PowerSample => Ok(Reading::watts(v)),
            super::ReadingKind::EnergyCounter => {
                let uj = (v * self.family.microjoules_per_unit()).round();
                if uj >= u64::MAX as f64 {
                    return Err(at("a counter that fits 64 bits of microjoules"));
                }
                // No wrap: a step back is an exporter or driver restart, a
                // reset whose interval is not counted.
                Ok(Reading::Energy {
                    counter_uj: uj as u64,
                    wrap_uj: None,
                })
            }
        }
    }
}

impl PromMeter {
    fn identity_is_down(&self, page: &Page) -> bool {
        matches!(
            self.family,
            Family::JoulebenchEnergy | Family::JoulebenchPower
        ) && page.up.get(&self.identity) == Some(&false)
    }
}

/// Fetches the page once and returns one meter per series it offers (see
/// [`series`]), and why for the series that cannot be meters. An exporter
/// that cannot be read, or whose page has none of the series, gives one
/// `Unusable` entry saying so.
pub fn probe(config: &PromConfig) -> Vec<Probe> {
    let scraper = Arc::new(Scraper::new(config));
    let unusable = |domain: String, error: MeterError| Probe::Unusable {
        source: METER.into(),
        domain,
        error,
    };
    let page = match scraper.page() {
        Ok(p) => p,
        Err(e) => return vec![unusable(config.url.clone(), e)],
    };
    let site = Site {
        id_prefix: config.id_prefix.clone(),
        host: config.host.clone(),
    };
    let (planned, bad) = series::plan(&page, &config.filter, &site);
    let mut probes: Vec<Probe> = bad.into_iter().map(|(d, e)| unusable(d, e)).collect();
    for (line, metric, label) in &page.unlabelled {
        probes.push(unusable(
            config.url.clone(),
            MeterError::NotPresent {
                meter: METER.into(),
                reason: format!(
                    "GET {}: line {line}: {metric} has no `{label}` label to tell its series apart",
                    config.url
                ),
            },
        ));
    }
    if planned.is_empty() && probes.is_empty() {
        let known: Vec<&str> = Family::ALL.iter().map(|f| f.metric()).collect();
        let filtered = if config.filter == Filter::default() {
            String::new()
        } else {
            " that the spec's match=/gpu= options keep".to_string()
        };
        probes.push(unusable(
            config.url.clone(),
            MeterError::NotPresent {
                meter: METER.into(),
                reason: format!(
                    "GET {}: the page has none of the series joulebench reads{filtered} ({})",
                    config.url,
                    known.join(", ")
                ),
            },
        ));
    }
    for p in planned {
        probes.push(Probe::Usable(Box::new(PromMeter {
            info: p.info,
            scraper: Arc::clone(&scraper),
            family: p.family,
            identity: p.identity,
        })));
    }
    probes
}

/// [`probe`] for a `--power` spec; a bad spec is one `Unusable` entry.
pub fn probe_spec(spec: &str) -> Vec<Probe> {
    match PromConfig::from_spec(spec) {
        Ok(config) => probe(&config),
        Err(error) => vec![Probe::Unusable {
            source: METER.into(),
            domain: spec.into(),
            error,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_map_to_urls_ids_and_options() {
        let c = PromConfig::from_spec("prom://node1:9400").unwrap();
        assert_eq!(c.url, "http://node1:9400/metrics");
        assert_eq!(c.id_prefix, "prom-node1-9400");
        assert_eq!(c.host, "node1");
        assert_eq!(c.filter, Filter::default());
        let c = PromConfig::from_spec(
            "prom+https://[fe80::1]:9469/x/metrics?match=DCGM_FI_DEV_POWER_USAGE&gpu=0&gpu=3",
        )
        .unwrap();
        assert_eq!(c.url, "https://[fe80::1]:9469/x/metrics");
        assert_eq!(c.id_prefix, "prom-fe80__1-9469");
        assert_eq!(c.filter.metrics, [Family::DcgmPower]);
        assert_eq!(c.filter.gpus, [0, 3]);
        assert_eq!(
            PromConfig::from_spec("prom://exp.lab/").unwrap().url,
            "http://exp.lab/metrics"
        );
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        for (spec, says) in [
            ("http://node1:9400/metrics", "prom://HOST"),
            ("prom://", "a host"),
            ("prom://:9400", "a host"),
            ("prom://node1:99999", "1 to 65535"),
            ("prom://node1:x/metrics", "1 to 65535"),
            ("prom://u:pw@node1:9400", "credentials"),
            ("prom://node1:9400/metrics?gpu=0", ""),
            ("prom://node1:9400/metrics?gpu=a", "repeat the option"),
            (
                "prom://node1:9400/metrics?match=up",
                "DCGM_FI_DEV_POWER_USAGE",
            ),
            (
                "prom://node1:9400/metrics?every=1s",
                "unknown option `every`",
            ),
            ("prom://node1:9400/metrics#frag", "`#`"),
            ("prom://[::1/metrics", "never closes"),
        ] {
            match PromConfig::from_spec(spec) {
                Ok(_) => assert!(says.is_empty(), "{spec} was taken"),
                Err(e) => {
                    assert!(matches!(e, MeterError::Config { .. }), "{spec}: {e}");
                    assert!(
                        !says.is_empty() && e.to_string().contains(says),
                        "{spec}: {e}"
                    );
                    assert!(e.to_string().contains(spec), "{spec}: {e}");
                }
            }
        }
    }
}
