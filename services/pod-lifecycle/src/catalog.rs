//! The service catalog: which apps berth sells, in which variants, and how each runs.
//!
//! The catalog is `catalog.json` in this crate, compiled in and validated at start
//! ([`Catalog::builtin`]). Environment values are minijinja templates with the variables
//! `host`, `name`, `tenant`, `pod_id`, `pod_short`, `service`, `variant` and the function
//! `secret(name)`, which gives a per-pod secret derived from the deployment's secret key
//! (HMAC-SHA256 of the pod id and the name), so secrets are never stored in events and
//! are the same at every redeploy. Images, commands, health checks and the storage class
//! can be overridden per deployment ([`Overrides`]; tests run a local image).

use std::collections::{BTreeMap, HashMap};

use berth_schemas::pod::{CreatePod, PodRequested, PodResources, PodVolume};
use berth_schemas::{Rejection, RejectionCode};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::runtime::{AccessMode, HealthCheck, HealthProbe, Resources, VolumeSpec, WorkloadSpec};

const BUILTIN: &str = include_str!("../catalog.json");

/// Why a catalog cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("the catalog is not valid JSON of the expected shape: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("catalog service {service}: {problem}")]
    Invalid { service: String, problem: String },
}

/// The whole catalog.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub version: u32,
    pub services: BTreeMap<String, Service>,
}

/// One app.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub description: String,
    pub image: String,
    pub port: u16,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub health: Probe,
    pub volume: VolumeDefaults,
    pub variants: BTreeMap<String, Variant>,
    /// The (non-root) user id the image can run as; Kubernetes then runs it as that user
    /// with `runAsNonRoot`. Unset: the image runs as its own user, possibly root (images
    /// that start as root and drop privileges themselves, like Ghost's and WordPress').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<u32>,
}

/// A health check as the catalog writes it: `{"http": "/path"}` or `{"command": [..]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Probe {
    Http(String),
    Command(Vec<String>),
}

impl Probe {
    fn to_runtime(&self) -> HealthProbe {
        match self {
            Self::Http(path) => HealthProbe::Http { path: path.clone() },
            Self::Command(command) => HealthProbe::Command {
                command: command.clone(),
            },
        }
    }
}

/// Where the volume is mounted and how it is shared.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeDefaults {
    pub mount_path: String,
    pub access_mode: String,
    #[serde(default)]
    pub storage_class: Option<String>,
}

/// A size of an app.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub volume_mb: u32,
    pub cpu_request_millis: u32,
    pub cpu_limit_millis: u32,
    pub memory_request_mb: u32,
    pub memory_limit_mb: u32,
}

/// Per-deployment changes to the catalog.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Image per service (`n8n`) or per service and variant (`n8n/basic`).
    pub images: HashMap<String, String>,
    /// Command per service.
    pub commands: HashMap<String, Vec<String>>,
    /// Health probe per service.
    pub probes: HashMap<String, Probe>,
    /// Storage class of every new volume.
    pub storage_class: Option<String>,
    /// Seconds between health checks (default 10).
    pub health_interval_secs: Option<u32>,
}

/// What a pod's environment templates can use besides the pod itself.
#[derive(Clone)]
pub struct Rendering {
    /// The domain pods are served under: `<name>.<tenant>.<base_domain>`.
    pub base_domain: String,
    /// Key the per-pod secrets derive from. Never logged.
    pub secret_key: Vec<u8>,
}

