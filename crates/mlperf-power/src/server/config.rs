//! power-dev's `server.conf` (an INI file) read into the director's settings.

use super::ServerError;
use crate::analyzer::AnalyzerConfig;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Reads power-dev's `server.conf` (`[server] ntpServer, listen`, `[ptd] ptd,
/// analyzerCount`, `[analyzerN] ...`) into the fields it names; the rest of
/// [`ServerConfig`] is left to the caller.
pub struct PowerDevConfig {
    pub ptd_path: PathBuf,
    pub ntp_server: String,
    pub listen: Option<SocketAddr>,
    pub analyzers: Vec<AnalyzerConfig>,
    /// Options we read but do not act on, to tell the user.
    pub ignored: Vec<String>,
}

impl PowerDevConfig {
    pub fn parse(text: &str, path: &Path) -> Result<PowerDevConfig, ServerError> {
        let err = |message: String| ServerError::Config {
            path: path.to_path_buf(),
            message,
        };
        // (section, [(key, value, line)]), keys lower-cased as configparser does.
        type Section = (String, Vec<(String, String, usize)>);
        let mut sections: Vec<Section> = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                sections.push((name.trim().to_ascii_lowercase(), Vec::new()));
                continue;
            }
            let Some((k, v)) = line.split_once([':', '=']) else {
                return Err(err(format!("line {}: `{line}` is not KEY: VALUE", n + 1)));
            };
            let Some(section) = sections.last_mut() else {
                return Err(err(format!("line {}: option outside a [section]", n + 1)));
            };
            section
                .1
                .push((k.trim().to_ascii_lowercase(), v.trim().to_string(), n + 1));
        }
        let get = |sec: &str, key: &str| -> Option<(String, usize)> {
            sections
                .iter()
                .filter(|(s, _)| s == sec)
                .flat_map(|(_, kv)| kv.iter())
                .find(|(k, _, _)| k == &key.to_ascii_lowercase())
                .map(|(_, v, n)| (v.clone(), *n))
        };
        let (ptd, _) = get("ptd", "ptd").ok_or_else(|| err("[ptd] ptd: PATH is missing".into()))?;
        let (ntp_server, _) = get("server", "ntpServer")
            .ok_or_else(|| err("[server] ntpServer is missing (power-dev requires it)".into()))?;
        let listen = match get("server", "listen") {
            None => None,
            Some((v, n)) => {
                let (host, port) = v
                    .split_once(' ')
                    .ok_or_else(|| err(format!("line {n}: listen is `ADDR PORT`, got `{v}`")))?;
                let ip: std::net::IpAddr = host
                    .trim()
                    .parse()
                    .map_err(|_| err(format!("line {n}: `{host}` is not an IP address")))?;
                let port: u16 = port
                    .trim()
                    .parse()
                    .map_err(|_| err(format!("line {n}: `{port}` is not a port")))?;
                Some(SocketAddr::new(ip, port))
            }
        };
        let count: usize = match get("ptd", "analyzerCount") {
            None => 1,
            Some((v, n)) => v
                .parse()
                .ok()
                .filter(|&c| c >= 1)
                .ok_or_else(|| err(format!("line {n}: analyzerCount `{v}`")))?,
        };
        let mut analyzers = Vec::new();
        for i in 1..=count {
            let sec = format!("analyzer{i}");
            let need =
                |key: &str| get(&sec, key).ok_or_else(|| err(format!("[{sec}] {key} is missing")));
            let (dt, n) = need("deviceType")?;
            let device_type = dt
                .parse()
                .map_err(|_| err(format!("line {n}: deviceType `{dt}` is not a number")))?;
            let network_port = match get(&sec, "networkPort") {
                None => 8888,
                Some((v, n)) => v
                    .parse()
                    .map_err(|_| err(format!("line {n}: networkPort `{v}` is not a port")))?,
            };
            let channel = match get(&sec, "channel") {
                None => None,
                Some((v, n)) => Some(
                    v.split(',')
                        .map(|c| c.trim().parse::<u32>())
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|_| err(format!("line {n}: channel `{v}`")))?,
                ),
            };
            let gpib_board = match get(&sec, "gpibBoard") {
                None => None,
                Some((v, n)) => Some(
                    v.parse()
                        .map_err(|_| err(format!("line {n}: gpibBoard `{v}`")))?,
                ),
            };
            analyzers.push(AnalyzerConfig {
                device_type,
                device_port: need("devicePort")?.0,
                network_port,
                interface_flag: get(&sec, "interfaceFlag").map(|v| v.0),
                channel,
                gpib_board,
                dc_flag: get(&sec, "dcFlag").map(|v| v.0),
            });
        }
        let mut ignored = Vec::new();
        if let Some((mode, _)) = get("server", "rangingMode") {
            if !mode.eq_ignore_ascii_case("AUTO") {
                ignored.push(format!(
                    "[server] rangingMode {mode} (joulebench ranges in AUTO)"
                ));
            }
        }
        Ok(PowerDevConfig {
            ptd_path: PathBuf::from(ptd),
            ntp_server,
            listen,
            analyzers,
            ignored,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_devs_config_file_reads() {
        let text = "[server]\nntpServer: 127.0.0.1\nlisten: 127.0.0.1 4951\n\n[ptd]\nptd: /opt/ptd-wrapper\n\
                    analyzerCount: 1\n\n[analyzer1]\ninterfaceFlag: -y\ndeviceType: 49\ndevicePort: /dev/usbtmc0\n\
                    networkPort: 8888\n";
        let c = PowerDevConfig::parse(text, Path::new("server.conf")).unwrap();
        assert_eq!(c.ptd_path, PathBuf::from("/opt/ptd-wrapper"));
        assert_eq!(c.ntp_server, "127.0.0.1");
        assert_eq!(c.listen, Some("127.0.0.1:4951".parse().unwrap()));
        assert_eq!(c.analyzers[0].device_type, 49);
        assert_eq!(c.analyzers[0].interface_flag.as_deref(), Some("-y"));
        let e = PowerDevConfig::parse("[ptd]\nptd: x\n", Path::new("s.conf"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("ntpServer"), "{e}");
        let e = PowerDevConfig::parse(
            "[server]\nntpServer: x\n[ptd]\nptd: x\n[analyzer1]\ndeviceType: WT\n",
            Path::new("s.conf"),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(e.contains("deviceType `WT`"), "{e}");
    }
}
