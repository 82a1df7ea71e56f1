//! Splitting per-node work across threads, without a thread pool crate.
//!
//! Spawning a thread costs tens of microseconds, as much as filtering a few hundred
//! nodes, so work is split only when every thread gets at least `min_chunk` items;
//! the calling thread always takes the first chunk.

/// Runs `f` over contiguous chunks of `items` on up to `threads` threads; results in chunk order.
pub fn map_chunks<T, R, F>(threads: usize, min_chunk: usize, items: &[T], f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&[T]) -> R + Sync,
{
    let min_chunk = min_chunk.max(1);
    let chunks = threads.min(items.len() / min_chunk).max(1);
    if chunks == 1 {
        return vec![f(items)];
    }
    let size = items.len().div_ceil(chunks);
    let mut parts = items.chunks(size);
    let first = parts.next().unwrap_or(&[]);
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = parts.map(|part| scope.spawn(move || f(part))).collect();
        let mut out = Vec::with_capacity(handles.len() + 1);
        out.push(f(first));
        for h in handles {
            match h.join() {
                Ok(r) => out.push(r),
                // A panicking plugin on a worker thread: re-raise it on the caller,
                // where the scheduler's own guard handles it.
                Err(payload) => std::panic::resume_unwind(payload),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_chunks_should_keep_order_and_stay_serial_for_small_inputs() {
        let items: Vec<u32> = (0..1000).collect();
        let sums = map_chunks(4, 100, &items, |c| c.iter().sum::<u32>());
        assert_eq!(sums.len(), 4);
        assert_eq!(sums.iter().sum::<u32>(), 499_500);
        assert_eq!(map_chunks(4, 600, &items, |c| c.len()), vec![1000]);
        assert_eq!(map_chunks(4, 1, &[] as &[u32], |c| c.len()), vec![0]);
    }
}