impl std::fmt::Debug for Rendering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendering")
            .field("base_domain", &self.base_domain)
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// The catalog compiled into this crate, validated.
    pub fn builtin() -> Result<Self, CatalogError> {
        Self::from_json(BUILTIN)
    }

    pub fn from_json(text: &str) -> Result<Self, CatalogError> {
        let catalog: Self = serde_json::from_str(text)?;
        catalog.validate()?;
        Ok(catalog)
    }

    fn validate(&self) -> Result<(), CatalogError> {
        for (name, service) in &self.services {
            let invalid = |problem: String| CatalogError::Invalid {
                service: name.clone(),
                problem,
            };
            berth_schemas::ids::validate_slug("service", name, 63)
                .map_err(|e| invalid(e.to_string()))?;
            if service.port == 0 {
                return Err(invalid("port must not be 0".into()));
            }
            if !service.volume.mount_path.starts_with('/') {
                return Err(invalid("the volume's mount path must be absolute".into()));
            }
            parse_access_mode(&service.volume.access_mode).map_err(invalid)?;
            if service.run_as_user == Some(0) {
                return Err(invalid(
                    "run_as_user 0 is root: leave it out for an image that needs root".into(),
                ));
            }
            if service.variants.is_empty() {
                return Err(invalid("a service needs at least one variant".into()));
            }
            for (variant_name, variant) in &service.variants {
                berth_schemas::ids::validate_slug("variant", variant_name, 63)
                    .map_err(|e| invalid(e.to_string()))?;
                let sane = variant.volume_mb > 0
                    && variant.cpu_request_millis > 0
                    && variant.cpu_request_millis <= variant.cpu_limit_millis
                    && variant.memory_request_mb > 0
                    && variant.memory_request_mb <= variant.memory_limit_mb;
                if !sane {
                    return Err(invalid(format!(
                        "variant {variant_name}: sizes must be positive and requests at most limits"
                    )));
                }
            }
            let environment = template_environment(&[]);
            for (key, template) in &service.env {
                environment
                    .template_from_str(template)
                    .map_err(|e| invalid(format!("env {key}: {e}")))?;
            }
        }
        Ok(())
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.get(name)
    }

    /// The `requested` event of a create: the catalog entry resolved now.
    pub fn resolve(
        &self,
        create: &CreatePod,
        overrides: &Overrides,
    ) -> Result<PodRequested, Rejection> {
        let (service, variant) = self.variant(&create.service, &create.variant)?;
        Ok(PodRequested {
            name: create.name.clone(),
            service: create.service.clone(),
            variant: create.variant.clone(),
            subscription_id: create.subscription_id,
            image: overrides
                .images
                .get(&format!("{}/{}", create.service, create.variant))
                .or_else(|| overrides.images.get(&create.service))
                .unwrap_or(&service.image)
                .clone(),
            port: service.port,
            resources: PodResources {
                cpu_request_millis: variant.cpu_request_millis,
                cpu_limit_millis: variant.cpu_limit_millis,
                memory_request_mb: variant.memory_request_mb,
                memory_limit_mb: variant.memory_limit_mb,
            },
            volume: PodVolume {
                size_mb: variant.volume_mb,
                mount_path: service.volume.mount_path.clone(),
                storage_class: overrides
                    .storage_class
                    .clone()
                    .or_else(|| service.volume.storage_class.clone()),
                access_mode: service.volume.access_mode.clone(),
            },
            env: create.env.clone(),
        })
    }

    fn variant(&self, service: &str, variant: &str) -> Result<(&Service, &Variant), Rejection> {
        let found = self.services.get(service).ok_or_else(|| {
            Rejection::new(
                RejectionCode::NotFound,
                format!(
                    "no service {service:?} in the catalog; it has {}",
                    self.services.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            )
        })?;
        let size = found.variants.get(variant).ok_or_else(|| {
            Rejection::new(
                RejectionCode::NotFound,
                format!(
                    "{service} has no variant {variant:?}; it has {}",
                    found
                        .variants
                        .keys()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })?;
        Ok((found, size))
    }

    /// What the runtime runs for a pod: its recorded request, the catalog's command,
    /// health check and environment (rendered), the overrides, and the pod's own env.
    pub fn workload(
        &self,
        pod_id: Uuid,
        tenant: &str,
        requested: &PodRequested,
        env_overrides: &BTreeMap<String, String>,
        overrides: &Overrides,
        rendering: &Rendering,
    ) -> Result<WorkloadSpec, CatalogError> {
        let service =
            self.services
                .get(&requested.service)
                .ok_or_else(|| CatalogError::Invalid {
                    service: requested.service.clone(),
                    problem: "no longer in the catalog".into(),
                })?;
        let host = format!("{}.{tenant}.{}", requested.name, rendering.base_domain);
        let secrets = secrets_for(pod_id, &rendering.secret_key);
        let environment = template_environment(&secrets);
        let context = minijinja::context! {
            host => host,
            name => requested.name,
            tenant => tenant,
            pod_id => pod_id.to_string(),
            pod_short => pod_id.simple().to_string()[..12].to_owned(),
            service => requested.service,
            variant => requested.variant,
        };
        let mut env = BTreeMap::new();
        for (key, template) in &service.env {
            let value =
                environment
                    .render_str(template, &context)
                    .map_err(|e| CatalogError::Invalid {
                        service: requested.service.clone(),
                        problem: format!("env {key}: {e}"),
                    })?;
            env.insert(key.clone(), value);
        }
        env.extend(env_overrides.clone());
        let probe = overrides
            .probes
            .get(&requested.service)
            .unwrap_or(&service.health);
        Ok(WorkloadSpec {
            pod_id,
            tenant: tenant.to_owned(),
            service: requested.service.clone(),
            variant: requested.variant.clone(),
            image: requested.image.clone(),
            command: overrides
                .commands
                .get(&requested.service)
                .or(service.command.as_ref())
                .cloned(),
            port: requested.port,
            env,
            resources: Resources {
                cpu_request_millis: requested.resources.cpu_request_millis,
                cpu_limit_millis: requested.resources.cpu_limit_millis,
                memory_request_mb: requested.resources.memory_request_mb,
                memory_limit_mb: requested.resources.memory_limit_mb,
            },
            health: HealthCheck {
                probe: probe.to_runtime(),
                interval_secs: overrides.health_interval_secs.unwrap_or(10),
                timeout_secs: 5,
                failure_threshold: 3,
                start_period_secs: 0,
            },
            volume: VolumeSpec {
                size_mb: requested.volume.size_mb,
                mount_path: requested.volume.mount_path.clone(),
                storage_class: requested.volume.storage_class.clone(),
                access_mode: parse_access_mode(&requested.volume.access_mode).map_err(
                    |problem| CatalogError::Invalid {
                        service: requested.service.clone(),
                        problem,
                    },
                )?,
            },
            run_as_user: service.run_as_user,
        })
    }
}

fn parse_access_mode(mode: &str) -> Result<AccessMode, String> {
    match mode {
        "ReadWriteOnce" => Ok(AccessMode::ReadWriteOnce),
        "ReadWriteMany" => Ok(AccessMode::ReadWriteMany),
        other => Err(format!(
            "access mode {other:?} is neither ReadWriteOnce nor ReadWriteMany"
        )),
    }
}

/// A lazily derived secret per name: HMAC-SHA256(key, "<pod id>/<name>"), hex.
#[derive(Clone)]
struct Secrets {
    pod_id: Uuid,
    key: Vec<u8>,
}

fn secrets_for(pod_id: Uuid, key: &[u8]) -> Vec<Secrets> {
    vec![Secrets {
        pod_id,
        key: key.to_vec(),
    }]
}

impl Secrets {
    fn derive(&self, name: &str) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(format!("{}/{name}", self.pod_id).as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// A strict minijinja environment with `secret(name)` bound to the pod's secrets (when
/// validating templates, to a placeholder).
fn template_environment(secrets: &[Secrets]) -> minijinja::Environment<'static> {
    let mut environment = minijinja::Environment::new();
    environment.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    let secrets = secrets.first().cloned();
    environment.add_function("secret", move |name: String| -> String {
        secrets
            .as_ref()
            .map_or_else(|| "secret".to_owned(), |s| s.derive(&name))
    });
    environment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn create(service: &str, variant: &str) -> CreatePod {
        CreatePod {
            pod_id: None,
            name: "flows".into(),
            service: service.into(),
            variant: variant.into(),
            subscription_id: None,
            env: BTreeMap::new(),
        }
    }

    fn rendering() -> Rendering {
        Rendering {
            base_domain: "pods.example.net".into(),
            secret_key: b"test key".to_vec(),
        }
    }

    #[test]
    fn the_builtin_catalog_has_the_sizes_we_sell() {
        let catalog = Catalog::builtin().unwrap();
        let expected = [
            ("n8n", "basic", 250, "/home/node/.n8n"),
            ("n8n", "plus", 500, "/home/node/.n8n"),
            ("n8n", "pro", 1024, "/home/node/.n8n"),
            ("ghost", "basic", 500, "/var/lib/ghost/content"),
            ("wordpress", "free", 250, "/var/www/html"),
        ];
        for (service, variant, size_mb, mount) in expected {
            let requested = catalog
                .resolve(&create(service, variant), &Overrides::default())
                .unwrap();
            assert_eq!(
                (
                    requested.volume.size_mb,
                    requested.volume.mount_path.as_str()
                ),
                (size_mb, mount),
                "{service}/{variant}"
            );
        }
    }

    #[test]
    fn unknown_services_and_variants_are_not_found_and_name_what_exists() {
        let catalog = Catalog::builtin().unwrap();
        let missing = catalog
            .resolve(&create("joomla", "basic"), &Overrides::default())
            .unwrap_err();
        assert_eq!(missing.code, RejectionCode::NotFound);
        assert!(missing.message.contains("n8n"), "{}", missing.message);
        let rejection = catalog
            .resolve(&create("ghost", "pro"), &Overrides::default())
            .unwrap_err();
        assert!(rejection.message.contains("basic"), "{}", rejection.message);
    }

    #[test]
    fn env_renders_host_and_stable_per_pod_secrets() {
        let catalog = Catalog::builtin().unwrap();
        let overrides = Overrides::default();
        let requested = catalog
            .resolve(&create("n8n", "basic"), &overrides)
            .unwrap();
        let pod = Uuid::now_v7();
        let spec = |pod, extra: &BTreeMap<String, String>| {
            catalog
                .workload(pod, "acme", &requested, extra, &overrides, &rendering())
                .unwrap()
        };
        let first = spec(pod, &BTreeMap::new());
        assert_eq!(first.env["N8N_HOST"], "flows.acme.pods.example.net");
        let key = &first.env["N8N_ENCRYPTION_KEY"];
        assert_eq!(key.len(), 64);
        assert_eq!(&spec(pod, &BTreeMap::new()).env["N8N_ENCRYPTION_KEY"], key);
        assert_ne!(
            &spec(Uuid::now_v7(), &BTreeMap::new()).env["N8N_ENCRYPTION_KEY"],
            key
        );
        let extra = BTreeMap::from([("GENERIC_TIMEZONE".to_owned(), "Europe/Berlin".to_owned())]);
        assert_eq!(spec(pod, &extra).env["GENERIC_TIMEZONE"], "Europe/Berlin");
        assert!(
            !format!("{first:?}").contains(key.as_str()),
            "secrets leak into Debug"
        );
    }

    #[test]
    fn overrides_replace_image_command_probe_and_storage_class() {
        let catalog = Catalog::builtin().unwrap();
        let overrides = Overrides {
            images: HashMap::from([("n8n".to_owned(), "berth/busybox:test".to_owned())]),
            commands: HashMap::from([("n8n".to_owned(), vec!["sleep".into(), "1d".into()])]),
            probes: HashMap::from([("n8n".to_owned(), Probe::Command(vec!["true".into()]))]),
            storage_class: Some("fast".into()),
            health_interval_secs: Some(1),
        };
        let requested = catalog.resolve(&create("n8n", "pro"), &overrides).unwrap();
        assert_eq!(requested.image, "berth/busybox:test");
        assert_eq!(requested.volume.storage_class.as_deref(), Some("fast"));
        let spec = catalog
            .workload(
                Uuid::now_v7(),
                "acme",
                &requested,
                &BTreeMap::new(),
                &overrides,
                &rendering(),
            )
            .unwrap();
        assert_eq!(
            spec.command,
            Some(vec!["sleep".to_owned(), "1d".to_owned()])
        );
        assert_eq!(
            spec.health.probe,
            HealthProbe::Command {
                command: vec!["true".into()]
            }
        );
    }

    #[test]
    fn images_that_can_run_as_non_root_say_as_whom() {
        let catalog = Catalog::builtin().unwrap();
        let overrides = Overrides::default();
        let user_of = |service: &str, variant: &str| {
            let requested = catalog
                .resolve(&create(service, variant), &overrides)
                .unwrap();
            catalog
                .workload(
                    Uuid::now_v7(),
                    "acme",
                    &requested,
                    &BTreeMap::new(),
                    &overrides,
                    &rendering(),
                )
                .unwrap()
                .run_as_user
        };
        assert_eq!(
            user_of("n8n", "basic"),
            Some(1000),
            "n8n's image runs as node"
        );
        assert_eq!(
            user_of("ghost", "basic"),
            None,
            "Ghost's entrypoint starts as root"
        );
        assert_eq!(user_of("wordpress", "free"), None, "Apache starts as root");
        let root = BUILTIN.replace("\"run_as_user\": 1000", "\"run_as_user\": 0");
        let error = Catalog::from_json(&root).unwrap_err().to_string();
        assert!(error.contains("n8n") && error.contains("root"), "{error}");
    }

    #[test]
    fn a_tenant_namespace_quota_holds_its_pods_of_any_plan_we_sell() {
        use crate::kubernetes::TenantQuota;
        let catalog = Catalog::builtin().unwrap();
        for (name, service) in &catalog.services {
            for (variant_name, variant) in &service.variants {
                let resources = Resources {
                    cpu_request_millis: variant.cpu_request_millis,
                    cpu_limit_millis: variant.cpu_limit_millis,
                    memory_request_mb: variant.memory_request_mb,
                    memory_limit_mb: variant.memory_limit_mb,
                };
                assert!(
                    TenantQuota::DEFAULT.fits(
                        TenantQuota::DEFAULT_PODS,
                        &resources,
                        variant.volume_mb
                    ),
                    "{name}/{variant_name} outgrew the default tenant quota"
                );
            }
        }
    }

    #[test]
    fn broken_catalogs_are_refused_with_the_service_named() {
        let broken = BUILTIN.replace("\"/var/www/html\"", "\"var/www/html\"");
        let error = Catalog::from_json(&broken).unwrap_err().to_string();
        assert!(error.contains("wordpress"), "{error}");
        let unknown_field = BUILTIN.replacen("\"port\": 80,", "\"port\": 80, \"ports\": 1,", 1);
        assert!(Catalog::from_json(&unknown_field).is_err());
        let bad_template = BUILTIN.replace(
            "{{ host }}\",\n        \"N8N_PORT\"",
            "{{ host \",\n        \"N8N_PORT\"",
        );
        assert!(Catalog::from_json(&bad_template).is_err());
    }
}
