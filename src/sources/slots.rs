//! The query slots of one source (`maxConcurrentQueries`), shared fairly among the namespaces
//! whose scalers query it, so that one tenant's slow queries cannot starve another's reads.
//!
//! The rule: while a slot is free a request takes it at once. When none is, the request waits
//! in its namespace's queue, and each slot that frees goes to the namespace holding the fewest
//! slots, among those waiting; between namespaces holding as many, to the one served longest
//! ago; within a namespace, first come first served. So a namespace with many slow queries
//! queued never holds another's request back behind them: that one gets the next slot that
//! frees, at most one query's duration (a request holds its slot for at most the source's
//! timeout) after it asked.
//!
//! Who asks is the namespace of the scaler a request is made for: [`for_namespace`] wraps a
//! source so that its requests carry it (a task-local, read by [`QuerySlots::acquire`]'s
//! callers through [`current_namespace`]); requests made for no scaler (the operator's own
//! tools) share the namespace `""`. No IO.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
};

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::{GroupSeries, GroupWindow, MetricsSource, SourceError};

tokio::task_local! {
    /// The namespace the current request is made for (see [`for_namespace`]).
    static NAMESPACE: Arc<str>;
}

/// The namespace the running request is made for; `""` outside [`for_namespace`].
pub fn current_namespace() -> Arc<str> {
    NAMESPACE
        .try_with(Arc::clone)
        .unwrap_or_else(|_| Arc::from(""))
}

/// `source` as the scalers of `namespace` use it: each of its requests counts against that
/// namespace's share of the source's query slots.
pub fn for_namespace(source: Arc<dyn MetricsSource>, namespace: &str) -> Arc<dyn MetricsSource> {
    Arc::new(ForNamespace {
        source,
        namespace: Arc::from(namespace),
    })
}

struct ForNamespace {
    source: Arc<dyn MetricsSource>,
    namespace: Arc<str>,
}

impl MetricsSource for ForNamespace {
    fn range<'a>(
        &'a self,
        query: &'a str,
        start: i64,
        end: i64,
        step: i64,
    ) -> BoxFuture<'a, Result<Vec<(i64, f64)>, SourceError>> {
        Box::pin(NAMESPACE.scope(
            self.namespace.clone(),
            self.source.range(query, start, end, step),
        ))
    }

    fn range_grouped<'a>(
        &'a self,
        query: &'a str,
        labels: &'a [String],
        window: GroupWindow,
    ) -> BoxFuture<'a, Result<Vec<GroupSeries>, SourceError>> {
        Box::pin(NAMESPACE.scope(
            self.namespace.clone(),
            self.source.range_grouped(query, labels, window),
        ))
    }

    fn requests(&self) -> Option<u64> {
        self.source.requests()
    }

    fn instant_by_label<'a>(
        &'a self,
        query: &'a str,
        label: &'a str,
        at: i64,
        max_series: usize,
    ) -> BoxFuture<'a, Result<Vec<(String, f64)>, SourceError>> {
        Box::pin(NAMESPACE.scope(
            self.namespace.clone(),
            self.source.instant_by_label(query, label, at, max_series),
        ))
    }
}

/// `capacity` query slots, granted fairly among namespaces (the module's rule).
#[derive(Debug)]
pub struct QuerySlots {
    capacity: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Slots held, in all and by namespace (namespaces holding none are left out).
    total: usize,
    held: HashMap<Arc<str>, usize>,
    /// The requests waiting, by namespace, oldest first (namespaces with none are left out).
    waiting: HashMap<Arc<str>, VecDeque<Waiter>>,
    /// When each namespace was last granted a slot (a counter of grants).
    served: HashMap<Arc<str>, u64>,
    grants: u64,
    next_waiter: u64,
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    grant: oneshot::Sender<SlotPermit>,
}

/// A queued request lost its place without a slot (not expected: see [`QuerySlots::acquire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

/// One slot, held until dropped.
#[derive(Debug)]
pub struct SlotPermit {
    slots: Arc<QuerySlots>,
    namespace: Arc<str>,
}

impl Drop for SlotPermit {
    fn drop(&mut self) {
        let next = {
            let mut st = self.slots.lock();
            st.release(&self.namespace);
            st.next_waiter_to_serve(&self.slots)
        };
        // outside the lock: a waiter that gave up meanwhile drops the permit, which frees the
        // slot again for the next one
        if let Some((grant, permit)) = next {
            let _ = grant.send(permit);
        }
    }
}

