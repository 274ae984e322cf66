//! Markdown → sanitised HTML for article bodies (editors write Markdown; readers get safe HTML).

pub fn render(md: &str) -> String {
    let parser = pulldown_cmark::Parser::new_ext(md, pulldown_cmark::Options::ENABLE_TABLES);
    let mut html = String::with_capacity(md.len() * 3 / 2);
    pulldown_cmark::html::push_html(&mut html, parser);
    ammonia::clean(&html)
}

#[cfg(test)]
mod tests {
    #[test]
    fn scripts_are_removed_and_tables_kept() {
        let html = super::render(
            "# 标题\n\n<script>alert(1)</script>\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
        );
        assert!(html.contains("<h1>标题</h1>"));
        assert!(html.contains("<table>"));
        assert!(!html.contains("<script"));
    }
}
