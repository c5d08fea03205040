//! One feed followed once by several references of one consumer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, Utc};
use stream_refdata_aws::{Clock, SharedClock};
use stream_refdata_protocol::{head_key, ChangeKey};
use tokio::time::Instant;

use super::{Conditional, FeedSource, ListPage, SourceError};

/// Change-file bodies kept for the other references (immutable: a key is never rewritten):
/// at most this many bytes.
const FILE_BYTES: usize = 32 << 20;

/// A [`FeedSource`] that several references of one consumer share, so the feed is followed
/// once per batch instead of once per reference: within a **round** (the consumer starts one
/// per batch, [`SharedFeed::new_round`]), the first conditional GET of the `_head` pointer and
/// the first complete listing answer every reference, and each change file is read once.
///
/// Why it is safe: an answer is shared only within the round it was taken in, and
/// [`FeedSource::taken_at`] says every answer of a round counts as taken at the round's start
/// (no later than it really was). A reference that uses a shared answer therefore takes its
/// feed position and its "confirmed current" time from the round's start, which only widens its
/// next look-back and never understates its staleness. Every record of the batch was in the
/// stream before the round started, so a flag in it, and the change file written before its
/// flag, is covered by any answer of the round. A listing is shared only with a reference
/// whose listing would start at or after it (`StartAfter` not earlier). Outside a round
/// nothing is shared: every call goes to the source.
#[derive(Clone)]
pub struct SharedFeed<F> {
    inner: F,
    prefix: Arc<str>,
    clock: SharedClock,
    state: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    /// The current round: its number and when it started.
    round: u64,
    started: Option<(DateTime<Utc>, Instant)>,
    /// The feed pointer's state this round: its ETag (`None`: missing).
    head: Option<Option<String>>,
    /// This round's complete listing: prefix, `StartAfter`, keys. Always taken after the
    /// round's pointer answer (a fresh pointer answer drops it), so no reference pairs a newer
    /// pointer ETag with an older listing.
    listing: Option<(String, String, Vec<String>)>,
    /// Fresh pointer answers taken so far: a listing begun before one is not kept (followers
    /// polling at the same time could otherwise pair the newer answer with the older listing).
    head_answers: u64,
    /// Change-file bodies by key, oldest first.
    files: HashMap<String, Arc<Vec<u8>>>,
    order: VecDeque<String>,
    bytes: usize,
    /// Requests sent to the source, and answers shared instead.
    sent: u64,
    shared: u64,
}

impl<F> std::fmt::Debug for SharedFeed<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state();
        f.debug_struct("SharedFeed")
            .field("round", &s.round)
            .field("sent", &s.sent)
            .field("shared", &s.shared)
            .finish_non_exhaustive()
    }
}

