//! The inbound XML reader: any body WeChat (or an attacker who guessed nothing) could POST. Never
//! a panic; a DOCTYPE or entity is always refused; what parses has a de-duplication key.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = wechat::xml::parse_flat(xml);
    if xml.contains("<!DOCTYPE") || xml.contains("<!ENTITY") {
        assert!(parsed.is_err(), "a DTD must be refused: {xml:?}");
    }
    if let Ok(msg) = wechat::message::InboundMessage::from_xml(xml) {
        let _ = msg.dedup_key();
        let _ = msg.msg_type();
        let _ = msg.event_name();
    }
});
