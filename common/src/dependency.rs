//! The backends a request or task depends on, named so an outage can be reported by which one.

/// A backend whose outage is reported by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Directus,
    Database,
    Storage,
    Queue,
    Rag,
    Llm,
    /// The Postgres database of the legacy `document` table (spec/api.md §2.7).
    Resources,
}

impl Dependency {
    pub fn unavailable_detail(self) -> &'static str {
        match self {
            Dependency::Directus => "Directus is unavailable, please try again later",
            Dependency::Database => "Database is unavailable, please try again later",
            Dependency::Storage => "Storage is unavailable, please try again later",
            Dependency::Queue => "Task queue is unavailable, please try again later",
            Dependency::Rag => "RAG service is unavailable, please try again later",
            Dependency::Llm => "LLM provider is unavailable, please try again later",
            // The spec's own text for every resources outage: unset, no table, or down.
            Dependency::Resources => "Resources are unavailable",
        }
    }
}
