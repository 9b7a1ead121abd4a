//! Connections by slot, for the event and uring loops. The slot names a connection where the
//! OS hands a number back: the mio token (event model) or the user data of its operations
//! (uring model). Freed slots are reused, so a slot alone does not tell connections apart
//! over time; each loop gives its connections an id for that.

/// Values by slot, with the freed slots reused first.
pub(crate) struct Slab<T> {
    entries: Vec<Option<T>>,
    free: Vec<usize>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            entries: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    /// How many values it holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The slot the next [`insert`](Slab::insert) will use.
    pub(crate) fn next_key(&self) -> usize {
        self.free.last().copied().unwrap_or(self.entries.len())
    }

    /// Stores `value` and returns its slot.
    pub(crate) fn insert(&mut self, value: T) -> usize {
        self.len += 1;
        match self.free.pop() {
            Some(key) => {
                self.entries[key] = Some(value);
                key
            }
            None => {
                self.entries.push(Some(value));
                self.entries.len() - 1
            }
        }
    }

    pub(crate) fn get(&self, key: usize) -> Option<&T> {
        self.entries.get(key).and_then(Option::as_ref)
    }

    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut T> {
        self.entries.get_mut(key).and_then(Option::as_mut)
    }

    /// Takes the value out of `key` and frees the slot.
    pub(crate) fn remove(&mut self, key: usize) -> Option<T> {
        let value = self.entries.get_mut(key)?.take()?;
        self.len -= 1;
        self.free.push(key);
        Some(value)
    }

    /// The slots in use, in order (a copy: the caller may remove while it walks them).
    pub(crate) fn keys(&self) -> Vec<usize> {
        let used = |(key, entry): (usize, &Option<T>)| entry.is_some().then_some(key);
        self.entries.iter().enumerate().filter_map(used).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slab_reuses_freed_slots() {
        let mut slab = Slab::default();
        let a = slab.insert("a");
        let b = slab.insert("b");
        assert_eq!((a, b, slab.len()), (0, 1, 2));
        assert_eq!(slab.remove(a), Some("a"));
        assert_eq!(slab.remove(a), None);
        assert_eq!(
            (slab.get(a), slab.get(b), slab.len()),
            (None, Some(&"b"), 1)
        );
        assert_eq!(slab.next_key(), a);
        assert_eq!(slab.insert("c"), a);
        assert_eq!(slab.keys(), vec![0, 1]);
        *slab.get_mut(a).unwrap() = "d";
        assert_eq!(slab.get(a), Some(&"d"));
        assert_eq!(slab.get_mut(7), None);
    }
}
