//! Scenarios that change the cluster: create, reset, restart, scale, delete and remove,
//! with the bodies berth applies and how it reacts to conflicts and failures.

use berth_adapters::docker::CAPABILITIES;
use chrono::{DateTime, TimeDelta, Utc};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::kubernetes::fixtures::*;
use crate::kubernetes::objects::{claim, namespace_object};
use crate::kubernetes::{TenantQuota, NETWORK_POLICY, RESOURCE_QUOTA, RESTARTED_AT};
use crate::runtime::{
    volume_name, workload_name, ObjectKind, PodRuntime, RuntimeError, RuntimeObject, LABEL_MANAGED,
    LABEL_POD, LABEL_SPEC_HASH, LABEL_TENANT,
};

fn assert_claim_body(claim: &Value) {
    assert_eq!(claim["kind"], "PersistentVolumeClaim");
    assert_eq!(claim["metadata"]["name"], format!("berth-vol-{}", pod_id()));
    assert_eq!(claim["metadata"]["labels"][LABEL_POD], pod_id().to_string());
    assert_eq!(claim["metadata"]["labels"][LABEL_TENANT], TENANT);
    assert_eq!(claim["metadata"]["labels"][LABEL_MANAGED], "true");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "250Mi");
    assert_eq!(claim["spec"]["storageClassName"], "fast-ssd");
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
}

fn assert_deployment_body(deployment: &Value, replicas: i32) {
    let hash = spec().spec_hash();
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(deployment["apiVersion"], "apps/v1");
    assert_eq!(deployment["metadata"]["labels"][LABEL_SPEC_HASH], hash);
    assert_eq!(deployment["metadata"]["annotations"][LABEL_SPEC_HASH], hash);
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], replicas);
    assert_eq!(spec["strategy"]["type"], "Recreate");
    assert_eq!(
        spec["selector"]["matchLabels"],
        json!({ LABEL_POD: pod_id().to_string() })
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(
        pod["volumes"][0]["persistentVolumeClaim"]["claimName"],
        format!("berth-vol-{}", pod_id())
    );
    let container = &pod["containers"][0];
    assert_eq!(container["name"], "web");
    assert_eq!(container["image"], "nginx:1.27");
    assert_eq!(container["command"], json!(["nginx", "-g", "daemon off;"]));
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert!(container.get("env").is_none(), "no plain env values");
    assert_eq!(
        container["envFrom"],
        json!([{ "secretRef": { "name": format!("berth-env-{}", pod_id()), "optional": false } }])
    );
    assert!(
        !deployment.to_string().contains("s3cret"),
        "the Deployment holds no secret value"
    );
    assert_eq!(
        pod["securityContext"],
        json!({ "seccompProfile": { "type": "RuntimeDefault" } })
    );
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(container["securityContext"]["privileged"], false);
    assert_eq!(
        container["securityContext"]["capabilities"],
        json!({ "drop": ["ALL"], "add": CAPABILITIES })
    );
    assert_eq!(
        container["resources"]["requests"],
        json!({ "cpu": "250m", "memory": "128Mi" })
    );
    assert_eq!(
        container["resources"]["limits"],
        json!({ "cpu": "500m", "memory": "256Mi" })
    );
    assert_eq!(container["volumeMounts"][0]["mountPath"], "/data");
    assert_eq!(
        container["volumeMounts"][0]["name"],
        pod["volumes"][0]["name"]
    );
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(
            container[probe]["httpGet"],
            json!({ "path": "/healthz", "port": 8080 })
        );
        assert_eq!(container[probe]["periodSeconds"], 10);
        assert_eq!(container[probe]["timeoutSeconds"], 3);
        assert_eq!(container[probe]["failureThreshold"], 4);
    }
    assert_eq!(container["livenessProbe"]["initialDelaySeconds"], 15);
}

fn assert_secret_body(secret: &Value) {
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["type"], "Opaque");
    assert_eq!(
        secret["metadata"]["name"],
        format!("berth-env-{}", pod_id())
    );
    assert_eq!(secret["metadata"]["namespace"], NS);
    assert_eq!(secret["metadata"]["labels"][LABEL_TENANT], TENANT);
    // base64 of "s3cret"
    assert_eq!(secret["data"], json!({ "DATABASE_PASSWORD": "czNjcmV0" }));
}

fn assert_policy_body(policy: &Value, ingress: Option<&str>) {
    assert_eq!(policy["kind"], "NetworkPolicy");
    assert_eq!(policy["apiVersion"], "networking.k8s.io/v1");
    assert_eq!(policy["metadata"]["name"], NETWORK_POLICY);
    assert_eq!(policy["metadata"]["namespace"], NS);
    assert_eq!(policy["spec"]["podSelector"], json!({}));
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress"]));
    let mut from = vec![json!({ "podSelector": {} })];
    if let Some(ingress) = ingress {
        from.push(json!({ "namespaceSelector": { "matchLabels": {
            "kubernetes.io/metadata.name": ingress } } }));
    }
    assert_eq!(policy["spec"]["ingress"], json!([{ "from": from }]));
}

