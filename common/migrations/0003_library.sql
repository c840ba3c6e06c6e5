-- The topic modeler's output that the library tasks read (data-model.md §3.12). The modeler
-- writes it; here only `view` is needed, for task_create_view's "already written" guard.

CREATE TABLE view (
    id TEXT PRIMARY KEY,
    project_analysis_run_id TEXT REFERENCES project_analysis_run(id) ON DELETE SET NULL,
    name TEXT,
    description TEXT,
    summary TEXT,
    language TEXT,
    user_input TEXT,
    user_input_description TEXT,
    created_at TEXT,
    updated_at TEXT
);
CREATE INDEX view_run ON view(project_analysis_run_id);
