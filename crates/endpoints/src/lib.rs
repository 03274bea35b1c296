//! Systems under test behind HTTP: OpenAI-compatible endpoints
//! (`/v1/chat/completions`, `/v1/completions`, streaming or not) and plain
//! JSON endpoints (MLPerf's LoadGen-over-Network demo, or a template), put
//! under LoadGen's scenarios with token latencies and failures counted per
//! kind.
//!
//! - [`prompts`]: the data set (JSON Lines prompts or conversations) and its QSL.
//! - [`openai`], [`plain`]: what goes on the wire and what is read back.
//! - [`sse`]: server-sent events, decoded as chunks arrive.
//! - [`client`]: URL, credential, TLS and timeouts; [`open_files`]: the
//!   descriptor limit, raised for many connections.
//! - [`exchange`]: one timed request; [`failure`]: how it can fail.
//! - [`sut`]: the endpoint as LoadGen's SUT; [`tally`]: what its requests did.
//! - [`testing`]: a scripted server for tests.

pub mod client;
pub mod exchange;
pub mod failure;
pub mod open_files;
pub mod openai;
pub mod plain;
pub mod prompts;
pub mod sse;
pub mod sut;
pub mod tally;
pub mod testing;

pub use sut::{EndpointConfig, EndpointError, EndpointSut, Protocol};
