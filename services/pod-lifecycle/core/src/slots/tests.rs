//! Given → when → then tests of [`super`].

use super::*;

use berth_schemas::pod::{PodDeleted, PodEvent};

fn context() -> Context {
    Context::at(chrono::Utc::now())
}

fn fold(slots: &mut PodSlots, events: Vec<PodSlotEvent>) {
    for event in &events {
        slots.apply(event);
    }
}

fn hold(pod_id: Uuid, cap: usize, deleted: &[Uuid]) -> Hold {
    Hold {
        pod_id,
        cap,
        deleted: deleted.iter().copied().collect(),
    }
}

/// A tenant holding `n` slots.
fn holding(n: usize) -> (PodSlots, Vec<Uuid>) {
    let mut slots = PodSlots::default();
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    for id in &ids {
        let events = slots.decide(&hold(*id, n, &[]), &context()).unwrap();
        fold(&mut slots, events);
    }
    (slots, ids)
}

#[test]
fn below_the_cap_a_create_holds_a_slot_without_looking_at_pods() {
    let (slots, _) = holding(2);
    let pod_id = Uuid::now_v7();
    assert!(slots.to_check(pod_id, 3).is_empty(), "nothing to load");
    assert_eq!(
        slots.decide(&hold(pod_id, 3, &[]), &context()).unwrap(),
        vec![PodSlotEvent::Held(PodSlotHeld { pod_id })]
    );
}

#[test]
fn holding_what_is_held_is_no_event() {
    let (slots, ids) = holding(3);
    assert!(slots.to_check(ids[0], 3).is_empty());
    assert!(slots
        .decide(&hold(ids[0], 3, &[]), &context())
        .unwrap()
        .is_empty());
}

#[test]
fn at_the_cap_with_every_pod_live_the_create_is_refused() {
    let (slots, ids) = holding(3);
    let pod_id = Uuid::now_v7();
    let mut everyone = ids.clone();
    everyone.sort();
    assert_eq!(slots.to_check(pod_id, 3), everyone, "every held pod");
    let refused = slots.decide(&hold(pod_id, 3, &[]), &context()).unwrap_err();
    assert_eq!(refused.code, RejectionCode::QuotaExceeded);
    assert!(
        refused.message.contains("3 pods") && refused.message.contains("(3)"),
        "{refused}"
    );
    // Deleted ids that hold no slot free nothing.
    let stranger = Uuid::now_v7();
    assert!(slots
        .decide(&hold(pod_id, 3, &[stranger]), &context())
        .is_err());
}

#[test]
fn at_the_cap_deleted_pods_are_released_lazily_in_the_same_decision() {
    let (mut slots, ids) = holding(4);
    let pod_id = Uuid::now_v7();
    let events = slots
        .decide(&hold(pod_id, 4, &[ids[3], ids[1]]), &context())
        .unwrap();
    let mut dead = vec![ids[1], ids[3]];
    dead.sort();
    assert_eq!(
        events,
        vec![
            PodSlotEvent::Released(PodSlotsReleased { pod_ids: dead }),
            PodSlotEvent::Held(PodSlotHeld { pod_id }),
        ]
    );
    fold(&mut slots, events);
    assert_eq!(slots.held(), 3, "two released, one held");
    // One slot is left, without looking at pods again.
    let next = Uuid::now_v7();
    assert!(slots.to_check(next, 4).is_empty());
    let events = slots.decide(&hold(next, 4, &[]), &context()).unwrap();
    fold(&mut slots, events);
    assert!(slots
        .decide(&hold(Uuid::now_v7(), 4, &[]), &context())
        .is_err());
}

#[test]
fn a_lowered_cap_counts_live_pods_not_held_slots() {
    let (slots, ids) = holding(5);
    // Cap 3, two of five deleted: three live, still full.
    let refused = slots
        .decide(&hold(Uuid::now_v7(), 3, &[ids[0], ids[1]]), &context())
        .unwrap_err();
    assert!(refused.message.contains("3 pods"), "{refused}");
    // Three deleted: two live, room for one.
    let events = slots
        .decide(
            &hold(Uuid::now_v7(), 3, &[ids[0], ids[1], ids[2]]),
            &context(),
        )
        .unwrap();
    assert_eq!(events.len(), 2);
}

#[test]
fn only_a_deleted_pod_frees_its_slot() {
    use berth_schemas::pod::{PodDeleteRequested, PodStep};
    let mut pod = Pod::default();
    assert!(!occupies_slot(&pod), "no pod");
    pod.status = Some(PodStatus::Requested);
    assert!(occupies_slot(&pod));
    for status in [
        PodStatus::Running,
        PodStatus::Stopped,
        PodStatus::Expired,
        PodStatus::Failed,
        PodStatus::Degraded,
    ] {
        pod.status = Some(status);
        assert!(occupies_slot(&pod), "{status}");
    }
    pod.apply(&PodEvent::Healthy(PodStep {}));
    pod.apply(&PodEvent::DeleteRequested(PodDeleteRequested {
        keep_volume: true,
        reason: None,
    }));
    assert!(occupies_slot(&pod), "deleting is not deleted");
    pod.apply(&PodEvent::Deleted(PodDeleted { volume_kept: true }));
    assert!(!occupies_slot(&pod));
}
