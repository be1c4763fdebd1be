//! Which `schedule.set` a fire points at.

use berth_runtime::store::Loaded;
use berth_schemas::schedule::SET_EVENT_TYPE;

use crate::schedule::Schedule;

/// The stream sequence of the `schedule.set` in force in `loaded`: the latest folded.
/// (The fold itself does not see sequences; the repository records every event's.)
pub fn spec_sequence(loaded: &Loaded<Schedule>) -> Option<u64> {
    loaded
        .applied
        .values()
        .flat_map(|applied| &applied.events)
        .filter(|event| event.event_type == SET_EVENT_TYPE)
        .map(|event| event.sequence)
        .max()
}
