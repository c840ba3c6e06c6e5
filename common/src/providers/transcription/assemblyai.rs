//! AssemblyAI's v2 transcript API (processing.md §5.3): submit an audio URL, then poll.

use std::time::Duration;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Value, json};

use crate::config::TranscriptionSettings;

use super::{TranscribeError, http_client, parse_json, required, success_body, transport, truncate};

/// Per-request timeout of AssemblyAI submissions and polls (ECHO set none).
pub const DEFAULT_ASSEMBLYAI_TIMEOUT: Duration = Duration::from_secs(30);
/// Languages AssemblyAI's language detection may pick from (§5.3).
pub const ASSEMBLYAI_EXPECTED_LANGUAGES: [&str; 7] = ["nl", "fr", "es", "de", "it", "pt", "en"];
/// What must be escaped in one URL path segment.
const PATH_SEGMENT: &AsciiSet =
    &CONTROLS.add(b' ').add(b'"').add(b'#').add(b'%').add(b'/').add(b'<').add(b'>').add(b'?').add(b'`').add(b'{').add(b'}');

/// AssemblyAI's v2 transcript API: submit, then poll.
#[derive(Debug, Clone)]
pub struct AssemblyAi {
    http: reqwest::Client,
    base_url: String,
    api_key: String,
    timeout: Duration,
}

/// A transcript's state, from `GET /v2/transcript/{id}`.
#[derive(Debug, Clone, PartialEq)]
pub enum AssemblyAiStatus {
    Queued,
    Processing,
    /// `text` (`""` when AssemblyAI sent none), `words` as sent (`null` when absent), and the
    /// whole answer.
    Completed {
        text: String,
        words: Value,
        raw: Value,
    },
    /// The transcript failed; AssemblyAI's `error` text.
    Error(String),
}

impl AssemblyAi {
    /// `base_url` is `ASSEMBLYAI_BASE_URL` (for example `https://api.eu.assemblyai.com`).
    pub fn new(base_url: &str, api_key: &str) -> Self {
        AssemblyAi {
            http: http_client(),
            base_url: base_url.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            timeout: DEFAULT_ASSEMBLYAI_TIMEOUT,
        }
    }

    /// From `ASSEMBLYAI_BASE_URL` and `ASSEMBLYAI_API_KEY`.
    pub fn from_settings(settings: &TranscriptionSettings) -> Result<Self, TranscribeError> {
        Ok(Self::new(&settings.assemblyai_base_url, required(&settings.assemblyai_api_key, "ASSEMBLYAI_API_KEY")?))
    }

    /// Per-request timeout; default [`DEFAULT_ASSEMBLYAI_TIMEOUT`].
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `POST /v2/transcript` with the body of §5.3; the transcript (job) id.
    pub async fn submit(&self, audio_url: &str, language: &str, hotwords: &[String]) -> Result<String, TranscribeError> {
        let res = self
            .http
            .post(format!("{}/v2/transcript", self.base_url))
            .bearer_auth(&self.api_key)
            .timeout(self.timeout)
            .json(&assemblyai_request(audio_url, language, hotwords))
            .send()
            .await
            .map_err(transport)?;
        let value = parse_json(success_body(res).await?).await?;
        match &value["id"] {
            Value::String(id) if !id.is_empty() => Ok(id.clone()),
            _ => Err(TranscribeError::Other(format!("no transcript id in {}", truncate(&value.to_string())))),
        }
    }

    /// `GET /v2/transcript/{job_id}`: where the transcript is.
    pub async fn poll(&self, job_id: &str) -> Result<AssemblyAiStatus, TranscribeError> {
        let id = utf8_percent_encode(job_id, PATH_SEGMENT);
        let res = self
            .http
            .get(format!("{}/v2/transcript/{id}", self.base_url))
            .bearer_auth(&self.api_key)
            .timeout(self.timeout)
            .send()
            .await
            .map_err(transport)?;
        parse_assemblyai_status(parse_json(success_body(res).await?).await?)
    }
}

/// The submission body: universal model, language detection among the expected languages with
/// `language` as the fallback (`"en"` for `"auto"`, `"multi"` or empty), and the hotwords as key terms
/// when there are any.
fn assemblyai_request(audio_url: &str, language: &str, hotwords: &[String]) -> Value {
    let fallback = if matches!(language, "" | "auto" | "multi") { "en" } else { language };
    let mut body = json!({
        "audio_url": audio_url,
        "speech_model": "universal",
        "language_detection": true,
        "language_detection_options": {
            "expected_languages": ASSEMBLYAI_EXPECTED_LANGUAGES,
            "fallback_language": fallback,
        },
    });
    let keyterms: Vec<&str> = hotwords.iter().map(|w| w.trim()).filter(|w| !w.is_empty()).collect();
    if !keyterms.is_empty() {
        body["keyterms_prompt"] = json!(keyterms);
    }
    body
}

fn parse_assemblyai_status(value: Value) -> Result<AssemblyAiStatus, TranscribeError> {
    match value["status"].as_str().unwrap_or_default() {
        "queued" => Ok(AssemblyAiStatus::Queued),
        "processing" => Ok(AssemblyAiStatus::Processing),
        "completed" => {
            let text = value["text"].as_str().unwrap_or_default().to_string();
            let words = value.get("words").cloned().unwrap_or(Value::Null);
            Ok(AssemblyAiStatus::Completed { text, words, raw: value })
        }
        "error" => Ok(AssemblyAiStatus::Error(value["error"].as_str().unwrap_or("unknown error").to_string())),
        other => Err(TranscribeError::Other(format!("unknown AssemblyAI status {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn assemblyai_body_follows_the_spec() {
        let body = assemblyai_request("https://s3/a.mp3?sig", "nl", &["Dembrane".into(), " ".into()]);
        assert_eq!(
            body,
            json!({
                "audio_url": "https://s3/a.mp3?sig",
                "speech_model": "universal",
                "language_detection": true,
                "language_detection_options": {
                    "expected_languages": ["nl", "fr", "es", "de", "it", "pt", "en"],
                    "fallback_language": "nl",
                },
                "keyterms_prompt": ["Dembrane"],
            })
        );
        let body = assemblyai_request("u", "auto", &[]);
        assert_eq!(body["language_detection_options"]["fallback_language"], "en");
        assert!(body.get("keyterms_prompt").is_none(), "no key terms without hotwords");
    }

    #[test]
    fn assemblyai_statuses_parse() {
        assert_eq!(parse_assemblyai_status(json!({"id": "t", "status": "queued"})).unwrap(), AssemblyAiStatus::Queued);
        assert_eq!(parse_assemblyai_status(json!({"status": "processing"})).unwrap(), AssemblyAiStatus::Processing);
        let raw = json!({"id": "t", "status": "completed", "text": "Hi there.", "words": [{"text": "Hi", "start": 0, "end": 200}]});
        let AssemblyAiStatus::Completed { text, words, raw: got } = parse_assemblyai_status(raw.clone()).unwrap() else { panic!() };
        assert_eq!((text.as_str(), &words, &got), ("Hi there.", &raw["words"], &raw));
        let AssemblyAiStatus::Completed { text, words, .. } =
            parse_assemblyai_status(json!({"status": "completed", "text": null})).unwrap()
        else {
            panic!()
        };
        assert_eq!((text.as_str(), words), ("", Value::Null));
        assert_eq!(
            parse_assemblyai_status(json!({"status": "error", "error": "Download error"})).unwrap(),
            AssemblyAiStatus::Error("Download error".into())
        );
        assert!(matches!(parse_assemblyai_status(json!({"status": "weird"})), Err(TranscribeError::Other(_))));
    }
}
