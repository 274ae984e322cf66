//! The command line the README documents, run as the real binary against the test app's database
//! and the fake WeChat: `migrate`, `admin create | reset-password | disable | rotate-key`,
//! `wechat sync-menu | sync-followers`, `dev send-message`.

use dangjian_test_macros::backend_test;

use std::process::Output;

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    each_backend,
    helpers::{Spawn, TestApp},
};

/// Run `dangjian <args>` with exactly the app's settings (database, Redis, content, data, WeChat
/// base) and nothing else from this process's environment, plus `env`.
async fn dangjian(app: &TestApp, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = app.dangjian_binary();
    cmd.args(args).env("DANGJIAN_PUBLIC_URL", &app.base);
    for (k, v) in env {
        cmd.env(k, v);
    }
    tokio::task::spawn_blocking(move || cmd.output().expect("the dangjian binary runs"))
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Succeeded, and what it printed.
fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

async fn login_status(app: &TestApp, username: &str, password: &str) -> StatusCode {
    app.http
        .post(app.url("/api/admin/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
        .status()
}

#[backend_test]
async fn migrate_applies_each_migration_once() {
    each_backend!(|app| {
        // The app's database is migrated already: nothing to do, twice.
        assert_eq!(
            ok(&dangjian(&app, &["migrate"], &[]).await).trim(),
            "0 migration(s) applied"
        );
        assert_eq!(
            ok(&dangjian(&app, &["migrate"], &[]).await).trim(),
            "0 migration(s) applied"
        );
        // A fresh embedded database gets every migration in the repository.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/fresh.db?mode=rwc", dir.path().display());
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "sql")
            })
            .count();
        let fresh = [("DANGJIAN_DATABASE_URL", url.as_str())];
        assert_eq!(
            ok(&dangjian(&app, &["migrate"], &fresh).await).trim(),
            format!("{files} migration(s) applied")
        );
        assert_eq!(
            ok(&dangjian(&app, &["migrate"], &fresh).await).trim(),
            "0 migration(s) applied"
        );
        // An unreachable database is a clear failure, not a hang or a panic.
        let o = dangjian(
            &app,
            &["migrate"],
            &[("DANGJIAN_DATABASE_URL", "sqlite:///nonexistent-dir/x.db")],
        )
        .await;
        assert!(!o.status.success());
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    });
}

#[backend_test]
async fn admin_accounts_are_created_reset_and_disabled_from_the_command_line() {
    each_backend!(|app| {
        let first = "Cli-Secret-Pass-41";
        let o = dangjian(
            &app,
            &[
                "admin",
                "create",
                "--username",
                "cli_editor",
                "--role",
                "editor",
            ],
            &[("DANGJIAN_NEW_PASSWORD", first)],
        )
        .await;
        ok(&o);
        assert!(
            !stdout(&o).contains(first),
            "a given password is never printed"
        );
        assert_eq!(
            login_status(&app, "cli_editor", first).await,
            StatusCode::OK
        );

        // No password given: one is generated and printed once, and it works.
        let o = dangjian(
            &app,
            &[
                "admin",
                "create",
                "--username",
                "cli_secretary",
                "--role",
                "secretary",
                "--org-unit",
                "命令行支部",
            ],
            &[],
        )
        .await;
        let out = ok(&o);
        let generated = shown_password(&out);
        assert_eq!(
            login_status(&app, "cli_secretary", generated).await,
            StatusCode::OK
        );

        // A bad role is refused with a message and creates nothing.
        let before = app.count("SELECT COUNT(*) FROM admin_users").await;
        let o = dangjian(
            &app,
            &[
                "admin",
                "create",
                "--username",
                "cli_bad",
                "--role",
                "superuser",
            ],
            &[("DANGJIAN_NEW_PASSWORD", first)],
        )
        .await;
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains("superuser") || stderr(&o).contains("role"),
            "{}",
            stderr(&o)
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM admin_users").await, before);

        let second = "Cli-Other-Pass-73";
        ok(&dangjian(
            &app,
            &["admin", "reset-password", "--username", "cli_editor"],
            &[("DANGJIAN_NEW_PASSWORD", second)],
        )
        .await);
        assert_eq!(
            login_status(&app, "cli_editor", first).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            login_status(&app, "cli_editor", second).await,
            StatusCode::OK
        );

        ok(&dangjian(&app, &["admin", "disable", "--username", "cli_editor"], &[]).await);
        assert_ne!(
            login_status(&app, "cli_editor", second).await,
            StatusCode::OK
        );
        // An unknown account is an error.
        assert!(!dangjian(
            &app,
            &["admin", "disable", "--username", "nobody_here"],
            &[]
        )
        .await
        .status
        .success());
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE actor = 'cli'")
                .await,
            4,
            "two creates, a reset and a disable, each audited as the CLI"
        );
    });
}

