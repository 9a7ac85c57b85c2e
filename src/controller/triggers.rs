//! Which watch events of PredictiveScalers start a reconcile. Not every change does: the
//! operator's own status writes (and any other change that leaves the spec as it is) would
//! otherwise start the next evaluation at once, and a status that changes at every evaluation
//! (a refit's time, a hold's message) would loop. An event starts a reconcile when the scaler
//! is new, its spec changed (`metadata.generation`, which the API server raises on a spec change
//! only), it was marked for deletion (floor mode's finalizer then restores the floor), or it is
//! gone (the controller then forgets it at once). Everything else only updates the cache that
//! the next evaluation, every sync interval, reads.
//!
//! Pure: fed the watcher's events in order; no IO.

use std::collections::HashMap;

use kube::{ResourceExt, runtime::watcher::Event};

use crate::api::PredictiveScaler;

/// What of a scaler starts a reconcile when it changes: its generation, and whether it is
/// marked for deletion.
type Trigger = (Option<i64>, bool);

fn trigger_of(ps: &PredictiveScaler) -> Trigger {
    (
        ps.metadata.generation,
        ps.metadata.deletion_timestamp.is_some(),
    )
}

/// A scaler's identity: its uid (a scaler re-created under the same name is new), or its
/// namespace and name when it has none.
fn key_of(ps: &PredictiveScaler) -> String {
    ps.uid()
        .unwrap_or_else(|| format!("{}/{}", ps.namespace().unwrap_or_default(), ps.name_any()))
}

/// The trigger of every scaler seen, to tell which events change one.
#[derive(Debug, Default)]
pub(super) struct Triggers {
    seen: HashMap<String, Trigger>,
    /// While the watch lists again (after a restart): what was seen before; what is not listed
    /// again is dropped at the end of the list (the sweeper forgets those scalers).
    before_relist: HashMap<String, Trigger>,
}

impl Triggers {
    /// The scaler to reconcile for `event`, if it starts one.
    pub(super) fn admit(&mut self, event: Event<PredictiveScaler>) -> Option<PredictiveScaler> {
        match event {
            Event::Init => {
                self.before_relist = std::mem::take(&mut self.seen);
                None
            }
            Event::InitApply(ps) => {
                let key = key_of(&ps);
                let before = self.before_relist.remove(&key);
                self.changed(key, &ps, before).then_some(ps)
            }
            Event::InitDone => {
                self.before_relist.clear();
                None
            }
            Event::Apply(ps) => {
                let key = key_of(&ps);
                let before = self.seen.get(&key).copied();
                self.changed(key, &ps, before).then_some(ps)
            }
            Event::Delete(ps) => {
                self.seen.remove(&key_of(&ps));
                Some(ps)
            }
        }
    }

    /// Records `ps`'s trigger; whether it differs from `before`.
    fn changed(&mut self, key: String, ps: &PredictiveScaler, before: Option<Trigger>) -> bool {
        let now = trigger_of(ps);
        self.seen.insert(key, now);
        before != Some(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn scaler(uid: &str, generation: i64) -> PredictiveScaler {
        let mut ps: PredictiveScaler = serde_json::from_value(serde_json::json!({
            "apiVersion": "prescale.dev/v1alpha1", "kind": "PredictiveScaler",
            "metadata": {"name": "web", "namespace": "ns", "uid": uid, "generation": generation},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": 5,
                     "metrics": [{"name": "rps", "query": "q", "targetPerReplica": "10"}]}
        }))
        .expect("a scaler");
        ps.metadata.resource_version = Some("1".into());
        ps
    }

    /// The same scaler after a write that leaves the spec alone: a new resourceVersion, a
    /// status, a label.
    fn status_written(ps: &PredictiveScaler, rv: &str) -> PredictiveScaler {
        let mut ps = ps.clone();
        ps.metadata.resource_version = Some(rv.into());
        ps.metadata
            .labels
            .get_or_insert_default()
            .insert("team".into(), rv.into());
        ps.status = Some(crate::api::PredictiveScalerStatus {
            desired_replicas: Some(rv.parse().unwrap_or(0)),
            ..Default::default()
        });
        ps
    }

    fn admits(t: &mut Triggers, e: Event<PredictiveScaler>) -> bool {
        t.admit(e).is_some()
    }

    #[test]
    fn a_status_write_starts_nothing_a_spec_change_a_deletion_and_a_new_scaler_do() {
        let mut t = Triggers::default();
        let ps = scaler("u1", 1);
        assert!(!admits(&mut t, Event::Init));
        assert!(admits(&mut t, Event::InitApply(ps.clone())), "first seen");
        assert!(!admits(&mut t, Event::InitDone));
        for rv in ["2", "3", "4"] {
            assert!(
                !admits(&mut t, Event::Apply(status_written(&ps, rv))),
                "a status or label write"
            );
        }
        assert!(
            admits(&mut t, Event::Apply(scaler("u1", 2))),
            "a spec change"
        );
        assert!(!admits(&mut t, Event::Apply(scaler("u1", 2))));
        // marked for deletion (with a finalizer): starts one even were the generation kept
        let mut marked = scaler("u1", 2);
        marked.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert!(admits(&mut t, Event::Apply(marked.clone())));
        assert!(!admits(&mut t, Event::Apply(status_written(&marked, "9"))));
        assert!(admits(&mut t, Event::Delete(marked)), "gone: always");
        // re-created under the same name: new
        assert!(admits(&mut t, Event::Apply(scaler("u2", 1))));
    }

    #[test]
    fn a_relisted_scaler_starts_one_only_when_it_changed_meanwhile() {
        let mut t = Triggers::default();
        for e in [
            Event::Init,
            Event::InitApply(scaler("a", 1)),
            Event::InitApply(scaler("b", 1)),
            Event::InitApply(scaler("c", 1)),
            Event::InitDone,
        ] {
            t.admit(e);
        }
        // the watch restarts: a unchanged, b's spec edited meanwhile, c deleted meanwhile
        assert!(!admits(&mut t, Event::Init));
        assert!(!admits(
            &mut t,
            Event::InitApply(status_written(&scaler("a", 1), "7"))
        ));
        assert!(admits(&mut t, Event::InitApply(scaler("b", 2))));
        assert!(!admits(&mut t, Event::InitDone));
        assert_eq!(t.seen.len(), 2, "c is no longer remembered");
        assert!(t.before_relist.is_empty());
    }
}
