//! Server-rendered HTML: the templates in `templates/` (embedded in the binary), rendered with
//! minijinja and HTML auto-escaping, so nothing a user wrote can become markup. The one place HTML
//! is escaped: `{{ value }}` escapes, `{{ html | safe }}` is only for sanitised Markdown.

use std::sync::OnceLock;

use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../../templates/base.html")),
    ("article.html", include_str!("../../templates/article.html")),
    (
        "console/login.html",
        include_str!("../../templates/console/login.html"),
    ),
    (
        "console/layout.html",
        include_str!("../../templates/console/layout.html"),
    ),
    (
        "console/macros.html",
        include_str!("../../templates/console/macros.html"),
    ),
    (
        "console/dashboard.html",
        include_str!("../../templates/console/dashboard.html"),
    ),
    (
        "console/articles/list.html",
        include_str!("../../templates/console/articles/list.html"),
    ),
    (
        "console/articles/edit.html",
        include_str!("../../templates/console/articles/edit.html"),
    ),
    (
        "console/articles/tabs.html",
        include_str!("../../templates/console/articles/tabs.html"),
    ),
    (
        "console/articles/categories.html",
        include_str!("../../templates/console/articles/categories.html"),
    ),
    (
        "console/articles/banners.html",
        include_str!("../../templates/console/articles/banners.html"),
    ),
    (
        "console/articles/banner.html",
        include_str!("../../templates/console/articles/banner.html"),
    ),
    (
        "console/moderation/queue.html",
        include_str!("../../templates/console/moderation/queue.html"),
    ),
    (
        "console/pushes/list.html",
        include_str!("../../templates/console/pushes/list.html"),
    ),
    (
        "console/pushes/new.html",
        include_str!("../../templates/console/pushes/new.html"),
    ),
    (
        "console/pushes/detail.html",
        include_str!("../../templates/console/pushes/detail.html"),
    ),
    (
        "console/dues/tabs.html",
        include_str!("../../templates/console/dues/tabs.html"),
    ),
    (
        "console/dues/months.html",
        include_str!("../../templates/console/dues/months.html"),
    ),
    (
        "console/dues/bills.html",
        include_str!("../../templates/console/dues/bills.html"),
    ),
    (
        "console/dues/bill.html",
        include_str!("../../templates/console/dues/bill.html"),
    ),
    (
        "console/dues/member.html",
        include_str!("../../templates/console/dues/member.html"),
    ),
    (
        "console/dues/collection.html",
        include_str!("../../templates/console/dues/collection.html"),
    ),
    (
        "console/dues/incidents.html",
        include_str!("../../templates/console/dues/incidents.html"),
    ),
    (
        "console/dues/tradebill.html",
        include_str!("../../templates/console/dues/tradebill.html"),
    ),
    (
        "console/dues/ledger.html",
        include_str!("../../templates/console/dues/ledger.html"),
    ),
    (
        "console/stats/index.html",
        include_str!("../../templates/console/stats/index.html"),
    ),
    (
        "portal/layout.html",
        include_str!("../../templates/portal/layout.html"),
    ),
    (
        "portal/macros.html",
        include_str!("../../templates/portal/macros.html"),
    ),
    (
        "portal/index.html",
        include_str!("../../templates/portal/index.html"),
    ),
    (
        "portal/list.html",
        include_str!("../../templates/portal/list.html"),
    ),
    (
        "portal/board.html",
        include_str!("../../templates/portal/board.html"),
    ),
    (
        "console/activities/list.html",
        include_str!("../../templates/console/activities/list.html"),
    ),
    (
        "console/activities/edit.html",
        include_str!("../../templates/console/activities/edit.html"),
    ),
    (
        "console/activities/detail.html",
        include_str!("../../templates/console/activities/detail.html"),
    ),
    (
        "console/activities/checkin.html",
        include_str!("../../templates/console/activities/checkin.html"),
    ),
    (
        "console/activities/rhythm.html",
        include_str!("../../templates/console/activities/rhythm.html"),
    ),
    (
        "console/development/list.html",
        include_str!("../../templates/console/development/list.html"),
    ),
    (
        "console/development/record.html",
        include_str!("../../templates/console/development/record.html"),
    ),
    (
        "console/development/deadlines.html",
        include_str!("../../templates/console/development/deadlines.html"),
    ),
    (
        "console/members/list.html",
        include_str!("../../templates/console/members/list.html"),
    ),
    (
        "console/members/detail.html",
        include_str!("../../templates/console/members/detail.html"),
    ),
    (
        "console/members/import.html",
        include_str!("../../templates/console/members/import.html"),
    ),
    (
        "console/members/transfers.html",
        include_str!("../../templates/console/members/transfers.html"),
    ),
    (
        "console/members/incoming.html",
        include_str!("../../templates/console/members/incoming.html"),
    ),
    (
        "console/org/tree.html",
        include_str!("../../templates/console/org/tree.html"),
    ),
    (
        "console/audit/list.html",
        include_str!("../../templates/console/audit/list.html"),
    ),
    (
        "console/users/list.html",
        include_str!("../../templates/console/users/list.html"),
    ),
    (
        "console/wechat/index.html",
        include_str!("../../templates/console/wechat/index.html"),
    ),
];

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        env
    })
}

/// Render `templates/<name>` with `context`.
pub fn render<C: Serialize>(name: &str, context: C) -> Result<String, minijinja::Error> {
    env().get_template(name)?.render(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles_and_values_are_escaped() {
        for (name, _) in TEMPLATES {
            assert!(env().get_template(name).is_ok(), "{name}");
        }
        let html = render(
            "console/login.html",
            minijinja::context! { csrf => "x\"><script>", error => "<b>bad</b>" },
        )
        .unwrap();
        assert!(html.contains("x&quot;&gt;&lt;script&gt;"), "{html}");
        assert!(html.contains("&lt;b&gt;bad&lt;&#x2f;b&gt;"), "{html}");
        assert!(!html.contains("<script>"));
    }
}
