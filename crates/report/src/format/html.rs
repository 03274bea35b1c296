//! HTML: one self-contained file. Styles, the one script and every chart's
//! SVG are inline, so the file opens anywhere with no network (an air-gapped
//! cluster, an attachment in a mail).
//!
//! The script does one thing: it checks each chart the browser drew against
//! what the chart was meant to show (the series list beside each SVG; see
//! [`crate::chart`]), and writes the verdict into the page as
//! `data-drawn="yes"` or `data-drawn="no: why"` on each figure, with
//! `data-found` listing each series and its point (or bar) count. A reader
//! sees a red note under a chart that did not draw; a test reads the
//! attributes back from the browser's DOM.

use super::Renderer;
use crate::document::{Block, Document, Table};
use std::fmt::Write;

pub struct Html;

const STYLE: &str = r#"
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0; background: #fafafa; }
main { max-width: 980px; margin: 0 auto; padding: 24px 28px 60px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.2em; margin: 32px 0 10px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.subtitle { color: #666; margin: 0; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { padding: 4px 10px; border-bottom: 1px solid #eee; text-align: left; vertical-align: top; }
th { background: #f3f3f3; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv td:first-child { color: #555; }
figure.chart { margin: 12px 0 20px; display: inline-block; }
figure.chart figcaption { color: #666; font-size: 0.9em; }
figure.chart[data-drawn^="no"] figcaption::after { content: " — " attr(data-drawn); color: #c00; }
.warning { background: #fff4e5; border-left: 4px solid #f0a020; padding: 6px 10px; margin: 8px 0; }
.note { color: #444; white-space: pre-line; }
footer { color: #888; font-size: 0.85em; margin-top: 40px; }
"#;

const SCRIPT: &str = r#"
(function () {
  function drawn(el) {
    var b = el.getBBox();
    return b.width > 0 || b.height > 0;
  }
  function check(fig) {
    var svg = fig.querySelector("svg");
    if (!svg) return { verdict: "no: no svg", found: [] };
    var specs = JSON.parse(fig.getAttribute("data-series") || "[]");
    var texts = Array.prototype.map.call(svg.querySelectorAll("text"), function (t) {
      return t.textContent.trim();
    });
    var problems = [], found = [];
    specs.forEach(function (s) {
      var attr = s.element === "rect" ? "fill" : "stroke";
      var els = Array.prototype.filter.call(svg.querySelectorAll(s.element), function (el) {
        return (el.getAttribute(attr) || "").toUpperCase() === s.color && drawn(el);
      });
      var count = s.element === "polyline"
        ? els.reduce(function (m, el) { return Math.max(m, el.points.numberOfItems); }, 0)
        : els.length;
      if (count < s.min_count) problems.push(s.name + ": " + count + " of " + s.min_count + " drawn");
      else if (texts.indexOf(s.name) < 0) problems.push(s.name + ": no legend");
      else found.push(s.name + "=" + count);
    });
    if (!specs.length) problems.push("nothing expected");
    return { verdict: problems.length ? "no: " + problems.join("; ") : "yes", found: found };
  }
  function run() {
    var figs = document.querySelectorAll("figure[data-series]");
    var ok = 0;
    Array.prototype.forEach.call(figs, function (fig) {
      var r;
      try { r = check(fig); } catch (e) { r = { verdict: "no: " + e, found: [] }; }
      fig.setAttribute("data-drawn", r.verdict);
      fig.setAttribute("data-found", r.found.join(","));
      if (r.verdict === "yes") ok += 1;
    });
    document.body.setAttribute("data-charts-checked", ok + "/" + figs.length);
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", run);
  else run();
})();
"#;

impl Renderer for Html {
    fn render(&self, doc: &Document) -> String {
        let mut o = String::new();
        let _ = write!(
            o,
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
            esc(&doc.title)
        );
        let _ = writeln!(o, "<h1>{}</h1>", esc(&doc.title));
        for line in &doc.subtitle {
            let _ = writeln!(o, "<p class=\"subtitle\">{}</p>", esc(line));
        }
        for section in &doc.sections {
            let _ = writeln!(o, "<section>\n<h2>{}</h2>", esc(&section.heading));
            for block in &section.blocks {
                match block {
                    Block::Table(t) => table(&mut o, t),
                    Block::Chart(c) => {
                        // Serialising plain strings and numbers cannot fail.
                        let series = serde_json::to_string(&c.series).unwrap_or_default();
                        let _ = writeln!(
                            o,
                            "<figure class=\"chart\" id=\"{id}\" data-chart=\"{id}\" \
                             data-series=\"{series}\" data-marks=\"{marks}\" data-drawn=\"pending\">\n{svg}\n\
                             <figcaption>{title}</figcaption>\n</figure>",
                            id = esc(&c.id),
                            series = esc(&series),
                            marks = c.marks,
                            svg = c.svg,
                            title = esc(&c.title)
                        );
                    }
                    Block::Note(text) => {
                        let _ = writeln!(o, "<p class=\"note\">{}</p>", esc(text));
                    }
                    Block::Warning(text) => {
                        let _ = writeln!(o, "<p class=\"warning\">{}</p>", esc(text));
                    }
                }
            }
            o.push_str("</section>\n");
        }
        let _ = write!(
            o,
            "<footer>Made by joulebench {}. This file needs no network: styles, script and \
             charts are inline.</footer>\n</main>\n<script>{SCRIPT}</script>\n</body>\n</html>\n",
            env!("CARGO_PKG_VERSION")
        );
        o
    }

    fn extension(&self) -> &'static str {
        "html"
    }
}

/// Text escaped for HTML element content and double-quoted attributes.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn table(o: &mut String, t: &Table) {
    let kv = t.headers.iter().all(|h| h.is_empty());
    // Wide tables scroll inside the page instead of overflowing it.
    let _ = writeln!(
        o,
        "<div class=\"table-wrap\"><table{}>",
        if kv { " class=\"kv\"" } else { "" }
    );
    if !kv {
        o.push_str("<thead><tr>");
        for h in &t.headers {
            let _ = write!(o, "<th>{}</th>", esc(h));
        }
        o.push_str("</tr></thead>\n");
    }
    o.push_str("<tbody>\n");
    for row in &t.rows {
        o.push_str("<tr>");
        for (i, c) in row.iter().enumerate() {
            let class = if t.numeric.get(i).copied().unwrap_or(false) {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(o, "<td{class}>{}</td>", esc(c));
        }
        o.push_str("</tr>\n");
    }
    o.push_str("</tbody>\n</table></div>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::Section;

    #[test]
    fn the_page_is_self_contained_and_escapes_text() {
        let mut t = Table::new(&["meter", "W"]).numeric(&[1]);
        t.row(vec!["<gpu0>".into(), "3".into()]);
        let doc = Document {
            title: "a & b".into(),
            subtitle: vec![],
            sections: vec![Section {
                heading: "S".into(),
                blocks: vec![Block::Table(t)],
            }],
        };
        let html = Html.render(&doc);
        assert!(html.contains("<title>a &amp; b</title>"));
        assert!(
            html.contains("<td>&lt;gpu0&gt;</td><td class=\"num\">3</td>"),
            "{html}"
        );
        for external in ["src=\"http", "href=\"http", "<link", "@import", "src=\"//"] {
            assert!(!html.contains(external), "no network: found {external}");
        }
    }
}
