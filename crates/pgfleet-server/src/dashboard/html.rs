//! HTML building blocks of the dashboard: escaping, the page frame, small charts. Every value that
//! came from the catalog or the request goes through [`esc`] (or [`attr`]).

use std::fmt::Write;

use pgfleet::control::tokens::Scope;

use crate::history::Minute;

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes an attribute value (the same as [`esc`]).
pub fn attr(s: &str) -> String {
    esc(s)
}

/// Percent-encodes a path segment or query value (everything but unreserved characters).
pub fn url(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Who is signed in, for the frame.
#[derive(Debug, Clone)]
pub struct Viewer<'a> {
    /// The token's name.
    pub token: &'a str,
    /// Its scope.
    pub scope: Scope,
    /// The session's CSRF value.
    pub csrf: &'a str,
}

impl Viewer<'_> {
    /// May change things.
    pub fn admin(&self) -> bool {
        self.scope == Scope::Admin
    }

    /// The hidden CSRF field of a form.
    pub fn csrf_field(&self) -> String {
        format!(
            r#"<input type="hidden" name="csrf" value="{}">"#,
            attr(self.csrf)
        )
    }

    /// A POST form with one button (and the CSRF field). `extra` goes before the button.
    pub fn action(&self, id: &str, action: &str, label: &str, extra: &str, class: &str) -> String {
        format!(
            r#"<form id="{id}" class="action {class}" method="post" action="{}">{}{extra}<button type="submit">{}</button></form>"#,
            attr(action),
            self.csrf_field(),
            esc(label)
        )
    }
}

const NAV: &[(&str, &str)] = &[
    ("/", "Overview"),
    ("/tenants", "Tenants"),
    ("/servers", "Servers"),
    ("/rollouts", "Rollouts"),
    ("/events", "Events"),
];

/// A whole page: head, navigation (when signed in), `body`.
pub fn page(title: &str, current: &str, viewer: Option<&Viewer<'_>>, body: &str) -> String {
    let mut nav = String::new();
    if let Some(v) = viewer {
        nav.push_str(r#"<nav aria-label="Main">"#);
        for (href, label) in NAV {
            let cur = if *href == current {
                r#" aria-current="page""#
            } else {
                ""
            };
            let _ = write!(nav, r#"<a href="{href}"{cur}>{label}</a>"#);
        }
        nav.push_str("</nav>");
        let _ = write!(
            nav,
            r#"<div class="who"><span title="signed in with this token">{} <span class="scope scope-{}">{}</span></span><form id="logout" method="post" action="/logout">{}<button type="submit">Sign out</button></form></div>"#,
            esc(v.token),
            v.scope,
            v.scope,
            v.csrf_field()
        );
    }
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{} · pgfleet</title><link rel="stylesheet" href="/assets/style.css"><script src="/assets/app.js" defer></script></head>
<body><header><a class="brand" href="/">pgfleet</a>{nav}</header>
<main id="main">{body}</main></body></html>
"#,
        esc(title)
    )
}

/// A small bar chart (inline SVG) of per-minute values, with a text summary for screen readers.
pub fn chart(
    id: &str,
    title: &str,
    unit: &str,
    minutes: &[Minute],
    value: impl Fn(&Minute) -> f64,
) -> String {
    let values: Vec<f64> = minutes.iter().map(&value).collect();
    let max = values.iter().copied().fold(0.0_f64, f64::max);
    let (w, h) = (240.0, 48.0);
    let bar = w / values.len().max(1) as f64;
    let mut bars = String::new();
    for (i, v) in values.iter().enumerate() {
        if *v <= 0.0 {
            continue;
        }
        let bh = (v / max * (h - 2.0)).max(1.0);
        let _ = write!(
            bars,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}"/>"#,
            i as f64 * bar,
            h - bh,
            (bar - 1.0).max(1.0),
            bh
        );
    }
    let last = values.last().copied().unwrap_or(0.0);
    let summary = format!(
        "{title}: last minute {last:.1} {unit}, highest {max:.1} {unit} over the last hour"
    );
    format!(
        r#"<figure class="chart" id="{id}"><figcaption>{} <span class="muted">(last hour, per minute; now {last:.1} {})</span></figcaption><svg viewBox="0 0 {w} {h}" width="100%" height="{h}" role="img" aria-label="{}">{bars}</svg></figure>"#,
        esc(title),
        esc(unit),
        attr(&summary)
    )
}

/// A definition list of (term, value) rows (values already HTML).
pub fn facts(id: &str, rows: &[(&str, String)]) -> String {
    let mut out = format!(r#"<dl id="{id}" class="facts">"#);
    for (k, v) in rows {
        let _ = write!(out, "<dt>{}</dt><dd>{v}</dd>", esc(k));
    }
    out.push_str("</dl>");
    out
}

/// `value` escaped, or a muted dash.
pub fn opt(value: Option<&str>) -> String {
    match value {
        Some(v) if !v.is_empty() => esc(v),
        _ => r#"<span class="muted">—</span>"#.into(),
    }
}

/// A status badge.
pub fn badge(text: &str) -> String {
    format!(
        r#"<span class="badge b-{}">{}</span>"#,
        attr(text),
        esc(text)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc(r#"<script>"x" & 'y'</script>"#),
            "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
        );
        assert_eq!(url("a b/ü@x"), "a%20b%2F%C3%BC%40x");
    }
}