impl QuerySlots {
    /// `capacity` slots (at least 1).
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            capacity: capacity.max(1),
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot for a request of `namespace`: at once while one is free, else when the module's
    /// rule gives it one. Dropping the future gives up the place in the queue.
    pub async fn acquire(self: &Arc<Self>, namespace: Arc<str>) -> Result<SlotPermit, Closed> {
        let (id, granted) = {
            let mut st = self.lock();
            if st.total < self.capacity {
                st.grant(&namespace);
                return Ok(SlotPermit {
                    slots: self.clone(),
                    namespace,
                });
            }
            let (tx, rx) = oneshot::channel();
            st.next_waiter += 1;
            let id = st.next_waiter;
            st.waiting
                .entry(namespace.clone())
                .or_default()
                .push_back(Waiter { id, grant: tx });
            (id, rx)
        };
        let mut queued = Queued {
            slots: self,
            namespace: &namespace,
            id,
            done: false,
        };
        let permit = granted.await;
        queued.done = true;
        // the sender stays in the queue until a slot is sent through it, and only this
        // request's own `Queued` takes it out unsent: the channel does not close empty
        permit.map_err(|_| Closed)
    }

    /// Slots held now by `namespace` (for tests and the debug log).
    pub fn held_by(&self, namespace: &str) -> usize {
        self.lock().held.get(namespace).copied().unwrap_or(0)
    }

    /// Requests waiting now, all namespaces together.
    pub fn waiting(&self) -> usize {
        self.lock().waiting.values().map(VecDeque::len).sum()
    }

    /// The most slots in flight at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// A request's place in its namespace's queue: taken out when the request gives up waiting.
struct Queued<'a> {
    slots: &'a Arc<QuerySlots>,
    namespace: &'a Arc<str>,
    id: u64,
    done: bool,
}

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut st = self.slots.lock();
        if let Some(q) = st.waiting.get_mut(self.namespace) {
            q.retain(|w| w.id != self.id);
            if q.is_empty() {
                st.waiting.remove(self.namespace);
            }
        }
    }
}

impl State {
    fn grant(&mut self, namespace: &Arc<str>) {
        self.total += 1;
        *self.held.entry(namespace.clone()).or_default() += 1;
        self.grants += 1;
        self.served.insert(namespace.clone(), self.grants);
    }

