//! `task_get_runpod_diarization` (processing.md §8.1): noise, silence and cross-talk of a
//! chunk from RunPod's diarization job, for the conversation health stream. An optional
//! feature: every failure is logged and the task succeeds (as ECHO).

use std::time::{Duration, Instant};

use common::Services;
use common::queue::worker::Done;
use common::store::ChunkPatch;
use serde_json::{Value, json};

const POLL_EVERY: Duration = Duration::from_secs(3);

pub async fn run(services: &Services, chunk_id: &str) -> Done {
    match diarize(services, chunk_id).await {
        Ok(done) => done,
        Err(reason) => {
            tracing::warn!(chunk_id, %reason, "diarization failed");
            Done::Skipped(format!("diarization failed: {reason}"))
        }
    }
}

async fn diarize(services: &Services, chunk_id: &str) -> Result<Done, String> {
    let settings = &services.settings.diarization;
    if !services.settings.runpod_diarization {
        return Ok(Done::Skipped("diarization is off".into()));
    }
    let (Some(base), Some(key)) = (&settings.base_url, &settings.api_key) else {
        return Ok(Done::Skipped("RUNPOD_DIARIZATION_BASE_URL / _API_KEY are not set".into()));
    };
    let Some(chunk) = services.store.get_chunk(chunk_id).await.map_err(|e| e.to_string())? else {
        return Ok(Done::Skipped("chunk is gone".into()));
    };
    let Some(conversation) = services.store.get_conversation(&chunk.conversation_id).await.map_err(|e| e.to_string())? else {
        return Ok(Done::Skipped("conversation is gone".into()));
    };
    let language = services
        .store
        .get_project(&conversation.project_id)
        .await
        .map_err(|e| e.to_string())?
        .and_then(|p| p.language)
        .unwrap_or_else(|| "en".into());
    if settings.english_only && language != "en" {
        return Ok(Done::Skipped("multilingual diarization is disabled".into()));
    }
    let key_path = chunk.path.as_deref().and_then(|p| services.blob.key_from_url(p)).ok_or("the chunk has no audio")?;
    let audio = services.blob.presigned_get(&key_path, Duration::from_secs(3600)).await.map_err(|e| e.to_string())?;

    let budget = Duration::from_secs(settings.timeout_seconds.max(1));
    let http = reqwest::Client::builder().timeout(budget).build().map_err(|e| e.to_string())?;
    let started: Value = http
        .post(format!("{base}/run"))
        .bearer_auth(key)
        .json(&json!({"input": {"audio": audio, "language": language}}))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .error_for_status()
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let job = started["id"].as_str().ok_or("RunPod answered without a job id")?.to_string();
    let deadline = Instant::now() + budget;
    loop {
        let status: Value = http
            .get(format!("{base}/status/{job}"))
            .bearer_auth(key)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        match status["status"].as_str() {
            Some("COMPLETED") => return write(services, chunk_id, &status["output"]).await,
            Some("FAILED" | "CANCELLED" | "TIMED_OUT") => return Err(format!("job {job} ended {}", status["status"])),
            _ if Instant::now() + POLL_EVERY < deadline => tokio::time::sleep(POLL_EVERY).await,
            _ => {
                let _ = http.post(format!("{base}/cancel/{job}")).bearer_auth(key).send().await;
                return Err(format!("job {job} did not finish within {} s; cancelled", budget.as_secs()));
            }
        }
    }
}

async fn write(services: &Services, chunk_id: &str, output: &Value) -> Result<Done, String> {
    if output.is_null() {
        return Err("completed without output".into());
    }
    let patch = ChunkPatch {
        noise_ratio: output["noise_ratio"].as_f64(),
        silence_ratio: output["silence_ratio"].as_f64(),
        cross_talk_instances: output["cross_talk_instances"].as_f64(),
        diarization: Some(output["joined_diarization"].clone()).filter(|d| !d.is_null()),
        ..Default::default()
    };
    services.store.update_chunk(chunk_id, patch).await.map_err(|e| e.to_string())?;
    Ok(Done::Completed)
}
