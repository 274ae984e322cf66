//! `GET /api/openapi.json`: OpenAPI 3 of `/api/mp` and `/api/admin`.
//!
//! The admin paths come from the one admin route table (so a route can't be added without
//! appearing here, with the permission it requires); the contract's main request bodies are
//! described as schemas.

use axum::{extract::State, Json};
use serde_json::{json, Map, Value};

use crate::{app::AppState, http::routes::RouteSpec, platform::roles::Permission};

/// Mini-program routes: (method, path, summary).
const MP_ROUTES: &[(&str, &str, &str)] = &[
    (
        "post",
        "/api/mp/login",
        "wx.login code → {token, expires_at, member|null} (code2Session)",
    ),
    (
        "post",
        "/api/mp/bind",
        "Bind to the roster: {name, phone_code} (getPhoneNumber) → {member}",
    ),
    (
        "get",
        "/api/mp/me",
        "The logged-in user: {openid_bound, member|null}",
    ),
    (
        "post",
        "/api/mp/subscriptions",
        "Record wx.requestSubscribeMessage results: {template_ids, results}",
    ),
    (
        "get",
        "/api/mp/articles",
        "Published articles, newest first (?category=&page=)",
    ),
    (
        "get",
        "/api/mp/articles/{id}",
        "One published article with body_html",
    ),
    (
        "get",
        "/api/mp/categories",
        "Article categories in menu order",
    ),
    (
        "get",
        "/api/mp/banners",
        "Focus banners valid now, in order",
    ),
    (
        "get",
        "/api/mp/board",
        "The message board: approved posts with the editors' answers, newest first (?page=)",
    ),
    (
        "post",
        "/api/mp/board",
        "Post on the board: {content} → 201 {id, status: pending|rejected}; public only after an editor approves",
    ),
    (
        "get",
        "/api/mp/submissions",
        "The member's own submissions (投稿), newest first, with status and receipt_no",
    ),
    (
        "post",
        "/api/mp/submissions",
        "Submit: {title, content, images: [url]} → 201 {id, receipt_no, status: pending|rejected}",
    ),
    (
        "get",
        "/api/mp/development",
        "发展党员: my stage, the next step (earliest, due) and open deadlines; 403 not_bound, 404 without a record",
    ),
    (
        "post",
        "/api/mp/development/reports",
        "Submit a thought report (思想汇报): {content} → 201 {id, date}; counts for the quarterly rule in probation",
    ),
    (
        "get",
        "/api/mp/activities",
        "Activities open to me (my org units, or everyone) that have not ended: remaining places, my_signup",
    ),
    (
        "get",
        "/api/mp/activities/{id}",
        "One activity with my_signup: {status, position}|null (position: 1-based waitlist place, null when confirmed)",
    ),
    (
        "post",
        "/api/mp/activities/{id}/signup",
        "Sign up → {status: confirmed|waitlisted, position: waitlist place|null}; 403 not_bound, 409 signup_not_open|signup_closed|activity_cancelled|already_signed_up",
    ),
    (
        "delete",
        "/api/mp/activities/{id}/signup",
        "Withdraw → {status: cancelled}; a confirmed place goes to the first waitlisted member",
    ),
    (
        "post",
        "/api/mp/activities/{id}/checkin",
        "Check in with the venue's QR ticket: {ticket} → {status: present|late, checked_in_at}; 422 ticket_invalid|ticket_expired|ticket_other_activity, 409 checkin_not_open|checkin_closed|already_checked_in",
    ),
    (
        "get",
        "/api/mp/dues",
        "My dues bills, newest month first: {bills: [{id, month, amount_fen, status: unpaid|paying|paid, paid_at}]}",
    ),
    (
        "post",
        "/api/mp/dues/{id}/pay",
        "Pay a bill with WeChat Pay: → {timeStamp, nonceStr, package, signType: RSA, paySign} for wx.requestPayment; someone else's or unknown → 404, paid → 409",
    ),
];

fn error_schema() -> Value {
    json!({
        "type": "object",
        "required": ["error"],
        "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "example": "validation_failed"},
            "message": {"type": "string"}
        }}}
    })
}

