//! Activities: the flash crowd (never more confirmed than capacity, exact waitlist, promotion
//! exactly once; on PostgreSQL across two app instances), the sign-up and check-in rules, the
//! rotating ticket under the app's clock, meetings' attendance and CSV, the 三会一课 rhythm,
//! secretaries' scope, reminders, and bad input that changes nothing — on every backend.

use dangjian_test_macros::backend_test;

use std::{collections::HashSet, sync::Arc, time::Duration};

use dangjian::platform::clock::ManualClock;
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use crate::{
    each_backend,
    helpers::{Backend, Spawn, TestApp},
};

/// "Now" in every test: sign-up opens an hour before, closes two hours after, the activity
/// starts three hours after (admin tokens last 8 h, so no test outlives its token).
const T0: &str = "2026-11-10T09:00:00+08:00";

fn t0() -> OffsetDateTime {
    OffsetDateTime::parse(T0, &Rfc3339).unwrap()
}

/// T0 + `minutes`, RFC 3339.
fn at(minutes: i64) -> String {
    (t0() + time::Duration::minutes(minutes))
        .format(&Rfc3339)
        .unwrap()
}

fn spawn(clock: &ManualClock) -> Spawn {
    clock.set(t0());
    Spawn {
        overrides: vec![
            ("rate_limit_mp_per_minute", "10000000".into()),
            // What these tests prove is the database's, not Redis's speed: a loaded test machine
            // must not turn a slow session read into a 503 (hardening.rs tests the bound).
            ("redis_timeout_ms", "5000".into()),
        ],
        clock: Some(Arc::new(clock.clone())),
        ..Default::default()
    }
}

fn activity(title: &str, capacity: i64) -> Value {
    json!({
        "title": title, "capacity": capacity, "location": "学院报告厅",
        "signup_opens_at": at(-60), "signup_closes_at": at(120), "starts_at": at(180), "ends_at": at(300),
    })
}

fn assert_error(status: StatusCode, v: &Value, want: StatusCode, code: &str) {
    assert_eq!(status, want, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    assert_eq!(
        v.as_object().map(|o| o.len()),
        Some(1),
        "only the error key: {v}"
    );
}

impl TestApp {
    async fn admin_call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = self.admin_token().await;
        self.call(method, &self.base, path, &token, body).await
    }

    async fn create_activity(&self, body: Value) -> i64 {
        let (status, v) = self
            .admin_call(Method::POST, "/api/admin/activities", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }

    async fn signup(&self, token: &str, id: i64) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &self.base,
            &format!("/api/mp/activities/{id}/signup"),
            token,
            None,
        )
        .await
    }

    async fn withdraw(&self, token: &str, id: i64) -> (StatusCode, Value) {
        self.call(
            Method::DELETE,
            &self.base,
            &format!("/api/mp/activities/{id}/signup"),
            token,
            None,
        )
        .await
    }

    async fn checkin(&self, token: &str, id: i64, ticket: &str) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            &self.base,
            &format!("/api/mp/activities/{id}/checkin"),
            token,
            Some(json!({"ticket": ticket})),
        )
        .await
    }

    async fn ticket(&self, id: i64) -> Value {
        let (status, v) = self
            .admin_call(
                Method::GET,
                &format!("/api/admin/activities/{id}/checkin-code"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    async fn signups(&self, id: i64) -> Value {
        let (status, v) = self
            .admin_call(
                Method::GET,
                &format!("/api/admin/activities/{id}/signups"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    /// Members with a token each, in a fresh org unit.
    async fn crowd(&self, unit_name: &str, prefix: &str, n: usize) -> (i64, Vec<(i64, String)>) {
        let unit = self.create_org_unit(unit_name, None).await;
        let mut out = Vec::with_capacity(n);
        for (id, openid) in self.seed_bound_members(prefix, n, unit).await {
            out.push((id, self.mp_session_token(&openid, Some(id)).await));
        }
        (unit, out)
    }

    /// Rows in every activity table: bad input must leave all of them unchanged.
    async fn activity_rows(&self) -> Vec<i64> {
        let mut v = Vec::new();
        for t in [
            "activities",
            "activity_audience",
            "activity_signups",
            "activity_attendance",
            "activity_notices",
        ] {
            v.push(self.count(&format!("SELECT COUNT(*) FROM {t}")).await);
        }
        v.push(
            self.count("SELECT CAST(COALESCE(SUM(confirmed_count + signup_seq), 0) AS BIGINT) FROM activities")
                .await,
        );
        v.push(
            self.count("SELECT COUNT(*) FROM activity_signups WHERE status = 'cancelled'")
                .await,
        );
        v
    }
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|l| l["member_id"].as_i64().unwrap())
        .collect()
}

#[backend_test]
async fn flash_crowd_of_2000_for_100_places_confirms_100_and_promotes_exactly_the_first_20() {
    let clock = ManualClock::at(t0());
    for backend in crate::helpers::backends() {
        eprintln!("backend: {}", backend.name());
        let app = TestApp::spawn_with(&backend, spawn(&clock)).await;
        // PostgreSQL: a second instance on the same database and Redis, requests alternating.
        let sibling = match &backend {
            Backend::Postgres {
                redis_url: Some(_), ..
            } => Some(app.sibling().await),
            _ => None,
        };
        let mut bases = vec![app.base.clone()];
        bases.extend(sibling.as_ref().map(|s| s.base.clone()));
        let (_, people) = app.crowd("第一党支部", "crowd", 2000).await;
        let id = app.create_activity(activity("迎新年登山活动", 100)).await;

        let path = format!("/api/mp/activities/{id}/signup");
        let results: Vec<(i64, StatusCode, Value)> =
            futures_util::stream::iter(people.iter().enumerate())
                .map(|(i, (member, token))| {
                    let (app, base, path) = (&app, &bases[i % bases.len()], &path);
                    async move {
                        let (s, v) = app.call(Method::POST, base, path, token, None).await;
                        (*member, s, v)
                    }
                })
                .buffer_unordered(64)
                .collect()
                .await;
        let mut confirmed = HashSet::new();
        let mut positions = std::collections::HashMap::new();
        for (member, status, v) in &results {
            assert_eq!(*status, StatusCode::OK, "{v}");
            match v["status"].as_str().unwrap() {
                "confirmed" => {
                    assert!(v["position"].is_null(), "{v}");
                    confirmed.insert(*member);
                }
                "waitlisted" => {
                    positions.insert(*member, v["position"].as_i64().unwrap());
                }
                other => panic!("status {other}"),
            }
        }
        assert_eq!(confirmed.len(), 100);
        assert_eq!(positions.len(), 1900);
        let mut sorted: Vec<i64> = positions.values().copied().collect();
        sorted.sort_unstable();
        assert_eq!(
            sorted,
            (1..=1900).collect::<Vec<_>>(),
            "distinct positions 1..1900"
        );

        // The admin list agrees: the waitlist in strictly increasing sequence, and each member at
        // the position their answer named.
        let list = app.signups(id).await;
        assert_eq!(
            ids(&list["confirmed"]).into_iter().collect::<HashSet<_>>(),
            confirmed
        );
        let waitlist = list["waitlist"].as_array().unwrap().clone();
        assert_eq!(waitlist.len(), 1900);
        let mut last_seq = 0;
        for (i, line) in waitlist.iter().enumerate() {
            let seq = line["seq"].as_i64().unwrap();
            assert!(seq > last_seq, "strict order");
            last_seq = seq;
            assert_eq!(line["position"], i as i64 + 1);
            assert_eq!(
                positions[&line["member_id"].as_i64().unwrap()],
                i as i64 + 1
            );
        }
        assert_eq!(
            app.count(&format!(
                "SELECT confirmed_count FROM activities WHERE id = {id}"
            ))
            .await,
            100
        );
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(DISTINCT member_id) FROM activity_signups WHERE activity_id = {id}"
            ))
            .await,
            2000
        );

        // 20 confirmed members withdraw at once: exactly the first 20 waitlisted are promoted.
        let leaving: Vec<(i64, String)> = people
            .iter()
            .filter(|(m, _)| confirmed.contains(m))
            .take(20)
            .cloned()
            .collect();
        let withdrawn: Vec<(StatusCode, Value)> =
            futures_util::stream::iter(leaving.iter().enumerate())
                .map(|(i, (_, token))| {
                    let (app, base, path) = (&app, &bases[i % bases.len()], &path);
                    async move { app.call(Method::DELETE, base, path, token, None).await }
                })
                .buffer_unordered(20)
                .collect()
                .await;
        for (s, v) in &withdrawn {
            assert_eq!(*s, StatusCode::OK, "{v}");
            assert_eq!(v["status"], "cancelled");
        }
        let after = app.signups(id).await;
        let first_20: HashSet<i64> = ids(&Value::Array(waitlist[..20].to_vec()))
            .into_iter()
            .collect();
        let now_confirmed: HashSet<i64> = ids(&after["confirmed"]).into_iter().collect();
        assert_eq!(now_confirmed.len(), 100);
        let left: HashSet<i64> = leaving.iter().map(|(m, _)| *m).collect();
        let expected: HashSet<i64> = confirmed
            .difference(&left)
            .copied()
            .chain(first_20.iter().copied())
            .collect();
        assert_eq!(
            now_confirmed, expected,
            "the first 20 waitlisted, nobody else"
        );
        assert_eq!(
            ids(&after["waitlist"]),
            ids(&Value::Array(waitlist[20..].to_vec())),
            "the rest keep their order"
        );
        assert_eq!(
            after["waitlist"][0]["position"], 1,
            "positions move up: {}",
            after["waitlist"][0]
        );
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM activity_notices WHERE activity_id = {id} AND kind = 'promoted'")).await,
            20
        );
        assert_eq!(
            app.count(&format!(
                "SELECT confirmed_count FROM activities WHERE id = {id}"
            ))
            .await,
            100
        );

        assert_eq!(
            app.count(&format!(
                "SELECT waitlisted_count FROM activities WHERE id = {id}"
            ))
            .await,
            1880
        );

        // A waitlisted member sees the current place in the detail.
        let (member, token) = people
            .iter()
            .find(|(m, _)| positions.get(m) == Some(&25))
            .unwrap();
        let (s, v) = app
            .call(
                Method::GET,
                &app.base,
                &format!("/api/mp/activities/{id}"),
                token,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            v["my_signup"],
            json!({"status": "waitlisted", "position": 5}),
            "member {member}"
        );
        assert_eq!(v["remaining"], 0);

        if let Some(s) = sibling {
            s.stop().await;
        }
        app.stop().await;
    }
}

