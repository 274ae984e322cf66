//! The editors' console for categories, banners and turning a submission into an article draft:
//! pages render for an editor and are refused to a secretary, every write needs the CSRF token,
//! refused writes change nothing, field errors are shown next to the field, and a submission
//! becomes one article draft with the sender's attribution and none of their personal data.

use dangjian_test_macros::backend_test;

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    each_backend,
    helpers::{flash_of, location_of, Console, TestApp},
};

async fn editor(app: &TestApp) -> Console {
    app.user_token("editor_c16", "editor", None).await;
    app.console_login("editor_c16", "editor_c16-password-1")
        .await
}

async fn html(c: &Console, app: &TestApp, path: &str) -> String {
    let r = c.get(app, path).await;
    assert_eq!(r.status(), StatusCode::OK, "{path}");
    r.text().await.unwrap()
}

fn every_form_has_csrf(html: &str, csrf: &str) {
    let forms = html.matches("<form method=\"post\"").count();
    let fields = html
        .matches(&format!("name=\"csrf\" value=\"{csrf}\""))
        .count();
    assert!(
        forms > 0 && fields >= forms,
        "{forms} post forms, {fields} csrf fields"
    );
}

/// The text of the form field `id` up to the next field's label: where its error is shown.
fn around<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("field {id}"));
    let rest = &html[at..];
    let end = rest[1..].find("<label").map_or(rest.len(), |e| e + 1);
    &rest[..end]
}

