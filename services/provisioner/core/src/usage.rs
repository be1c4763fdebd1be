//! The `usage` aggregate: what a tenant holds against its quota.
//!
//! Reservations are made at command time, in the same atomic batch as the VM's
//! `requested` event, so a quota can never be exceeded by concurrent creates (the usage
//! subject's expected sequence serialises them) and a reservation never exists without
//! its VM. They are released in the same batch as the VM's `destroyed` or `failed`.

use std::collections::BTreeMap;

use berth_schemas::aggregate::{Aggregate, Context};
use berth_schemas::usage::{Limits, QuotaSet, Released, Reserved, TenantCommand, UsageEvent};
use berth_schemas::{Rejection, RejectionCode};
use uuid::Uuid;

/// A tenant's quota and the VMs holding part of it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    pub quota: Option<QuotaSet>,
    pub reservations: BTreeMap<Uuid, Reserved>,
}

impl Aggregate for Usage {
    const KIND: &'static str = berth_schemas::usage::AGGREGATE;
    type Command = TenantCommand;
    type Event = UsageEvent;

    fn apply(&mut self, event: &UsageEvent) {
        match event {
            UsageEvent::QuotaSet(quota) => self.quota = Some(quota.clone()),
            UsageEvent::Reserved(reserved) => {
                self.reservations.insert(reserved.vm_id, *reserved);
            }
            UsageEvent::Released(released) => {
                self.reservations.remove(&released.vm_id);
            }
        }
    }

    fn decide(
        &self,
        command: &TenantCommand,
        _context: &Context,
    ) -> Result<Vec<UsageEvent>, Rejection> {
        match command {
            TenantCommand::SetQuota(set) => Ok(vec![UsageEvent::QuotaSet(QuotaSet {
                tier: set.tier,
                limits: set.overrides.apply(set.tier.limits()),
            })]),
        }
    }
}

impl Usage {
    /// The limits in force: the tenant's own, else `default` (`None`: unlimited).
    pub fn limits(&self, default: Option<Limits>) -> Option<Limits> {
        self.quota.as_ref().map(|q| q.limits).or(default)
    }

    /// What the tenant holds now.
    pub fn in_use(&self) -> Limits {
        self.reservations.values().fold(
            Limits {
                vms: 0,
                vcpus: 0,
                memory_mb: 0,
                disk_gb: 0,
            },
            |sum, r| Limits {
                vms: sum.vms + 1,
                vcpus: sum.vcpus + r.vcpus,
                memory_mb: sum.memory_mb + r.memory_mb,
                disk_gb: sum.disk_gb + r.disk_gb,
            },
        )
    }

    /// Reserves resources for a VM, or refuses with `quota_exceeded`. Reserving again
    /// for the same VM changes nothing.
    pub fn reserve(
        &self,
        wanted: Reserved,
        default: Option<Limits>,
    ) -> Result<Vec<UsageEvent>, Rejection> {
        if self.reservations.contains_key(&wanted.vm_id) {
            return Ok(Vec::new());
        }
        if let Some(limits) = self.limits(default) {
            let used = self.in_use();
            let checks = [
                ("VMs", used.vms, 1, limits.vms),
                ("vCPUs", used.vcpus, wanted.vcpus, limits.vcpus),
                (
                    "MB of memory",
                    used.memory_mb,
                    wanted.memory_mb,
                    limits.memory_mb,
                ),
                ("GB of disk", used.disk_gb, wanted.disk_gb, limits.disk_gb),
            ];
            for (what, used, more, limit) in checks {
                if used.saturating_add(more) > limit {
                    let tier = self.quota.as_ref().map_or("default".to_owned(), |q| {
                        format!("{:?}", q.tier).to_lowercase()
                    });
                    return Err(Rejection::new(
                        RejectionCode::QuotaExceeded,
                        format!("{tier} quota exceeded: {what} {used} in use + {more} requested > {limit} allowed"),
                    ));
                }
            }
        }
        Ok(vec![UsageEvent::Reserved(wanted)])
    }

    /// Moves a VM's reservation to a new size, or refuses with `quota_exceeded`.
    pub fn resize(
        &self,
        wanted: Reserved,
        default: Option<Limits>,
    ) -> Result<Vec<UsageEvent>, Rejection> {
        let mut without = self.clone();
        let mut events = self.release(wanted.vm_id);
        for event in &events {
            without.apply(event);
        }
        events.extend(without.reserve(wanted, default)?);
        Ok(events)
    }

    /// Releases a VM's resources, if it holds any.
    pub fn release(&self, vm_id: Uuid) -> Vec<UsageEvent> {
        if self.reservations.contains_key(&vm_id) {
            vec![UsageEvent::Released(Released { vm_id })]
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use berth_schemas::usage::{LimitOverrides, SetQuota, Tier};
    use berth_schemas::TenantId;

    fn context() -> Context {
        Context::at(chrono::Utc::now())
    }

    fn wanted(vcpus: u32) -> Reserved {
        Reserved {
            vm_id: Uuid::now_v7(),
            vcpus,
            memory_mb: 1024,
            disk_gb: 10,
        }
    }

    fn with(events: Vec<UsageEvent>) -> Usage {
        let mut usage = Usage::default();
        for event in &events {
            usage.apply(event);
        }
        usage
    }

    #[test]
    fn the_free_tier_holds_one_vm() {
        let free = Some(Tier::Free.limits());
        let first = Usage::default().reserve(wanted(1), free).unwrap();
        let usage = with(first);
        let refused = usage.reserve(wanted(1), free).unwrap_err();
        assert_eq!(refused.code, RejectionCode::QuotaExceeded);
        assert!(
            refused.message.contains("VMs 1 in use"),
            "{}",
            refused.message
        );
        let vm = *usage.reservations.keys().next().unwrap();
        let mut freed = usage.clone();
        for event in usage.release(vm) {
            freed.apply(&event);
        }
        assert!(freed.reserve(wanted(1), free).is_ok());
    }

    #[test]
    fn each_limit_is_checked_and_reserving_twice_is_a_no_op() {
        let pro = Some(Tier::Pro.limits());
        assert_eq!(
            Usage::default().reserve(wanted(5), pro).unwrap_err().code,
            RejectionCode::QuotaExceeded
        );
        let one = wanted(2);
        let usage = with(Usage::default().reserve(one, pro).unwrap());
        assert!(usage.reserve(one, pro).unwrap().is_empty());
        assert!(usage.release(Uuid::now_v7()).is_empty());
        assert!(
            Usage::default().reserve(wanted(64), None).is_ok(),
            "no limits: unlimited"
        );
    }

    #[test]
    fn overrides_change_a_tier() {
        let set = TenantCommand::SetQuota(SetQuota {
            tenant: TenantId::parse("acme").unwrap(),
            tier: Tier::Free,
            overrides: LimitOverrides {
                vms: Some(5),
                ..Default::default()
            },
        });
        let usage = with(Usage::default().decide(&set, &context()).unwrap());
        let limits = usage.limits(None).unwrap();
        assert_eq!((limits.vms, limits.vcpus), (5, 2));
    }
}
