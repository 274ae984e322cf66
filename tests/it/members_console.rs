//! The console's roster, org-tree, audit and account pages over real HTTP with a console session:
//! masked lists, audited reveals, secretaries kept to their subtree, CSRF, the CSV import's row
//! report, the org tree's rules, the audit filters and the account rules.

use dangjian_test_macros::backend_test;

use reqwest::{header, StatusCode};
use serde_json::json;

use crate::{
    each_backend,
    helpers::{Console, TestApp, ADMIN_PASSWORD, ADMIN_USER},
};

async fn admin(app: &TestApp) -> Console {
    app.console_login(ADMIN_USER, ADMIN_PASSWORD).await
}

/// A secretary of `unit` (created through the API) signed into the console.
async fn secretary(app: &TestApp, name: &str, unit: &str) -> Console {
    app.user_token(name, "secretary", Some(unit)).await;
    app.console_login(name, &format!("{name}-password-1")).await
}

async fn html(r: reqwest::Response) -> (StatusCode, String) {
    (r.status(), r.text().await.unwrap())
}

/// The flash message a redirect carries (`ok:` or `error:` and the text).
fn flash(r: &reqwest::Response) -> String {
    let raw = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.strip_prefix("dj_flash="))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .unwrap_or_default();
    form_urlencoded::parse(format!("m={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

async fn scalar(app: &TestApp, sql: &str, id: i64) -> String {
    use sqlx::Row;
    sqlx::query(sql)
        .bind(id)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get::<String, _>(0)
}

/// 党委 → 一支部, 二支部, each with one member.
async fn two_branches(app: &TestApp) {
    app.create_org_unit("机关党委", None).await;
    app.create_org_unit("一支部", Some("机关党委")).await;
    app.create_org_unit("二支部", Some("机关党委")).await;
    let idn = crate::admin::id_number("11010519491231002");
    app.import_roster(json!([
        {"name": "甲一", "phone": "13587650001", "category": "employed", "monthly_income_fen": 850_000, "org_unit": "一支部", "id_number": idn},
        {"name": "乙二", "phone": "13587650002", "category": "student", "org_unit": "二支部", "party_status": "probationary"},
    ]))
    .await;
}

#[backend_test]
async fn the_roster_masks_phones_and_a_reveal_is_audited_and_shown_once() {
    each_backend!(|app| {
        two_branches(&app).await;
        let c = admin(&app).await;
        let (status, page) = html(c.get(&app, "/admin/members").await).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("甲一") && page.contains("乙二"), "{page}");
        assert!(page.contains("135****0001"), "masked phone shown");
        assert!(!page.contains("13587650001") && !page.contains("13587650002"));
        assert!(page.contains("党员与组织"), "the nav link");
        // Search by phone goes through the blind index; filters by unit and Party status.
        let (_, page) = html(c.get(&app, "/admin/members?q=13587650002").await).await;
        assert!(page.contains("乙二") && !page.contains("甲一"));
        let (_, page) = html(c.get(&app, "/admin/members?q=%E7%94%B2").await).await;
        assert!(page.contains("甲一") && !page.contains("乙二"));
        let (_, page) = html(
            c.get(&app, "/admin/members?party_status=probationary")
                .await,
        )
        .await;
        assert!(page.contains("乙二") && !page.contains("甲一"));
        let (_, page) = html(
            c.get(&app, "/admin/members?org_unit=%E4%B8%80%E6%94%AF%E9%83%A8")
                .await,
        )
        .await;
        assert!(page.contains("甲一") && !page.contains("乙二"));

        let id = app.member_id("甲一").await;
        let path = format!("/admin/members/{id}");
        let (status, page) = html(c.get(&app, &path).await).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("135****0001") && !page.contains("13587650001"));
        assert!(page.contains("1101**********"), "masked ID number");

        // Without the CSRF token: refused, nothing revealed, nothing audited.
        let reveal = format!("{path}/reveal");
        let r = c.post_raw(&app, &reveal, &[]).await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(!r.text().await.unwrap().contains("13587650001"));
        assert_eq!(app.audit_count("member.reveal").await, 0);

        let (status, page) = html(c.post(&app, &reveal, &[]).await).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("13587650001"), "revealed once");
        assert!(page.contains("8500.00 元"), "income in clear");
        assert_eq!(app.audit_count("member.reveal").await, 1);
        let details = app.audit_details("member.reveal").await;
        assert_eq!(
            details[0]["fields"],
            json!(["phone", "id_number", "monthly_income_fen"])
        );
        // The next view is masked again.
        let (_, page) = html(c.get(&app, &path).await).await;
        assert!(!page.contains("13587650001"));
    });
}