    fn release(&mut self, namespace: &Arc<str>) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.held.get_mut(namespace) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.held.remove(namespace);
            }
        }
    }

    /// The namespace whose request gets the next free slot: the fewest slots held, then
    /// served longest ago (never, first), then waiting longest.
    fn next_namespace(&self) -> Option<Arc<str>> {
        self.waiting
            .iter()
            .min_by_key(|(ns, queue)| {
                (
                    self.held.get(*ns).copied().unwrap_or(0),
                    self.served.get(*ns).copied().unwrap_or(0),
                    queue.front().map_or(u64::MAX, |w| w.id),
                )
            })
            .map(|(ns, _)| ns.clone())
    }

    /// When a slot is free and someone waits: the slot granted to the next waiter, with the
    /// channel to hand it over.
    fn next_waiter_to_serve(
        &mut self,
        slots: &Arc<QuerySlots>,
    ) -> Option<(oneshot::Sender<SlotPermit>, SlotPermit)> {
        if self.total >= slots.capacity {
            return None;
        }
        let namespace = self.next_namespace()?;
        let queue = self.waiting.get_mut(&namespace)?;
        let waiter = queue.pop_front()?;
        if queue.is_empty() {
            self.waiting.remove(&namespace);
        }
        self.grant(&namespace);
        Some((
            waiter.grant,
            SlotPermit {
                slots: slots.clone(),
                namespace,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures::FutureExt;

    use super::*;

    fn ns(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    /// Starts `n` requests of `namespace` that wait for a slot; each sends its namespace when
    /// it gets one and keeps the slot until told to let go.
    fn queue(
        slots: &Arc<QuerySlots>,
        namespace: &str,
        n: usize,
        got: &tokio::sync::mpsc::UnboundedSender<(String, oneshot::Sender<()>)>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        (0..n)
            .map(|_| {
                let (slots, got, namespace) = (slots.clone(), got.clone(), namespace.to_string());
                tokio::spawn(async move {
                    let permit = slots.acquire(ns(&namespace)).await.unwrap();
                    let (done, wait) = oneshot::channel();
                    let _ = got.send((namespace, done));
                    let _ = wait.await;
                    drop(permit);
                })
            })
            .collect()
    }

    /// Lets every spawned task run until it waits again.
    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_free_slot_is_taken_at_once_and_the_capacity_is_never_passed() {
        let slots = QuerySlots::new(2);
        let a = slots
            .acquire(ns("a"))
            .now_or_never()
            .expect("free")
            .unwrap();
        let b = slots
            .acquire(ns("a"))
            .now_or_never()
            .expect("free")
            .unwrap();
        assert_eq!(slots.held_by("a"), 2);
        assert!(slots.acquire(ns("b")).now_or_never().is_none(), "all held");
        assert_eq!(slots.waiting(), 0, "a dropped wait leaves no place behind");
        drop(a);
        let c = slots
            .acquire(ns("b"))
            .now_or_never()
            .expect("one freed")
            .unwrap();
        assert_eq!((slots.held_by("a"), slots.held_by("b")), (1, 1));
        drop((b, c));
        assert_eq!((slots.held_by("a"), slots.held_by("b")), (0, 0));
    }

    #[tokio::test]
    async fn another_namespace_is_served_before_the_queue_of_a_busy_one() {
        let slots = QuerySlots::new(1);
        let (got, mut grants) = tokio::sync::mpsc::unbounded_channel();
        // team-a holds the only slot and queues ten more requests, then team-b asks once
        let mut tasks = queue(&slots, "team-a", 1, &got);
        settle().await;
        tasks.extend(queue(&slots, "team-a", 10, &got));
        settle().await;
        tasks.extend(queue(&slots, "team-b", 1, &got));
        settle().await;
        assert_eq!(slots.waiting(), 11);
        let mut order = Vec::new();
        for _ in 0..12 {
            let (namespace, done) = grants.recv().await.expect("a grant");
            order.push(namespace);
            let _ = done.send(());
            settle().await;
        }
        assert_eq!(order[0], "team-a", "the first one held the slot");
        assert_eq!(
            order[1], "team-b",
            "team-b's one request goes before team-a's ten queued: {order:?}"
        );
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!((slots.held_by("team-a"), slots.waiting()), (0, 0));
    }

    #[tokio::test]
    async fn slots_go_round_robin_between_busy_namespaces() {
        let slots = QuerySlots::new(2);
        let (got, mut grants) = tokio::sync::mpsc::unbounded_channel();
        let mut tasks = queue(&slots, "a", 2, &got);
        settle().await;
        tasks.extend(queue(&slots, "a", 4, &got));
        settle().await;
        tasks.extend(queue(&slots, "b", 4, &got));
        settle().await;
        tasks.extend(queue(&slots, "c", 2, &got));
        settle().await;
        let mut held: Vec<(String, oneshot::Sender<()>)> = Vec::new();
        for _ in 0..2 {
            held.push(grants.recv().await.unwrap());
        }
        let mut order = Vec::new();
        // free the oldest slot each time: the next grant is the namespace holding fewest
        while !held.is_empty() {
            let (_, done) = held.remove(0);
            let _ = done.send(());
            settle().await;
            if let Ok((namespace, done)) = grants.try_recv() {
                order.push(namespace.clone());
                held.push((namespace, done));
            }
        }
        assert_eq!(
            order,
            ["b", "c", "a", "b", "c", "a", "b", "a", "b", "a"],
            "b and c, holding none, before a's backlog; then turns"
        );
        for t in tasks {
            t.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_request_that_gives_up_waiting_leaves_the_queue_and_loses_no_slot() {
        let slots = QuerySlots::new(1);
        let first = slots.acquire(ns("a")).await.unwrap();
        let gave_up = tokio::time::timeout(Duration::from_millis(20), slots.acquire(ns("b"))).await;
        assert!(gave_up.is_err());
        assert_eq!(slots.waiting(), 0);
        drop(first);
        let again = slots.acquire(ns("b")).now_or_never();
        assert!(again.is_some(), "the slot is free again");
    }

    #[tokio::test]
    async fn requests_carry_the_namespace_of_their_scaler() {
        struct Who;
        impl MetricsSource for Who {
            fn range<'a>(
                &'a self,
                _: &'a str,
                _: i64,
                _: i64,
                _: i64,
            ) -> BoxFuture<'a, Result<Vec<(i64, f64)>, SourceError>> {
                Box::pin(async { Ok(vec![(current_namespace().len() as i64, 0.0)]) })
            }
        }
        let plain: Arc<dyn MetricsSource> = Arc::new(Who);
        let team = for_namespace(plain.clone(), "team-a");
        assert_eq!(team.range("q", 0, 0, 1).await.unwrap()[0].0, 6);
        assert_eq!(plain.range("q", 0, 0, 1).await.unwrap()[0].0, 0);
    }
}
