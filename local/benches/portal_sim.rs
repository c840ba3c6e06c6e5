//! `cargo bench --bench portal_sim`: N recording portals against echo-local on the Directus
//! store, for docs/scaling.md. Each portal starts a conversation, then every 30 s uploads a chunk
//! (get-upload-url, the presigned POST to the embedded S3 endpoint, confirm-upload) and every
//! 60 s polls its conversation and its chunks, each portal at its own phase. Directus is a
//! stand-in here (items kept in memory, `_eq`/`_in`/`_null`/`_nnull` filters, sort, limit,
//! offset) that answers after `SIM_DIRECTUS_MS` (20) ms of network and database time and serves
//! one request at a time for `SIM_DIRECTUS_SERVICE_MS` (6) ms of its own CPU, as one Directus
//! process does (about 150 req/s at most). Reports, per route, the rate and latency the portals
//! saw, the Directus requests per collection, and the queue messages published, beside the
//! model's prediction.
//!
//! Env: `SIM_PORTALS` ("100,1000"), `SIM_SECONDS` (60, the measured window after a 30 s ramp
//! that starts every portal's conversation and first upload).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{Method, Uri};
use common::config::StoreSettings;
use local::{DEMO_PROJECT_ID, DEMO_TAG_ID, LocalOptions};
use serde_json::{Value, json};

const RAMP: Duration = Duration::from_secs(30);
const UPLOAD_EVERY: Duration = Duration::from_secs(30);
const POLL_EVERY: Duration = Duration::from_secs(60);
const CHUNK_BYTES: usize = 16 * 1024;

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.into())
}

/// The Directus stand-in's state: rows per collection, requests counted per method and
/// collection, and the lock that makes it serve one request at a time.
#[derive(Default)]
struct Directus {
    rows: Mutex<BTreeMap<String, Vec<Value>>>,
    counts: Mutex<BTreeMap<String, u64>>,
    cpu: tokio::sync::Mutex<()>,
    latency: Duration,
    service: Duration,
    counting: std::sync::atomic::AtomicBool,
}

fn matches(row: &Value, filter: &Value) -> bool {
    let Some(filter) = filter.as_object() else { return true };
    filter.iter().all(|(key, cond)| match key.as_str() {
        "_and" => cond.as_array().is_some_and(|all| all.iter().all(|f| matches(row, f))),
        "_or" => cond.as_array().is_some_and(|any| any.iter().any(|f| matches(row, f))),
        field => {
            let value = row.get(field).unwrap_or(&Value::Null);
            let same = |v: &Value| v == value || (v.as_str().is_some() && v.as_str() == value.as_str());
            cond.as_object().is_some_and(|ops| {
                ops.iter().all(|(op, arg)| match op.as_str() {
                    "_eq" => same(arg),
                    "_neq" => !same(arg),
                    "_in" => arg.as_array().is_some_and(|a| a.iter().any(same)),
                    "_null" => value.is_null(),
                    "_nnull" => !value.is_null(),
                    _ if value.is_object() => matches(value, &json!({ op: arg })),
                    _ => false,
                })
            })
        }
    })
}

fn sort_rows(rows: &mut [Value], sort: &Value) {
    let keys: Vec<String> = sort.as_array().map(|a| a.iter().filter_map(|k| k.as_str().map(String::from)).collect()).unwrap_or_default();
    rows.sort_by(|a, b| {
        for key in &keys {
            let (field, desc) = key.strip_prefix('-').map_or((key.as_str(), false), |f| (f, true));
            let (x, y) = (a.get(field).map(|v| v.to_string()), b.get(field).map(|v| v.to_string()));
            let order = if desc { y.cmp(&x) } else { x.cmp(&y) };
            if order.is_ne() {
                return order;
            }
        }
        std::cmp::Ordering::Equal
    });
}

