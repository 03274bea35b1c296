//! The endpoint as a system under test. LoadGen's issuing thread hands each
//! sample to a small async runtime the SUT owns (a `spawn`, microseconds);
//! the request runs there, reports its first content as LoadGen's
//! `FirstTokenComplete` and its end as a completion with its output tokens,
//! or as a failure by kind. A refused credential (401/403) stops the run at
//! once: every later request would be refused too.

use crate::client::{self, ClientError, ClientOptions};
use crate::exchange::{self, Outcome, Wire};
use crate::failure::Failure;
use crate::openai::{self, Generation, OpenAiApi};
use crate::plain::PlainProtocol;
use crate::prompts::PromptRecord;
use crate::tally::{RequestRecord, Tally, TokenSource};
use loadgen::{QuerySample, QuerySampleResponse, Responder, RunControl, SystemUnderTest};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// What is spoken to the endpoint.
#[derive(Debug, Clone)]
pub enum Protocol {
    OpenAi {
        api: OpenAiApi,
        generation: Generation,
    },
    Plain {
        protocol: PlainProtocol,
        max_tokens: Option<u64>,
    },
}

impl Protocol {
    pub fn api_name(&self) -> &'static str {
        match self {
            Protocol::OpenAi { api, .. } => api.name(),
            Protocol::Plain { protocol, .. } => protocol.name(),
        }
    }

    fn streaming(&self) -> bool {
        matches!(self, Protocol::OpenAi { generation, .. } if generation.stream)
    }
}

/// Everything a run's endpoint SUT needs.
pub struct EndpointConfig {
    /// The URL requests are POSTed to (the API path included); for MLPerf's
    /// LoadGen-over-Network, the server's base (`/predict/` and `/getname/`
    /// are under it).
    pub url: reqwest::Url,
    pub protocol: Protocol,
    pub prompts: Vec<PromptRecord>,
    pub client: ClientOptions,
    /// Requests in flight at most (`None`: as many as LoadGen issues).
    pub max_concurrency: Option<usize>,
    /// Threads of the client's runtime.
    pub threads: usize,
    /// tokenizer.json to count output tokens when the server sends no usage.
    pub tokenizer: Option<PathBuf>,
    /// The name LoadGen logs; `None`: made from the URL (or, for MLPerf's
    /// LoadGen-over-Network, asked of the server).
    pub name: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("--tokenizer {}: {why}", path.display())]
    Tokenizer { path: PathBuf, why: String },
    #[error("starting the client's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("{url}: {failure}")]
    Probe { url: String, failure: Failure },
}

pub struct EndpointSut {
    name: String,
    runtime: Option<tokio::runtime::Runtime>,
    shared: Arc<Shared>,
}

struct Shared {
    client: reqwest::Client,
    fresh_client: reqwest::Client,
    url: reqwest::Url,
    auth: Option<reqwest::header::HeaderValue>,
    key_source: Option<String>,
    options: ClientOptions,
    protocol: Protocol,
    prompts: Vec<PromptRecord>,
    limit: Option<Arc<Semaphore>>,
    tokenizer: Option<tokenizers::Tokenizer>,
    control: RunControl,
    records: Mutex<Vec<RequestRecord>>,
    /// Requests started (sent or waiting for a --max-concurrency slot).
    started: AtomicU64,
    /// Requests resent because the server had closed their connection unseen.
    resent: AtomicU64,
    /// Why the run was stopped by the SUT (a refused credential).
    fatal: Mutex<Option<String>>,
}

