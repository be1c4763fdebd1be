//! One round trip against a real cluster: `KUBECONFIG=… cargo test -p
//! berth-pod-lifecycle --lib real_cluster_round_trip -- --ignored`.

use std::time::Duration;

use berth_schemas::TenantId;
use uuid::Uuid;

use crate::kubernetes::fixtures::spec;
use crate::kubernetes::KubernetesRuntime;
use crate::runtime::{
    AccessMode, Health, HealthCheck, HealthProbe, PodRuntime, Resources, VolumeSpec, WorkloadSpec,
};

async fn wait_for(runtime: &KubernetesRuntime, spec: &WorkloadSpec, wanted: Health) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let health = runtime.health(spec).await.expect("health");
        if health == wanted {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still {health:?}, wanted {wanted:?}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

fn busybox_spec() -> WorkloadSpec {
    WorkloadSpec {
        pod_id: Uuid::new_v4(),
        tenant: "roundtrip".to_string(),
        service: "app".to_string(),
        image: "busybox:1.36".to_string(),
        command: Some(vec![
            "sh".into(),
            "-c".into(),
            "echo berth-ready; exec sleep 3600".into(),
        ]),
        resources: Resources {
            cpu_request_millis: 10,
            cpu_limit_millis: 100,
            memory_request_mb: 16,
            memory_limit_mb: 32,
        },
        health: HealthCheck {
            probe: HealthProbe::Command {
                command: vec!["test".into(), "-d".into(), "/data".into()],
            },
            interval_secs: 2,
            timeout_secs: 1,
            failure_threshold: 3,
            start_period_secs: 0,
        },
        volume: VolumeSpec {
            size_mb: 64,
            mount_path: "/data".to_string(),
            storage_class: None,
            access_mode: AccessMode::ReadWriteOnce,
        },
        run_as_user: Some(1000),
        ..spec()
    }
}

#[tokio::test]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
#[allow(clippy::disallowed_methods)] // a test that is its own edge: it reads KUBECONFIG
async fn real_cluster_round_trip() {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "set KUBECONFIG to a test cluster"
    );
    let runtime = KubernetesRuntime::connect()
        .await
        .expect("cluster configuration");
    let spec = busybox_spec();

    runtime.ensure_volume(&spec).await.expect("volume");
    runtime.ensure_volume(&spec).await.expect("volume again");
    runtime.deploy(&spec, 1).await.expect("deploy");
    wait_for(&runtime, &spec, Health::Healthy).await;
    let tenant = TenantId::parse(&spec.tenant).expect("a tenant id");
    let logs = runtime
        .logs(&tenant, spec.pod_id, Some(10), None)
        .await
        .expect("logs");
    assert!(logs.contains("berth-ready"), "{logs:?}");

    runtime.restart(&spec).await.expect("restart");
    wait_for(&runtime, &spec, Health::Healthy).await;
    runtime.scale(&spec, 0).await.expect("scale");
    assert_eq!(runtime.health(&spec).await, Ok(Health::Stopped));
    let inventory = runtime.inventory().await.expect("inventory");
    let ours = inventory
        .iter()
        .filter(|o| o.pod_id == Some(spec.pod_id))
        .count();
    assert_eq!(ours, 2, "{inventory:?}");

    runtime
        .delete_workload(&tenant, spec.pod_id)
        .await
        .expect("delete workload");
    runtime
        .delete_volume(&tenant, spec.pod_id)
        .await
        .expect("delete volume");
    runtime
        .delete_workload(&tenant, spec.pod_id)
        .await
        .expect("delete again");
    assert_eq!(runtime.health(&spec).await, Ok(Health::Missing));
}