#[backend_test]
async fn bad_signups_are_refused_in_the_one_shape_and_change_nothing() {
    let clock = ManualClock::at(t0());
    each_backend!(spawn = spawn(&clock), |app| {
        let (_, people) = app.crowd("第一党支部", "bad", 3).await;
        let (alice, bob) = (&people[0].1, &people[1].1);
        let open = app.create_activity(activity("开放中", 1)).await;
        let mut later = activity("尚未开放", 10);
        later["signup_opens_at"] = json!(at(30));
        let later = app.create_activity(later).await;
        let cancelled = app.create_activity(activity("已取消", 10)).await;
        let (s, v) = app
            .admin_call(
                Method::POST,
                &format!("/api/admin/activities/{cancelled}/cancel"),
                Some(json!({"reason": "天气"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(app.signup(alice, open).await.0, StatusCode::OK);
        let unbound = app.mp_session_token("mp_nobody", None).await;

        let before = app.activity_rows().await;
        let (s, v) = app.signup(bob, later).await;
        assert_error(s, &v, StatusCode::CONFLICT, "signup_not_open");
        let (s, v) = app.signup(bob, cancelled).await;
        assert_error(s, &v, StatusCode::CONFLICT, "activity_cancelled");
        let (s, v) = app.signup(alice, open).await;
        assert_error(s, &v, StatusCode::CONFLICT, "already_signed_up");
        let (s, v) = app.signup(bob, 999_999).await;
        assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
        let (s, v) = app.signup(bob, -1).await;
        assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
        let (s, v) = app
            .call(
                Method::POST,
                &app.base,
                "/api/mp/activities/abc/signup",
                bob,
                None,
            )
            .await;
        assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
        let (s, v) = app.signup(&unbound, open).await;
        assert_error(s, &v, StatusCode::FORBIDDEN, "not_bound");
        let (s, v) = app.signup("not-a-token", open).await;
        assert_error(s, &v, StatusCode::UNAUTHORIZED, "unauthorized");
        let (s, v) = app.withdraw(bob, open).await;
        assert_error(s, &v, StatusCode::NOT_FOUND, "not_signed_up");
        let resp = app
            .http
            .post(app.url(&format!("/api/mp/activities/{open}/checkin")))
            .bearer_auth(alice)
            .header("content-type", "application/json")
            .body("{\"ticket\": ")
            .send()
            .await
            .unwrap();
        let s = resp.status();
        assert_error(
            s,
            &resp.json().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_json",
        );
        let (s, v) = app
            .call(
                Method::POST,
                &app.base,
                &format!("/api/mp/activities/{open}/checkin"),
                alice,
                Some(json!({"ticket": 5})),
            )
            .await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(app.activity_rows().await, before, "nothing changed");

        // After the window closes: refused, nothing changes; the full one-place activity took
        // bob onto the waitlist before that.
        let (s, v) = app.signup(bob, open).await;
        assert_eq!(
            (s, v["status"].as_str()),
            (StatusCode::OK, Some("waitlisted")),
            "{v}"
        );
        clock.advance(Duration::from_secs(2 * 3600));
        let before = app.activity_rows().await;
        let (s, v) = app.signup(&people[2].1, open).await;
        assert_error(s, &v, StatusCode::CONFLICT, "signup_closed");
        assert_eq!(app.activity_rows().await, before);
        // Withdrawing is still possible until the start, and the place goes to bob.
        assert_eq!(app.withdraw(alice, open).await.0, StatusCode::OK);
        let list = app.signups(open).await;
        assert_eq!(ids(&list["confirmed"]), vec![people[1].0]);
        assert_eq!(list["confirmed"][0]["promoted"], true);
        clock.advance(Duration::from_secs(3600));
        let (s, v) = app.withdraw(bob, open).await;
        assert_error(s, &v, StatusCode::CONFLICT, "activity_started");
    });
}

#[backend_test]
async fn the_checkin_ticket_rotates_every_30_seconds_and_refuses_forged_expired_and_foreign_ones() {
    let clock = ManualClock::at(t0());
    each_backend!(spawn = spawn(&clock), |app| {
        let (_, people) = app.crowd("第一党支部", "tk", 4).await;
        let id = app.create_activity(activity("专题党课", 10)).await;
        let other = app.create_activity(activity("另一场", 10)).await;
        for (_, t) in &people {
            assert_eq!(app.signup(t, id).await.0, StatusCode::OK);
        }
        // 10 minutes before the start, on a window boundary.
        clock.set(t0() + time::Duration::minutes(170));
        let code = app.ticket(id).await;
        assert!(
            code["svg"].as_str().unwrap().starts_with("<?xml")
                || code["svg"].as_str().unwrap().contains("<svg")
        );
        assert_eq!(code["window_seconds"], 30);
        let ticket = code["ticket"].as_str().unwrap().to_owned();
        assert!(ticket.starts_with(&format!("{id}.")), "{ticket}");
        assert_eq!(
            app.ticket(id).await["ticket"],
            ticket,
            "same window, same code"
        );
        let foreign = app.ticket(other).await["ticket"]
            .as_str()
            .unwrap()
            .to_owned();

        let before = app.count("SELECT COUNT(*) FROM activity_attendance").await;
        let (s, v) = app.checkin(&people[0].1, id, &foreign).await;
        assert_error(
            s,
            &v,
            StatusCode::UNPROCESSABLE_ENTITY,
            "ticket_other_activity",
        );
        let mut forged = ticket.clone();
        let last = if forged.ends_with('A') { "B" } else { "A" };
        forged.replace_range(forged.len() - 1.., last);
        let (s, v) = app.checkin(&people[0].1, id, &forged).await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "ticket_invalid");
        let (s, v) = app.checkin(&people[0].1, id, "hello").await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "ticket_invalid");
        assert_eq!(
            app.count("SELECT COUNT(*) FROM activity_attendance").await,
            before
        );

        // The current window and the next one accept it; 60 s later it has expired.
        let (s, v) = app.checkin(&people[0].1, id, &ticket).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "present");
        clock.advance(Duration::from_secs(30));
        let rotated = app.ticket(id).await["ticket"].as_str().unwrap().to_owned();
        assert_ne!(rotated, ticket, "a new code every 30 s");
        assert_eq!(
            app.checkin(&people[1].1, id, &ticket).await.0,
            StatusCode::OK,
            "previous window"
        );
        clock.advance(Duration::from_secs(30));
        let (s, v) = app.checkin(&people[2].1, id, &ticket).await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "ticket_expired");
        assert_eq!(
            app.checkin(&people[2].1, id, &rotated).await.0,
            StatusCode::OK
        );
        // A photo of a code forwarded an hour later.
        clock.advance(Duration::from_secs(3600));
        let (s, v) = app.checkin(&people[3].1, id, &rotated).await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "ticket_expired");
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM activity_attendance WHERE activity_id = {id} AND checked_in_at IS NOT NULL")).await,
            3
        );
    });
}

