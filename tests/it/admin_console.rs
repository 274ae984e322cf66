//! The console (cookie session, CSRF, security headers) and a full scenario whose logs must hold
//! no personal data and no passwords.

use dangjian_test_macros::backend_test;

use std::sync::{Arc, Mutex, OnceLock};

use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    each_backend,
    helpers::{Spawn, ADMIN_PASSWORD, ADMIN_USER},
};

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

fn cookie_value(cookies: &[String], name: &str) -> Option<String> {
    cookies.iter().find_map(|c| {
        c.strip_prefix(&format!("{name}="))
            .map(|rest| rest.split(';').next().unwrap().to_owned())
    })
}

fn hidden_csrf(html: &str) -> String {
    let at =
        html.find("name=\"csrf\" value=\"").expect("csrf field") + "name=\"csrf\" value=\"".len();
    html[at..].split('"').next().unwrap().to_owned()
}

#[backend_test]
async fn console_login_uses_a_hardened_cookie_and_csrf_protects_every_post() {
    each_backend!(|app| {
        let http = no_redirects();
        let r = http.get(app.url("/admin/")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[header::LOCATION], "/admin/login");

        let r = http.get(app.url("/admin/login")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let h = r.headers().clone();
        assert!(h["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"));
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert!(h.contains_key("referrer-policy"));
        let login_csrf =
            cookie_value(&set_cookies(&r), "dj_login_csrf").expect("login csrf cookie");
        let html = r.text().await.unwrap();
        assert_eq!(hidden_csrf(&html), login_csrf);
        let login_cookie = format!("dj_login_csrf={login_csrf}");

        let post_login = |csrf: &str, pw: &str| {
            http.post(app.url("/admin/login"))
                .header(header::COOKIE, &login_cookie)
                .form(&[("username", ADMIN_USER), ("password", pw), ("csrf", csrf)])
                .send()
        };
        let r = post_login("forged", ADMIN_PASSWORD).await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = post_login(&login_csrf, "wrong-password").await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.text().await.unwrap().contains("用户名或密码错误"));
        let r = post_login(&login_csrf, ADMIN_PASSWORD).await.unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()[header::LOCATION], "/admin/");
        let cookies = set_cookies(&r);
        let session_line = cookies
            .iter()
            .find(|c| c.starts_with("dj_session="))
            .unwrap();
        assert!(
            session_line.contains("HttpOnly") && session_line.contains("SameSite=Lax"),
            "{session_line}"
        );
        assert!(!session_line.contains("Secure"), "plain http public URL");
        let session = format!(
            "dj_session={}",
            cookie_value(&cookies, "dj_session").unwrap()
        );

        let r = http
            .get(app.url("/admin/"))
            .header(header::COOKIE, &session)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["x-frame-options"], "DENY");
        let html = r.text().await.unwrap();
        assert!(html.contains(ADMIN_USER));
        let csrf = hidden_csrf(&html);

        // The cookie also drives /api/admin, but unsafe methods need the CSRF header.
        let r = http
            .get(app.url("/api/admin/me"))
            .header(header::COOKIE, &session)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let r = http
            .post(app.url("/api/admin/org-units"))
            .header(header::COOKIE, &session)
            .json(&json!({"name": "控制台支部"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            r.json::<Value>().await.unwrap()["error"]["code"],
            "csrf_failed"
        );
        let r = http
            .post(app.url("/api/admin/org-units"))
            .header(header::COOKIE, &session)
            .header("x-csrf-token", &csrf)
            .json(&json!({"name": "控制台支部"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);

        let r = http
            .post(app.url("/admin/logout"))
            .header(header::COOKIE, &session)
            .form(&[("csrf", "forged")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = http
            .post(app.url("/admin/logout"))
            .header(header::COOKIE, &session)
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(set_cookies(&r)
            .iter()
            .any(|c| c.starts_with("dj_session=;") && c.contains("Max-Age=0")));
        let r = http
            .get(app.url("/admin/"))
            .header(header::COOKIE, &session)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::SEE_OTHER,
            "the session is revoked server-side"
        );
    });
}

#[backend_test]
async fn session_cookies_are_secure_when_the_public_url_is_https() {
    let spawn = || Spawn {
        overrides: vec![("public_url", "https://dangjian.example.edu".into())],
        ..Default::default()
    };
    each_backend!(spawn = spawn(), |app| {
        let http = no_redirects();
        let r = http.get(app.url("/admin/login")).send().await.unwrap();
        let csrf = cookie_value(&set_cookies(&r), "__Host-dj_login_csrf").unwrap();
        assert!(set_cookies(&r)[0].contains("; Secure"));
        let r = http
            .post(app.url("/admin/login"))
            .header(header::COOKIE, format!("__Host-dj_login_csrf={csrf}"))
            .form(&[
                ("username", ADMIN_USER),
                ("password", ADMIN_PASSWORD),
                ("csrf", csrf.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(set_cookies(&r)
            .iter()
            .any(|c| c.starts_with("__Host-dj_session=") && c.contains("; Secure")));
    });
}

/// Everything the app logs, from every thread. Installed process-wide: call it only in a test that
/// runs in a process of its own (`helpers::in_a_process_of_its_own`).
pub(crate) fn captured() -> Arc<Mutex<Vec<u8>>> {
    static BUF: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUF.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        struct W(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for W {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sink = buf.clone();
        use tracing_subscriber::prelude::*;
        let filter: tracing_subscriber::filter::Targets =
            "trace,hyper=debug,h2=debug,reqwest=debug,rustls=debug"
                .parse()
                .unwrap();
        let subscriber = tracing_subscriber::registry().with(filter).with(
            tracing_subscriber::fmt::layer()
                .with_writer(move || W(sink.clone()))
                .with_ansi(false),
        );
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in this process");
        buf
    })
    .clone()
}

#[backend_test]
async fn a_full_scenario_logs_no_personal_data_and_no_passwords() {
    if !crate::helpers::in_a_process_of_its_own() {
        return;
    }
    let logs = captured();
    each_backend!(|app| {
        let t = app.admin_token().await;
        let idn = crate::admin::id_number("44030519870203456");
        let rows = json!([
            {"name": "日志甲", "phone": "13587650001", "category": "employed", "monthly_income_fen": 934_517, "org_unit": "日志支部", "id_number": idn},
            {"name": "日志乙", "phone": "13587650002", "category": "retired", "monthly_income_fen": 612_483, "org_unit": "日志支部"},
        ]);
        let r = app
            .http
            .post(app.url("/api/admin/members"))
            .bearer_auth(&t)
            .json(&rows)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let csv = "name,phone,category,monthly_income_fen,org_unit\n日志丙,13587650003,employed,777123,日志支部\n坏,13587,employed,xyz,日志支部\n";
        let r = app
            .http
            .post(app.url("/api/admin/members"))
            .bearer_auth(&t)
            .header("content-type", "text/csv")
            .body(csv)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let bad = json!({"name": 13587650004_i64});
        app.http
            .post(app.url("/api/admin/org-units"))
            .bearer_auth(&t)
            .json(&bad)
            .send()
            .await
            .unwrap();
        let list: Value = app
            .http
            .get(app.url("/api/admin/members?q=13587650001"))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = list["members"][0]["id"].as_i64().unwrap();
        let r = app
            .http
            .get(app.url(&format!("/api/admin/members/{id}?reveal=true")))
            .bearer_auth(&t)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.json::<Value>().await.unwrap()["member"]["phone"],
            "13587650001"
        );
        for _ in 0..6 {
            app.http
                .post(app.url("/api/admin/login"))
                .json(&json!({"username": ADMIN_USER, "password": "Wr0ng-Secret-Guess"}))
                .send()
                .await
                .unwrap();
        }
        app.http
            .post(app.url("/api/admin/login"))
            .json(&json!({"username": "Typed-Password-Here", "password": "x"}))
            .send()
            .await
            .unwrap();
        let pw = app
            .http
            .request(Method::POST, app.url("/api/admin/password"))
            .bearer_auth(&t)
            .json(&json!({"old_password": ADMIN_PASSWORD, "new_password": "Brand-New-Secret-9"}))
            .send()
            .await
            .unwrap();
        assert_eq!(pw.status(), StatusCode::OK);

        let text = String::from_utf8_lossy(&logs.lock().unwrap()).into_owned();
        assert!(
            text.contains("members imported"),
            "sanity: logs were captured"
        );
        let forbidden = [
            "13587650001",
            "13587650002",
            "13587650003",
            "13587650004",
            "934517",
            "612483",
            "777123",
            idn.as_str(),
            ADMIN_PASSWORD,
            "Wr0ng-Secret-Guess",
            "Typed-Password-Here",
            "Brand-New-Secret-9",
        ];
        for secret in forbidden.iter().filter(|s| s.len() > 4) {
            assert!(!text.contains(secret), "`{secret}` appears in the logs");
        }
    });
}