/// What `password::generate` makes: letters, digits and symbols, no spaces.
/// The password a command printed once (`password (shown once): …`). (Not recognised by its
/// letters and digits: a generated password need not contain a digit.)
fn shown_password(out: &str) -> &str {
    out.lines()
        .find_map(|l| l.trim().strip_prefix("password (shown once): "))
        .map(str::trim)
        .filter(|p| p.len() >= 12)
        .unwrap_or_else(|| panic!("no generated password in: {out}"))
}

const KEY_1: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const KEY_2: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

#[backend_test]
async fn rotate_key_reseals_personal_data_under_the_new_key_once() {
    let spawn = || Spawn {
        overrides: vec![("data_key", KEY_1.into())],
        ..Default::default()
    };
    each_backend!(spawn = spawn(), |app| {
        app.import_roster(json!([
            {"name": "轮换甲", "phone": "13500001111", "category": "employed", "monthly_income_fen": 500_000, "org_unit": "轮换支部"},
            {"name": "轮换乙", "phone": "13500002222", "category": "retired", "monthly_income_fen": 300_000, "org_unit": "轮换支部"},
        ]))
        .await;
        let rotate = [
            ("DANGJIAN_DATA_KEY", KEY_2),
            ("DANGJIAN_DATA_KEYS_OLD", KEY_1),
        ];
        let out = ok(&dangjian(&app, &["admin", "rotate-key"], &rotate).await);
        let resealed: u64 = out.split_whitespace().next().unwrap().parse().unwrap();
        assert!(resealed >= 4, "two phones and two incomes at least: {out}");
        let key_id = out.trim().rsplit(' ').next().unwrap();
        let prefix = format!("v2:{key_id}:");
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM members WHERE phone_enc NOT LIKE '{prefix}%'"
            ))
            .await,
            0,
            "every phone under the new key"
        );
        // Nothing left to do; and without the old key nothing is lost, since nothing needs it.
        let again = ok(&dangjian(&app, &["admin", "rotate-key"], &rotate).await);
        assert!(again.starts_with("0 value(s) re-sealed"), "{again}");
        let alone = ok(&dangjian(
            &app,
            &["admin", "rotate-key"],
            &[("DANGJIAN_DATA_KEY", KEY_2)],
        )
        .await);
        assert!(alone.starts_with("0 value(s) re-sealed"), "{alone}");
        assert_eq!(
            app.count(
                "SELECT COUNT(*) FROM audit_log WHERE actor = 'cli' AND action = 'pii.rotate_key'"
            )
            .await,
            3
        );
        // A malformed key is refused before anything is touched.
        let o = dangjian(
            &app,
            &["admin", "rotate-key"],
            &[("DANGJIAN_DATA_KEY", "not-base64!")],
        )
        .await;
        assert!(!o.status.success());
        assert!(stderr(&o).contains("DANGJIAN_DATA_KEY"), "{}", stderr(&o));
    });
}

