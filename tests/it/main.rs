//! Integration tests: the real router over real HTTP, on SQLite and — when
//! `DANGJIAN_TEST_DATABASE_URL` / `DANGJIAN_TEST_REDIS_URL` are set — on PostgreSQL and Redis too.

mod activities;
mod activities_console;
mod admin;
mod admin_console;
mod articles_console;
mod cli;
mod console;
mod content;
mod development;
mod development_console;
mod dues;
mod dues_console;
mod faults;
mod hardening;
mod helpers;
mod members;
mod members_console;
mod mp;
mod notices;
mod push;
mod stats;
mod submissions;
mod webhook;
mod wechat_sync;