fn schemas() -> Value {
    json!({
        "Error": error_schema(),
        "LoginRequest": {"type": "object", "required": ["username", "password"], "properties": {
            "username": {"type": "string"}, "password": {"type": "string", "format": "password"}}},
        "LoginResponse": {"type": "object", "properties": {
            "token": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"}, "user": {"type": "object"}}},
        "MemberImportRow": {"type": "object", "required": ["name", "phone", "category", "org_unit"], "properties": {
            "name": {"type": "string"}, "phone": {"type": "string"},
            "category": {"type": "string", "enum": ["employed", "retired", "student", "unemployed", "other"]},
            "monthly_income_fen": {"type": "integer", "format": "int64"}, "org_unit": {"type": "string"},
            "id_number": {"type": "string"}, "party_status": {"type": "string", "enum": ["full", "probationary"]}}},
        "ArticleInput": {"type": "object", "required": ["title", "summary", "body_md", "category"], "properties": {
            "title": {"type": "string"}, "summary": {"type": "string"}, "body_md": {"type": "string"},
            "category": {"type": "string"}, "cover_url": {"type": "string"}, "author": {"type": "string"},
            "source": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}}},
        "PushInput": {"type": "object", "required": ["article_ids", "audience", "channel"], "properties": {
            "article_ids": {"type": "array", "items": {"type": "integer", "format": "int64"}},
            "audience": {"type": "object", "required": ["kind"], "properties": {
                "kind": {"type": "string", "enum": ["all", "tag", "org_unit", "members"]},
                "ids": {"type": "array", "items": {"type": "integer", "format": "int64"}}}},
            "channel": {"type": "string", "enum": ["template", "mass", "custom", "subscribe"]},
            "scheduled_at": {"type": "string", "format": "date-time", "nullable": true}}},
        "PushStatus": {"type": "object", "properties": {
            "id": {"type": "integer"},
            "status": {"type": "string", "enum": ["scheduled", "running", "paused", "completed", "cancelled", "failed"]},
            "counts": {"type": "object", "properties": {
                "pending": {"type": "integer"}, "in_flight": {"type": "integer"}, "sent": {"type": "integer"},
                "failed": {"type": "integer"}, "unknown": {"type": "integer"}, "skipped": {"type": "integer"}}}}},
        "StatsReport": stats_schema()
    })
}

/// `GET /api/admin/stats`: sections are null when the session lacks the permission of the work
/// they count (dues ManageDues, attendance ManageActivities — both within the org-unit scope —,
/// followers and pushes ManagePushes, moderation Moderate). Rates are fractions 0..1 with four
/// decimals, null when there is nothing to divide by.
fn stats_schema() -> Value {
    let int = || json!({"type": "integer"});
    let rate = || json!({"type": "number", "nullable": true, "minimum": 0, "maximum": 1});
    let obj = |props: &[(&str, Value)]| {
        let mut m = Map::new();
        for (k, v) in props {
            m.insert((*k).into(), v.clone());
        }
        json!({"type": "object", "properties": Value::Object(m)})
    };
    let arr = |items: Value| json!({"type": "array", "items": items});
    let s = || json!({"type": "string"});
    let dues = [
        ("bills", int()),
        ("paid", int()),
        ("unpaid", int()),
        ("exempt", int()),
        ("due_fen", int()),
        ("paid_fen", int()),
        ("rate", rate()),
    ];
    let att = [
        ("meetings", int()),
        ("expected", int()),
        ("attended", int()),
        ("present", int()),
        ("late", int()),
        ("leave", int()),
        ("absent", int()),
        ("rate", rate()),
    ];
    let with = |extra: &[(&str, Value)], base: &[(&str, Value)]| {
        let v: Vec<(&str, Value)> = extra.iter().chain(base).cloned().collect();
        obj(&v)
    };
    let unit = [("org_unit_id", int()), ("org_unit", s())];
    let month = [("month", s())];
    let fol = [
        ("subscribed", int()),
        ("unsubscribed", int()),
        ("net", int()),
    ];
    let del = [
        ("total", int()),
        ("sent", int()),
        ("failed", int()),
        ("unknown", int()),
        ("skipped", int()),
        ("pending", int()),
        ("delivery_rate", rate()),
        ("failure_rate", rate()),
    ];
    let modr = [
        ("month", s()),
        (
            "kind",
            json!({"type": "string", "enum": ["submissions", "board_posts"]}),
        ),
        ("count", int()),
        ("approved", int()),
        ("rejected", int()),
        ("pending", int()),
        (
            "median_decision_seconds",
            json!({"type": "integer", "nullable": true}),
        ),
    ];
    let unit_month: Vec<(&str, Value)> = month.iter().chain(&unit).cloned().collect();
    obj(&[
        ("from", json!({"type": "string", "example": "2026-06"})),
        ("to", json!({"type": "string", "example": "2026-11"})),
        (
            "org_unit",
            json!({"type": "object", "nullable": true, "properties": {"id": int(), "name": s()}}),
        ),
        (
            "dues",
            obj(&[
                ("by_unit_month", arr(with(&unit_month, &dues))),
                ("by_month", arr(with(&month, &dues))),
                ("by_unit", arr(with(&unit, &dues))),
            ]),
        ),
        (
            "attendance",
            obj(&[
                ("by_unit", arr(with(&unit, &att))),
                ("by_month", arr(with(&month, &att))),
                (
                    "members",
                    json!({"type": "array", "nullable": true, "items": with(&[("member_id", int()), ("name", s()), ("org_unit_id", int()), ("org_unit", s())], &att)}),
                ),
            ]),
        ),
        (
            "followers",
            obj(&[
                ("subscribed_now", int()),
                ("daily", arr(with(&[("date", s())], &fol))),
                ("monthly", arr(with(&month, &fol))),
            ]),
        ),
        (
            "pushes",
            obj(&[
                (
                    "pushes",
                    arr(with(
                        &[
                            ("id", int()),
                            ("channel", s()),
                            ("status", s()),
                            (
                                "scheduled_at",
                                json!({"type": "string", "format": "date-time"}),
                            ),
                            ("month", s()),
                        ],
                        &del,
                    )),
                ),
                ("monthly", arr(with(&month, &del))),
            ]),
        ),
        (
            "moderation",
            obj(&[("monthly", arr(obj(&modr))), ("totals", arr(obj(&modr)))]),
        ),
    ])
}

/// Query parameters of the admin routes that take them.
fn query_params(method: &str, path: &str) -> Vec<Value> {
    let q = |name: &str, description: &str| json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}, "description": description});
    match (method, path) {
        ("get", "/api/admin/stats") => vec![
            q("from", "first month, YYYY-MM (default: five months before `to`)"),
            q("to", "last month, YYYY-MM (default: this month, Asia/Shanghai); at most 36 months"),
            q("org_unit", "an org unit (id or name): it and its descendants"),
            q("members", "true: attendance per member as well"),
            q("format", "json (default) or csv"),
            q("section", "with format=csv, the table: dues, attendance, attendance_members, followers, pushes, moderation"),
        ],
        _ => Vec::new(),
    }
}

