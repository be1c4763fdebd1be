//! Given → when → then tests of [`super`].

use super::*;

use berth_schemas::vm::{VmPlaced, VmTarget};

fn context() -> Context {
    Context::at(chrono::Utc::now())
}

fn create(start: bool) -> VmCommand {
    VmCommand::Create(CreateVm {
        start,
        ..CreateVm::with_size("web", 1, 512, 10, "debian-12")
    })
}

fn target() -> VmTarget {
    VmTarget {
        vm_id: Uuid::now_v7(),
        expected_version: None,
    }
}

/// given events → when command → then events or rejection.
fn given(events: &[VmEvent]) -> Vm {
    let mut vm = Vm::default();
    for event in events {
        vm.apply(event);
    }
    vm
}

fn running() -> Vec<VmEvent> {
    let mut events = created(&match create(true) {
        VmCommand::Create(c) => c,
        _ => unreachable!(),
    })
    .unwrap();
    events.push(VmEvent::Placed(VmPlaced {
        provider: "sim".into(),
        server_id: Uuid::now_v7(),
        host: "sim-1".into(),
    }));
    events.push(provisioned("sim", "sim-1".into(), "berth-vm-x".into()));
    events.push(VmEvent::Started(Empty {}));
    events
}

#[test]
fn create_with_start_decides_two_events() {
    let events = Vm::default().decide(&create(true), &context()).unwrap();
    assert_eq!(events.len(), 2);
    assert!(matches!(events[1], VmEvent::StartRequested(_)));
    assert_eq!(
        Vm::default()
            .decide(&create(false), &context())
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_created_vm_walks_to_running() {
    let vm = given(&running());
    assert_eq!(vm.status, Some(VmStatus::Running));
    assert_eq!(vm.host.as_deref(), Some("sim-1"));
    assert_eq!(Step::next(&vm), None);
}

#[test]
fn provisioned_without_start_is_stopped() {
    let vm = given(&[
        created(&match create(false) {
            VmCommand::Create(c) => c,
            _ => unreachable!(),
        })
        .unwrap()[0]
            .clone(),
        provisioned("sim", "sim-1".into(), "r".into()),
    ]);
    assert_eq!(vm.status, Some(VmStatus::Stopped));
}

#[test]
fn commands_on_a_missing_vm_are_not_found() {
    let rejection = Vm::default()
        .decide(&VmCommand::Start(target()), &context())
        .unwrap_err();
    assert_eq!(rejection.code, RejectionCode::NotFound);
}

#[test]
fn illegal_transitions_are_invalid_state_with_the_current_state() {
    let vm = given(&running());
    let rejection = vm
        .decide(&VmCommand::Start(target()), &context())
        .unwrap_err();
    assert_eq!(rejection.code, RejectionCode::InvalidState);
    assert!(
        rejection.message.contains("running"),
        "{}",
        rejection.message
    );
    assert_eq!(
        vm.decide(&create(true), &context()).unwrap_err().code,
        RejectionCode::Conflict
    );
}

#[test]
fn stop_then_start_then_destroy() {
    let mut events = running();
    let vm = given(&events);
    let stop = vm.decide(&VmCommand::Stop(target()), &context()).unwrap();
    events.extend(stop);
    events.push(VmEvent::Stopped(Empty {}));
    let vm = given(&events);
    assert_eq!(vm.status, Some(VmStatus::Stopped));
    assert!(!vm.desired_running);
    assert_eq!(
        vm.decide(&VmCommand::Restart(target()), &context())
            .unwrap_err()
            .code,
        RejectionCode::InvalidState
    );
    let start = vm.decide(&VmCommand::Start(target()), &context()).unwrap();
    events.extend(start);
    assert_eq!(given(&events).status, Some(VmStatus::Starting));
    events.extend(
        given(&events)
            .decide(&VmCommand::Destroy(target()), &context())
            .unwrap(),
    );
    let vm = given(&events);
    assert_eq!(Step::next(&vm), Some(Step::Destroy));
    events.push(VmEvent::Destroyed(Empty {}));
    let vm = given(&events);
    assert_eq!(
        vm.decide(&VmCommand::Destroy(target()), &context())
            .unwrap_err()
            .code,
        RejectionCode::InvalidState
    );
}

#[test]
fn recreate_comes_back_running_on_a_fresh_machine() {
    let mut events = running();
    let vm = given(&events);
    events.extend(
        vm.decide(&VmCommand::Recreate(target()), &context())
            .unwrap(),
    );
    let vm = given(&events);
    assert_eq!(vm.status, Some(VmStatus::Recreating));
    assert_eq!(Step::next(&vm), Some(Step::Recreate));
    events.push(VmEvent::Recreated(VmProvisioned {
        provider: "sim".into(),
        host: "sim-2".into(),
        provider_ref: "r".into(),
    }));
    let vm = given(&events);
    assert_eq!(
        (vm.status, vm.host.as_deref()),
        (Some(VmStatus::Running), Some("sim-2"))
    );
    events.push(failed(Step::Start, "x"));
    let rejection = given(&events)
        .decide(&VmCommand::Recreate(target()), &context())
        .unwrap_err();
    assert_eq!(rejection.code, RejectionCode::InvalidState);
}

#[test]
fn only_stopped_vms_resize_and_disks_only_grow() {
    use berth_schemas::vm::{Plan, ResizeVm};
    let resize = |plan: Option<Plan>, disk_gb: Option<u32>| {
        VmCommand::Resize(ResizeVm {
            vm_id: Uuid::now_v7(),
            expected_version: None,
            plan,
            vcpus: disk_gb.map(|_| 2),
            memory_mb: disk_gb.map(|_| 2048),
            disk_gb,
        })
    };
    let mut events = running();
    assert_eq!(
        given(&events)
            .decide(&resize(Some(Plan::Medium), None), &context())
            .unwrap_err()
            .code,
        RejectionCode::InvalidState
    );
    events.push(VmEvent::StopRequested(Empty {}));
    events.push(VmEvent::Stopped(Empty {}));
    let vm = given(&events);
    assert_eq!(
        vm.decide(&resize(None, Some(5)), &context())
            .unwrap_err()
            .code,
        RejectionCode::Invalid
    );
    events.extend(
        vm.decide(&resize(Some(Plan::Medium), None), &context())
            .unwrap(),
    );
    let vm = given(&events);
    assert_eq!(
        (vm.status, Step::next(&vm)),
        (Some(VmStatus::Resizing), Some(Step::Resize))
    );
    assert_eq!(
        vm.spec.as_ref().map(|s| (s.vcpus, s.memory_mb, s.disk_gb)),
        Some((2, 4096, 40))
    );
    events.push(VmEvent::Resized(Empty {}));
    assert_eq!(given(&events).status, Some(VmStatus::Stopped));
}

fn target_of(vm_id: Uuid) -> VmTarget {
    VmTarget {
        vm_id,
        expected_version: None,
    }
}

#[test]
fn a_failed_stop_leaves_the_vm_degraded_and_retry_asks_for_the_stop_again() {
    let mut events = running();
    events.extend(
        given(&events)
            .decide(&VmCommand::Stop(target()), &context())
            .unwrap(),
    );
    events.push(degraded(Step::Stop, "hypervisor refused", 1, false));
    let vm = given(&events);
    assert_eq!(vm.status, Some(VmStatus::Degraded));
    assert_eq!(
        vm.reason.as_deref(),
        Some("stop failed after 1 attempt: hypervisor refused; the vm is left as it is (retry, start, stop or destroy it)")
    );
    assert_eq!(Step::next(&vm), None, "it waits for someone");
    assert_eq!(
        vm.host.as_deref(),
        Some("sim-1"),
        "the machine is still its"
    );
    for refused in [
        VmCommand::Restart(target()),
        VmCommand::Recreate(target()),
        create(true),
    ] {
        assert!(vm.decide(&refused, &context()).is_err(), "{refused:?}");
    }
    for accepted in [
        VmCommand::Start(target()),
        VmCommand::Stop(target()),
        VmCommand::Destroy(target()),
    ] {
        assert!(vm.decide(&accepted, &context()).is_ok(), "{accepted:?}");
    }
    let retry = vm
        .decide(&VmCommand::Retry(target_of(Uuid::nil())), &context())
        .unwrap();
    assert_eq!(
        retry,
        vec![VmEvent::RetryRequested(VmRetryRequested {
            step: "stop".into()
        })]
    );
    events.extend(retry);
    let vm = given(&events);
    assert_eq!(
        (
            vm.status,
            Step::next(&vm),
            vm.reason.as_deref(),
            &vm.degraded
        ),
        (Some(VmStatus::Stopping), Some(Step::Stop), None, &None)
    );
    events.push(VmEvent::Stopped(Empty {}));
    assert_eq!(given(&events).status, Some(VmStatus::Stopped));
    assert_eq!(
        given(&events)
            .decide(&VmCommand::Retry(target()), &context())
            .unwrap_err()
            .code,
        RejectionCode::InvalidState,
        "only a degraded vm retries"
    );
}

#[test]
fn a_transient_failure_keeps_its_step_going_while_degraded() {
    let mut events = running();
    events.push(VmEvent::RestartRequested(Empty {}));
    events.push(degraded(Step::Restart, "host busy", 8, true));
    let vm = given(&events);
    assert_eq!(vm.status, Some(VmStatus::Degraded));
    assert_eq!(Step::next(&vm), Some(Step::Restart), "still retried");
    assert!(vm.reason.as_deref().unwrap().contains("still retrying"));
    events.push(VmEvent::Restarted(Empty {}));
    let vm = given(&events);
    assert_eq!(
        (vm.status, vm.reason, vm.degraded),
        (Some(VmStatus::Running), None, None)
    );
}

#[test]
fn a_degraded_vm_starts_from_where_it_is() {
    let mut events = running();
    events.push(VmEvent::StopRequested(Empty {}));
    events.push(degraded(Step::Stop, "x", 2, false));
    events.extend(
        given(&events)
            .decide(&VmCommand::Start(target()), &context())
            .unwrap(),
    );
    let vm = given(&events);
    assert_eq!(
        (vm.status, vm.desired_running, Step::next(&vm)),
        (Some(VmStatus::Starting), true, Some(Step::Start))
    );
}

#[test]
fn only_half_made_machines_are_undone_and_every_step_has_a_name() {
    for step in Step::ALL {
        assert_eq!(Step::from_operation(step.operation()), Some(step));
        let undone = matches!(step, Step::Place | Step::Provision | Step::Recreate);
        assert_eq!(step.undone_on_failure(), undone, "{step:?}");
    }
    assert_eq!(Step::from_operation("explode"), None);
}

#[test]
fn failures_keep_their_reason() {
    let mut events = running();
    events.push(failed(Step::Restart, "host unreachable"));
    let vm = given(&events);
    assert_eq!(vm.status, Some(VmStatus::Failed));
    assert_eq!(
        vm.reason.as_deref(),
        Some("restart failed: host unreachable")
    );
    assert!(vm.decide(&VmCommand::Destroy(target()), &context()).is_ok());
}
