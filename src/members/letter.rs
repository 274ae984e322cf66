//! The introduction letter (中国共产党党员组织关系介绍信) of an outgoing transfer, rendered with
//! minijinja from `content/templates/transfer_letter.html` (a file of that name in
//! `DANGJIAN_CONTENT_DIR/templates/` overrides it). HTML auto-escaping is on: names and
//! organisations typed by people never become markup.

use std::path::Path;

use serde::Serialize;

use crate::platform::error::{AppError, AppResult};

const BUILTIN: &str = include_str!("../../content/templates/transfer_letter.html");
const NAME: &str = "transfer_letter.html";

/// What the letter shows.
#[derive(Debug, Clone, Serialize)]
pub struct Letter {
    pub letter_no: String,
    pub name: String,
    /// 正式党员 / 预备党员.
    pub party_status: &'static str,
    pub id_number: String,
    pub from_org: String,
    pub destination: String,
    pub reason: String,
    /// `2026年10月`.
    pub dues_paid_until: String,
    pub validity_days: i64,
    pub issued_on: String,
    pub expires_on: String,
    /// A returned letter is marked void.
    pub status: String,
}

/// The letter as an HTML page.
pub fn render(content_dir: &Path, letter: &Letter) -> AppResult<String> {
    let path = content_dir.join("templates").join(NAME);
    let source = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => BUILTIN.to_owned(),
        Err(e) => {
            return Err(AppError::Internal(
                anyhow::Error::new(e).context(format!("reading {}", path.display())),
            ))
        }
    };
    let mut env = minijinja::Environment::new();
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Html);
    env.add_template_owned(NAME, source)
        .and_then(|_| env.get_template(NAME)?.render(letter))
        .map_err(|e| AppError::Internal(anyhow::anyhow!("templates/{NAME}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_text_is_escaped_and_a_returned_letter_is_void() {
        let mut l = Letter {
            letter_no: "2026-000012".into(),
            name: "<script>alert(1)</script>张三".into(),
            party_status: "正式党员",
            id_number: "110105194912310029".into(),
            from_org: "计算机学院第一党支部".into(),
            destination: "某某大学\"党委\"".into(),
            reason: String::new(),
            dues_paid_until: "2026年10月".into(),
            validity_days: 30,
            issued_on: "2026-11-05".into(),
            expires_on: "2026-12-05".into(),
            status: "issued".into(),
        };
        let html = render(Path::new("/nonexistent"), &l).unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("党组字第 2026-000012 号"));
        assert!(html.contains("党费已交到 2026年10月"));
        assert!(html.contains("有效期 30 天"));
        assert!(!html.contains("作废"));
        l.status = "returned".into();
        assert!(render(Path::new("/nonexistent"), &l)
            .unwrap()
            .contains("作废"));
    }
}
