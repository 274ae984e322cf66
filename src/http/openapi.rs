//! `GET /api/openapi.json`: OpenAPI 3 of `/api/mp` and `/api/admin`.
//!
//! The paths come from the route tables ([`super::routes::AdminRoutes`] with the permission each
//! route requires, [`super::routes::MpRoutes`]), so a route can't be added without appearing
//! here; parameters and request bodies come from the handlers' argument types
//! ([`super::doc`]). A few responses have hand-written schemas; every rejection has the one
//! error shape.

use axum::{extract::State, Json};
use serde_json::{json, Map, Value};

use schemars::SchemaGenerator;

use super::{
    doc::{self, DocFn, OpDoc},
    routes::{MpRouteSpec, RouteSpec},
};
use crate::{app::AppState, platform::roles::Permission};

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

/// Response schemas written by hand (request schemas come from the handlers' types).
fn response_schemas() -> Map<String, Value> {
    let v = json!({
        "Error": error_schema(),
        "StatsReport": stats_schema()
    });
    match v {
        Value::Object(m) => m,
        _ => unreachable!("an object literal"),
    }
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

/// The path parameters of `path`, typed by what the handler reads (`Id`, `Path<…>`); a
/// parameter no argument types is a short string.
fn path_parameters(path: &str, typed: Option<&[Value]>) -> Vec<Value> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .enumerate()
        .map(|(i, name)| {
            let schema = typed
                .and_then(|t| t.get(i).cloned())
                .unwrap_or_else(|| json!({"type": "string", "minLength": 1, "maxLength": 64}));
            json!({"name": name, "in": "path", "required": true, "schema": schema})
        })
        .collect()
}

/// Responses: 2XX (some answers are 201 Created or 202 Accepted: work started in the
/// background) with the body's schema when the handler's type gives it, and every rejection in
/// the one error shape. Two answers the types cannot describe (JSON or CSV, an image) are
/// described here.
fn responses(method: &str, path: &str, body: Option<Value>) -> Value {
    let mut responses = json!({
        "2XX": {"description": "OK (200, 201 Created or 202 Accepted)"},
        "4XX": {"description": "Rejected", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    });
    if let Some(schema) = body {
        responses["2XX"]["content"] = json!({"application/json": {"schema": schema}});
    }
    match (method, path) {
        ("get", "/api/admin/stats") => {
            responses["2XX"] = json!({"description": "OK (JSON, or text/csv with format=csv)", "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/StatsReport"}},
                "text/csv": {"schema": {"type": "string"}}}})
        }
        ("get", "/api/admin/activities/{id}/minutes/photos/{photo_id}") => {
            responses["2XX"] = json!({"description": "The image (X-Content-Type-Options: nosniff)", "content": {
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "image/webp": {"schema": {"type": "string", "format": "binary"}}}})
        }
        _ => {}
    }
    responses
}

/// The two schema generators: requests (what serde reads) and answers (what it writes).
struct Generators {
    input: SchemaGenerator,
    output: SchemaGenerator,
}

/// One operation, from its handler's documentation.
fn operation(
    method: &str,
    path: &str,
    summary: &str,
    docs: &[DocFn],
    response_doc: DocFn,
    gens: &mut Generators,
) -> Value {
    let mut doc = OpDoc::default();
    for d in docs {
        d(&mut doc, &mut gens.input);
    }
    response_doc(&mut doc, &mut gens.output);
    let mut op = Map::new();
    op.insert("summary".into(), json!(summary));
    let params: Vec<Value> = path_parameters(path, doc.path.as_deref())
        .into_iter()
        .chain(doc.query)
        .collect();
    if !params.is_empty() {
        op.insert("parameters".into(), Value::Array(params));
    }
    if let Some(body) = doc.body {
        op.insert("requestBody".into(), body);
    }
    op.insert("responses".into(), responses(method, path, doc.response));
    if doc.secured {
        op.insert("security".into(), json!([{"bearer": []}]));
    }
    Value::Object(op)
}

pub fn build(state: &AppState, admin: &[RouteSpec], mp: &[MpRouteSpec]) -> Value {
    let mut gens = Generators {
        input: doc::generator(),
        output: doc::response_generator(),
    };
    let mut paths: Map<String, Value> = Map::new();
    let mut add = |path: &str, method: &str, op: Value| {
        let entry = paths.entry(path.to_owned()).or_insert_with(|| json!({}));
        entry[method] = op;
    };
    for spec in mp {
        let method = spec.method.as_str().to_ascii_lowercase();
        let op = operation(
            &method,
            spec.path,
            spec.summary,
            &[spec.doc],
            spec.response_doc,
            &mut gens,
        );
        add(spec.path, &method, op);
    }
    for spec in admin {
        let method = spec.method.as_str().to_ascii_lowercase();
        let permission = serde_json::to_value(spec.permission).unwrap_or(Value::Null);
        let summary = format!("requires permission {}", permission.as_str().unwrap_or("?"));
        let docs: Vec<DocFn> = std::iter::once(spec.doc).chain(spec.extra_doc).collect();
        let mut op = operation(
            &method,
            spec.path,
            &summary,
            &docs,
            spec.response_doc,
            &mut gens,
        );
        if spec.permission != Permission::Public {
            op["security"] = json!([{"bearer": []}]);
        }
        op["x-permission"] = permission;
        add(spec.path, &method, op);
    }
    let mut schemas = gens.input.take_definitions(true);
    for (name, schema) in gens
        .output
        .take_definitions(true)
        .into_iter()
        .chain(response_schemas())
    {
        // A type both read and written has one schema: what serde reads and writes may differ
        // only in which fields must be present (a field with a default is optional to read but
        // always written), so both views hold with the fields both require.
        if let Some(read) = schemas.get_mut(&name) {
            let both = |v: &Value| -> Vec<Value> {
                v.get("required")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            };
            let (r, w) = (both(read), both(&schema));
            let mut a = read.clone();
            let mut b = schema.clone();
            for v in [&mut a, &mut b] {
                if let Some(o) = v.as_object_mut() {
                    o.remove("required");
                }
            }
            assert_eq!(a, b, "schema {name} differs between request and answer");
            let common: Vec<Value> = r.into_iter().filter(|f| w.contains(f)).collect();
            if let Some(o) = read.as_object_mut() {
                o.remove("required");
                if !common.is_empty() {
                    o.insert("required".into(), Value::Array(common));
                }
            }
            continue;
        }
        schemas.insert(name, schema);
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "dangjian API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Mini-program (/api/mp) and admin (/api/admin) JSON APIs. Errors always have the shape {\"error\":{\"code\",\"message\"}}. Admin routes take `Authorization: Bearer <token>` from POST /api/admin/login; x-permission names the permission each route requires. Parameters and request bodies are generated from the handlers' types."
        },
        "servers": [{"url": state.settings.public_url}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}
        }
    })
}

/// `GET /api/openapi.json`, listing the given route tables.
///
/// The document depends only on the route tables and the settings, both fixed for the life of
/// the process, so it is generated once, on the first request, and served from then on.
pub fn router(admin: Vec<RouteSpec>, mp: Vec<MpRouteSpec>) -> axum::Router<AppState> {
    let tables = std::sync::Arc::new((admin, mp));
    let document = std::sync::Arc::new(std::sync::OnceLock::<Json<Value>>::new());
    axum::Router::new().route(
        "/api/openapi.json",
        axum::routing::get(move |State(st): State<AppState>| {
            let (tables, document) = (tables.clone(), document.clone());
            async move {
                document
                    .get_or_init(|| Json(build(&st, &tables.0, &tables.1)))
                    .clone()
            }
        }),
    )
}
