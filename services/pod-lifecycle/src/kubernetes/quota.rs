//! [`TenantQuota`]: how much one tenant's namespace may hold.

use crate::runtime::Resources;

/// What one tenant's namespace may hold at most: the `hard` limits of its
/// ResourceQuota. Requests and limits are both capped at the totals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TenantQuota {
    pub pods: u32,
    pub cpu_millis: u32,
    pub memory_mb: u32,
    pub volumes: u32,
    pub storage_mb: u32,
}

impl TenantQuota {
    /// Pods a tenant may run by default.
    pub const DEFAULT_PODS: u32 = 20;
    /// [`Self::DEFAULT_PODS`] pods of the catalog's largest plan (n8n `pro`: 2 CPUs,
    /// 2 GiB of memory, a 1 GiB volume); the catalog's tests check that it still is.
    pub const DEFAULT: Self = Self {
        pods: Self::DEFAULT_PODS,
        cpu_millis: Self::DEFAULT_PODS * 2000,
        memory_mb: Self::DEFAULT_PODS * 2048,
        volumes: Self::DEFAULT_PODS,
        storage_mb: Self::DEFAULT_PODS * 1024,
    };

    /// Whether `pods` pods of `resources` with a volume of `volume_mb` each fit.
    pub fn fits(&self, pods: u32, resources: &Resources, volume_mb: u32) -> bool {
        let total = |each: u32| u64::from(each) * u64::from(pods);
        pods <= self.pods
            && pods <= self.volumes
            && total(resources.cpu_limit_millis) <= u64::from(self.cpu_millis)
            && total(resources.memory_limit_mb) <= u64::from(self.memory_mb)
            && total(volume_mb) <= u64::from(self.storage_mb)
    }
}

impl Default for TenantQuota {
    fn default() -> Self {
        Self::DEFAULT
    }
}
