//! dangjian: the Party-building platform behind a WeChat official account, a mini-program and
//! an editors' web console. `main.rs` is thin; everything is built here.
//!
//! Layers (see `docs/architecture.md`): `platform` (knows no feature) ← `app` (the state) ←
//! `http` (the toolkit) ← one folder per feature ← `startup` (names every feature).
#![forbid(unsafe_code)]

pub mod app;
pub mod http;
pub mod platform;
pub mod startup;

pub mod activities;
pub mod articles;
pub mod auth;
pub mod development;
pub mod dues;
pub mod members;
pub mod official_account;
pub mod portal;
pub mod push;
pub mod stats;
pub mod submissions;

pub use app::AppState;
pub use startup::Application;
