//! The inbound XML reader: any body WeChat (or an attacker who guessed nothing) could POST. Never
//! a panic; a DOCTYPE in the prolog is always refused; what parses has a de-duplication key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = wechat::xml::parse_flat(xml);
    // A document type declaration (in the prolog, before the root element) is always refused;
    // the same characters inside a CDATA section are only text.
    let prolog = xml.split("<xml").next().unwrap_or_default();
    if prolog.contains("<!DOCTYPE") || prolog.contains("<!ENTITY") {
        assert!(parsed.is_err(), "a DTD must be refused: {xml:?}");
    }
    if let Ok(msg) = wechat::message::InboundMessage::from_xml(xml) {
        let _ = msg.dedup_key();
        let _ = msg.msg_type();
        let _ = msg.event_name();
    }
});