impl EndpointSut {
    /// Builds the client; `control` is the run's (a refused credential stops it).
    pub fn new(config: EndpointConfig, control: RunControl) -> Result<EndpointSut, EndpointError> {
        // Each open request holds a socket; a resend's fresh client another.
        let wanted = config.max_concurrency.map(|n| 2 * n as u64 + 256);
        if let (_, Some(warning)) = crate::open_files::raise(wanted) {
            tracing::warn!("{warning}");
        }
        let clients = client::build_clients(&config.client)?;
        let auth = config
            .client
            .api_key
            .as_ref()
            .map(|k| k.header())
            .transpose()?;
        let tokenizer = config
            .tokenizer
            .as_ref()
            .map(|path| {
                tokenizers::Tokenizer::from_file(path).map_err(|e| EndpointError::Tokenizer {
                    path: path.clone(),
                    why: e.to_string(),
                })
            })
            .transpose()?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads.max(1))
            .thread_name("endpoint-client")
            .enable_all()
            .build()
            .map_err(EndpointError::Runtime)?;
        let is_lon = matches!(
            config.protocol,
            Protocol::Plain {
                protocol: PlainProtocol::Lon,
                ..
            }
        );
        let name = match (config.name, is_lon) {
            (Some(name), _) => name,
            (None, true) => {
                runtime.block_on(lon_name(&clients.pooled, &config.url, &config.client))?
            }
            (None, false) => format!("{} endpoint {}", config.protocol.api_name(), config.url),
        };
        let url = if is_lon {
            client::join_path(&config.url, "/predict/")
        } else {
            config.url
        };
        let shared = Arc::new(Shared {
            client: clients.pooled,
            fresh_client: clients.fresh,
            url,
            auth,
            key_source: config.client.api_key.as_ref().map(|k| k.source.clone()),
            options: config.client,
            protocol: config.protocol,
            prompts: config.prompts,
            limit: config
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n.max(1)))),
            tokenizer,
            control,
            records: Mutex::new(Vec::new()),
            started: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            fatal: Mutex::new(None),
        });
        Ok(EndpointSut {
            name,
            runtime: Some(runtime),
            shared,
        })
    }

    /// Why the SUT stopped the run, if it did (a refused credential): the
    /// run could not be measured.
    pub fn fatal(&self) -> Option<String> {
        self.shared.fatal.lock().ok().and_then(|f| f.clone())
    }

    /// What the run's requests did, for `result.json`.
    pub fn tally(&self) -> Tally {
        let records = self
            .shared
            .records
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        Tally {
            url: self.shared.url.to_string(),
            api: self.shared.protocol.api_name().into(),
            model: match &self.shared.protocol {
                Protocol::OpenAi { generation, .. } => Some(generation.model.clone()),
                Protocol::Plain { .. } => None,
            },
            streaming: self.shared.protocol.streaming(),
            started: self.shared.started.load(Ordering::Acquire),
            resent: self.shared.resent.load(Ordering::Acquire),
            records,
        }
    }
}

/// MLPerf's LoadGen-over-Network demo: the SUT's name comes from the
/// server (`/getname/`), and the QDL's must say "Network SUT".
async fn lon_name(
    client: &reqwest::Client,
    base: &reqwest::Url,
    options: &ClientOptions,
) -> Result<String, EndpointError> {
    let url = client::join_path(base, "/getname/");
    let probe = |failure| EndpointError::Probe {
        url: url.to_string(),
        failure,
    };
    let answer = tokio::time::timeout(options.request_timeout, async {
        let response = client
            .get(url.clone())
            .send()
            .await
            .map_err(|e| Failure::Connect(e.to_string()))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| Failure::Truncated(e.to_string()))?;
        if !status.is_success() {
            return Err(Failure::Status {
                status: status.as_u16(),
                message: crate::failure::quote_error_body(&body),
            });
        }
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| Failure::Malformed(format!("not JSON: {e}")))?;
        v.get("name")
            .and_then(|n| n.as_str())
            .map(str::to_string)
            .ok_or_else(|| Failure::Malformed("no `name` in the answer".into()))
    })
    .await
    .map_err(|_| {
        probe(Failure::Timeout {
            what: "response",
            after: options.request_timeout,
        })
    })?
    .map_err(probe)?;
    Ok(format!("{answer} (joulebench QDL, Network SUT)"))
}

