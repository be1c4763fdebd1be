//! Fair share of a command endpoint between tenants (DESIGN §7): each tenant has a
//! command rate (a token bucket), a number of commands in flight, and a smaller number
//! of long-running commands (`vm.exec`) that run outside the endpoint's shared slots.
//! A command over its tenant's share is refused at once with `busy` and a retry-after,
//! so one tenant's burst never queues in front of another tenant's command.
//!
//! `system` (operators and berth's own services) is not limited: tenants cannot publish
//! on its subjects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_schemas::ids::SYSTEM_TENANT;
use berth_schemas::{Rejection, TenantId};

/// The share each tenant gets of one endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TenantLimits {
    /// Commands per second, sustained.
    pub rate_per_sec: f64,
    /// Commands that may arrive at once above the rate.
    pub burst: u32,
    /// Commands of one tenant processed at once.
    pub in_flight: usize,
    /// Long-running commands (`vm.exec`) of one tenant at once.
    pub long_running: usize,
}

impl Default for TenantLimits {
    fn default() -> Self {
        // A quarter of an endpoint's 256 slots per tenant; a rate far above what a
        // person or a panel sends, far below a script's flood.
        Self {
            rate_per_sec: 500.0,
            burst: 1000,
            in_flight: 64,
            long_running: 4,
        }
    }
}

/// Tenants are forgotten once idle if more than this many are tracked.
const TRACKED_TENANTS: usize = 10_000;

/// How long a caller over its in-flight share is asked to wait.
const IN_FLIGHT_RETRY: Duration = Duration::from_millis(50);

#[derive(Debug)]
struct Share {
    tokens: f64,
    refilled: Instant,
    in_flight: usize,
    long_running: usize,
}

/// Admission for one endpoint.
#[derive(Debug)]
pub struct FairShare {
    limits: TenantLimits,
    shares: Mutex<HashMap<TenantId, Share>>,
}

/// A tenant's admitted command; its slot frees when dropped.
#[derive(Debug)]
pub struct Admitted {
    fair: Option<Arc<FairShare>>,
    tenant: TenantId,
    long_running: bool,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let Some(fair) = &self.fair else { return };
        let mut shares = fair.shares.lock().expect("fair-share lock poisoned");
        if let Some(share) = shares.get_mut(&self.tenant) {
            if self.long_running {
                share.long_running = share.long_running.saturating_sub(1);
            } else {
                share.in_flight = share.in_flight.saturating_sub(1);
            }
        }
    }
}

impl FairShare {
    pub fn new(limits: TenantLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            shares: Mutex::new(HashMap::new()),
        })
    }

    /// Takes one command of `tenant` in, or refuses it with `busy`.
    pub fn admit(
        self: &Arc<Self>,
        tenant: &TenantId,
        long_running: bool,
    ) -> Result<Admitted, Rejection> {
        if tenant.as_str() == SYSTEM_TENANT {
            return Ok(Admitted {
                fair: None,
                tenant: tenant.clone(),
                long_running,
            });
        }
        let limits = self.limits;
        let now = Instant::now();
        let mut shares = self.shares.lock().expect("fair-share lock poisoned");
        if shares.len() >= TRACKED_TENANTS && !shares.contains_key(tenant) {
            forget_idle(&mut shares, &limits, now);
        }
        let share = shares.entry(tenant.clone()).or_insert_with(|| Share {
            tokens: f64::from(limits.burst),
            refilled: now,
            in_flight: 0,
            long_running: 0,
        });
        let elapsed = now.duration_since(share.refilled).as_secs_f64();
        share.tokens = (share.tokens + elapsed * limits.rate_per_sec).min(f64::from(limits.burst));
        share.refilled = now;
        if share.tokens < 1.0 {
            let wait = (1.0 - share.tokens) / limits.rate_per_sec;
            return Err(Rejection::busy(
                format!(
                    "tenant {tenant} is over its command rate ({} per second)",
                    limits.rate_per_sec
                ),
                Duration::from_secs_f64(wait),
            ));
        }
        let (used, cap, what) = if long_running {
            (share.long_running, limits.long_running, "long-running")
        } else {
            (share.in_flight, limits.in_flight, "in-flight")
        };
        if used >= cap {
            return Err(Rejection::busy(
                format!("tenant {tenant} has {used} {what} commands, its share"),
                IN_FLIGHT_RETRY,
            ));
        }
        share.tokens -= 1.0;
        if long_running {
            share.long_running += 1;
        } else {
            share.in_flight += 1;
        }
        Ok(Admitted {
            fair: Some(self.clone()),
            tenant: tenant.clone(),
            long_running,
        })
    }
}

