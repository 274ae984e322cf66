//! One error type for the crate.

/// Everything that can go wrong talking to WeChat or handling its messages.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// WeChat answered with a non-zero `errcode` (全局返回码).
    #[error("wechat api error {errcode}: {errmsg}")]
    Api { errcode: i64, errmsg: String },
    /// Transport failure: connect, timeout, TLS, or a non-2xx status without a WeChat error body.
    #[error("http error: {0}")]
    Http(String),
    /// A body that could not be decoded (JSON, XML, base64, UTF-8) or a missing required field.
    #[error("decode error: {0}")]
    Decode(String),
    /// A signature or msg_signature that does not match.
    #[error("signature mismatch")]
    Signature,
    /// Decryption failed, bad padding, bad key, or the AppId in an encrypted message is not ours.
    #[error("crypto error: {0}")]
    Crypto(String),
    /// Local misconfiguration (bad key length, bad base URL).
    #[error("configuration error: {0}")]
    Config(String),
}

impl Error {
    /// The WeChat `errcode`, when this is an API error.
    pub fn errcode(&self) -> Option<i64> {
        match self {
            Error::Api { errcode, .. } => Some(*errcode),
            _ => None,
        }
    }
}

impl From<reqwest::Error> for Error {
    fn from(e: reqwest::Error) -> Self {
        // Never include the URL: it may carry the access token in its query string.
        Error::Http(e.without_url().to_string())
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
