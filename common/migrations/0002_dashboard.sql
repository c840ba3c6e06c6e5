-- Collections the dashboard endpoints and the workers touch (data-model.md §3.6-§3.13).


CREATE TABLE conversation_segment (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id TEXT REFERENCES conversation(id) ON DELETE CASCADE,
    transcript TEXT,
    contextual_transcript TEXT,
    lightrag_flag INTEGER DEFAULT 0,
    config_id TEXT,
    counter REAL,
    path TEXT
);
CREATE INDEX conversation_segment_conversation ON conversation_segment(conversation_id);

CREATE TABLE conversation_segment_conversation_chunk (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_segment_id INTEGER REFERENCES conversation_segment(id) ON DELETE CASCADE,
    conversation_chunk_id TEXT REFERENCES conversation_chunk(id) ON DELETE CASCADE
);
CREATE INDEX segment_chunk_chunk ON conversation_segment_conversation_chunk(conversation_chunk_id);

CREATE TABLE conversation_reply (
    id TEXT PRIMARY KEY,
    conversation_id TEXT,
    reply TEXT REFERENCES conversation(id) ON DELETE SET NULL,
    content_text TEXT,
    type TEXT,
    sort INTEGER,
    date_created TEXT NOT NULL
);
CREATE INDEX conversation_reply_conversation ON conversation_reply(conversation_id, date_created);

CREATE TABLE conversation_link (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    source_conversation_id TEXT REFERENCES conversation(id) ON DELETE SET NULL,
    target_conversation_id TEXT REFERENCES conversation(id) ON DELETE SET NULL,
    link_type TEXT,
    date_created TEXT NOT NULL,
    date_updated TEXT
);

CREATE TABLE project_analysis_run (
    id TEXT PRIMARY KEY,
    project_id TEXT REFERENCES project(id) ON DELETE CASCADE,
    created_at TEXT NOT NULL,
    updated_at TEXT
);
CREATE INDEX project_analysis_run_project ON project_analysis_run(project_id, created_at);

CREATE TABLE project_report (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    status TEXT NOT NULL DEFAULT 'published',
    content TEXT,
    project_id TEXT REFERENCES project(id) ON DELETE SET NULL,
    language TEXT,
    error_code TEXT,
    show_portal_link INTEGER DEFAULT 0,
    date_created TEXT NOT NULL,
    date_updated TEXT
);

CREATE TABLE processing_status (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    timestamp TEXT NOT NULL,
    event TEXT,
    message TEXT,
    duration_ms INTEGER,
    parent INTEGER REFERENCES processing_status(id),
    conversation_id TEXT REFERENCES conversation(id) ON DELETE SET NULL,
    conversation_chunk_id TEXT REFERENCES conversation_chunk(id) ON DELETE SET NULL,
    project_id TEXT REFERENCES project(id) ON DELETE SET NULL,
    project_analysis_run_id TEXT REFERENCES project_analysis_run(id) ON DELETE SET NULL
);
