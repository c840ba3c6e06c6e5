//! The rule this project exists for: blocking store calls never hold a tokio worker, so
//! `/api/health` keeps answering while every store call is stuck.

// The api binary's helpers, of which this one uses a few.
#[allow(dead_code)]
#[path = "api/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use common::offload::OffloadPool;
use support::*;

const STALL: Duration = Duration::from_millis(300);
const CLIENTS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_while_50_requests_sit_in_blocking_store_calls() {
    let pool = OffloadPool::new(64);
    let app = TestApp::start_with(|o| {
        o.pool = Some(pool.clone());
        o.store_stall = STALL;
    })
    .await;
    let project_url = app.url(&format!("/api/participant/projects/{PROJECT}"));
    let health_url = app.url("/api/health");
    // Open the connections first so the probe measures the server, not TCP set-up.
    let health_client = reqwest::Client::new();
    assert_eq!(health_client.get(&health_url).send().await.unwrap().status(), 200);

    let started = Instant::now();
    let mut stuck = Vec::new();
    for _ in 0..CLIENTS {
        let (client, url) = (app.client.clone(), project_url.clone());
        stuck.push(tokio::spawn(async move {
            let t = Instant::now();
            let status = client.get(url).send().await.unwrap().status();
            (status, t.elapsed())
        }));
    }
    // Wait until every request holds a blocking thread, then probe health during the stall.
    while pool.stats().running < CLIENTS {
        assert!(started.elapsed() < STALL, "the requests never all reached the store: {:?}", pool.stats());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut probes = Vec::new();
    while pool.stats().running == CLIENTS {
        let t = Instant::now();
        let res = health_client.get(&health_url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        probes.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut slowest_stuck = Duration::ZERO;
    for handle in stuck {
        let (status, elapsed) = handle.await.unwrap();
        assert_eq!(status, 200);
        slowest_stuck = slowest_stuck.max(elapsed);
    }
    assert!(probes.len() >= 5, "only {} health probes ran during the stall", probes.len());
    let worst = probes.iter().max().unwrap();
    assert!(*worst < Duration::from_millis(50), "health took {worst:?} while the store was stalled ({probes:?})");
    assert!(slowest_stuck >= STALL, "the store calls really blocked ({slowest_stuck:?})");
}
