//! A bitmap over the offsets of a range: which are taken, and a next-fit search that keeps a lower band for static requests.

/// The taken offsets `0..size` of a range, as kube-apiserver's allocation bitmaps.
///
/// Dynamic allocation ([`Bitmap::take_next`]) searches the upper band
/// `band..size` first, round the band from where the last search stopped (so a
/// value just released is not handed out again at once), and the lower band
/// `0..band` only when the upper one is full: the lower band stays free for
/// values users ask for by number (upstream's `ServiceIPStaticSubrange` and
/// `ServiceNodePortStaticSubrange`).
#[derive(Debug, Clone)]
pub struct Bitmap {
    words: Vec<u64>,
    size: u32,
    band: u32,
    cursor: u32,
    used: u32,
}

impl Bitmap {
    /// An empty bitmap of `size` offsets whose upper band starts at `band` (clamped to `size`).
    pub fn new(size: u32, band: u32) -> Bitmap {
        Bitmap {
            words: vec![0; size.div_ceil(64) as usize],
            size,
            band: band.min(size),
            cursor: band.min(size),
            used: 0,
        }
    }

    /// Number of offsets.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Number of taken offsets.
    pub fn used(&self) -> u32 {
        self.used
    }

    /// True when `offset` is in range and taken.
    pub fn is_taken(&self, offset: u32) -> bool {
        offset < self.size && self.words[(offset / 64) as usize] & (1 << (offset % 64)) != 0
    }

    /// Takes `offset`; false when it is out of range or already taken.
    pub fn take(&mut self, offset: u32) -> bool {
        if offset >= self.size || self.is_taken(offset) {
            return false;
        }
        self.words[(offset / 64) as usize] |= 1 << (offset % 64);
        self.used += 1;
        true
    }

    /// Gives `offset` back (nothing happens when it is out of range or free).
    pub fn release(&mut self, offset: u32) {
        if self.is_taken(offset) {
            self.words[(offset / 64) as usize] &= !(1 << (offset % 64));
            self.used -= 1;
        }
    }

    /// Takes a free offset: next-fit in the upper band, then the lower band; `None` when full.
    pub fn take_next(&mut self) -> Option<u32> {
        let start = if self.cursor >= self.size {
            self.band
        } else {
            self.cursor
        };
        let found = self
            .find_free(start, self.size)
            .or_else(|| self.find_free(self.band, start))
            .or_else(|| self.find_free(0, self.band))?;
        self.take(found);
        if found >= self.band {
            self.cursor = found + 1;
        }
        Some(found)
    }

    /// The first free offset in `from..to`.
    fn find_free(&self, from: u32, to: u32) -> Option<u32> {
        let mut i = from;
        while i < to {
            let free = !self.words[(i / 64) as usize] >> (i % 64);
            if free != 0 {
                let found = i + free.trailing_zeros();
                return (found < to).then_some(found);
            }
            i = (i / 64 + 1) * 64;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_should_refuse_taken_and_out_of_range_offsets() {
        let mut b = Bitmap::new(10, 0);
        assert!(b.take(3));
        assert!(!b.take(3));
        assert!(!b.take(10));
        assert_eq!(b.used(), 1);
        b.release(3);
        b.release(3);
        assert_eq!(b.used(), 0);
        assert!(b.take(3));
    }

    #[test]
    fn take_next_should_fill_the_upper_band_before_the_lower_one() {
        let mut b = Bitmap::new(8, 4);
        let got: Vec<u32> = (0..8).filter_map(|_| b.take_next()).collect();
        assert_eq!(got, vec![4, 5, 6, 7, 0, 1, 2, 3]);
        assert_eq!(b.take_next(), None);
        assert_eq!(b.used(), 8);
    }

    #[test]
    fn take_next_should_not_reuse_a_just_released_offset_first() {
        let mut b = Bitmap::new(6, 0);
        assert_eq!(b.take_next(), Some(0));
        assert_eq!(b.take_next(), Some(1));
        b.release(0);
        assert_eq!(b.take_next(), Some(2));
        b.take(3);
        assert_eq!(b.take_next(), Some(4));
        assert_eq!(b.take_next(), Some(5));
        assert_eq!(b.take_next(), Some(0));
        assert_eq!(b.take_next(), None);
    }

    #[test]
    fn take_next_should_skip_full_words_across_word_boundaries() {
        let mut b = Bitmap::new(200, 0);
        for i in 0..130 {
            b.take(i);
        }
        assert_eq!(b.take_next(), Some(130));
        for i in 131..200 {
            b.take(i);
        }
        assert_eq!(b.take_next(), None);
        b.release(64);
        assert_eq!(b.take_next(), Some(64));
    }
}
