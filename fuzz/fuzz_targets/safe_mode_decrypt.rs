//! Safe-mode (AES) decryption of the `Encrypt` field: junk is an error, never a panic; and any
//! plaintext survives encrypt → decrypt unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;

const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const APP_ID: &str = "wxdemo0000000000";

fuzz_target!(|data: &[u8]| {
    let crypto = wechat::crypto::MessageCrypto::new(AES_KEY, APP_ID).unwrap();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crypto.decrypt(text);
    }
    let sealed = crypto.encrypt(data);
    assert_eq!(crypto.decrypt(&sealed).unwrap(), data);
});
