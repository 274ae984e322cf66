//! The shape of `src/` as a test (ArchUnit's habit): the layers hold because CI holds them.
//!
//! - `platform/` knows no feature, the app state or the HTTP toolkit;
//! - `app.rs` (the state) imports only the platform;
//! - `http/` (the toolkit) imports no feature;
//! - a `rules.rs` does no I/O and takes no app state; a `store.rs` takes no app state;
//! - SQL lives only in a feature's store (`store.rs`, `*_store.rs`) or the platform's database,
//!   audit-log and org-unit modules;
//! - no handler imports another feature's handlers;
//! - no cycle among the top-level modules (each feature, platform, http, app).

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

const LAYERS: [&str; 4] = ["app", "http", "platform", "startup"];
const HANDLER_FILES: [&str; 5] = ["admin", "mp", "console", "page", "webhook"];

struct Source {
    /// Path under `src/`, e.g. `push/store.rs`.
    rel: String,
    /// Top-level module: `push`, `platform`, `app`, ...
    top: String,
    /// The text without comments.
    code: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let top = rel
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_owned();
            let text = std::fs::read_to_string(&p).unwrap();
            Source {
                rel,
                top,
                code: strip_comments_and_tests(&text),
            }
        })
        .collect()
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Line comments, doc comments and `#[cfg(test)] mod tests { .. }` (at the end of a file) are not
/// architecture: a doc comment may name a feature, a unit test may use what it likes.
fn strip_comments_and_tests(text: &str) -> String {
    let body = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines()
        .map(|l| match l.trim_start().starts_with("//") {
            true => "",
            false => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_lib_or_main(s: &Source) -> bool {
    s.rel == "lib.rs" || s.rel == "main.rs"
}

fn features(srcs: &[Source]) -> BTreeSet<String> {
    srcs.iter()
        .filter(|s| s.rel.contains('/') && !LAYERS.contains(&s.top.as_str()))
        .map(|s| s.top.clone())
        .collect()
}

/// Top-level modules a file refers to as `crate::<top>` (in `use` trees too: `crate::{a::.., b}`).
fn references(code: &str, tops: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // A use tree: the depth-1 names.
            let mut depth = 1;
            let mut item = String::new();
            let mut items = Vec::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            break;
                        }
                    }
                    ',' if depth == 1 => items.push(std::mem::take(&mut item)),
                    _ if depth == 1 => item.push(c),
                    _ => {}
                }
            }
            items.push(item);
            for it in items {
                let name: String = it
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if tops.contains(&name) {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if tops.contains(&name) {
                out.insert(name);
            }
        }
    }
    out
}

fn all_tops(srcs: &[Source]) -> BTreeSet<String> {
    srcs.iter()
        .filter(|s| !is_lib_or_main(s))
        .map(|s| s.top.clone())
        .collect()
}