/// Request body schema for the routes whose body the contract names.
fn body_for(method: &str, path: &str) -> Option<&'static str> {
    match (method, path) {
        ("post", "/api/admin/login") => Some("LoginRequest"),
        ("post", "/api/admin/articles") | ("put", "/api/admin/articles/{id}") => {
            Some("ArticleInput")
        }
        ("post", "/api/admin/pushes") => Some("PushInput"),
        _ => None,
    }
}

/// The type of a path parameter, so that a request valid by the document names something real
/// (anything else is a 404 in the one error shape): ids are positive integers, months `YYYY-MM`
/// (seven characters), step and document keys short strings.
fn path_schema(name: &str) -> Value {
    match name {
        n if n == "id" || n.ends_with("_id") => {
            json!({"type": "integer", "format": "int64", "minimum": 1})
        }
        // No `pattern`: schemathesis 4.32's coverage phase trips over its own regex handling on
        // path patterns (a hypothesis "AST constructor recursion depth mismatch"), intermittently.
        "month" => json!({"type": "string", "minLength": 7, "maxLength": 7, "example": "2026-11",
            "description": "YYYY-MM"}),
        _ => json!({"type": "string", "minLength": 1, "maxLength": 64}),
    }
}

fn operation(method: &str, path: &str, summary: &str, secured: bool) -> Value {
    let mut op = Map::new();
    op.insert("summary".into(), json!(summary));
    let params: Vec<Value> = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(|name| json!({"name": name, "in": "path", "required": true, "schema": path_schema(name)}))
        .chain(query_params(method, path))
        .collect();
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some(schema) = body_for(method, path) {
        op.insert(
            "requestBody".into(),
            json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}}),
        );
    } else if path == "/api/admin/members" && method == "post" {
        op.insert(
            "requestBody".into(),
            json!({"required": true, "content": {
                "application/json": {"schema": {"type": "array", "items": {"$ref": "#/components/schemas/MemberImportRow"}}},
                "text/csv": {"schema": {"type": "string"}}}}),
        );
    }
    if path == "/api/admin/activities/{id}/minutes/photos" && method == "post" {
        op.insert(
            "requestBody".into(),
            json!({"required": true, "description": "One or more image files (JPEG, PNG or WebP by their bytes), at most 5 MiB each, at most 20 per meeting.",
                "content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
                    "photo": {"type": "string", "format": "binary"}}}}}}),
        );
    }
    // 2XX: some answers are 201 Created or 202 Accepted (work started in the background).
    let mut responses = json!({
        "2XX": {"description": "OK (200, 201 Created or 202 Accepted)"},
        "4XX": {"description": "Rejected", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    });
    if path == "/api/admin/pushes/{id}" && method == "get" {
        responses["2XX"] = json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PushStatus"}}}});
    }
    if path == "/api/admin/stats" && method == "get" {
        responses["2XX"] = json!({"description": "OK (JSON, or text/csv with format=csv)", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/StatsReport"}},
            "text/csv": {"schema": {"type": "string"}}}});
    }
    if path == "/api/admin/activities/{id}/minutes/photos/{photo_id}" && method == "get" {
        responses["2XX"] = json!({"description": "The image (X-Content-Type-Options: nosniff)", "content": {
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/webp": {"schema": {"type": "string", "format": "binary"}}}});
    }
    if path == "/api/admin/login" {
        responses["2XX"] = json!({"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/LoginResponse"}}}});
    }
    op.insert("responses".into(), responses);
    if secured {
        op.insert("security".into(), json!([{"bearer": []}]));
    }
    Value::Object(op)
}

