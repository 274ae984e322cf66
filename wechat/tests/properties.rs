//! Property tests for the parsers and the crypto: arbitrary input never panics, and what we
//! write we read back exactly.

use proptest::prelude::*;
use wechat::{
    crypto::MessageCrypto,
    reply::{NewsArticle, Reply},
    xml,
};

const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn encrypt_then_decrypt_is_identity(plain in proptest::collection::vec(any::<u8>(), 0..2048), app in "wx[a-z0-9]{1,18}") {
        let c = MessageCrypto::new(KEY, &app).unwrap();
        prop_assert_eq!(c.decrypt(&c.encrypt(&plain)).unwrap(), plain);
    }

    #[test]
    fn decrypt_of_arbitrary_text_is_an_error_not_a_panic(s in ".{0,400}") {
        let c = MessageCrypto::new(KEY, "wxapp").unwrap();
        let _ = c.decrypt(&s);
    }

    #[test]
    fn ciphertext_for_another_app_id_is_refused(plain in ".{0,200}") {
        let ours = MessageCrypto::new(KEY, "wxours").unwrap();
        let theirs = MessageCrypto::new(KEY, "wxtheirs").unwrap();
        prop_assert!(ours.decrypt(&theirs.encrypt(plain.as_bytes())).is_err());
    }

    #[test]
    fn any_reply_text_round_trips_through_cdata(content in "\\PC{0,300}", extra in prop::sample::select(vec!["]]>", "]]]]>", "<![CDATA[", "&amp;", "</Content>"])) {
        let text = format!("{content}{extra}{content}");
        let reply = Reply::Text { content: text.clone() };
        let fields = xml::parse_flat(&reply.to_xml("o_user", "gh_account", 1)).unwrap();
        prop_assert_eq!(fields.get("Content"), Some(text.as_str()));
        prop_assert_eq!(fields.get("ToUserName"), Some("o_user"));
    }

    #[test]
    fn news_card_fields_round_trip(title in "\\PC{0,64}", url in "https://[a-z]{1,10}\\.cn/[a-z0-9]{0,10}") {
        let reply = Reply::News { article: NewsArticle { title: title.clone(), description: "d]]>".into(), pic_url: String::new(), url: url.clone() } };
        let fields = xml::parse_flat(&reply.to_xml("o", "gh", 1)).unwrap();
        prop_assert_eq!(fields.get("Articles.item.Title"), Some(title.as_str()));
        prop_assert_eq!(fields.get("Articles.item.Description"), Some("d]]>"));
        prop_assert_eq!(fields.get("Articles.item.Url"), Some(url.as_str()));
    }

    #[test]
    fn the_xml_reader_never_panics(s in "\\PC{0,600}") {
        let _ = xml::parse_flat(&s);
        let _ = wechat::message::InboundMessage::from_xml(&s);
    }

    #[test]
    fn the_xml_reader_never_panics_on_xml_like_input(parts in proptest::collection::vec(prop::sample::select(vec![
        "<xml>", "</xml>", "<a>", "</a>", "<![CDATA[", "]]>", "&lt;", "&#x41;", "&bogus;", "<!DOCTYPE x>", "<?pi?>", "<b/>", "text", "<", ">", "\"", "<!--c-->",
    ]), 0..40)) {
        let s: String = parts.concat();
        let _ = xml::parse_flat(&s);
        let _ = wechat::message::InboundMessage::from_xml(&s);
    }
}