fn assert_quota_body(quota: &Value) {
    assert_eq!(quota["kind"], "ResourceQuota");
    assert_eq!(quota["metadata"]["name"], RESOURCE_QUOTA);
    assert_eq!(quota["metadata"]["namespace"], NS);
    assert_eq!(
        quota["spec"]["hard"],
        json!({
            "pods": "20",
            "requests.cpu": "40000m",
            "limits.cpu": "40000m",
            "requests.memory": "40960Mi",
            "limits.memory": "40960Mi",
            "persistentvolumeclaims": "20",
            "requests.storage": "20480Mi",
        })
    );
}

fn assert_service_body(service: &Value) {
    assert_eq!(service["kind"], "Service");
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert_eq!(
        service["spec"]["selector"],
        json!({ LABEL_POD: pod_id().to_string() })
    );
    assert_eq!(service["spec"]["ports"][0]["port"], 8080);
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 8080);
}

#[tokio::test]
async fn create_applies_namespace_creates_volume_and_applies_workload() {
    let (runtime, mut server) = mock_runtime();
    let task = tokio::spawn(async move {
        let volume = runtime.ensure_volume(&spec()).await?;
        let workload = runtime.deploy(&spec(), 1).await?;
        Ok::<_, RuntimeError>((volume, workload))
    });

    let (_, policy, quota) = server.namespace_ensure().await;
    assert_policy_body(&policy, None);
    assert_quota_body(&quota);
    assert_claim_body(&server.claim_create().await);
    assert_secret_body(&server.secret_apply().await);
    assert_deployment_body(&server.deployment_apply().await, 1);
    assert_service_body(&server.service_apply().await);

    let (result, calls) = server.finish(task).await;
    let names = result.unwrap();
    assert_eq!(
        names,
        (
            format!("berth-vol-{}", pod_id()),
            format!("berth-pod-{}", pod_id())
        )
    );
    assert_eq!(calls, create_calls());
}

#[tokio::test]
async fn a_namespace_of_another_tenant_is_refused_untouched() {
    let (runtime, mut server) = mock_runtime();
    let task = tokio::spawn(async move { runtime.ensure_volume(&spec()).await });

    let theirs = json!({ "apiVersion": "v1", "kind": "Namespace",
        "metadata": { "name": NS, "labels": { LABEL_MANAGED: "true", LABEL_TENANT: "other" } } });
    server
        .expect(Method::GET, &namespace_path())
        .await
        .respond(StatusCode::OK, &theirs);

    let (result, calls) = server.finish(task).await;
    assert!(
        matches!(&result, Err(RuntimeError::Permanent(m))
            if m.starts_with("conflict:") && m.contains("another tenant")),
        "{result:?}"
    );
    assert_eq!(calls, vec![call(&Method::GET, &namespace_path())]);
}

#[tokio::test]
async fn an_existing_namespace_of_the_tenant_is_applied_again_with_its_policy_and_quota() {
    let (runtime, mut server) = mock_runtime();
    let runtime = runtime
        .with_ingress_namespace(Some("ingress-nginx".to_string()))
        .with_quota(TenantQuota {
            pods: 3,
            cpu_millis: 1500,
            memory_mb: 768,
            volumes: 3,
            storage_mb: 750,
        });
    let task = tokio::spawn(async move { runtime.ensure_volume(&spec()).await });

    let ours = serde_json::to_value(namespace_object(TENANT)).unwrap();
    server
        .expect(Method::GET, &namespace_path())
        .await
        .respond(StatusCode::OK, &ours);
    server.apply(&namespace_path()).await;
    assert_policy_body(&server.apply(&policy_path()).await, Some("ingress-nginx"));
    let quota = server.apply(&quota_path()).await;
    assert_eq!(
        quota["spec"]["hard"],
        json!({ "pods": "3", "requests.cpu": "1500m", "limits.cpu": "1500m",
            "requests.memory": "768Mi", "limits.memory": "768Mi",
            "persistentvolumeclaims": "3", "requests.storage": "750Mi" })
    );
    server.claim_create().await;

    let (result, calls) = server.finish(task).await;
    result.unwrap();
    assert_eq!(calls.len(), namespace_calls().len() + 1);
}

