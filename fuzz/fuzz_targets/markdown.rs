//! The Markdown renderer and HTML sanitiser of articles and member content: never a panic, and
//! nothing that runs script survives in any tag (text that merely reads like script is escaped
//! and harmless).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(md) = std::str::from_utf8(data) else {
        return;
    };
    let html = dangjian::platform::markdown::render(md).to_ascii_lowercase();
    // Escaped text never holds a raw '<': each '<' opens a tag of the sanitised output.
    for tag in html.split('<').skip(1).map(|t| t.split('>').next().unwrap_or_default()) {
        let name = tag.trim_start_matches('/').split([' ', '\t', '\n', '/']).next().unwrap_or_default();
        assert!(
            !matches!(name, "script" | "iframe" | "object" | "embed" | "style" | "svg" | "math"),
            "<{tag}> in {html}"
        );
        // A URL attribute never has a script scheme (as browsers read it: tabs, newlines and
        // control characters inside the scheme are ignored).
        for key in ["href=\"", "src=\"", "action=\"", "formaction=\""] {
            for value in tag.split(key).skip(1) {
                let value = value.split('"').next().unwrap_or_default();
                let scheme: String = value
                    .chars()
                    .filter(|c| !c.is_ascii_control() && !c.is_whitespace())
                    .take(16)
                    .collect();
                assert!(
                    !scheme.starts_with("javascript:") && !scheme.starts_with("vbscript:") && !scheme.starts_with("data:"),
                    "<{tag}> in {html}"
                );
            }
        }
        for attr in tag.split_whitespace().skip(1) {
            assert!(!attr.starts_with("on"), "event handler <{tag}> in {html}");
        }
    }
});
