//! `--workload openai|http`'s flags, turned into the endpoint SUT.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use endpoints::client::{self, ApiKey, ClientOptions};
use endpoints::openai::{self, Generation, OpenAiApi};
use endpoints::plain::{self, PlainProtocol};
use endpoints::prompts::{self, PromptQsl, PromptRecord};
use endpoints::{EndpointConfig, EndpointSut, Protocol};
use loadgen::{RunControl, Scenario};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

const HEADING: &str = "Serving endpoints (openai, http)";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ApiName {
    Chat,
    Completions,
}

#[derive(Debug, Clone, Args)]
pub struct EndpointArgs {
    /// The server: a base URL (http://127.0.0.1:8080, …/v1) or the full API URL
    /// (…/v1/chat/completions, …/v1/completions). For --workload http: the URL requests are
    /// POSTed to with --request-template, else the base of MLPerf's LoadGen-over-Network
    /// demo server (POST /predict/, GET /getname/).
    #[arg(long, value_name = "URL", help_heading = HEADING)]
    pub endpoint: Option<String>,

    /// Which OpenAI API. Default: the one --endpoint's path names, else chat.
    #[arg(long, value_enum, help_heading = HEADING)]
    pub api: Option<ApiName>,

    /// Ask for whole answers instead of a stream (no time to first token then).
    #[arg(long, help_heading = HEADING)]
    pub no_stream: bool,

    /// Ask the server for exactly --max-tokens tokens (`ignore_eos`; llama.cpp, vLLM, SGLang).
    #[arg(long, help_heading = HEADING)]
    pub ignore_eos: bool,

    /// A sampling parameter passed through in every request body, e.g. `temperature=0`,
    /// `top_p=0.9`, `seed=1`, `stop=["\n"]` (the value is JSON, or else a string); repeatable.
    #[arg(long = "sampling", value_name = "KEY=VALUE", help_heading = HEADING)]
    pub sampling: Vec<String>,

    /// A file holding the API key (mode 0600). Default: the OPENAI_API_KEY environment
    /// variable. Keys are never taken on the command line, nor written anywhere.
    #[arg(long, value_name = "FILE", help_heading = HEADING)]
    pub api_key_file: Option<PathBuf>,

    /// Extra CA certificates (PEM) for an https:// endpoint with a private CA; the system's
    /// roots stay trusted.
    #[arg(long, value_name = "FILE", help_heading = HEADING)]
    pub cacert: Option<PathBuf>,

    /// Requests in flight at most; the rest wait in the client (their wait is part of
    /// LoadGen's latency, not of the client-side TTFT). Default: 64 for Offline, else none.
    #[arg(long, value_name = "N", help_heading = HEADING)]
    pub max_concurrency: Option<usize>,

    /// Seconds to connect.
    #[arg(long, value_name = "SECONDS", default_value = "10", help_heading = HEADING)]
    pub connect_timeout: f64,

    /// Seconds from sending a request to the end of its answer.
    #[arg(long, value_name = "SECONDS", default_value = "600", help_heading = HEADING)]
    pub request_timeout: f64,

    /// Seconds a stream may stay silent between two chunks (a killed server can keep the
    /// connection open and send nothing).
    #[arg(long, value_name = "SECONDS", default_value = "30", help_heading = HEADING)]
    pub idle_timeout: f64,

    /// Threads of the HTTP client.
    #[arg(long, value_name = "N", default_value = "2", help_heading = HEADING)]
    pub client_threads: usize,

    /// --workload http: a JSON request body in which the strings "{{prompt}}", "{{index}}"
    /// and "{{max_tokens}}" are replaced per sample.
    #[arg(long, value_name = "FILE", help_heading = HEADING)]
    pub request_template: Option<PathBuf>,

    /// --workload http with a template: where the output text is in the answer, as a JSON
    /// pointer (`/generated_text`, `/choices/0/text`). Default: the whole answer.
    #[arg(long, value_name = "POINTER", help_heading = HEADING)]
    pub response_pointer: Option<String>,

    /// Synthetic prompts (no --dataset): words per prompt.
    #[arg(long, value_name = "N", default_value = "24", help_heading = HEADING)]
    pub prompt_words: usize,
}

/// The endpoint SUT and its QSL, built from the flags.
pub struct BuiltEndpoint {
    pub sut: Arc<EndpointSut>,
    pub qsl: PromptQsl,
    pub parameters: serde_json::Value,
    /// Whether LoadGen should measure token latencies (a streaming OpenAI API).
    pub token_latencies: bool,
}

/// What the run's other flags contribute.
pub struct EndpointScope<'a> {
    pub openai: bool,
    pub model: Option<&'a str>,
    pub dataset: Option<&'a std::path::Path>,
    pub tokenizer: Option<&'a std::path::Path>,
    pub max_tokens: u64,
    pub samples: usize,
    pub performance_samples: usize,
    pub seed: u64,
    pub scenario: Scenario,
}

