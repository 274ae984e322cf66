//! Notices to members through the push machinery, over real HTTP to the fake WeChat, on every
//! backend: activity cancellations, waitlist promotions and reminders (each told once, over the
//! first channel that reaches the member, the rest skipped with a reason; the worker run twice or
//! by two replicas sends nothing more; a sender killed mid-send leaves `unknown`, never resent),
//! dues reminders (once per interval, never to paid members, on request and automatically), and
//! consent events delivered twice crediting once.

use dangjian_test_macros::backend_test;

use std::{collections::HashMap, sync::Arc, time::Duration};

use dangjian::{
    activities::worker::{deliver_notices, queue_due_reminders},
    platform::clock::ManualClock,
};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::Row;
use time::{format_description::well_known::Rfc3339, OffsetDateTime};

use crate::{
    each_backend,
    helpers::{Spawn, TestApp},
};

const T0: &str = "2026-11-10T09:00:00+08:00";
const ACTIVITY_TEMPLATE: &str = "tpl-activity-notice";
const DUES_TEMPLATE: &str = "tpl-dues-reminder";

fn t0() -> OffsetDateTime {
    OffsetDateTime::parse(T0, &Rfc3339).unwrap()
}

fn at(minutes: i64) -> String {
    (t0() + time::Duration::minutes(minutes))
        .format(&Rfc3339)
        .unwrap()
}

