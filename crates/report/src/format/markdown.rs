//! Markdown: the document's tables and notes, for pasting into an issue or a
//! pull request. Charts are named, not drawn (Markdown cannot carry them
//! inline without a file beside it); the HTML report has them.

use super::Renderer;
use crate::document::{Block, Document, Table};
use std::fmt::Write;

pub struct Markdown;

impl Renderer for Markdown {
    fn render(&self, doc: &Document) -> String {
        let mut o = String::new();
        let _ = writeln!(o, "# {}\n", cell(&doc.title));
        for line in &doc.subtitle {
            let _ = writeln!(o, "{}  ", cell(line));
        }
        if !doc.subtitle.is_empty() {
            o.push('\n');
        }
        for section in &doc.sections {
            let _ = writeln!(o, "## {}\n", cell(&section.heading));
            for block in &section.blocks {
                match block {
                    Block::Table(t) => table(&mut o, t),
                    Block::Chart(c) => {
                        let _ = writeln!(o, "_Chart: {} (in the HTML report)._\n", cell(&c.title));
                    }
                    Block::Note(text) => {
                        let _ = writeln!(o, "{}\n", text.trim());
                    }
                    Block::Warning(text) => {
                        let _ = writeln!(o, "> **Warning:** {}\n", cell(text));
                    }
                }
            }
        }
        o
    }

    fn extension(&self) -> &'static str {
        "md"
    }
}

/// A cell's text with the characters that would break a table row escaped.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', "<br>")
}

fn table(o: &mut String, t: &Table) {
    let headers: Vec<String> = if t.headers.iter().all(|h| h.is_empty()) {
        // A key-value table: Markdown needs a header row.
        let mut h = vec!["field".to_string(), "value".to_string()];
        h.resize(t.headers.len(), String::new());
        h
    } else {
        t.headers.iter().map(|h| cell(h)).collect()
    };
    let _ = writeln!(o, "| {} |", headers.join(" | "));
    let rule: Vec<&str> = (0..headers.len())
        .map(|i| {
            if t.numeric.get(i).copied().unwrap_or(false) {
                "---:"
            } else {
                "---"
            }
        })
        .collect();
    let _ = writeln!(o, "|{}|", rule.join("|"));
    for row in &t.rows {
        let cells: Vec<String> = row.iter().map(|c| cell(c)).collect();
        let _ = writeln!(o, "| {} |", cells.join(" | "));
    }
    o.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Section;

    #[test]
    fn tables_render_with_alignment_and_escaped_pipes() {
        let mut t = Table::new(&["meter", "energy (J)"]).numeric(&[1]);
        t.row(vec!["a|b".into(), "12.5".into()]);
        let doc = Document {
            title: "T".into(),
            subtitle: vec![],
            sections: vec![Section {
                heading: "Energy".into(),
                blocks: vec![Block::Table(t), Block::Warning("log gone".into())],
            }],
        };
        let md = Markdown.render(&doc);
        assert!(
            md.contains("| meter | energy (J) |\n|---|---:|\n| a\\|b | 12.5 |"),
            "{md}"
        );
        assert!(md.contains("> **Warning:** log gone"), "{md}");
    }
}