impl<F> SharedFeed<F> {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl<F: FeedSource> SharedFeed<F> {
    /// Shares `inner`, a feed under `prefix`, on `clock`. No round is open: call
    /// [`SharedFeed::new_round`] at the start of each batch.
    pub fn new(inner: F, prefix: impl Into<String>, clock: impl Clock) -> Self {
        SharedFeed {
            inner,
            prefix: Arc::from(prefix.into()),
            clock: clock.shared(),
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// Starts a round (a batch): answers taken from now on are shared until the next round.
    pub fn new_round(&self) {
        let mut s = self.state();
        s.round += 1;
        s.started = Some((self.clock.now(), Instant::now()));
        s.head = None;
        s.listing = None;
    }

    /// Requests sent to the source so far, and answers given from a shared one instead.
    pub fn requests(&self) -> (u64, u64) {
        let s = self.state();
        (s.sent, s.shared)
    }

    /// The current round's number, if one is open.
    fn round(&self) -> Option<u64> {
        let s = self.state();
        s.started.map(|_| s.round)
    }

    /// Whether `key` names a change file (immutable), not the pointer or a feed snapshot.
    fn is_change_file(&self, key: &str) -> bool {
        ChangeKey::parse(&self.prefix, key).is_ok()
    }
}

impl<F: FeedSource> FeedSource for SharedFeed<F> {
    /// The first complete listing of a round (every page, read here) answers every later one
    /// of the round with the same prefix and a `StartAfter` not earlier than its own.
    async fn list(
        &self,
        prefix: &str,
        start_after: &str,
        token: Option<String>,
    ) -> Result<ListPage, SourceError> {
        let Some(round) = self.round().filter(|_| token.is_none()) else {
            self.state().sent += 1;
            return self.inner.list(prefix, start_after, token).await;
        };
        {
            let mut s = self.state();
            if let Some((p, after, keys)) = &s.listing {
                if p == prefix && after.as_str() <= start_after {
                    let keys = keys
                        .iter()
                        .filter(|k| k.as_str() > start_after)
                        .cloned()
                        .collect();
                    s.shared += 1;
                    return Ok(ListPage { keys, next: None });
                }
            }
        }
        let head_answers = self.state().head_answers;
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            self.state().sent += 1;
            let page = self.inner.list(prefix, start_after, token.take()).await?;
            keys.extend(page.keys);
            match page.next {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        let mut s = self.state();
        // Kept only if the round it was taken in is still the current one, and no fresh pointer
        // answer came while it was taken.
        if s.round == round && s.head_answers == head_answers {
            s.listing = Some((prefix.to_owned(), start_after.to_owned(), keys.clone()));
        }
        Ok(ListPage { keys, next: None })
    }

    /// A change file is read once and kept (bounded) for the other references.
    async fn get(&self, key: &str) -> Result<Vec<u8>, SourceError> {
        let cacheable = self.is_change_file(key);
        if cacheable {
            let mut s = self.state();
            if let Some(body) = s.files.get(key).cloned() {
                s.shared += 1;
                return Ok(body.as_ref().clone());
            }
        }
        self.state().sent += 1;
        let body = self.inner.get(key).await?;
        if cacheable && body.len() <= FILE_BYTES {
            let mut s = self.state();
            if !s.files.contains_key(key) {
                s.bytes += body.len();
                s.files.insert(key.to_owned(), Arc::new(body.clone()));
                s.order.push_back(key.to_owned());
                while s.bytes > FILE_BYTES {
                    let Some(oldest) = s.order.pop_front() else {
                        break;
                    };
                    if let Some(b) = s.files.remove(&oldest) {
                        s.bytes -= b.len();
                    }
                }
            }
        }
        Ok(body)
    }

    /// The first answer of a round gives the feed pointer's ETag; later ones of the round are
    /// answered from it as S3 would have answered then. Other objects (a feed snapshot's
    /// pointer) are always asked.
    async fn head_state(&self, key: &str, etag: Option<&str>) -> Result<Conditional, SourceError> {
        let round = self.round().filter(|_| key == head_key(&self.prefix));
        let Some(round) = round else {
            self.state().sent += 1;
            return self.inner.head_state(key, etag).await;
        };
        {
            let mut s = self.state();
            if let Some(state) = &s.head {
                let answer = match (state, etag) {
                    (None, _) => Conditional::Missing,
                    (Some(now), Some(asked)) if now == asked => Conditional::NotModified,
                    (Some(now), _) => Conditional::Changed(now.clone()),
                };
                s.shared += 1;
                return Ok(answer);
            }
        }
        self.state().sent += 1;
        let answer = self.inner.head_state(key, etag).await?;
        let state = match &answer {
            Conditional::NotModified => etag.map(str::to_owned),
            Conditional::Changed(e) => Some(e.clone()),
            Conditional::Missing => None,
        };
        let mut s = self.state();
        s.head_answers += 1;
        if s.round == round {
            // A listing taken before this answer may miss what the answer announces: whoever
            // lists after it lists afresh.
            s.listing = None;
            // (nothing to share from a NotModified to a request without an ETag, or an empty
            // ETag)
            let known = state.as_deref().is_none_or(|e| !e.is_empty())
                && (!matches!(answer, Conditional::NotModified) || etag.is_some());
            if known {
                s.head = Some(state);
            }
        }
        Ok(answer)
    }

    fn taken_at(&self) -> Option<(DateTime<Utc>, Instant)> {
        self.state().started
    }
}
