//! The OpenAPI description of a route, read off its handler's argument types.
//!
//! A route builder ([`super::routes::AdminRoutes`], [`super::routes::MpRoutes`]) takes any axum
//! handler whose arguments all implement [`DocArg`]: an `AppJson<T>` documents its body with
//! `T`'s JSON Schema (derived with `schemars`, constraints included), an `AppQuery<T>` its query
//! parameters, an [`super::extract::Id`] or `Path<…>` the types of the path parameters, a session
//! extractor that the route needs a bearer token. An extractor without a `DocArg` impl does not
//! compile, so the document cannot drift from what the handlers accept.

use std::future::Future;

use axum::extract::{Path, State};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Value};

use super::{
    extract::{Id, IdKey, IdPair, MonthKey},
    json::{AppJson, AppQuery, OptionalJson},
};

/// What a handler's arguments say about its operation.
#[derive(Debug, Default)]
pub struct OpDoc {
    /// The path parameters' schemas in the order of the route's `{…}` segments; `None` when no
    /// argument reads the path.
    pub path: Option<Vec<Value>>,
    /// Query parameters, complete OpenAPI parameter objects.
    pub query: Vec<Value>,
    /// The request body, a complete OpenAPI requestBody object.
    pub body: Option<Value>,
    /// The route takes a session's bearer token.
    pub secured: bool,
    /// The schema of a successful answer's JSON body, when the handler's type says it.
    pub response: Option<Value>,
}

/// Documents one handler argument; the default says nothing (state, headers, the client's IP).
pub trait DocArg {
    fn document(_op: &mut OpDoc, _gen: &mut SchemaGenerator) {}
}

/// Documents a handler's whole argument list: axum's `Handler<T, S>` parameter `T`, which is
/// `(M, A1, …, An)` (`M` a marker of axum's).
pub trait DocArgs {
    fn document(op: &mut OpDoc, gen: &mut SchemaGenerator);
}

/// A route's documentation function: `<T as DocArgs>::document` of its handler.
pub type DocFn = fn(&mut OpDoc, &mut SchemaGenerator);

macro_rules! doc_args {
    ($($arg:ident),*) => {
        impl<M, $($arg: DocArg,)*> DocArgs for (M, $($arg,)*) {
            #[allow(unused_variables)]
            fn document(op: &mut OpDoc, gen: &mut SchemaGenerator) {
                $(<$arg as DocArg>::document(op, gen);)*
            }
        }
    };
}

/// `$m!()` for every handler arity up to eight arguments.
macro_rules! for_each_arity {
    ($m:ident) => {
        $m!();
        $m!(A1);
        $m!(A1, A2);
        $m!(A1, A2, A3);
        $m!(A1, A2, A3, A4);
        $m!(A1, A2, A3, A4, A5);
        $m!(A1, A2, A3, A4, A5, A6);
        $m!(A1, A2, A3, A4, A5, A6, A7);
        $m!(A1, A2, A3, A4, A5, A6, A7, A8);
    };
}

for_each_arity!(doc_args);

/// Documents a handler's answer: `AppJson<T>` (alone, after a status, inside a `Result`) is a
/// JSON body of `T`'s schema; a `Response` or a bare status says nothing more than 2XX.
pub trait DocResponse {
    fn document(_op: &mut OpDoc, _gen: &mut SchemaGenerator) {}
}

impl DocResponse for axum::response::Response {}
impl DocResponse for axum::http::StatusCode {}
impl DocResponse for () {}

impl<T: JsonSchema> DocResponse for AppJson<T> {
    fn document(op: &mut OpDoc, gen: &mut SchemaGenerator) {
        op.response = Some(gen.subschema_for::<T>().to_value());
    }
}

impl<T: JsonSchema> DocResponse for axum::Json<T> {
    fn document(op: &mut OpDoc, gen: &mut SchemaGenerator) {
        op.response = Some(gen.subschema_for::<T>().to_value());
    }
}

impl<T: JsonSchema> DocResponse for (axum::http::StatusCode, AppJson<T>) {
    fn document(op: &mut OpDoc, gen: &mut SchemaGenerator) {
        <AppJson<T> as DocResponse>::document(op, gen)
    }
}

impl<R: DocResponse, E> DocResponse for Result<R, E> {
    fn document(op: &mut OpDoc, gen: &mut SchemaGenerator) {
        R::document(op, gen)
    }
}

/// Documents what a handler answers, from its return type (`T` as in [`DocArgs`]).
pub trait DocHandler<T> {
    fn document(op: &mut OpDoc, gen: &mut SchemaGenerator);
}

macro_rules! doc_handler {
    ($($arg:ident),*) => {
        impl<Func, Fut, M, $($arg,)*> DocHandler<(M, $($arg,)*)> for Func
        where
            Func: FnOnce($($arg),*) -> Fut,
            Fut: Future,
            Fut::Output: DocResponse,
        {
            fn document(op: &mut OpDoc, gen: &mut SchemaGenerator) {
                <Fut::Output as DocResponse>::document(op, gen)
            }
        }
    };
}

