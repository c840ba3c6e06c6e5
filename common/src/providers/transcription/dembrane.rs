//! The `Dembrane-25-09` correction pass (processing.md §5.3): Gemini on Vertex AI hears the
//! chunk and corrects AssemblyAI's transcript under a JSON schema.

use serde_json::json;

use crate::providers::vertex::{Part, VertexClient, VertexError};

/// The Gemini model of the `Dembrane-25-09` correction pass.
pub const CORRECTION_MODEL: &str = "gemini-2.5-flash";
/// What an empty corrected transcript is stored as.
pub const NOTHING_TO_TRANSCRIBE: &str = "[Nothing to transcribe]";

/// The `Dembrane-25-09` correction pass: Gemini hears the audio and corrects AssemblyAI's
/// candidate; `(transcript, note)`, an empty transcript stored as [`NOTHING_TO_TRANSCRIBE`].
pub async fn correct_transcript(
    vertex: &VertexClient,
    candidate: &str,
    mp3: Vec<u8>,
    hotwords: &[String],
    pii_redaction: bool,
) -> Result<(String, String), VertexError> {
    let system = crate::providers::prompts::render(
        "transcript_correction_workflow",
        "en",
        json!({ "hotwords_str": hotwords.join(", "), "pii_redaction": pii_redaction }),
    )
    .map_err(|e| VertexError::Config(e.to_string()))?;
    let schema = json!({
        "type": "OBJECT",
        "properties": { "corrected_transcript": { "type": "STRING" }, "note": { "type": "STRING" } },
        "required": ["corrected_transcript", "note"],
    });
    let parts = vec![Part::Text(candidate.to_string()), Part::Inline { mime_type: "audio/mp3".into(), data: mp3 }];
    let answer = vertex.generate_json(CORRECTION_MODEL, &system, parts, schema).await?;
    let (Some(transcript), Some(note)) = (answer["corrected_transcript"].as_str(), answer["note"].as_str()) else {
        return Err(VertexError::Transient("the correction lacks corrected_transcript or note".into()));
    };
    let transcript = if transcript.trim().is_empty() { NOTHING_TO_TRANSCRIBE.to_string() } else { transcript.to_string() };
    Ok((transcript, note.to_string()))
}
