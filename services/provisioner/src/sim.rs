//! `sim`: a simulated datacenter that implements [`VmProvider`] for real — machines
//! live in memory, every call takes a configurable latency and fails at a configurable
//! rate. For demos and load tests of thousands of VMs; it is a provider users can
//! select, not a test double.
//!
//! Each machine records the tenant it was made for, and the simulator enforces the
//! ownership rule of [`crate::provider`] as the real providers do: a call for one tenant
//! on another tenant's machine (or on a stray with no owner) is refused and changes
//! nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use berth_schemas::server::RegisterServer;
use berth_schemas::TenantId;
use rand::Rng;

use crate::provider::{
    changed_hands, ExecOutput, Machine, MachineSpec, PowerState, ProviderError, VmProvider,
};

/// How the simulated datacenter behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Mean latency of every call (±50 % uniform jitter).
    pub latency: Duration,
    /// Probability in [0, 1] that a call fails with a transient error (before it acts).
    pub failure_rate: f64,
    /// Probability in [0, 1] that a call acts and still reports a transient timeout, as
    /// a hypervisor whose reply is lost does: the caller repeats a call that took effect.
    pub lost_reply_rate: f64,
    /// Operations (`create`, `start`, `stop`, `restart`, `resize`, `destroy`) that always
    /// fail for good: fault injection for demos and compensation tests.
    pub broken: Vec<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(200),
            failure_rate: 0.0,
            lost_reply_rate: 0.0,
            broken: Vec::new(),
        }
    }
}

/// The servers of a simulated datacenter: `sim-host-1` … `sim-host-<count>`, alike.
#[derive(Debug, Clone)]
pub struct SimServers {
    pub count: u32,
    pub region: String,
    pub vcpus: u32,
    pub memory_mb: u32,
    pub disk_gb: u32,
    pub cpu_overcommit: f64,
    pub memory_overcommit: f64,
}

impl Default for SimServers {
    fn default() -> Self {
        Self {
            count: 4,
            region: "local".into(),
            vcpus: 64,
            memory_mb: 262_144,
            disk_gb: 8192,
            cpu_overcommit: 4.0,
            memory_overcommit: 1.0,
        }
    }
}

impl SimServers {
    /// The `server.register` of each.
    pub fn specs(&self) -> Vec<RegisterServer> {
        (1..=self.count)
            .map(|n| RegisterServer {
                name: format!("sim-host-{n}"),
                region: self.region.clone(),
                provider: "sim".into(),
                vcpus: self.vcpus,
                memory_mb: self.memory_mb,
                disk_gb: self.disk_gb,
                cpu_overcommit: self.cpu_overcommit,
                memory_overcommit: self.memory_overcommit,
            })
            .collect()
    }
}

/// The simulated datacenter.
pub struct SimProvider {
    config: SimConfig,
    machines: Mutex<HashMap<String, Machine>>,
    /// Per operation: calls in flight now, and the most ever at once.
    in_flight: Mutex<HashMap<String, (usize, usize)>>,
}

