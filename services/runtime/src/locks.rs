//! Per-key async locks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use uuid::Uuid;

/// One async lock per key: work on one aggregate queues inside a process instead of
/// meeting itself as version conflicts. Unused locks are forgotten.
#[derive(Default)]
pub struct KeyedLocks {
    locks: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

pub struct KeyedGuard<'a> {
    owner: &'a KeyedLocks,
    key: Uuid,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: tokio::sync::OwnedMutexGuard<()>,
}

impl KeyedLocks {
    /// Waits for and takes the lock of `key`; it is released when the guard drops.
    pub async fn lock(&self, key: Uuid) -> KeyedGuard<'_> {
        let lock = self
            .locks
            .lock()
            .expect("locks")
            .entry(key)
            .or_default()
            .clone();
        let guard = lock.clone().lock_owned().await;
        KeyedGuard {
            owner: self,
            key,
            lock,
            _guard: guard,
        }
    }
}

impl Drop for KeyedGuard<'_> {
    fn drop(&mut self) {
        let mut locks = self.owner.locks.lock().expect("locks");
        // Only the map and this guard hold it: nobody else waits, so forget it.
        if Arc::strong_count(&self.lock) <= 3
            && locks
                .get(&self.key)
                .is_some_and(|l| Arc::ptr_eq(l, &self.lock))
        {
            locks.remove(&self.key);
        }
    }
}