#[backend_test]
async fn category_and_banner_pages_render_for_an_editor_and_are_refused_to_a_secretary() {
    each_backend!(|app| {
        let c = editor(&app).await;
        for path in [
            "/admin/articles/categories",
            "/admin/articles/banners",
            "/admin/articles/banners/new",
        ] {
            let page = html(&c, &app, path).await;
            every_form_has_csrf(&page, &c.csrf);
        }
        let list = html(&c, &app, "/admin/articles").await;
        assert!(list.contains("href=\"/admin/articles/categories\""));
        assert!(list.contains("href=\"/admin/articles/banners\""));

        app.create_org_unit("一支部", None).await;
        app.user_token("sec_c16", "secretary", Some("一支部")).await;
        let s = app.console_login("sec_c16", "sec_c16-password-1").await;
        for path in [
            "/admin/articles/categories",
            "/admin/articles/banners",
            "/admin/articles/banners/new",
        ] {
            assert_eq!(
                s.get(&app, path).await.status(),
                StatusCode::FORBIDDEN,
                "{path}"
            );
        }
        let categories = app.count("SELECT COUNT(*) FROM categories").await;
        let r = s
            .post(&app, "/admin/articles/categories", &[("name", "秘书栏目")])
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = s
            .post(
                &app,
                "/admin/articles/banners/new",
                &[
                    ("title", "秘书横幅"),
                    ("image_url", "https://img.example.com/a.jpg"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let r = s
            .post(&app, "/admin/moderation/submissions/1/draft", &[])
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM categories").await,
            categories
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM banners").await, 0);
    });
}

#[backend_test]
async fn categories_are_created_renamed_reordered_and_deleted_only_when_empty() {
    each_backend!(|app| {
        let c = editor(&app).await;
        let count = "SELECT COUNT(*) FROM categories";
        let before = app.count(count).await;
        // No CSRF token: refused, nothing written.
        let r = c
            .post_raw(&app, "/admin/articles/categories", &[("name", "支部风采")])
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(app.count(count).await, before);

        let r = c
            .post(
                &app,
                "/admin/articles/categories",
                &[("name", "支部风采"), ("position", "")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location_of(&r), "/admin/articles/categories");
        assert!(flash_of(&r).starts_with("ok:"), "{}", flash_of(&r));
        assert_eq!(app.count(count).await, before + 1);
        let id = app
            .count("SELECT id FROM categories WHERE name = '支部风采'")
            .await;
        // Last by default.
        assert_eq!(
            app.count("SELECT COUNT(*) FROM categories WHERE position > (SELECT position FROM categories WHERE name = '支部风采')").await,
            0
        );

        // Field errors next to the field, 422, nothing written.
        for (name, position, field) in [
            ("支部风采", "", "c-name"),
            ("  ", "", "c-name"),
            ("新栏目", "第一", "c-position"),
        ] {
            let r = c
                .post(
                    &app,
                    "/admin/articles/categories",
                    &[("name", name), ("position", position)],
                )
                .await;
            assert_eq!(
                r.status(),
                StatusCode::UNPROCESSABLE_ENTITY,
                "{name:?} {position:?}"
            );
            let page = r.text().await.unwrap();
            assert!(
                around(&page, field).contains("field-error"),
                "{field}: {}",
                around(&page, field)
            );
        }
        assert_eq!(app.count(count).await, before + 1);

        // Rename and move to the front.
        let r = c
            .post(
                &app,
                &format!("/admin/articles/categories/{id}"),
                &[("name", "支部风采录"), ("position", "0")],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(flash_of(&r).starts_with("ok:"), "{}", flash_of(&r));
        let page = html(&c, &app, "/admin/articles/categories").await;
        let first = page.find("data-category=\"支部风采录\"").expect("renamed");
        assert!(
            first < page.find("data-category=\"时代先锋\"").unwrap(),
            "moved up"
        );
        assert_eq!(
            app.count(&format!("SELECT position FROM categories WHERE id = {id}"))
                .await,
            0
        );

        // With an article it can't be deleted: a clear flash error, nothing changes.
        let token = app.admin_token().await;
        let (status, v) = app
            .json_call(
                Some(&token),
                Method::POST,
                "/api/admin/articles",
                Some(json!({"title": "风采一", "summary": "", "body_md": "正文", "category": "支部风采录"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        let article = v["id"].as_i64().unwrap();
        let page = html(&c, &app, "/admin/articles/categories").await;
        assert!(
            page.contains(&format!("href=\"/admin/articles?category={id}\">1</a>")),
            "article count"
        );
        let audits = app.count("SELECT COUNT(*) FROM audit_log").await;
        let r = c
            .post(
                &app,
                &format!("/admin/articles/categories/{id}/delete"),
                &[],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let f = flash_of(&r);
        assert!(f.starts_with("error:") && f.contains("1 篇文章"), "{f}");
        assert_eq!(app.count(count).await, before + 1);
        assert_eq!(app.count("SELECT COUNT(*) FROM audit_log").await, audits);

        // A menu category is neither renamed nor deleted.
        let menu = app
            .count("SELECT id FROM categories WHERE name = '党建动态'")
            .await;
        let r = c
            .post(
                &app,
                &format!("/admin/articles/categories/{menu}/delete"),
                &[],
            )
            .await;
        assert!(flash_of(&r).starts_with("error:"), "{}", flash_of(&r));
        let r = c
            .post(
                &app,
                &format!("/admin/articles/categories/{menu}"),
                &[("name", "改名"), ("position", "3")],
            )
            .await;
        assert!(flash_of(&r).starts_with("error:"), "{}", flash_of(&r));
        assert_eq!(
            app.count("SELECT COUNT(*) FROM categories WHERE name = '党建动态'")
                .await,
            1
        );

        // Empty again: deleted, audited.
        let (status, _) = app
            .json_call(
                Some(&token),
                Method::DELETE,
                &format!("/api/admin/articles/{article}"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let r = c
            .post(
                &app,
                &format!("/admin/articles/categories/{id}/delete"),
                &[],
            )
            .await;
        assert!(flash_of(&r).starts_with("ok:"), "{}", flash_of(&r));
        assert_eq!(app.count(count).await, before);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action IN ('category.create', 'category.update', 'category.delete')").await,
            3
        );
    });
}

#[backend_test]
async fn banners_show_window_errors_next_to_the_field_and_the_preview_shows_what_readers_see() {
    each_backend!(|app| {
        let c = editor(&app).await;
        let article = app.published_article("七一专题文章").await;
        let count = "SELECT COUNT(*) FROM banners";
        let form = |title: &'static str, from: &'static str, until: &'static str| {
            vec![
                ("title", title),
                ("image_url", "https://img.example.com/b.jpg"),
                ("article_id", ""),
                ("link_url", ""),
                ("position", "1"),
                ("valid_from", from),
                ("valid_until", until),
            ]
        };
        // The end before the start: the error sits next to the end field; nothing is written.
        let r = c
            .post(
                &app,
                "/admin/articles/banners/new",
                &form("七一", "2026-07-02T08:00", "2026-07-01T08:00"),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let page = r.text().await.unwrap();
        assert!(
            around(&page, "b-until").contains("结束时间必须晚于开始时间"),
            "{}",
            around(&page, "b-until")
        );
        assert!(!around(&page, "b-from").contains("field-error"));
        assert!(
            page.contains("value=\"七一\""),
            "the form keeps what was typed"
        );
        // A time that is no time: its own field.
        let r = c
            .post(
                &app,
                "/admin/articles/banners/new",
                &form("七一", "明天", ""),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let page = r.text().await.unwrap();
        assert!(
            around(&page, "b-from").contains("field-error"),
            "{}",
            around(&page, "b-from")
        );
        // No CSRF token.
        let r = c
            .post_raw(&app, "/admin/articles/banners/new", &form("七一", "", ""))
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert_eq!(app.count(count).await, 0);

        // A banner linking to a published article, shown now; one that starts later is not.
        let article_s = article.to_string();
        let mut f: Vec<(&str, &str)> = form("七一专题", "", "");
        f[2] = ("article_id", &article_s);
        let r = c.post(&app, "/admin/articles/banners/new", &f).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(location_of(&r), "/admin/articles/banners");
        let r = c
            .post(
                &app,
                "/admin/articles/banners/new",
                &form("国庆预告", "2099-10-01T00:00", ""),
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(app.count(count).await, 2);
        let page = html(&c, &app, "/admin/articles/banners").await;
        every_form_has_csrf(&page, &c.csrf);
        let preview_end = page.find("id=\"banners\"").unwrap();
        let preview = &page[page.find("id=\"banner-preview\"").unwrap()..preview_end];
        assert!(
            preview.contains("七一专题")
                && preview.contains(&format!("&#x2f;articles&#x2f;{article}\"")),
            "{preview}"
        );
        assert!(!preview.contains("国庆预告"), "not shown before its window");
        assert!(page.contains("data-confirm="), "delete asks first");
        let (_, mp) = app.mp_get("/api/mp/banners", None).await;
        let titles: Vec<&str> = mp["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["title"].as_str().unwrap())
            .collect();
        assert_eq!(
            titles,
            ["七一专题"],
            "the preview is what the mini-program gets"
        );

        // Edit: the form shows the stored values; a window error on edit changes nothing.
        let later = app
            .count("SELECT id FROM banners WHERE title = '国庆预告'")
            .await;
        let page = html(&c, &app, &format!("/admin/articles/banners/{later}")).await;
        assert!(page.contains("value=\"2099-10-01T00:00\""));
        let r = c
            .post(
                &app,
                &format!("/admin/articles/banners/{later}"),
                &form("国庆", "2099-10-01T00:00", "2099-09-01T00:00"),
            )
            .await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM banners WHERE title = '国庆预告'")
                .await,
            1
        );
        let r = c
            .post(
                &app,
                &format!("/admin/articles/banners/{later}"),
                &form("国庆专题", "", ""),
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let (_, mp) = app.mp_get("/api/mp/banners", None).await;
        assert_eq!(mp["items"].as_array().unwrap().len(), 2);

        // Delete: CSRF needed, then gone, audited.
        let path = format!("/admin/articles/banners/{later}/delete");
        assert_eq!(
            c.post_raw(&app, &path, &[]).await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(app.count(count).await, 2);
        let r = c.post(&app, &path, &[]).await;
        assert!(flash_of(&r).starts_with("ok:"), "{}", flash_of(&r));
        assert_eq!(app.count(count).await, 1);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action IN ('banner.create', 'banner.update', 'banner.delete')").await,
            4
        );
    });
}

#[backend_test]
async fn a_submission_becomes_one_article_draft_with_attribution_and_no_personal_data() {
    each_backend!(|app| {
        let c = editor(&app).await;
        app.create_org_unit("一支部", None).await;
        let phone = "13587651601";
        let id_number = "11010519491231002X";
        app.import_roster(
            json!([{"name": "甲一", "phone": phone, "category": "employed",
            "monthly_income_fen": 500_000, "org_unit": "一支部", "id_number": id_number}]),
        )
        .await;
        app.mini_bind("c16_member", "甲一", phone).await;
        let mp = app.mini_login("c16_member").await;
        let (status, v) = app
            .json_call(
                Some(&mp),
                Method::POST,
                "/api/mp/submissions",
                Some(json!({"title": "支部学习心得", "content": "今天支部组织学习。\n大家收获很多。"})),
            )
            .await;
        assert!(status.is_success(), "{v}");
        let sub = v["id"].as_i64().unwrap();
        let articles = "SELECT COUNT(*) FROM articles";
        let before = app.count(articles).await;

        let queue = html(&c, &app, "/admin/moderation").await;
        assert!(queue.contains("转为文章草稿"));
        every_form_has_csrf(&queue, &c.csrf);
        let path = format!("/admin/moderation/submissions/{sub}/draft");
        assert_eq!(
            c.post_raw(&app, &path, &[]).await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(app.count(articles).await, before);

        let r = c.post(&app, &path, &[("back", "/admin/moderation")]).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        let to = location_of(&r);
        let article: i64 = to
            .strip_prefix("/admin/articles/")
            .expect(&to)
            .parse()
            .unwrap();
        assert_eq!(app.count(articles).await, before + 1);
        let edit = html(&c, &app, &to).await;
        assert!(
            edit.contains("value=\"支部学习心得\""),
            "lands on the edit page"
        );

        let token = app.admin_token().await;
        let (_, a) = app
            .json_call(
                Some(&token),
                Method::GET,
                &format!("/api/admin/articles/{article}"),
                None,
            )
            .await;
        assert_eq!(a["status"], "draft");
        assert_eq!(a["title"], "支部学习心得");
        assert_eq!(a["author"], "甲一");
        assert_eq!(a["source"], "来稿：一支部 甲一");
        assert!(a["body_md"].as_str().unwrap().contains("大家收获很多。"));
        let whole = a.to_string();
        assert!(
            !whole.contains(phone) && !whole.contains("1358765"),
            "no phone: {whole}"
        );
        assert!(
            !whole.contains(id_number) && !whole.contains("110105"),
            "no ID number: {whole}"
        );
        assert!(!whole.contains("mp_c16_member"), "no openid: {whole}");

        // Twice: the same draft, no second article, one audit entry.
        let r = c.post(&app, &path, &[]).await;
        assert_eq!(location_of(&r), to);
        assert!(flash_of(&r).starts_with("ok:"));
        let (status, v) = app
            .json_call(
                Some(&token),
                Method::POST,
                &format!("/api/admin/submissions/{sub}/draft"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v, json!({"article_id": article, "created": false}));
        assert_eq!(app.count(articles).await, before + 1);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'submission.draft'")
                .await,
            1
        );
        let (_, s) = app
            .json_call(
                Some(&token),
                Method::GET,
                &format!("/api/admin/submissions/{sub}"),
                None,
            )
            .await;
        assert_eq!(s["article_id"], article);
        let queue = html(&c, &app, "/admin/moderation").await;
        assert!(queue.contains("打开文章草稿"));

        // A rejected submission is not turned; one from a reader not on the roster has no name.
        let other = app.mini_login("c16_reader").await;
        let (_, v) = app
            .json_call(
                Some(&other),
                Method::POST,
                "/api/mp/submissions",
                Some(json!({"title": "读者来信", "content": "建议多办讲座"})),
            )
            .await;
        let reader_sub = v["id"].as_i64().unwrap();
        let (_, v) = app
            .json_call(
                Some(&other),
                Method::POST,
                "/api/mp/submissions",
                Some(json!({"title": "另一封", "content": "第二封来信"})),
            )
            .await;
        let rejected = v["id"].as_i64().unwrap();
        let (status, _) = app
            .json_call(
                Some(&token),
                Method::POST,
                &format!("/api/admin/submissions/{rejected}/decision"),
                Some(json!({"decision": "reject"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, v) = app
            .json_call(
                Some(&token),
                Method::POST,
                &format!("/api/admin/submissions/{rejected}/draft"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{v}");
        assert_eq!(app.count(articles).await, before + 1);
        let (status, v) = app
            .json_call(
                Some(&token),
                Method::POST,
                &format!("/api/admin/submissions/{reader_sub}/draft"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        assert_eq!(v["created"], true);
        let (_, a) = app
            .json_call(
                Some(&token),
                Method::GET,
                &format!("/api/admin/articles/{}", v["article_id"]),
                None,
            )
            .await;
        assert_eq!(a["author"], serde_json::Value::Null);
        assert_eq!(a["source"], "来稿：读者投稿");

        // The route is in the OpenAPI document with its permission.
        let (_, doc) = app
            .json_call(None, Method::GET, "/api/openapi.json", None)
            .await;
        assert_eq!(
            doc["paths"]["/api/admin/submissions/{id}/draft"]["post"]["x-permission"],
            "moderate"
        );
    });
}
