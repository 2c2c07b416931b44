//! The outbox decisions: which event a resource's status and spec call for next, and how the
//! status changes when it is recorded and when the broker acknowledges it. Pure: the
//! reconciler does the I/O.
//!
//! The status holds what each topic's consumers were told: `notified` (the current topic),
//! `retired` (topics the resource left, still owed a `removed`) and `pending` (an event
//! recorded before producing, which consumers may or may not have). A pending event that is
//! no longer what the spec calls for is *absorbed*: if it announced a location on a topic
//! nothing else covers, that topic is owed a `removed` too.

use crate::event::{self, EventKind};
use crate::resource::{EdgeApplicationStatus, Location, Notified, Pending, Retired};

/// What the broker said about a produced record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// When (RFC 3339).
    pub time: String,
}

/// The spec as the outbox sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted<'a> {
    /// The topic consumers should learn the location on.
    pub topic: &'a str,
    /// The location.
    pub location: &'a Location,
    /// The resource's uid (event ids).
    pub uid: &'a str,
    /// The resource's generation.
    pub generation: i64,
}

/// The next event of a live resource, and the status to record it in (with a superseded
/// pending event absorbed); `None` when every topic's consumers know what they should.
pub fn next_for_spec(
    status: &EdgeApplicationStatus,
    wanted: &Wanted<'_>,
) -> (EdgeApplicationStatus, Option<Pending>) {
    let base = absorb(status);
    let next = announcement(&base, wanted).or_else(|| retraction(&base, wanted));
    keep_same_pending(status, base, next)
}

/// The next `removed` of a deleted resource, and the status to record it in; `None` once no
/// topic's consumers know (or may know) a location.
pub fn next_for_deletion(
    status: &EdgeApplicationStatus,
    uid: &str,
    generation: i64,
) -> (EdgeApplicationStatus, Option<Pending>) {
    let base = absorb(status);
    let target = base
        .notified
        .as_ref()
        .map(|n| (n.topic.clone(), n.location()))
        .or_else(|| {
            base.retired
                .first()
                .map(|r| (r.topic.clone(), r.location.clone()))
        });
    let next = target.map(|(topic, previous)| Pending {
        event_id: event::event_id(uid, generation, EventKind::Removed),
        kind: EventKind::Removed,
        topic,
        location: None,
        previous: Some(previous),
        generation,
    });
    keep_same_pending(status, base, next)
}

/// The status once `pending` is recorded (before producing it).
pub fn recorded(status: &EdgeApplicationStatus, pending: &Pending) -> EdgeApplicationStatus {
    EdgeApplicationStatus {
        pending: Some(pending.clone()),
        ..status.clone()
    }
}

/// The status once the broker acknowledged `event`.
pub fn acknowledged(
    status: &EdgeApplicationStatus,
    event: &Pending,
    ack: &Acked,
) -> EdgeApplicationStatus {
    let mut next = status.clone();
    next.pending = None;
    match &event.location {
        Some(location) => {
            let previous = next.notified.take();
            if let Some(old) = previous.filter(|old| old.topic != event.topic) {
                // The application left that topic: its consumers are owed a `removed`.
                retire(&mut next.retired, old.topic.clone(), old.location());
            }
            next.retired.retain(|r| r.topic != event.topic);
            next.notified = Some(Notified {
                edge_node_id: location.edge_node_id.clone(),
                endpoint: location.endpoint.clone(),
                generation: event.generation,
                event_id: event.event_id.clone(),
                topic: event.topic.clone(),
                partition: ack.partition,
                offset: ack.offset,
                time: ack.time.clone(),
            });
        }
        None => {
            if next
                .notified
                .as_ref()
                .is_some_and(|n| n.topic == event.topic)
            {
                next.notified = None;
            }
            next.retired.retain(|r| r.topic != event.topic);
        }
    }
    next
}