#[backend_test]
async fn checkin_is_once_only_in_time_and_only_for_confirmed_members() {
    let clock = ManualClock::at(t0());
    each_backend!(spawn = spawn(&clock), |app| {
        let (_, people) = app.crowd("第一党支部", "ci", 3).await;
        let id = app.create_activity(activity("志愿服务", 1)).await;
        assert_eq!(app.signup(&people[0].1, id).await.1["status"], "confirmed");
        assert_eq!(app.signup(&people[1].1, id).await.1["status"], "waitlisted");
        let before = app.activity_rows().await;
        // 31 minutes before the start: not yet.
        clock.set(t0() + time::Duration::minutes(149));
        let ticket = app.ticket(id).await["ticket"].as_str().unwrap().to_owned();
        let (s, v) = app.checkin(&people[0].1, id, &ticket).await;
        assert_error(s, &v, StatusCode::CONFLICT, "checkin_not_open");
        clock.set(t0() + time::Duration::minutes(186));
        let ticket = app.ticket(id).await["ticket"].as_str().unwrap().to_owned();
        for p in [&people[1], &people[2]] {
            let (s, v) = app.checkin(&p.1, id, &ticket).await;
            assert_error(s, &v, StatusCode::FORBIDDEN, "not_signed_up");
        }
        assert_eq!(app.activity_rows().await, before);
        let (s, v) = app.checkin(&people[0].1, id, &ticket).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "late", "6 minutes after the start");
        let (s, v) = app.checkin(&people[0].1, id, &ticket).await;
        assert_error(s, &v, StatusCode::CONFLICT, "already_checked_in");
        let (s, v) = app
            .call(
                Method::GET,
                &app.base,
                &format!("/api/mp/activities/{id}"),
                &people[0].1,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["my_attendance"], "late", "{v}");
        // After ends_at: closed.
        clock.set(t0() + time::Duration::minutes(300));
        let ticket = app.ticket(id).await["ticket"].as_str().unwrap().to_owned();
        let before = app.activity_rows().await;
        let (s, v) = app.checkin(&people[0].1, id, &ticket).await;
        assert_error(s, &v, StatusCode::CONFLICT, "checkin_closed");
        assert_eq!(app.activity_rows().await, before);
        let (s, v) = app
            .admin_call(Method::GET, &format!("/api/admin/activities/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            v["counts"],
            json!({"confirmed": 1, "waitlisted": 1, "checked_in": 1}),
            "{v}"
        );
    });
}

