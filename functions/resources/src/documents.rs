//! The `document` table's operations (spec/data-model.md §3.20). Values only ever travel as
//! typed parameters, never inside the SQL text.

use chrono::{DateTime, Utc};
use tokio_postgres::Row;
use tokio_postgres::types::Type;
use uuid::Uuid;

use crate::db::{Database, DbError};

/// One row of `document`.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub id: Uuid,
    pub created_at: Option<DateTime<Utc>>,
    pub updated_at: Option<DateTime<Utc>>,
    pub project_id: Option<Uuid>,
    pub original_filename: Option<String>,
    pub kind: Option<String>,
    pub path: Option<String>,
    pub title: Option<String>,
    pub description: Option<String>,
    pub context: Option<String>,
    pub is_processed: Option<bool>,
    pub processing_error: Option<String>,
}

/// New text for a document; `None` or `""` keeps the stored value (as ECHO's `x or stored`).
#[derive(Debug, Clone, Default)]
pub struct DocumentPatch {
    pub title: Option<String>,
    pub description: Option<String>,
    pub context: Option<String>,
}

const COLUMNS: &str =
    "id, created_at, updated_at, project_id, original_filename, type, path, title, description, context, is_processed, processing_error";

fn from_row(row: &Row) -> Result<Document, DbError> {
    let bad = |e: tokio_postgres::Error| DbError::Other(format!("document row: {e}"));
    Ok(Document {
        id: row.try_get("id").map_err(bad)?,
        created_at: row.try_get("created_at").map_err(bad)?,
        updated_at: row.try_get("updated_at").map_err(bad)?,
        project_id: row.try_get("project_id").map_err(bad)?,
        original_filename: row.try_get("original_filename").map_err(bad)?,
        kind: row.try_get("type").map_err(bad)?,
        path: row.try_get("path").map_err(bad)?,
        title: row.try_get("title").map_err(bad)?,
        description: row.try_get("description").map_err(bad)?,
        context: row.try_get("context").map_err(bad)?,
        is_processed: row.try_get("is_processed").map_err(bad)?,
        processing_error: row.try_get("processing_error").map_err(bad)?,
    })
}

fn first(rows: Vec<Row>) -> Result<Option<Document>, DbError> {
    rows.first().map(from_row).transpose()
}

impl Database {
    pub async fn get_document(&self, id: Uuid) -> Result<Option<Document>, DbError> {
        let sql = format!("SELECT {COLUMNS} FROM document WHERE id = $1");
        first(self.query(&sql, &[(&id, Type::UUID)]).await?)
    }

    /// Applies the patch and sets `updated_at`, in one statement; the row after, or None.
    pub async fn update_document(&self, id: Uuid, patch: &DocumentPatch) -> Result<Option<Document>, DbError> {
        let sql = format!(
            "UPDATE document SET title = COALESCE(NULLIF($2, ''), title), description = COALESCE(NULLIF($3, ''), description), \
             context = COALESCE(NULLIF($4, ''), context), updated_at = now() WHERE id = $1 RETURNING {COLUMNS}"
        );
        let params: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 4] =
            [(&id, Type::UUID), (&patch.title, Type::TEXT), (&patch.description, Type::TEXT), (&patch.context, Type::TEXT)];
        first(self.query(&sql, &params).await?)
    }

    /// Deletes the row (its file stays); the deleted row, or None.
    pub async fn delete_document(&self, id: Uuid) -> Result<Option<Document>, DbError> {
        let sql = format!("DELETE FROM document WHERE id = $1 RETURNING {COLUMNS}");
        first(self.query(&sql, &[(&id, Type::UUID)]).await?)
    }
}
