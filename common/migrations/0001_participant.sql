-- ECHO's collections as the participant flow uses them; names follow Directus (data-model.md §3).
-- Timestamps are ISO 8601 UTC text with milliseconds, so text order is time order.

CREATE TABLE project (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT,
    directus_user_id TEXT,
    name TEXT,
    language TEXT,
    context TEXT,
    is_conversation_allowed INTEGER NOT NULL,
    is_get_reply_enabled INTEGER DEFAULT 0,
    is_project_notification_subscription_allowed INTEGER DEFAULT 0,
    is_enhanced_audio_processing_enabled INTEGER DEFAULT 0,
    get_reply_prompt TEXT,
    get_reply_mode TEXT DEFAULT 'summarize',
    image_generation_model TEXT DEFAULT 'PLACEHOLDER',
    default_conversation_title TEXT,
    default_conversation_description TEXT,
    default_conversation_finish_text TEXT,
    default_conversation_ask_for_participant_name INTEGER DEFAULT 1,
    default_conversation_tutorial_slug TEXT DEFAULT 'none',
    default_conversation_transcript_prompt TEXT,
    conversation_ask_for_participant_name_label TEXT
);

CREATE TABLE project_tag (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES project(id) ON DELETE CASCADE,
    text TEXT,
    sort INTEGER,
    created_at TEXT NOT NULL,
    updated_at TEXT
);
CREATE INDEX project_tag_project ON project_tag(project_id);

CREATE TABLE conversation (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT,
    project_id TEXT NOT NULL REFERENCES project(id) ON DELETE CASCADE,
    participant_name TEXT,
    participant_email TEXT,
    participant_user_agent TEXT,
    source TEXT,
    summary TEXT,
    duration REAL,
    merged_audio_path TEXT,
    merged_transcript TEXT,
    is_finished INTEGER DEFAULT 0,
    is_all_chunks_transcribed INTEGER,
    is_audio_processing_finished INTEGER DEFAULT 0
);
CREATE INDEX conversation_project ON conversation(project_id, created_at);

CREATE TABLE conversation_project_tag (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT REFERENCES conversation(id) ON DELETE SET NULL,
    project_tag_id TEXT REFERENCES project_tag(id) ON DELETE SET NULL
);
CREATE INDEX conversation_project_tag_conversation ON conversation_project_tag(conversation_id);

CREATE TABLE conversation_chunk (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT,
    conversation_id TEXT NOT NULL REFERENCES conversation(id) ON DELETE CASCADE,
    timestamp TEXT NOT NULL,
    path TEXT CHECK (path IS NULL OR length(path) <= 255),
    source TEXT,
    transcript TEXT,
    raw_transcript TEXT,
    error TEXT,
    diarization TEXT,
    runpod_request_count INTEGER DEFAULT 0,
    runpod_job_status_link TEXT,
    hallucination_reason TEXT,
    hallucination_score REAL,
    desired_language TEXT,
    detected_language TEXT,
    detected_language_confidence REAL,
    noise_ratio REAL DEFAULT 0,
    silence_ratio REAL DEFAULT 0,
    cross_talk_instances INTEGER DEFAULT 0
);
CREATE INDEX conversation_chunk_conversation ON conversation_chunk(conversation_id, timestamp, id);

CREATE TABLE project_report_notification_participants (
    id TEXT PRIMARY KEY,
    email TEXT,
    project_id TEXT,
    conversation_id TEXT REFERENCES conversation(id) ON DELETE SET NULL,
    email_opt_in INTEGER DEFAULT 1,
    email_opt_out_token TEXT NOT NULL,
    sort INTEGER,
    date_submitted TEXT NOT NULL,
    date_updated TEXT
);
CREATE INDEX notification_email ON project_report_notification_participants(project_id, email);
CREATE INDEX notification_token ON project_report_notification_participants(project_id, email_opt_out_token);
