-- The dashboard chat (data-model.md §3.15-§3.18). Message junction rows keep Directus's
-- SET NULL on both sides, so deleting a message leaves its rows pointing at nothing.

CREATE TABLE project_chat (
    id TEXT PRIMARY KEY,
    project_id TEXT REFERENCES project(id) ON DELETE CASCADE,
    name TEXT,
    auto_select INTEGER DEFAULT 1,
    date_created TEXT NOT NULL,
    date_updated TEXT
);

CREATE TABLE project_chat_conversation (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_chat_id TEXT REFERENCES project_chat(id) ON DELETE CASCADE,
    conversation_id TEXT REFERENCES conversation(id) ON DELETE CASCADE
);
CREATE INDEX project_chat_conversation_chat ON project_chat_conversation(project_chat_id);

CREATE TABLE project_chat_message (
    id TEXT PRIMARY KEY,
    project_chat_id TEXT REFERENCES project_chat(id) ON DELETE CASCADE,
    message_from TEXT,
    text TEXT,
    tokens_count INTEGER,
    template_key TEXT,
    date_created TEXT NOT NULL,
    date_updated TEXT
);
CREATE INDEX project_chat_message_chat ON project_chat_message(project_chat_id, date_created);

CREATE TABLE project_chat_message_conversation (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_chat_message_id TEXT REFERENCES project_chat_message(id) ON DELETE SET NULL,
    conversation_id TEXT REFERENCES conversation(id) ON DELETE SET NULL
);
CREATE INDEX project_chat_message_conversation_message ON project_chat_message_conversation(project_chat_message_id);

CREATE TABLE project_chat_message_conversation_1 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_chat_message_id TEXT REFERENCES project_chat_message(id) ON DELETE SET NULL,
    conversation_id TEXT REFERENCES conversation(id) ON DELETE SET NULL
);
CREATE INDEX project_chat_message_conversation_1_message ON project_chat_message_conversation_1(project_chat_message_id);
