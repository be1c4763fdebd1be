//! The pure parts, no API server: the Deployment's security and probes, the default
//! quota, the health read from a Deployment, the log window and error classification.

use chrono::{TimeDelta, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{json, Value};

use crate::kubernetes::api::seconds_since;
use crate::kubernetes::fixtures::{self, deployment_json, spec};
use crate::kubernetes::reading::deployment_health;
use crate::kubernetes::workload::{deployment, probe};
use crate::kubernetes::{classify, TenantQuota};
use crate::runtime::{Health, HealthCheck, HealthProbe, Resources, RuntimeError, WorkloadSpec};

#[test]
fn a_non_root_image_runs_as_its_user_with_no_capability_at_all() {
    let spec = WorkloadSpec {
        run_as_user: Some(1000),
        ..spec()
    };
    let deployment = serde_json::to_value(deployment(&spec, 1)).unwrap();
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        pod["securityContext"],
        json!({ "seccompProfile": { "type": "RuntimeDefault" }, "runAsNonRoot": true,
            "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000 })
    );
    assert_eq!(
        pod["containers"][0]["securityContext"],
        json!({ "allowPrivilegeEscalation": false, "privileged": false,
            "capabilities": { "drop": ["ALL"] } })
    );
    assert_ne!(
        spec.spec_hash(),
        fixtures::spec().spec_hash(),
        "a new user redeploys"
    );
}

#[test]
fn the_default_quota_holds_its_pods_of_the_largest_plan() {
    let largest = Resources {
        cpu_request_millis: 1000,
        cpu_limit_millis: 2000,
        memory_request_mb: 1024,
        memory_limit_mb: 2048,
    };
    let quota = TenantQuota::default();
    assert!(quota.fits(TenantQuota::DEFAULT_PODS, &largest, 1024));
    assert!(!quota.fits(TenantQuota::DEFAULT_PODS + 1, &largest, 1024));
}

#[test]
fn command_probes_exec_and_zero_timings_become_one() {
    let check = HealthCheck {
        probe: HealthProbe::Command {
            command: vec!["pg_isready".to_string()],
        },
        interval_secs: 0,
        timeout_secs: 0,
        failure_threshold: 0,
        start_period_secs: 0,
    };
    let probe = serde_json::to_value(probe(&check, 5432, 0)).unwrap();
    assert_eq!(probe["exec"]["command"], json!(["pg_isready"]));
    assert!(probe.get("httpGet").is_none());
    assert_eq!(
        (
            &probe["periodSeconds"],
            &probe["timeoutSeconds"],
            &probe["failureThreshold"]
        ),
        (&json!(1), &json!(1), &json!(1))
    );
}

fn with_status(replicas: i32, status: Value) -> Deployment {
    let mut value = deployment_json(replicas);
    value["status"] = status;
    serde_json::from_value(value).unwrap()
}

#[test]
fn deployment_health_follows_replicas_readiness_and_conditions() {
    let ready = json!({ "readyReplicas": 1 });
    assert_eq!(
        deployment_health(&with_status(0, ready.clone())),
        Health::Stopped
    );
    assert_eq!(deployment_health(&with_status(1, ready)), Health::Healthy);
    assert_eq!(
        deployment_health(&with_status(1, json!({}))),
        Health::Starting
    );
    let stuck = json!({ "conditions": [{
        "type": "Progressing", "status": "False",
        "reason": "ProgressDeadlineExceeded", "message": "took too long",
    }]});
    assert_eq!(
        deployment_health(&with_status(1, stuck)),
        Health::Unhealthy("ProgressDeadlineExceeded: took too long".to_string())
    );
    let quota = json!({ "conditions": [
        { "type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated" },
        { "type": "ReplicaFailure", "status": "True", "reason": "FailedCreate" },
    ]});
    assert_eq!(
        deployment_health(&with_status(1, quota)),
        Health::Unhealthy("FailedCreate".to_string())
    );
}

#[test]
fn seconds_since_rounds_up_to_at_least_one() {
    let now = Utc::now();
    assert_eq!(
        seconds_since(now - TimeDelta::milliseconds(90_001), now),
        91
    );
    assert_eq!(seconds_since(now - TimeDelta::seconds(90), now), 90);
    assert_eq!(seconds_since(now, now), 1);
    assert_eq!(seconds_since(now + TimeDelta::seconds(30), now), 1);
}

fn api_error(code: u16) -> ::kube::Error {
    let status = ::kube::core::Status::failure("test", "Test").with_code(code);
    ::kube::Error::Api(status.boxed())
}

#[test]
fn classify_maps_codes_and_connection_errors() {
    let kind = |err| match classify(err, "thing") {
        RuntimeError::NotFound(_) => "not found",
        RuntimeError::Transient(_) => "transient",
        RuntimeError::Permanent(_) => "permanent",
    };
    assert_eq!(kind(api_error(404)), "not found");
    for code in [408, 409, 429, 500, 503] {
        assert_eq!(kind(api_error(code)), "transient", "{code}");
    }
    for code in [400, 401, 403, 422] {
        assert_eq!(kind(api_error(code)), "permanent", "{code}");
    }
    let refused = ::kube::Error::Service("connection refused".into());
    assert_eq!(kind(refused), "transient");
    assert_eq!(
        classify(api_error(404), "deployment x/y"),
        RuntimeError::NotFound("deployment x/y".to_string())
    );
}
