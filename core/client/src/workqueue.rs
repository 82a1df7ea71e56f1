//! A rate-limited work queue with client-go semantics: an item is queued at most
//! once, never handed to two workers at once, and re-queued if added while processed.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::WorkQueueMetrics;

/// A deduplicating queue of keys with per-item exponential retry delays.
pub struct WorkQueue<T> {
    inner: Arc<Shared<T>>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue {
            inner: self.inner.clone(),
        }
    }
}

struct Shared<T> {
    name: String,
    state: Mutex<State<T>>,
    notify: Notify,
    metrics: Option<WorkQueueMetrics>,
    base_delay: Duration,
    max_delay: Duration,
}

struct State<T> {
    queue: VecDeque<T>,
    dirty: HashMap<T, Instant>,
    processing: HashMap<T, Instant>,
    failures: HashMap<T, u32>,
    shut_down: bool,
}

impl<T: Hash + Eq + Clone + Send + 'static> WorkQueue<T> {
    /// A queue named `name` (the `name` label of its metrics); retry delays start at
    /// 5 ms and double up to 1000 s, as client-go's default controller rate limiter.
    pub fn new(name: &str, metrics: Option<WorkQueueMetrics>) -> Self {
        Self::with_delays(
            name,
            metrics,
            Duration::from_millis(5),
            Duration::from_secs(1000),
        )
    }

    /// A queue with its own retry delay range.
    pub fn with_delays(
        name: &str,
        metrics: Option<WorkQueueMetrics>,
        base_delay: Duration,
        max_delay: Duration,
    ) -> Self {
        WorkQueue {
            inner: Arc::new(Shared {
                name: name.to_string(),
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashMap::new(),
                    processing: HashMap::new(),
                    failures: HashMap::new(),
                    shut_down: false,
                }),
                notify: Notify::new(),
                metrics,
                base_delay,
                max_delay,
            }),
        }
    }

    /// Queues `item` unless it is already waiting.
    pub fn add(&self, item: T) {
        let mut s = self.inner.state.lock();
        if s.shut_down || s.dirty.contains_key(&item) {
            return;
        }
        s.dirty.insert(item.clone(), Instant::now());
        if let Some(m) = &self.inner.metrics {
            m.adds.with_label_values(&[&self.inner.name]).inc();
        }
        if s.processing.contains_key(&item) {
            return;
        }
        s.queue.push_back(item);
        self.set_depth(s.queue.len());
        drop(s);
        self.inner.notify.notify_one();
    }

    /// Queues `item` after `delay` (needs a tokio runtime).
    pub fn add_after(&self, item: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(item);
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(item);
        });
    }

    /// Queues `item` after its next retry delay (5 ms, 10 ms, 20 ms, ...).
    pub fn add_rate_limited(&self, item: T) {
        let delay = {
            let mut s = self.inner.state.lock();
            let n = s.failures.entry(item.clone()).or_insert(0);
            let exp = (*n).min(30);
            *n += 1;
            self.inner
                .base_delay
                .saturating_mul(1u32 << exp)
                .min(self.inner.max_delay)
        };
        if let Some(m) = &self.inner.metrics {
            m.retries.with_label_values(&[&self.inner.name]).inc();
        }
        self.add_after(item, delay);
    }

    /// Clears `item`'s retry history after a success.
    pub fn forget(&self, item: &T) {
        self.inner.state.lock().failures.remove(item);
    }

    /// How many times `item` was retried since it last succeeded.
    pub fn retries(&self, item: &T) -> u32 {
        self.inner
            .state
            .lock()
            .failures
            .get(item)
            .copied()
            .unwrap_or(0)
    }

    /// Waits for the next item; `None` once the queue is shut down. Call
    /// [`WorkQueue::done`] when finished with it.
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.inner.notify.notified();
            {
                let mut s = self.inner.state.lock();
                if let Some(item) = s.queue.pop_front() {
                    let added = s.dirty.remove(&item);
                    s.processing.insert(item.clone(), Instant::now());
                    self.set_depth(s.queue.len());
                    if let (Some(m), Some(added)) = (&self.inner.metrics, added) {
                        m.queue_duration
                            .with_label_values(&[&self.inner.name])
                            .observe(added.elapsed().as_secs_f64());
                    }
                    return Some(item);
                }
                if s.shut_down {
                    return None;
                }
            }
            notified.await;
        }
    }

    /// Marks `item` finished; it is queued again if it was added meanwhile.
    pub fn done(&self, item: &T) {
        let mut s = self.inner.state.lock();
        let started = s.processing.remove(item);
        if let (Some(m), Some(started)) = (&self.inner.metrics, started) {
            m.work_duration
                .with_label_values(&[&self.inner.name])
                .observe(started.elapsed().as_secs_f64());
        }
        if s.dirty.contains_key(item) {
            s.queue.push_back(item.clone());
            self.set_depth(s.queue.len());
            drop(s);
            self.inner.notify.notify_one();
        }
    }

    /// Items waiting (not counting those being processed).
    pub fn len(&self) -> usize {
        self.inner.state.lock().queue.len()
    }

    /// True when no item is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stops handing out items; waiting `get`s return `None`.
    pub fn shut_down(&self) {
        self.inner.state.lock().shut_down = true;
        self.inner.notify.notify_waiters();
    }

    /// Updates the in-progress gauges (`workqueue_unfinished_work_seconds`,
    /// `workqueue_longest_running_processor_seconds`); call before metrics are gathered.
    pub fn refresh_metrics(&self) {
        let Some(m) = &self.inner.metrics else { return };
        let s = self.inner.state.lock();
        let ages = s.processing.values().map(|t| t.elapsed().as_secs_f64());
        let (sum, max) = ages.fold((0.0, 0.0f64), |(s, m), a| (s + a, m.max(a)));
        m.unfinished_work
            .with_label_values(&[&self.inner.name])
            .set(sum);
        m.longest_running
            .with_label_values(&[&self.inner.name])
            .set(max);
    }

    fn set_depth(&self, depth: usize) {
        if let Some(m) = &self.inner.metrics {
            m.depth
                .with_label_values(&[&self.inner.name])
                .set(depth as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_should_deduplicate_and_requeue_items_added_while_processing() {
        let q = WorkQueue::new("t", None);
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let a = q.get().await.expect("a");
        assert_eq!(a, "a");
        q.add("a");
        assert_eq!(q.len(), 1, "a is processing: not handed out twice");
        assert_eq!(q.get().await, Some("b"));
        q.done(&"b");
        q.done(&a);
        assert_eq!(q.get().await, Some("a"));
        q.shut_down();
        assert_eq!(q.get().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_adds_should_double_their_delay_until_forgotten() {
        let q = WorkQueue::with_delays("t", None, Duration::from_secs(1), Duration::from_secs(3));
        let mut delays = Vec::new();
        for _ in 0..4 {
            let before = tokio::time::Instant::now();
            q.add_rate_limited("x");
            let item = q.get().await.expect("item");
            delays.push(before.elapsed().as_secs());
            q.done(&item);
        }
        assert_eq!(delays, vec![1, 2, 3, 3]);
        assert_eq!(q.retries(&"x"), 4);
        q.forget(&"x");
        assert_eq!(q.retries(&"x"), 0);
    }
}
