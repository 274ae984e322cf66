//! The activities console (`/admin/activities`): creating through the form (CSRF, field errors),
//! secretaries kept to their branch, attendance marks on the sheet, the check-in QR page, and the
//! minutes' photos (console and admin API: images only, size limit, nothing stored on refusal,
//! served to signed-in users only) — on every backend.

use dangjian_test_macros::backend_test;

use reqwest::{header, Method, StatusCode};
use serde_json::{json, Value};
use time::{format_description::well_known::Rfc3339, Duration, OffsetDateTime};

use crate::{
    each_backend,
    helpers::{Console, FilePart, TestApp, ADMIN_PASSWORD, ADMIN_USER},
};

const PNG: &[u8] =
    b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89";

/// Now + `hours`, RFC 3339 (the form takes it as well as `datetime-local`).
fn in_hours(hours: i64) -> String {
    (OffsetDateTime::now_utc() + Duration::hours(hours))
        .format(&Rfc3339)
        .unwrap()
}

fn location(r: &reqwest::Response) -> String {
    r.headers()[header::LOCATION].to_str().unwrap().to_owned()
}

/// The flash message a redirect sets (decoded).
fn flash(r: &reqwest::Response) -> String {
    r.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("dj_flash="))
        .map(|v| {
            let raw = v.split(';').next().unwrap();
            form_urlencoded::parse(format!("m={raw}").as_bytes())
                .next()
                .unwrap()
                .1
                .into_owned()
        })
        .unwrap_or_default()
}

/// The text from `marker` to the end of its table row (or 600 characters).
fn around<'a>(html: &'a str, marker: &str) -> &'a str {
    let at = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in page"));
    let rest = &html[at..];
    let end = rest.find("</tr>").unwrap_or(rest.len().min(600));
    &rest[..end]
}

/// 学院党委 › 第一党支部 / 第二党支部.
async fn branches(app: &TestApp) -> (i64, i64) {
    app.create_org_unit("学院党委", None).await;
    let first = app.create_org_unit("第一党支部", Some("学院党委")).await;
    let second = app.create_org_unit("第二党支部", Some("学院党委")).await;
    (first, second)
}

/// A 支委会 for `unit`, created through the admin API.
async fn meeting(app: &TestApp, title: &str, unit: i64) -> i64 {
    let token = app.admin_token().await;
    let (s, v) = app
        .call(
            Method::POST,
            &app.base,
            "/api/admin/activities",
            &token,
            Some(json!({
                "title": title, "capacity": 50, "kind": "branch_committee_meeting",
                "audience_org_units": [unit], "signup_opens_at": in_hours(-1),
                "signup_closes_at": in_hours(24), "starts_at": in_hours(48),
            })),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_i64().unwrap()
}

async fn admin(app: &TestApp) -> Console {
    app.console_login(ADMIN_USER, ADMIN_PASSWORD).await
}

fn form<'a>(title: &'a str, capacity: &'a str, times: &'a [String; 3]) -> Vec<(&'a str, &'a str)> {
    vec![
        ("title", title),
        ("kind", "activity"),
        ("capacity", capacity),
        ("signup_opens_at", &times[0]),
        ("signup_closes_at", &times[1]),
        ("starts_at", &times[2]),
        ("location", "学院报告厅"),
        ("description", "观看专题片"),
        ("remind_minutes", "60"),
    ]
}

