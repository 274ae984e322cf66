//! The console's pages (server side): each page answers 200 with a session, redirects to the login
//! without one, refuses a POST without the CSRF token (changing nothing), and escapes user text.

use dangjian_test_macros::backend_test;

use reqwest::{header, StatusCode};

use crate::{
    each_backend,
    helpers::{TestApp, ADMIN_PASSWORD, ADMIN_USER},
};

async fn admin(app: &TestApp) -> crate::helpers::Console {
    app.console_login(ADMIN_USER, ADMIN_PASSWORD).await
}

fn location(r: &reqwest::Response) -> String {
    r.headers()[header::LOCATION].to_str().unwrap().to_owned()
}

/// Every form on the page carries the session's CSRF token.
fn every_form_has_csrf(html: &str, csrf: &str) {
    let forms = html.matches("<form method=\"post\"").count();
    let fields = html
        .matches(&format!("name=\"csrf\" value=\"{csrf}\""))
        .count();
    assert!(fields >= forms, "{forms} post forms, {fields} csrf fields");
}

const PAGES: &[&str] = &[
    "/admin/",
    "/admin/articles",
    "/admin/articles/new",
    "/admin/moderation",
    "/admin/moderation?tab=board",
];

#[backend_test]
async fn console_pages_need_a_session_and_answer_with_the_shell() {
    each_backend!(|app| {
        let c = admin(&app).await;
        for path in PAGES {
            let r = c.http.get(app.url(path)).send().await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::SEE_OTHER,
                "{path} without a session"
            );
            assert_eq!(location(&r), "/admin/login");
            let r = c.get(&app, path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            assert!(r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'"));
            let html = r.text().await.unwrap();
            assert!(html.contains("/admin/static/console.css"), "{path}");
            assert!(html.contains("<nav class=\"main\">"), "{path}");
            every_form_has_csrf(&html, &c.csrf);
        }
        let css = c.get(&app, "/admin/static/console.css").await;
        assert_eq!(css.status(), StatusCode::OK);
        let js = c.get(&app, "/admin/static/console.js").await;
        assert!(js.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/javascript"));
    });
}

#[backend_test]
async fn an_editor_writes_previews_and_publishes_an_article_in_the_console() {
    each_backend!(|app| {
        let c = admin(&app).await;
        let before = app.count("SELECT COUNT(*) FROM articles").await;
        // Preview renders the Markdown and saves nothing; user text is escaped.
        let r = c
            .post(
                &app,
                "/admin/articles/new",
                &[
                    ("title", "<script>alert(1)</script>标题"),
                    ("category", "党建动态"),
                    (
                        "body_md",
                        "# 大标题\n\n**加粗** <img src=x onerror=alert(1)>",
                    ),
                    ("action", "preview"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        let html = r.text().await.unwrap();
        assert!(html.contains("<strong>加粗</strong>"), "{html}");
        assert!(!html.contains("<script>alert(1)</script>"));
        assert!(!html.contains("<img src=x onerror"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;标题"));
        assert_eq!(app.count("SELECT COUNT(*) FROM articles").await, before);

        // A missing title is shown next to the field, and nothing is stored.
        let r = c
            .post(
                &app,
                "/admin/articles/new",
                &[
                    ("title", " "),
                    ("category", "党建动态"),
                    ("body_md", "x"),
                    ("action", "save"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let html = r.text().await.unwrap();
        let title_at = html.find("id=\"f-title\"").unwrap();
        let error_at = html.find("class=\"field-error\"").unwrap();
        let summary_at = html.find("id=\"f-summary\"").unwrap();
        assert!(
            title_at < error_at && error_at < summary_at,
            "error next to the title"
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM articles").await, before);

        // Without the CSRF token: refused, nothing stored.
        let r = c
            .post_raw(
                &app,
                "/admin/articles/new",
                &[
                    ("title", "t"),
                    ("category", "党建动态"),
                    ("body_md", "x"),
                    ("action", "save"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(app.count("SELECT COUNT(*) FROM articles").await, before);

        let r = c
            .post(
                &app,
                "/admin/articles/new",
                &[
                    ("title", "支部学习"),
                    ("category", "党建动态"),
                    ("body_md", "正文"),
                    ("action", "save"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let to = location(&r);
        let id: i64 = to.rsplit('/').next().unwrap().parse().unwrap();
        let page = c
            .http
            .get(app.url(&to))
            .header(
                header::COOKIE,
                format!(
                    "{}; dj_flash=ok%3A%E8%8D%89%E7%A8%BF%E5%B7%B2%E4%BF%9D%E5%AD%98",
                    c.cookie
                ),
            )
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(page.contains("草稿已保存"), "flash shown");
        assert!(page.contains(&format!("/admin/articles/{id}/publish")));
        every_form_has_csrf(&page, &c.csrf);

        let r = c
            .post(
                &app,
                &format!("/admin/articles/{id}/publish"),
                &[("publish_at", "")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM articles WHERE id = {id} AND status = 'published'"
            ))
            .await,
            1
        );
        let list = c
            .get(&app, "/admin/articles?status=published")
            .await
            .text()
            .await
            .unwrap();
        assert!(list.contains("支部学习"));
        // A transition the status machine refuses comes back as a flash error, not a 500.
        let r = c
            .post(&app, &format!("/admin/articles/{id}/submit"), &[])
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(r.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .starts_with("dj_flash=error"));
    });
}

#[backend_test]
async fn scheduling_from_the_console_keeps_the_draft_until_the_time() {
    each_backend!(|app| {
        let c = admin(&app).await;
        let r = c
            .post(
                &app,
                "/admin/articles/new",
                &[
                    ("title", "定时"),
                    ("category", "党建动态"),
                    ("body_md", "x"),
                    ("action", "save"),
                ],
            )
            .await;
        let id: i64 = location(&r).rsplit('/').next().unwrap().parse().unwrap();
        let r = c
            .post(
                &app,
                &format!("/admin/articles/{id}/publish"),
                &[("publish_at", "2099-07-01T08:00")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM articles WHERE id = {id} AND status = 'draft' AND publish_at IS NOT NULL")).await,
            1
        );
        let r = c
            .post(
                &app,
                &format!("/admin/articles/{id}/publish"),
                &[("publish_at", "明天")],
            )
            .await;
        assert!(r.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .starts_with("dj_flash=error"));
    });
}

#[backend_test]
async fn an_editor_approves_a_submission_and_answers_a_board_post_in_the_console() {
    each_backend!(|app| {
        let c = admin(&app).await;
        let mp = app.mini_login("console_sub_1").await;
        let (status, v) = app
            .json_call(
                Some(&mp),
                reqwest::Method::POST,
                "/api/mp/submissions",
                Some(serde_json::json!({"title": "<b>支部</b>活动", "content": "学习<script>x</script>"})),
            )
            .await;
        assert!(status.is_success(), "{v}");
        let sub = v["id"].as_i64().unwrap();
        let (status, v) = app
            .json_call(
                Some(&mp),
                reqwest::Method::POST,
                "/api/mp/board",
                Some(serde_json::json!({"content": "党费怎么交"})),
            )
            .await;
        assert!(status.is_success(), "{v}");
        let post = v["id"].as_i64().unwrap();

        let r = c
            .http
            .get(app.url("/admin/moderation"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let html = c.get(&app, "/admin/moderation").await.text().await.unwrap();
        assert!(
            html.contains("&lt;b&gt;支部&lt;&#x2f;b&gt;活动"),
            "escaped title"
        );
        assert!(!html.contains("<script>x</script>"));
        every_form_has_csrf(&html, &c.csrf);

        let path = format!("/admin/moderation/submissions/{sub}/decision");
        let r = c.post_raw(&app, &path, &[("decision", "approve")]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let pending = "SELECT COUNT(*) FROM submissions WHERE status = 'pending'";
        assert_eq!(app.count(pending).await, 1);
        let r = c
            .post(
                &app,
                &path,
                &[("decision", "approve"), ("back", "/admin/moderation")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&r), "/admin/moderation");
        assert_eq!(app.count(pending).await, 0);
        // A second decision is refused as a flash error.
        let r = c.post(&app, &path, &[("decision", "reject")]).await;
        assert!(r.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .starts_with("dj_flash=error"));

        let html = c
            .get(&app, "/admin/moderation?tab=board")
            .await
            .text()
            .await
            .unwrap();
        assert!(html.contains("党费怎么交"));
        let r = c
            .post(
                &app,
                &format!("/admin/moderation/board/{post}/answer"),
                &[("answer", "在小程序缴纳")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let r = c
            .post(
                &app,
                &format!("/admin/moderation/board/{post}/decision"),
                &[("decision", "approve"), ("back", "https://evil.example/")],
            )
            .await;
        assert_eq!(location(&r), "/admin/moderation", "no open redirect");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM board_posts WHERE status = 'approved' AND answer = '在小程序缴纳'").await,
            1
        );
    });
}

#[backend_test]
async fn an_editor_composes_a_push_and_its_page_polls_the_admin_api_with_the_cookie() {
    each_backend!(|app| {
        let c = admin(&app).await;
        let article = app.published_article("推送文章").await;
        let html = c.get(&app, "/admin/pushes/new").await.text().await.unwrap();
        assert!(html.contains("推送文章"));
        every_form_has_csrf(&html, &c.csrf);
        let pushes = "SELECT COUNT(*) FROM pushes";
        let before = app.count(pushes).await;
        // No article: the error is shown next to the field, nothing is stored.
        let r = c
            .post(
                &app,
                "/admin/pushes/new",
                &[("channel", "template"), ("audience_kind", "all")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(r.text().await.unwrap().contains("请至少选择一篇文章"));
        let art = article.to_string();
        let form = [
            ("article", art.as_str()),
            ("channel", "template"),
            ("audience_kind", "all"),
            ("scheduled_at", "2099-01-01T08:00"),
        ];
        let r = c.post_raw(&app, "/admin/pushes/new", &form).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(app.count(pushes).await, before);
        let r = c.post(&app, "/admin/pushes/new", &form).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let to = location(&r);
        let id: i64 = to.rsplit('/').next().unwrap().parse().unwrap();
        let html = c.get(&app, &to).await.text().await.unwrap();
        assert!(html.contains(&format!("data-push=\"{id}\"")));
        assert!(html.contains("/admin/static/console.js"));

        // The page's script polls the admin API with the cookie: GET is accepted.
        let r = c.get(&app, &format!("/api/admin/pushes/{id}")).await;
        assert_eq!(r.status(), StatusCode::OK);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["status"], "scheduled");
        // An unsafe admin-API call with the cookie needs X-CSRF-Token.
        let api = app.url(&format!("/api/admin/pushes/{id}/cancel"));
        let r = c
            .http
            .post(&api)
            .header(header::COOKIE, &c.cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let scheduled =
            format!("SELECT COUNT(*) FROM pushes WHERE id = {id} AND status = 'scheduled'");
        assert_eq!(app.count(&scheduled).await, 1);
        let r = c
            .http
            .post(&api)
            .header(header::COOKIE, &c.cookie)
            .header("x-csrf-token", &c.csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM pushes WHERE id = {id} AND status = 'cancelled'"
            ))
            .await,
            1
        );
        // The console's own button on a cancelled push: a flash error, not a 500.
        let r = c
            .post(&app, &format!("/admin/pushes/{id}/cancel"), &[])
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(r.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .starts_with("dj_flash=error"));
        let list = c.get(&app, "/admin/pushes").await.text().await.unwrap();
        assert!(list.contains(&format!("/admin/pushes/{id}")));
    });
}
