//! What every feature uses and that knows no feature: storage, cache, clock, time formatting,
//! settings, errors, metrics, telemetry, the personal-data cipher, the audit log, Markdown, the
//! content files and the WeChat clients. Nothing here imports a feature or the app state.

pub mod audit;
pub mod cache;
pub mod clock;
pub mod config;
pub mod content;
pub mod db;
pub mod dedup;
pub mod error;
pub mod interactions;
pub mod markdown;
pub mod metrics;
pub mod org;
pub mod outbound;
pub mod pages;
pub mod pii;
pub mod roles;
pub mod telemetry;
pub mod time;
pub mod wechat;
