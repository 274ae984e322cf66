//! Editor-owned content files: automatic replies, the custom menu, demo articles, the
//! sensitive-word list, the member-development steps (发展党员).
//! Files in `DANGJIAN_CONTENT_DIR` override the built-in copies; they are re-read on SIGHUP and
//! whenever a file's modification time changes, so wording changes need no deploy. A broken
//! file is reported and the previous version stays in force.

use std::{
    any::Any,
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::SystemTime,
};

use anyhow::Context;
use regex::Regex;
use serde::Deserialize;

const BUILTIN_REPLIES: &str = include_str!("../../content/replies.toml");
const BUILTIN_MENU: &str = include_str!("../../content/menu.toml");
const BUILTIN_DEMO_ARTICLES: &str = include_str!("../../content/demo_articles.toml");
const BUILTIN_SENSITIVE_WORDS: &str = include_str!("../../content/sensitive_words.txt");

const FILES: [&str; 4] = [
    "replies.toml",
    "menu.toml",
    "demo_articles.toml",
    "sensitive_words.txt",
];

/// What a rule or menu click answers with.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Text(String),
    NewestArticle { category: String },
}

#[derive(Debug, Deserialize)]
struct RepliesFile {
    welcome: WelcomeFile,
    default: DefaultFile,
    #[serde(default)]
    rules: Vec<RuleFile>,
}

#[derive(Debug, Deserialize)]
struct WelcomeFile {
    text: String,
    #[serde(default)]
    newest_article: bool,
}

#[derive(Debug, Deserialize)]
struct DefaultFile {
    text: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "lowercase")]
enum MatchKind {
    Exact,
    Prefix,
    Regex,
}

#[derive(Debug, Deserialize)]
struct RuleFile {
    kind: MatchKind,
    pattern: String,
    #[serde(default)]
    priority: i64,
    text: Option<String>,
    category: Option<String>,
}

fn answer_of(text: Option<String>, category: Option<String>, what: &str) -> anyhow::Result<Answer> {
    match (text, category) {
        (Some(t), None) => Ok(Answer::Text(t)),
        (None, Some(c)) => Ok(Answer::NewestArticle { category: c }),
        _ => anyhow::bail!("{what}: give exactly one of `text` or `category`"),
    }
}

#[derive(Debug)]
enum Matcher {
    Exact(String),
    Prefix(String),
    Regex(Regex),
}

#[derive(Debug)]
pub struct Rule {
    matcher: Matcher,
    pub answer: Answer,
}

impl Rule {
    fn matches(&self, text: &str) -> bool {
        match &self.matcher {
            Matcher::Exact(p) => text == p,
            Matcher::Prefix(p) => text.starts_with(p.as_str()),
            Matcher::Regex(r) => r.is_match(text),
        }
    }
}

#[derive(Debug)]
pub struct Replies {
    pub welcome_text: String,
    pub welcome_newest_article: bool,
    pub default_text: String,
    /// Sorted by priority, highest first (stable: file order among equals).
    rules: Vec<Rule>,
}

impl Replies {
    pub fn parse(src: &str) -> anyhow::Result<Replies> {
        let file: RepliesFile = toml::from_str(src)?;
        let mut ranked = Vec::with_capacity(file.rules.len());
        for (i, r) in file.rules.into_iter().enumerate() {
            let what = format!("rules[{i}] ({})", r.pattern);
            let matcher = match r.kind {
                MatchKind::Exact => Matcher::Exact(r.pattern),
                MatchKind::Prefix => Matcher::Prefix(r.pattern),
                MatchKind::Regex => Matcher::Regex(
                    Regex::new(&r.pattern).with_context(|| format!("{what}: bad regex"))?,
                ),
            };
            ranked.push((
                r.priority,
                Rule {
                    matcher,
                    answer: answer_of(r.text, r.category, &what)?,
                },
            ));
        }
        ranked.sort_by_key(|(p, _)| std::cmp::Reverse(*p));
        Ok(Replies {
            welcome_text: file.welcome.text,
            welcome_newest_article: file.welcome.newest_article,
            default_text: file.default.text,
            rules: ranked.into_iter().map(|(_, r)| r).collect(),
        })
    }

