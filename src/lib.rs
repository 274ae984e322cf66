//! dangjian: the Party-building platform behind a WeChat official account, a mini-program and
//! an editors' web console. `main.rs` is thin; everything is built here.
#![forbid(unsafe_code)]

pub mod audit;
pub mod auth;
pub mod cache;
pub mod clock;
pub mod config;
pub mod content;
pub mod db;
pub mod dedup;
pub mod devtools;
pub mod domain;
pub mod error;
pub mod http;
pub mod interactions;
pub mod jobs;
pub mod markdown;
pub mod metrics;
pub mod moderation;
pub mod outbound;
pub mod pii;
pub mod push;
pub mod startup;
pub mod submissions;
pub mod telemetry;
pub mod wechat_api;
pub mod wechat_sync;

pub use startup::{AppState, Application};
