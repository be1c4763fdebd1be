//! Given → when → then tests of [`super`].

use super::*;
use berth_schemas::pod::{
    DeletePod, EndPod, PodDeployed, PodResources, PodTarget, PodVolume, PurgePod, ResetPod,
    ScalePod,
};
use uuid::Uuid;

fn now() -> DateTime<Utc> {
    "2026-11-23T12:00:00Z".parse().unwrap()
}

fn decision(now: DateTime<Utc>) -> Decision {
    Decision {
        now,
        requested: None,
    }
}

fn requested() -> PodRequested {
    PodRequested {
        name: "flows".into(),
        service: "n8n".into(),
        variant: "basic".into(),
        subscription_id: None,
        image: "n8n".into(),
        port: 5678,
        resources: PodResources {
            cpu_request_millis: 250,
            cpu_limit_millis: 500,
            memory_request_mb: 256,
            memory_limit_mb: 512,
        },
        volume: PodVolume {
            size_mb: 250,
            mount_path: "/home/node/.n8n".into(),
            storage_class: None,
            access_mode: "ReadWriteOnce".into(),
        },
        env: BTreeMap::new(),
    }
}

fn given(events: &[PodEvent]) -> Pod {
    let mut pod = Pod::default();
    for event in events {
        pod.apply(event);
    }
    pod
}

fn running() -> Vec<PodEvent> {
    vec![
        PodEvent::Requested(requested()),
        PodEvent::Deployed(PodDeployed {
            runtime: "sim".into(),
            workload: "w".into(),
            volume: "v".into(),
            replicas: 1,
        }),
        PodEvent::Healthy(PodStep {}),
    ]
}

fn pod_id() -> Uuid {
    Uuid::nil()
}

fn decide(events: &[PodEvent], command: PodCommand) -> Result<Vec<PodEvent>, Rejection> {
    given(events).decide_with(&command, &decision(now()))
}

#[test]
fn a_pod_walks_from_requested_to_running() {
    let pod = given(&running()[..1]);
    assert_eq!(Step::next(&pod), Some(Step::Deploy));
    let pod = given(&running()[..2]);
    assert_eq!(
        (pod.status, Step::next(&pod)),
        (Some(PodStatus::Starting), None)
    );
    let pod = given(&running());
    assert_eq!(pod.status, Some(PodStatus::Running));
    assert!(pod.ever_healthy);
}

#[test]
fn reset_needs_confirmation() {
    let unconfirmed = decide(
        &running(),
        PodCommand::Reset(ResetPod {
            pod_id: pod_id(),
            confirm: false,
            expected_version: None,
        }),
    )
    .unwrap_err();
    assert_eq!(unconfirmed.code, RejectionCode::Invalid);
    assert!(
        unconfirmed.message.contains("confirm"),
        "{}",
        unconfirmed.message
    );
    let confirmed = decide(
        &running(),
        PodCommand::Reset(ResetPod {
            pod_id: pod_id(),
            confirm: true,
            expected_version: None,
        }),
    )
    .unwrap();
    assert_eq!(confirmed, vec![PodEvent::ResetRequested(PodStep {})]);
}

#[test]
fn expiry_scales_to_zero_and_purge_waits_for_the_grace_period() {
    let mut events = running();
    let expire = PodCommand::Expire(EndPod {
        pod_id: pod_id(),
        at: None,
    });
    events.extend(decide(&events, expire.clone()).unwrap());
    let pod = given(&events);
    assert_eq!(
        (pod.status, Step::next(&pod)),
        (Some(PodStatus::Scaling), Some(Step::Scale))
    );
    assert!(
        decide(&events, expire).unwrap().is_empty(),
        "a second expiry changes nothing"
    );
    events.push(PodEvent::Scaled(PodReplicas { replicas: 0 }));
    assert_eq!(given(&events).status, Some(PodStatus::Expired));
    let purge = PodCommand::Purge(PurgePod {
        pod_id: pod_id(),
        expired_at: now(),
    });
    let early = given(&events).decide_with(&purge, &decision(now() + Duration::days(59)));
    assert!(early.unwrap().is_empty());
    let due = given(&events)
        .decide_with(&purge, &decision(now() + Duration::days(60)))
        .unwrap();
    assert!(matches!(
        due.as_slice(),
        [PodEvent::DeleteRequested(PodDeleteRequested {
            keep_volume: false,
            ..
        })]
    ));
}

#[test]
fn renewal_inside_the_grace_period_brings_the_pod_back_and_disarms_the_purge() {
    let mut events = running();
    events.extend(
        decide(
            &events,
            PodCommand::Cancel(EndPod {
                pod_id: pod_id(),
                at: None,
            }),
        )
        .unwrap(),
    );
    events.push(PodEvent::Scaled(PodReplicas { replicas: 0 }));
    let renew = PodCommand::Renew(PodTarget {
        pod_id: pod_id(),
        expected_version: None,
    });
    events.extend(decide(&events, renew).unwrap());
    let pod = given(&events);
    assert_eq!(
        (pod.status, pod.desired_replicas),
        (Some(PodStatus::Scaling), 1)
    );
    events.push(PodEvent::Scaled(PodReplicas { replicas: 1 }));
    let purge = PodCommand::Purge(PurgePod {
        pod_id: pod_id(),
        expired_at: now(),
    });
    let late = given(&events).decide_with(&purge, &decision(now() + Duration::days(61)));
    assert!(late.unwrap().is_empty());
}

