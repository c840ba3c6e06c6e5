//! get-upload-url's limit: N requests per conversation in the last 60 s, counted in this
//! process (one Lambda execution environment), as ECHO counted per worker (D30).
//!
//! Keyed by the parsed conversation id, so `ABC...`, `{abc...}` and `abc...` share one allowance,
//! and bounded: at most [`MAX_TRACKED`] conversations (16 bytes of id and `limit` instants each)
//! whatever callers send.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

pub const WINDOW: Duration = Duration::from_secs(60);
/// Conversations tracked at once; past it the quietest one is forgotten.
pub const MAX_TRACKED: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    limit: usize,
    hits: Mutex<HashMap<Uuid, VecDeque<Instant>>>,
}

impl RateLimiter {
    pub fn new(limit: u32) -> Self {
        RateLimiter { limit: limit as usize, hits: Mutex::new(HashMap::new()) }
    }

    /// Records a request for `conversation` at `now` unless the window is full (then false).
    pub fn allow(&self, conversation: Uuid, now: Instant) -> bool {
        let mut hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        if !hits.contains_key(&conversation) && hits.len() >= MAX_TRACKED {
            hits.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
            if hits.len() >= MAX_TRACKED {
                let quietest = hits.iter().min_by_key(|(_, q)| q.back().copied()).map(|(id, _)| *id);
                quietest.and_then(|id| hits.remove(&id));
            }
        }
        let queue = hits.entry(conversation).or_insert_with(|| VecDeque::with_capacity(self.limit.min(64)));
        while queue.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            queue.pop_front();
        }
        if queue.len() >= self.limit {
            return false;
        }
        queue.push_back(now);
        true
    }

    /// Conversations tracked now.
    pub fn tracked(&self) -> usize {
        self.hits.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides() {
        let limiter = RateLimiter::new(2);
        let (c, other) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let t0 = Instant::now();
        assert!(limiter.allow(c, t0));
        assert!(limiter.allow(c, t0 + Duration::from_secs(1)));
        assert!(!limiter.allow(c, t0 + Duration::from_secs(2)));
        assert!(limiter.allow(other, t0 + Duration::from_secs(2)));
        assert!(limiter.allow(c, t0 + Duration::from_secs(60)));
        assert!(!limiter.allow(c, t0 + Duration::from_secs(60)));
    }

    #[test]
    fn memory_is_bounded_even_when_every_conversation_is_busy() {
        let limiter = RateLimiter::new(10);
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u128 + 500) {
            assert!(limiter.allow(Uuid::from_u128(i), t0 + Duration::from_millis(i as u64)));
        }
        assert_eq!(limiter.tracked(), MAX_TRACKED);
        // The newest stay tracked; the quietest went.
        let newest = Uuid::from_u128(MAX_TRACKED as u128 + 499);
        for _ in 0..9 {
            assert!(limiter.allow(newest, t0 + Duration::from_secs(1)));
        }
        assert!(!limiter.allow(newest, t0 + Duration::from_secs(1)));
    }
}
