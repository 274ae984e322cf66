//! The WeChat protocol as a library: official-account message server (signatures, safe-mode
//! crypto, XML messages and replies), the HTTP API client with a shared access token, the
//! mini-program APIs and WeChat Pay v3. It knows nothing of databases; `fake` (feature) is an
//! in-process fake of the WeChat HTTP APIs for tests, benchmarks and dev mode.
#![forbid(unsafe_code)]

pub mod error;
pub use error::{Error, Result};

pub mod crypto;
pub mod message;
pub mod reply;
pub mod signature;
pub mod xml;

pub mod client;
pub mod pay;
pub mod token;

#[cfg(feature = "fake")]
pub mod fake;