/// `placed` on a topic whose consumers were not told (a new resource, or a topic change),
/// else `migrated`/`endpoint-changed` when the location changed.
fn announcement(status: &EdgeApplicationStatus, wanted: &Wanted<'_>) -> Option<Pending> {
    let known = status
        .notified
        .as_ref()
        .filter(|n| n.topic == wanted.topic)
        .map(Notified::location);
    let kind = event::decide(wanted.location, known.as_ref())?;
    Some(Pending {
        event_id: event::event_id(wanted.uid, wanted.generation, kind),
        kind,
        topic: wanted.topic.to_owned(),
        location: Some(wanted.location.clone()),
        previous: known,
        generation: wanted.generation,
    })
}

/// `removed` on the first topic the resource left.
fn retraction(status: &EdgeApplicationStatus, wanted: &Wanted<'_>) -> Option<Pending> {
    let retired = status.retired.first()?;
    Some(Pending {
        event_id: event::retraction_id(wanted.uid, wanted.generation),
        kind: EventKind::Removed,
        topic: retired.topic.clone(),
        location: None,
        previous: Some(retired.location.clone()),
        generation: wanted.generation,
    })
}

/// The status without its pending event; an announcement on a topic nothing else covers is
/// kept as retired (its consumers may have it).
fn absorb(status: &EdgeApplicationStatus) -> EdgeApplicationStatus {
    let mut base = status.clone();
    let Some(pending) = base.pending.take() else {
        return base;
    };
    if let Some(location) = pending.location {
        let covered = base
            .notified
            .as_ref()
            .is_some_and(|n| n.topic == pending.topic);
        if !covered {
            retire(&mut base.retired, pending.topic, location);
        }
    }
    base
}

/// A pending event the spec still calls for is produced again as it was (same id, same
/// payload), in the status as it is; any other replaces it.
fn keep_same_pending(
    status: &EdgeApplicationStatus,
    base: EdgeApplicationStatus,
    next: Option<Pending>,
) -> (EdgeApplicationStatus, Option<Pending>) {
    match (&status.pending, next) {
        (Some(p), Some(n)) if p.event_id == n.event_id && p.topic == n.topic => {
            (status.clone(), Some(p.clone()))
        }
        (_, next) => (base, next),
    }
}

