//! Statistics (`GET /api/admin/stats`, JSON and CSV, `/admin/stats`) from a known fixture, and the
//! public portal (`/portal`).
//!
//! The fixture, in the month before this one (M) unless said otherwise:
//! - org units 一支部 (members A0..A2) and 二支部 (B0..B2) under 党委;
//! - dues bills of M: A0 paid 10.00, A1 paid 15.00, A2 unpaid 20.00; B0 paid 3.00, B1 unpaid
//!   4.00, B2 exempt;
//! - a 支部党员大会 in M: A0 present, A1 late, A2 on leave, B0 absent, B1 present (and an ordinary
//!   activity with attendance, which is not a 三会一课 and does not count);
//! - this month, through the webhook: f1, f2, f3 follow, f2 unfollows;
//! - a push in M: 3 sent, 1 failed, 1 skipped;
//! - submissions in M: approved after 60 s, rejected after 180 s, one pending; board posts in
//!   M: approved after 120 s (answered), one pending.

use dangjian_test_macros::backend_test;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::each_backend;
use crate::helpers::TestApp;
use dangjian::stats::rules::Month;

const DAY: i64 = 86_400_000;

struct Fixture {
    month: String,
    this_month: String,
    period: String,
    a_id: i64,
    b_id: i64,
    members: Vec<(i64, String)>,
    approved_post: &'static str,
    answer: &'static str,
    pending_post: &'static str,
    poster: &'static str,
}

async fn exec(app: &TestApp, sql: &str, args: &[Value]) -> i64 {
    let mut q = sqlx::query(sql);
    for a in args {
        q = match a {
            Value::Number(n) => q.bind(n.as_i64().unwrap()),
            Value::String(s) => q.bind(s.clone()),
            Value::Null => q.bind(Option::<i64>::None),
            other => panic!("bind {other}"),
        };
    }
    if sql.contains("RETURNING") {
        use sqlx::Row;
        q.fetch_one(app.state.db.pool()).await.unwrap().get(0)
    } else {
        q.execute(app.state.db.pool()).await.unwrap();
        0
    }
}

/// A bill of `month`; paid bills get the order and the credited payment the dues feature records.
async fn bill(app: &TestApp, member: i64, unit: i64, month: &str, fen: i64, status: &str, at: i64) {
    let paid = status == "paid";
    let bill = exec(
        app,
        "INSERT INTO dues_bills (member_id, month, org_unit_id, amount_fen, standard_fen, rule, standard_rule, \
         status, paid_fen, paid_at, created_at, updated_at) VALUES ($1, $2, $3, $4, $4, 'employed', 'employed', $5, $6, $7, $8, $8) RETURNING id",
        &[json!(member), json!(month), json!(unit), json!(fen), json!(status),
          if paid { json!(fen) } else { Value::Null }, if paid { json!(at) } else { Value::Null }, json!(at)],
    )
    .await;
    if !paid {
        return;
    }
    let no = format!("DJ{bill:08}");
    let order = exec(
        app,
        "INSERT INTO dues_orders (bill_id, out_trade_no, amount_fen, payer_openid, description, notify_url, \
         time_expire, status, next_check_at, created_at, updated_at) \
         VALUES ($1, $2, $3, 'o_payer', '党费', 'http://x/pay/notify', $4, 'paid', $4, $4, $4) RETURNING id",
        &[json!(bill), json!(no), json!(fen), json!(at)],
    )
    .await;
    exec(
        app,
        "INSERT INTO dues_payments (bill_id, order_id, out_trade_no, transaction_id, amount_fen, bill_month, \
         org_unit_id, paid_at, source, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'notification', $8)",
        &[json!(bill), json!(order), json!(no), json!(format!("T{no}")), json!(fen), json!(month), json!(unit), json!(at)],
    )
    .await;
}

