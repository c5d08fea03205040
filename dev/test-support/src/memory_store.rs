//! An in-memory [`ObjectStore`] with failure and delay injection.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use aws_plumbing::{Bytes, ObjectStore, StoreError};

/// Objects kept in a map; `fail_next` and `delay_next` script the next puts.
#[derive(Debug, Default)]
pub struct MemoryStore {
    objects: Mutex<BTreeMap<(String, String), Bytes>>,
    script: Mutex<Vec<Step>>,
    puts: Mutex<Vec<String>>,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Fail,
    Delay(Duration),
    FailAfter(Duration),
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// The next `n` puts fail.
    pub fn fail_next(&self, n: usize) {
        let mut s = self.script.lock().unwrap_or_else(|e| e.into_inner());
        s.extend(std::iter::repeat_n(Step::Fail, n));
    }

    /// The next put takes `d` (on tokio's clock) before it succeeds.
    pub fn delay_next(&self, d: Duration) {
        let mut s = self.script.lock().unwrap_or_else(|e| e.into_inner());
        s.push(Step::Delay(d));
    }

    /// The next put fails after `d` (on tokio's clock): with concurrent writes, the puts started
    /// with it finish first.
    pub fn fail_next_after(&self, d: Duration) {
        let mut s = self.script.lock().unwrap_or_else(|e| e.into_inner());
        s.push(Step::FailAfter(d));
    }

    /// Keys of every successful put, in order.
    pub fn put_keys(&self) -> Vec<String> {
        self.puts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The object at `bucket/key`.
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(bucket.to_owned(), key.to_owned()))
            .map(|b| b.to_vec())
    }
}

impl ObjectStore for MemoryStore {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<Bytes> + Send,
    ) -> Result<(), StoreError> {
        let step = {
            let mut s = self.script.lock().unwrap_or_else(|e| e.into_inner());
            (!s.is_empty()).then(|| s.remove(0))
        };
        if let Some(Step::FailAfter(d)) = step {
            tokio::time::sleep(d).await;
        }
        match step {
            Some(Step::Fail) | Some(Step::FailAfter(_)) => {
                return Err(StoreError::new(
                    bucket,
                    key,
                    "injected failure: ServiceUnavailable",
                ))
            }
            Some(Step::Delay(d)) => tokio::time::sleep(d).await,
            None => {}
        }
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((bucket.to_owned(), key.to_owned()), body.into());
        self.puts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(key.to_owned());
        Ok(())
    }
}
