//! The Markdown renderer and HTML sanitiser of articles and member content: never a panic, and
//! nothing that runs script survives in any tag (text that merely reads like script is escaped
//! and harmless).
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The attributes of one serialised tag (`name="value"` pairs; the sanitiser always quotes with
/// `"` and escapes a `"` inside a value), as (name, value).
fn attributes(tag: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = tag.trim_start_matches(|c: char| !c.is_whitespace());
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        if rest.is_empty() {
            return out;
        }
        let end = rest.find(|c: char| c == '=' || c.is_whitespace()).unwrap_or(rest.len());
        let name = rest[..end].to_owned();
        rest = &rest[end..];
        let mut value = String::new();
        if let Some(r) = rest.strip_prefix('=') {
            if let Some(r) = r.strip_prefix('"') {
                let close = r.find('"').unwrap_or(r.len());
                value = r[..close].to_owned();
                rest = r.get(close + 1..).unwrap_or_default();
            } else {
                let close = r.find(char::is_whitespace).unwrap_or(r.len());
                value = r[..close].to_owned();
                rest = &r[close..];
            }
        }
        out.push((name, value));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(md) = std::str::from_utf8(data) else {
        return;
    };
    let html = dangjian::platform::markdown::render(md).to_ascii_lowercase();
    // Escaped text never holds a raw '<': each '<' opens a tag of the sanitised output, which
    // ends at the first '>' outside a quoted value.
    for raw in html.split('<').skip(1) {
        let mut in_quotes = false;
        let end = raw
            .char_indices()
            .find(|&(_, c)| {
                if c == '"' {
                    in_quotes = !in_quotes;
                }
                c == '>' && !in_quotes
            })
            .map_or(raw.len(), |(i, _)| i);
        let tag = &raw[..end];
        let name = tag.trim_start_matches('/').split([' ', '\t', '\n', '/']).next().unwrap_or_default();
        assert!(
            !matches!(name, "script" | "iframe" | "object" | "embed" | "style" | "svg" | "math"),
            "<{tag}> in {html}"
        );
        for (attr, value) in attributes(tag) {
            assert!(!attr.starts_with("on"), "event handler {attr} in <{tag}>");
            if matches!(attr.as_str(), "href" | "src" | "action" | "formaction" | "xlink:href") {
                // As browsers read a scheme: tabs, newlines and control characters are ignored.
                let scheme: String = value
                    .chars()
                    .filter(|c| !c.is_ascii_control() && !c.is_whitespace())
                    .take(16)
                    .collect();
                assert!(
                    !scheme.starts_with("javascript:")
                        && !scheme.starts_with("vbscript:")
                        && !scheme.starts_with("data:"),
                    "{attr}={value:?} in <{tag}>"
                );
            }
        }
    }
});
