//! `sim`: a simulated datacenter that implements [`VmProvider`] for real — machines
//! live in memory, every call takes a configurable latency and fails at a configurable
//! rate. For demos and load tests of thousands of VMs; it is a provider users can
//! select, not a test double.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;

use crate::provider::{Machine, MachineSpec, PowerState, ProviderError, VmProvider};

/// How the simulated datacenter behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Mean latency of every call (±50 % uniform jitter).
    pub latency: Duration,
    /// Probability in [0, 1] that a call fails with a transient error.
    pub failure_rate: f64,
    /// Host names machines are spread over.
    pub hosts: Vec<String>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            latency: Duration::from_millis(200),
            failure_rate: 0.0,
            hosts: (1..=4).map(|n| format!("sim-host-{n}")).collect(),
        }
    }
}

/// The simulated datacenter.
pub struct SimProvider {
    config: SimConfig,
    machines: Mutex<HashMap<String, Machine>>,
}

impl SimProvider {
    pub fn new(config: SimConfig) -> Self {
        assert!(
            !config.hosts.is_empty(),
            "the simulated datacenter needs at least one host"
        );
        Self {
            config,
            machines: Mutex::new(HashMap::new()),
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
            tokio::time::sleep(delay).await;
        }
        if fails {
            return Err(ProviderError::Transient(format!(
                "simulated failure: {operation} of {name} timed out"
            )));
        }
        Ok(())
    }

    fn host_for(&self, name: &str) -> String {
        let hash = name
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        self.config.hosts[hash % self.config.hosts.len()].clone()
    }

    fn set_power(&self, name: &str, power: PowerState) -> Result<(), ProviderError> {
        let mut machines = self.machines.lock().expect("sim lock");
        let machine = machines
            .get_mut(name)
            .ok_or_else(|| ProviderError::NotFound(name.to_owned()))?;
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
        let machine = machines.entry(name.clone()).or_insert_with(|| Machine {
            host: self.host_for(&name),
            name,
            power: PowerState::Stopped,
        });
        Ok(machine.clone())
    }

    async fn start(&self, name: &str) -> Result<(), ProviderError> {
        self.call("start", name).await?;
        self.set_power(name, PowerState::Running)
    }

    async fn stop(&self, name: &str) -> Result<(), ProviderError> {
        self.call("stop", name).await?;
        self.set_power(name, PowerState::Stopped)
    }

    async fn restart(&self, name: &str) -> Result<(), ProviderError> {
        self.call("restart", name).await?;
        self.set_power(name, PowerState::Running)
    }

    async fn resize(&self, spec: &MachineSpec) -> Result<(), ProviderError> {
        let name = spec.machine_name();
        self.call("resize", &name).await?;
        let machines = self.machines.lock().expect("sim lock");
        match machines.get(&name) {
            Some(machine) if machine.power == PowerState::Stopped => Ok(()),
            Some(_) => Err(ProviderError::Permanent(format!(
                "{name} must be stopped to resize"
            ))),
            None => Err(ProviderError::NotFound(name)),
        }
    }

    async fn destroy(&self, name: &str) -> Result<(), ProviderError> {
        self.call("destroy", name).await?;
        self.machines.lock().expect("sim lock").remove(name);
        Ok(())
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn spec() -> MachineSpec {
        MachineSpec {
            vm_id: Uuid::now_v7(),
            tenant: "acme".into(),
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

    #[tokio::test]
    async fn create_is_idempotent_and_destroy_forgets() {
        let sim = instant();
        let spec = spec();
        let first = sim.create(&spec).await.unwrap();
        let second = sim.create(&spec).await.unwrap();
        assert_eq!(first, second);
        assert_eq!(sim.list().await.unwrap().len(), 1);
        sim.start(&first.name).await.unwrap();
        assert_eq!(
            sim.inspect(&first.name).await.unwrap().unwrap().power,
            PowerState::Running
        );
        sim.destroy(&first.name).await.unwrap();
        sim.destroy(&first.name).await.unwrap();
        assert!(sim.list().await.unwrap().is_empty());
        assert_eq!(
            sim.start(&first.name).await,
            Err(ProviderError::NotFound(first.name))
        );
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
}
