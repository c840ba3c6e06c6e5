//! `cargo bench --bench rag`: restricted retrieval on a synthetic corpus of 15 projects x 10
//! segments (every project on the same themes, each with its own marker word), on real
//! `lightrag-server` 1.5.7 processes started with scripts/lightrag.sh (their LLM and embeddings
//! from scripts/fake_openai.py, a deterministic bag-of-words stand-in).
//!
//! - chunk recall: the chunks of a project-restricted `get_lightrag_prompt` (through echo-local
//!   over HTTP, the shared server holding all 150 segments) that the same query on that project
//!   indexed alone (a server of its own per project) also puts into its prompt;
//! - p50 / p90 latency of `POST /api/stateless/rag/get_lightrag_prompt`;
//! - leakage: prompts holding another project's marker (must be 0).
//!
//! Numbers go to docs/benchmarks.md. Needs python3 and the server's venv (the script installs it).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::providers::rag::{DocStatus, Inserted, LightRagClient, LightRagConfig, RagIndex, restricted_prompt};
use common::store::{NewConversation, NewProject, NewSegment};
use serde_json::{Value, json};

const PROJECTS: usize = 15;
const SEGMENTS: usize = 10;
const TOP_K: u32 = 60;
const JWT_SECRET: &str = "bench-directus-secret";
const THEMES: [&str; 10] = [
    "the park budget and new benches",
    "traffic and parking near the primary school",
    "library opening hours on weekends",
    "affordable housing for young families",
    "bicycle lanes along the canal",
    "noise from the night market",
    "the community garden and compost",
    "bus connections to the hospital",
    "street lighting and safety at night",
    "the swimming pool renovation",
];
const QUERIES: [&str; 5] = [
    "What did residents say about the park budget and benches?",
    "parking and traffic near the school",
    "Which concerns came up about housing for young families?",
    "safety at night, street lighting",
    "What about bus connections and the hospital?",
];
const TOWNS: [&str; 15] = [
    "Aldmoor",
    "Brackwell",
    "Corrindale",
    "Dunmere",
    "Eastholm",
    "Fernley",
    "Glenrow",
    "Harwick",
    "Ivybridge",
    "Jarrowby",
    "Kestford",
    "Lowmarsh",
    "Millbrook",
    "Northam",
    "Oakhurst",
];

