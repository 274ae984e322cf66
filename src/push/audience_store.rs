//! Who a push goes to: the SQL that materialises the audience into delivery rows in one statement.
//!
//! Each channel addresses the openid of its app. Official-account channels (template, custom, the
//! account's subscribe notices `subscribe_oa`) go to followers (`followers.status = 'subscribed'`);
//! for member audiences that is the member's account openid (`members.oa_openid`, learned through
//! the UnionID), never the mini-program openid. The mini-program's subscribe messages (`subscribe`)
//! go to the member's mini-program openid (`members.openid`). Subscribe channels also need the
//! user's consent for the template on that app (`subscribe_grants`).
//!
//! A member who can't be reached gets a `skipped` row with the reason (never silently dropped):
//! `no_account_openid` / `no_mp_openid` (no openid for the channel's app), `not_following`,
//! `outside_48h` (custom), `no_consent`, `not_active` (listed by id but no longer on the roster).

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
    /// Subscribe channels: the template recipients must have accepted (on the channel's app).
    pub subscribe_template_id: &'a str,
}

/// `WITH ... INSERT INTO push_deliveries ... SELECT` of every recipient, `pending` or `skipped`
/// with a reason; duplicates collapse on UNIQUE(push_id, openid) (rows without an openid are one
/// per member).
pub fn materialise_sql(m: &Materialise<'_>) -> Sql {
    let mut sql = Sql::default();
    let push = sql.bind(Bind::I64(m.push_id));
    let now = sql.bind(Bind::I64(m.now_ms));
    let with = audience_cte(&mut sql, m);
    // A row without an openid can only be skipped (its reason says which openid is missing).
    sql.text = format!(
        "{with} \
         INSERT INTO push_deliveries (push_id, openid, member_id, status, error_code, attempts, next_attempt_at, updated_at) \
         SELECT {push}, openid, member_id, CASE WHEN reason IS NULL AND openid IS NOT NULL THEN 'pending' ELSE 'skipped' END, \
         CASE WHEN reason IS NULL AND openid IS NULL THEN 'no_openid' ELSE reason END, 0, 0, {now} \
         FROM audience WHERE openid IS NOT NULL OR member_id IS NOT NULL \
         ON CONFLICT (push_id, openid) DO NOTHING"
    );
    sql
}

/// The members of a member audience (`Members` / `OrgUnit`) that the channel reaches now: the rows
/// [`materialise_sql`] would make `pending`, by the same rules. A notice uses it to choose each
/// member's channel before it makes the push.
pub fn reachable_sql(m: &Materialise<'_>) -> Sql {
    let mut sql = Sql::default();
    let with = audience_cte(&mut sql, m);
    sql.text = format!(
        "{with} SELECT DISTINCT member_id FROM audience WHERE reason IS NULL AND openid IS NOT NULL AND member_id IS NOT NULL"
    );
    sql
}