    /// The answer to a text message: the first matching rule, else the default text.
    pub fn answer_text(&self, text: &str) -> Answer {
        let text = text.trim();
        self.rules
            .iter()
            .find(|r| r.matches(text))
            .map(|r| r.answer.clone())
            .unwrap_or_else(|| Answer::Text(self.default_text.clone()))
    }
}

/// The menu as WeChat's `menu/create` wants it, plus what each click key answers.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct Menu {
    pub categories: Vec<String>,
    pub button: Vec<MenuButton>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
pub struct MenuButton {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub key: Option<String>,
    pub url: Option<String>,
    pub appid: Option<String>,
    pub pagepath: Option<String>,
    pub category: Option<String>,
    pub text: Option<String>,
    #[serde(default)]
    pub sub_button: Vec<MenuButton>,
}

impl Menu {
    pub fn parse(src: &str) -> anyhow::Result<Menu> {
        let menu: Menu = toml::from_str(src)?;
        for b in menu.buttons() {
            if b.kind.as_deref() == Some("click") {
                let key = b
                    .key
                    .as_deref()
                    .with_context(|| format!("menu `{}`: click needs `key`", b.name))?;
                answer_of(
                    b.text.clone(),
                    b.category.clone(),
                    &format!("menu key {key}"),
                )?;
                if let Some(c) = &b.category {
                    anyhow::ensure!(
                        menu.categories.contains(c),
                        "menu key {key}: unknown category {c}"
                    );
                }
            }
        }
        Ok(menu)
    }

    /// Every leaf button (top-level buttons without sub-buttons, and all sub-buttons).
    pub fn buttons(&self) -> impl Iterator<Item = &MenuButton> {
        self.button.iter().flat_map(|b| {
            if b.sub_button.is_empty() {
                std::slice::from_ref(b).iter()
            } else {
                b.sub_button.iter()
            }
        })
    }

