//! Dashboard logins: a NATS user per tenant (and one for the operator) with a random
//! password, kept in `<dir>/dashboard-users.json` (mode 0600, `<dir>` made 0700; `berth
//! up` passes `.berth/secrets`) so that URLs stay valid across restarts. The permissions themselves are written into the embedded
//! nats-server's configuration ([`crate::devservers::DashboardUser`]).

use std::path::Path;

use crate::devservers::DashboardUser;
use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The file in the given directory that keeps the logins.
pub const FILE: &str = "dashboard-users.json";

/// One login.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Login {
    pub user: String,
    pub password: String,
    /// `None`: the operator.
    pub tenant: Option<String>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("user", &self.user)
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl Login {
    pub fn new(user: &str, tenant: Option<&str>) -> Self {
        Self {
            user: user.to_owned(),
            password: uuid::Uuid::new_v4().simple().to_string(),
            tenant: tenant.map(str::to_owned),
        }
    }

    pub fn nats_user(&self) -> DashboardUser {
        DashboardUser {
            user: self.user.clone(),
            password: self.password.clone(),
            tenant: self.tenant.clone(),
        }
    }
}

/// The operator's login and one per tenant, reusing those already in `dir`.
pub fn logins(dir: &Path, tenants: &[&str]) -> anyhow::Result<Vec<Login>> {
    let path = dir.join(FILE);
    let mut known: Vec<Login> = match std::fs::read_to_string(&path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut wanted = vec![("operator", None)];
    wanted.extend(tenants.iter().map(|t| (*t, Some(*t))));
    for (user, tenant) in wanted {
        if let Some(tenant) = tenant {
            berth_schemas::TenantId::parse(tenant)?;
        }
        if !known.iter().any(|l| l.user == user) {
            known.push(Login::new(user, tenant));
        }
    }
    crate::devservers::create_private_dir(dir)?;
    crate::devservers::write_private(
        &path,
        serde_json::to_string_pretty(&known)?.as_bytes(),
        false,
    )?;
    Ok(known)
}

/// The URL a person opens: the page, with where NATS is and who logs in in the fragment
/// (a fragment is never sent to a server, so the password stays out of HTTP logs).
pub fn page_url(http: std::net::SocketAddr, websocket: &str, user: &Login) -> String {
    format!(
        "http://{http}/#ws={websocket}&tenant={}&user={}&pass={}",
        user.tenant.as_deref().unwrap_or("*"),
        user.user,
        user.password
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_kept_across_restarts_and_never_printed() {
        let dir = tempfile_dir();
        let first = logins(&dir, &["demo"]).unwrap();
        assert_eq!(first.len(), 2);
        let again = logins(&dir, &["demo", "acme"]).unwrap();
        assert_eq!(&again[..2], &first[..]);
        assert_eq!(again[2].tenant.as_deref(), Some("acme"));
        assert!(!format!("{:?}", again[0]).contains(&again[0].password));
        assert!(
            logins(&dir, &["a.b"]).is_err(),
            "a tenant must be a subject token"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(
            mode(&dir.join(FILE)),
            0o600,
            "passwords are the owner's only"
        );
        assert_eq!(mode(&dir), 0o700);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-dashboard-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
