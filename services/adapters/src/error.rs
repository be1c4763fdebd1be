//! Why a call to a provider or runtime failed, and the refusal to act on another
//! tenant's resource.

use berth_schemas::TenantId;

/// Why a provider call failed, with a stable code per variant:
///
/// | code                   | variant     |
/// |------------------------|-------------|
/// | `provider_transient`   | `Transient` |
/// | `provider_permanent`   | `Permanent` |
/// | `provider_not_found`   | `NotFound`  |
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// Worth retrying: timeouts, a busy host, a lost connection.
    #[error("{0}")]
    Transient(String),
    /// Retrying will not help: a bad image, a refused size, a machine of another tenant.
    #[error("{0}")]
    Permanent(String),
    /// The machine is not there.
    #[error("machine {0} does not exist")]
    NotFound(String),
}

impl ProviderError {
    /// The stable code of this error, as used in logs, rejections and dead letters.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Transient(_) => "provider_transient",
            Self::Permanent(_) => "provider_permanent",
            Self::NotFound(_) => "provider_not_found",
        }
    }
}

impl berth_runtime::Coded for ProviderError {
    fn code(&self) -> &'static str {
        ProviderError::code(self)
    }
}

/// `Ok` if `owner` (what the provider recorded for `what`) is `tenant`, else the
/// refusal [`foreign`] describes.
pub fn check_owner(
    what: &str,
    owner: Option<&str>,
    tenant: &TenantId,
) -> Result<(), ProviderError> {
    if owner == Some(tenant.as_str()) {
        Ok(())
    } else {
        Err(foreign(what, owner, tenant.as_str()))
    }
}

/// The permanent refusal to act for `tenant` on `what` (`machine berth-vm-…`,
/// `volume berth-vol-…`), which the provider records as `owner`'s (or no one's). The
/// message reaches `tenant` (a failed VM's reason, a command's rejection), so it never
/// names the other tenant; the log line for operators does.
pub fn foreign(what: &str, owner: Option<&str>, tenant: &str) -> ProviderError {
    tracing::warn!(
        what,
        owner,
        tenant,
        "refused to act on another tenant's resource"
    );
    ProviderError::Permanent(match owner {
        Some(_) => format!(
            "conflict: {what} belongs to another tenant, not to tenant {tenant}; it was left untouched"
        ),
        None => format!(
            "conflict: {what} carries no owning tenant, so tenant {tenant} may not use it; it was left untouched"
        ),
    })
}
