//! Given → when → then tests of [`super`].

use super::*;
use berth_schemas::vm::{Empty, VmRequested};

fn at(time: &str) -> DateTime<Utc> {
    format!("2026-11-02T{time}Z").parse().unwrap()
}

fn runtime(steps: &[(&str, VmEvent)]) -> Runtime {
    let mut runtime = Runtime::default();
    runtime.observe(
        &VmEvent::Requested(VmRequested {
            name: "web".into(),
            vcpus: 2,
            memory_mb: 4096,
            disk_gb: 40,
            image: "debian-12".into(),
            plan: Some(Plan::Medium),
            region: None,
        }),
        at("09:00:00"),
    );
    for (time, event) in steps {
        runtime.observe(event, at(time));
    }
    runtime
}

#[test]
fn running_time_is_cut_into_hours_to_the_second() {
    // 10:20:00–11:45:00 and 12:00:00–14:00:00: 3 h 25 min in all, a stop in between.
    let runtime = runtime(&[
        ("10:20:00", VmEvent::Started(Empty {})),
        ("11:45:00", VmEvent::Stopped(Empty {})),
        ("12:00:00", VmEvent::Started(Empty {})),
        ("14:00:00", VmEvent::Stopped(Empty {})),
    ]);
    let hours = runtime.hours_until(at("15:00:00"));
    let seconds: Vec<(String, u32)> = hours
        .iter()
        .map(|(hour, (seconds, _))| (hour.format("%H").to_string(), *seconds))
        .collect();
    assert_eq!(
        seconds,
        vec![
            ("10".into(), 2400),
            ("11".into(), 2700),
            ("12".into(), 3600),
            ("13".into(), 3600)
        ]
    );
    assert_eq!(seconds.iter().map(|(_, s)| s).sum::<u32>(), 12_300);
    assert_eq!(hours.values().next().unwrap().1.plan, "medium");
}

#[test]
fn an_hour_is_metered_only_once_it_has_ended() {
    let runtime = runtime(&[("10:30:00", VmEvent::Started(Empty {}))]);
    let hours = runtime.hours_until(at("11:59:59"));
    assert_eq!(
        hours.len(),
        1,
        "10:00–11:00 only: 11:00–12:00 has not ended"
    );
    assert_eq!(hours.values().next().unwrap().0, 1800);
    assert_eq!(runtime.hours_until(at("12:00:00")).len(), 2);
}

#[test]
fn restarts_keep_running_and_recreates_pause_the_meter() {
    let runtime = runtime(&[
        ("10:00:00", VmEvent::Started(Empty {})),
        ("10:10:00", VmEvent::Restarted(Empty {})),
        ("10:20:00", VmEvent::RecreateRequested(Empty {})),
        (
            "10:30:00",
            VmEvent::Recreated(berth_schemas::vm::VmProvisioned {
                provider: "sim".into(),
                host: "h".into(),
                provider_ref: "r".into(),
            }),
        ),
        ("10:40:00", VmEvent::Destroyed(Empty {})),
    ]);
    let hours = runtime.hours_until(at("11:00:00"));
    assert_eq!(hours.values().next().unwrap().0, 30 * 60);
}