impl Directus {
    fn collection(path: &str) -> (&str, Option<&str>) {
        let rest = path.strip_prefix("/items/").unwrap_or(path);
        match rest.split_once('/') {
            Some((c, id)) => (c, Some(id)),
            None => (rest, None),
        }
    }

    fn answer(&self, method: &Method, path: &str, body: &Value) -> Value {
        let (collection, id) = Self::collection(path);
        let mut all = self.rows.lock().unwrap();
        let now = "2026-01-01T00:00:00.000Z";
        match (method.as_str(), id) {
            ("SEARCH", None) => {
                let query = &body["query"];
                let mut rows: Vec<Value> =
                    all.get(collection).into_iter().flatten().filter(|r| matches(r, &query["filter"])).cloned().collect();
                sort_rows(&mut rows, &query["sort"]);
                let offset = query["offset"].as_u64().unwrap_or(0) as usize;
                let limit = query["limit"].as_u64().unwrap_or(100) as usize;
                let mut rows: Vec<Value> = rows.into_iter().skip(offset).take(limit).collect();
                if collection == "project" {
                    let tags = all.get("project_tag").cloned().unwrap_or_default();
                    for row in &mut rows {
                        row["tags"] = tags.iter().filter(|t| t["project_id"] == row["id"]).cloned().collect();
                    }
                }
                json!({ "data": rows })
            }
            ("POST", None) => {
                let mut row = body.clone();
                if row.get("id").is_none_or(Value::is_null) {
                    row["id"] = json!(uuid::Uuid::new_v4().to_string());
                }
                if let Some(links) = row["tags"]["create"].as_array().cloned() {
                    row["tags"] =
                        links.iter().enumerate().map(|(i, l)| json!({"id": i + 1, "project_tag_id": l["project_tag_id"]})).collect();
                }
                for field in ["created_at", "updated_at"] {
                    if row.get(field).is_none() {
                        row[field] = json!(now);
                    }
                }
                let rows = all.entry(collection.to_string()).or_default();
                if rows.iter().any(|r| r["id"] == row["id"]) {
                    return json!({ "errors": [{ "message": "Value has to be unique", "extensions": { "code": "RECORD_NOT_UNIQUE" } }] });
                }
                rows.push(row.clone());
                json!({ "data": row })
            }
            ("PATCH", Some(id)) => {
                let row = all.get_mut(collection).and_then(|rows| rows.iter_mut().find(|r| r["id"].as_str() == Some(id)));
                match (row, body.as_object()) {
                    (Some(row), Some(patch)) => {
                        for (k, v) in patch {
                            row[k] = v.clone();
                        }
                        json!({ "data": { "id": id } })
                    }
                    _ => json!({ "data": null }),
                }
            }
            ("DELETE", Some(id)) => {
                if let Some(rows) = all.get_mut(collection) {
                    rows.retain(|r| r["id"].as_str() != Some(id));
                }
                json!({})
            }
            _ => json!({ "data": [] }),
        }
    }
}

async fn serve_directus(directus: Arc<Directus>, method: Method, uri: Uri, body: Bytes) -> axum::response::Response {
    use axum::response::IntoResponse;
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (collection, _) = Directus::collection(uri.path());
    if directus.counting.load(std::sync::atomic::Ordering::Relaxed) {
        *directus.counts.lock().unwrap().entry(format!("{method} {collection}")).or_default() += 1;
    }
    tokio::time::sleep(directus.latency).await;
    {
        let _cpu = directus.cpu.lock().await;
        tokio::time::sleep(directus.service).await;
    }
    let answer = directus.answer(&method, uri.path(), &body);
    let status = if answer.get("errors").is_some() { 400 } else { 200 };
    (axum::http::StatusCode::from_u16(status).unwrap(), axum::Json(answer)).into_response()
}

/// Latencies per route, recorded inside the window.
#[derive(Default)]
struct Stats {
    routes: Mutex<BTreeMap<&'static str, (Vec<Duration>, u64)>>,
}

