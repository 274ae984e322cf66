//! The content model end to end: articles through their status machine, categories, banners,
//! and what readers (mini-program, public page, webhook cards) get to see.

use dangjian_test_macros::backend_test;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::{
    each_backend,
    helpers::{Spawn, TestApp},
};

struct Resp {
    status: StatusCode,
    body: Value,
    text: String,
    content_type: String,
}

const ADMIN_PASSWORD: &str = "content-admin-pw-1";
const EDITOR_PASSWORD: &str = "content-editor-pw-1";

fn spawn() -> Spawn {
    Spawn {
        overrides: vec![
            ("admin_user", "admin".into()),
            ("admin_password", ADMIN_PASSWORD.into()),
        ],
        ..Default::default()
    }
}

/// The app seen through an editor's API token (sent to `/api/admin` only; readers are anonymous).
struct Editor<'a> {
    app: &'a TestApp,
    token: String,
}

impl std::ops::Deref for Editor<'_> {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        self.app
    }
}

async fn login(app: &TestApp, username: &str, password: &str) -> String {
    let r = app
        .http
        .post(app.url("/api/admin/login"))
        .json(&json!({"username": username, "password": password}));
    let r = into_resp(r.send().await.unwrap()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    r.body["token"].as_str().unwrap().to_owned()
}

impl<'a> Editor<'a> {
    /// The first admin creates an editor account; the editor signs in.
    async fn login(app: &'a TestApp) -> Editor<'a> {
        let admin = login(app, "admin", ADMIN_PASSWORD).await;
        let r = app
            .http
            .post(app.url("/api/admin/users"))
            .bearer_auth(&admin)
            .json(&json!({"username": "editor1", "role": "editor", "password": EDITOR_PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        Editor {
            app,
            token: login(app, "editor1", EDITOR_PASSWORD).await,
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let mut req = self.http.request(method, self.url(path));
        if path.starts_with("/api/admin/") {
            req = req.bearer_auth(&self.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        into_resp(req.send().await.unwrap()).await
    }

    async fn get_json(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }

    async fn post_json(&self, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }

    async fn post_raw(&self, path: &str, body: &'static str) -> Resp {
        let req = self
            .http
            .post(self.url(path))
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .body(body);
        into_resp(req.send().await.unwrap()).await
    }

    /// A draft through the admin API; returns its id.
    async fn draft(&self, title: &str, category: &str) -> i64 {
        let r = self
            .post_json(
                "/api/admin/articles",
                json!({"title": title, "summary": format!("{title}的摘要"), "body_md": "正文", "category": category}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        r.body["id"].as_i64().unwrap()
    }

    async fn published(&self, title: &str, category: &str) -> i64 {
        let id = self.draft(title, category).await;
        let r = self
            .post_json(&format!("/api/admin/articles/{id}/publish"), json!({}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        id
    }

    async fn content_counts(&self) -> (i64, i64, i64, i64) {
        (
            self.count("SELECT COUNT(*) FROM articles").await,
            self.count("SELECT COUNT(*) FROM article_tags").await,
            self.count("SELECT COUNT(*) FROM banners").await,
            self.count("SELECT COUNT(*) FROM categories").await,
        )
    }
}

async fn into_resp(r: reqwest::Response) -> Resp {
    let status = r.status();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        body,
        text,
        content_type,
    }
}

/// `{"error":{"code","message"}}` and nothing else.
fn assert_error(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert!(
        r.content_type.starts_with("application/json"),
        "{}",
        r.content_type
    );
    assert_eq!(r.body["error"]["code"], code, "{}", r.text);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        r.text
    );
    assert_eq!(r.body.as_object().unwrap().len(), 1, "{}", r.text);
}

fn ids(list: &Value) -> Vec<i64> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect()
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

#[backend_test]
async fn status_machine_allows_only_editorial_transitions() {
    each_backend!(spawn = spawn(), |app| {
        let app = Editor::login(&app).await;
        let id = app.draft("支部学习会", "党建动态").await;
        let a = app.get_json(&format!("/api/admin/articles/{id}")).await;
        assert_eq!(a.body["status"], "draft");
        assert_eq!(a.body["published_at"], Value::Null);

        let path = |action: &str| format!("/api/admin/articles/{id}/{action}");
        let expect = |r: &Resp, status: &str| {
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            assert_eq!(r.body["status"], status, "{}", r.text);
        };
        // Refused from draft: archive, reject, restore.
        for action in ["archive", "reject", "restore"] {
            assert_error(
                &app.post_json(&path(action), json!({})).await,
                StatusCode::CONFLICT,
                "invalid_transition",
            );
        }
        expect(&app.post_json(&path("submit"), json!({})).await, "review");
        assert_error(
            &app.post_json(&path("submit"), json!({})).await,
            StatusCode::CONFLICT,
            "invalid_transition",
        );
        expect(&app.post_json(&path("reject"), json!({})).await, "draft");
        expect(&app.post_json(&path("submit"), json!({})).await, "review");
        let published = app.post_json(&path("publish"), json!({})).await;
        expect(&published, "published");
        assert!(
            published.body["published_at"]
                .as_str()
                .unwrap()
                .ends_with("+08:00"),
            "{}",
            published.text
        );
        for action in ["submit", "publish", "reject", "restore"] {
            assert_error(
                &app.post_json(&path(action), json!({})).await,
                StatusCode::CONFLICT,
                "invalid_transition",
            );
        }
        let r = app
            .call(Method::DELETE, &format!("/api/admin/articles/{id}"), None)
            .await;
        assert_error(&r, StatusCode::CONFLICT, "invalid_transition");
        expect(
            &app.post_json(&path("archive"), json!({})).await,
            "archived",
        );
        // Archived: read-only until restored.
        let edit = json!({"title": "改", "body_md": "x", "category": "党建动态"});
        let r = app
            .call(
                Method::PUT,
                &format!("/api/admin/articles/{id}"),
                Some(edit),
            )
            .await;
        assert_error(&r, StatusCode::CONFLICT, "invalid_transition");
        assert_error(
            &app.post_json(&path("publish"), json!({})).await,
            StatusCode::CONFLICT,
            "invalid_transition",
        );
        expect(&app.post_json(&path("restore"), json!({})).await, "draft");
        let r = app
            .call(Method::DELETE, &format!("/api/admin/articles/{id}"), None)
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.text);
        assert_error(
            &app.get_json(&format!("/api/admin/articles/{id}")).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
        assert_error(
            &app.post_json(&path("publish"), json!({})).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    });
}

#[backend_test]
async fn publishing_shows_the_article_to_readers_and_archiving_hides_it() {
    each_backend!(spawn = spawn(), |app| {
        let app = Editor::login(&app).await;
        let db = &app.state.db;
        let older = app.published("旧闻", "干部之窗").await;
        let id = app.draft("干部培训班开班", "干部之窗").await;
        let visible = |list: &Value| ids(list).contains(&id);

        assert!(!visible(
            &app.get_json("/api/mp/articles?category=干部之窗")
                .await
                .body
        ));
        assert_error(
            &app.get_json(&format!("/api/mp/articles/{id}")).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
        assert_error(
            &app.get_json(&format!("/articles/{id}")).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
        let card = dangjian::articles::store::newest_in_category(db, "干部之窗")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(card.id, older);

        let published = app
            .post_json(&format!("/api/admin/articles/{id}/publish"), json!({}))
            .await;
        assert_eq!(published.status, StatusCode::OK, "{}", published.text);
        let published_at = published.body["published_at"].as_str().unwrap().to_owned();

        let list = app.get_json("/api/mp/articles?category=干部之窗").await;
        assert_eq!(ids(&list.body), vec![id, older], "newest first");
        let item = &list.body["items"][0];
        assert_eq!(item["title"], "干部培训班开班");
        assert_eq!(item["category"], "干部之窗");
        assert_eq!(item["summary"], "干部培训班开班的摘要");
        assert_eq!(item["cover_url"], Value::Null);
        assert_eq!(item["published_at"], published_at.as_str());
        let detail = app.get_json(&format!("/api/mp/articles/{id}")).await;
        assert_eq!(detail.status, StatusCode::OK);
        assert_eq!(detail.body["body_html"], "<p>正文</p>\n");
        let page = app.get_json(&format!("/articles/{id}")).await;
        assert_eq!(page.status, StatusCode::OK);
        assert!(page.content_type.starts_with("text/html"));
        assert!(page.text.contains("干部培训班开班") && page.text.contains("name=\"viewport\""));
        let card = dangjian::articles::store::newest_in_category(db, "干部之窗")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            card.id, id,
            "the menu click now answers with the new article"
        );

        // Editing a published article keeps its publish time.
        let edit = json!({"title": "干部培训班开班（更新）", "summary": "新摘要", "body_md": "新正文",
                          "category": "干部之窗", "tags": ["培训"]});
        let r = app
            .call(
                Method::PUT,
                &format!("/api/admin/articles/{id}"),
                Some(edit),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["status"], "published");
        assert_eq!(r.body["published_at"], published_at.as_str());
        assert_eq!(r.body["tags"], json!(["培训"]));
        assert_eq!(
            app.get_json(&format!("/api/mp/articles/{id}")).await.body["body_html"],
            "<p>新正文</p>\n"
        );

        let r = app
            .post_json(&format!("/api/admin/articles/{id}/archive"), json!({}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(!visible(
            &app.get_json("/api/mp/articles?category=干部之窗")
                .await
                .body
        ));
        assert!(!visible(&app.get_json("/api/mp/articles").await.body));
        assert_error(
            &app.get_json(&format!("/api/mp/articles/{id}")).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
        assert_error(
            &app.get_json(&format!("/articles/{id}")).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
        let card = dangjian::articles::store::newest_in_category(db, "干部之窗")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(card.id, older);
    });
}

#[backend_test]
async fn reader_list_pages_and_filters_by_category() {
    each_backend!(spawn = spawn(), |app| {
        let app = Editor::login(&app).await;
        let mut created = Vec::new();
        for i in 0..23 {
            created.push(app.published(&format!("人才{i:02}"), "人才天地").await);
        }
        let other = app.published("政策", "政策法规").await;
        created.reverse(); // newest first

        let p1 = app.get_json("/api/mp/articles?category=人才天地").await;
        assert_eq!(p1.status, StatusCode::OK, "{}", p1.text);
        assert_eq!(
            (
                p1.body["page"].as_i64(),
                p1.body["page_size"].as_i64(),
                p1.body["total"].as_i64()
            ),
            (Some(1), Some(20), Some(23))
        );
        assert_eq!(ids(&p1.body), created[..20]);
        let p2 = app
            .get_json("/api/mp/articles?category=人才天地&page=2")
            .await;
        assert_eq!(ids(&p2.body), created[20..]);
        let p3 = app
            .get_json("/api/mp/articles?category=人才天地&page=3")
            .await;
        assert_eq!(ids(&p3.body), Vec::<i64>::new());
        assert_eq!(p3.body["total"], 23);
        let small = app
            .get_json("/api/mp/articles?category=人才天地&page=2&page_size=10")
            .await;
        assert_eq!(ids(&small.body), created[10..20]);

        // By id as well as by name; no filter mixes categories.
        let cats = app.get_json("/api/mp/categories").await;
        let cat_id = cats.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "人才天地")
            .unwrap()["id"]
            .clone();
        assert_eq!(cats.body["items"][0]["name"], "党建动态", "menu order");
        let by_id = app
            .get_json(&format!("/api/mp/articles?category={cat_id}&page_size=50"))
            .await;
        assert_eq!(ids(&by_id.body), created);
        let all = app.get_json("/api/mp/articles?page_size=50").await;
        assert!(ids(&all.body).contains(&other) && ids(&all.body).contains(&created[0]));
        assert!(!ids(&app
            .get_json("/api/mp/articles?category=人才天地&page_size=50")
            .await
            .body)
        .contains(&other));

        assert_error(
            &app.get_json("/api/mp/articles?category=没有这个栏目").await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        for bad in ["page=0", "page=-1", "page=x", "page_size=51", "page_size=0"] {
            assert_error(
                &app.get_json(&format!("/api/mp/articles?{bad}")).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            );
        }
    });
}

#[backend_test]
async fn admin_list_filters_by_status_tag_and_text() {
    each_backend!(spawn = spawn(), |app| {
        let app = Editor::login(&app).await;
        let mk = |title: &'static str, tags: Value| json!({"title": title, "summary": "s", "body_md": "b", "category": "理论研究", "tags": tags});
        let a = app
            .post_json(
                "/api/admin/articles",
                mk("百分之50%的进步", json!(["学习", "党课"])),
            )
            .await
            .body["id"]
            .as_i64()
            .unwrap();
        let b = app
            .post_json("/api/admin/articles", mk("Theory Notes", json!(["学习"])))
            .await
            .body["id"]
            .as_i64()
            .unwrap();
        let c = app
            .post_json("/api/admin/articles", mk("其他", json!([])))
            .await
            .body["id"]
            .as_i64()
            .unwrap();
        // Distinct update times, so "most recently changed" is well defined.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        app.post_json(&format!("/api/admin/articles/{b}/publish"), json!({}))
            .await;

        let app = &app;
        let q = |qs: &str| {
            let path = format!("/api/admin/articles?{qs}");
            async move { app.get_json(&path).await }
        };
        let mut tagged = ids(&q("tag=学习").await.body);
        tagged.sort();
        assert_eq!(tagged, vec![a, b]);
        assert_eq!(ids(&q("tag=党课").await.body), vec![a]);
        assert_eq!(
            ids(&q("status=published&category=理论研究").await.body),
            vec![b]
        );
        assert_eq!(
            ids(&q("status=draft&category=理论研究").await.body).len(),
            2
        );
        assert_eq!(ids(&q("q=50%25").await.body), vec![a], "% is a literal");
        assert_eq!(ids(&q("q=%25").await.body), vec![a]);
        assert_eq!(ids(&q("q=theory").await.body), vec![b], "case-insensitive");
        assert_eq!(ids(&q("q=其他").await.body), vec![c]);
        let first = q("category=理论研究").await;
        assert_eq!(
            first.body["items"][0]["id"], b,
            "most recently changed first"
        );
        assert_eq!(first.body["total"], 3);
        assert_error(
            &q("status=deleted").await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
    });
}

#[backend_test]
async fn banners_are_shown_inside_their_window_in_order() {
    each_backend!(spawn = spawn(), |app| {
        let app = Editor::login(&app).await;
        let now = app.state.clock.now();
        let h = time::Duration::hours(1);
        let draft = app.draft("专题草稿", "党建动态").await;
        let mut mk = Vec::new();
        for (title, pos, from, until, article) in [
            ("长期", 2, None, None, None),
            ("将来", 0, Some(now + h), Some(now + 2 * h), None),
            ("过去", 0, Some(now - 2 * h), Some(now - h), None),
            ("当前", 1, Some(now - h), Some(now + h), None),
            ("草稿专题", 0, None, None, Some(draft)),
        ] {
            let body = json!({
                "title": title, "image_url": format!("https://img.example.com/{pos}.jpg"), "position": pos,
                "valid_from": from.map(rfc3339), "valid_until": until.map(rfc3339), "article_id": article,
                "link_url": if article.is_none() { Some("/pages/activity/index?id=1") } else { None },
            });
            let r = app.post_json("/api/admin/banners", body).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
            mk.push(r.body["id"].as_i64().unwrap());
        }
        let (always, future, past, current, linked) = (mk[0], mk[1], mk[2], mk[3], mk[4]);
        let shown = || async {
            let r = app.get_json("/api/mp/banners").await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text);
            ids(&r.body)
                .into_iter()
                .filter(|i| mk.contains(i))
                .collect::<Vec<_>>()
        };
        assert_eq!(shown().await, vec![current, always]);
        let listed = app.get_json("/api/admin/banners").await;
        let active: Vec<i64> = listed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|b| b["active"] == true)
            .map(|b| b["id"].as_i64().unwrap())
            .collect();
        assert!(
            active.contains(&current)
                && !active.contains(&future)
                && !active.contains(&past)
                && !active.contains(&linked)
        );

        // A banner linking an article appears once the article is published.
        app.post_json(&format!("/api/admin/articles/{draft}/publish"), json!({}))
            .await;
        assert_eq!(shown().await, vec![linked, current, always]);
        let r = app.get_json("/api/mp/banners").await;
        let b = r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == linked)
            .unwrap()
            .clone();
        assert_eq!(b["article_id"], draft);
        assert_eq!(b["link_url"], Value::Null);
        // …and a banner keeps its article from being deleted.
        app.post_json(&format!("/api/admin/articles/{draft}/archive"), json!({}))
            .await;
        app.post_json(&format!("/api/admin/articles/{draft}/restore"), json!({}))
            .await;
        assert_eq!(shown().await, vec![current, always]);
        let r = app
            .call(
                Method::DELETE,
                &format!("/api/admin/articles/{draft}"),
                None,
            )
            .await;
        assert_error(&r, StatusCode::CONFLICT, "conflict");

        // Move the future one into the present, then delete one.
        let body = json!({"title": "将来", "image_url": "https://img.example.com/f.jpg", "position": 3,
                          "valid_from": rfc3339(now - h), "valid_until": null});
        let r = app
            .call(
                Method::PUT,
                &format!("/api/admin/banners/{future}"),
                Some(body),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["active"], true);
        assert_eq!(shown().await, vec![current, always, future]);
        let r = app
            .call(
                Method::DELETE,
                &format!("/api/admin/banners/{always}"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert_eq!(shown().await, vec![current, future]);
        let r = app
            .call(
                Method::DELETE,
                &format!("/api/admin/banners/{always}"),
                None,
            )
            .await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    });
}

#[backend_test]
async fn raw_html_and_scripts_never_reach_readers() {
    each_backend!(spawn = spawn(), |app| {
        let app = Editor::login(&app).await;
        let body_md = "# 标题\n\n<script>alert('x')</script>\n\n<img src=\"https://img.example.com/a.png\" onerror=\"alert(1)\">\n\n\
                       [点我](javascript:alert(1))\n\n<iframe src=\"https://evil.example\"></iframe>\n\n\
                       <a href=\"https://example.com\" onclick=\"steal()\">链接</a>\n\n<style>body{display:none}</style>\n";
        let r = app
            .post_json(
                "/api/admin/articles",
                json!({"title": "<script>alert(2)</script>标题", "summary": "<b>摘要</b>", "body_md": body_md,
                       "category": "党建动态", "author": "\"><script>x</script>"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        let id = r.body["id"].as_i64().unwrap();
        app.post_json(&format!("/api/admin/articles/{id}/publish"), json!({}))
            .await;

        let detail = app.get_json(&format!("/api/mp/articles/{id}")).await;
        let page = app.get_json(&format!("/articles/{id}")).await;
        assert_eq!(page.status, StatusCode::OK);
        for html in [
            detail.body["body_html"].as_str().unwrap(),
            page.text.as_str(),
        ] {
            let lower = html.to_lowercase();
            for bad in [
                "<script",
                "onerror",
                "onclick",
                "javascript:",
                "<iframe",
                "<style>body",
            ] {
                assert!(!lower.contains(bad), "{bad} in {html}");
            }
            assert!(html.contains("<h1>标题</h1>"), "{html}");
            assert!(
                html.contains("https://img.example.com/a.png"),
                "safe images stay: {html}"
            );
        }
        assert!(page
            .text
            .contains("&lt;script&gt;alert(2)&lt;&#x2f;script&gt;标题"));
        let csp = app
            .http
            .get(app.url(&format!("/articles/{id}")))
            .send()
            .await
            .unwrap();
        let csp = csp
            .headers()
            .get("content-security-policy")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(csp.contains("default-src 'none'"), "{csp}");
    });
}

#[backend_test]
async fn bad_requests_get_the_one_error_shape() {
    each_backend!(spawn = spawn(), |app| {
        let app = Editor::login(&app).await;
        for path in [
            "/api/admin/articles/999999",
            "/api/mp/articles/999999",
            "/articles/999999",
            "/api/mp/articles/abc",
            "/articles/1x",
        ] {
            assert_error(
                &app.get_json(path).await,
                StatusCode::NOT_FOUND,
                "not_found",
            );
        }
        let put = json!({"title": "t", "body_md": "b", "category": "党建动态"});
        assert_error(
            &app.call(Method::PUT, "/api/admin/articles/999999", Some(put))
                .await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
        assert_error(
            &app.call(
                Method::PUT,
                "/api/admin/banners/999999",
                Some(json!({"title": "t", "image_url": "https://x.example/a.png"})),
            )
            .await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
        assert_error(
            &app.call(
                Method::PUT,
                "/api/admin/categories/999999",
                Some(json!({"position": 1})),
            )
            .await,
            StatusCode::NOT_FOUND,
            "not_found",
        );

        assert_error(
            &app.post_raw("/api/admin/articles", "{\"title\": ").await,
            StatusCode::BAD_REQUEST,
            "bad_json",
        );
        assert_error(
            &app.post_raw("/api/admin/articles", "").await,
            StatusCode::BAD_REQUEST,
            "bad_json",
        );
        assert_error(
            &app.post_raw("/api/admin/articles/1/publish", "{\"publish_at\": ")
                .await,
            StatusCode::BAD_REQUEST,
            "bad_json",
        );
        let good = json!({"title": "t", "summary": "s", "body_md": "b", "category": "党建动态"});
        let with = |k: &str, v: Value| {
            let mut b = good.clone();
            b[k] = v;
            b
        };
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("title");
        for bad in [
            missing,
            with("title", json!("  ")),
            with("title", json!(42)),
            with("title", json!("长".repeat(65))),
            with("category", json!("没有这个栏目")),
            with("cover_url", json!("javascript:alert(1)")),
            with("tags", json!(["", "a"])),
            with("unexpected", json!(1)),
        ] {
            let r = app.post_json("/api/admin/articles", bad.clone()).await;
            assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        }
        let r = app
            .post_json(
                "/api/admin/articles/1/publish",
                json!({"publish_at": "tomorrow"}),
            )
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_error(
            &app.get_json("/api/admin/articles?page=x").await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
    });
}

#[backend_test]
async fn refused_requests_write_nothing() {
    each_backend!(spawn = spawn(), |app| {
        let app = Editor::login(&app).await;
        let id = app.draft("原标题", "党建动态").await;
        let r = app
            .call(
                Method::PUT,
                &format!("/api/admin/articles/{id}"),
                Some(json!({"title": "t", "body_md": "b", "category": "党建动态", "tags": ["a"]})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        let before = app.content_counts().await;
        let article_before = app
            .get_json(&format!("/api/admin/articles/{id}"))
            .await
            .body;

        let tags: Vec<String> = (0..11).map(|i| format!("t{i}")).collect();
        let bad_articles = [
            json!({"title": "t", "body_md": "b", "category": "没有", "tags": ["x", "y"]}),
            json!({"title": "t", "body_md": "b", "category": "党建动态", "tags": tags}),
        ];
        for b in &bad_articles {
            assert_eq!(
                app.post_json("/api/admin/articles", b.clone()).await.status,
                StatusCode::UNPROCESSABLE_ENTITY
            );
            let r = app
                .call(
                    Method::PUT,
                    &format!("/api/admin/articles/{id}"),
                    Some(b.clone()),
                )
                .await;
            assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        }
        for b in [
            json!({"title": "b", "image_url": "https://x.example/a.png", "valid_from": "2026-07-02T00:00:00+08:00", "valid_until": "2026-07-01T00:00:00+08:00"}),
            json!({"title": "b", "image_url": "https://x.example/a.png", "article_id": 999999}),
            json!({"title": "b", "image_url": "https://x.example/a.png", "article_id": id, "link_url": "https://x.example"}),
            json!({"title": "b", "image_url": "not a url"}),
        ] {
            assert_error(
                &app.post_json("/api/admin/banners", b).await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            );
        }
        assert_error(
            &app.post_json("/api/admin/categories", json!({"name": "党建动态"}))
                .await,
            StatusCode::CONFLICT,
            "conflict",
        );
        assert_error(
            &app.post_json("/api/admin/categories", json!({"name": " "}))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        assert_error(
            &app.post_json(&format!("/api/admin/articles/{id}/archive"), json!({}))
                .await,
            StatusCode::CONFLICT,
            "invalid_transition",
        );

        assert_eq!(app.content_counts().await, before);
        assert_eq!(
            app.get_json(&format!("/api/admin/articles/{id}"))
                .await
                .body,
            article_before
        );
    });
}

#[backend_test]
async fn categories_can_be_added_renamed_and_reordered_but_menu_names_stay() {
    each_backend!(spawn = spawn(), |app| {
        let app = Editor::login(&app).await;
        let list = app.get_json("/api/admin/categories").await;
        let items = list.body["items"].as_array().unwrap().clone();
        assert_eq!(items.len(), 20, "table 4-1");
        assert!(items.iter().all(|c| c["from_menu"] == true));
        let menu_id = items[0]["id"].as_i64().unwrap();

        let r = app
            .post_json("/api/admin/categories", json!({"name": "党务公开"}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        assert_eq!(r.body["position"], 20, "last by default");
        assert_eq!(r.body["from_menu"], false);
        let id = r.body["id"].as_i64().unwrap();

        let r = app
            .call(
                Method::PUT,
                &format!("/api/admin/categories/{id}"),
                Some(json!({"name": "党务公开栏", "position": -1})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(
            app.get_json("/api/mp/categories").await.body["items"][0]["name"],
            "党务公开栏"
        );
        let r = app
            .call(
                Method::PUT,
                &format!("/api/admin/categories/{menu_id}"),
                Some(json!({"name": "改名"})),
            )
            .await;
        assert_error(&r, StatusCode::CONFLICT, "menu_category");
        let r = app
            .call(
                Method::PUT,
                &format!("/api/admin/categories/{menu_id}"),
                Some(json!({"position": 30})),
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "menu categories may move: {}",
            r.text
        );
        let r = app
            .call(
                Method::PUT,
                &format!("/api/admin/categories/{id}"),
                Some(json!({"name": "时代先锋"})),
            )
            .await;
        assert_error(&r, StatusCode::CONFLICT, "conflict");

        let article = app.draft("公开事项", "党务公开栏").await;
        assert_error(
            &app.call(Method::DELETE, &format!("/api/admin/categories/{id}"), None)
                .await,
            StatusCode::CONFLICT,
            "conflict",
        );
        assert_error(
            &app.call(
                Method::DELETE,
                &format!("/api/admin/categories/{menu_id}"),
                None,
            )
            .await,
            StatusCode::CONFLICT,
            "menu_category",
        );
        assert_eq!(
            app.call(
                Method::DELETE,
                &format!("/api/admin/articles/{article}"),
                None
            )
            .await
            .status,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            app.call(Method::DELETE, &format!("/api/admin/categories/{id}"), None)
                .await
                .status,
            StatusCode::NO_CONTENT
        );
        assert_error(
            &app.call(Method::DELETE, &format!("/api/admin/categories/{id}"), None)
                .await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    });
}

#[backend_test]
async fn scheduled_publication_happens_at_its_time() {
    each_backend!(spawn = spawn(), |app| {
        let app = Editor::login(&app).await;
        let id = app.draft("七一献礼", "党建动态").await;
        let at = app.state.clock.now() + time::Duration::hours(2);
        let r = app
            .post_json(
                &format!("/api/admin/articles/{id}/publish"),
                json!({"publish_at": rfc3339(at)}),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(r.body["status"], "draft");
        let at_ms = dangjian::platform::time::unix_ms(at);
        assert_eq!(
            r.body["publish_at"],
            dangjian::articles::rules::rfc3339_shanghai(at_ms)
        );
        assert_error(
            &app.get_json(&format!("/api/mp/articles/{id}")).await,
            StatusCode::NOT_FOUND,
            "not_found",
        );

        let db = &app.state.db;
        assert_eq!(
            dangjian::articles::store::publish_due(db, at_ms - 1)
                .await
                .unwrap(),
            0
        );
        assert_eq!(
            dangjian::articles::store::publish_due(db, at_ms)
                .await
                .unwrap(),
            1
        );
        let r = app.get_json(&format!("/api/mp/articles/{id}")).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert_eq!(
            r.body["published_at"],
            dangjian::articles::rules::rfc3339_shanghai(at_ms)
        );
        let a = app.get_json(&format!("/api/admin/articles/{id}")).await;
        assert_eq!(
            (a.body["status"].as_str(), a.body["publish_at"].clone()),
            (Some("published"), Value::Null)
        );
        assert_eq!(
            dangjian::articles::store::publish_due(db, at_ms + 1)
                .await
                .unwrap(),
            0,
            "once"
        );
    });
}

#[backend_test]
async fn content_admin_needs_an_editor_and_every_write_is_audited() {
    each_backend!(spawn = spawn(), |app| {
        let anonymous = app
            .http
            .post(app.url("/api/admin/articles"))
            .json(&json!({"title": "t"}))
            .send()
            .await
            .unwrap();
        let anonymous = into_resp(anonymous).await;
        assert_error(&anonymous, StatusCode::UNAUTHORIZED, "unauthorized");
        let listed = into_resp(
            app.http
                .get(app.url("/api/admin/banners"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_error(&listed, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(app.count("SELECT COUNT(*) FROM articles").await, 0);

        let app = Editor::login(&app).await;
        let id = app.published("审计", "党建动态").await;
        let r = app
            .post_json(
                "/api/admin/banners",
                json!({"title": "b", "image_url": "https://x.example/b.png", "article_id": id}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
        // A refused write leaves no entry either.
        app.post_json(&format!("/api/admin/articles/{id}/submit"), json!({}))
            .await;
        let actions = |sql: &'static str| async move {
            use sqlx::Row;
            sqlx::query(sql)
                .fetch_all(app.state.db.pool())
                .await
                .unwrap()
                .iter()
                .map(|r| r.get::<String, _>(0))
                .collect::<Vec<_>>()
        };
        let logged = actions(
            "SELECT action FROM audit_log WHERE actor = 'editor1' AND target_type IN ('article', 'banner') ORDER BY id",
        )
        .await;
        assert_eq!(
            logged,
            vec!["article.create", "article.publish", "banner.create"]
        );
    });
}