#[backend_test]
async fn a_meeting_expects_its_audience_records_marks_and_exports_attendance_as_csv() {
    let clock = ManualClock::at(t0());
    each_backend!(spawn = spawn(&clock), |app| {
        let branch = app.create_org_unit("第一党支部", None).await;
        let group = app.create_org_unit("第一党小组", Some("第一党支部")).await;
        let other = app.create_org_unit("第二党支部", None).await;
        let in_branch = app.seed_bound_members("支部", 2, branch).await;
        let in_group = app.seed_bound_members("小组", 1, group).await;
        let outside = app.seed_bound_members("外部", 1, other).await;
        let mut body = activity("第四季度支部党员大会", 50);
        body["kind"] = json!("branch_general_meeting");
        body["audience_org_units"] = json!([branch]);
        let id = app.create_activity(body).await;
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM activity_attendance WHERE activity_id = {id} AND status = 'absent'")).await,
            3,
            "the branch and its group, absent until seen"
        );
        // A member who joins the branch later is expected too once the sheet is read.
        let late_joiner = app.seed_bound_members("新人", 1, branch).await;

        // An audience member checks in without signing up; an outsider cannot see it.
        let token = app
            .mp_session_token(&in_group[0].1, Some(in_group[0].0))
            .await;
        clock.set(t0() + time::Duration::minutes(175));
        let ticket = app.ticket(id).await["ticket"].as_str().unwrap().to_owned();
        let (s, v) = app.checkin(&token, id, &ticket).await;
        assert_eq!(
            (s, v["status"].as_str()),
            (StatusCode::OK, Some("present")),
            "{v}"
        );
        let stranger = app
            .mp_session_token(&outside[0].1, Some(outside[0].0))
            .await;
        let (s, v) = app.checkin(&stranger, id, &ticket).await;
        assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");

        // Manual marks: leave needs its kind; only expected members; audited.
        let path = format!("/api/admin/activities/{id}/attendance");
        let audits = app
            .count("SELECT COUNT(*) FROM audit_log WHERE action = 'activity.attendance_mark'")
            .await;
        let before = app.activity_rows().await;
        let (s, v) = app
            .admin_call(
                Method::POST,
                &path,
                Some(json!({"member_id": in_branch[0].0, "status": "leave"})),
            )
            .await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let (s, v) = app
            .admin_call(
                Method::POST,
                &path,
                Some(json!({"member_id": in_branch[0].0, "status": "asleep"})),
            )
            .await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let (s, v) = app
            .admin_call(
                Method::POST,
                &path,
                Some(json!({"member_id": outside[0].0, "status": "present"})),
            )
            .await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "not_expected");
        let (s, v) = app
            .admin_call(
                Method::POST,
                &path,
                Some(json!({"member_id": 987_654, "status": "present"})),
            )
            .await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(app.activity_rows().await, before);
        let (s, v) = app
            .admin_call(Method::POST, &path, Some(json!({"member_id": in_branch[0].0, "status": "leave", "leave_kind": "sick", "reason": "发烧住院"})))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let (s, _) = app
            .admin_call(
                Method::POST,
                &path,
                Some(json!({"member_id": in_branch[1].0, "status": "late"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'activity.attendance_mark'")
                .await,
            audits + 2
        );

        let (s, v) = app.admin_call(Method::GET, &path, None).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(
            v["summary"],
            json!({"expected": 4, "present": 1, "late": 1, "absent": 1, "leave": 1}),
            "{v}"
        );
        let line = |m: i64| {
            v["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|l| l["member_id"] == m)
                .unwrap()
                .clone()
        };
        assert_eq!(line(in_branch[0].0)["leave_kind"], "sick");
        assert_eq!(line(in_branch[0].0)["reason"], "发烧住院");
        assert_eq!(line(in_group[0].0)["source"], "checkin");
        assert_eq!(line(late_joiner[0].0)["status"], "absent");

        // CSV, by ?format=csv and by Accept.
        let token = app.admin_token().await;
        for req in [
            app.http.get(app.url(&format!("{path}?format=csv"))),
            app.http.get(app.url(&path)).header("accept", "text/csv"),
        ] {
            let resp = req.bearer_auth(&token).send().await.unwrap();
            assert_eq!(resp.status(), StatusCode::OK);
            assert!(resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv"));
            let text = resp.text().await.unwrap();
            let mut rdr = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
            let headers = rdr.headers().unwrap().clone();
            assert_eq!(&headers[1], "member_id");
            let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
            assert_eq!(rows.len(), 4);
            let sick = rows
                .iter()
                .find(|r| r[1] == in_branch[0].0.to_string())
                .unwrap();
            assert_eq!(
                (&sick[2], &sick[4], &sick[5], &sick[6]),
                ("支部0", "leave", "sick", "发烧住院")
            );
        }

        // Minutes: meetings only, audited.
        let (s, v) = app
            .admin_call(Method::POST, &format!("/api/admin/activities/{id}/minutes"), Some(json!({"host": "王书记", "recorder": "李委员", "minutes": "传达学习全会精神。", "photos": ["https://img.example/1.jpg"]})))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["meeting"]["host"], "王书记");
        assert_eq!(v["meeting"]["photos"][0], "https://img.example/1.jpg");
        let plain = app.create_activity(activity("普通活动", 5)).await;
        let (s, v) = app
            .admin_call(
                Method::POST,
                &format!("/api/admin/activities/{plain}/minutes"),
                Some(json!({"host": "a", "recorder": "b", "minutes": "c"})),
            )
            .await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    });
}

#[backend_test]
async fn rhythm_counts_meetings_per_org_unit_and_quarter_against_the_rules() {
    let clock = ManualClock::at(t0());
    each_backend!(spawn = spawn(&clock), |app| {
        let a = app.create_org_unit("第一党支部", None).await;
        let b = app.create_org_unit("第二党支部", None).await;
        let meeting = |kind: &str, unit: i64, offset_days: i64| {
            let mut v = activity(kind, 30);
            let d = offset_days * 24 * 60;
            v["signup_opens_at"] = json!(at(d - 60));
            v["signup_closes_at"] = json!(at(d + 120));
            v["starts_at"] = json!(at(d + 180));
            v["ends_at"] = json!(at(d + 240));
            v["kind"] = json!(kind);
            v["audience_org_units"] = json!([unit]);
            v
        };
        // Held this quarter (before now): one general meeting and two committee meetings for A.
        app.create_activity(meeting("branch_general_meeting", a, -20))
            .await;
        app.create_activity(meeting("branch_committee_meeting", a, -30))
            .await;
        app.create_activity(meeting("branch_committee_meeting", a, -5))
            .await;
        // Scheduled later this quarter, cancelled, and in the next quarter: not held.
        app.create_activity(meeting("branch_committee_meeting", a, 10))
            .await;
        let c = app.create_activity(meeting("party_lecture", a, -2)).await;
        app.admin_call(
            Method::POST,
            &format!("/api/admin/activities/{c}/cancel"),
            None,
        )
        .await;
        app.create_activity(meeting("party_lecture", a, 60)).await;
        app.create_activity(meeting("party_group_meeting", b, -1))
            .await;

        let (s, v) = app
            .admin_call(
                Method::GET,
                "/api/admin/activities/rhythm?quarter=2026Q4",
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let unit = |id: i64| {
            v["units"]
                .as_array()
                .unwrap()
                .iter()
                .find(|u| u["org_unit"]["id"] == id)
                .unwrap()
                .clone()
        };
        let ua = unit(a);
        assert_eq!(
            ua["kinds"]["branch_general_meeting"],
            json!({"held": 1, "scheduled": 0, "required": 1})
        );
        assert_eq!(
            ua["kinds"]["branch_committee_meeting"],
            json!({"held": 2, "scheduled": 1, "required": 3})
        );
        assert_eq!(
            ua["kinds"]["party_lecture"],
            json!({"held": 0, "scheduled": 0, "required": 1})
        );
        assert_eq!(ua["kinds"]["party_group_meeting"]["required"], 3);
        assert_eq!(ua["complete"], false);
        assert_eq!(unit(b)["kinds"]["party_group_meeting"]["held"], 1);
        // Default quarter is the current one; a bad one is a 422.
        let (_, d) = app
            .admin_call(Method::GET, "/api/admin/activities/rhythm", None)
            .await;
        assert_eq!(d["quarter"], "2026Q4");
        let (_, next) = app
            .admin_call(
                Method::GET,
                "/api/admin/activities/rhythm?quarter=2027Q1",
                None,
            )
            .await;
        assert_eq!(
            next["units"][0]["kinds"]["party_lecture"]["scheduled"]
                .as_i64()
                .unwrap()
                + next["units"][1]["kinds"]["party_lecture"]["scheduled"]
                    .as_i64()
                    .unwrap(),
            1
        );
        let (s, v) = app
            .admin_call(
                Method::GET,
                "/api/admin/activities/rhythm?quarter=2026Q5",
                None,
            )
            .await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    });
}

#[backend_test]
async fn capacity_cannot_drop_below_confirmed_and_a_larger_capacity_promotes_in_order() {
    let clock = ManualClock::at(t0());
    each_backend!(spawn = spawn(&clock), |app| {
        let (_, people) = app.crowd("第一党支部", "cap", 5).await;
        let id = app.create_activity(activity("参观学习", 2)).await;
        for (_, t) in &people {
            app.signup(t, id).await;
        }
        let path = format!("/api/admin/activities/{id}");
        let before = app.activity_rows().await;
        let (s, v) = app
            .admin_call(Method::PATCH, &path, Some(json!({"capacity": 1})))
            .await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let (s, v) = app
            .admin_call(Method::PATCH, &path, Some(json!({"starts_at": "tomorrow"})))
            .await;
        assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let (s, v) = app
            .admin_call(
                Method::PATCH,
                "/api/admin/activities/424242",
                Some(json!({"capacity": 9})),
            )
            .await;
        assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
        assert_eq!(app.activity_rows().await, before);
        let (s, v) = app
            .admin_call(
                Method::PATCH,
                &path,
                Some(json!({"capacity": 4, "location": "红色教育基地"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["location"], "红色教育基地");
        assert_eq!(v["counts"]["confirmed"], 4);
        assert_eq!(v["remaining"], 0);
        let list = app.signups(id).await;
        let order: Vec<i64> = people.iter().map(|(m, _)| *m).collect();
        assert_eq!(
            ids(&list["confirmed"]),
            order[..4].to_vec(),
            "the first two waitlisted were promoted"
        );
        assert_eq!(ids(&list["waitlist"]), order[4..].to_vec());
        // A newcomer after a place frees up does not jump the waitlist.
        let (_, more) = app.crowd("第二党支部", "cap2", 1).await;
        assert_eq!(app.withdraw(&people[0].1, id).await.0, StatusCode::OK);
        assert_eq!(
            app.signup(&more[0].1, id).await.1,
            json!({"status": "waitlisted", "position": 1})
        );
        let list = app.signups(id).await;
        assert!(ids(&list["confirmed"]).contains(&people[4].0));
        // Leaving the waitlist moves the others up; the counters follow the rows.
        let (_, last) = app.crowd("第三党支部", "cap3", 1).await;
        assert_eq!(app.signup(&last[0].1, id).await.1["position"], 2);
        assert_eq!(app.withdraw(&more[0].1, id).await.0, StatusCode::OK);
        let (_, v) = app
            .call(
                Method::GET,
                &app.base,
                &format!("/api/mp/activities/{id}"),
                &last[0].1,
                None,
            )
            .await;
        assert_eq!(
            v["my_signup"],
            json!({"status": "waitlisted", "position": 1})
        );
        assert_eq!(
            app.count(&format!(
                "SELECT confirmed_count * 1000 + waitlisted_count FROM activities WHERE id = {id}"
            ))
            .await,
            4001
        );
    });
}

#[backend_test]
async fn secretaries_manage_only_activities_of_their_subtree() {
    let clock = ManualClock::at(t0());
    each_backend!(spawn = spawn(&clock), |app| {
        let mine = app.create_org_unit("第一党支部", None).await;
        let theirs = app.create_org_unit("第二党支部", None).await;
        let secretary = app
            .user_token("sec1", "secretary", Some("第一党支部"))
            .await;
        let editor = app.user_token("ed1", "editor", None).await;
        let mut body = activity("支部活动", 10);
        body["audience_org_units"] = json!([theirs]);
        let before = app.activity_rows().await;
        let (s, v) = app
            .call(
                Method::POST,
                &app.base,
                "/api/admin/activities",
                &secretary,
                Some(body.clone()),
            )
            .await;
        assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden");
        let (s, v) = app
            .call(
                Method::POST,
                &app.base,
                "/api/admin/activities",
                &secretary,
                Some(activity("全校活动", 10)),
            )
            .await;
        assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden");
        let (s, v) = app
            .call(
                Method::POST,
                &app.base,
                "/api/admin/activities",
                &editor,
                Some(activity("x", 1)),
            )
            .await;
        assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(app.activity_rows().await, before);

        body["audience_org_units"] = json!([mine]);
        let (s, v) = app
            .call(
                Method::POST,
                &app.base,
                "/api/admin/activities",
                &secretary,
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        let own = v["id"].as_i64().unwrap();
        let foreign = app.create_activity(activity("全校活动", 10)).await;
        let (_, list) = app
            .call(
                Method::GET,
                &app.base,
                "/api/admin/activities",
                &secretary,
                None,
            )
            .await;
        assert_eq!(list["total"], 1);
        assert_eq!(list["items"][0]["id"], own);
        let (_, all) = app
            .admin_call(Method::GET, "/api/admin/activities", None)
            .await;
        assert_eq!(all["total"], 2);
        for path in [
            format!("/api/admin/activities/{foreign}"),
            format!("/api/admin/activities/{foreign}/signups"),
            format!("/api/admin/activities/{foreign}/checkin-code"),
        ] {
            let (s, v) = app
                .call(Method::GET, &app.base, &path, &secretary, None)
                .await;
            assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden");
        }
        let (s, v) = app
            .call(
                Method::POST,
                &app.base,
                &format!("/api/admin/activities/{foreign}/cancel"),
                &secretary,
                None,
            )
            .await;
        assert_error(s, &v, StatusCode::FORBIDDEN, "forbidden");
        assert_eq!(
            app.count(&format!(
                "SELECT COUNT(*) FROM activities WHERE id = {foreign} AND status = 'open'"
            ))
            .await,
            1
        );
        let (s, _) = app
            .call(
                Method::GET,
                &app.base,
                &format!("/api/admin/activities/{own}/attendance"),
                &secretary,
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK);
    });
}

#[backend_test]
async fn cancelling_an_activity_tells_each_signed_up_member_once_and_closes_it() {
    let clock = ManualClock::at(t0());
    each_backend!(spawn = spawn(&clock), |app| {
        let (_, people) = app.crowd("第一党支部", "cx", 3).await;
        let id = app.create_activity(activity("观影活动", 2)).await;
        for (_, t) in &people {
            app.signup(t, id).await;
        }
        let audits = app
            .count("SELECT COUNT(*) FROM audit_log WHERE action = 'activity.cancel'")
            .await;
        let (s, v) = app
            .admin_call(
                Method::POST,
                &format!("/api/admin/activities/{id}/cancel"),
                Some(json!({"reason": "场地维修"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["status"], "cancelled");
        assert_eq!(v["cancel_reason"], "场地维修");
        assert_eq!(v["notified"], 3);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'activity.cancel'")
                .await,
            audits + 1
        );
        let before = app.activity_rows().await;
        let (s, v) = app
            .admin_call(
                Method::POST,
                &format!("/api/admin/activities/{id}/cancel"),
                None,
            )
            .await;
        assert_error(s, &v, StatusCode::CONFLICT, "activity_cancelled");
        let (s, v) = app.withdraw(&people[0].1, id).await;
        assert_error(s, &v, StatusCode::CONFLICT, "activity_cancelled");
        let (s, v) = app
            .admin_call(
                Method::GET,
                &format!("/api/admin/activities/{id}/checkin-code"),
                None,
            )
            .await;
        assert_error(s, &v, StatusCode::CONFLICT, "activity_cancelled");
        let (s, v) = app
            .admin_call(
                Method::PATCH,
                &format!("/api/admin/activities/{id}"),
                Some(json!({"capacity": 5})),
            )
            .await;
        assert_error(s, &v, StatusCode::CONFLICT, "activity_cancelled");
        let resp = app
            .http
            .post(app.url(&format!("/api/admin/activities/{id}/cancel")))
            .bearer_auth(app.admin_token().await)
            .header("content-type", "application/json")
            .body("{oops")
            .send()
            .await
            .unwrap();
        let s = resp.status();
        assert_error(
            s,
            &resp.json().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_json",
        );
        assert_eq!(app.activity_rows().await, before);
        // Gone from the mini-program list.
        let (_, v) = app
            .call(
                Method::GET,
                &app.base,
                "/api/mp/activities",
                &people[0].1,
                None,
            )
            .await;
        assert_eq!(v["items"], json!([]));
    });
}

#[backend_test]
async fn reminders_are_queued_once_per_confirmed_member_at_the_reminder_time() {
    let clock = ManualClock::at(t0());
    each_backend!(spawn = spawn(&clock), |app| {
        let (_, people) = app.crowd("第一党支部", "rm", 3).await;
        let mut body = activity("读书分享会", 2);
        body["remind_minutes"] = json!(30);
        let id = app.create_activity(body).await;
        for (_, t) in &people {
            app.signup(t, id).await;
        }
        use dangjian::activities::worker::queue_due_reminders;
        assert_eq!(queue_due_reminders(&app.state).await.unwrap(), 0, "not yet");
        clock.set(t0() + time::Duration::minutes(150));
        // Two workers (replicas) polling at once queue each reminder once.
        let (a, b) = tokio::join!(
            queue_due_reminders(&app.state),
            queue_due_reminders(&app.state)
        );
        let queued = a.unwrap() + b.unwrap();
        let reminders = app.count(&format!("SELECT COUNT(*) FROM activity_notices WHERE activity_id = {id} AND kind = 'reminder'")).await;
        // The background loop may have run too; whoever did, each confirmed member has one.
        assert!(queued <= 2);
        assert_eq!(reminders, 2);
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM activity_signups WHERE activity_id = {id} AND reminded_at IS NOT NULL")).await,
            2
        );
        assert_eq!(queue_due_reminders(&app.state).await.unwrap(), 0);
        let (_, v) = app
            .admin_call(Method::GET, &format!("/api/admin/activities/{id}"), None)
            .await;
        assert!(v["reminded_at"].is_string(), "{v}");
    });
}

#[backend_test]
async fn the_mini_program_lists_what_is_open_to_me_with_places_and_my_status() {
    let clock = ManualClock::at(t0());
    each_backend!(spawn = spawn(&clock), |app| {
        let branch = app.create_org_unit("第一党支部", None).await;
        let group = app.create_org_unit("第一党小组", Some("第一党支部")).await;
        let other = app.create_org_unit("第二党支部", None).await;
        let me = app.seed_bound_members("我", 1, group).await;
        let token = app.mp_session_token(&me[0].1, Some(me[0].0)).await;
        let everyone = app.create_activity(activity("全校活动", 3)).await;
        let mut mine = activity("支部活动", 3);
        mine["audience_org_units"] = json!([branch]);
        let mine = app.create_activity(mine).await;
        let mut theirs = activity("别的支部", 3);
        theirs["audience_org_units"] = json!([other]);
        let theirs = app.create_activity(theirs).await;
        assert_eq!(
            app.signup(&token, mine).await.1,
            json!({"status": "confirmed", "position": null})
        );

        let (s, v) = app
            .call(Method::GET, &app.base, "/api/mp/activities", &token, None)
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        let items = v["items"].as_array().unwrap();
        let listed: HashSet<i64> = items.iter().map(|i| i["id"].as_i64().unwrap()).collect();
        assert_eq!(listed, HashSet::from([everyone, mine]));
        let m = items.iter().find(|i| i["id"] == mine).unwrap();
        assert_eq!(m["remaining"], 2);
        assert_eq!(m["signup"], "open");
        assert_eq!(
            m["my_signup"],
            json!({"status": "confirmed", "position": null})
        );
        assert!(items.iter().find(|i| i["id"] == everyone).unwrap()["my_signup"].is_null());
        let (s, v) = app
            .call(
                Method::GET,
                &app.base,
                &format!("/api/mp/activities/{theirs}"),
                &token,
                None,
            )
            .await;
        assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
        let before = app.activity_rows().await;
        let (s, v) = app.signup(&token, theirs).await;
        assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
        assert_eq!(app.activity_rows().await, before);
        // An unbound user sees what is for everyone, and may not sign up.
        let unbound = app.mp_session_token("mp_visitor", None).await;
        let (_, v) = app
            .call(Method::GET, &app.base, "/api/mp/activities", &unbound, None)
            .await;
        assert_eq!(v["items"].as_array().unwrap().len(), 1);
        assert_eq!(v["items"][0]["id"], everyone);
        let (s, _) = app
            .call(Method::GET, &app.base, "/api/mp/activities", "nope", None)
            .await;
        assert_eq!(s, StatusCode::UNAUTHORIZED);
    });
}

#[backend_test]
async fn creating_an_activity_validates_every_field_and_bad_input_changes_nothing() {
    let clock = ManualClock::at(t0());
    each_backend!(spawn = spawn(&clock), |app| {
        let before = app.activity_rows().await;
        let audits = app
            .count("SELECT COUNT(*) FROM audit_log WHERE action = 'activity.create'")
            .await;
        let cases: Vec<(Value, &str)> = vec![
            (json!({"title": "x"}), "validation_failed"),
            (
                {
                    let mut b = activity("", 10);
                    b["title"] = json!("  ");
                    b
                },
                "validation_failed",
            ),
            (
                {
                    let mut b = activity("x", 0);
                    b["capacity"] = json!(0);
                    b
                },
                "validation_failed",
            ),
            (
                {
                    let mut b = activity("x", 10);
                    b["capacity"] = json!("ten");
                    b
                },
                "validation_failed",
            ),
            (
                {
                    let mut b = activity("x", 10);
                    b["starts_at"] = json!("2026-13-01");
                    b
                },
                "validation_failed",
            ),
            (
                {
                    let mut b = activity("x", 10);
                    b["signup_closes_at"] = json!(at(200));
                    b
                },
                "validation_failed",
            ),
            (
                {
                    let mut b = activity("x", 10);
                    b["ends_at"] = json!(at(100));
                    b
                },
                "validation_failed",
            ),
            (
                {
                    let mut b = activity("x", 10);
                    b["kind"] = json!("party");
                    b
                },
                "validation_failed",
            ),
            (
                {
                    let mut b = activity("x", 10);
                    b["kind"] = json!("party_lecture");
                    b
                },
                "validation_failed",
            ),
            (
                {
                    let mut b = activity("x", 10);
                    b["audience_org_units"] = json!([12345]);
                    b
                },
                "validation_failed",
            ),
        ];
        for (body, code) in cases {
            let (s, v) = app
                .admin_call(Method::POST, "/api/admin/activities", Some(body.clone()))
                .await;
            assert_error(s, &v, StatusCode::UNPROCESSABLE_ENTITY, code);
        }
        let resp = app
            .http
            .post(app.url("/api/admin/activities"))
            .bearer_auth(app.admin_token().await)
            .header("content-type", "application/json")
            .body("{\"title\": \"x\",")
            .send()
            .await
            .unwrap();
        let s = resp.status();
        assert_error(
            s,
            &resp.json().await.unwrap(),
            StatusCode::BAD_REQUEST,
            "bad_json",
        );
        let (s, v) = app
            .call(
                Method::POST,
                &app.base,
                "/api/admin/activities",
                "nope",
                Some(activity("x", 1)),
            )
            .await;
        assert_error(s, &v, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(app.activity_rows().await, before);
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'activity.create'")
                .await,
            audits
        );

        let id = app.create_activity(activity("好的活动", 10)).await;
        assert_eq!(
            app.count("SELECT COUNT(*) FROM audit_log WHERE action = 'activity.create'")
                .await,
            audits + 1
        );
        let (s, v) = app
            .admin_call(Method::GET, &format!("/api/admin/activities/{id}"), None)
            .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v["kind"], "activity");
        assert_eq!(v["starts_at"], "2026-11-10T12:00:00+08:00");
        assert_eq!(
            v["counts"],
            json!({"confirmed": 0, "waitlisted": 0, "checked_in": 0})
        );
        let (s, v) = app
            .admin_call(Method::GET, "/api/admin/activities/99999", None)
            .await;
        assert_error(s, &v, StatusCode::NOT_FOUND, "not_found");
    });
}

#[backend_test]
async fn one_member_signing_up_many_times_at_once_holds_one_place_and_others_are_unaffected() {
    let clock = ManualClock::at(t0());
    each_backend!(spawn = spawn(&clock), |app| {
        let (_, people) = app.crowd("第一党支部", "dup", 11).await;
        let id = app.create_activity(activity("限额讲座", 5)).await;
        // The same member 10 times interleaved with 10 others, all at once.
        let mut requests: Vec<(i64, &str)> = Vec::new();
        for (m, t) in &people[1..] {
            requests.push((people[0].0, &people[0].1));
            requests.push((*m, t));
        }
        let path = format!("/api/mp/activities/{id}/signup");
        let results: Vec<(i64, StatusCode, Value)> = futures_util::stream::iter(requests)
            .map(|(m, t)| {
                let (app, path) = (&app, &path);
                async move {
                    let (s, v) = app.call(Method::POST, &app.base, path, t, None).await;
                    (m, s, v)
                }
            })
            .buffer_unordered(20)
            .collect()
            .await;
        let dup: Vec<&(i64, StatusCode, Value)> = results
            .iter()
            .filter(|(m, _, _)| *m == people[0].0)
            .collect();
        assert_eq!(
            dup.iter().filter(|(_, s, _)| *s == StatusCode::OK).count(),
            1
        );
        for (_, s, v) in dup.iter().filter(|(_, s, _)| *s != StatusCode::OK) {
            assert_error(*s, v, StatusCode::CONFLICT, "already_signed_up");
        }
        for (_, s, v) in results.iter().filter(|(m, _, _)| *m != people[0].0) {
            assert_eq!(*s, StatusCode::OK, "{v}");
        }
        let list = app.signups(id).await;
        assert_eq!(list["confirmed"].as_array().unwrap().len(), 5);
        assert_eq!(list["waitlist"].as_array().unwrap().len(), 6);
        assert_eq!(
            app.count(&format!(
                "SELECT confirmed_count * 1000 + waitlisted_count FROM activities WHERE id = {id}"
            ))
            .await,
            5006
        );
        let mut positions: Vec<i64> = results
            .iter()
            .filter_map(|(_, _, v)| v["position"].as_i64())
            .collect();
        positions.sort_unstable();
        assert_eq!(positions, (1..=6).collect::<Vec<_>>());
    });
}

/// The PostgreSQL batch statement of a flash crowd, on its own: a batch is decided as the same
/// sign-ups one by one would be — places first while nobody waits, then the waitlist in order —
/// and a batch with a member already signed up changes nothing.
#[backend_test(postgres)]
async fn a_batch_of_signups_lands_exactly_as_the_same_signups_one_by_one() {
    let clock = ManualClock::at(t0());
    each_backend!(spawn = spawn(&clock), |app| {
        let (_, people) = app.crowd("批量支部", "batch", 7).await;
        let members: Vec<i64> = people.iter().map(|(m, _)| *m).collect();
        let id = app.create_activity(activity("批量报名", 3)).await;
        clock.set(t0() + time::Duration::minutes(1));
        let now = dangjian::platform::time::unix_ms(t0() + time::Duration::minutes(1));
        let store_batch = |ms: Vec<i64>| {
            let db = app.state.db.clone();
            async move {
                let mut tx = db.begin_write().await.unwrap();
                let r = dangjian::activities::store::sign_up_batch_in(&mut tx, id, &ms, now).await;
                match r {
                    Ok(v) => {
                        tx.commit().await.unwrap();
                        Ok(v)
                    }
                    Err(e) => Err(e),
                }
            }
        };
        // Two sign up first, on their own (one at a time through the API).
        for (_, token) in &people[..2] {
            let (s, v) = app
                .call(
                    Method::POST,
                    &app.base,
                    &format!("/api/mp/activities/{id}/signup"),
                    token,
                    None,
                )
                .await;
            assert_eq!(
                (s, v["status"].as_str()),
                (StatusCode::OK, Some("confirmed")),
                "{v}"
            );
        }
        // Then a batch of four: one place left, then the waitlist from 1.
        let landed = store_batch(members[2..6].to_vec()).await.unwrap().unwrap();
        let got: Vec<Option<i64>> = landed.iter().map(|l| l.position).collect();
        assert_eq!(got, vec![None, Some(1), Some(2), Some(3)]);
        let seqs: Vec<i64> = landed.iter().map(|l| l.seq).collect();
        assert_eq!(seqs, vec![3, 4, 5, 6]);
        // A batch with someone already signed up is refused as a whole and changes nothing.
        let before = app.count("SELECT signup_seq * 1000 + confirmed_count * 100 + waitlisted_count FROM activities").await;
        let err = store_batch(vec![members[6], members[2]]).await.unwrap_err();
        assert!(
            matches!(&err, sqlx::Error::Database(d) if d.is_unique_violation()),
            "{err}"
        );
        assert_eq!(
            app.count("SELECT signup_seq * 1000 + confirmed_count * 100 + waitlisted_count FROM activities").await,
            before
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM activity_signups").await, 6);
        // Closed for sign-up (after the window): nothing at all.
        clock.set(t0() + time::Duration::days(400));
        let later = dangjian::platform::time::unix_ms(t0() + time::Duration::days(400));
        let mut tx = app.state.db.begin_write().await.unwrap();
        assert!(
            dangjian::activities::store::sign_up_batch_in(&mut tx, id, &[members[6]], later)
                .await
                .unwrap()
                .is_none()
        );
        tx.rollback().await.unwrap();
    });
}
