//! The Markdown renderer and HTML sanitiser of articles and member content: never a panic, and
//! nothing that runs script survives.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(md) = std::str::from_utf8(data) else {
        return;
    };
    let html = dangjian::platform::markdown::render(md).to_ascii_lowercase();
    assert!(!html.contains("<script"), "{html}");
    assert!(!html.contains("javascript:"), "{html}");
    assert!(!html.contains("<iframe"), "{html}");
    assert!(!html.contains(" onerror="), "{html}");
    assert!(!html.contains(" onload="), "{html}");
});
