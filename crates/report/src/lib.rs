//! The result model: `result.json`, one versioned schema shared by every
//! kind of run, documented in `docs/result-schema.md`. Renderings (text,
//! Markdown, HTML) read only this model and the power logs a result names.
//!
//! - [`schema`]: the result file (kinds `inference` and `command`).
//! - [`phases`], [`merge`]: a measured command's phases, and per-node results
//!   summed into one.
//! - [`run_dir`]: a run folder read back (result plus power logs).
//! - [`document`], [`page`]: what a report or a comparison says.
//! - [`chart`]: charts drawn with plotters to SVG.
//! - [`format`]: the renderers (HTML, Markdown) behind one trait.

pub mod accuracy_record;
pub mod chart;
pub mod document;
pub mod format;
pub mod merge;
pub mod page;
pub mod phases;
pub mod run_dir;
pub mod schema;
pub mod serving;
pub mod system;
pub mod text;
