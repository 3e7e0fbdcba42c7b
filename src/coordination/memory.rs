//! A lease table in memory, with the conditional semantics of the DynamoDB one: the table of
//! the simulation and of a single-process fleet in tests.
//!
//! Bounds: one entry per lease; every call takes one lock for its whole condition-and-write,
//! which is what makes it conditional.

use super::{Lease, LeaseError, LeaseTable};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryLeases {
    leases: Mutex<BTreeMap<String, Lease>>,
}

impl MemoryLeases {
    /// Apply `f` to the lease `key` if its counter is `counter` and (`owner` given) its owner
    /// is `owner`; the counter then moves by one.
    fn update<T>(
        &self,
        key: &str,
        counter: u64,
        owner: Option<&str>,
        f: impl FnOnce(&mut Lease) -> T,
    ) -> Result<(u64, T), LeaseError> {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        let l = leases.get_mut(key).ok_or_else(|| LeaseError::Lost(key.to_string()))?;
        if l.counter != counter || owner.is_some_and(|o| l.owner.as_deref() != Some(o)) {
            return Err(LeaseError::Lost(key.to_string()));
        }
        let out = f(l);
        l.counter += 1;
        Ok((l.counter, out))
    }
}

impl LeaseTable for MemoryLeases {
    fn list(&self) -> Result<Vec<Lease>, LeaseError> {
        Ok(self
            .leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect())
    }

    fn get(&self, key: &str) -> Result<Option<Lease>, LeaseError> {
        Ok(self.leases.lock().unwrap_or_else(|e| e.into_inner()).get(key).cloned())
    }

    fn create(&self, lease: &Lease) -> Result<bool, LeaseError> {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if leases.contains_key(&lease.key) {
            return Ok(false);
        }
        leases.insert(lease.key.clone(), lease.clone());
        Ok(true)
    }

    fn take(&self, key: &str, counter: u64, owner: &str) -> Result<u64, LeaseError> {
        self.update(key, counter, None, |l| {
            if l.owner.as_deref() != Some(owner) {
                l.owner_switches += 1;
            }
            l.owner = Some(owner.to_string());
        })
        .map(|(c, ())| c)
    }

    fn renew(&self, key: &str, counter: u64, owner: &str) -> Result<u64, LeaseError> {
        self.update(key, counter, Some(owner), |_| ()).map(|(c, ())| c)
    }

    fn release(&self, key: &str, counter: u64, owner: &str) -> Result<(), LeaseError> {
        self.update(key, counter, Some(owner), |l| l.owner = None).map(|_| ())
    }

    fn checkpoint(&self, key: &str, counter: u64, owner: &str, checkpoint: &str) -> Result<u64, LeaseError> {
        self.update(key, counter, Some(owner), |l| {
            l.checkpoint = checkpoint.to_string();
            l.owner_switches = 0;
        })
        .map(|(c, ())| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_write_is_fenced_by_counter_and_owner() {
        let t = MemoryLeases::default();
        assert!(t.create(&Lease::new("s1", &[])).unwrap());
        assert!(!t.create(&Lease::new("s1", &[])).unwrap(), "a second create is refused");
        let a = t.take("s1", 0, "a").unwrap();
        assert_eq!(
            t.take("s1", 0, "b"),
            Err(LeaseError::Lost("s1".into())),
            "a stale counter"
        );
        let a = t.renew("s1", a, "a").unwrap();
        assert_eq!(
            t.renew("s1", a, "b"),
            Err(LeaseError::Lost("s1".into())),
            "not the owner"
        );
        // b steals it: a's next checkpoint is refused, b's goes through.
        let b = t.take("s1", a, "b").unwrap();
        assert_eq!(t.checkpoint("s1", a, "a", "100"), Err(LeaseError::Lost("s1".into())));
        let b = t.checkpoint("s1", b, "b", "200").unwrap();
        let l = t.get("s1").unwrap().unwrap();
        assert_eq!(
            (l.owner.as_deref(), l.counter, l.checkpoint.as_str(), l.owner_switches),
            (Some("b"), b, "200", 0)
        );
        t.release("s1", b, "b").unwrap();
        assert_eq!(t.get("s1").unwrap().unwrap().owner, None);
    }
}
