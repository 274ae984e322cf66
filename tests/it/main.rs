//! Integration tests: the real router over real HTTP, on SQLite and — when
//! `DANGJIAN_TEST_DATABASE_URL` / `DANGJIAN_TEST_REDIS_URL` are set — on PostgreSQL and Redis too.

mod activities;
mod admin;
mod admin_console;
mod console;
mod content;
mod development;
mod dues;
mod hardening;
mod helpers;
mod members;
mod mp;
mod notices;
mod push;
mod submissions;
mod webhook;
mod wechat_sync;