#[backend_test]
async fn console_form_creates_an_activity_and_puts_errors_beside_the_fields() {
    each_backend!(|app| {
        let c = admin(&app).await;
        let r = c.get(&app, "/admin/activities/new").await;
        assert_eq!(r.status(), StatusCode::OK);
        let times = [in_hours(-1), in_hours(24), in_hours(48)];

        // No CSRF token: refused, nothing stored.
        let r = c
            .post_raw(&app, "/admin/activities/new", &form("观影", "30", &times))
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        // A capacity that is no number, then one the rules refuse: the form comes back with the
        // error right after the capacity field and the other values kept.
        for (capacity, says) in [("三十", "名额应为"), ("0", "capacity")] {
            let r = c
                .post(
                    &app,
                    "/admin/activities/new",
                    &form("观影", capacity, &times),
                )
                .await;
            assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{capacity}");
            let html = r.text().await.unwrap();
            let field = &html[html.find("id=\"f-capacity\"").unwrap()..];
            let error = &field[..field.find("</div>").unwrap()];
            assert!(error.contains("field-error"), "{error}");
            assert!(error.contains(says), "{error}");
            assert!(html.contains("value=\"观影\""), "the title is kept");
        }
        assert_eq!(app.count("SELECT COUNT(*) FROM activities").await, 0);

        let r = c
            .post(&app, "/admin/activities/new", &form("观影", "30", &times))
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let to = location(&r);
        let id: i64 = to.rsplit('/').next().unwrap().parse().unwrap();
        assert_eq!(to, format!("/admin/activities/{id}"));
        let row = app
            .count(&format!(
                "SELECT COUNT(*) FROM activities WHERE id = {id} AND title = '观影' AND capacity = 30 \
                 AND location = '学院报告厅' AND kind = 'activity'"
            ))
            .await;
        assert_eq!(row, 1);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'activity.create'")
                .await,
            1
        );
        let html = c.get(&app, "/admin/activities").await.text().await.unwrap();
        let line = around(&html, "观影");
        assert!(line.contains("0/30"), "{line}");
        let filtered = c
            .get(&app, "/admin/activities?kind=theme_day")
            .await
            .text()
            .await
            .unwrap();
        assert!(
            !filtered.contains("观影"),
            "the kind filter narrows the list"
        );
        let page = c.get(&app, &to).await;
        assert_eq!(page.status(), StatusCode::OK);
        let html = page.text().await.unwrap();
        assert!(html.contains(&format!("/api/admin/activities/{id}/attendance?format=csv")));
    });
}

#[backend_test]
async fn a_secretary_is_refused_another_branchs_activity() {
    each_backend!(|app| {
        let (first, second) = branches(&app).await;
        let mine = meeting(&app, "第一支部支委会", first).await;
        let theirs = meeting(&app, "第二支部支委会", second).await;
        app.user_token("sec_first", "secretary", Some("第一党支部"))
            .await;
        let c = app.console_login("sec_first", "sec_first-password-1").await;
        let list = c.get(&app, "/admin/activities").await.text().await.unwrap();
        assert!(list.contains("第一支部支委会"), "own branch listed");
        assert!(!list.contains("第二支部支委会"), "other branch not listed");
        assert_eq!(
            c.get(&app, &format!("/admin/activities/{mine}"))
                .await
                .status(),
            StatusCode::OK
        );
        for path in ["", "/edit", "/checkin"] {
            let r = c
                .get(&app, &format!("/admin/activities/{theirs}{path}"))
                .await;
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        }
        let r = c
            .post(&app, &format!("/admin/activities/{theirs}/cancel"), &[])
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(flash(&r).starts_with("error:"), "{}", flash(&r));
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM activities WHERE id = {theirs} AND status = 'open'"
            ))
            .await,
            1
        );
        // Nor may the form create one for the other branch.
        let times = [in_hours(-1), in_hours(24), in_hours(48)];
        let second_s = second.to_string();
        let mut fields = form("越权活动", "10", &times);
        fields.push(("audience", &second_s));
        let r = c.post(&app, "/admin/activities/new", &fields).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM activities WHERE title = '越权活动'")
                .await,
            0
        );
    });
}

