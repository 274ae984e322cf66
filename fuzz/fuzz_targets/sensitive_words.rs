//! The sensitive-word normaliser and matcher: never a panic, and a listed word written as it was
//! listed, anywhere in a message between spaces, is always found.
#![no_main]

use libfuzzer_sys::fuzz_target;
use dangjian::platform::content::{fold, SensitiveWords};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (word, message) = text.split_once('\n').unwrap_or((text, ""));
    let word = word.split('#').next().unwrap_or_default();
    let list = SensitiveWords::parse(word);
    let _ = list.find(message);
    if !fold(word).is_empty() {
        let hidden = format!("{message} {word} {message}");
        assert!(list.find(&hidden).is_some(), "{word:?} not found in {hidden:?}");
    }
});
