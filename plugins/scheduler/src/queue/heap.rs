//! A binary heap ordered by a caller-supplied `less`, as the QueueSort plugin defines it.

/// A min-heap under `less` (the item `less` than all others is on top).
#[derive(Debug)]
pub struct Heap<T> {
    items: Vec<T>,
}

impl<T> Default for Heap<T> {
    fn default() -> Self {
        Heap { items: Vec::new() }
    }
}

impl<T> Heap<T> {
    /// An empty heap.
    pub fn new() -> Self {
        Heap { items: Vec::new() }
    }

    /// Adds an item.
    pub fn push(&mut self, item: T, less: impl Fn(&T, &T) -> bool) {
        self.items.push(item);
        let mut i = self.items.len() - 1;
        while i > 0 {
            let parent = (i - 1) / 2;
            if !less(&self.items[i], &self.items[parent]) {
                break;
            }
            self.items.swap(i, parent);
            i = parent;
        }
    }

    /// Removes the top item.
    pub fn pop(&mut self, less: impl Fn(&T, &T) -> bool) -> Option<T> {
        if self.items.is_empty() {
            return None;
        }
        let last = self.items.len() - 1;
        self.items.swap(0, last);
        let top = self.items.pop();
        let n = self.items.len();
        let mut i = 0;
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut best = i;
            if l < n && less(&self.items[l], &self.items[best]) {
                best = l;
            }
            if r < n && less(&self.items[r], &self.items[best]) {
                best = r;
            }
            if best == i {
                break;
            }
            self.items.swap(i, best);
            i = best;
        }
        top
    }

    /// All items, in no particular order.
    pub fn into_items(self) -> Vec<T> {
        self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_should_pop_in_less_order() {
        let mut h = Heap::new();
        for v in [5, 1, 4, 2, 3, 1] {
            h.push(v, |a: &i32, b: &i32| a < b);
        }
        let mut out = Vec::new();
        while let Some(v) = h.pop(|a, b| a < b) {
            out.push(v);
        }
        assert_eq!(out, vec![1, 1, 2, 3, 4, 5]);
        assert!(h.into_items().is_empty());
    }
}