/// A server of scripts/lightrag.sh: its URL, key and directory (stopped on drop).
struct Server {
    url: String,
    key: String,
    dir: String,
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl Server {
    fn start() -> Server {
        let out = std::process::Command::new("bash").arg("scripts/lightrag.sh").arg("start").current_dir(workspace()).output().unwrap();
        assert!(out.status.success(), "scripts/lightrag.sh start failed: {}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8(out.stdout).unwrap();
        let value = |name: &str| {
            let word = text.split_whitespace().find(|w| w.starts_with(&format!("{name}="))).unwrap_or_else(|| panic!("{name} in {text}"));
            word[name.len() + 1..].to_string()
        };
        Server { url: value("LIGHTRAG_SERVER_URL"), key: value("LIGHTRAG_API_KEY"), dir: value("ECHO_LIGHTRAG_DIR") }
    }

    fn client(&self) -> LightRagClient {
        LightRagClient::new(LightRagConfig::new(self.url.clone(), Some(self.key.clone()))).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash").arg("scripts/lightrag.sh").arg("stop").arg(&self.dir).current_dir(workspace()).status();
    }
}

/// (project id, owner, its segments as (id, text)).
type Project = (String, String, Vec<(i64, String)>);

fn marker(p: usize) -> String {
    format!("Zx{p}qmark")
}

/// Segment s of project p: its theme, its town, its marker, and words shared across projects.
fn text(p: usize, s: usize) -> String {
    let (town, theme, m) = (TOWNS[p], THEMES[s], marker(p));
    format!(
        "In {town} ({m}) residents discussed {theme}. Several people in {town} said {theme} matters for the neighbourhood, \
         and the council of {town} promised to look at {theme} again. One resident added that {} also deserves attention.",
        THEMES[(s + p) % THEMES.len()]
    )
}

/// Inserts and waits until every document is processed (by its track id).
async fn index(rag: &LightRagClient, docs: &[(i64, String)]) {
    let mut tracks = Vec::new();
    for (id, text) in docs {
        match rag.insert_segment(*id, text).await.unwrap() {
            Inserted::Accepted { track_id } => tracks.push(track_id),
            other => panic!("segment {id}: {other:?}"),
        }
    }
    for track in tracks {
        for attempt in 0.. {
            assert!(attempt < 1200, "track {track} not indexed in 5 minutes");
            let docs = rag.track_status(&track).await.unwrap();
            if !docs.is_empty() && docs.iter().all(|d| d.status == Some(DocStatus::Processed)) {
                break;
            }
            assert!(docs.iter().all(|d| d.status != Some(DocStatus::Failed)), "{docs:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

/// The chunk contents of a prompt (its `{"reference_id": .., "content": ..}` lines).
fn chunks(prompt: &str) -> BTreeSet<String> {
    prompt
        .lines()
        .filter(|l| l.starts_with("{\"reference_id\""))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["content"].as_str().map(str::to_string))
        .collect()
}

fn pct(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * q).round() as usize]
}

#[tokio::main]
async fn main() {
    let started = Instant::now();
    let shared = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let mut options = local::LocalOptions::for_tests(dir.path());
    options.settings.auth.directus_secret = Some(JWT_SECRET.into());
    options.settings.rag.server_url = Some(shared.url.clone());
    options.settings.rag.api_key = Some(shared.key.clone());
    let app = local::start(options).await.unwrap();

    // The corpus in echo-local's store (projects, one conversation per segment) and on the server.
    let mut corpus: Vec<Project> = Vec::new();
    for p in 0..PROJECTS {
        let (project, owner) = (uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v4().to_string());
        let new = NewProject { id: project.clone(), directus_user_id: Some(owner.clone()), ..Default::default() };
        app.store.create_project(new).await.unwrap();
        let mut docs = Vec::new();
        for s in 0..SEGMENTS {
            let cid = uuid::Uuid::new_v4().to_string();
            app.store
                .create_conversation(NewConversation { id: cid.clone(), project_id: project.clone(), ..Default::default() })
                .await
                .unwrap();
            let segment = NewSegment { conversation_id: cid, transcript: Some(text(p, s)), contextual_transcript: None };
            docs.push((app.store.create_segment(segment).await.unwrap().id, text(p, s)));
        }
        corpus.push((project, owner, docs));
    }
    let all: Vec<(i64, String)> = corpus.iter().flat_map(|(_, _, d)| d.clone()).collect();
    let t = Instant::now();
    index(&shared.client(), &all).await;
    eprintln!("indexed {} segments on the shared server in {:.0} s", all.len(), t.elapsed().as_secs_f64());

    let http = reqwest::Client::new();
    let url = format!("{}/api/stateless/rag/get_lightrag_prompt", app.api_url);
    let (mut latencies, mut leaks, mut prompts) = (Vec::new(), 0, 0);
    let (mut kept, mut reference, mut own_chunks) = (0usize, 0usize, 0usize);
    for (p, (project, owner, docs)) in corpus.iter().enumerate() {
        let token = common::web::auth::sign(&json!({"id": owner, "admin_access": false, "exp": 4102444800u64}), JWT_SECRET);
        let alone = Server::start();
        index(&alone.client(), docs).await;
        for query in QUERIES {
            let t = Instant::now();
            let res = http
                .post(&url)
                .bearer_auth(&token)
                .json(&json!({"query": query, "echo_project_ids": [project], "top_k": TOP_K}))
                .send()
                .await;
            let prompt: Value = res.unwrap().json().await.unwrap();
            latencies.push(t.elapsed());
            let prompt = prompt.as_str().unwrap_or_else(|| panic!("not a prompt: {prompt}")).to_string();
            prompts += 1;
            leaks += usize::from((0..PROJECTS).filter(|o| *o != p).any(|o| prompt.contains(&marker(o))));
            let restricted = chunks(&prompt);
            own_chunks += restricted.iter().filter(|c| c.contains(&marker(p))).count();
            let alone_prompt = restricted_prompt(&alone.client(), query, "mix", TOP_K, None, &[]).await.unwrap();
            let expected = chunks(&alone_prompt.text);
            reference += expected.len();
            kept += expected.intersection(&restricted).count();
        }
        eprintln!("project {p}: {kept} of {reference} reference chunks so far");
    }
    let p50 = pct(&mut latencies, 0.5);
    let p90 = pct(&mut latencies, 0.9);
    println!("corpus: {PROJECTS} projects x {SEGMENTS} segments; {prompts} restricted prompts (top_k {TOP_K}, candidates 250/250)");
    println!("chunk recall vs the project indexed alone: {kept} / {reference} = {:.1} %", 100.0 * kept as f64 / reference as f64);
    println!("chunks in restricted prompts (all the project's own): {own_chunks}");
    println!("get_lightrag_prompt over HTTP: p50 {:.0} ms, p90 {:.0} ms", p50.as_secs_f64() * 1e3, p90.as_secs_f64() * 1e3);
    println!("prompts with another project's marker: {leaks} of {prompts}");
    println!("total {:.0} s", started.elapsed().as_secs_f64());
    assert_eq!(leaks, 0, "leakage must be 0");
}