#[test]
fn the_platform_knows_no_feature_no_app_state_and_no_http_toolkit() {
    let srcs = sources();
    let tops = all_tops(&srcs);
    let mut bad = Vec::new();
    for s in srcs.iter().filter(|s| s.top == "platform") {
        for r in references(&s.code, &tops) {
            if r != "platform" {
                bad.push(format!("{} imports crate::{r}", s.rel));
            }
        }
        if s.code.contains("AppState") {
            bad.push(format!("{} names AppState", s.rel));
        }
    }
    assert!(
        bad.is_empty(),
        "platform layer violations:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_app_state_imports_only_the_platform_and_the_toolkit_no_feature() {
    let srcs = sources();
    let tops = all_tops(&srcs);
    let feats = features(&srcs);
    let mut bad = Vec::new();
    for s in &srcs {
        let allowed: &[&str] = match s.top.as_str() {
            "app" => &["app", "platform"],
            "http" => &["http", "app", "platform"],
            _ => continue,
        };
        for r in references(&s.code, &tops) {
            if !allowed.contains(&r.as_str()) {
                bad.push(format!("{} imports crate::{r}", s.rel));
            }
        }
        let _ = &feats;
    }
    assert!(bad.is_empty(), "layer violations:\n{}", bad.join("\n"));
}

#[test]
fn rules_are_pure_and_stores_take_no_app_state() {
    let io = [
        "sqlx",
        "AppState",
        "tokio::",
        "reqwest",
        "std::fs",
        "std::net",
        ".await",
        "async fn",
        "crate::app",
    ];
    let mut bad = Vec::new();
    for s in sources() {
        let file = s.rel.rsplit('/').next().unwrap();
        let in_rules = file == "rules.rs" || s.rel.contains("/rules/");
        if in_rules {
            for word in io {
                if s.code.contains(word) {
                    bad.push(format!("{} (pure rules) uses `{word}`", s.rel));
                }
            }
        }
        if (file == "store.rs" || file.ends_with("_store.rs")) && s.code.contains("AppState") {
            bad.push(format!("{} (a store) takes the app state", s.rel));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

fn sql_home(rel: &str) -> bool {
    let file = rel.rsplit('/').next().unwrap();
    file == "store.rs"
        || file.ends_with("_store.rs")
        || rel.starts_with("platform/db/")
        || rel == "platform/audit.rs"
        || rel == "platform/org.rs"
}

#[test]
fn sql_lives_only_in_stores_and_the_platform_database_modules() {
    let markers = [
        "sqlx::query",
        "SELECT ",
        "INSERT INTO",
        "UPDATE ",
        "DELETE FROM",
        "CREATE TABLE",
    ];
    let mut bad = Vec::new();
    for s in sources() {
        if sql_home(&s.rel) {
            continue;
        }
        for m in markers {
            // Only inside string literals or as the sqlx call itself.
            let hit = if m == "sqlx::query" {
                s.code.contains(m)
            } else {
                s.code.lines().any(|l| {
                    l.contains(m) && l.split('"').skip(1).step_by(2).any(|lit| lit.contains(m))
                })
            };
            if hit {
                bad.push(format!("{} contains `{}`", s.rel, m.trim()));
            }
        }
    }
    assert!(bad.is_empty(), "SQL outside a store:\n{}", bad.join("\n"));
}

#[test]
fn no_handler_imports_another_features_handlers() {
    let srcs = sources();
    let feats = features(&srcs);
    let mut bad = Vec::new();
    for s in &srcs {
        for f in &feats {
            if *f == s.top {
                continue;
            }
            for h in HANDLER_FILES {
                for pat in [format!("crate::{f}::{h}::"), format!("crate::{f}::{h}}}")] {
                    if s.code.contains(&pat) {
                        bad.push(format!("{} imports {f}::{h}", s.rel));
                    }
                }
                let tree = format!("crate::{f}::{{");
                if let Some(i) = s.code.find(&tree) {
                    let group = &s.code[i..s.code[i..].find(';').map_or(s.code.len(), |j| i + j)];
                    let word = |w: &str| {
                        group
                            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                            .any(|x| x == w)
                    };
                    if word(h) {
                        bad.push(format!("{} imports {f}::{h}", s.rel));
                    }
                }
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_top_level_modules_form_no_cycle() {
    let srcs = sources();
    let tops = all_tops(&srcs);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in srcs.iter().filter(|s| !is_lib_or_main(s)) {
        let deps = graph.entry(s.top.clone()).or_default();
        for r in references(&s.code, &tops) {
            if r != s.top {
                deps.insert(r);
            }
        }
    }
    assert!(
        !graph.values().any(|d| d.contains("startup")),
        "only main.rs may use startup: {graph:?}"
    );
    // Depth-first search for a back edge.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(1) => {
                let start = path.iter().position(|p| p == n).unwrap();
                let mut cycle = path[start..].to_vec();
                cycle.push(n.to_owned());
                return Some(cycle);
            }
            Some(2) => return None,
            _ => {}
        }
        state.insert(n.to_owned(), 1);
        path.push(n.to_owned());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, state, path) {
                return Some(c);
            }
        }
        path.pop();
        state.insert(n.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in graph.keys() {
        if let Some(cycle) = visit(n, &graph, &mut state, &mut Vec::new()) {
            panic!("import cycle: {}\ngraph: {graph:#?}", cycle.join(" → "));
        }
    }
}

#[test]
fn the_checks_see_a_violation_when_there_is_one() {
    // The scanners themselves, on made-up code: a platform file importing a feature is seen,
    // a use tree is read, and a comment is not code.
    let tops: BTreeSet<String> = ["platform", "push", "members"]
        .into_iter()
        .map(String::from)
        .collect();
    let refs = references("use crate::{platform::db::Db, push::store};", &tops);
    assert_eq!(
        refs,
        ["platform", "push"].into_iter().map(String::from).collect()
    );
    let code = strip_comments_and_tests("// crate::members\nlet x = 1;");
    assert!(references(&code, &tops).is_empty());
    assert!(!sql_home("push/service.rs"));
    assert!(sql_home("push/store.rs"));
}