    pub fn click_answer(&self, key: &str) -> Option<Answer> {
        self.buttons()
            .find(|b| b.key.as_deref() == Some(key))
            .and_then(|b| answer_of(b.text.clone(), b.category.clone(), key).ok())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct DemoArticle {
    pub category: String,
    pub title: String,
    pub summary: String,
    pub body_md: String,
}

#[derive(Debug, Deserialize)]
struct DemoArticlesFile {
    article: Vec<DemoArticle>,
}

/// One consistent version of all content files.
#[derive(Debug)]
pub struct ContentSet {
    pub replies: Replies,
    pub menu: Menu,
    pub demo_articles: Vec<DemoArticle>,
    /// The local list checked before WeChat's msgSecCheck.
    pub sensitive_words: SensitiveWords,
    /// Files that features define (see [`ContentFile`]), parsed, by file name.
    files: HashMap<&'static str, Parsed>,
}

impl ContentSet {
    fn load(dir: &Path, files: &[ContentFile]) -> anyhow::Result<ContentSet> {
        let read = |name: &str, builtin: &str| -> anyhow::Result<String> {
            let path = dir.join(name);
            match std::fs::read_to_string(&path) {
                Ok(s) => Ok(s),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(builtin.to_owned()),
                Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
            }
        };
        let replies =
            Replies::parse(&read("replies.toml", BUILTIN_REPLIES)?).context("replies.toml")?;
        let menu = Menu::parse(&read("menu.toml", BUILTIN_MENU)?).context("menu.toml")?;
        let demo: DemoArticlesFile =
            toml::from_str(&read("demo_articles.toml", BUILTIN_DEMO_ARTICLES)?)
                .context("demo_articles.toml")?;
        let sensitive_words =
            SensitiveWords::parse(&read("sensitive_words.txt", BUILTIN_SENSITIVE_WORDS)?);
        let mut parsed = HashMap::new();
        for f in files {
            let doc = (f.parse)(&read(f.name, f.builtin)?).context(f.name)?;
            parsed.insert(f.name, doc);
        }
        Ok(ContentSet {
            replies,
            menu,
            demo_articles: demo.article,
            sensitive_words,
            files: parsed,
        })
    }

    /// A feature's content file, parsed (`None` if it was not registered or is another type).
    pub fn file<T: Any + Send + Sync>(&self, name: &str) -> Option<&T> {
        self.files.get(name).and_then(|d| d.downcast_ref::<T>())
    }
}

/// A parsed content file of a feature.
pub type Parsed = Arc<dyn Any + Send + Sync>;

/// A content file a feature defines (e.g. the development steps): its name in the content folder,
/// the built-in copy used when the folder lacks it, and the parser that validates it. Registered
/// in `startup.rs`; reloaded with the other files, and a broken edit keeps the previous version.
#[derive(Clone, Copy)]
pub struct ContentFile {
    pub name: &'static str,
    pub builtin: &'static str,
    pub parse: fn(&str) -> anyhow::Result<Parsed>,
}

pub struct ContentStore {
    dir: PathBuf,
    files: &'static [ContentFile],
    current: RwLock<(Arc<ContentSet>, Vec<Option<SystemTime>>)>,
}

impl ContentStore {
    pub fn load(dir: impl Into<PathBuf>) -> anyhow::Result<ContentStore> {
        Self::load_with(dir, &[])
    }

    /// Load the built-in files and the features' `files`.
    pub fn load_with(
        dir: impl Into<PathBuf>,
        files: &'static [ContentFile],
    ) -> anyhow::Result<ContentStore> {
        let dir = dir.into();
        let set = ContentSet::load(&dir, files)?;
        let stamps = stamps(&dir, files);
        Ok(ContentStore {
            dir,
            files,
            current: RwLock::new((Arc::new(set), stamps)),
        })
    }

    pub fn get(&self) -> Arc<ContentSet> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Re-read the files; on error keep the current version and return the error.
    pub fn reload(&self) -> anyhow::Result<()> {
        let stamps = stamps(&self.dir, self.files);
        let set = ContentSet::load(&self.dir, self.files)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (Arc::new(set), stamps);
        tracing::info!(dir = %self.dir.display(), "content reloaded");
        Ok(())
    }

    /// Reload when a file's modification time changed since the last load.
    pub fn reload_if_changed(&self) -> anyhow::Result<bool> {
        let now = stamps(&self.dir, self.files);
        if self.current.read().unwrap_or_else(|e| e.into_inner()).1 == now {
            return Ok(false);
        }
        self.reload().map(|_| true)
    }
}

fn stamps(dir: &Path, files: &[ContentFile]) -> Vec<Option<SystemTime>> {
    FILES
        .iter()
        .copied()
        .chain(files.iter().map(|f| f.name))
        .map(|f| {
            std::fs::metadata(dir.join(f))
                .and_then(|m| m.modified())
                .ok()
        })
        .collect()
}

/// The local word list (`content/sensitive_words.txt`): one word per line, `#` comments, blank
/// lines ignored. Matching is by substring over a folded form of both the words and the text, so
/// the usual evasions still hit: NFKC (full-width `ＳＰＡＭ`, `１２３`, compatibility forms), case
/// folded, and only letters and digits kept — whitespace, zero-width and other format characters
/// (U+200B/200C/200D/2060/FEFF, every category Cf), punctuation and symbols between the characters
/// are dropped, so `刷 单`, `刷\u{200B}单`, `刷.单` and `刷_单` all hit `刷单`. One Aho-Corasick
/// automaton matches every word at once (a real list has thousands).
#[derive(Debug, Clone, Default)]
pub struct SensitiveWords {
    words: Vec<String>,
    matcher: Option<aho_corasick::AhoCorasick>,
}

impl PartialEq for SensitiveWords {
    fn eq(&self, other: &Self) -> bool {
        self.words == other.words
    }
}

/// The folded form matched: NFKC, lower case, letters and digits only. (Format characters,
/// category Cf, are neither letters nor digits, so they go with the punctuation.)
pub fn fold(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.nfkc()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        // Lower-casing may produce a combining mark (e.g. `İ` → `i̇`): keep letters and digits only.
        .filter(|c| c.is_alphanumeric())
        .collect()
}

impl SensitiveWords {
    pub fn parse(src: &str) -> SensitiveWords {
        let mut words: Vec<String> = src
            .lines()
            .map(|l| l.split('#').next().unwrap_or_default())
            .map(fold)
            .filter(|w| !w.is_empty())
            .collect();
        words.sort();
        words.dedup();
        let matcher = (!words.is_empty()).then(|| {
            aho_corasick::AhoCorasick::builder()
                .match_kind(aho_corasick::MatchKind::LeftmostFirst)
                .build(&words)
                .expect("a word list is a valid automaton")
        });
        SensitiveWords { words, matcher }
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// A listed word the text contains (the leftmost match).
    pub fn find(&self, text: &str) -> Option<&str> {
        let m = self.matcher.as_ref()?.find(&fold(text))?;
        Some(self.words[m.pattern().as_usize()].as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13, item 7: the evasions of the review, as a table.
    #[test]
    fn sensitive_words_see_through_evasions() {
        let w = SensitiveWords::parse("刷单\nspam\n法轮\n代开发票\n");
        let hits = [
            ("我们刷单吧", "刷单"),
            ("刷 单", "刷单"),
            ("刷\u{3000}单", "刷单"),
            ("刷\u{200B}单", "刷单"),
            ("刷\u{200C}单", "刷单"),
            ("刷\u{200D}单", "刷单"),
            ("刷\u{2060}单", "刷单"),
            ("刷\u{FEFF}单", "刷单"),
            ("刷\u{00AD}单", "刷单"),
            ("刷\u{202E}单", "刷单"),
            ("刷.单", "刷单"),
            ("刷。单", "刷单"),
            ("刷-_-单", "刷单"),
            ("刷*单", "刷单"),
            ("刷❤单", "刷单"),
            ("buy SpAm now", "spam"),
            ("ＳＰＡＭ", "spam"),
            ("ｓ ｐ ａ ｍ", "spam"),
            ("s.p.a.m", "spam"),
            ("S\u{200B}P\u{FEFF}A\u{2060}M", "spam"),
            ("法\u{200B}轮", "法轮"),
            ("代 开.发\u{200D}票", "代开发票"),
        ];
        for (text, word) in hits {
            assert_eq!(w.find(text), Some(word), "{text:?}");
        }
        for clean in ["学习心得", "sparse maps", "刷卡单位", ""] {
            assert_eq!(w.find(clean), None, "{clean:?}");
        }
        // Words in the list are folded the same way.
        let w = SensitiveWords::parse("Ｓ.P.A.M\n");
        assert_eq!(w.find("spam"), Some("spam"));
    }

    #[test]
    fn builtin_content_parses_and_rules_rank_by_priority() {
        let r = Replies::parse(BUILTIN_REPLIES).unwrap();
        assert!(matches!(r.answer_text(" 帮助 "), Answer::Text(t) if t.contains("可用关键词")));
        assert_eq!(
            r.answer_text("党建动态"),
            Answer::NewestArticle {
                category: "党建动态".into()
            }
        );
        assert!(matches!(r.answer_text("电话多少"), Answer::Text(t) if t.contains("302")));
        assert_eq!(r.answer_text("什么"), Answer::Text(r.default_text.clone()));
        let menu = Menu::parse(BUILTIN_MENU).unwrap();
        assert_eq!(menu.categories.len(), 20);
        assert_eq!(
            menu.click_answer("CAT_LILUN_YANJIU"),
            Some(Answer::NewestArticle {
                category: "理论研究".into()
            })
        );
        assert_eq!(menu.click_answer("nope"), None);
    }

    #[test]
    fn higher_priority_wins_over_file_order() {
        let r = Replies::parse(
            r#"
            welcome = { text = "hi" }
            default = { text = "?" }
            [[rules]]
            kind = "prefix"
            pattern = "a"
            priority = 1
            text = "low"
            [[rules]]
            kind = "exact"
            pattern = "ab"
            priority = 5
            text = "high"
            "#,
        )
        .unwrap();
        assert_eq!(r.answer_text("ab"), Answer::Text("high".into()));
        assert_eq!(r.answer_text("ac"), Answer::Text("low".into()));
    }

    #[test]
    fn broken_file_keeps_previous_version() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::load(dir.path()).unwrap();
        std::fs::write(
            dir.path().join("replies.toml"),
            "welcome = { text = \"新欢迎\" }\ndefault = { text = \"d\" }\n",
        )
        .unwrap();
        assert!(store.reload_if_changed().unwrap());
        assert_eq!(store.get().replies.welcome_text, "新欢迎");
        std::fs::write(
            dir.path().join("replies.toml"),
            "[[rules]]\nkind = \"regex\"\npattern = \"(\"\n",
        )
        .unwrap();
        assert!(store.reload_if_changed().is_err());
        assert_eq!(store.get().replies.welcome_text, "新欢迎");
    }
}