fn retire(retired: &mut Vec<Retired>, topic: String, location: Location) {
    if !retired.iter().any(|r| r.topic == topic) {
        retired.push(Retired { topic, location });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{Endpoint, Protocol};

    fn at(node: &str) -> Location {
        Location {
            edge_node_id: node.into(),
            endpoint: Endpoint {
                host: format!("{node}.example"),
                port: 2000,
                protocol: Protocol::Tcp,
            },
        }
    }

    fn ack(offset: i64) -> Acked {
        Acked {
            partition: 0,
            offset,
            time: "2026-12-08T00:00:00Z".into(),
        }
    }

    fn wanted<'a>(topic: &'a str, location: &'a Location, generation: i64) -> Wanted<'a> {
        Wanted {
            topic,
            location,
            uid: "u",
            generation,
        }
    }

    /// Runs the spec's events to the end, returning them and the final status.
    fn settle(
        mut status: EdgeApplicationStatus,
        w: &Wanted<'_>,
    ) -> (Vec<Pending>, EdgeApplicationStatus) {
        let mut events = Vec::new();
        while let (base, Some(p)) = next_for_spec(&status, w) {
            status = acknowledged(&recorded(&base, &p), &p, &ack(events.len() as i64));
            events.push(p);
            assert!(events.len() < 10, "no end: {events:?}");
        }
        (events, status)
    }

    #[test]
    fn a_new_resource_is_placed_then_nothing() {
        let a = at("a");
        let (events, status) = settle(EdgeApplicationStatus::default(), &wanted("t1", &a, 1));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Placed);
        assert_eq!(events[0].event_id, "u.1.placed");
        assert_eq!(status.notified.unwrap().topic, "t1");
        assert_eq!(status.pending, None);
    }

    #[test]
    fn a_topic_change_places_on_the_new_topic_then_removes_from_the_old() {
        let a = at("a");
        let (_, status) = settle(EdgeApplicationStatus::default(), &wanted("t1", &a, 1));
        let (events, status) = settle(status, &wanted("t2", &a, 2));
        let summary: Vec<_> = events
            .iter()
            .map(|e| (e.kind, e.topic.as_str(), e.event_id.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (EventKind::Placed, "t2", "u.2.placed"),
                (EventKind::Removed, "t1", "u.2.removed")
            ]
        );
        assert_eq!(events[1].previous, Some(a.clone()));
        assert!(status.retired.is_empty());
        assert_eq!(status.notified.unwrap().topic, "t2");
    }

    #[test]
    fn a_pending_event_still_wanted_is_produced_again_unchanged() {
        let (a, b) = (at("a"), at("b"));
        let (_, status) = settle(EdgeApplicationStatus::default(), &wanted("t1", &a, 1));
        let (base, p) = next_for_spec(&status, &wanted("t1", &b, 2));
        let p = p.unwrap();
        let crashed = recorded(&base, &p);
        let (again_base, again) = next_for_spec(&crashed, &wanted("t1", &b, 2));
        assert_eq!(again, Some(p));
        assert_eq!(again_base, crashed);
    }

    #[test]
    fn a_superseded_migration_on_the_same_topic_leaves_nothing_to_retract() {
        let (a, b, c) = (at("a"), at("b"), at("c"));
        let (_, status) = settle(EdgeApplicationStatus::default(), &wanted("t1", &a, 1));
        let (base, p) = next_for_spec(&status, &wanted("t1", &b, 2));
        let failed = recorded(&base, &p.unwrap());
        let (events, status) = settle(failed, &wanted("t1", &c, 3));
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, EventKind::Migrated);
        assert_eq!(events[0].previous, Some(a));
        assert!(status.retired.is_empty());
    }

    #[test]
    fn deletion_retracts_a_placement_that_was_maybe_delivered() {
        let a = at("a");
        let (base, p) = next_for_spec(&EdgeApplicationStatus::default(), &wanted("t1", &a, 1));
        // Acknowledged, then the operator died before recording it.
        let crashed = recorded(&base, &p.unwrap());
        let (base, removal) = next_for_deletion(&crashed, "u", 1);
        let removal = removal.expect("a removal");
        assert_eq!(removal.kind, EventKind::Removed);
        assert_eq!(removal.topic, "t1");
        assert_eq!(removal.event_id, "u.removed");
        assert_eq!(removal.previous, Some(a));
        let done = acknowledged(&recorded(&base, &removal), &removal, &ack(1));
        assert_eq!(next_for_deletion(&done, "u", 1).1, None);
    }

    #[test]
    fn deletion_retracts_every_topic_consumers_may_know() {
        let a = at("a");
        let (_, status) = settle(EdgeApplicationStatus::default(), &wanted("t1", &a, 1));
        // The placement on t2 is acknowledged; the operator dies before retracting t1.
        let (base, p) = next_for_spec(&status, &wanted("t2", &a, 2));
        let p = p.unwrap();
        let mut status = acknowledged(&recorded(&base, &p), &p, &ack(1));
        let mut topics = Vec::new();
        while let (base, Some(r)) = next_for_deletion(&status, "u", 2) {
            topics.push(r.topic.clone());
            status = acknowledged(&recorded(&base, &r), &r, &ack(2));
            assert!(topics.len() < 5);
        }
        assert_eq!(topics, ["t2", "t1"]);
    }

    #[test]
    fn nothing_announced_means_nothing_to_retract() {
        assert_eq!(
            next_for_deletion(&EdgeApplicationStatus::default(), "u", 1).1,
            None
        );
    }

    #[test]
    fn returning_to_a_retired_topic_clears_its_debt() {
        let a = at("a");
        let (_, status) = settle(EdgeApplicationStatus::default(), &wanted("t1", &a, 1));
        let (base, p) = next_for_spec(&status, &wanted("t2", &a, 2));
        let p = p.unwrap();
        let moved = acknowledged(&recorded(&base, &p), &p, &ack(1));
        assert_eq!(moved.retired.len(), 1);
        // Back to t1 before the retraction: placed on t1 again; t2 now owes a removal.
        let (events, status) = settle(moved, &wanted("t1", &a, 3));
        let summary: Vec<_> = events.iter().map(|e| (e.kind, e.topic.as_str())).collect();
        assert_eq!(
            summary,
            [(EventKind::Placed, "t1"), (EventKind::Removed, "t2")]
        );
        assert!(status.retired.is_empty());
    }
}
