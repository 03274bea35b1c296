//! The HTTP client a run uses: where requests go, the credential, TLS and
//! the three timeouts a streaming client needs (connect; a deadline per
//! request; an idle limit between chunks, since a server killed mid-stream
//! can hold the connection open and silent).
//!
//! The API key comes from `OPENAI_API_KEY` or a file, never from the
//! command line (where `ps` and shell history would show it). It is sent
//! only as `Authorization: Bearer`, marked sensitive, and never printed:
//! messages name where it came from, not what it is.

use reqwest::Url;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable the key is read from.
pub const API_KEY_ENV: &str = "OPENAI_API_KEY";

/// A credential and where it came from.
#[derive(Clone)]
pub struct ApiKey {
    /// `OPENAI_API_KEY` or `file /path`: what messages name.
    pub source: String,
    key: String,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey(from {}, redacted)", self.source)
    }
}

impl ApiKey {
    /// The key from `file` when given, else from `OPENAI_API_KEY`; `None`
    /// when neither has one (servers without auth).
    pub fn find(file: Option<&Path>) -> Result<Option<ApiKey>, ClientError> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ClientError::KeyFile {
                path: path.to_path_buf(),
                source,
            })?;
            let key = text.trim();
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(ClientError::KeyFileContent {
                    path: path.to_path_buf(),
                });
            }
            warn_if_readable_by_others(path);
            return Ok(Some(ApiKey {
                source: format!("file {}", path.display()),
                key: key.to_string(),
            }));
        }
        Ok(std::env::var(API_KEY_ENV)
            .ok()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty())
            .map(|key| ApiKey {
                source: API_KEY_ENV.into(),
                key,
            }))
    }

    /// The `Authorization` header, marked sensitive (kept out of debug output).
    pub fn header(&self) -> Result<reqwest::header::HeaderValue, ClientError> {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {}", self.key))
            .map_err(|_| ClientError::KeyNotAscii {
                source_name: self.source.clone(),
            })?;
        value.set_sensitive(true);
        Ok(value)
    }
}

#[cfg(unix)]
fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "{} can be read by other users; `chmod 600` it",
                path.display()
            );
        }
    }
}

#[cfg(not(unix))]
fn warn_if_readable_by_others(_path: &Path) {}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("--api-key-file {}: {source}", path.display())]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--api-key-file {}: expected one key on one line (no spaces)", path.display())]
    KeyFileContent { path: PathBuf },
    #[error("the API key from {source_name} has characters an HTTP header cannot carry")]
    KeyNotAscii { source_name: String },
    #[error("--endpoint '{given}': {why}")]
    Url { given: String, why: String },
    #[error("--cacert {}: {why}", path.display())]
    CaCert { path: PathBuf, why: String },
    #[error("building the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
}

/// Parses `--endpoint`: http or https, no credentials in it.
pub fn parse_url(given: &str) -> Result<Url, ClientError> {
    let bad = |why: &str| ClientError::Url {
        given: given.to_string(),
        why: why.to_string(),
    };
    let url = Url::parse(given)
        .map_err(|e| bad(&format!("{e} (expected e.g. http://127.0.0.1:8080)")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http:// and https:// endpoints are supported"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(
            "credentials do not belong in the URL (it is logged); put the key in OPENAI_API_KEY or --api-key-file",
        ));
    }
    if url.host_str().is_none() {
        return Err(bad("no host"));
    }
    Ok(url)
}

/// `url` with `path` appended to its path (`http://h/base` + `/v1/x`).
pub fn join_path(url: &Url, path: &str) -> Url {
    let mut out = url.clone();
    let base = url.path().trim_end_matches('/');
    out.set_path(&format!("{base}{path}"));
    out
}

/// How requests are sent.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// From sending the request to the response's end.
    pub request_timeout: Duration,
    /// Longest silence between two chunks of a streamed answer.
    pub idle_timeout: Duration,
    /// A PEM file of extra CA certificates (a private CA); the system's
    /// roots stay trusted.
    pub cacert: Option<PathBuf>,
    pub api_key: Option<ApiKey>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(600),
            idle_timeout: Duration::from_secs(30),
            cacert: None,
            api_key: None,
        }
    }
}

/// The clients a run uses: one keeps connections and reuses them, the
/// other never does (each of its requests opens a new connection: the
/// resend of a request whose kept-alive connection turned out dead).
pub struct Clients {
    pub pooled: reqwest::Client,
    pub fresh: reqwest::Client,
}

pub fn build_clients(options: &ClientOptions) -> Result<Clients, ClientError> {
    Ok(Clients {
        pooled: build(options, usize::MAX)?,
        fresh: build(options, 0)?,
    })
}

/// A client: HTTP/1.1, at most `idle_per_host` connections kept for reuse,
/// no proxies (a proxy between client and server would be measured as the
/// server), TCP_NODELAY.
fn build(options: &ClientOptions, idle_per_host: usize) -> Result<reqwest::Client, ClientError> {
    let mut builder = reqwest::Client::builder()
        .http1_only()
        .no_proxy()
        .tcp_nodelay(true)
        .connect_timeout(options.connect_timeout)
        .pool_max_idle_per_host(idle_per_host)
        // Servers close idle keep-alive connections after a few seconds
        // (llama.cpp's cpp-httplib and uvicorn: 5 s). A request sent on one
        // just as it closes fails with nothing received ("connection closed
        // before message completed": seen against llama-server). An idle
        // connection is dropped here first, so the race cannot happen.
        .pool_idle_timeout(Duration::from_secs(2))
        .user_agent(concat!("joulebench/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &options.cacert {
        let pem = std::fs::read(path).map_err(|e| ClientError::CaCert {
            path: path.clone(),
            why: e.to_string(),
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ClientError::CaCert {
                path: path.clone(),
                why: format!("not PEM certificates: {e}"),
            })?;
        if certs.is_empty() {
            return Err(ClientError::CaCert {
                path: path.clone(),
                why: "no certificate in the file".into(),
            });
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(ClientError::Build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_credentials_or_other_schemes_are_refused() {
        assert!(parse_url("http://127.0.0.1:8080").is_ok());
        let e = parse_url("http://user:sk-secret@host/v1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("OPENAI_API_KEY"), "{e}");
        assert!(parse_url("ftp://host").is_err());
        assert!(parse_url("localhost:8080").is_err());
    }

    #[test]
    fn paths_join_without_doubled_slashes() {
        let u = parse_url("http://h:1/base/").unwrap();
        assert_eq!(
            join_path(&u, "/v1/completions").as_str(),
            "http://h:1/base/v1/completions"
        );
        let u = parse_url("http://h:1").unwrap();
        assert_eq!(join_path(&u, "/predict/").as_str(), "http://h:1/predict/");
    }

    #[test]
    fn keys_come_from_a_file_and_never_show() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "sk-test-123\n").unwrap();
        let key = ApiKey::find(Some(&path)).unwrap().unwrap();
        assert!(!format!("{key:?}").contains("sk-test"));
        assert!(key.header().unwrap().is_sensitive());
        std::fs::write(&path, "two words\n").unwrap();
        assert!(ApiKey::find(Some(&path)).is_err());
        assert!(ApiKey::find(Some(&dir.path().join("none"))).is_err());
    }
}