#[tokio::test]
async fn restart_only_patches_the_pod_template() {
    let (runtime, mut server) = mock_runtime();
    let task = tokio::spawn(async move { runtime.restart(&spec()).await });

    let patch = server.expect(Method::PATCH, &deployment_path()).await;
    assert_eq!(patch.content_type, "application/strategic-merge-patch+json");
    let stamp = patch.body["spec"]["template"]["metadata"]["annotations"][RESTARTED_AT]
        .as_str()
        .unwrap()
        .to_string();
    let restarted_at = DateTime::parse_from_rfc3339(&stamp).unwrap();
    assert!((Utc::now() - restarted_at.with_timezone(&Utc)).abs() < TimeDelta::seconds(60));
    assert_eq!(
        patch.body.as_object().unwrap().len(),
        1,
        "only the template is patched"
    );
    patch.respond(StatusCode::OK, &deployment_json(1));

    let (result, calls) = server.finish(task).await;
    result.unwrap();
    assert_eq!(calls, vec![call(&Method::PATCH, &deployment_path())]);
}

#[tokio::test]
async fn reset_deletes_the_volume_before_creating_it_again() {
    let (runtime, mut server) = mock_runtime();
    let task = tokio::spawn(async move {
        let spec = spec();
        runtime.delete_workload(&tenant(), spec.pod_id).await?;
        runtime.delete_volume(&tenant(), spec.pod_id).await?;
        runtime.ensure_volume(&spec).await?;
        runtime.deploy(&spec, 1).await
    });

    let options = server.workload_delete().await;
    assert_eq!(options["propagationPolicy"], "Background");
    server.delete(&claim_path()).await;
    server.namespace_ensure().await;
    assert_claim_body(&server.claim_create().await);
    server.secret_apply().await;
    assert_deployment_body(&server.deployment_apply().await, 1);
    assert_service_body(&server.service_apply().await);

    let (result, calls) = server.finish(task).await;
    result.unwrap();
    let mut expected = workload_delete_calls();
    expected.push(call(&Method::DELETE, &claim_path()));
    expected.extend(create_calls());
    assert_eq!(calls, expected);
    let position = |wanted: &str| calls.iter().position(|c| c == wanted).unwrap();
    assert!(
        position(&call(&Method::DELETE, &claim_path()))
            < position(&call(&Method::POST, &claims_path())),
        "the PVC is deleted before it is created again"
    );
}

#[tokio::test]
async fn scale_to_zero_patches_replicas_only() {
    let (runtime, mut server) = mock_runtime();
    let task = tokio::spawn(async move { runtime.scale(&spec(), 0).await });

    let patch = server.expect(Method::PATCH, &deployment_path()).await;
    assert_eq!(patch.content_type, "application/merge-patch+json");
    assert_eq!(patch.body, json!({ "spec": { "replicas": 0 } }));
    patch.respond(StatusCode::OK, &deployment_json(0));

    let (result, calls) = server.finish(task).await;
    result.unwrap();
    assert_eq!(calls, vec![call(&Method::PATCH, &deployment_path())]);
}

#[tokio::test]
async fn delete_without_volume_keeps_the_claim() {
    let (runtime, mut server) = mock_runtime();
    let task = tokio::spawn(async move { runtime.delete_workload(&tenant(), pod_id()).await });

    server.workload_delete().await;

    let (result, calls) = server.finish(task).await;
    result.unwrap();
    assert_eq!(calls, workload_delete_calls());
}

#[tokio::test]
async fn delete_with_volume_removes_the_claim_after_the_workload() {
    let (runtime, mut server) = mock_runtime();
    let task = tokio::spawn(async move {
        runtime.delete_workload(&tenant(), pod_id()).await?;
        runtime.delete_volume(&tenant(), pod_id()).await
    });

    server.workload_delete().await;
    server.delete(&claim_path()).await;

    let (result, calls) = server.finish(task).await;
    result.unwrap();
    let mut expected = workload_delete_calls();
    expected.push(call(&Method::DELETE, &claim_path()));
    assert_eq!(calls, expected);
}

#[tokio::test]
async fn existing_volume_is_kept_on_conflict() {
    let (runtime, mut server) = mock_runtime();
    let task = tokio::spawn(async move { runtime.ensure_volume(&spec()).await });

    server.namespace_ensure().await;
    server
        .expect(Method::POST, &claims_path())
        .await
        .fail(409, "AlreadyExists");
    let existing = serde_json::to_value(claim(&spec())).unwrap();
    server
        .expect(Method::GET, &claim_path())
        .await
        .respond(StatusCode::OK, &existing);

    let (result, calls) = server.finish(task).await;
    assert_eq!(result, Ok(format!("berth-vol-{}", pod_id())));
    let mut expected = namespace_calls();
    expected.extend([
        call(&Method::POST, &claims_path()),
        call(&Method::GET, &claim_path()),
    ]);
    assert_eq!(
        calls, expected,
        "an existing claim is never patched or resized"
    );
}

