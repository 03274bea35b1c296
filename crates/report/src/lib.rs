//! The result model: `result.json`, one versioned schema shared by every
//! kind of run, documented in `docs/result-schema.md`. Renderings (text,
//! Markdown, HTML) read only this model.

pub mod schema;
pub mod system;
pub mod text;
