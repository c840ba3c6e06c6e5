//! PostgreSQL for the resources tests: a database of its own per test on the server
//! scripts/test.sh starts (RESOURCES_TEST_DATABASE_URL), with the `document` table as
//! spec/data-model.md §3.20 describes it, and a whole server of its own for tests that stop one.

use std::path::PathBuf;

use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

pub const NEEDS_POSTGRES: &str = "RESOURCES_TEST_DATABASE_URL is not set: the resources tests need a PostgreSQL server. \
     `bash scripts/test.sh` starts one itself; by hand: `apt-get install postgresql`, then \
     `eval \"$(bash scripts/postgres.sh start)\"` before `cargo test`";

/// `document` as in ECHO's database, and the `project` table its foreign key names (a Directus
/// collection there; only its key here, since ownership is read from the store).
pub const DOCUMENT_SCHEMA: &str = "
CREATE TABLE project (id uuid PRIMARY KEY);
CREATE TABLE document (
    id uuid PRIMARY KEY,
    created_at timestamptz DEFAULT now(),
    updated_at timestamptz DEFAULT now(),
    project_id uuid REFERENCES project (id),
    original_filename varchar DEFAULT '',
    type varchar DEFAULT 'PDF',
    path varchar,
    title varchar,
    description text,
    context text,
    is_processed boolean DEFAULT false,
    processing_error text
);";

pub fn server_url() -> String {
    std::env::var("RESOURCES_TEST_DATABASE_URL").unwrap_or_else(|_| panic!("{NEEDS_POSTGRES}"))
}

pub async fn connect(url: &str) -> Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await.unwrap_or_else(|e| panic!("connecting to {url}: {e}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}

/// A new, empty database on the shared server (tests run in parallel), and a client of it.
pub struct Pg {
    pub url: String,
    pub client: Client,
}

/// One `document` row to insert; `None` leaves the column to its default or NULL.
#[derive(Clone, Default)]
pub struct Row {
    pub id: &'static str,
    pub project: &'static str,
    pub kind: Option<&'static str>,
    pub path: Option<String>,
    pub title: Option<&'static str>,
    pub description: Option<&'static str>,
    pub context: Option<&'static str>,
    pub original_filename: Option<&'static str>,
}

impl Pg {
    pub async fn fresh(with_schema: bool) -> Pg {
        Pg::fresh_on(&server_url(), with_schema).await
    }

    pub async fn fresh_on(server: &str, with_schema: bool) -> Pg {
        let name = format!("resources_{}", Uuid::new_v4().simple());
        connect(server).await.batch_execute(&format!("CREATE DATABASE {name}")).await.unwrap();
        let (base, _) = server.rsplit_once('/').expect("a URL ending in /<database>");
        let url = format!("{base}/{name}");
        let client = connect(&url).await;
        if with_schema {
            client.batch_execute(DOCUMENT_SCHEMA).await.unwrap();
        }
        Pg { url, client }
    }

    pub async fn insert(&self, row: Row) {
        let project = Uuid::parse_str(row.project).unwrap();
        self.client.execute("INSERT INTO project (id) VALUES ($1) ON CONFLICT DO NOTHING", &[&project]).await.unwrap();
        self.client
            .execute(
                "INSERT INTO document (id, project_id, type, path, title, description, context, original_filename) \
                 VALUES ($1, $2, COALESCE($3, 'PDF'), $4, $5, $6, $7, COALESCE($8, ''))",
                &[
                    &Uuid::parse_str(row.id).unwrap(),
                    &project,
                    &row.kind,
                    &row.path,
                    &row.title,
                    &row.description,
                    &row.context,
                    &row.original_filename,
                ],
            )
            .await
            .unwrap();
    }

    /// Every row as JSON text, by id: a snapshot to compare before and after.
    pub async fn rows(&self) -> Vec<String> {
        let rows = self.client.query("SELECT row_to_json(d)::text FROM document d ORDER BY id", &[]).await.unwrap();
        rows.iter().map(|r| r.get(0)).collect()
    }

    pub async fn row(&self, id: &str) -> Option<serde_json::Value> {
        let id = Uuid::parse_str(id).unwrap();
        let row = self.client.query_opt("SELECT row_to_json(d)::text FROM document d WHERE id = $1", &[&id]).await.unwrap();
        row.map(|r| serde_json::from_str(r.get::<_, &str>(0)).unwrap())
    }
}

/// A PostgreSQL server of the test's own (scripts/postgres.sh), to stop and start mid-test.
pub struct OwnServer {
    pub url: String,
    dir: PathBuf,
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres.sh")
}

async fn run_script(args: &[&str]) -> String {
    let out = tokio::process::Command::new("bash").arg(script()).args(args).output().await.expect("bash runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scripts/postgres.sh {args:?} failed ({NEEDS_POSTGRES}): {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

impl OwnServer {
    pub async fn start() -> OwnServer {
        let env = run_script(&["start"]).await;
        let value = |name: &str| {
            env.split_whitespace()
                .find_map(|word| word.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("scripts/postgres.sh start printed no {name}: {env}"))
                .to_string()
        };
        OwnServer { url: value("RESOURCES_TEST_DATABASE_URL"), dir: PathBuf::from(value("ECHO_PG_DIR")) }
    }

    pub async fn stop(&self) {
        run_script(&["ctl", self.dir.to_str().unwrap(), "stop"]).await;
    }

    pub async fn resume(&self) {
        run_script(&["ctl", self.dir.to_str().unwrap(), "start"]).await;
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        // Also after a failed assertion: no server outlives its test.
        let _ = std::process::Command::new("bash").arg(script()).arg("stop").arg(&self.dir).status();
    }
}