async fn meeting(app: &TestApp, kind: &str, at: i64, marks: &[(i64, &str)]) {
    let id = exec(
        app,
        "INSERT INTO activities (title, kind, capacity, starts_at, signup_opens_at, signup_closes_at, \
         reminded_at, created_at, updated_at) VALUES ($1, $2, 100, $3, $4, $5, $3, $4, $4) RETURNING id",
        &[json!(format!("{kind} 会议")), json!(kind), json!(at), json!(at - 2 * DAY), json!(at - DAY)],
    )
    .await;
    for (member, status) in marks {
        let leave = (*status == "leave").then_some("sick");
        exec(
            app,
            "INSERT INTO activity_attendance (activity_id, member_id, status, leave_kind, source, updated_at) \
             VALUES ($1, $2, $3, $4, 'manual', $5)",
            &[json!(id), json!(member), json!(status), json!(leave), json!(at)],
        )
        .await;
    }
}

async fn moderated(
    app: &TestApp,
    table: &str,
    content: &str,
    status: &str,
    at: i64,
    wait_s: Option<i64>,
) {
    let decided = wait_s.map(|w| json!(at + w * 1000)).unwrap_or(Value::Null);
    let sql = if table == "submissions" {
        "INSERT INTO submissions (openid, source, title, content, status, decided_at, created_at, updated_at) \
         VALUES ($1, 'mp', $2, $2, $3, $4, $5, $5)"
    } else {
        "INSERT INTO board_posts (openid, source, content, status, decided_at, created_at, updated_at) \
         VALUES ($1, 'mp', $2, $3, $4, $5, $5)"
    };
    exec(
        app,
        sql,
        &[
            json!("o_poster_openid"),
            json!(content),
            json!(status),
            decided,
            json!(at),
        ],
    )
    .await;
}

async fn fixture(app: &TestApp) -> Fixture {
    let now = app.state.clock.unix_ms();
    let this = Month::of_unix_ms(now);
    let m = this.plus(-1);
    let t0 = m.start_ms() + 3 * DAY;
    app.create_org_unit("党委", None).await;
    let a_id = app.create_org_unit("一支部", Some("党委")).await;
    let b_id = app.create_org_unit("二支部", Some("党委")).await;
    let a = app.seed_bound_members("A", 3, a_id).await;
    let b = app.seed_bound_members("B", 3, b_id).await;
    let month = m.to_string();
    for (member, unit, fen, status) in [
        (a[0].0, a_id, 1000, "paid"),
        (a[1].0, a_id, 1500, "paid"),
        (a[2].0, a_id, 2000, "unpaid"),
        (b[0].0, b_id, 300, "paid"),
        (b[1].0, b_id, 400, "unpaid"),
        (b[2].0, b_id, 0, "exempt"),
    ] {
        bill(app, member, unit, &month, fen, status, t0).await;
    }
    meeting(
        app,
        "branch_general_meeting",
        t0,
        &[
            (a[0].0, "present"),
            (a[1].0, "late"),
            (a[2].0, "leave"),
            (b[0].0, "absent"),
            (b[1].0, "present"),
        ],
    )
    .await;
    meeting(
        app,
        "activity",
        t0,
        &[(a[2].0, "present"), (b[0].0, "present")],
    )
    .await;

    for f in ["f1", "f2", "f3"] {
        app.account_event(
            &format!("o_stats_{f}"),
            "<Event><![CDATA[subscribe]]></Event><EventKey><![CDATA[]]></EventKey>",
        )
        .await;
    }
    app.account_event(
        "o_stats_f2",
        "<Event><![CDATA[unsubscribe]]></Event><EventKey><![CDATA[]]></EventKey>",
    )
    .await;

    let push = exec(
        app,
        "INSERT INTO pushes (channel, audience_kind, article_ids, status, scheduled_at, total, created_at, updated_at) \
         VALUES ('template', 'all', '[1]', 'completed', $1, 5, $1, $1) RETURNING id",
        &[json!(t0)],
    )
    .await;
    for (i, status) in ["sent", "sent", "sent", "failed", "skipped"]
        .iter()
        .enumerate()
    {
        let openid = (*status != "skipped").then(|| format!("o_push_{i}"));
        exec(
            app,
            "INSERT INTO push_deliveries (push_id, openid, status, updated_at) VALUES ($1, $2, $3, $4)",
            &[json!(push), json!(openid), json!(status), json!(t0)],
        )
        .await;
    }

    moderated(app, "submissions", "投稿一", "approved", t0, Some(60)).await;
    moderated(
        app,
        "submissions",
        "投稿二",
        "rejected",
        t0 + 1000,
        Some(180),
    )
    .await;
    moderated(app, "submissions", "投稿三", "pending", t0 + 2000, None).await;
    let fx = Fixture {
        period: format!("from={month}&to={this}"),
        month,
        this_month: this.to_string(),
        a_id,
        b_id,
        members: a.into_iter().chain(b).collect(),
        approved_post: "食堂周末几点开门？",
        answer: "周末七点开门。",
        pending_post: "这条留言还没有审核",
        poster: "o_poster_openid",
    };
    moderated(
        app,
        "board_posts",
        fx.approved_post,
        "approved",
        t0,
        Some(120),
    )
    .await;
    exec(
        app,
        "UPDATE board_posts SET answer = $1, answered_by = 'editor', answered_at = $2 WHERE content = $3",
        &[json!(fx.answer), json!(t0 + 200_000), json!(fx.approved_post)],
    )
    .await;
    moderated(
        app,
        "board_posts",
        fx.pending_post,
        "pending",
        t0 + 1000,
        None,
    )
    .await;
    fx
}