/// The app's settings for these tests, its clock set to T0 (each backend starts afresh).
fn spawn(clock: &ManualClock, extra: &[(&'static str, &str)]) -> Spawn {
    spawn_at(clock, t0(), extra)
}

fn spawn_at(clock: &ManualClock, start: OffsetDateTime, extra: &[(&'static str, &str)]) -> Spawn {
    clock.set(start);
    let mut overrides: Vec<(&'static str, String)> = vec![
        ("rate_limit_mp_per_minute", "10000000".into()),
        ("push_rate_per_second", "0".into()),
        ("push_poll_ms", "20".into()),
        ("notice_poll_ms", "50".into()),
        ("activity_notice_channels", "subscribe,custom".into()),
        ("activity_cancelled_template_id", ACTIVITY_TEMPLATE.into()),
        ("activity_promoted_template_id", ACTIVITY_TEMPLATE.into()),
        ("activity_reminder_template_id", ACTIVITY_TEMPLATE.into()),
        ("dues_reminder_channels", "subscribe".into()),
        ("dues_reminder_template_id", DUES_TEMPLATE.into()),
        ("dues_reminder_auto", "false".into()),
        ("pay_notify_url", "https://dangjian.test/pay/notify".into()),
        ("dues_requery_after_secs", "3600".into()),
    ];
    for (k, v) in extra {
        overrides.retain(|(key, _)| key != k);
        overrides.push((k, (*v).to_owned()));
    }
    Spawn {
        overrides,
        clock: Some(Arc::new(clock.clone())),
        ..Default::default()
    }
}

/// The messages the fake WeChat received on `channel` ("subscribe", "custom", ...), per recipient.
fn received(app: &TestApp, channel: &str) -> HashMap<String, Vec<Value>> {
    let mut m: HashMap<String, Vec<Value>> = HashMap::new();
    for msg in app.fake.outbox() {
        if msg.channel == channel {
            m.entry(msg.to_user.unwrap_or_default())
                .or_default()
                .push(msg.body);
        }
    }
    m
}

/// Wait (bounded) until no notice is pending and no delivery row is pending or in flight.
async fn settled(app: &TestApp) {
    app.eventually(
        "SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM activity_notices WHERE status = 'pending') \
         OR EXISTS (SELECT 1 FROM push_deliveries WHERE status IN ('pending', 'in_flight')) \
         OR EXISTS (SELECT 1 FROM pushes WHERE status = 'running') THEN 0 ELSE 1 END AS BIGINT)",
    )
    .await;
}

/// How the delivery row of member `member`'s notice of `kind` ended: (status, error_code).
async fn notice_outcome(app: &TestApp, member: i64, kind: &str) -> (String, Option<String>) {
    let r = sqlx::query(
        "SELECT d.status, d.error_code FROM activity_notices n JOIN push_deliveries d ON d.id = n.delivery_id \
         WHERE n.member_id = $1 AND n.kind = $2 AND n.status = 'queued' AND d.member_id = n.member_id",
    )
    .bind(member)
    .bind(kind)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    (r.get(0), r.get(1))
}

impl TestApp {
    async fn notice_admin(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = self.admin_token().await;
        self.call(method, &self.base, path, &token, body).await
    }

    async fn notice_activity(&self, title: &str, capacity: i64, remind_minutes: i64) -> i64 {
        let body = json!({
            "title": title, "capacity": capacity, "location": "学院报告厅",
            "signup_opens_at": at(-60), "signup_closes_at": at(120), "starts_at": at(180), "ends_at": at(300),
            "remind_minutes": remind_minutes,
        });
        let (status, v) = self
            .notice_admin(Method::POST, "/api/admin/activities", Some(body))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        v["id"].as_i64().unwrap()
    }

    /// `n` bound members of a new org unit: (member id, mini-program openid, mp token).
    async fn notice_members(
        &self,
        unit: &str,
        prefix: &str,
        n: usize,
    ) -> Vec<(i64, String, String)> {
        let unit = self.create_org_unit(unit, None).await;
        let mut out = Vec::new();
        for (id, openid) in self.seed_bound_members(prefix, n, unit).await {
            let token = self.mp_session_token(&openid, Some(id)).await;
            out.push((id, openid, token));
        }
        out
    }

    async fn sign_up_for(&self, token: &str, id: i64) -> Value {
        let (status, v) = self
            .call(
                Method::POST,
                &self.base,
                &format!("/api/mp/activities/{id}/signup"),
                token,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    /// An account follower who interacted `hours_ago` hours ago (by the app's clock), as member
    /// `member`'s account openid.
    async fn member_follows(&self, member: i64, prefix: &str, hours_ago: i64) -> String {
        let now = self.state.clock.unix_ms();
        let oa = self
            .seed_followers(prefix, 1, Some(now - hours_ago * 3_600_000))
            .await
            .remove(0);
        self.set_oa_openid(member, &oa).await;
        oa
    }
}

#[backend_test]
async fn cancelling_an_activity_tells_each_member_once_on_the_first_channel_that_reaches_them() {
    let clock = ManualClock::at(t0());
    each_backend!(spawn = spawn(&clock, &[]), |app| {
        let people = app.notice_members("第一党支部", "nc", 4).await;
        let id = app
            .notice_activity("主题党日：参观红色教育基地", 10, 0)
            .await;
        for (_, _, token) in &people {
            app.sign_up_for(token, id).await;
        }
        // 0: consent for the template in the mini-program → subscribe message.
        app.grant_mp("nc0", ACTIVITY_TEMPLATE).await;
        // 1: no consent, active on the account within 48 h → customer-service message.
        let oa1 = app.member_follows(people[1].0, "nca", 2).await;
        // 2: no consent, last active 50 h ago → skipped outside_48h.
        let oa2 = app.member_follows(people[2].0, "ncb", 50).await;
        // 3: no consent, no account openid → skipped no_account_openid.
        let (status, v) = app
            .notice_admin(
                Method::POST,
                &format!("/api/admin/activities/{id}/cancel"),
                Some(json!({"reason": "天气原因"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        // The background loop, this test and a second replica hand notices over at once.
        let replica = app.sibling().await;
        let (a, b) = tokio::join!(deliver_notices(&app.state), deliver_notices(&replica.state));
        assert!(a.unwrap() + b.unwrap() <= 4);
        settled(&app).await;
        replica.stop().await;

        assert_eq!(app.count("SELECT COUNT(*) FROM activity_notices WHERE status = 'queued' AND push_id IS NOT NULL AND delivery_id IS NOT NULL").await, 4);
        assert_eq!(
            app.count("SELECT COUNT(DISTINCT delivery_id) FROM activity_notices")
                .await,
            4
        );
        let subscribe = received(&app, "subscribe");
        assert_eq!(subscribe.len(), 1, "{subscribe:?}");
        let body = &subscribe[&people[0].1];
        assert_eq!(body.len(), 1, "told once");
        assert_eq!(body[0]["template_id"], ACTIVITY_TEMPLATE);
        assert_eq!(body[0]["data"]["thing4"]["value"], "活动已取消：天气原因");
        assert_eq!(body[0]["data"]["time2"]["value"], "2026年11月10日 12:00");
        assert_eq!(body[0]["page"], format!("pages/activity/index?id={id}"));
        let custom = received(&app, "custom");
        assert_eq!(custom.len(), 1, "{custom:?}");
        let text = custom[&oa1][0]["text"]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(text.starts_with("【活动取消】"), "{text}");
        assert!(
            text.contains("主题党日：参观红色教育基地")
                && text.contains("学院报告厅")
                && text.contains("天气原因"),
            "{text}"
        );
        assert!(!custom.contains_key(&oa2));
        assert_eq!(
            notice_outcome(&app, people[0].0, "cancelled").await,
            ("sent".into(), None)
        );
        assert_eq!(
            notice_outcome(&app, people[1].0, "cancelled").await,
            ("sent".into(), None)
        );
        assert_eq!(
            notice_outcome(&app, people[2].0, "cancelled").await,
            ("skipped".into(), Some("outside_48h".into()))
        );
        assert_eq!(
            notice_outcome(&app, people[3].0, "cancelled").await,
            ("skipped".into(), Some("no_account_openid".into()))
        );
        // The one-time consent was spent.
        assert_eq!(
            app.count(&format!(
                "SELECT credits FROM subscribe_grants WHERE openid = '{}'",
                people[0].1
            ))
            .await,
            0
        );
        // The worker run again sends nothing more.
        let before = app.fake.outbox_len();
        assert_eq!(deliver_notices(&app.state).await.unwrap(), 0);
        settled(&app).await;
        assert_eq!(app.fake.outbox_len(), before);
    });
}

#[backend_test]
async fn a_promotion_and_a_reminder_are_each_told_exactly_once() {
    let clock = ManualClock::at(t0());
    each_backend!(
        spawn = spawn(&clock, &[("activity_notice_channels", "custom")]),
        |app| {
            let people = app.notice_members("第二党支部", "np", 3).await;
            let oa: Vec<String> = {
                let mut v = Vec::new();
                for (i, (member, _, _)) in people.iter().enumerate() {
                    v.push(app.member_follows(*member, &format!("np{i}"), 1).await);
                }
                v
            };
            let id = app.notice_activity("读书分享会", 1, 30).await;
            assert_eq!(
                app.sign_up_for(&people[0].2, id).await["status"],
                "confirmed"
            );
            assert_eq!(
                app.sign_up_for(&people[1].2, id).await["status"],
                "waitlisted"
            );
            assert_eq!(
                app.sign_up_for(&people[2].2, id).await["status"],
                "waitlisted"
            );
            let (status, v) = app
                .call(
                    Method::DELETE,
                    &app.base,
                    &format!("/api/mp/activities/{id}/signup"),
                    &people[0].2,
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{v}");
            let (a, b) = tokio::join!(deliver_notices(&app.state), deliver_notices(&app.state));
            a.unwrap();
            b.unwrap();
            settled(&app).await;
            let custom = received(&app, "custom");
            assert_eq!(custom.len(), 1, "only the promoted member: {custom:?}");
            let told = &custom[&oa[1]];
            assert_eq!(told.len(), 1);
            assert!(
                told[0]["text"]["content"]
                    .as_str()
                    .unwrap()
                    .starts_with("【候补转正】"),
                "{told:?}"
            );

            // The reminder time (start − 30 min): the one confirmed member, once.
            clock.set(t0() + time::Duration::minutes(151));
            let (a, b) = tokio::join!(
                queue_due_reminders(&app.state),
                queue_due_reminders(&app.state)
            );
            a.unwrap();
            b.unwrap();
            let (a, b) = tokio::join!(deliver_notices(&app.state), deliver_notices(&app.state));
            a.unwrap();
            b.unwrap();
            settled(&app).await;
            assert_eq!(deliver_notices(&app.state).await.unwrap(), 0);
            let custom = received(&app, "custom");
            let told = &custom[&oa[1]];
            assert_eq!(told.len(), 2, "promotion and reminder: {told:?}");
            let reminder = told[1]["text"]["content"].as_str().unwrap();
            assert!(
                reminder.starts_with("【活动提醒】") && reminder.contains("读书分享会"),
                "{reminder}"
            );
            assert!(
                !custom.contains_key(&oa[0]) && !custom.contains_key(&oa[2]),
                "{custom:?}"
            );
            assert_eq!(
                notice_outcome(&app, people[1].0, "promoted").await.0,
                "sent"
            );
            assert_eq!(
                notice_outcome(&app, people[1].0, "reminder").await.0,
                "sent"
            );
        }
    );
}

#[backend_test]
async fn a_sender_killed_mid_notice_leaves_only_started_sends_unknown_and_never_resends_them() {
    let clock = ManualClock::at(t0());
    each_backend!(
        spawn = spawn(
            &clock,
            &[
                ("activity_notice_channels", "custom"),
                ("push_workers", "0"),
                ("push_lease_secs", "2")
            ]
        ),
        |app| {
            let people = app.notice_members("第三党支部", "nk", 3).await;
            let mut oa = Vec::new();
            for (i, (member, _, _)) in people.iter().enumerate() {
                oa.push(app.member_follows(*member, &format!("nk{i}"), 1).await);
            }
            let id = app.notice_activity("党课：新时代党的建设", 10, 0).await;
            for (_, _, token) in &people {
                app.sign_up_for(token, id).await;
            }
            let (status, _) = app
                .notice_admin(
                    Method::POST,
                    &format!("/api/admin/activities/{id}/cancel"),
                    Some(json!({})),
                )
                .await;
            assert_eq!(status, StatusCode::OK);
            deliver_notices(&app.state).await.unwrap();
            // The background loop may hold them (SKIP LOCKED): wait for whoever took them.
            app.eventually(
                "SELECT CAST(CASE WHEN COUNT(*) = 3 THEN 1 ELSE 0 END AS BIGINT) FROM activity_notices WHERE status = 'queued'",
            )
            .await;
            let push_id = app.count("SELECT MAX(push_id) FROM activity_notices").await;
            // A sender claims two rows, starts the call of one and dies before it records anything.
            let now = app.state.clock.unix_ms();
            let claimed = dangjian::push::store::claim(
                &app.state.db,
                push_id,
                "dead-worker",
                2,
                now,
                now + 2_000,
            )
            .await
            .unwrap();
            assert_eq!(claimed.len(), 2);
            let sending = &claimed[0];
            let marked = dangjian::push::store::mark_sending(
                &app.state.db,
                "dead-worker",
                &[sending.id],
                now,
            )
            .await
            .unwrap();
            assert_eq!(marked, vec![sending.id]);
            clock.advance(Duration::from_secs(3));
            // A new worker process: the row whose call had started becomes `unknown`; the one only
            // claimed goes back to pending and is sent with the third.
            let workers = app.worker_replica(2).await;
            settled(&app).await;
            workers.stop().await;
            let custom = received(&app, "custom");
            assert_eq!(custom.len(), 2, "{custom:?}");
            assert!(
                !custom.contains_key(&sending.openid),
                "{} was resent",
                sending.openid
            );
            assert!(custom.contains_key(&claimed[1].openid), "{custom:?}");
            assert_eq!(
                app.count(&format!("SELECT COUNT(*) FROM push_deliveries WHERE push_id = {push_id} AND status = 'unknown' AND error_code = 'lease_expired'")).await,
                1
            );
            assert_eq!(deliver_notices(&app.state).await.unwrap(), 0);
            assert_eq!(
                app.count("SELECT COUNT(*) FROM activity_notices WHERE status = 'queued'")
                    .await,
                3
            );
        }
    );
}

// ---------------------------------------------------------------- dues reminders

fn month_of(clock: &ManualClock) -> String {
    use dangjian::platform::clock::Clock;
    dangjian::dues::rules::Month::of_unix_ms(clock.unix_ms()).to_string()
}

async fn remind(app: &TestApp, token: &str, month: &str) -> (StatusCode, Value) {
    app.dues_call(
        Method::POST,
        &format!("/api/admin/dues/months/{month}/remind"),
        Some(token),
        None,
    )
    .await
}

/// Three bound members with a bill of this month each; the third has paid. Returns their codes
/// (mini-program openid `mp_<code>`) and the month.
async fn dues_roster(app: &TestApp, clock: &ManualClock) -> ([&'static str; 3], String) {
    app.dues_import(json!([
        {"name": "党员甲", "phone": "13900000001", "category": "employed", "monthly_income_fen": 400_000, "org_unit": "机关党支部"},
        {"name": "党员乙", "phone": "13900000002", "category": "employed", "monthly_income_fen": 600_000, "org_unit": "机关党支部"},
        {"name": "党员丙", "phone": "13900000003", "category": "retired", "monthly_income_fen": 300_000, "org_unit": "机关党支部"},
    ]))
    .await;
    let codes = ["dra", "drb", "drc"];
    for (code, (name, phone)) in codes.iter().zip([
        ("党员甲", "13900000001"),
        ("党员乙", "13900000002"),
        ("党员丙", "13900000003"),
    ]) {
        app.dues_member_token(code, name, phone).await;
    }
    let month = month_of(clock);
    let token = app.admin_token().await;
    let (status, v) = app
        .dues_call(
            Method::POST,
            "/api/admin/dues/assessments",
            Some(&token),
            Some(json!({"month": month})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    sqlx::query("UPDATE dues_bills SET status = 'paid', paid_fen = amount_fen WHERE member_id = (SELECT id FROM members WHERE name = '党员丙')")
        .execute(app.state.db.pool())
        .await
        .unwrap();
    (codes, month)
}

async fn wait_pushes_done(app: &TestApp) {
    app.eventually(
        "SELECT CAST(CASE WHEN EXISTS (SELECT 1 FROM push_deliveries WHERE status IN ('pending', 'in_flight')) \
         OR EXISTS (SELECT 1 FROM pushes WHERE status = 'running') THEN 0 ELSE 1 END AS BIGINT)",
    )
    .await;
}

#[backend_test]
async fn dues_reminders_go_once_per_interval_and_never_to_paid_members() {
    let start = OffsetDateTime::now_utc();
    let clock = ManualClock::at(start);
    each_backend!(spawn = spawn_at(&clock, start, &[]), |app| {
        let (codes, month) = dues_roster(&app, &clock).await;
        app.grant_mp(codes[0], DUES_TEMPLATE).await;
        let token = app.admin_token().await;
        let (status, v) = remind(&app, &token, &month).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["month"], month.as_str());
        assert_eq!(v["queued"], 2, "the two unpaid bills: {v}");
        wait_pushes_done(&app).await;
        let subscribe = received(&app, "subscribe");
        assert_eq!(subscribe.len(), 1, "{subscribe:?}");
        let body = &subscribe[&format!("mp_{}", codes[0])];
        assert_eq!(body.len(), 1);
        assert_eq!(body[0]["template_id"], DUES_TEMPLATE);
        assert!(
            body[0]["data"]["thing1"]["value"]
                .as_str()
                .unwrap()
                .ends_with("月党费"),
            "{body:?}"
        );
        let push_id = v["push_ids"][0].as_i64().unwrap();
        let report = app.push(&token, push_id).await;
        assert_eq!(report["skipped_reasons"]["no_consent"], 1, "{report}");
        assert_eq!(app.audit_count("dues_month.remind").await, 1);

        // Inside the interval: nothing, however often asked.
        let (status, v) = remind(&app, &token, &month).await;
        assert_eq!(
            (status, v["queued"].clone()),
            (StatusCode::OK, json!(0)),
            "{v}"
        );
        let automatic = dangjian::dues::service::remind_due(&app.state)
            .await
            .unwrap();
        assert_eq!(automatic, 0);

        // Eight days later: the unpaid bills again (the first member's consent is spent now).
        clock.advance(Duration::from_secs(8 * 24 * 3600));
        let token = app.admin_token().await;
        let (a, b) = tokio::join!(remind(&app, &token, &month), remind(&app, &token, &month));
        assert_eq!(a.0, StatusCode::OK, "{}", a.1);
        assert_eq!(b.0, StatusCode::OK, "{}", b.1);
        assert_eq!(
            a.1["queued"].as_i64().unwrap() + b.1["queued"].as_i64().unwrap(),
            2,
            "{a:?} {b:?}"
        );
        wait_pushes_done(&app).await;
        assert_eq!(
            received(&app, "subscribe")[&format!("mp_{}", codes[0])].len(),
            1
        );
        // The paid member: never a reminder row, never a delivery.
        assert_eq!(
            app.count("SELECT COUNT(*) FROM dues_reminders r JOIN dues_bills b ON b.id = r.bill_id WHERE b.status = 'paid'").await,
            0
        );
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_reminders").await, 4);

        // Bad input changes nothing.
        let (status, v) = remind(&app, &token, "2026-13").await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
        let (status, v) = remind(&app, &token, "2020-01").await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
        let (status, v) = app
            .dues_call(
                Method::POST,
                &format!("/api/admin/dues/months/{month}/settle"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
        clock.advance(Duration::from_secs(8 * 24 * 3600));
        let token = app.admin_token().await;
        let (status, v) = remind(&app, &token, &month).await;
        assert_eq!(status, StatusCode::CONFLICT, "{v}");
        assert_eq!(v["error"]["code"], "month_settled");
        assert_eq!(app.count("SELECT COUNT(*) FROM dues_reminders").await, 4);
    });
}

#[backend_test]
async fn automatic_dues_reminders_wait_one_interval_after_the_bill_and_then_go_once() {
    let clock = ManualClock::at(OffsetDateTime::now_utc());
    each_backend!(
        spawn = spawn(&clock, &[("dues_reminder_channels", "custom")]),
        |app| {
            let (_, _) = dues_roster(&app, &clock).await;
            use dangjian::dues::service::remind_due;
            assert_eq!(remind_due(&app.state).await.unwrap(), 0, "bills just made");
            clock.advance(Duration::from_secs(7 * 24 * 3600 + 60));
            let (a, b) = tokio::join!(remind_due(&app.state), remind_due(&app.state));
            assert_eq!(a.unwrap() + b.unwrap(), 2);
            assert_eq!(remind_due(&app.state).await.unwrap(), 0);
            wait_pushes_done(&app).await;
            // Nobody follows the account: each unpaid member is skipped with the reason.
            assert_eq!(
            app.count("SELECT COUNT(*) FROM push_deliveries WHERE status = 'skipped' AND error_code = 'no_account_openid'").await,
            2
        );
            assert_eq!(
                app.count("SELECT COUNT(*) FROM dues_bills WHERE reminded_at IS NOT NULL")
                    .await,
                2
            );
        }
    );
}

// ---------------------------------------------------------------- consent

#[backend_test]
async fn a_consent_event_delivered_twice_adds_one_credit() {
    let start = OffsetDateTime::now_utc();
    let clock = ManualClock::at(start);
    each_backend!(spawn = spawn_at(&clock, start, &[]), |app| {
        let event = |create_time: i64| {
            format!(
                "<xml><ToUserName><![CDATA[{}]]></ToUserName><FromUserName><![CDATA[o_consent]]></FromUserName>\
                 <CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>\
                 <Event><![CDATA[subscribe_msg_popup_event]]></Event><SubscribeMsgPopupEvent>\
                 <List><TemplateId><![CDATA[tpl-a]]></TemplateId><SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>2</PopupScene></List>\
                 <List><TemplateId><![CDATA[tpl-b]]></TemplateId><SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>2</PopupScene></List>\
                 </SubscribeMsgPopupEvent></xml>",
                crate::helpers::ACCOUNT
            )
        };
        let credits = |t: &'static str| {
            format!("SELECT COALESCE(MAX(credits), 0) FROM subscribe_grants WHERE app = 'oa' AND openid = 'o_consent' AND template_id = '{t}'")
        };
        let ts = time::OffsetDateTime::now_utc().unix_timestamp();
        let xml = event(ts);
        let r = app.wechat_post(&xml).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(app.count(&credits("tpl-a")).await, 1);
        // WeChat delivers the same event again after the de-duplication window (or after a
        // partial failure abandoned the claim): it reaches the handler a second time.
        let msg = wechat::message::InboundMessage::from_xml(&xml).unwrap();
        dangjian::push::reports::handle(&app.state, &msg)
            .await
            .unwrap();
        dangjian::push::reports::handle(&app.state, &msg)
            .await
            .unwrap();
        assert_eq!(
            app.count(&credits("tpl-a")).await,
            1,
            "one event, one credit"
        );
        assert_eq!(app.count(&credits("tpl-b")).await, 1);
        // Another popup (another CreateTime) is another grant.
        let msg = wechat::message::InboundMessage::from_xml(&event(ts + 1)).unwrap();
        dangjian::push::reports::handle(&app.state, &msg)
            .await
            .unwrap();
        assert_eq!(app.count(&credits("tpl-a")).await, 2);
        assert_eq!(app.count(&credits("tpl-b")).await, 2);
    });
}
