//! The external APIs: LLMs, transcription (one file per provider), Vertex AI, LightRAG, and
//! what feeds them (prompt templates, token counts).

pub mod llm;
pub mod prompts;
pub mod rag;
pub mod tokens;
pub mod transcription;
pub mod vertex;