fn seconds(flag: &str, s: f64) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0) {
        bail!("--{flag} must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(s))
}

impl EndpointArgs {
    pub fn build(&self, scope: &EndpointScope<'_>, control: &RunControl) -> Result<BuiltEndpoint> {
        let workload = if scope.openai { "openai" } else { "http" };
        let given = self.endpoint.as_deref().with_context(|| {
            format!("--workload {workload} needs --endpoint URL (e.g. http://127.0.0.1:8080)")
        })?;
        let base = client::parse_url(given)?;
        let prompts: Vec<PromptRecord> = match scope.dataset {
            Some(path) => prompts::load(path)?,
            None => prompts::synthetic(scope.samples, self.prompt_words.max(1), scope.seed),
        };
        let (url, protocol) = if scope.openai {
            let model = scope.model.context(
                "--workload openai needs --model NAME: the model name the server serves \
                 (GET /v1/models lists them)",
            )?;
            let asked = self.api.map(|a| match a {
                ApiName::Chat => OpenAiApi::Chat,
                ApiName::Completions => OpenAiApi::Completions,
            });
            let (url, api) = openai::api_url(&base, asked)
                .map_err(|why| anyhow::anyhow!("--endpoint {given}: {why}"))?;
            let generation = Generation {
                model: model.to_string(),
                max_tokens: Some(scope.max_tokens),
                ignore_eos: self.ignore_eos,
                stream: !self.no_stream,
                extra: openai::sampling(&self.sampling).map_err(anyhow::Error::msg)?,
            };
            (url, Protocol::OpenAi { api, generation })
        } else {
            let protocol = match &self.request_template {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("--request-template {}", path.display()))?;
                    let body: serde_json::Value =
                        serde_json::from_str(&text).with_context(|| {
                            format!("--request-template {}: not JSON", path.display())
                        })?;
                    plain::check_template(&body).map_err(|e| {
                        anyhow::anyhow!("--request-template {}: {e}", path.display())
                    })?;
                    PlainProtocol::Template {
                        body,
                        response_pointer: self.response_pointer.clone(),
                    }
                }
                None => PlainProtocol::Lon,
            };
            (
                base.clone(),
                Protocol::Plain {
                    protocol,
                    max_tokens: Some(scope.max_tokens),
                },
            )
        };
        if matches!(protocol, Protocol::Plain { .. }) && (self.ignore_eos || self.no_stream) {
            bail!("--ignore-eos and --no-stream are for --workload openai");
        }
        if self.client_threads == 0 {
            bail!("--client-threads must be at least 1");
        }
        let client = ClientOptions {
            connect_timeout: seconds("connect-timeout", self.connect_timeout)?,
            request_timeout: seconds("request-timeout", self.request_timeout)?,
            idle_timeout: seconds("idle-timeout", self.idle_timeout)?,
            cacert: self.cacert.clone(),
            api_key: ApiKey::find(self.api_key_file.as_deref())?,
        };
        let max_concurrency = match (self.max_concurrency, scope.scenario) {
            (Some(0), _) => bail!("--max-concurrency must be at least 1"),
            (Some(n), _) => Some(n),
            (None, Scenario::Offline) => Some(64),
            (None, _) => None,
        };
        let token_latencies =
            matches!(&protocol, Protocol::OpenAi { generation, .. } if generation.stream);
        let parameters = serde_json::json!({
            "endpoint": url.as_str(),
            "api": protocol.api_name(),
            "model": scope.model,
            "streaming": token_latencies,
            "max_tokens": scope.max_tokens,
            "ignore_eos": self.ignore_eos,
            "sampling": openai::sampling(&self.sampling).map_err(anyhow::Error::msg)?,
            "max_concurrency": max_concurrency,
            "prompts": scope.dataset.map_or_else(
                || format!("synthetic: {} prompts of {} words, seed {}", prompts.len(), self.prompt_words, scope.seed),
                |p| p.display().to_string(),
            ),
            "tokenizer": scope.tokenizer.map(|p| p.display().to_string()),
            "api_key": client.api_key.as_ref().map(|k| format!("from {}", k.source)),
            "cacert": self.cacert.as_ref().map(|p| p.display().to_string()),
        });
        let total = prompts.len();
        let sut = EndpointSut::new(
            EndpointConfig {
                url,
                protocol,
                prompts,
                client,
                max_concurrency,
                threads: self.client_threads,
                tokenizer: scope.tokenizer.map(PathBuf::from),
                name: None,
            },
            control.clone(),
        )?;
        Ok(BuiltEndpoint {
            sut: Arc::new(sut),
            qsl: PromptQsl {
                name: format!("prompts ({total})"),
                total,
                performance: scope.performance_samples.min(total),
            },
            parameters,
            token_latencies,
        })
    }
}
