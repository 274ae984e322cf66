//! Moderation decisions, with no I/O: the local sensitive-word list, and what a verdict means for
//! a submission or a board post. Nothing user-written is ever approved by a machine: the best a
//! machine check can do is send it to the editors' queue marked as checked.

use wechat::client::Suggest;

/// The local list (`content/sensitive_words.txt`): one word per line, `#` comments, blank lines
/// ignored. Matching is by substring, case-insensitive, ignoring whitespace inside the text so
/// `刷 单` still hits `刷单`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SensitiveWords {
    words: Vec<String>,
}

fn fold(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
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
        SensitiveWords { words }
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// The first listed word the text contains.
    pub fn find(&self, text: &str) -> Option<&str> {
        let text = fold(text);
        self.words
            .iter()
            .find(|w| text.contains(w.as_str()))
            .map(String::as_str)
    }
}

/// What the checks said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The local list matched this word.
    LocalHit(String),
    /// WeChat's msgSecCheck v2 answered.
    Remote { suggest: Suggest, label: i64 },
    /// msgSecCheck could not be reached or refused the call: a human decides.
    Unchecked,
}

/// The state a moderated item starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initial {
    /// In the editors' queue.
    Pending,
    /// Refused automatically; the author gets a polite reply.
    Rejected,
}

impl Initial {
    pub fn as_str(self) -> &'static str {
        match self {
            Initial::Pending => "pending",
            Initial::Rejected => "rejected",
        }
    }
}

/// The outcome recorded with the item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moderation {
    pub initial: Initial,
    /// `local`, `pass`, `review`, `risky` or `unchecked`.
    pub suggest: &'static str,
    /// WeChat's label number, or the matched local word.
    pub label: Option<String>,
}

pub fn decide(verdict: &Verdict) -> Moderation {
    match verdict {
        Verdict::LocalHit(word) => Moderation {
            initial: Initial::Rejected,
            suggest: "local",
            label: Some(word.clone()),
        },
        Verdict::Remote {
            suggest: Suggest::Risky,
            label,
        } => Moderation {
            initial: Initial::Rejected,
            suggest: "risky",
            label: Some(label.to_string()),
        },
        // Pass only means "machine-checked": an editor still approves.
        Verdict::Remote {
            suggest: Suggest::Pass,
            label,
        } => Moderation {
            initial: Initial::Pending,
            suggest: "pass",
            label: Some(label.to_string()),
        },
        // Review, and any suggestion WeChat may add later.
        Verdict::Remote { label, .. } => Moderation {
            initial: Initial::Pending,
            suggest: "review",
            label: Some(label.to_string()),
        },
        Verdict::Unchecked => Moderation {
            initial: Initial::Pending,
            suggest: "unchecked",
            label: None,
        },
    }
}

/// An editor's decision on a pending item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EditorDecision {
    Approve,
    Reject,
}

impl EditorDecision {
    pub fn status(self) -> &'static str {
        match self {
            EditorDecision::Approve => "approved",
            EditorDecision::Reject => "rejected",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_list_skips_comments_and_matches_folded_text() {
        let w = SensitiveWords::parse("# comment\n刷单\n\n  SPAM  # trailing\n刷单\n");
        assert_eq!(w.len(), 2);
        assert_eq!(w.find("我们 刷 单 吧"), Some("刷单"));
        assert_eq!(w.find("buy Spam now"), Some("spam"));
        assert_eq!(w.find("学习心得"), None);
        assert!(SensitiveWords::parse("# only comments\n").is_empty());
    }

    #[test]
    fn builtin_list_parses_and_is_short() {
        let w = SensitiveWords::parse(include_str!("../../content/sensitive_words.txt"));
        assert!(!w.is_empty() && w.len() < 50);
        assert_eq!(w.find("学习二十大精神心得体会"), None);
    }

    #[test]
    fn nothing_is_approved_by_a_machine() {
        let pass = decide(&Verdict::Remote {
            suggest: Suggest::Pass,
            label: 100,
        });
        assert_eq!((pass.initial, pass.suggest), (Initial::Pending, "pass"));
        let review = decide(&Verdict::Remote {
            suggest: Suggest::Review,
            label: 21000,
        });
        assert_eq!(review.initial, Initial::Pending);
        let unknown = decide(&Verdict::Remote {
            suggest: Suggest::Unknown,
            label: 1,
        });
        assert_eq!(
            (unknown.initial, unknown.suggest),
            (Initial::Pending, "review")
        );
        assert_eq!(decide(&Verdict::Unchecked).initial, Initial::Pending);
        let risky = decide(&Verdict::Remote {
            suggest: Suggest::Risky,
            label: 20006,
        });
        assert_eq!(risky.initial, Initial::Rejected);
        let local = decide(&Verdict::LocalHit("刷单".into()));
        assert_eq!(
            (local.initial, local.label.as_deref()),
            (Initial::Rejected, Some("刷单"))
        );
    }
}