fn find<'a>(rows: &'a Value, key: &str, want: &Value) -> &'a Value {
    rows.as_array()
        .unwrap()
        .iter()
        .find(|r| &r[key] == want)
        .unwrap_or_else(|| panic!("no row with {key} = {want} in {rows}"))
}

fn pick(row: &Value, fields: &[&str]) -> Value {
    Value::Array(fields.iter().map(|f| row[*f].clone()).collect())
}

async fn csv_rows(
    app: &TestApp,
    token: &str,
    query: &str,
) -> Vec<std::collections::HashMap<String, String>> {
    let resp = app
        .adm_req(
            Method::GET,
            &format!("/api/admin/stats?format=csv&{query}"),
            token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "{query}");
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let body = resp.bytes().await.unwrap();
    let body = body.strip_prefix(b"\xEF\xBB\xBF").expect("a BOM");
    let mut r = csv::Reader::from_reader(body);
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers
                .iter()
                .map(String::from)
                .zip(rec.iter().map(String::from))
                .collect()
        })
        .collect()
}

#[backend_test]
async fn stats_of_a_known_fixture_equal_the_hand_computed_figures() {
    each_backend!(|app| {
        let fx = fixture(&app).await;
        let admin = app.admin_token().await;
        let (status, r) = app
            .admin_get(
                &admin,
                &format!("/api/admin/stats?{}&members=true", fx.period),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{r}");
        assert_eq!(
            (r["from"].as_str(), r["to"].as_str()),
            (Some(fx.month.as_str()), Some(fx.this_month.as_str()))
        );

        // Dues: 一支部 2 of 3 paid (25.00 of 45.00); 二支部 1 of 2 (the exempt bill is not owed).
        let dues = &r["dues"];
        let fields = [
            "bills", "paid", "unpaid", "exempt", "due_fen", "paid_fen", "rate",
        ];
        let a = find(&dues["by_unit_month"], "org_unit", &json!("一支部"));
        assert_eq!(a["month"], json!(fx.month));
        assert_eq!(pick(a, &fields), json!([3, 2, 1, 0, 4500, 2500, 0.6667]));
        let b = find(&dues["by_unit_month"], "org_unit", &json!("二支部"));
        assert_eq!(pick(b, &fields), json!([2, 1, 1, 1, 700, 300, 0.5]));
        let month = find(&dues["by_month"], "month", &json!(fx.month));
        assert_eq!(pick(month, &fields), json!([5, 3, 2, 1, 5200, 2800, 0.6]));
        let empty = find(&dues["by_month"], "month", &json!(fx.this_month));
        assert_eq!(pick(empty, &["bills", "rate"]), json!([0, null]));

        // Attendance of the 三会一课 only: 一支部 present + late of 3; 二支部 1 of 2.
        let att = &r["attendance"];
        let fields = [
            "meetings", "expected", "attended", "present", "late", "leave", "absent", "rate",
        ];
        let a = find(&att["by_unit"], "org_unit", &json!("一支部"));
        assert_eq!(pick(a, &fields), json!([1, 3, 2, 1, 1, 1, 0, 0.6667]));
        let b = find(&att["by_unit"], "org_unit", &json!("二支部"));
        assert_eq!(pick(b, &fields), json!([1, 2, 1, 1, 0, 0, 1, 0.5]));
        let month = find(&att["by_month"], "month", &json!(fx.month));
        assert_eq!(
            pick(month, &["expected", "attended", "rate"]),
            json!([5, 3, 0.6])
        );
        let members = att["members"].as_array().unwrap();
        assert_eq!(members.len(), 5, "B2 was not expected: {members:?}");
        let a2 = find(&att["members"], "member_id", &json!(fx.members[2].0));
        assert_eq!(
            pick(a2, &["name", "org_unit", "expected", "leave", "rate"]),
            json!(["A2", "一支部", 1, 1, 0.0])
        );

        // Followers: today 3 followed, 1 unfollowed; 2 follow now.
        let fol = &r["followers"];
        assert_eq!(fol["subscribed_now"], 2);
        let today = fol["daily"].as_array().unwrap().last().unwrap();
        assert_eq!(
            pick(today, &["subscribed", "unsubscribed", "net"]),
            json!([3, 1, 2])
        );
        let this = find(&fol["monthly"], "month", &json!(fx.this_month));
        assert_eq!(
            pick(this, &["subscribed", "unsubscribed", "net"]),
            json!([3, 1, 2])
        );
        let before = find(&fol["monthly"], "month", &json!(fx.month));
        assert_eq!(pick(before, &["subscribed", "unsubscribed"]), json!([0, 0]));

        // Pushes: 3 of the 4 attempted sent, 1 failed; the skipped row is not attempted.
        let fields = [
            "total",
            "sent",
            "failed",
            "skipped",
            "delivery_rate",
            "failure_rate",
        ];
        let p = &r["pushes"]["pushes"][0];
        assert_eq!(pick(p, &fields), json!([5, 3, 1, 1, 0.75, 0.25]));
        let pm = find(&r["pushes"]["monthly"], "month", &json!(fx.month));
        assert_eq!(pick(pm, &fields), json!([5, 3, 1, 1, 0.75, 0.25]));

        // Moderation: medians of the decided ones (60 s, 180 s → 120 s; 120 s).
        let fields = [
            "count",
            "approved",
            "rejected",
            "pending",
            "median_decision_seconds",
        ];
        let totals = &r["moderation"]["totals"];
        assert_eq!(
            pick(find(totals, "kind", &json!("submissions")), &fields),
            json!([3, 1, 1, 1, 120])
        );
        assert_eq!(
            pick(find(totals, "kind", &json!("board_posts")), &fields),
            json!([2, 1, 0, 1, 120])
        );

        // The CSV tables carry the same figures.
        let rows = csv_rows(&app, &admin, &format!("section=dues&{}", fx.period)).await;
        let a = rows.iter().find(|r| r["org_unit"] == "一支部").unwrap();
        assert_eq!(
            ["bills", "paid", "unpaid", "exempt", "due_fen", "paid_fen", "rate"]
                .map(|f| a[f].as_str()),
            ["3", "2", "1", "0", "4500", "2500", "0.6667"]
        );
        assert_eq!(rows.len(), 2);
        let rows = csv_rows(&app, &admin, &format!("section=attendance&{}", fx.period)).await;
        let b = rows.iter().find(|r| r["org_unit"] == "二支部").unwrap();
        assert_eq!(
            ["expected", "attended", "rate"].map(|f| b[f].as_str()),
            ["2", "1", "0.5000"]
        );
        let rows = csv_rows(
            &app,
            &admin,
            &format!("section=attendance_members&{}", fx.period),
        )
        .await;
        assert_eq!(rows.len(), 5);
        let rows = csv_rows(&app, &admin, &format!("section=followers&{}", fx.period)).await;
        let last = rows.last().unwrap();
        assert_eq!(
            ["subscribed", "unsubscribed", "net"].map(|f| last[f].as_str()),
            ["3", "1", "2"]
        );
        let rows = csv_rows(&app, &admin, &format!("section=pushes&{}", fx.period)).await;
        assert_eq!(
            ["sent", "failed", "delivery_rate", "failure_rate"].map(|f| rows[0][f].as_str()),
            ["3", "1", "0.7500", "0.2500"]
        );
        let rows = csv_rows(&app, &admin, &format!("section=moderation&{}", fx.period)).await;
        let sub = rows
            .iter()
            .find(|r| r["kind"] == "submissions" && r["month"] == fx.month)
            .unwrap();
        assert_eq!(
            ["count", "median_decision_seconds"].map(|f| sub[f].as_str()),
            ["3", "120"]
        );
        assert_eq!(app.audit_count("stats.export").await, 6);

        // Bad input is a 4xx.
        for (q, want) in [
            ("from=2026-13", StatusCode::UNPROCESSABLE_ENTITY),
            ("from=2020-01&to=2026-01", StatusCode::UNPROCESSABLE_ENTITY),
            ("format=csv", StatusCode::UNPROCESSABLE_ENTITY),
            ("format=csv&section=nope", StatusCode::UNPROCESSABLE_ENTITY),
            ("format=xml", StatusCode::UNPROCESSABLE_ENTITY),
            ("org_unit=没有这个支部", StatusCode::NOT_FOUND),
        ] {
            let (status, body) = app
                .admin_get(&admin, &format!("/api/admin/stats?{q}"))
                .await;
            assert_eq!(status, want, "{q}: {body}");
            assert!(body["error"]["code"].is_string(), "{body}");
        }
    });
}

#[backend_test]
async fn a_secretary_sees_only_the_subtree_and_no_account_wide_sections() {
    each_backend!(|app| {
        let fx = fixture(&app).await;
        let sec = app.user_token("sec_a", "secretary", Some("一支部")).await;
        let (status, r) = app
            .admin_get(&sec, &format!("/api/admin/stats?{}", fx.period))
            .await;
        assert_eq!(status, StatusCode::OK, "{r}");
        let units: Vec<&Value> = r["dues"]["by_unit"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| &u["org_unit_id"])
            .collect();
        assert_eq!(units, [&json!(fx.a_id)]);
        let units: Vec<&Value> = r["attendance"]["by_unit"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| &u["org_unit_id"])
            .collect();
        assert_eq!(units, [&json!(fx.a_id)]);
        let month = find(&r["dues"]["by_month"], "month", &json!(fx.month));
        assert_eq!(
            pick(month, &["bills", "paid", "rate"]),
            json!([3, 2, 0.6667])
        );
        for s in ["followers", "pushes", "moderation"] {
            assert!(r[s].is_null(), "{s}: {}", r[s]);
        }
        // Another unit: refused; the CSV of a section not shown: refused.
        let (status, _) = app
            .admin_get(&sec, &format!("/api/admin/stats?org_unit={}", fx.b_id))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = app
            .admin_get(&sec, "/api/admin/stats?format=csv&section=pushes")
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let rows = csv_rows(&app, &sec, &format!("section=dues&{}", fx.period)).await;
        assert!(
            rows.iter().all(|r| r["org_unit"] == "一支部") && rows.len() == 1,
            "{rows:?}"
        );

        // The admin narrowed to 二支部 sees just that one; an editor sees no org-unit section.
        let admin = app.admin_token().await;
        let (_, r) = app
            .admin_get(
                &admin,
                &format!("/api/admin/stats?{}&org_unit=二支部", fx.period),
            )
            .await;
        assert_eq!(r["org_unit"]["id"], json!(fx.b_id));
        assert_eq!(r["dues"]["by_unit"].as_array().unwrap().len(), 1);
        let editor = app.user_token("stats_editor", "editor", None).await;
        let (_, r) = app
            .admin_get(&editor, &format!("/api/admin/stats?{}", fx.period))
            .await;
        assert!(r["dues"].is_null() && r["attendance"].is_null());
        assert_eq!(r["pushes"]["pushes"][0]["sent"], 3);
    });
}

#[backend_test]
async fn the_console_draws_the_figures_as_svg_charts() {
    each_backend!(|app| {
        let fx = fixture(&app).await;
        let console = app
            .console_login(crate::helpers::ADMIN_USER, crate::helpers::ADMIN_PASSWORD)
            .await;
        let resp = console
            .get(&app, &format!("/admin/stats?{}", fx.period))
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let html = resp.text().await.unwrap();
        assert!(html.contains("<svg class=\"chart\""), "no chart");
        assert!(
            html.contains("收缴率 一支部: 66.7%"),
            "the dues bar of 一支部"
        );
        assert!(html.contains("section=dues&amp;from="), "CSV link");
        assert!(html.contains("class=\"active\">统计</a>"));
        let resp = console.get(&app, "/admin/stats?from=bad").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.text().await.unwrap().contains("a month as YYYY-MM"));
    });
}