#[backend_test]
async fn attendance_marks_show_in_the_sheet() {
    each_backend!(|app| {
        let (first, _) = branches(&app).await;
        let id = meeting(&app, "支委会", first).await;
        let people = app.seed_bound_members("党员", 2, first).await;
        let c = admin(&app).await;
        let path = format!("/admin/activities/{id}/attendance");
        let (ill, there) = (people[0].0.to_string(), people[1].0.to_string());
        let r = c
            .post(
                &app,
                &path,
                &[
                    ("member_id", &ill),
                    ("status", "leave_sick"),
                    ("reason", "发烧住院"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", flash(&r));
        let r = c
            .post(&app, &path, &[("member_id", &there), ("status", "late")])
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        // A status that is not offered: refused, the sheet unchanged.
        let r = c
            .post(&app, &path, &[("member_id", &there), ("status", "asleep")])
            .await;
        assert!(flash(&r).starts_with("error:"));

        let html = c
            .get(&app, &format!("/admin/activities/{id}"))
            .await
            .text()
            .await
            .unwrap();
        let row = around(&html, &format!("id=\"att-{}\"", people[0].0));
        assert!(row.contains("请假（病假）"), "{row}");
        assert!(row.contains("发烧住院"), "{row}");
        assert!(row.contains("手工登记"), "{row}");
        let row = around(&html, &format!("id=\"att-{}\"", people[1].0));
        assert!(row.contains("迟到"), "{row}");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'activity.attendance_mark'")
                .await,
            2
        );
        // Host, recorder and minutes; a missing host is shown beside its field.
        let minutes = format!("/admin/activities/{id}/minutes");
        let r = c
            .post(
                &app,
                &minutes,
                &[
                    ("host", ""),
                    ("recorder", "李四"),
                    ("minutes", "研究发展对象"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = r.text().await.unwrap();
        let field = &html[html.find("id=\"f-host\"").unwrap()..];
        assert!(field[..field.find("</div>").unwrap()].contains("field-error"));
        let r = c
            .post(
                &app,
                &minutes,
                &[
                    ("host", "张三"),
                    ("recorder", "李四"),
                    ("minutes", "研究发展对象"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM activities WHERE id = {id} AND host = '张三' AND recorder = '李四'"
            ))
            .await,
            1
        );
    });
}

#[backend_test]
async fn the_checkin_page_shows_the_rotating_qr_code() {
    each_backend!(|app| {
        let (first, _) = branches(&app).await;
        let id = meeting(&app, "主题党日", first).await;
        let c = admin(&app).await;
        let r = c
            .get(&app, &format!("/admin/activities/{id}/checkin"))
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let html = r.text().await.unwrap();
        let qr = &html[html.find("id=\"checkin-qr\"").expect("the QR box")..];
        assert!(qr.contains(&format!("data-activity=\"{id}\"")));
        let svg = &qr[..qr.find("</div>").unwrap()];
        assert!(svg.contains("<svg") && svg.contains("</svg>"), "{svg}");
        assert!(!html.contains("<?xml"), "no XML prolog inside HTML");
        assert!(html.contains("/admin/static/console.js"));
        let js = c
            .get(&app, "/admin/static/console.js")
            .await
            .text()
            .await
            .unwrap();
        assert!(js.contains("checkin-qr") && js.contains("/checkin-code"));

        // Once cancelled there is no code to show.
        let r = c
            .post(
                &app,
                &format!("/admin/activities/{id}/cancel"),
                &[("reason", "改期")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let r = c
            .get(&app, &format!("/admin/activities/{id}/checkin"))
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(flash(&r).starts_with("error:"));
    });
}

fn photo<'a>(file_name: &'a str, content_type: &'a str, bytes: &'a [u8]) -> [FilePart<'a>; 1] {
    [FilePart {
        name: "photo",
        file_name,
        content_type,
        bytes,
    }]
}

async fn photo_count(app: &TestApp) -> i64 {
    app.count("SELECT COUNT(*) FROM activity_photos").await
}

#[backend_test]
async fn minutes_photos_are_images_only_and_served_to_sessions_only() {
    each_backend!(|app| {
        let (first, _) = branches(&app).await;
        let id = meeting(&app, "支部党员大会", first).await;
        let c = admin(&app).await;
        let upload = format!("/admin/activities/{id}/photos");

        // Console: a PNG is accepted.
        let r = c
            .post_multipart(&app, &upload, &photo("会场.png", "image/png", PNG))
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(flash(&r).starts_with("ok:"), "{}", flash(&r));
        assert_eq!(photo_count(&app).await, 1);
        // A text file posing as a JPEG, an oversize image, a form without the CSRF token:
        // refused, nothing stored.
        let big = [PNG, &vec![0u8; 5 * 1024 * 1024]].concat();
        for (name, ctype, bytes) in [
            (
                "会场.jpg",
                "image/jpeg",
                b"just some text, not a photo".as_slice(),
            ),
            ("huge.png", "image/png", big.as_slice()),
        ] {
            let r = c
                .post_multipart(&app, &upload, &photo(name, ctype, bytes))
                .await;
            assert_eq!(r.status(), StatusCode::SEE_OTHER, "{name}");
            assert!(flash(&r).starts_with("error:"), "{name}: {}", flash(&r));
        }
        let (ct, body) = crate::helpers::multipart_body(
            &[("csrf", "wrong")],
            &photo("会场.png", "image/png", PNG),
        );
        let r = c
            .http
            .post(app.url(&upload))
            .header(header::COOKIE, &c.cookie)
            .header(header::CONTENT_TYPE, ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(photo_count(&app).await, 1);

        // The page shows it; the image is served to the session, with its type and nosniff.
        let html = c
            .get(&app, &format!("/admin/activities/{id}"))
            .await
            .text()
            .await
            .unwrap();
        let pid = app.count("SELECT MAX(id) FROM activity_photos").await;
        let url = format!("/admin/activities/{id}/photos/{pid}");
        // (minijinja escapes `/` in attribute values.)
        assert!(html
            .replace("&#x2f;", "/")
            .contains(&format!("src=\"{url}\"")));
        let r = c.get(&app, &url).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "image/png");
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(r.bytes().await.unwrap().as_ref(), PNG);
        let anonymous = c.http.get(app.url(&url)).send().await.unwrap();
        assert_eq!(anonymous.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&anonymous), "/admin/login");

        // The admin API: the same rules, the one error shape.
        let token = app.admin_token().await;
        let api = format!("/api/admin/activities/{id}/minutes/photos");
        let (s, v) = app
            .multipart_call(
                &api,
                &token,
                &photo("b.webp", "image/webp", b"RIFF\x10\0\0\0WEBPVP8 \0\0"),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["total"], 2, "{v}");
        assert_eq!(v["items"][1]["content_type"], "image/webp");
        for (bytes, want, code) in [
            (
                b"GIF89a not taken".as_slice(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                big.as_slice(),
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
            ),
        ] {
            let (s, v) = app
                .multipart_call(&api, &token, &photo("x.jpg", "image/jpeg", bytes))
                .await;
            assert_eq!(s, want, "{v}");
            assert_eq!(v["error"]["code"], code, "{v}");
        }
        let (s, v) = app
            .multipart_call(
                "/api/admin/activities/999999/minutes/photos",
                &token,
                &photo("a.png", "image/png", PNG),
            )
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
        assert_eq!(v["error"]["code"], "not_found");
        assert_eq!(photo_count(&app).await, 2);
        let r = app
            .http
            .get(app.url(&format!("{api}/{pid}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = app
            .http
            .get(app.url(&format!("{api}/{pid}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        assert_eq!(r.bytes().await.unwrap().as_ref(), PNG);
        let (s, v) = app.call(Method::GET, &app.base, &api, &token, None).await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["total"], 2);
        let (s, _) = app
            .call(
                Method::DELETE,
                &app.base,
                &format!("{api}/{pid}"),
                &token,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        assert_eq!(photo_count(&app).await, 1);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'activity.photo.upload'")
                .await,
            2
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'activity.photo.delete'")
                .await,
            1
        );
        // A plain activity has no minutes, so no photos.
        let (s, v) = app
            .call(
                Method::POST,
                &app.base,
                "/api/admin/activities",
                &token,
                Some(
                    json!({"title": "观影", "capacity": 5, "signup_opens_at": in_hours(-1),
                    "signup_closes_at": in_hours(24), "starts_at": in_hours(48)}),
                ),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let plain = v["id"].as_i64().unwrap();
        let (s, v): (StatusCode, Value) = app
            .multipart_call(
                &format!("/api/admin/activities/{plain}/minutes/photos"),
                &token,
                &photo("a.png", "image/png", PNG),
            )
            .await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        assert_eq!(photo_count(&app).await, 1);
        let doc = app
            .http
            .get(app.url("/api/openapi.json"))
            .send()
            .await
            .unwrap();
        let doc: Value = doc.json().await.unwrap();
        let route = "/api/admin/activities/{id}/minutes/photos";
        assert!(
            doc["paths"][route]["post"]["requestBody"]["content"]["multipart/form-data"]
                .is_object()
        );
        assert!(doc["paths"][format!("{route}/{{photo_id}}")]["delete"].is_object());
    });
}