for_each_arity!(doc_handler);

impl<S> DocArg for State<S> {}
impl<T> DocArg for axum::Extension<T> {}
impl DocArg for axum::http::HeaderMap {}
impl DocArg for axum::http::Method {}
impl DocArg for axum::http::Uri {}
impl DocArg for axum::body::Bytes {}
impl DocArg for axum::extract::Multipart {}

/// `Result<E, Rejection>` is the same argument, its rejection handled by the handler.
impl<T: DocArg, E> DocArg for Result<T, E> {
    fn document(op: &mut OpDoc, gen: &mut SchemaGenerator) {
        T::document(op, gen)
    }
}

/// A JSON body of type `T`.
fn json_body<T: JsonSchema>(gen: &mut SchemaGenerator, required: bool) -> Option<Value> {
    let schema = gen.subschema_for::<T>();
    Some(json!({"required": required, "content": {"application/json": {"schema": schema}}}))
}

impl<T: JsonSchema> DocArg for AppJson<T> {
    fn document(op: &mut OpDoc, gen: &mut SchemaGenerator) {
        op.body = json_body::<T>(gen, true);
    }
}

impl<T: JsonSchema> DocArg for OptionalJson<T> {
    fn document(op: &mut OpDoc, gen: &mut SchemaGenerator) {
        op.body = json_body::<T>(gen, false);
    }
}

impl<T: JsonSchema> DocArg for AppQuery<T> {
    fn document(op: &mut OpDoc, _gen: &mut SchemaGenerator) {
        op.query = query_parameters::<T>();
    }
}

/// An id: a positive 64-bit integer (anything else names nothing: 404).
fn id_schema() -> Value {
    json!({"type": "integer", "format": "int64", "minimum": 1})
}

/// A key in the path (a step, a document kind): a short string.
fn key_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 64})
}

impl DocArg for Id {
    fn document(op: &mut OpDoc, _gen: &mut SchemaGenerator) {
        op.path = Some(vec![id_schema()]);
    }
}

impl DocArg for IdKey {
    fn document(op: &mut OpDoc, _gen: &mut SchemaGenerator) {
        op.path = Some(vec![id_schema(), key_schema()]);
    }
}

impl DocArg for IdPair {
    fn document(op: &mut OpDoc, _gen: &mut SchemaGenerator) {
        op.path = Some(vec![id_schema(), id_schema()]);
    }
}

impl DocArg for MonthKey {
    fn document(op: &mut OpDoc, _gen: &mut SchemaGenerator) {
        op.path = Some(vec![json!({"type": "string", "pattern": MONTH_PATTERN,
            "example": "2026-11", "description": "YYYY-MM"})]);
    }
}

/// Types `Path<T>` is used with, and their parameters' schemas in order.
pub trait PathDoc {
    fn schemas() -> Vec<Value>;
}

impl PathDoc for i64 {
    fn schemas() -> Vec<Value> {
        vec![id_schema()]
    }
}

impl PathDoc for (i64, i64) {
    fn schemas() -> Vec<Value> {
        vec![id_schema(), id_schema()]
    }
}

impl<T: PathDoc> DocArg for Path<T> {
    fn document(op: &mut OpDoc, _gen: &mut SchemaGenerator) {
        op.path = Some(T::schemas());
    }
}

// ---- schemas of values the handlers parse from strings (`#[schemars(schema_with = "…")]`)

fn schema(v: Value) -> Schema {
    Schema::try_from(v).expect("a schema object")
}

/// Marks a schema of a value the handler parses from a query string, where a blank value is an
/// absent one ([`query_parameters`] turns the mark into "or blank").
const BLANK_IS_ABSENT: &str = "x-blank-is-absent";

fn in_query(mut v: Value) -> Schema {
    v[BLANK_IS_ABSENT] = json!(true);
    schema(v)
}

/// `page`: 1-based, at most [`super::MAX_PAGE`].
pub fn page(_: &mut SchemaGenerator) -> Schema {
    in_query(json!({"type": "integer", "minimum": 1, "maximum": super::MAX_PAGE}))
}

macro_rules! page_size {
    ($($name:ident = $max:literal),*) => {$(
        #[doc = concat!("`page_size`: 1 to ", stringify!($max), ".")]
        pub fn $name(_: &mut SchemaGenerator) -> Schema {
            in_query(json!({"type": "integer", "minimum": 1, "maximum": $max}))
        }
    )*};
}

page_size!(
    page_size_50 = 50,
    page_size_100 = 100,
    page_size_200 = 200,
    page_size_500 = 500
);

/// What `dues::rules::Month::parse` accepts (a test there keeps the two in step).
pub(crate) const MONTH_PATTERN: &str = "^2[01][0-9]{2}-(0[1-9]|1[0-2])$";

/// A month, `YYYY-MM` (years 2000 to 2199).
pub fn month(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"type": "string", "pattern": MONTH_PATTERN, "example": "2026-11"}))
}

/// A month in a query string.
pub fn query_month(_: &mut SchemaGenerator) -> Schema {
    in_query(json!({"type": "string", "pattern": MONTH_PATTERN, "example": "2026-11"}))
}