#[backend_test]
async fn the_portal_shows_published_articles_and_answered_posts_and_nothing_personal() {
    each_backend!(|app| {
        let fx = fixture(&app).await;
        let article = app.published_article("门户测试文章").await;
        let admin = app.admin_token().await;
        let (status, v) = app
            .admin_post(&admin, "/api/admin/articles", json!({"title": "党费收缴情况公示", "summary": "公示", "body_md": "正文", "category": "党建动态", "tags": ["党务公开"]}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        let notice = v["id"].as_i64().unwrap();
        let (status, v) = app
            .admin_post(
                &admin,
                &format!("/api/admin/articles/{notice}/publish"),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");

        let get = |path: String| {
            let http = app.http.clone();
            let url = app.url(&path);
            async move { http.get(url).send().await.unwrap() }
        };
        let resp = get("/portal".into()).await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["cache-control"], "public, max-age=60");
        assert!(resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("default-src 'none'"));
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        let index = resp.text().await.unwrap();
        assert!(
            index.contains(&format!(
                "<a class=\"t\" href=\"/articles/{article}\">门户测试文章</a>"
            )),
            "{index}"
        );
        assert!(index.contains(&format!("href=\"/articles/{notice}\">党费收缴情况公示")));
        assert!(index.contains(fx.approved_post) && index.contains(fx.answer));

        let board = get("/portal/board".into()).await.text().await.unwrap();
        let notices = get("/portal/notices".into()).await.text().await.unwrap();
        assert!(board.contains(fx.approved_post) && board.contains(fx.answer));
        assert!(notices.contains("党费收缴情况公示") && !notices.contains("门户测试文章"));
        let category = app
            .count("SELECT id FROM categories WHERE name = '党建动态'")
            .await;
        let list = get(format!("/portal/categories/{category}"))
            .await
            .text()
            .await
            .unwrap();
        assert!(list.contains("门户测试文章") && list.contains("党费收缴情况公示"));
        for page in [&index, &board, &notices, &list] {
            assert!(
                !page.contains(fx.pending_post),
                "an unapproved post is public"
            );
            assert!(!page.contains(fx.poster), "a poster's openid is public");
            assert!(!page.contains("<script"), "a script on a public page");
        }
        assert_eq!(
            get("/portal/categories/999999".into()).await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get("/portal/board?page=0".into()).await.status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
    });
}
