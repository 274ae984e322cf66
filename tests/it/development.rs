//! 发展党员: an applicant's way from application to full membership with the time rules
//! enforced, the upper committee's queue, corrections, reminders sent once, scoping and bad
//! input — on every backend.

use dangjian_test_macros::backend_test;

use std::sync::Arc;

use dangjian::platform::clock::ManualClock;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Row;

use crate::{
    admin::id_number,
    each_backend,
    helpers::{Spawn, TestApp},
};

const PDF: &[u8] = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n%%EOF\n";
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

fn at(rfc3339: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).unwrap()
}

fn spawn_with(clock: &ManualClock) -> Spawn {
    Spawn {
        clock: Some(Arc::new(clock.clone())),
        ..Default::default()
    }
}

/// The one error shape, with `code`; returns the error object.
fn assert_error(status: StatusCode, v: &Value, want: StatusCode, code: &str) -> Value {
    assert_eq!(status, want, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    assert_eq!(v.as_object().map(|o| o.len()), Some(1), "only `error`: {v}");
    v["error"].clone()
}

fn assert_rule(status: StatusCode, v: &Value, rule: &str) -> Value {
    let e = assert_error(
        status,
        v,
        StatusCode::UNPROCESSABLE_ENTITY,
        "rule_violation",
    );
    assert_eq!(e["rule"], rule, "{v}");
    e
}

/// Everything a refused request must leave as it was.
async fn snapshot(app: &TestApp) -> Vec<i64> {
    let mut out = Vec::new();
    for t in [
        "development_records",
        "development_steps",
        "development_documents",
        "development_reports",
        "development_reminders",
    ] {
        out.push(app.count(&format!("SELECT COUNT(*) FROM {t}")).await);
    }
    out.push(
        app.count("SELECT COUNT(*) FROM audit_log WHERE action LIKE 'development.%' AND action NOT IN ('development.read', 'development.list')")
            .await,
    );
    out.push(
        app.count("SELECT COUNT(*) FROM development_steps WHERE status = 'submitted'")
            .await,
    );
    out
}

struct Branches {
    admin: String,
    sec: String,
}

/// 学院党委 › 第一党支部 / 第二党支部, a secretary of 第一党支部, and 王小明 (born 2000-05-01) on
/// its roster.
async fn setup(app: &TestApp) -> Branches {
    app.create_org_unit("学院党委", None).await;
    app.create_org_unit("第一党支部", Some("学院党委")).await;
    app.create_org_unit("第二党支部", Some("学院党委")).await;
    let admin = app.admin_token().await;
    let rows = json!([
        {"name": "王小明", "phone": "13912345678", "category": "student", "org_unit": "第一党支部",
         "id_number": id_number("11010120000501123")},
    ]);
    let (s, v) = app
        .dev_call(Method::POST, "/api/admin/members", &admin, Some(rows))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let sec = app
        .user_token("sec_first", "secretary", Some("第一党支部"))
        .await;
    Branches { admin, sec }
}

async fn member_id(app: &TestApp, name: &str) -> i64 {
    sqlx::query("SELECT id FROM members WHERE name = $1")
        .bind(name)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap()
        .get(0)
}

async fn create_for_member(app: &TestApp, token: &str, member: i64) -> Value {
    let (s, v) = app
        .dev_call(
            Method::POST,
            "/api/admin/development",
            token,
            Some(json!({"member_id": member})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

async fn doc(app: &TestApp, token: &str, rec: i64, kind: &str) -> i64 {
    let (s, v) = app
        .dev_upload(token, rec, kind, "application/pdf", PDF.to_vec())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v["id"].as_i64().unwrap()
}

fn steps_path(rec: i64) -> String {
    format!("/api/admin/development/{rec}/steps")
}

async fn try_step(
    app: &TestApp,
    token: &str,
    rec: i64,
    step: &str,
    date: &str,
    extra: Value,
) -> (StatusCode, Value) {
    let mut body = json!({"step": step, "date": date});
    if let Value::Object(m) = extra {
        for (k, v) in m {
            body[k] = v;
        }
    }
    app.dev_call(Method::POST, &steps_path(rec), token, Some(body))
        .await
}

async fn step(app: &TestApp, token: &str, rec: i64, step: &str, date: &str, extra: Value) -> Value {
    let (s, v) = try_step(app, token, rec, step, date, extra).await;
    assert_eq!(s, StatusCode::CREATED, "{step} {date}: {v}");
    v
}

async fn try_approve(
    app: &TestApp,
    token: &str,
    rec: i64,
    step: &str,
    body: Value,
) -> (StatusCode, Value) {
    app.dev_call(
        Method::POST,
        &format!("/api/admin/development/{rec}/steps/{step}/approve"),
        token,
        Some(body),
    )
    .await
}

async fn approve(app: &TestApp, token: &str, rec: i64, step: &str, date: &str) -> Value {
    let (s, v) = try_approve(
        app,
        token,
        rec,
        step,
        json!({"date": date, "opinion": "同意"}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "approve {step} {date}: {v}");
    v
}

#[derive(Clone, Copy)]
enum Who {
    Sec,
    Admin,
}

enum Plan {
    Step {
        step: &'static str,
        date: &'static str,
        who: Who,
        doc: Option<&'static str>,
        extra: fn() -> Value,
    },
    Approve {
        step: &'static str,
        date: &'static str,
    },
}

fn none() -> Value {
    json!({})
}

fn s(step: &'static str, date: &'static str) -> Plan {
    Plan::Step {
        step,
        date,
        who: Who::Sec,
        doc: None,
        extra: none,
    }
}

/// The main path with dates that keep every rule (王小明: applied at 21, activist 2022-03-15,
/// development target exactly a year later, admitted by the branch on 2023-06-20).
fn main_path() -> Vec<Plan> {
    vec![
        Plan::Step {
            step: "application",
            date: "2021-09-10",
            who: Who::Sec,
            doc: Some("入党申请书"),
            extra: none,
        },
        Plan::Step {
            step: "application_talk",
            date: "2021-10-08",
            who: Who::Sec,
            doc: None,
            extra: || json!({"opinion": "入党动机端正"}),
        },
        s("activist_recommendation", "2022-03-01"),
        s("activist_determined", "2022-03-15"),
        Plan::Step {
            step: "contacts_assigned",
            date: "2022-03-20",
            who: Who::Sec,
            doc: None,
            extra: || json!({"contacts": ["王老师", "李老师"]}),
        },
        Plan::Step {
            step: "activist_assessment",
            date: "2022-09-15",
            who: Who::Sec,
            doc: None,
            extra: || json!({"opinion": "学习认真，表现良好"}),
        },
        s("activist_assessment", "2023-03-10"),
        s("target_opinions", "2023-03-12"),
        s("development_target_determined", "2023-03-15"),
        Plan::Step {
            step: "introducers_assigned",
            date: "2023-03-20",
            who: Who::Sec,
            doc: None,
            extra: || json!({"contacts": ["张书记", "赵老师"]}),
        },
        Plan::Step {
            step: "political_review",
            date: "2023-04-10",
            who: Who::Sec,
            doc: Some("政审材料"),
            extra: none,
        },
        Plan::Step {
            step: "short_training",
            date: "2023-04-17",
            who: Who::Sec,
            doc: None,
            extra: || json!({"end_date": "2023-04-19"}),
        },
        s("branch_committee_review", "2023-04-25"),
        s("public_notice", "2023-05-17"),
        s("upper_prereview", "2023-05-24"),
        Plan::Approve {
            step: "upper_prereview",
            date: "2023-05-30",
        },
        Plan::Step {
            step: "volunteer_form",
            date: "2023-06-05",
            who: Who::Sec,
            doc: Some("入党志愿书"),
            extra: none,
        },
        s("branch_meeting_admission", "2023-06-20"),
        Plan::Step {
            step: "committee_talk",
            date: "2023-07-05",
            who: Who::Admin,
            doc: None,
            extra: none,
        },
        s("committee_approval", "2023-07-10"),
        Plan::Approve {
            step: "committee_approval",
            date: "2023-08-15",
        },
    ]
}

/// Walk the main path from the start up to (and including) `until` (`step` or `approve:step`).
async fn walk(app: &TestApp, b: &Branches, rec: i64, until: &str) -> Value {
    walk_from(app, b, rec, None, until).await
}

fn entry<'a>(timeline: &'a Value, step: &str) -> Vec<&'a Value> {
    timeline["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["step"] == step)
        .collect()
}

fn deadlines<'a>(timeline: &'a Value, rule: &str) -> Vec<&'a Value> {
    timeline["deadlines"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["rule"] == rule)
        .collect()
}

async fn roster_status(app: &TestApp, member: i64) -> (String, Option<i64>) {
    let r = sqlx::query("SELECT party_status, joined_at FROM members WHERE id = $1")
        .bind(member)
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    (r.get(0), r.get(1))
}

#[backend_test]
async fn an_applicant_moves_from_application_to_full_membership_within_the_rules() {
    let clock = ManualClock::at(at("2024-07-15T10:00:00+08:00"));
    each_backend!(spawn = spawn_with(&clock), |app| {
        clock.set(at("2024-07-15T10:00:00+08:00"));
        let b = setup(&app).await;
        let member = member_id(&app, "王小明").await;
        let created = create_for_member(&app, &b.sec, member).await;
        let rec = created["record"]["id"].as_i64().unwrap();
        assert_eq!(
            created["record"]["stage"],
            json!({"key": "applicant", "name": "入党申请人"})
        );
        assert_eq!(created["record"]["org_unit"]["name"], "第一党支部");
        let id = id_number("11010120000501123");
        assert_eq!(
            created["record"]["id_number"],
            format!("1101{}{}", "*".repeat(10), &id[14..])
        );
        assert_eq!(created["record"]["next_step"]["step"], "application");
        // One record per person.
        let (st, v) = app
            .dev_call(
                Method::POST,
                "/api/admin/development",
                &b.sec,
                Some(json!({"member_id": member})),
            )
            .await;
        assert_error(st, &v, StatusCode::CONFLICT, "record_exists");

        let t = walk(&app, &b, rec, "application_talk").await;
        assert_eq!(deadlines(&t, "talk_within_one_month")[0]["status"], "met");
        let t = walk_from(&app, &b, rec, Some("application_talk"), "upper_prereview").await;
        assert_eq!(t["record"]["stage"]["key"], "target");
        let prereview = entry(&t, "upper_prereview");
        assert_eq!(prereview[0]["status"], "submitted");
        assert_eq!(prereview[0]["effective_date"], Value::Null);
        assert_eq!(t["record"]["next_step"]["awaiting_approval"], true);

        // The committee's queue; a secretary may look but not decide.
        let (st, q) = app
            .dev_call(Method::GET, "/api/admin/development/queue", &b.admin, None)
            .await;
        assert_eq!(st, StatusCode::OK, "{q}");
        assert_eq!(q["total"], 1);
        assert_eq!(q["items"][0]["step"], "upper_prereview");
        assert_eq!(q["items"][0]["name"], "王小明");
        let (st, v) = try_approve(&app, &b.sec, rec, "upper_prereview", json!({})).await;
        assert_error(st, &v, StatusCode::FORBIDDEN, "forbidden");
        // Returned with a reason, then submitted again and approved.
        let (st, v) = app
            .dev_call(
                Method::POST,
                &format!("/api/admin/development/{rec}/steps/upper_prereview/return"),
                &b.admin,
                Some(json!({"reason": "材料不全，补充政审结论"})),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let returned = entry(&v, "upper_prereview");
        assert_eq!(returned[0]["status"], "returned");
        assert_eq!(returned[0]["decision_opinion"], "材料不全，补充政审结论");
        let (st, v) = app
            .dev_call(Method::GET, "/api/admin/development/queue", &b.admin, None)
            .await;
        assert_eq!((st, v["total"].clone()), (StatusCode::OK, json!(0)));
        step(
            &app,
            &b.sec,
            rec,
            "upper_prereview",
            "2023-05-26",
            json!({}),
        )
        .await;
        walk_from(
            &app,
            &b,
            rec,
            Some("upper_prereview"),
            "branch_meeting_admission",
        )
        .await;
        // The upper committee's own steps are not the secretary's.
        let before = snapshot(&app).await;
        let (st, v) = try_step(&app, &b.sec, rec, "committee_talk", "2023-07-05", json!({})).await;
        assert_error(st, &v, StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(snapshot(&app).await, before);
        step(
            &app,
            &b.admin,
            rec,
            "committee_talk",
            "2023-07-05",
            json!({"opinion": "谈话情况良好"}),
        )
        .await;
        step(
            &app,
            &b.sec,
            rec,
            "committee_approval",
            "2023-07-10",
            json!({}),
        )
        .await;
        // Approval three months and a day after the branch meeting needs a reason; nothing moves.
        let mid = snapshot(&app).await;
        let (st, v) = try_approve(
            &app,
            &b.admin,
            rec,
            "committee_approval",
            json!({"date": "2023-09-21"}),
        )
        .await;
        let e = assert_rule(st, &v, "approval_within_three_months");
        assert_eq!(e["limit"], "2023-09-20");
        assert_eq!(snapshot(&app).await, mid);
        assert_ne!(before, mid);
        let t = approve(&app, &b.admin, rec, "committee_approval", "2023-08-15").await;
        assert_eq!(t["record"]["stage"]["key"], "probationary");
        assert_eq!(t["record"]["stage_since"], "2023-08-15");
        assert_eq!(t["record"]["probation_end"], "2024-06-20");
        assert_eq!(
            entry(&t, "committee_approval")[0]["effective_date"],
            "2023-08-15"
        );
        let (status, joined) = roster_status(&app, member).await;
        assert_eq!(status, "probationary");
        assert_eq!(
            joined
                .map(dangjian::platform::time::rfc3339_shanghai)
                .as_deref(),
            Some("2023-06-20T00:00:00+08:00"),
            "入党时间 is the branch meeting"
        );
        // Nothing is edited after approval: recording it again is refused.
        let before = snapshot(&app).await;
        let (st, v) = try_step(
            &app,
            &b.sec,
            rec,
            "committee_approval",
            "2023-08-16",
            json!({}),
        )
        .await;
        assert_error(st, &v, StatusCode::CONFLICT, "step_already_recorded");
        assert_eq!(snapshot(&app).await, before);

        step(&app, &b.sec, rec, "oath", "2023-08-20", json!({})).await;
        // Quarterly thought reports (paper ones recorded by the branch).
        for d in ["2023-09-01", "2023-12-01", "2024-03-01", "2024-06-01"] {
            let (st, v) = app
                .dev_call(
                    Method::POST,
                    &format!("/api/admin/development/{rec}/reports"),
                    &b.sec,
                    Some(json!({"content": format!("{d} 思想汇报：认真学习党章"), "date": d})),
                )
                .await;
            assert_eq!(st, StatusCode::CREATED, "{v}");
        }
        let d = doc(&app, &b.sec, rec, "转正申请书").await;
        step(
            &app,
            &b.sec,
            rec,
            "confirmation_application",
            "2024-06-10",
            json!({"documents": [d]}),
        )
        .await;
        step(
            &app,
            &b.sec,
            rec,
            "confirmation_opinions",
            "2024-06-12",
            json!({}),
        )
        .await;
        step(
            &app,
            &b.sec,
            rec,
            "confirmation_committee_review",
            "2024-06-13",
            json!({}),
        )
        .await;
        let t = step(
            &app,
            &b.sec,
            rec,
            "confirmation_notice",
            "2024-06-13",
            json!({}),
        )
        .await;
        let quarters = deadlines(&t, "probation_quarterly_report");
        assert_eq!(quarters.len(), 4, "{t}");
        assert!(
            quarters.iter().all(|q| q["status"] == "met"),
            "{quarters:?}"
        );
        // One day short of a year of probation.
        let before = snapshot(&app).await;
        let (st, v) = try_step(
            &app,
            &b.sec,
            rec,
            "confirmation_branch_meeting",
            "2024-06-19",
            json!({}),
        )
        .await;
        let e = assert_rule(st, &v, "probation_min_one_year");
        assert_eq!(e["limit"], "2024-06-20");
        assert_eq!(snapshot(&app).await, before);
        step(
            &app,
            &b.sec,
            rec,
            "confirmation_branch_meeting",
            "2024-06-20",
            json!({"opinion": "全票通过"}),
        )
        .await;
        step(
            &app,
            &b.sec,
            rec,
            "confirmation_approval",
            "2024-06-25",
            json!({}),
        )
        .await;
        let t = approve(&app, &b.admin, rec, "confirmation_approval", "2024-07-10").await;
        assert_eq!(
            t["record"]["stage"],
            json!({"key": "full", "name": "正式党员"})
        );
        assert_eq!(
            t["record"]["full_member_since"], "2024-06-20",
            "党龄 from the end of probation"
        );
        assert_eq!(t["record"]["next_step"], Value::Null);
        assert_eq!(roster_status(&app, member).await.0, "full");
        let (st, v) = try_step(
            &app,
            &b.sec,
            rec,
            "probation_education",
            "2024-07-11",
            json!({}),
        )
        .await;
        assert_error(st, &v, StatusCode::CONFLICT, "record_closed");

        // The timeline: every entry with who recorded it; the documents are listed.
        let (st, t) = app
            .dev_call(
                Method::GET,
                &format!("/api/admin/development/{rec}"),
                &b.sec,
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{t}");
        assert_eq!(t["documents"].as_array().unwrap().len(), 4);
        assert_eq!(t["reports"]["count"], 4);
        assert!(t["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["recorded_by"].is_string()));
        assert_eq!(entry(&t, "confirmation_approval")[0]["decided_by"], "admin");
        // A document comes back as uploaded.
        let doc_id = t["documents"][0]["id"].as_i64().unwrap();
        let resp = app
            .http
            .get(app.url(&format!("/api/admin/development/{rec}/documents/{doc_id}")))
            .bearer_auth(&b.sec)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["content-type"], "application/pdf");
        assert_eq!(resp.bytes().await.unwrap().as_ref(), PDF);

        // Pipeline (JSON and CSV) and statistics.
        let (st, p) = app
            .dev_call(
                Method::GET,
                "/api/admin/development/pipeline",
                &b.admin,
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{p}");
        assert_eq!(p["rows"][0]["org_unit"]["name"], "第一党支部");
        assert_eq!(p["rows"][0]["full"], 1);
        assert_eq!(p["totals"]["total"], 1);
        let resp = app
            .http
            .get(app.url("/api/admin/development/pipeline?format=csv"))
            .bearer_auth(&b.admin)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv"));
        let csv = resp.text().await.unwrap();
        let mut lines = csv.lines();
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("org_unit,applicant 入党申请人,"),
            "{csv}"
        );
        assert_eq!(lines.next(), Some("第一党支部,0,0,0,0,1,0,1"), "{csv}");
        let (st, s) = app
            .dev_call(
                Method::GET,
                "/api/admin/development/stats?year=2024",
                &b.admin,
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{s}");
        assert_eq!(s["entered_totals"]["full"], 1);
        assert_eq!(s["entered_totals"]["applicant"], 0);
        let prob = s["mean_days"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["stage"]["key"] == "probationary")
            .unwrap();
        assert_eq!(prob["records"], 1);
        assert_eq!(prob["mean_days"], 330.0, "2023-08-15 → 2024-07-10");
        let (_, s2023) = app
            .dev_call(
                Method::GET,
                "/api/admin/development/stats?year=2023",
                &b.admin,
                None,
            )
            .await;
        assert_eq!(s2023["entered_totals"]["target"], 1);
        assert_eq!(s2023["entered_totals"]["probationary"], 1);

        // Every change is in the audit log.
        let actions: Vec<String> = sqlx::query("SELECT action FROM audit_log WHERE target_type = 'development_record' AND target_id = $1")
            .bind(rec.to_string())
            .fetch_all(app.state.db.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        for a in [
            "development.create",
            "development.step.record",
            "development.step.submit",
            "development.step.approve",
            "development.step.return",
            "development.document.upload",
            "development.report.add",
            "development.stage",
            "development.document.read",
        ] {
            assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
        }
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'member.party_status'")
                .await,
            2
        );
    });
}

/// Continue the main path after `after` (from the start when None) up to `until`.
async fn walk_from(
    app: &TestApp,
    b: &Branches,
    rec: i64,
    after: Option<&str>,
    until: &str,
) -> Value {
    let mut started = after.is_none();
    for p in main_path() {
        let label = match &p {
            Plan::Step { step, .. } => step.to_string(),
            Plan::Approve { step, .. } => format!("approve:{step}"),
        };
        if !started {
            started = Some(label.as_str()) == after;
            continue;
        }
        match p {
            Plan::Step {
                step: s,
                date,
                who,
                doc: d,
                extra,
            } => {
                let token = match who {
                    Who::Sec => &b.sec,
                    Who::Admin => &b.admin,
                };
                let mut body = extra();
                if let Some(kind) = d {
                    body["documents"] = json!([doc(app, token, rec, kind).await]);
                }
                let last = step(app, token, rec, s, date, body).await;
                if label == until {
                    return last;
                }
            }
            Plan::Approve { step: s, date } => {
                let last = approve(app, &b.admin, rec, s, date).await;
                if label == until {
                    return last;
                }
            }
        }
    }
    panic!("{until} is not on the main path after {after:?}");
}

#[backend_test]
async fn a_date_breaking_a_rule_is_refused_with_the_rules_name_and_changes_nothing() {
    let clock = ManualClock::at(at("2024-07-15T10:00:00+08:00"));
    each_backend!(spawn = spawn_with(&clock), |app| {
        clock.set(at("2024-07-15T10:00:00+08:00"));
        let b = setup(&app).await;
        let member = member_id(&app, "王小明").await;
        let rec = create_for_member(&app, &b.sec, member).await["record"]["id"]
            .as_i64()
            .unwrap();
        walk(&app, &b, rec, "target_opinions").await;

        // Development target one day short of a year after becoming activist.
        let before = snapshot(&app).await;
        let (st, v) = try_step(
            &app,
            &b.sec,
            rec,
            "development_target_determined",
            "2023-03-14",
            json!({}),
        )
        .await;
        let e = assert_rule(st, &v, "activist_min_one_year");
        assert_eq!(e["limit"], "2023-03-15");
        assert!(e["message"].as_str().unwrap().contains("2023-03-15"), "{e}");
        assert_eq!(snapshot(&app).await, before);
        let (_, t) = app
            .dev_call(
                Method::GET,
                &format!("/api/admin/development/{rec}"),
                &b.sec,
                None,
            )
            .await;
        assert_eq!(t["record"]["stage"]["key"], "activist");
        assert_eq!(t["record"]["next_step"]["earliest"], "2023-03-15");

        // Exactly one year is fine; then the public notice needs five working days (Wed → Wed).
        walk_from(&app, &b, rec, Some("target_opinions"), "public_notice").await;
        let before = snapshot(&app).await;
        let (st, v) = try_step(
            &app,
            &b.sec,
            rec,
            "upper_prereview",
            "2023-05-23",
            json!({}),
        )
        .await;
        let e = assert_rule(st, &v, "public_notice_min_5_working_days");
        assert_eq!(e["limit"], "2023-05-24");
        assert_eq!(snapshot(&app).await, before);
        step(
            &app,
            &b.sec,
            rec,
            "upper_prereview",
            "2023-05-24",
            json!({}),
        )
        .await;

        // Someone off the roster: a talk later than a month after the application, an
        // application without its document, a 17-year-old applicant.
        let (st, v) = app
            .dev_call(
                Method::POST,
                "/api/admin/development",
                &b.sec,
                Some(json!({"name": "李华", "org_unit": "第一党支部", "birth_date": "2004-03-01"})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let other = v["record"]["id"].as_i64().unwrap();
        let before = snapshot(&app).await;
        let (st, v) = try_step(&app, &b.sec, other, "application", "2022-02-28", json!({})).await;
        assert_rule(st, &v, "documents_required");
        let d = doc(&app, &b.sec, other, "入党申请书").await;
        let before_doc = snapshot(&app).await;
        assert_ne!(before, before_doc);
        let (st, v) = try_step(
            &app,
            &b.sec,
            other,
            "application",
            "2022-02-28",
            json!({"documents": [d]}),
        )
        .await;
        let e = assert_rule(st, &v, "applicant_min_age_18");
        assert_eq!(e["limit"], "2022-03-01");
        assert_eq!(snapshot(&app).await, before_doc);
        step(
            &app,
            &b.sec,
            other,
            "application",
            "2022-03-01",
            json!({"documents": [d]}),
        )
        .await;
        let before = snapshot(&app).await;
        let (st, v) = try_step(
            &app,
            &b.sec,
            other,
            "application_talk",
            "2022-04-02",
            json!({}),
        )
        .await;
        let e = assert_rule(st, &v, "talk_within_one_month");
        assert_eq!(e["limit"], "2022-04-01");
        assert_eq!(snapshot(&app).await, before);
        let t = step(
            &app,
            &b.sec,
            other,
            "application_talk",
            "2022-04-01",
            json!({}),
        )
        .await;
        assert_eq!(deadlines(&t, "talk_within_one_month")[0]["status"], "met");
    });
}

#[backend_test]
async fn a_missed_quarterly_report_is_reminded_exactly_once_to_the_applicant_and_the_secretary() {
    let clock = ManualClock::at(at("2023-08-20T10:00:00+08:00"));
    each_backend!(spawn = spawn_with(&clock), |app| {
        clock.set(at("2023-08-20T10:00:00+08:00"));
        let b = setup(&app).await;
        let member = member_id(&app, "王小明").await;
        // Before the record exists: the bound member sees "not found"; unbound users "not bound".
        let mp = app.dev_mp_bound("wxm", "王小明", "13912345678").await;
        let (st, v) = app
            .dev_call(Method::GET, "/api/mp/development", &mp, None)
            .await;
        assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
        let stranger = app.dev_mp_bound_none("stranger").await;
        let (st, v) = app
            .dev_call(Method::GET, "/api/mp/development", &stranger, None)
            .await;
        assert_error(st, &v, StatusCode::FORBIDDEN, "not_bound");

        let rec = create_for_member(&app, &b.sec, member).await["record"]["id"]
            .as_i64()
            .unwrap();
        walk(&app, &b, rec, "approve:committee_approval").await;
        let (st, me) = app
            .dev_call(Method::GET, "/api/mp/development", &mp, None)
            .await;
        assert_eq!(st, StatusCode::OK, "{me}");
        assert_eq!(me["stage"]["key"], "probationary");
        assert_eq!(me["next_step"]["step"], "oath");
        assert_eq!(me["probation_end"], "2024-06-20");
        let q1 = me["deadlines"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["rule"] == "probation_quarterly_report")
            .unwrap()
            .clone();
        assert_eq!(
            (q1["due"].clone(), q1["status"].clone()),
            (json!("2023-09-20"), json!("open"))
        );

        // Q1 (2023-06-20 … 2023-09-20) passes without a report.
        clock.set(at("2023-10-05T09:00:00+08:00"));
        app.fake.clear_calls();
        let first = dangjian::development::worker::run_once(&app.state)
            .await
            .unwrap();
        let second = dangjian::development::worker::run_once(&app.state)
            .await
            .unwrap();
        assert_eq!((first.queued, first.sent), (2, 1), "{first:?}");
        assert_eq!((second.queued, second.sent), (0, 0), "{second:?}");
        let sends = app.fake.calls_to("cgi-bin/message/custom/send");
        assert_eq!(sends.len(), 1, "{sends:?}");
        assert_eq!(sends[0].body["touser"], "oa_wxm");
        let text = sends[0].body["text"]["content"].as_str().unwrap();
        assert!(
            text.contains("思想汇报") && text.contains("已逾期") && text.contains("2023-09-20"),
            "{text}"
        );
        let rows = sqlx::query(
            "SELECT audience, kind, due_on, status FROM development_reminders ORDER BY audience",
        )
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
        let rows: Vec<(String, String, String, String)> = rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect();
        assert_eq!(
            rows,
            vec![
                (
                    "applicant".into(),
                    "probation_quarterly_report:overdue".into(),
                    "2023-09-20".into(),
                    "sent".into()
                ),
                (
                    "secretary".into(),
                    "probation_quarterly_report:overdue".into(),
                    "2023-09-20".into(),
                    "sent".into()
                ),
            ]
        );
        // The secretary's inbox names the person; the overdue list has the item (a new login:
        // two months have passed).
        let b = Branches {
            admin: app.admin_token().await,
            sec: app.login("sec_first", "sec_first-password-1").await,
        };
        let (st, inbox) = app
            .dev_call(
                Method::GET,
                "/api/admin/development/reminders?audience=secretary",
                &b.sec,
                None,
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{inbox}");
        assert_eq!(inbox["total"], 1);
        assert!(
            inbox["items"][0]["message"]
                .as_str()
                .unwrap()
                .contains("王小明："),
            "{inbox}"
        );
        let (_, overdue) = app
            .dev_call(Method::GET, "/api/admin/development/overdue", &b.sec, None)
            .await;
        assert_eq!(overdue["total"], 1, "{overdue}");
        assert_eq!(overdue["items"][0]["rule"], "probation_quarterly_report");
        assert_eq!(overdue["items"][0]["days_overdue"], 15);
        assert_eq!(overdue["by_org_unit"][0]["count"], 1);

        // A report now counts for Q2; when Q2's deadline nears nothing more is sent.
        let mp = app.dev_mp_bound("wxm", "王小明", "13912345678").await;
        let (st, v) = app
            .dev_call(
                Method::POST,
                "/api/mp/development/reports",
                &mp,
                Some(json!({"content": "第二季度思想汇报：学习二十大精神的体会"})),
            )
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        assert_eq!(v["date"], "2023-10-05");
        let (_, me) = app
            .dev_call(Method::GET, "/api/mp/development", &mp, None)
            .await;
        assert_eq!(me["reports"]["count"], 1);
        let open: Vec<&Value> = me["deadlines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["rule"] == "probation_quarterly_report")
            .collect();
        assert_eq!(
            open.len(),
            1,
            "only the missed quarter is still listed: {me}"
        );
        assert_eq!(open[0]["status"], "overdue");
        clock.set(at("2023-12-15T09:00:00+08:00"));
        let third = dangjian::development::worker::run_once(&app.state)
            .await
            .unwrap();
        assert_eq!(third.queued, 0, "{third:?}");
        assert_eq!(app.fake.count_calls("cgi-bin/message/custom/send"), 1);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM development_reminders")
                .await,
            2
        );
        // A worker that died after claiming a send leaves its outcome unknown: never resent.
        sqlx::query("UPDATE development_reminders SET status = 'sending', lease_until = 1 WHERE audience = 'applicant'")
            .execute(app.state.db.pool())
            .await
            .unwrap();
        dangjian::development::worker::run_once(&app.state)
            .await
            .unwrap();
        assert_eq!(
            app.count("SELECT COUNT(*) FROM development_reminders WHERE status = 'unknown'")
                .await,
            1
        );
        assert_eq!(app.fake.count_calls("cgi-bin/message/custom/send"), 1);
        // The report is kept encrypted.
        let raw: String = sqlx::query("SELECT content_enc FROM development_reports")
            .fetch_one(app.state.db.pool())
            .await
            .unwrap()
            .get(0);
        assert!(!raw.contains("二十大") && raw.starts_with("v2:"), "{raw}");
    });
}

#[backend_test]
async fn a_secretary_cannot_see_or_touch_another_branchs_people() {
    let clock = ManualClock::at(at("2024-07-15T10:00:00+08:00"));
    each_backend!(spawn = spawn_with(&clock), |app| {
        clock.set(at("2024-07-15T10:00:00+08:00"));
        let b = setup(&app).await;
        let sec2 = app
            .user_token("sec_second", "secretary", Some("第二党支部"))
            .await;
        let (st, v) = app
            .dev_call(Method::POST, "/api/admin/development", &sec2, Some(json!({"name": "陈明", "org_unit": "第二党支部", "id_number": id_number("11010119990101123")})))
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        let theirs = v["record"]["id"].as_i64().unwrap();
        let d = doc(&app, &sec2, theirs, "入党申请书").await;
        step(
            &app,
            &sec2,
            theirs,
            "application",
            "2021-09-10",
            json!({"documents": [d]}),
        )
        .await;
        let member = member_id(&app, "王小明").await;
        let mine = create_for_member(&app, &b.sec, member).await["record"]["id"]
            .as_i64()
            .unwrap();

        let before = snapshot(&app).await;
        let sec = &b.sec;
        let (st, v) = app
            .dev_call(
                Method::GET,
                &format!("/api/admin/development/{theirs}"),
                sec,
                None,
            )
            .await;
        assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
        let (st, v) = try_step(
            &app,
            sec,
            theirs,
            "application_talk",
            "2021-09-20",
            json!({}),
        )
        .await;
        assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
        let (st, v) = app
            .dev_upload(sec, theirs, "入党申请书", "application/pdf", PDF.to_vec())
            .await;
        assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
        let (st, v) = app
            .dev_call(
                Method::POST,
                &format!("/api/admin/development/{theirs}/reports"),
                sec,
                Some(json!({"content": "x"})),
            )
            .await;
        assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
        let (st, v) = app
            .dev_call(
                Method::GET,
                &format!("/api/admin/development/{theirs}/reports"),
                sec,
                None,
            )
            .await;
        assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
        let (st, v) = app
            .dev_call(
                Method::GET,
                &format!("/api/admin/development/{theirs}/documents/{d}"),
                sec,
                None,
            )
            .await;
        assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
        // Not even through the other record's id.
        let (st, v) = app
            .dev_call(
                Method::GET,
                &format!("/api/admin/development/{mine}/documents/{d}"),
                sec,
                None,
            )
            .await;
        assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
        let (st, v) = app
            .dev_call(
                Method::POST,
                "/api/admin/development",
                sec,
                Some(json!({"name": "某人", "org_unit": "第二党支部", "birth_date": "2000-01-01"})),
            )
            .await;
        assert_error(st, &v, StatusCode::FORBIDDEN, "forbidden");
        let (st, v) = try_approve(&app, sec, theirs, "upper_prereview", json!({})).await;
        assert_error(st, &v, StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(snapshot(&app).await, before);

        let (st, list) = app
            .dev_call(Method::GET, "/api/admin/development", sec, None)
            .await;
        assert_eq!(st, StatusCode::OK, "{list}");
        let ids: Vec<i64> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_i64().unwrap())
            .collect();
        assert_eq!(ids, vec![mine]);
        let (_, p) = app
            .dev_call(Method::GET, "/api/admin/development/pipeline", sec, None)
            .await;
        assert_eq!(p["totals"]["total"], 1, "{p}");
        let (_, all) = app
            .dev_call(Method::GET, "/api/admin/development", &b.admin, None)
            .await;
        assert_eq!(all["total"], 2);
        let (_, filtered) = app
            .dev_call(
                Method::GET,
                "/api/admin/development?org_unit=第二党支部&stage=applicant",
                &b.admin,
                None,
            )
            .await;
        assert_eq!(filtered["total"], 1);
        assert_eq!(filtered["items"][0]["id"], theirs);
        // Editors have no business here at all.
        let editor = app.user_token("ed_dev", "editor", None).await;
        let (st, v) = app
            .dev_call(Method::GET, "/api/admin/development", &editor, None)
            .await;
        assert_error(st, &v, StatusCode::FORBIDDEN, "forbidden");
    });
}

#[backend_test]
async fn a_correction_is_a_new_audited_entry_and_entries_are_never_edited() {
    let clock = ManualClock::at(at("2024-07-15T10:00:00+08:00"));
    each_backend!(spawn = spawn_with(&clock), |app| {
        clock.set(at("2024-07-15T10:00:00+08:00"));
        let b = setup(&app).await;
        let member = member_id(&app, "王小明").await;
        let rec = create_for_member(&app, &b.sec, member).await["record"]["id"]
            .as_i64()
            .unwrap();
        let t = walk(&app, &b, rec, "application_talk").await;
        let old = entry(&t, "application")[0]["id"].as_i64().unwrap();
        let docs = entry(&t, "application")[0]["documents"].clone();

        // A correction that would put the talk more than a month after the application: refused.
        let before = snapshot(&app).await;
        let (st, v) = try_step(
            &app,
            &b.sec,
            rec,
            "application",
            "2021-09-01",
            json!({"documents": docs, "corrects": old, "reason": "日期录入错误"}),
        )
        .await;
        assert_rule(st, &v, "talk_within_one_month");
        let (st, v) = try_step(
            &app,
            &b.sec,
            rec,
            "application",
            "2021-09-12",
            json!({"documents": docs, "corrects": old}),
        )
        .await;
        assert_error(
            st,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        assert_eq!(snapshot(&app).await, before);

        let t = step(
            &app,
            &b.sec,
            rec,
            "application",
            "2021-09-12",
            json!({"documents": docs, "corrects": old, "reason": "日期录入错误"}),
        )
        .await;
        let entries = entry(&t, "application");
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (entries[0]["id"].as_i64(), entries[0]["status"].clone()),
            (Some(old), json!("superseded"))
        );
        assert_eq!(entries[1]["status"], "recorded");
        assert_eq!(entries[1]["corrects"], old);
        assert_eq!(entries[1]["correction_reason"], "日期录入错误");
        assert_eq!(
            deadlines(&t, "talk_within_one_month")[0]["due"],
            "2021-10-12"
        );
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'development.step.correct'")
                .await,
            1
        );
        // The database refuses edits of an entry, whoever tries.
        let edit = sqlx::query("UPDATE development_steps SET step_on = '2021-01-01' WHERE id = $1")
            .bind(old)
            .execute(app.state.db.pool())
            .await;
        assert!(edit.is_err(), "entries are immutable");
        let kept: String = sqlx::query("SELECT step_on FROM development_steps WHERE id = $1")
            .bind(old)
            .fetch_one(app.state.db.pool())
            .await
            .unwrap()
            .get(0);
        assert_eq!(kept, "2021-09-10");
    });
}

#[backend_test]
async fn bad_input_is_refused_in_the_one_shape_and_changes_nothing() {
    let clock = ManualClock::at(at("2024-07-15T10:00:00+08:00"));
    each_backend!(spawn = spawn_with(&clock), |app| {
        clock.set(at("2024-07-15T10:00:00+08:00"));
        let b = setup(&app).await;
        let member = member_id(&app, "王小明").await;
        let rec = create_for_member(&app, &b.sec, member).await["record"]["id"]
            .as_i64()
            .unwrap();
        let d = doc(&app, &b.sec, rec, "入党申请书").await;
        let before = snapshot(&app).await;
        let sec = &b.sec;

        // Unknown person / record.
        let (st, v) = app
            .dev_call(Method::GET, "/api/admin/development/999999", sec, None)
            .await;
        assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
        let (st, v) = app
            .dev_call(Method::GET, "/api/admin/development/abc", sec, None)
            .await;
        assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
        let (st, v) = try_step(
            &app,
            sec,
            999_999,
            "application",
            "2021-09-10",
            json!({"documents": [d]}),
        )
        .await;
        assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
        let (st, v) = app
            .dev_call(
                Method::POST,
                "/api/admin/development",
                sec,
                Some(json!({"member_id": 999_999})),
            )
            .await;
        assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
        let (st, v) = app
            .dev_call(
                Method::POST,
                "/api/admin/development",
                sec,
                Some(json!({"name": "某人", "org_unit": "不存在的支部"})),
            )
            .await;
        assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
        let (st, v) = app.dev_call(Method::POST, "/api/admin/development", sec, Some(json!({"name": "某人", "org_unit": "第一党支部", "id_number": "110101200005011230"}))).await;
        assert_error(
            st,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        let (st, v) = app
            .dev_call(
                Method::POST,
                "/api/admin/development",
                sec,
                Some(json!({"member_id": member, "name": "别人"})),
            )
            .await;
        assert_error(
            st,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        // Out of order, in the future, unknown step, bad date, wrong field.
        let (st, v) = try_step(&app, sec, rec, "oath", "2023-08-20", json!({})).await;
        assert_rule(st, &v, "requires_previous_step");
        let (st, v) = try_step(
            &app,
            sec,
            rec,
            "application",
            "2024-07-16",
            json!({"documents": [d]}),
        )
        .await;
        let e = assert_rule(st, &v, "date_not_in_future");
        assert_eq!(e["limit"], "2024-07-15");
        let (st, v) = try_step(&app, sec, rec, "no_such_step", "2021-09-10", json!({})).await;
        assert_error(
            st,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        let (st, v) = try_step(
            &app,
            sec,
            rec,
            "application",
            "2021/09/10",
            json!({"documents": [d]}),
        )
        .await;
        assert_error(
            st,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        let (st, v) = try_step(
            &app,
            sec,
            rec,
            "application",
            "2021-09-10",
            json!({"documents": [d + 1000]}),
        )
        .await;
        assert_error(
            st,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        let (st, v) = try_step(
            &app,
            sec,
            rec,
            "application",
            "2021-09-10",
            json!({"documents": [d], "colour": "red"}),
        )
        .await;
        assert_error(
            st,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        let (st, v) = app
            .dev_call(
                Method::POST,
                &format!("/api/admin/development/{rec}/steps/application/approve"),
                &b.admin,
                Some(json!({})),
            )
            .await;
        assert_error(st, &v, StatusCode::NOT_FOUND, "not_found");
        let (st, v) = app
            .dev_call(
                Method::POST,
                &format!("/api/admin/development/{rec}/steps/application/return"),
                &b.admin,
                Some(json!({"reason": " "})),
            )
            .await;
        assert_error(
            st,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        let (st, v) = app
            .dev_call(
                Method::GET,
                "/api/admin/development?stage=veteran",
                sec,
                None,
            )
            .await;
        assert_error(
            st,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        let (st, v) = app
            .dev_call(
                Method::GET,
                "/api/admin/development/pipeline?format=xlsx",
                sec,
                None,
            )
            .await;
        assert_error(
            st,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        let (st, v) = app
            .dev_call(
                Method::GET,
                "/api/admin/development/stats?year=yesterday",
                sec,
                None,
            )
            .await;
        assert_error(
            st,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        // Malformed JSON.
        for path in [
            steps_path(rec),
            "/api/admin/development".into(),
            format!("/api/admin/development/{rec}/reports"),
        ] {
            let resp = app
                .http
                .post(app.url(&path))
                .bearer_auth(sec)
                .header("content-type", "application/json")
                .body("{not json")
                .send()
                .await
                .unwrap();
            let st = resp.status();
            assert_error(
                st,
                &resp.json().await.unwrap(),
                StatusCode::BAD_REQUEST,
                "bad_json",
            );
        }
        // Uploads: oversize, wrong type, bytes that aren't what they claim, empty, no kind.
        let big = {
            let mut v = PDF.to_vec();
            v.resize(5 * 1024 * 1024 + 1, b' ');
            v
        };
        let (st, v) = app
            .dev_upload(sec, rec, "入党申请书", "application/pdf", big)
            .await;
        assert_error(st, &v, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
        let (st, v) = app
            .dev_upload(sec, rec, "入党申请书", "text/plain", b"hello".to_vec())
            .await;
        assert_error(
            st,
            &v,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        );
        let (st, v) = app
            .dev_upload(sec, rec, "入党申请书", "application/pdf", PNG.to_vec())
            .await;
        assert_error(
            st,
            &v,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        );
        let (st, v) = app
            .dev_upload(sec, rec, "入党申请书", "image/png", Vec::new())
            .await;
        assert_error(
            st,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        let resp = app
            .http
            .post(app.url(&format!("/api/admin/development/{rec}/documents")))
            .bearer_auth(sec)
            .header("content-type", "image/png")
            .body(PNG.to_vec())
            .send()
            .await
            .unwrap();
        let st = resp.status();
        assert_error(
            st,
            &resp.json().await.unwrap(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        // Thought reports: empty, in the future.
        let (st, v) = app
            .dev_call(
                Method::POST,
                &format!("/api/admin/development/{rec}/reports"),
                sec,
                Some(json!({"content": "  "})),
            )
            .await;
        assert_error(
            st,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        );
        let (st, v) = app
            .dev_call(
                Method::POST,
                &format!("/api/admin/development/{rec}/reports"),
                sec,
                Some(json!({"content": "汇报", "date": "2024-07-16"})),
            )
            .await;
        assert_rule(st, &v, "date_not_in_future");
        // The mini-program without a session.
        let resp = app
            .http
            .get(app.url("/api/mp/development"))
            .send()
            .await
            .unwrap();
        let st = resp.status();
        assert_error(
            st,
            &resp.json().await.unwrap(),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
        assert_eq!(snapshot(&app).await, before);

        // A PNG upload is accepted and kept encrypted.
        let (st, v) = app
            .dev_upload(sec, rec, "照片", "image/png", PNG.to_vec())
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
        assert_eq!(v["size_bytes"], PNG.len());
        let raw: String =
            sqlx::query("SELECT content_enc FROM development_documents WHERE id = $1")
                .bind(v["id"].as_i64().unwrap())
                .fetch_one(app.state.db.pool())
                .await
                .unwrap()
                .get(0);
        assert!(raw.starts_with("v2:"), "{raw}");
    });
}

#[backend_test]
async fn the_rules_follow_an_edited_development_toml() {
    let builtin = include_str!("../../content/development.toml");
    let edited = builtin
        .replace(
            "name = \"activist_min_one_year\"",
            "name = \"activist_min_two_years\"",
        )
        .replace("  min_years = 1\n", "  min_years = 2\n");
    assert_ne!(edited, builtin);
    let clock = ManualClock::at(at("2024-07-15T10:00:00+08:00"));
    let spawn = || Spawn {
        clock: Some(Arc::new(clock.clone())),
        write_content: vec![("development.toml", edited.clone())],
        ..Default::default()
    };
    each_backend!(spawn = spawn(), |app| {
        clock.set(at("2024-07-15T10:00:00+08:00"));
        let b = setup(&app).await;
        let member = member_id(&app, "王小明").await;
        let rec = create_for_member(&app, &b.sec, member).await["record"]["id"]
            .as_i64()
            .unwrap();
        walk(&app, &b, rec, "target_opinions").await;
        let (st, v) = try_step(
            &app,
            &b.sec,
            rec,
            "development_target_determined",
            "2023-03-15",
            json!({}),
        )
        .await;
        let e = assert_rule(st, &v, "activist_min_two_years");
        assert_eq!(e["limit"], "2024-03-15");
    });
}
