//! Turning a pod's recorded state into what its runtime runs.

use berth_schemas::TenantId;
use uuid::Uuid;

use crate::catalog::{Catalog, Overrides, Rendering};
use crate::pod::Pod;
use crate::runtime::{RuntimeError, WorkloadSpec};

/// The catalog with this deployment's overrides and rendering.
#[derive(Debug, Clone)]
pub struct Specs {
    pub catalog: Catalog,
    pub overrides: Overrides,
    pub rendering: Rendering,
}

impl Specs {
    /// The workload a pod runs as; a pod without a request has none.
    pub fn workload(
        &self,
        tenant: &TenantId,
        pod_id: Uuid,
        pod: &Pod,
    ) -> Result<WorkloadSpec, RuntimeError> {
        let requested = pod
            .spec
            .as_ref()
            .ok_or_else(|| RuntimeError::Permanent(format!("pod {pod_id} was never requested")))?;
        self.catalog
            .workload(
                pod_id,
                tenant.as_str(),
                requested,
                &pod.env,
                &self.overrides,
                &self.rendering,
            )
            .map_err(|e| RuntimeError::Permanent(e.to_string()))
    }
}