/// Drops tenants with nothing in flight and a full bucket: they would start afresh.
fn forget_idle(shares: &mut HashMap<TenantId, Share>, limits: &TenantLimits, now: Instant) {
    shares.retain(|_, share| {
        let refilled =
            share.tokens + now.duration_since(share.refilled).as_secs_f64() * limits.rate_per_sec;
        share.in_flight > 0 || share.long_running > 0 || refilled < f64::from(limits.burst)
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_schemas::RejectionCode;

    fn tenant(name: &str) -> TenantId {
        TenantId::parse(name).unwrap()
    }

    fn limits() -> TenantLimits {
        TenantLimits {
            rate_per_sec: 10.0,
            burst: 5,
            in_flight: 3,
            long_running: 1,
        }
    }

    #[test]
    fn a_burst_beyond_the_bucket_is_busy_with_a_retry_after() {
        let fair = FairShare::new(TenantLimits {
            in_flight: 100,
            ..limits()
        });
        let admitted: Vec<_> = (0..5).map(|_| fair.admit(&tenant("a"), false)).collect();
        assert!(admitted.iter().all(Result::is_ok));
        let refused = fair.admit(&tenant("a"), false).unwrap_err();
        assert_eq!(refused.code, RejectionCode::Busy);
        assert!(refused.retry_after_ms.unwrap() > 0);
        // Another tenant is untouched by a's burst.
        assert!(fair.admit(&tenant("b"), false).is_ok());
    }

    #[test]
    fn in_flight_slots_free_when_a_command_ends() {
        let fair = FairShare::new(limits());
        let held: Vec<_> = (0..3)
            .map(|_| fair.admit(&tenant("a"), false).unwrap())
            .collect();
        assert_eq!(
            fair.admit(&tenant("a"), false).unwrap_err().code,
            RejectionCode::Busy
        );
        drop(held);
        assert!(fair.admit(&tenant("a"), false).is_ok());
    }

    #[test]
    fn long_running_commands_have_their_own_small_share() {
        let fair = FairShare::new(limits());
        let exec = fair.admit(&tenant("a"), true).unwrap();
        assert_eq!(
            fair.admit(&tenant("a"), true).unwrap_err().code,
            RejectionCode::Busy
        );
        // A running exec leaves the tenant's ordinary slots alone.
        assert!(fair.admit(&tenant("a"), false).is_ok());
        drop(exec);
        assert!(fair.admit(&tenant("a"), true).is_ok());
    }

    #[test]
    fn system_is_never_limited() {
        let fair = FairShare::new(limits());
        let held: Vec<_> = (0..100)
            .map(|_| fair.admit(&TenantId::system(), false))
            .collect();
        assert!(held.iter().all(Result::is_ok));
    }

    #[test]
    fn idle_tenants_are_forgotten_when_many_are_tracked() {
        let fair = FairShare::new(limits());
        let mut shares = HashMap::new();
        let later = Instant::now() + Duration::from_secs(10);
        shares.insert(
            tenant("idle"),
            Share {
                tokens: 0.0,
                refilled: Instant::now(),
                in_flight: 0,
                long_running: 0,
            },
        );
        shares.insert(
            tenant("busy"),
            Share {
                tokens: 0.0,
                refilled: Instant::now(),
                in_flight: 1,
                long_running: 0,
            },
        );
        forget_idle(&mut shares, &fair.limits, later);
        assert!(shares.contains_key(&tenant("busy")));
        assert!(!shares.contains_key(&tenant("idle")));
    }
}
