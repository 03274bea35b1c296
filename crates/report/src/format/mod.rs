//! Output formats. One renderer per file, all behind [`Renderer`]: each takes
//! the same [`Document`] (see [`crate::document`]) and returns the text of one
//! file. Adding a format touches one new file here and [`Format`].

mod html;
mod markdown;

pub use html::Html;
pub use markdown::Markdown;

use crate::document::Document;

/// Renders a document as one self-contained text.
pub trait Renderer {
    fn render(&self, doc: &Document) -> String;
    /// File extension for files of this format (no dot).
    fn extension(&self) -> &'static str;
}

/// The formats a user can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One HTML file, styles, scripts and charts inline.
    Html,
    /// The tables as Markdown (charts are left out).
    Markdown,
}

impl Format {
    pub fn renderer(self) -> &'static dyn Renderer {
        match self {
            Format::Html => &Html,
            Format::Markdown => &Markdown,
        }
    }
}