#[tokio::test]
async fn volume_still_being_deleted_is_transient() {
    let (runtime, mut server) = mock_runtime();
    let task = tokio::spawn(async move { runtime.ensure_volume(&spec()).await });

    server.namespace_ensure().await;
    server
        .expect(Method::POST, &claims_path())
        .await
        .fail(409, "AlreadyExists");
    let mut terminating = serde_json::to_value(claim(&spec())).unwrap();
    terminating["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
    server
        .expect(Method::GET, &claim_path())
        .await
        .respond(StatusCode::OK, &terminating);

    let (result, calls) = server.finish(task).await;
    assert!(
        matches!(&result, Err(RuntimeError::Transient(m)) if m.contains("being deleted")),
        "{result:?}"
    );
    assert_eq!(calls.len(), namespace_calls().len() + 2);
}

#[tokio::test]
async fn deleting_missing_objects_succeeds() {
    let (runtime, mut server) = mock_runtime();
    let task = tokio::spawn(async move {
        runtime.delete_workload(&tenant(), pod_id()).await?;
        runtime.delete_volume(&tenant(), pod_id()).await
    });

    server.delete_missing(&deployment_path()).await;
    server.delete_missing(&service_path()).await;
    server.delete_missing(&secret_path()).await;
    server.delete_missing(&claim_path()).await;

    let (result, calls) = server.finish(task).await;
    assert_eq!(result, Ok(()));
    assert_eq!(calls.len(), 4);
}

#[tokio::test]
async fn restarting_a_missing_workload_is_not_found() {
    let (runtime, mut server) = mock_runtime();
    let task = tokio::spawn(async move { runtime.restart(&spec()).await });

    server
        .expect(Method::PATCH, &deployment_path())
        .await
        .fail(404, "NotFound");

    let expected = format!("deployment {NS}/berth-pod-{}", pod_id());
    let (result, calls) = server.finish(task).await;
    assert_eq!(result, Err(RuntimeError::NotFound(expected)));
    assert_eq!(calls.len(), 1);
}

#[tokio::test]
async fn server_error_on_deploy_is_transient_and_stops() {
    let (runtime, mut server) = mock_runtime();
    let task = tokio::spawn(async move { runtime.deploy(&spec(), 1).await });

    server.secret_apply().await;
    server
        .expect(Method::PATCH, &deployment_path())
        .await
        .fail(500, "InternalError");

    let (result, calls) = server.finish(task).await;
    assert!(
        matches!(&result, Err(RuntimeError::Transient(m)) if m.contains("500")),
        "{result:?}"
    );
    assert_eq!(
        calls,
        vec![
            call(&Method::PATCH, &secret_path()),
            call(&Method::PATCH, &deployment_path())
        ]
    );
}

#[tokio::test]
async fn forbidden_is_permanent() {
    let (runtime, mut server) = mock_runtime();
    let task = tokio::spawn(async move { runtime.scale(&spec(), 1).await });

    server
        .expect(Method::PATCH, &deployment_path())
        .await
        .fail(403, "Forbidden");

    let (result, calls) = server.finish(task).await;
    assert!(matches!(result, Err(RuntimeError::Permanent(_))));
    assert_eq!(calls.len(), 1);
}

#[tokio::test]
async fn more_than_one_replica_is_refused_without_a_call() {
    let (runtime, server) = mock_runtime();
    let task = tokio::spawn(async move { runtime.deploy(&spec(), 2).await });

    let (result, calls) = server.finish(task).await;
    assert!(matches!(result, Err(RuntimeError::Permanent(_))));
    assert!(calls.is_empty());
}

#[tokio::test]
async fn remove_deletes_in_the_tenant_namespace() {
    let (runtime, mut server) = mock_runtime();
    let workload = RuntimeObject {
        kind: ObjectKind::Workload,
        name: workload_name(pod_id()),
        tenant: Some(TENANT.to_string()),
        pod_id: Some(pod_id()),
    };
    let volume = RuntimeObject {
        kind: ObjectKind::Volume,
        name: volume_name(pod_id()),
        ..workload.clone()
    };
    let task = tokio::spawn(async move {
        runtime.remove(&workload).await?;
        runtime.remove(&volume).await
    });

    server.workload_delete().await;
    server.delete(&claim_path()).await;

    let (result, calls) = server.finish(task).await;
    result.unwrap();
    assert_eq!(calls.len(), 4);
}

#[tokio::test]
async fn remove_without_tenant_is_permanent_and_calls_nothing() {
    let (runtime, server) = mock_runtime();
    let stray = RuntimeObject {
        kind: ObjectKind::Volume,
        name: "stray".to_string(),
        tenant: None,
        pod_id: None,
    };
    let task = tokio::spawn(async move { runtime.remove(&stray).await });

    let (result, calls) = server.finish(task).await;
    assert!(matches!(result, Err(RuntimeError::Permanent(_))));
    assert!(calls.is_empty());
}