#[test]
fn stopped_and_expired_pods_refuse_what_needs_them_running() {
    let mut events = running();
    events.push(PodEvent::ScaleRequested(PodReplicas { replicas: 0 }));
    events.push(PodEvent::Scaled(PodReplicas { replicas: 0 }));
    let restart = PodCommand::Restart(PodTarget {
        pod_id: pod_id(),
        expected_version: None,
    });
    let rejection = decide(&events, restart).unwrap_err();
    assert_eq!(rejection.code, RejectionCode::InvalidState);
    assert!(
        rejection.message.contains("scale it to 1"),
        "{}",
        rejection.message
    );
    let scale_up = PodCommand::Scale(ScalePod {
        pod_id: pod_id(),
        replicas: 1,
        expected_version: None,
    });
    assert_eq!(decide(&events, scale_up).unwrap().len(), 1);
}

#[test]
fn health_monitoring_restarts_with_backoff_then_gives_up() {
    let backoff = |n: usize| Duration::seconds(10 << n);
    let mut events = running();
    let pod = given(&events);
    let unhealthy = pod.on_health(Err("no answer".into()), now(), 3, backoff);
    assert!(matches!(unhealthy.as_slice(), [PodEvent::Unhealthy(_)]));
    events.extend(unhealthy);
    let mut at = now();
    for _ in 0..3 {
        let pod = given(&events);
        let decided = pod.on_health(Err("no answer".into()), at, 3, backoff);
        assert!(matches!(decided.as_slice(), [PodEvent::RestartRequested(r)] if r.automatic));
        events.extend(decided);
        events.push(PodEvent::Restarted(PodStep {}));
        events.push(PodEvent::Unhealthy(Default::default()));
        let too_soon = given(&events).on_health(Err("no".into()), at, 3, backoff);
        assert!(
            !too_soon
                .iter()
                .any(|e| matches!(e, PodEvent::RestartRequested(_))),
            "restarted again before the back-off"
        );
        at += Duration::minutes(5);
    }
    let given_up = given(&events).on_health(Err("no answer".into()), at, 3, backoff);
    assert!(matches!(given_up.as_slice(), [PodEvent::Failed(f)] if f.operation == "health"));
    let recovered = given(&events).on_health(Ok(()), at, 3, backoff);
    assert!(matches!(recovered.as_slice(), [PodEvent::Healthy(_)]));
}

#[test]
fn a_failed_restart_leaves_the_pod_degraded_and_its_owner_can_act_again() {
    let mut events = running();
    let restart = PodCommand::Restart(PodTarget {
        pod_id: pod_id(),
        expected_version: None,
    });
    events.extend(decide(&events, restart.clone()).unwrap());
    let pod = given(&events);
    assert_eq!(Step::next(&pod), Some(Step::Restart));
    assert!(!Step::Restart.undone_on_failure(&pod));
    events.push(degraded(Step::Restart, "engine refused", 1, false));
    let pod = given(&events);
    assert_eq!(
        (pod.status, Step::next(&pod), pod.deployed),
        (Some(PodStatus::Degraded), None, true)
    );
    assert!(pod
        .reason
        .as_deref()
        .unwrap()
        .starts_with("restart failed after 1 attempt: engine refused"));
    for accepted in [
        restart,
        PodCommand::Scale(ScalePod {
            pod_id: pod_id(),
            replicas: 1,
            expected_version: None,
        }),
        PodCommand::Delete(DeletePod {
            pod_id: pod_id(),
            keep_volume: true,
            expected_version: None,
        }),
    ] {
        assert_eq!(
            decide(&events, accepted.clone()).unwrap().len(),
            1,
            "{accepted:?}"
        );
    }
    events.push(degraded(Step::Restart, "engine busy", 8, true));
    let pod = given(&events);
    assert_eq!(
        Step::next(&pod),
        Some(Step::Restart),
        "a transient one is still retried"
    );
    events.push(PodEvent::Restarted(PodStep {}));
    let pod = given(&events);
    assert_eq!(
        (pod.status, pod.degraded),
        (Some(PodStatus::Starting), None)
    );
}

#[test]
fn only_a_first_deploy_is_undone() {
    let requested = given(&running()[..1]);
    assert!(Step::Deploy.undone_on_failure(&requested));
    let deployed = given(&running());
    for step in Step::ALL {
        assert_eq!(Step::from_operation(step.operation()), Some(step));
        assert!(!step.undone_on_failure(&deployed), "{step:?}");
    }
}

#[test]
fn deleted_pods_refuse_everything_but_remember_the_volume() {
    let mut events = running();
    events.extend(
        decide(
            &events,
            PodCommand::Delete(DeletePod {
                pod_id: pod_id(),
                keep_volume: true,
                expected_version: None,
            }),
        )
        .unwrap(),
    );
    events.push(PodEvent::Deleted(berth_schemas::pod::PodDeleted {
        volume_kept: true,
    }));
    let pod = given(&events);
    assert!(pod.keep_volume);
    let again = PodCommand::Delete(DeletePod {
        pod_id: pod_id(),
        keep_volume: false,
        expected_version: None,
    });
    assert_eq!(
        decide(&events, again).unwrap_err().code,
        RejectionCode::InvalidState
    );
}