impl SimProvider {
    pub fn new(config: SimConfig) -> Self {
        Self {
            config,
            machines: Mutex::new(HashMap::new()),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// The most calls of `operation` that were ever in flight at once.
    pub fn max_in_flight(&self, operation: &str) -> usize {
        let in_flight = self.in_flight.lock().expect("sim lock");
        in_flight.get(operation).map_or(0, |(_, max)| *max)
    }

    fn count_in_flight(&self, operation: &str, started: bool) {
        let mut in_flight = self.in_flight.lock().expect("sim lock");
        let (now, max) = in_flight.entry(operation.to_owned()).or_default();
        if started {
            *now += 1;
            *max = (*max).max(*now);
        } else {
            *now -= 1;
        }
    }

    async fn call(&self, operation: &str, name: &str) -> Result<(), ProviderError> {
        let (delay, fails) = {
            let mut rng = rand::rng();
            let jitter = rng.random_range(0.5..1.5);
            (
                self.config.latency.mul_f64(jitter),
                rng.random_bool(self.config.failure_rate.clamp(0.0, 1.0)),
            )
        };
        if !delay.is_zero() {
            self.count_in_flight(operation, true);
            tokio::time::sleep(delay).await;
            self.count_in_flight(operation, false);
        }
        if self.config.broken.iter().any(|broken| broken == operation) {
            return Err(ProviderError::Permanent(format!(
                "simulated fault: {operation} of {name} is broken"
            )));
        }
        if fails {
            return Err(ProviderError::Transient(format!(
                "simulated failure: {operation} of {name} timed out"
            )));
        }
        Ok(())
    }

    /// The reply of a call that took effect, lost at `lost_reply_rate`.
    fn reply<T>(&self, operation: &str, name: &str, value: T) -> Result<T, ProviderError> {
        let rate = self.config.lost_reply_rate.clamp(0.0, 1.0);
        if rate > 0.0 && rand::rng().random_bool(rate) {
            return Err(ProviderError::Transient(format!(
                "simulated lost reply: {operation} of {name} timed out after it acted"
            )));
        }
        Ok(value)
    }

    /// A host loses a machine, as a crashed hypervisor would: reconciliation finds out.
    pub fn lose(&self, name: &str) -> bool {
        self.machines
            .lock()
            .expect("sim lock")
            .remove(name)
            .is_some()
    }

    /// Someone starts a machine by hand, with berth's name pattern but no VM behind it
    /// and no owning tenant.
    pub fn start_stray(&self, name: &str, host: &str) {
        self.machines.lock().expect("sim lock").insert(
            name.to_owned(),
            Machine {
                name: name.to_owned(),
                host: host.to_owned(),
                power: PowerState::Running,
                tenant: None,
            },
        );
    }

    /// Sets the power of `tenant`'s machine.
    fn set_power(
        &self,
        tenant: &TenantId,
        name: &str,
        power: PowerState,
    ) -> Result<(), ProviderError> {
        let mut machines = self.machines.lock().expect("sim lock");
        let machine = machines
            .get_mut(name)
            .ok_or_else(|| ProviderError::NotFound(name.to_owned()))?;
        machine.check_owner(tenant)?;
        machine.power = power;
        Ok(())
    }
}

#[async_trait]
impl VmProvider for SimProvider {
    fn name(&self) -> &'static str {
        "sim"
    }

    async fn create(&self, spec: &MachineSpec) -> Result<Machine, ProviderError> {
        let name = spec.machine_name();
        self.call("create", &name).await?;
        let mut machines = self.machines.lock().expect("sim lock");
        let machine = machines
            .entry(name.clone())
            .or_insert_with(|| Machine {
                host: spec.host.clone(),
                name: name.clone(),
                power: PowerState::Stopped,
                tenant: Some(spec.tenant.to_string()),
            })
            .clone();
        drop(machines);
        machine.check_owner(&spec.tenant)?;
        self.reply("create", &name, machine)
    }

    async fn start(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError> {
        self.call("start", name).await?;
        self.set_power(tenant, name, PowerState::Running)?;
        self.reply("start", name, ())
    }

    async fn stop(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError> {
        self.call("stop", name).await?;
        self.set_power(tenant, name, PowerState::Stopped)?;
        self.reply("stop", name, ())
    }

    async fn restart(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError> {
        self.call("restart", name).await?;
        self.set_power(tenant, name, PowerState::Running)?;
        self.reply("restart", name, ())
    }

    async fn resize(&self, spec: &MachineSpec) -> Result<(), ProviderError> {
        let name = spec.machine_name();
        self.call("resize", &name).await?;
        let machines = self.machines.lock().expect("sim lock");
        let Some(machine) = machines.get(&name) else {
            return Err(ProviderError::NotFound(name));
        };
        machine.check_owner(&spec.tenant)?;
        if machine.power != PowerState::Stopped {
            return Err(ProviderError::Permanent(format!(
                "{name} must be stopped to resize"
            )));
        }
        self.reply("resize", &name, ())
    }

    async fn destroy(&self, tenant: &TenantId, name: &str) -> Result<(), ProviderError> {
        self.call("destroy", name).await?;
        {
            let mut machines = self.machines.lock().expect("sim lock");
            if let Some(machine) = machines.get(name) {
                machine.check_owner(tenant)?;
                machines.remove(name);
            }
        }
        self.reply("destroy", name, ())
    }

    async fn remove_orphan(&self, orphan: &Machine) -> Result<(), ProviderError> {
        let name = &orphan.name;
        self.call("destroy", name).await?;
        {
            let mut machines = self.machines.lock().expect("sim lock");
            if let Some(machine) = machines.get(name) {
                if machine.tenant != orphan.tenant {
                    return Err(changed_hands(machine, orphan));
                }
                machines.remove(name);
            }
        }
        self.reply("destroy", name, ())
    }

    async fn inspect(&self, name: &str) -> Result<Option<Machine>, ProviderError> {
        Ok(self.machines.lock().expect("sim lock").get(name).cloned())
    }

    async fn list(&self) -> Result<Vec<Machine>, ProviderError> {
        Ok(self
            .machines
            .lock()
            .expect("sim lock")
            .values()
            .cloned()
            .collect())
    }

    /// A simulated machine knows `echo`, `true` and `false`; anything else is not found
    /// (exit 127), as in a minimal image.
    async fn exec(
        &self,
        tenant: &TenantId,
        name: &str,
        command: &[String],
        _timeout: Duration,
    ) -> Result<ExecOutput, ProviderError> {
        self.call("exec", name).await?;
        match self.machines.lock().expect("sim lock").get(name) {
            None => return Err(ProviderError::NotFound(name.to_owned())),
            Some(machine) => {
                machine.check_owner(tenant)?;
                if machine.power != PowerState::Running {
                    return Err(ProviderError::Permanent(format!("{name} is not running")));
                }
            }
        }
        let output = |exit_code, stdout: String, stderr: String| ExecOutput {
            exit_code,
            stdout,
            stderr,
        };
        Ok(match command.split_first() {
            Some((program, args)) if program == "echo" => {
                output(0, format!("{}\n", args.join(" ")), String::new())
            }
            Some((program, _)) if program == "true" => output(0, String::new(), String::new()),
            Some((program, _)) if program == "false" => output(1, String::new(), String::new()),
            Some((program, _)) => {
                output(127, String::new(), format!("sim: {program}: not found\n"))
            }
            None => output(127, String::new(), "sim: empty command\n".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn other() -> TenantId {
        TenantId::parse("other").unwrap()
    }

    fn spec() -> MachineSpec {
        MachineSpec {
            vm_id: Uuid::now_v7(),
            tenant: acme(),
            host: "sim-host-1".into(),
            vcpus: 1,
            memory_mb: 512,
            disk_gb: 10,
            image: "debian-12".into(),
        }
    }

    fn instant() -> SimProvider {
        SimProvider::new(SimConfig {
            latency: Duration::ZERO,
            ..SimConfig::default()
        })
    }

    fn is_conflict<T: std::fmt::Debug>(result: Result<T, ProviderError>) -> bool {
        matches!(&result, Err(ProviderError::Permanent(m)) if m.starts_with("conflict:"))
    }

    #[tokio::test]
    async fn create_is_idempotent_and_destroy_forgets() {
        let sim = instant();
        let spec = spec();
        let first = sim.create(&spec).await.unwrap();
        let second = sim.create(&spec).await.unwrap();
        assert_eq!(first, second);
        assert_eq!(first.tenant.as_deref(), Some("acme"));
        assert_eq!(sim.list().await.unwrap().len(), 1);
        sim.start(&acme(), &first.name).await.unwrap();
        assert_eq!(
            sim.inspect(&first.name).await.unwrap().unwrap().power,
            PowerState::Running
        );
        sim.destroy(&acme(), &first.name).await.unwrap();
        sim.destroy(&acme(), &first.name).await.unwrap();
        assert!(sim.list().await.unwrap().is_empty());
        assert_eq!(
            sim.start(&acme(), &first.name).await,
            Err(ProviderError::NotFound(first.name))
        );
    }

    #[tokio::test]
    async fn another_tenant_with_the_same_vm_id_cannot_adopt_or_touch_the_machine() {
        let sim = instant();
        let mine = spec();
        let machine = sim.create(&mine).await.unwrap();
        sim.start(&acme(), &machine.name).await.unwrap();
        let theirs = MachineSpec {
            tenant: other(),
            ..mine.clone()
        };
        let name = machine.name.as_str();
        let command = vec!["echo".to_owned(), "hi".to_owned()];
        assert!(is_conflict(sim.create(&theirs).await), "adopt");
        assert!(is_conflict(sim.stop(&other(), name).await), "stop");
        assert!(is_conflict(sim.restart(&other(), name).await), "restart");
        assert!(is_conflict(sim.start(&other(), name).await), "start");
        assert!(is_conflict(sim.resize(&theirs).await), "resize");
        assert!(
            is_conflict(sim.exec(&other(), name, &command, Duration::ZERO).await),
            "exec"
        );
        assert!(is_conflict(sim.destroy(&other(), name).await), "destroy");
        let still = sim.inspect(name).await.unwrap().expect("the machine stays");
        assert_eq!(
            (still.power, still.tenant.as_deref()),
            (PowerState::Running, Some("acme"))
        );
        let echoed = sim.exec(&acme(), name, &command, Duration::ZERO).await;
        assert_eq!(echoed.unwrap().stdout, "hi\n", "its owner still reaches it");
    }

    #[tokio::test]
    async fn a_stray_without_an_owner_is_refused_to_every_tenant_and_removed_only_as_an_orphan() {
        let sim = instant();
        let stray = spec();
        sim.start_stray(&stray.machine_name(), "sim-host-1");
        assert!(is_conflict(sim.create(&stray).await));
        assert!(is_conflict(
            sim.destroy(&acme(), &stray.machine_name()).await
        ));
        let listed = sim.list().await.unwrap().remove(0);
        assert_eq!(listed.tenant, None);

        // An orphan listed as another owner's than it now has is left alone.
        let misread = Machine {
            tenant: Some("acme".into()),
            ..listed.clone()
        };
        assert!(is_conflict(sim.remove_orphan(&misread).await));
        sim.remove_orphan(&listed).await.unwrap();
        sim.remove_orphan(&listed).await.unwrap();
        assert!(sim.list().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_failure_rate_of_one_always_fails() {
        let sim = SimProvider::new(SimConfig {
            latency: Duration::ZERO,
            failure_rate: 1.0,
            ..SimConfig::default()
        });
        assert!(matches!(
            sim.create(&spec()).await,
            Err(ProviderError::Transient(_))
        ));
    }

    #[tokio::test]
    async fn a_lost_reply_still_acted_and_a_broken_operation_fails_for_good() {
        let sim = SimProvider::new(SimConfig {
            latency: Duration::ZERO,
            lost_reply_rate: 1.0,
            broken: vec!["start".into()],
            ..SimConfig::default()
        });
        let spec = spec();
        assert!(matches!(
            sim.create(&spec).await,
            Err(ProviderError::Transient(_))
        ));
        assert!(sim.inspect(&spec.machine_name()).await.unwrap().is_some());
        assert!(matches!(
            sim.start(&acme(), &spec.machine_name()).await,
            Err(ProviderError::Permanent(_))
        ));
    }
}
