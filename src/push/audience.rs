//! Who a push goes to: the SQL that materialises the audience into delivery rows in one statement.
//!
//! Official-account channels (template, custom) go to followers (`followers.status = 'subscribed'`);
//! member audiences use `members.openid` matched with the follower of the same OpenID, and members
//! who don't follow get a `skipped` row (`not_following`) so the editor sees them. The subscribe
//! channel goes to mini-program users with a consent credit for the template (`subscribe_grants`).

use super::{AudienceKind, Channel};

/// A value bound to a placeholder.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    I64(i64),
    Str(String),
}

/// SQL text with `$n` placeholders numbered as they are added.
#[derive(Debug, Default)]
pub struct Sql {
    pub text: String,
    pub binds: Vec<Bind>,
}

impl Sql {
    pub fn bind(&mut self, b: Bind) -> String {
        self.binds.push(b);
        format!("${}", self.binds.len())
    }

    pub fn list(&mut self, ids: &[i64]) -> String {
        ids.iter()
            .map(|i| self.bind(Bind::I64(*i)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    pub fn query(&self) -> sqlx::query::Query<'_, sqlx::Any, sqlx::any::AnyArguments<'_>> {
        let mut q = sqlx::query(&self.text);
        for b in &self.binds {
            q = match b {
                Bind::I64(v) => q.bind(*v),
                Bind::Str(v) => q.bind(v.as_str()),
            };
        }
        q
    }
}

/// What the materialising INSERT needs to know.
pub struct Materialise<'a> {
    pub push_id: i64,
    pub channel: Channel,
    pub kind: AudienceKind,
    pub ids: &'a [i64],
    pub now_ms: i64,
    /// Custom channel: followers who interacted at or after this time (now − 48 h).
    pub custom_cutoff_ms: i64,
    /// Subscribe channel: the template recipients must have accepted.
    pub subscribe_template_id: &'a str,
}

/// `WITH ... INSERT INTO push_deliveries ... SELECT` of every recipient, `pending` or `skipped`
/// with a reason; duplicates collapse on UNIQUE(push_id, openid).
pub fn materialise_sql(m: &Materialise<'_>) -> Sql {
    let mut sql = Sql::default();
    let push = sql.bind(Bind::I64(m.push_id));
    let now = sql.bind(Bind::I64(m.now_ms));
    // The follower-side reason a row is skipped (NULL = send).
    let follower_reason = match m.channel {
        Channel::Custom => {
            let cutoff = sql.bind(Bind::I64(m.custom_cutoff_ms));
            format!("CASE WHEN f.last_interaction_at IS NOT NULL AND f.last_interaction_at >= {cutoff} THEN NULL ELSE 'outside_48h' END")
        }
        _ => "CAST(NULL AS TEXT)".to_owned(),
    };
    let mut ctes = Vec::new();
    let member_filter = |sql: &mut Sql, ctes: &mut Vec<String>| -> String {
        match m.kind {
            AudienceKind::OrgUnit => {
                let list = sql.list(m.ids);
                ctes.push(format!(
                    "units(id) AS (SELECT id FROM org_units WHERE id IN ({list}) \
                     UNION SELECT o.id FROM org_units o JOIN units u ON o.parent_id = u.id)"
                ));
                "m.org_unit_id IN (SELECT id FROM units)".to_owned()
            }
            _ => format!("m.id IN ({})", sql.list(m.ids)),
        }
    };
    let audience = match (m.channel, m.kind) {
        (Channel::Subscribe, AudienceKind::All) => {
            let t = sql.bind(Bind::Str(m.subscribe_template_id.to_owned()));
            format!(
                "SELECT g.openid AS openid, CAST(NULL AS TEXT) AS reason FROM subscribe_grants g \
                 WHERE g.template_id = {t} AND g.status = 'accept' AND g.credits > 0"
            )
        }
        (Channel::Subscribe, _) => {
            let t = sql.bind(Bind::Str(m.subscribe_template_id.to_owned()));
            let filter = member_filter(&mut sql, &mut ctes);
            format!(
                "SELECT m.openid AS openid, CASE WHEN g.openid IS NULL THEN 'no_consent' ELSE NULL END AS reason \
                 FROM members m LEFT JOIN subscribe_grants g ON g.openid = m.openid AND g.template_id = {t} \
                 AND g.status = 'accept' AND g.credits > 0 WHERE m.openid IS NOT NULL AND {filter}"
            )
        }
        (_, AudienceKind::All) => {
            format!("SELECT f.openid AS openid, {follower_reason} AS reason FROM followers f WHERE f.status = 'subscribed'")
        }
        (_, AudienceKind::Tag) => {
            let list = sql.list(m.ids);
            format!(
                "SELECT DISTINCT f.openid AS openid, {follower_reason} AS reason FROM followers f \
                 JOIN follower_tags t ON t.openid = f.openid WHERE f.status = 'subscribed' AND t.tag_id IN ({list})"
            )
        }
        (_, AudienceKind::OrgUnit | AudienceKind::Members) => {
            let filter = member_filter(&mut sql, &mut ctes);
            format!(
                "SELECT m.openid AS openid, CASE WHEN f.openid IS NULL OR f.status <> 'subscribed' THEN 'not_following' \
                 ELSE {follower_reason} END AS reason FROM members m LEFT JOIN followers f ON f.openid = m.openid \
                 WHERE m.openid IS NOT NULL AND {filter}"
            )
        }
    };
    ctes.push(format!("audience AS ({audience})"));
    let recursive = if m.kind == AudienceKind::OrgUnit {
        "RECURSIVE "
    } else {
        ""
    };
    sql.text = format!(
        "WITH {recursive}{} \
         INSERT INTO push_deliveries (push_id, openid, status, error_code, attempts, next_attempt_at, updated_at) \
         SELECT {push}, openid, CASE WHEN reason IS NULL THEN 'pending' ELSE 'skipped' END, reason, 0, 0, {now} \
         FROM audience WHERE openid IS NOT NULL \
         ON CONFLICT (push_id, openid) DO NOTHING",
        ctes.join(", ")
    );
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_bind_order() {
        let ids = [4, 5];
        let sql = materialise_sql(&Materialise {
            push_id: 1,
            channel: Channel::Custom,
            kind: AudienceKind::Tag,
            ids: &ids,
            now_ms: 2,
            custom_cutoff_ms: 3,
            subscribe_template_id: "t",
        });
        assert_eq!(
            sql.binds,
            vec![
                Bind::I64(1),
                Bind::I64(2),
                Bind::I64(3),
                Bind::I64(4),
                Bind::I64(5)
            ]
        );
        assert!(sql.text.contains("t.tag_id IN ($4, $5)"), "{}", sql.text);
        assert!(sql.text.contains(">= $3"));
    }
}