/// `WITH [RECURSIVE] ..., audience(openid, member_id, reason) AS (...)`: every recipient with the
/// reason it is skipped (NULL = send).
fn audience_cte(sql: &mut Sql, m: &Materialise<'_>) -> String {
    // The follower-side reason a row is skipped (NULL = send).
    let follower_reason = match m.channel {
        Channel::Custom => {
            let cutoff = sql.bind(Bind::I64(m.custom_cutoff_ms));
            format!("CASE WHEN f.last_interaction_at IS NOT NULL AND f.last_interaction_at >= {cutoff} THEN NULL ELSE 'outside_48h' END")
        }
        _ => "CAST(NULL AS TEXT)".to_owned(),
    };
    // Consent on the channel's app: a join on `g` (a grant with a credit left).
    let consent_join = |sql: &mut Sql, openid_col: &str| -> String {
        let app = sql.bind(Bind::Str(m.channel.app().as_str().to_owned()));
        let t = sql.bind(Bind::Str(m.subscribe_template_id.to_owned()));
        format!(
            "LEFT JOIN subscribe_grants g ON g.app = {app} AND g.openid = {openid_col} AND g.template_id = {t} \
             AND g.status = 'accept' AND g.credits > 0"
        )
    };
    let mut ctes = Vec::new();
    // Members of the audience: org units (with sub-units) count active members only; members
    // listed by id are all answered for (`not_active` when no longer on the roster).
    let member_filter = |sql: &mut Sql, ctes: &mut Vec<String>| -> String {
        match m.kind {
            AudienceKind::OrgUnit => {
                let list = sql.list(m.ids);
                ctes.push(format!(
                    "units(id) AS (SELECT id FROM org_units WHERE id IN ({list}) \
                     UNION SELECT o.id FROM org_units o JOIN units u ON o.parent_id = u.id)"
                ));
                "m.org_unit_id IN (SELECT id FROM units) AND m.status = 'active'".to_owned()
            }
            _ => format!("m.id IN ({})", sql.list(m.ids)),
        }
    };
    let inactive = "WHEN m.status <> 'active' THEN 'not_active'";
    let no_member = "CAST(NULL AS BIGINT)";
    let audience = match (m.channel, m.kind) {
        // The mini-program's subscribe messages: mini-program users with consent.
        (Channel::Subscribe, AudienceKind::All) => {
            let app = sql.bind(Bind::Str(m.channel.app().as_str().to_owned()));
            let t = sql.bind(Bind::Str(m.subscribe_template_id.to_owned()));
            format!(
                "SELECT g.openid AS openid, {no_member} AS member_id, CAST(NULL AS TEXT) AS reason \
                 FROM subscribe_grants g WHERE g.app = {app} AND g.template_id = {t} AND g.status = 'accept' AND g.credits > 0"
            )
        }
        // Refused when the push is created (tags are the account's); nobody.
        (Channel::Subscribe, AudienceKind::Tag) => format!(
            "SELECT CAST(NULL AS TEXT) AS openid, {no_member} AS member_id, CAST(NULL AS TEXT) AS reason WHERE 1 = 0"
        ),
        (Channel::Subscribe, _) => {
            let join = consent_join(&mut *sql, "m.openid");
            let filter = member_filter(&mut *sql, &mut ctes);
            format!(
                "SELECT m.openid AS openid, m.id AS member_id, CASE {inactive} WHEN m.openid IS NULL THEN 'no_mp_openid' \
                 WHEN g.openid IS NULL THEN 'no_consent' ELSE NULL END AS reason \
                 FROM members m {join} WHERE {filter}"
            )
        }
        // The account's subscribe notices to everyone: followers with consent.
        (Channel::SubscribeOa, AudienceKind::All) => {
            let join = consent_join(&mut *sql, "f.openid").replacen("LEFT JOIN", "JOIN", 1);
            format!(
                "SELECT f.openid AS openid, {no_member} AS member_id, CAST(NULL AS TEXT) AS reason \
                 FROM followers f {join} WHERE f.status = 'subscribed'"
            )
        }
        (Channel::SubscribeOa, AudienceKind::Tag) => {
            let join = consent_join(&mut *sql, "f.openid");
            let list = sql.list(m.ids);
            format!(
                "SELECT DISTINCT f.openid AS openid, {no_member} AS member_id, \
                 CASE WHEN g.openid IS NULL THEN 'no_consent' ELSE NULL END AS reason FROM followers f \
                 JOIN follower_tags t ON t.openid = f.openid {join} WHERE f.status = 'subscribed' AND t.tag_id IN ({list})"
            )
        }
        (_, AudienceKind::All) => {
            format!("SELECT f.openid AS openid, {no_member} AS member_id, {follower_reason} AS reason FROM followers f WHERE f.status = 'subscribed'")
        }
        (_, AudienceKind::Tag) => {
            let list = sql.list(m.ids);
            format!(
                "SELECT DISTINCT f.openid AS openid, {no_member} AS member_id, {follower_reason} AS reason FROM followers f \
                 JOIN follower_tags t ON t.openid = f.openid WHERE f.status = 'subscribed' AND t.tag_id IN ({list})"
            )
        }
        // Official-account channels to members: their account openid.
        (channel, AudienceKind::OrgUnit | AudienceKind::Members) => {
            let (join, consent) = if channel == Channel::SubscribeOa {
                (
                    consent_join(&mut *sql, "m.oa_openid"),
                    "WHEN g.openid IS NULL THEN 'no_consent'",
                )
            } else {
                (String::new(), "")
            };
            let filter = member_filter(&mut *sql, &mut ctes);
            format!(
                "SELECT m.oa_openid AS openid, m.id AS member_id, CASE {inactive} \
                 WHEN m.oa_openid IS NULL THEN 'no_account_openid' \
                 WHEN f.openid IS NULL OR f.status <> 'subscribed' THEN 'not_following' {consent} \
                 ELSE {follower_reason} END AS reason FROM members m LEFT JOIN followers f ON f.openid = m.oa_openid \
                 {join} WHERE {filter}"
            )
        }
    };
    ctes.push(format!("audience AS ({audience})"));
    let recursive = if m.kind == AudienceKind::OrgUnit {
        "RECURSIVE "
    } else {
        ""
    };
    format!("WITH {recursive}{}", ctes.join(", "))
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

    fn members_sql(channel: Channel) -> Sql {
        materialise_sql(&Materialise {
            push_id: 1,
            channel,
            kind: AudienceKind::OrgUnit,
            ids: &[7],
            now_ms: 2,
            custom_cutoff_ms: 3,
            subscribe_template_id: "tpl",
        })
    }

    #[test]
    fn each_channel_addresses_the_openid_of_its_app() {
        for c in [Channel::Template, Channel::Custom, Channel::SubscribeOa] {
            let sql = members_sql(c);
            assert!(
                sql.text.contains("SELECT m.oa_openid AS openid"),
                "{c:?}: {}",
                sql.text
            );
            assert!(sql.text.contains("'no_account_openid'"), "{c:?}");
            assert!(
                !sql.text.contains("m.openid"),
                "{c:?}: never the mini-program openid"
            );
        }
        let sql = members_sql(Channel::Subscribe);
        assert!(
            sql.text.contains("SELECT m.openid AS openid"),
            "{}",
            sql.text
        );
        assert!(sql.text.contains("'no_mp_openid'") && sql.text.contains("'no_consent'"));
        assert!(!sql.text.contains("oa_openid"));
        assert!(sql.binds.contains(&Bind::Str("mp".into())));
        let sql = members_sql(Channel::SubscribeOa);
        assert!(
            sql.binds.contains(&Bind::Str("oa".into())),
            "consent on the account"
        );
        assert!(sql.text.contains("'no_consent'"));
    }
}