impl Stats {
    fn record(&self, route: &'static str, took: Duration, ok: bool, window: (Instant, Instant)) {
        let now = Instant::now();
        if now < window.0 || now > window.1 {
            return;
        }
        let mut routes = self.routes.lock().unwrap();
        let entry = routes.entry(route).or_default();
        entry.0.push(took);
        entry.1 += u64::from(!ok);
    }
}

async fn timed(stats: &Stats, route: &'static str, window: (Instant, Instant), req: reqwest::RequestBuilder) -> Option<Value> {
    let t = Instant::now();
    let res = req.send().await;
    let (ok, body) = match res {
        Ok(res) if res.status().is_success() => (true, res.json::<Value>().await.ok()),
        Ok(res) => {
            eprintln!("{route}: HTTP {} {}", res.status(), res.text().await.unwrap_or_default());
            (false, None)
        }
        Err(err) => {
            eprintln!("{route}: {err}");
            (false, None)
        }
    };
    stats.record(route, t.elapsed(), ok, window);
    body
}

/// One portal: a conversation, then uploads every 30 s and polls every 60 s until `end`.
async fn portal(api: String, client: reqwest::Client, stats: Arc<Stats>, phase: Duration, window: (Instant, Instant)) {
    let start = Instant::now() + phase;
    tokio::time::sleep_until(start.into()).await;
    let init = client
        .post(format!("{api}/participant/projects/{DEMO_PROJECT_ID}/conversations/initiate"))
        .json(&json!({"name": "Ada", "tag_id_list": [DEMO_TAG_ID]}));
    let Some(conversation) = timed(&stats, "POST initiate", window, init).await else { return };
    let cid = conversation["id"].as_str().unwrap().to_string();
    let (mut next_upload, mut next_poll) = (start, start + POLL_EVERY / 2);
    while next_upload.min(next_poll) < window.1 {
        if next_upload <= next_poll {
            tokio::time::sleep_until(next_upload.into()).await;
            next_upload += UPLOAD_EVERY;
            let url = client
                .post(format!("{api}/participant/conversations/{cid}/get-upload-url"))
                .json(&json!({"filename": "chunk.webm", "content_type": "audio/webm", "conversation_id": cid}));
            let Some(up) = timed(&stats, "POST get-upload-url", window, url).await else { continue };
            let mut form = reqwest::multipart::Form::new();
            for (name, value) in up["fields"].as_object().into_iter().flatten() {
                form = form.text(name.clone(), value.as_str().unwrap_or_default().to_string());
            }
            let part = reqwest::multipart::Part::bytes(vec![0u8; CHUNK_BYTES]).file_name("blob").mime_str("audio/webm").unwrap();
            let post = client.post(up["upload_url"].as_str().unwrap_or_default()).multipart(form.part("file", part));
            let t = Instant::now();
            let ok = post.send().await.is_ok_and(|r| r.status().is_success());
            stats.record("S3 POST (presigned)", t.elapsed(), ok, window);
            let confirm = client.post(format!("{api}/participant/conversations/{cid}/confirm-upload")).json(&json!({
                "chunk_id": up["chunk_id"], "file_url": up["file_url"], "timestamp": chrono::Utc::now().to_rfc3339()
            }));
            timed(&stats, "POST confirm-upload", window, confirm).await;
        } else {
            tokio::time::sleep_until(next_poll.into()).await;
            next_poll += POLL_EVERY;
            let base = format!("{api}/participant/projects/{DEMO_PROJECT_ID}/conversations/{cid}");
            timed(&stats, "GET conversation", window, client.get(&base)).await;
            timed(&stats, "GET chunks", window, client.get(format!("{base}/chunks"))).await;
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
}

/// The model (docs/scaling.md): requests per portal per second, and Directus calls per request.
const MODEL: [(&str, f64, f64); 6] = [
    ("POST get-upload-url", 1.0 / 30.0, 2.0),
    ("S3 POST (presigned)", 1.0 / 30.0, 0.0),
    ("POST confirm-upload", 1.0 / 30.0, 4.0),
    ("GET conversation", 1.0 / 60.0, 2.0),
    ("GET chunks", 1.0 / 60.0, 3.0),
    ("POST initiate", 0.0, 2.0),
];

async fn simulate(portals: usize, measure: Duration) {
    let directus = Arc::new(Directus {
        latency: Duration::from_millis(env_or("SIM_DIRECTUS_MS", "20").parse().unwrap()),
        service: Duration::from_millis(env_or("SIM_DIRECTUS_SERVICE_MS", "6").parse().unwrap()),
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let directus_url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback({
        let d = directus.clone();
        move |m: Method, u: Uri, b: Bytes| serve_directus(d.clone(), m, u, b)
    });
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let mut options = LocalOptions::for_tests(dir.path());
    options.settings.store =
        StoreSettings::Directus { base_url: directus_url, token: Some("sim".into()), timeout_seconds: 30, page_size: 500 };
    let echo = local::start(options).await.unwrap();
    let api = format!("{}/api", echo.api_url);
    let client = reqwest::Client::builder().pool_max_idle_per_host(portals).timeout(Duration::from_secs(60)).build().unwrap();

    let stats = Arc::new(Stats::default());
    let from = Instant::now() + RAMP;
    let window = (from, from + measure);
    // Directus requests and queue messages are counted inside the window only: portals still
    // waiting on an overloaded Directus finish after it, and their calls are not in its rate.
    let counter = {
        let (directus, queue) = (directus.clone(), echo.queue.clone());
        tokio::spawn(async move {
            tokio::time::sleep_until(from.into()).await;
            let before = queue.snapshot().len();
            directus.counting.store(true, std::sync::atomic::Ordering::Relaxed);
            tokio::time::sleep_until(window.1.into()).await;
            directus.counting.store(false, std::sync::atomic::Ordering::Relaxed);
            queue.snapshot().len() - before
        })
    };
    let mut tasks = Vec::new();
    for i in 0..portals {
        let phase = RAMP.mul_f64(i as f64 / portals as f64);
        tasks.push(tokio::spawn(portal(api.clone(), client.clone(), stats.clone(), phase, window)));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let messages = counter.await.unwrap();
    let secs = measure.as_secs_f64();

    println!("\nN = {portals} portals, {} s window after a {} s ramp", measure.as_secs(), RAMP.as_secs());
    println!("{:<22} {:>10} {:>10} {:>8} {:>8} {:>8} {:>7}", "route", "model/s", "measured/s", "p50 ms", "p99 ms", "max ms", "failed");
    let routes = stats.routes.lock().unwrap();
    let mut model_directus = 0.0;
    for (route, per_portal, calls) in MODEL {
        let model = per_portal * portals as f64;
        model_directus += model * calls;
        let (mut lat, failed) = routes.get(route).cloned().unwrap_or_default();
        lat.sort();
        println!(
            "{route:<22} {model:>10.1} {:>10.1} {:>8.1} {:>8.1} {:>8.1} {failed:>7}",
            lat.len() as f64 / secs,
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            percentile(&lat, 1.0)
        );
    }
    let counts = directus.counts.lock().unwrap();
    let total: u64 = counts.values().sum();
    println!("Directus: model {model_directus:.1} req/s, measured {:.1} req/s", total as f64 / secs);
    for (key, n) in counts.iter() {
        println!("  {key:<36} {:>8.1} req/s", *n as f64 / secs);
    }
    println!("queue messages published: model {:.1}/s (API side), measured {:.1}/s", portals as f64 / 30.0, messages as f64 / secs);
    drop(echo);
    server.abort();
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let measure = Duration::from_secs(env_or("SIM_SECONDS", "60").parse().unwrap());
    for n in env_or("SIM_PORTALS", "100,1000").split(',') {
        runtime.block_on(simulate(n.trim().parse().unwrap(), measure));
    }
}