#[backend_test]
async fn wechat_sync_menu_and_sync_followers_run_against_wechat() {
    each_backend!(|app| {
        ok(&dangjian(&app, &["wechat", "sync-menu"], &[]).await);
        assert_eq!(app.fake.count_calls(wechat::client::api::MENU_CREATE), 1);
        assert_eq!(app.fake.menu().unwrap()["button"][0]["name"], "党建动态");

        let openids: Vec<String> = (0..30).map(|i| format!("o_cli_{i:02}")).collect();
        app.fake.add_followers(&openids);
        ok(&dangjian(&app, &["wechat", "sync-followers"], &[]).await);
        assert_eq!(
            app.count(
                "SELECT COUNT(*) FROM followers WHERE openid LIKE 'o_cli_%' AND status = 'subscribed'"
            )
            .await,
            30
        );
        // WeChat refusing the credentials: a clear failure. (A fresh Redis prefix: on Redis the
        // token fetched above is shared, and a shared valid token is rightly used.)
        let prefix = format!("dj_test:{}:", crate::helpers::random_suffix());
        let o = dangjian(
            &app,
            &["wechat", "sync-menu"],
            &[
                ("DANGJIAN_WECHAT_APP_SECRET", "wrong-secret-for-the-fake"),
                ("DANGJIAN_REDIS_PREFIX", &prefix),
            ],
        )
        .await;
        assert!(!o.status.success());
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    });
}

#[backend_test]
async fn dev_send_message_takes_the_rest_of_the_line_as_the_text() {
    each_backend!(|app| {
        let out = ok(&dangjian(
            &app,
            &[
                "dev",
                "send-message",
                "--from",
                "o_cli_member",
                "投稿",
                "我的心得",
                "体会",
            ],
            &[],
        )
        .await);
        assert!(out.contains("回执编号 TG"), "{out}");
        let (_, v) = app
            .admin_get(
                &app.admin_token().await,
                "/api/admin/submissions?status=pending",
            )
            .await;
        assert!(v.to_string().contains("我的心得 体会"), "{v}");
        // A single word still works.
        let out = ok(&dangjian(&app, &["dev", "send-message", "帮助"], &[]).await);
        assert!(!out.trim().is_empty());
    });
}

/// A port free a moment ago (the child binds it).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Ends the child (SIGKILL) however the test ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The reply text of `帮助`-style messages sent through `dev send-message` to `base`.
async fn reply_from(app: &TestApp, base: &str, text: &str) -> String {
    let xml = ok(&dangjian(
        app,
        &["dev", "send-message", text],
        &[("DANGJIAN_PUBLIC_URL", base)],
    )
    .await);
    crate::helpers::field(&xml, "Content").unwrap_or(xml)
}

fn replies(text: &str) -> String {
    format!(
        "[welcome]\ntext = \"欢迎\"\n[default]\ntext = \"默认\"\n[[rules]]\nkind = \"exact\"\npattern = \"重载\"\ntext = \"{text}\"\n"
    )
}

#[backend_test]
async fn a_running_server_picks_up_content_edits_and_rereads_on_sighup() {
    each_backend!(|app| {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let s = &app.state.settings;
        let mut cmd = app.dangjian_binary();
        cmd.args(["serve", "--no-workers"])
            .env("DANGJIAN_BIND", format!("127.0.0.1:{port}"))
            .env("DANGJIAN_PUBLIC_URL", &base)
            .stdout(std::process::Stdio::null());
        let child = Child(cmd.spawn().expect("dangjian serve starts"));
        let start = std::time::Instant::now();
        while app
            .http
            .get(format!("{base}/healthz"))
            .send()
            .await
            .map_or(true, |r| !r.status().is_success())
        {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "the server never came up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert_ne!(reply_from(&app, &base, "重载").await, "第一版");

        // An edit is picked up by the file watch, without a signal or a restart.
        let path = s.content_dir.join("replies.toml");
        std::fs::write(&path, replies("第一版")).unwrap();
        let start = std::time::Instant::now();
        while reply_from(&app, &base, "重载").await != "第一版" {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(15),
                "the edit was never picked up"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }

        // An edit the watch cannot see (its modification time put back) waits for SIGHUP.
        let stamp = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::fs::write(&path, replies("第二版")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(stamp)
            .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2_500)).await; // > one watch period
        assert_eq!(reply_from(&app, &base, "重载").await, "第一版");
        let hup = std::process::Command::new("kill")
            .args(["-HUP", &child.0.id().to_string()])
            .status()
            .unwrap();
        assert!(hup.success());
        let start = std::time::Instant::now();
        while reply_from(&app, &base, "重载").await != "第二版" {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(15),
                "SIGHUP did not reload"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        drop(child);
    });
}