#[backend_test]
async fn a_secretary_sees_and_edits_only_their_branch() {
    each_backend!(|app| {
        two_branches(&app).await;
        let s = secretary(&app, "sec-one", "一支部").await;
        let (status, page) = html(s.get(&app, "/admin/members?status=all").await).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("甲一") && !page.contains("乙二"), "{page}");
        assert!(
            !page.contains("/admin/audit"),
            "no admin links for a secretary"
        );

        let other = app.member_id("乙二").await;
        let r = s.get(&app, &format!("/admin/members/{other}")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "as the API: not found");
        let r = s
            .post(
                &app,
                &format!("/admin/members/{other}"),
                &[
                    ("name", "改名"),
                    ("category", "student"),
                    ("party_status", "probationary"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = s
            .post(&app, &format!("/admin/members/{other}/reveal"), &[])
            .await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = s
            .post(&app, &format!("/admin/members/{other}/delete"), &[])
            .await;
        assert!(flash(&r).starts_with("error:"), "{}", flash(&r));
        assert_eq!(
            scalar(&app, "SELECT name FROM members WHERE id = $1", other).await,
            "乙二"
        );
        assert_eq!(
            scalar(&app, "SELECT status FROM members WHERE id = $1", other).await,
            "active"
        );

        // Own member: a bad value is shown next to its field, a good edit is saved.
        let own = app.member_id("甲一").await;
        let path = format!("/admin/members/{own}");
        let form = |name: &'static str, income: &'static str| {
            vec![
                ("name", name),
                ("category", "employed"),
                ("monthly_income_yuan", income),
                ("party_status", "full"),
                ("joined_at", ""),
                ("full_at", ""),
            ]
        };
        let (status, page) = html(s.post(&app, &path, &form("甲一", "八千")).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let at = page.find("id=\"f-income\"").unwrap();
        let next = &page[at..at + 400];
        assert!(
            next.contains("field-error") && next.contains("月收入应为金额"),
            "{next}"
        );
        let (status, page) = html(s.post(&app, &path, &form("", "")).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let at = page.find("id=\"f-name\"").unwrap();
        assert!(
            page[at..at + 300].contains("field-error"),
            "name error by the name field"
        );
        let r = s.post(&app, &path, &form("甲一新", "9000.5")).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            scalar(&app, "SELECT name FROM members WHERE id = $1", own).await,
            "甲一新"
        );
        let changed = app.audit_details("member.update").await;
        assert_eq!(changed[0]["changed"], json!(["name", "monthly_income_fen"]));

        // The org page shows the secretary's subtree only; audit and accounts are admins' pages.
        let (_, page) = html(s.get(&app, "/admin/org").await).await;
        assert!(page.contains("一支部") && !page.contains("二支部"));
        assert_eq!(
            s.get(&app, "/admin/audit").await.status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            s.get(&app, "/admin/users").await.status(),
            StatusCode::FORBIDDEN
        );
        let editor = {
            app.user_token("ed-one", "editor", None).await;
            app.console_login("ed-one", "ed-one-password-1").await
        };
        assert_eq!(
            editor.get(&app, "/admin/members").await.status(),
            StatusCode::FORBIDDEN
        );
    });
}

#[backend_test]
async fn a_member_is_transferred_unbound_and_removed_and_an_arrival_is_registered() {
    each_backend!(|app| {
        two_branches(&app).await;
        let c = admin(&app).await;
        let id = app.member_id("甲一").await;
        let path = format!("/admin/members/{id}");
        let two = app.org_unit_id("二支部").await.to_string();

        let r = c
            .post(
                &app,
                &format!("{path}/transfer"),
                &[("kind", "within"), ("to_org_unit_id", &two)],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            scalar(
                &app,
                "SELECT CAST(org_unit_id AS TEXT) FROM members WHERE id = $1",
                id
            )
            .await,
            two
        );
        // Out: a bad month is shown by its field; then the letter is issued and linked.
        let out = |month: &'static str| {
            vec![
                ("kind", "out"),
                ("destination", "某某大学党委"),
                ("dues_paid_until", month),
                ("validity_days", ""),
            ]
        };
        let (status, page) = html(
            c.post(&app, &format!("{path}/transfer"), &out("2026/13"))
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let at = page.find("id=\"o-dues\"").unwrap();
        assert!(
            page[at..at + 400].contains("field-error"),
            "{}",
            &page[at..at + 400]
        );
        let r = c
            .post(&app, &format!("{path}/transfer"), &out("2026-10"))
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert!(flash(&r).contains("介绍信"));
        let (_, page) = html(c.get(&app, &path).await).await;
        assert!(
            page.contains("/admin/members/transfers/") && page.contains("/letter"),
            "{page}"
        );
        let (_, page) = html(c.get(&app, "/admin/members/transfers?status=issued").await).await;
        assert!(page.contains("甲一") && page.contains("value=\"returned\""));
        let tid: i64 = {
            use sqlx::Row;
            sqlx::query("SELECT id FROM member_transfers WHERE direction = 'out'")
                .fetch_one(app.state.db.pool())
                .await
                .unwrap()
                .get(0)
        };
        let letter = c
            .get(&app, &format!("/admin/members/transfers/{tid}/letter"))
            .await;
        assert_eq!(letter.status(), StatusCode::OK);
        // A returned letter needs a reason; then the member is back on the roster.
        let close = format!("/admin/members/transfers/{tid}/close");
        let r = c
            .post(&app, &close, &[("outcome", "returned"), ("reason", "")])
            .await;
        assert!(flash(&r).starts_with("error:"));
        let r = c
            .post(
                &app,
                &close,
                &[("outcome", "returned"), ("reason", "对方未接收")],
            )
            .await;
        assert!(flash(&r).starts_with("ok:"), "{}", flash(&r));
        assert_eq!(
            scalar(&app, "SELECT status FROM members WHERE id = $1", id).await,
            "active"
        );

        // Unbind the mini-program, with the form shown only while bound.
        app.mini_bind("console_member", "甲一", "13587650001").await;
        let (_, page) = html(c.get(&app, &path).await).await;
        assert!(page.contains("解除小程序绑定"));
        let r = c
            .post(&app, &format!("{path}/unbind"), &[("app", "mp")])
            .await;
        assert!(flash(&r).starts_with("ok:"), "{}", flash(&r));
        assert_eq!(app.audit_count("member.unbind").await, 1);
        let r = c
            .post(&app, &format!("{path}/unbind"), &[("app", "mp")])
            .await;
        assert!(flash(&r).starts_with("error:"), "not bound any more");

        let r = c.post(&app, &format!("{path}/delete"), &[]).await;
        assert_eq!(r.headers()[header::LOCATION], "/admin/members");
        assert_eq!(
            scalar(&app, "SELECT status FROM members WHERE id = $1", id).await,
            "left"
        );

        // An arrival: field errors by their fields, then a new roster entry.
        let one = app.org_unit_id("一支部").await.to_string();
        let arrival = |phone: &'static str| {
            vec![
                ("name", "丙三"),
                ("phone", phone),
                ("category", "student"),
                ("org_unit_id", one.as_str()),
                ("party_status", "full"),
                ("origin", "外校党委"),
                ("letter_no", "2026-77"),
            ]
        };
        let (status, page) = html(
            c.post(&app, "/admin/members/transfers/incoming", &arrival("123"))
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let at = page.find("id=\"i-phone\"").unwrap();
        assert!(page[at..at + 300].contains("field-error"));
        let r = c
            .post(
                &app,
                "/admin/members/transfers/incoming",
                &arrival("13587650009"),
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{}", flash(&r));
        assert_eq!(app.audit_count("member.transfer.in").await, 1);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM members WHERE name = '丙三'")
                .await,
            1
        );
    });
}

const CSV_HEAD: &str = "name,phone,category,monthly_income_fen,org_unit\n";

#[backend_test]
async fn a_csv_import_with_a_bad_row_shows_that_row_and_writes_nothing() {
    each_backend!(|app| {
        app.create_org_unit("导入支部", None).await;
        let c = admin(&app).await;
        let bad = format!(
            "{CSV_HEAD}导入甲,13587651001,employed,800000,导入支部\n导入乙,13587,employed,700000,导入支部\n导入丙,13587651003,student,,导入支部\n"
        );
        // Without the CSRF token: refused, nothing written.
        let r = c
            .post_raw(&app, "/admin/members/import", &[("csv", &bad)])
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let (status, page) = html(
            c.post(&app, "/admin/members/import", &[("csv", &bad)])
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let table = &page[page.find("id=\"import-errors\"").expect("error table")..];
        assert!(
            table.contains("<td>2</td>") && table.contains("手机号"),
            "{table}"
        );
        assert!(table.contains("phone must be an 11-digit mainland mobile number"));
        assert!(
            !table.contains("<td>1</td>") && !table.contains("<td>3</td>"),
            "only row 2"
        );
        assert!(page.contains("1 行有误，未导入任何记录"));
        assert!(
            page.contains("导入丙"),
            "the CSV stays in the form to be corrected"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM members").await,
            0,
            "all or nothing"
        );
        assert_eq!(app.audit_count("member.import").await, 0);

        let good = bad.replace("13587,", "13587651002,");
        let (status, page) = html(
            c.post(&app, "/admin/members/import", &[("csv", &good)])
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("新增 3 人"), "{page}");
        assert_eq!(app.count("SELECT COUNT(*) FROM members").await, 3);
        // Not a CSV at all: the reason, nothing written.
        let (status, page) =
            html(c.post(&app, "/admin/members/import", &[("csv", "")]).await).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(page.contains("flash error"));
        // A secretary cannot import into another branch (the API's rule, reported on the row).
        app.create_org_unit("别的支部", None).await;
        let s = secretary(&app, "sec-imp", "导入支部").await;
        let other = format!("{CSV_HEAD}外人,13587651009,student,,别的支部\n");
        let (status, page) = html(
            s.post(&app, "/admin/members/import", &[("csv", &other)])
                .await,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(page.contains("org_unit is outside your org units"));
        assert_eq!(app.count("SELECT COUNT(*) FROM members").await, 3);
    });
}

#[backend_test]
async fn the_org_tree_is_edited_in_the_console_and_a_unit_with_members_is_not_deleted() {
    each_backend!(|app| {
        let c = admin(&app).await;
        let new = |name: &'static str, parent: String, kind: &'static str| {
            let c = &c;
            let app = &app;
            async move {
                c.post(
                    app,
                    "/admin/org/new",
                    &[("name", name), ("parent_id", &parent), ("kind", kind)],
                )
                .await
            }
        };
        let r = new("校党委", String::new(), "").await;
        assert!(flash(&r).starts_with("ok:"), "{}", flash(&r));
        let top = app.org_unit_id("校党委").await;
        new("一支部", top.to_string(), "").await;
        new("二支部", top.to_string(), "branch").await;
        let one = app.org_unit_id("一支部").await;
        let r = new("学习小组", one.to_string(), "").await;
        assert!(flash(&r).starts_with("ok:"));
        let group = app.org_unit_id("学习小组").await;
        assert_eq!(
            scalar(&app, "SELECT kind FROM org_units WHERE id = $1", group).await,
            "group"
        );
        // A Party group cannot sit at the top: refused with the rule, nothing created.
        let r = new("孤立小组", String::new(), "group").await;
        assert!(flash(&r).starts_with("error:"));
        assert_eq!(
            app.count("SELECT COUNT(*) FROM org_units WHERE name = '孤立小组'")
                .await,
            0
        );

        let two = app.org_unit_id("二支部").await;
        let r = c
            .post(
                &app,
                &format!("/admin/org/{two}/rename"),
                &[("name", "第二支部"), ("kind", "branch")],
            )
            .await;
        assert!(flash(&r).starts_with("ok:"));
        assert_eq!(
            scalar(&app, "SELECT name FROM org_units WHERE id = $1", two).await,
            "第二支部"
        );
        let r = c
            .post(
                &app,
                &format!("/admin/org/{group}/move"),
                &[("parent_id", &two.to_string())],
            )
            .await;
        assert!(flash(&r).starts_with("ok:"), "{}", flash(&r));
        assert_eq!(
            scalar(
                &app,
                "SELECT CAST(parent_id AS TEXT) FROM org_units WHERE id = $1",
                group
            )
            .await,
            two.to_string()
        );
        // A move into its own subtree is refused.
        let r = c
            .post(
                &app,
                &format!("/admin/org/{top}/move"),
                &[("parent_id", &two.to_string())],
            )
            .await;
        assert!(flash(&r).starts_with("error:"));

        let (_, page) = html(c.get(&app, "/admin/org").await).await;
        assert!(page.contains("第二支部") && page.contains("学习小组") && page.contains("党小组"));

        // Empty: deleted. With members (or sub-units): refused, still there.
        let r = c.post(&app, &format!("/admin/org/{one}/delete"), &[]).await;
        assert!(flash(&r).starts_with("ok:"), "{}", flash(&r));
        assert_eq!(
            app.count("SELECT COUNT(*) FROM org_units WHERE name = '一支部'")
                .await,
            0
        );
        app.import_roster(json!([{"name": "组员", "phone": "13587652001", "category": "student", "org_unit": "学习小组"}]))
            .await;
        let r = c
            .post(&app, &format!("/admin/org/{group}/delete"), &[])
            .await;
        assert!(flash(&r).starts_with("error:"), "{}", flash(&r));
        let r = c.post(&app, &format!("/admin/org/{two}/delete"), &[]).await;
        assert!(flash(&r).starts_with("error:"));
        assert_eq!(
            app.count("SELECT COUNT(*) FROM org_units WHERE name IN ('学习小组', '第二支部')")
                .await,
            2
        );
        let r = c
            .post_raw(&app, &format!("/admin/org/{group}/delete"), &[])
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "no CSRF token");
    });
}

#[backend_test]
async fn the_audit_page_filters_by_action_actor_and_date() {
    each_backend!(|app| {
        two_branches(&app).await;
        let c = admin(&app).await;
        let id = app.member_id("乙二").await;
        c.post(&app, &format!("/admin/members/{id}/reveal"), &[])
            .await;
        let s = secretary(&app, "sec-audit", "一支部").await;
        s.get(&app, "/admin/members").await;

        let (status, page) = html(c.get(&app, "/admin/audit").await).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            page.contains("<code>member.import</code>")
                && page.contains("<code>member.reveal</code>")
        );
        let (_, page) = html(c.get(&app, "/admin/audit?action=member.reveal").await).await;
        assert!(
            page.contains("<code>member.reveal</code>")
                && !page.contains("<code>member.import</code>")
        );
        assert!(page.contains(&format!("member #{id}")));
        let (_, page) = html(
            c.get(&app, "/admin/audit?action=member.&actor=sec-audit")
                .await,
        )
        .await;
        assert!(
            page.contains("<code>member.list</code>")
                && !page.contains("<code>member.reveal</code>")
        );
        let (_, page) = html(
            c.get(&app, "/admin/audit?target_type=member&target_id=999999")
                .await,
        )
        .await;
        assert!(page.contains("没有符合条件的记录"));
        let today = time::OffsetDateTime::now_utc()
            .to_offset(time::macros::offset!(+8))
            .date();
        let (_, page) = html(
            c.get(
                &app,
                &format!("/admin/audit?action=member.reveal&since={today}&until={today}"),
            )
            .await,
        )
        .await;
        assert!(
            page.contains("<code>member.reveal</code>"),
            "today, both ends included"
        );
        let (_, page) = html(c.get(&app, "/admin/audit?since=2099-01-01").await).await;
        assert!(page.contains("没有符合条件的记录"));
        let (_, page) = html(c.get(&app, "/admin/audit?since=tomorrow").await).await;
        assert!(page.contains("开始日期格式"));
    });
}

#[backend_test]
async fn accounts_are_created_changed_and_disabled_with_the_api_rules() {
    each_backend!(|app| {
        app.create_org_unit("账号支部", None).await;
        let c = admin(&app).await;
        let (_, page) = html(c.get(&app, "/admin/users").await).await;
        assert!(page.contains("审计") && page.contains("账号管理"));
        // A secretary needs an org unit: the error is next to the field.
        let (status, page) = html(
            c.post(
                &app,
                "/admin/users/new",
                &[
                    ("username", "new-sec"),
                    ("role", "secretary"),
                    ("org_unit", ""),
                    ("password", ""),
                ],
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        let at = page.find("id=\"u-unit\"").unwrap();
        assert!(page[at..]
            .split("</div>")
            .next()
            .unwrap()
            .contains("field-error"));
        assert_eq!(
            app.count("SELECT COUNT(*) FROM admin_users WHERE username = 'new-sec'")
                .await,
            0
        );
        // Created with a generated password, shown once.
        let (status, page) = html(
            c.post(
                &app,
                "/admin/users/new",
                &[
                    ("username", "new-sec"),
                    ("role", "secretary"),
                    ("org_unit", "账号支部"),
                    ("password", ""),
                ],
            )
            .await,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let at = page.find("id=\"generated\"").expect("generated password");
        let pw = page[at..]
            .split("<code>")
            .nth(1)
            .unwrap()
            .split("</code>")
            .next()
            .unwrap()
            .to_owned();
        let sec = app.console_login("new-sec", &pw).await;
        let (_, page) = html(c.get(&app, "/admin/users").await).await;
        assert!(!page.contains(&pw), "shown only once");

        let uid: i64 = {
            use sqlx::Row;
            sqlx::query("SELECT id FROM admin_users WHERE username = 'new-sec'")
                .fetch_one(app.state.db.pool())
                .await
                .unwrap()
                .get(0)
        };
        let r = c
            .post(
                &app,
                &format!("/admin/users/{uid}/role"),
                &[("role", "secretary"), ("org_unit", "")],
            )
            .await;
        assert!(flash(&r).starts_with("error:"));
        let r = c
            .post(
                &app,
                &format!("/admin/users/{uid}/role"),
                &[("role", "editor"), ("org_unit", "")],
            )
            .await;
        assert!(flash(&r).starts_with("ok:"), "{}", flash(&r));
        assert_eq!(
            scalar(&app, "SELECT role FROM admin_users WHERE id = $1", uid).await,
            "editor"
        );
        assert_eq!(app.audit_count("admin_user.update").await, 1);
        let r = sec.get(&app, "/admin/").await;
        assert_eq!(
            r.status(),
            StatusCode::SEE_OTHER,
            "the role change ended the session"
        );

        let sec = app.console_login("new-sec", &pw).await;
        let r = c
            .post(&app, &format!("/admin/users/{uid}/disable"), &[])
            .await;
        assert!(flash(&r).starts_with("ok:"));
        assert_eq!(
            scalar(&app, "SELECT status FROM admin_users WHERE id = $1", uid).await,
            "disabled"
        );
        assert_eq!(
            sec.get(&app, "/admin/").await.status(),
            StatusCode::SEE_OTHER
        );
        // Nobody disables or re-roles themselves.
        let me: i64 = {
            use sqlx::Row;
            sqlx::query("SELECT id FROM admin_users WHERE username = $1")
                .bind(ADMIN_USER)
                .fetch_one(app.state.db.pool())
                .await
                .unwrap()
                .get(0)
        };
        let r = c
            .post(&app, &format!("/admin/users/{me}/disable"), &[])
            .await;
        assert!(flash(&r).starts_with("error:"));
        let r = c
            .post(
                &app,
                &format!("/admin/users/{me}/role"),
                &[("role", "editor")],
            )
            .await;
        assert!(flash(&r).starts_with("error:"));
        assert_eq!(
            scalar(&app, "SELECT role FROM admin_users WHERE id = $1", me).await,
            "admin"
        );
        // The same rule through the API.
        let t = app.admin_token().await;
        let (status, _) = app
            .json_call(
                Some(&t),
                reqwest::Method::PATCH,
                &format!("/api/admin/users/{uid}"),
                Some(json!({"role": "secretary", "org_unit": "账号支部"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            scalar(&app, "SELECT role FROM admin_users WHERE id = $1", uid).await,
            "secretary"
        );
    });
}

#[backend_test]
async fn every_new_page_needs_a_session_and_puts_the_csrf_token_in_every_form() {
    each_backend!(|app| {
        two_branches(&app).await;
        let c = admin(&app).await;
        let id = app.member_id("甲一").await;
        let member = format!("/admin/members/{id}");
        let pages = [
            "/admin/members",
            member.as_str(),
            "/admin/members/import",
            "/admin/members/transfers",
            "/admin/members/transfers/incoming",
            "/admin/org",
            "/admin/audit",
            "/admin/users",
        ];
        for path in pages {
            let r = c.http.get(app.url(path)).send().await.unwrap();
            assert_eq!(
                r.status(),
                StatusCode::SEE_OTHER,
                "{path} without a session"
            );
            let (status, page) = html(c.get(&app, path).await).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert!(page.contains("<nav class=\"main\">"), "{path}");
            let forms = page.matches("<form method=\"post\"").count();
            let tokens = page
                .matches(&format!("name=\"csrf\" value=\"{}\"", c.csrf))
                .count();
            assert!(
                forms > 0 && tokens >= forms,
                "{path}: {forms} forms, {tokens} tokens"
            );
        }
    });
}
