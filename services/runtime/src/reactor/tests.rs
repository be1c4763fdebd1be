//! Given → when → then tests of [`super`].

use super::*;

#[test]
fn transient_failures_of_a_patient_reactor_are_handed_over_never_dead_lettered() {
    let transient = ReactError::transient_because("host_busy", "host busy");
    let permanent = ReactError::permanent_because("bad_image", "bad image");
    let live = Origin::Live;
    let retried = Origin::Retried;
    assert_eq!(next_after(&transient, false, live, 2, 8), Next::Retry);
    assert_eq!(next_after(&transient, false, live, 8, 8), Next::DeadLetter);
    assert_eq!(next_after(&transient, true, live, 7, 8), Next::Retry);
    assert_eq!(next_after(&transient, true, live, 8, 8), Next::HandOver);
    assert_eq!(next_after(&transient, true, retried, 500, 8), Next::Retry);
    assert_eq!(next_after(&permanent, true, live, 1, 8), Next::DeadLetter);
    assert_eq!(
        next_after(&permanent, true, retried, 1, 8),
        Next::DeadLetter
    );
}

#[test]
fn ongoing_failures_are_recorded_at_doubling_milestones() {
    let recorded: Vec<i64> = (1..=100).filter(|n| worth_recording(*n, 8)).collect();
    assert_eq!(recorded, vec![8, 16, 32, 64]);
    assert!(!worth_recording(5, 0));
}

#[tokio::test]
async fn calls_get_the_deadline_of_the_reaction_they_are_made_in() {
    assert_eq!(call_deadline(), DEFAULT_CALL_DEADLINE);
    let ack_wait = Duration::from_secs(2);
    let inside = CALL_DEADLINE.scope(call_deadline_for(ack_wait), async {
        let deadline = call_deadline();
        let hung = within_deadline(std::future::pending::<()>()).await;
        (deadline, hung)
    });
    tokio::time::pause();
    let (deadline, hung) = inside.await;
    assert!(deadline < ack_wait, "{deadline:?}");
    assert_eq!(hung, Err(deadline));
}

#[test]
fn backoff_grows_and_is_capped() {
    let base = Duration::from_millis(100);
    let max = Duration::from_secs(5);
    assert!(backoff(1, base, max) <= Duration::from_millis(125));
    assert!(backoff(4, base, max) >= Duration::from_millis(600));
    assert!(backoff(40, base, max) <= Duration::from_millis(6250));
}
