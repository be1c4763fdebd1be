//! Scenarios that read the cluster: health, logs and the inventory.

use chrono::{TimeDelta, Utc};
use http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::kubernetes::fixtures::*;
use crate::kubernetes::objects::claim;
use crate::runtime::{
    volume_name, workload_name, Health, ObjectKind, PodRuntime, RuntimeError, RuntimeObject,
    LABEL_MANAGED, LABEL_POD, LABEL_TENANT,
};

#[tokio::test]
async fn health_reads_the_deployment() {
    let (runtime, mut server) = mock_runtime();
    let task = tokio::spawn(async move {
        let missing = runtime.health(&spec()).await?;
        let ready = runtime.health(&spec()).await?;
        Ok::<_, RuntimeError>((missing, ready))
    });

    server
        .expect(Method::GET, &deployment_path())
        .await
        .fail(404, "NotFound");
    let mut ready = deployment_json(1);
    ready["status"] = json!({ "replicas": 1, "readyReplicas": 1 });
    server
        .expect(Method::GET, &deployment_path())
        .await
        .respond(StatusCode::OK, &ready);

    let (result, calls) = server.finish(task).await;
    assert_eq!(result, Ok((Health::Missing, Health::Healthy)));
    assert_eq!(calls.len(), 2);
}

fn pod_json(name: &str, created: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": { "name": name, "namespace": NS, "creationTimestamp": created },
        "spec": { "containers": [{ "name": "web", "image": "nginx:1.27" }] },
    })
}

#[tokio::test]
async fn logs_read_the_newest_pod() {
    let (runtime, mut server) = mock_runtime();
    let since = Utc::now() - TimeDelta::seconds(90);
    let task = tokio::spawn(async move {
        runtime
            .logs(&tenant(), pod_id(), Some(50), Some(since))
            .await
    });

    let list = server
        .expect(Method::GET, &format!("/api/v1/namespaces/{NS}/pods"))
        .await;
    assert_eq!(
        list.query["labelSelector"],
        format!("berth.pod={}", pod_id())
    );
    let pods = json!({ "apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
        pod_json("old", "2025-01-01T00:00:00Z"),
        pod_json("new", "2025-01-02T00:00:00Z"),
    ]});
    list.respond(StatusCode::OK, &pods);
    let logs = server
        .expect(
            Method::GET,
            &format!("/api/v1/namespaces/{NS}/pods/new/log"),
        )
        .await;
    assert_eq!(logs.query["tailLines"], "50");
    assert_eq!(logs.query["container"], "web");
    let since_seconds: i64 = logs.query["sinceSeconds"].parse().unwrap();
    assert!((90..=95).contains(&since_seconds), "{since_seconds}");
    logs.respond_text("first\nsecond\n");

    let (result, calls) = server.finish(task).await;
    assert_eq!(result, Ok("first\nsecond\n".to_string()));
    assert_eq!(calls.len(), 2);
}

#[tokio::test]
async fn logs_without_pods_are_empty() {
    let (runtime, mut server) = mock_runtime();
    let task = tokio::spawn(async move { runtime.logs(&tenant(), pod_id(), None, None).await });

    let list = server
        .expect(Method::GET, &format!("/api/v1/namespaces/{NS}/pods"))
        .await;
    list.respond(
        StatusCode::OK,
        &json!({ "apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [] }),
    );

    let (result, calls) = server.finish(task).await;
    assert_eq!(result, Ok(String::new()));
    assert_eq!(calls.len(), 1);
}

#[tokio::test]
async fn inventory_lists_managed_objects_in_all_namespaces() {
    let (runtime, mut server) = mock_runtime();
    let task = tokio::spawn(async move { runtime.inventory().await });

    let deployments = server
        .expect(Method::GET, "/apis/apps/v1/deployments")
        .await;
    assert_eq!(deployments.query["labelSelector"], "berth.managed=true");
    let mut unlabelled = deployment_json(1);
    unlabelled["metadata"] = json!({ "name": "stray", "labels": { LABEL_MANAGED: "true" } });
    // Labelled as another tenant's but living in acme's namespace: whose it is is
    // unknown, so a clean-up never reaches into the other tenant's namespace.
    let mut mislabelled = deployment_json(1);
    mislabelled["metadata"] = json!({ "name": "misplaced", "namespace": NS,
        "labels": { LABEL_MANAGED: "true", LABEL_TENANT: "other", LABEL_POD: pod_id().to_string() } });
    let list = json!({ "apiVersion": "apps/v1", "kind": "DeploymentList", "metadata": {},
        "items": [deployment_json(1), unlabelled, mislabelled] });
    deployments.respond(StatusCode::OK, &list);
    let claims = server
        .expect(Method::GET, "/api/v1/persistentvolumeclaims")
        .await;
    assert_eq!(claims.query["labelSelector"], "berth.managed=true");
    let list = json!({ "apiVersion": "v1", "kind": "PersistentVolumeClaimList", "metadata": {},
        "items": [serde_json::to_value(claim(&spec())).unwrap()] });
    claims.respond(StatusCode::OK, &list);

    let object = |kind, name: String| RuntimeObject {
        kind,
        name,
        tenant: Some(TENANT.to_string()),
        pod_id: Some(pod_id()),
    };
    let expected = vec![
        object(ObjectKind::Workload, workload_name(pod_id())),
        RuntimeObject {
            kind: ObjectKind::Workload,
            name: "misplaced".to_string(),
            tenant: None,
            pod_id: Some(pod_id()),
        },
        RuntimeObject {
            kind: ObjectKind::Workload,
            name: "stray".to_string(),
            tenant: None,
            pod_id: None,
        },
        object(ObjectKind::Volume, volume_name(pod_id())),
    ];
    let (result, calls) = server.finish(task).await;
    assert_eq!(result, Ok(expected));
    assert_eq!(calls.len(), 2);
}