pub fn build(state: &AppState, admin: &[RouteSpec]) -> Value {
    let mut paths: Map<String, Value> = Map::new();
    let mut add = |path: &str, method: &str, op: Value| {
        let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        entry[method] = op;
    };
    for (method, path, summary) in MP_ROUTES {
        // Everything but login and the public content reads takes the session's bearer token.
        let secured = matches!(
            *path,
            "/api/mp/bind"
                | "/api/mp/me"
                | "/api/mp/subscriptions"
                | "/api/mp/submissions"
                | "/api/mp/development"
                | "/api/mp/development/reports"
                | "/api/mp/activities"
                | "/api/mp/activities/{id}"
                | "/api/mp/activities/{id}/signup"
                | "/api/mp/activities/{id}/checkin"
                | "/api/mp/dues"
                | "/api/mp/dues/{id}/pay"
        ) || (*path == "/api/mp/board" && *method == "post");
        add(path, method, operation(method, path, summary, secured));
    }
    for spec in admin {
        let method = spec.method.as_str().to_ascii_lowercase();
        let permission = serde_json::to_value(spec.permission).unwrap_or(Value::Null);
        let summary = format!("requires permission {}", permission.as_str().unwrap_or("?"));
        let secured = spec.permission != Permission::Public;
        let mut op = operation(&method, spec.path, &summary, secured);
        op["x-permission"] = permission;
        add(spec.path, &method, op);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "dangjian API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Mini-program (/api/mp) and admin (/api/admin) JSON APIs. Errors always have the shape {\"error\":{\"code\",\"message\"}}. Admin routes take `Authorization: Bearer <token>` from POST /api/admin/login; x-permission names the permission each route requires."
        },
        "servers": [{"url": state.settings.public_url}],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    })
}

/// `GET /api/openapi.json`, listing the given admin route table.
pub fn router(admin: Vec<RouteSpec>) -> axum::Router<AppState> {
    let admin = std::sync::Arc::new(admin);
    axum::Router::new().route(
        "/api/openapi.json",
        axum::routing::get(move |State(st): State<AppState>| {
            let admin = admin.clone();
            async move { Json(build(&st, &admin)) }
        }),
    )
}