impl Drop for EndpointSut {
    fn drop(&mut self) {
        // Requests still open (a run that was interrupted) are abandoned,
        // not waited for.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl SystemUnderTest for EndpointSut {
    fn name(&self) -> &str {
        &self.name
    }

    fn issue_query(&self, samples: &[QuerySample], responder: &Responder) {
        let Some(runtime) = &self.runtime else { return };
        for &sample in samples {
            let shared = Arc::clone(&self.shared);
            let responder = responder.clone();
            runtime.spawn(async move { serve(&shared, sample, &responder).await });
        }
    }
}

async fn serve(shared: &Shared, sample: QuerySample, responder: &Responder) {
    shared.started.fetch_add(1, Ordering::AcqRel);
    let _permit = match &shared.limit {
        Some(limit) => match Arc::clone(limit).acquire_owned().await {
            Ok(p) => Some(p),
            Err(_) => return,
        },
        None => None,
    };
    let record = &shared.prompts[sample.index % shared.prompts.len()];
    let wire = Wire {
        client: &shared.client,
        fresh_client: &shared.fresh_client,
        url: &shared.url,
        auth: shared.auth.as_ref(),
        options: &shared.options,
        resent: &shared.resent,
    };
    let outcome = match &shared.protocol {
        Protocol::OpenAi { api, generation } => {
            let body = openai::body(*api, generation, record);
            let first = |text: &str| {
                responder.first_token(&[QuerySampleResponse {
                    id: sample.id,
                    data: text.as_bytes(),
                    n_tokens: 1,
                }])
            };
            exchange::openai(
                &wire,
                *api,
                generation.stream,
                body.to_string().into_bytes(),
                first,
            )
            .await
        }
        Protocol::Plain {
            protocol,
            max_tokens,
        } => {
            let body = protocol.body(record, sample.index, *max_tokens);
            exchange::plain(&wire, body.to_string().into_bytes(), |b| protocol.output(b)).await
        }
    };
    let (tokens, source) = count_tokens(shared, &outcome);
    let first_chunk_tokens = match (&shared.tokenizer, outcome.first_content) {
        (Some(t), Some(_)) => Some(count_text(t, &outcome.text[..outcome.first_chunk_len])),
        _ => None,
    };
    // Recorded before LoadGen hears of the end: once the last sample is
    // complete, the run (and the tally) may be read.
    if let Ok(mut records) = shared.records.lock() {
        records.push(RequestRecord::new(
            &outcome,
            tokens,
            source,
            first_chunk_tokens,
        ));
    }
    match &outcome.result {
        Ok(()) => responder.complete(&[QuerySampleResponse {
            id: sample.id,
            data: outcome.text.as_bytes(),
            n_tokens: tokens,
        }]),
        Err(failure) => {
            if let Failure::Auth { status, message } = failure {
                let why = format!(
                    "the server refused the credential{} (HTTP {status}: {message}); stopped at once",
                    shared
                        .key_source
                        .as_deref()
                        .map(|s| format!(" from {s}"))
                        .unwrap_or_else(|| format!(
                            " (none was given: set {} or --api-key-file)",
                            client::API_KEY_ENV
                        ))
                );
                if let Ok(mut fatal) = shared.fatal.lock() {
                    fatal.get_or_insert_with(|| why.clone());
                }
                shared.control.stop(why);
            }
            responder.fail(sample.id, failure.to_sample_failure());
        }
    }
}

/// Output tokens: the server's `usage` when it sent one, else the
/// tokenizer's count, else one per content chunk (an estimate).
fn count_tokens(shared: &Shared, outcome: &Outcome) -> (u64, TokenSource) {
    if let Some(n) = outcome.usage.and_then(|u| u.completion_tokens) {
        return (n, TokenSource::Usage);
    }
    if let Some(t) = &shared.tokenizer {
        return (count_text(t, &outcome.text), TokenSource::Tokenizer);
    }
    match shared.protocol {
        Protocol::OpenAi { .. } => (outcome.content_chunks, TokenSource::Chunks),
        Protocol::Plain { .. } => (0, TokenSource::None),
    }
}

fn count_text(tokenizer: &tokenizers::Tokenizer, text: &str) -> u64 {
    tokenizer
        .encode(text, false)
        .map(|e| e.len() as u64)
        .unwrap_or(0)
}
