//! What a report says, before it is rendered: a title, sections, and in each
//! section tables, charts and notes.
//!
//! Pages (a run's report, a comparison) are built once as a [`Document`];
//! every output format renders the same document (see [`crate::format`]), so
//! the Markdown tables and the HTML tables cannot drift apart, and adding a
//! format touches one new file.

use crate::chart::Chart;

#[derive(Debug, Clone, Default)]
pub struct Document {
    pub title: String,
    /// Lines under the title (what was run, where, when).
    pub subtitle: Vec<String>,
    pub sections: Vec<Section>,
}

#[derive(Debug, Clone)]
pub struct Section {
    pub heading: String,
    pub blocks: Vec<Block>,
}

#[derive(Debug, Clone)]
pub enum Block {
    Table(Table),
    Chart(Chart),
    /// A paragraph of plain text.
    Note(String),
    /// A problem the reader must see (a log that could not be read).
    Warning(String),
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Columns of numbers, aligned right.
    pub numeric: Vec<bool>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            numeric: vec![false; headers.len()],
        }
    }

    /// Marks columns `cols` as numeric.
    pub fn numeric(mut self, cols: &[usize]) -> Table {
        for &c in cols {
            if let Some(n) = self.numeric.get_mut(c) {
                *n = true;
            }
        }
        self
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// A two-column table of names and values.
    pub fn key_values(pairs: Vec<(String, String)>) -> Table {
        let mut t = Table::new(&["", ""]);
        for (k, v) in pairs {
            t.row(vec![k, v]);
        }
        t
    }
}

impl Section {
    pub fn new(heading: &str) -> Section {
        Section {
            heading: heading.to_string(),
            blocks: Vec::new(),
        }
    }
}
