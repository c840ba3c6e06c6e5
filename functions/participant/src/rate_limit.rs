//! get-upload-url's limit: N requests per conversation in the last 60 s, counted in this
//! process (one Lambda execution environment), as ECHO counted per worker (D30).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct RateLimiter {
    limit: usize,
    hits: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl RateLimiter {
    pub fn new(limit: u32) -> Self {
        RateLimiter { limit: limit as usize, hits: Mutex::new(HashMap::new()) }
    }

    /// Records a request for `key` at `now` unless the window is full (then false).
    pub fn allow(&self, key: &str, now: Instant) -> bool {
        let mut hits = self.hits.lock().unwrap_or_else(|p| p.into_inner());
        // Forget conversations that went quiet, so the map stays small.
        if hits.len() > 10_000 {
            hits.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < WINDOW));
        }
        let queue = hits.entry(key.to_string()).or_default();
        while queue.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            queue.pop_front();
        }
        if queue.len() >= self.limit {
            return false;
        }
        queue.push_back(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_slides() {
        let limiter = RateLimiter::new(2);
        let t0 = Instant::now();
        assert!(limiter.allow("c", t0));
        assert!(limiter.allow("c", t0 + Duration::from_secs(1)));
        assert!(!limiter.allow("c", t0 + Duration::from_secs(2)));
        assert!(limiter.allow("other", t0 + Duration::from_secs(2)));
        assert!(limiter.allow("c", t0 + Duration::from_secs(60)));
        assert!(!limiter.allow("c", t0 + Duration::from_secs(60)));
    }
}