/// A calendar date, `YYYY-MM-DD`.
pub fn date(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"type": "string", "format": "date", "example": "2026-11-05"}))
}

/// A time, RFC 3339.
pub fn date_time(_: &mut SchemaGenerator) -> Schema {
    schema(json!({"type": "string", "format": "date-time", "example": "2026-11-05T09:30:00+08:00"}))
}

/// `true` or `false`.
pub fn boolean(_: &mut SchemaGenerator) -> Schema {
    in_query(json!({"type": "boolean"}))
}

/// `json` (the default) or `csv`.
pub fn json_or_csv(_: &mut SchemaGenerator) -> Schema {
    in_query(json!({"type": "string", "enum": ["json", "csv"]}))
}

/// The OpenAPI 3.0 schema generator the document uses (definitions under
/// `#/components/schemas`, `nullable` for `Option`).
pub fn generator() -> SchemaGenerator {
    settings().into_generator()
}

/// The generator for answers: the same settings, for what serde writes (a field skipped when
/// empty is not required there).
pub fn response_generator() -> SchemaGenerator {
    settings().for_serialize().into_generator()
}

/// OpenAPI 3.0 settings, without the `"default": null` schemars gives an `Option` field that has
/// `#[serde(default)]` (a schema that is not nullable cannot have a null default).
fn settings() -> schemars::generate::SchemaSettings {
    schemars::generate::SchemaSettings::openapi3().with_transform(
        schemars::transform::RecursiveTransform(|s: &mut Schema| {
            if s.get("default") == Some(&Value::Null) {
                s.remove("default");
            }
        }),
    )
}

/// `T`'s properties as query parameters (`required` as `T` says).
fn query_parameters<T: JsonSchema>() -> Vec<Value> {
    let mut gen = settings()
        .with(|s| s.inline_subschemas = true)
        .into_generator();
    let root = gen.root_schema_for::<T>();
    let root = root.as_value();
    let required: Vec<&str> = root
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = root.get("properties").and_then(Value::as_object) else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, schema)| {
            let required = required.contains(&name.as_str());
            let mut schema = schema.clone();
            if !required {
                schema = or_blank(schema);
            }
            let description = schema.as_object_mut().and_then(|o| o.remove("description"));
            let mut p = json!({
                "name": name,
                "in": "query",
                "required": required,
                "schema": schema,
            });
            if let Some(d) = description {
                p["description"] = d;
            }
            p
        })
        .collect()
}

/// An optional query value the handler reads as a string treats blank as absent: say so.
fn or_blank(mut schema: Value) -> Value {
    let blank = json!({"type": "string", "maxLength": 0});
    if let Some(o) = schema.as_object_mut() {
        if o.remove(BLANK_IS_ABSENT).is_some() {
            return json!({"anyOf": [schema, blank]});
        }
        if let Some(Value::Array(alternatives)) = o.get_mut("anyOf") {
            alternatives.push(blank);
            return schema;
        }
        if o.get("type") == Some(&json!("string")) {
            if let Some(Value::Array(e)) = o.get_mut("enum") {
                e.push(json!(""));
            }
            if let Some(Value::String(p)) = o.get_mut("pattern") {
                *p = format!("^$|{p}");
            }
            o.remove("minLength");
        }
    }
    schema
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Body {
        /// The title.
        #[schemars(length(min = 1, max = 10))]
        title: String,
        count: Option<i64>,
    }

    #[derive(serde::Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Q {
        /// Which page.
        #[schemars(range(min = 1))]
        page: Option<i64>,
        q: String,
    }

    async fn handler(_: State<()>, _: Id, _: AppQuery<Q>, _: AppJson<Body>) {}

    fn doc_of<T: DocArgs, H: axum::handler::Handler<T, ()>>(_: H) -> (OpDoc, SchemaGenerator) {
        let mut op = OpDoc::default();
        let mut gen = generator();
        T::document(&mut op, &mut gen);
        (op, gen)
    }

    #[test]
    fn a_handlers_arguments_describe_path_query_and_body() {
        let (op, mut gen) = doc_of(handler);
        assert_eq!(op.path, Some(vec![id_schema()]));
        assert_eq!(op.query.len(), 2);
        let page = op.query.iter().find(|p| p["name"] == "page").unwrap();
        assert_eq!(page["required"], false);
        assert_eq!(page["schema"]["minimum"], 1);
        assert_eq!(page["description"], "Which page.");
        let q = op.query.iter().find(|p| p["name"] == "q").unwrap();
        assert_eq!(q["required"], true);
        let body = op.body.unwrap();
        assert_eq!(
            body["content"]["application/json"]["schema"]["$ref"],
            "#/components/schemas/Body"
        );
        let defs = gen.take_definitions(true);
        assert_eq!(defs["Body"]["properties"]["title"]["maxLength"], 10);
        assert_eq!(defs["Body"]["required"], json!(["title"]));
        assert_eq!(defs["Body"]["properties"]["count"]["nullable"], true);
        assert!(!op.secured);
    }
}
