//! Roles and permissions: what each admin role may do is data ([`Role::allows`]). Every
//! `/api/admin` route declares the [`Permission`] it needs in the route table
//! (`http::routes::AdminRoutes`); the auth feature enforces it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Members, dues and activities of their org unit and its children.
    Secretary,
    /// Articles, pushes, moderation.
    Editor,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Secretary, Role::Editor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Secretary => "secretary",
            Role::Editor => "editor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The permission table: one place that says who may do what.
    pub fn allows(self, p: Permission) -> bool {
        use Permission::*;
        match p {
            Public | Authenticated | ReadStats => true,
            ManageUsers | ReadAudit => self == Role::Admin,
            // Secretaries: inside their own subtree (the handlers check the org scope).
            ManageOrgUnits | ReadMembers | WriteMembers | RevealPersonalData | ManageDues
            | ManageActivities | ManageDevelopment => matches!(self, Role::Admin | Role::Secretary),
            ApproveDevelopment => self == Role::Admin,
            ManageArticles | ManagePushes | Moderate => matches!(self, Role::Admin | Role::Editor),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a route needs. Every `/api/admin` route declares one (see `http::admin::AdminRoutes`).
/// Secretaries' member/dues/activity permissions are further limited to their org-unit subtree:
/// use [`AdminSession::org_scope`] in the handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// No session needed (login).
    Public,
    /// Any signed-in account (me, logout, own password).
    Authenticated,
    ManageUsers,
    ReadAudit,
    ManageOrgUnits,
    ReadMembers,
    WriteMembers,
    /// See phone, ID number and income in clear (audited).
    RevealPersonalData,
    ManageDues,
    ManageActivities,
    ManageArticles,
    ManagePushes,
    Moderate,
    ReadStats,
    /// 发展党员: records, steps, documents, reports (secretaries: their org-unit subtree).
    ManageDevelopment,
    /// The upper committee's decisions on development steps (approve / return).
    ApproveDevelopment,
}

impl Permission {
    pub const ALL: [Permission; 16] = [
        Permission::Public,
        Permission::Authenticated,
        Permission::ManageUsers,
        Permission::ReadAudit,
        Permission::ManageOrgUnits,
        Permission::ReadMembers,
        Permission::WriteMembers,
        Permission::RevealPersonalData,
        Permission::ManageDues,
        Permission::ManageActivities,
        Permission::ManageArticles,
        Permission::ManagePushes,
        Permission::Moderate,
        Permission::ReadStats,
        Permission::ManageDevelopment,
        Permission::ApproveDevelopment,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_may_do_everything_and_others_only_their_part() {
        for p in Permission::ALL {
            assert!(Role::Admin.allows(p), "{p:?}");
        }
        assert!(Role::Secretary.allows(Permission::RevealPersonalData));
        assert!(!Role::Secretary.allows(Permission::ManagePushes));
        assert!(!Role::Editor.allows(Permission::ReadMembers));
        assert!(Role::Editor.allows(Permission::Moderate));
        assert!(!Role::Editor.allows(Permission::ManageUsers));
        assert_eq!(Role::parse("secretary"), Some(Role::Secretary));
        assert_eq!(Role::parse("root"), None);
    }
}
