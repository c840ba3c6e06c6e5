//! The AWS clients against moto's SQS and SSM servers, started here on 127.0.0.1: the task
//! publisher, and secrets read from SSM at start-up.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::queue::sqs::SqsPublisher;
use common::queue::{Task, TaskMessage, TaskPublisher};

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `moto_server` from PATH (or `MOTO_SERVER`); a missing one fails with what to install. Tests
/// run in parallel, so a port picked here can be taken before moto binds it: the server is only
/// used once it is listening and still alive, else another port is tried.
fn start_moto() -> (Moto, String) {
    let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..5 {
        // Never hand one port to two tests of this binary (the kernel may offer it again).
        let port = loop {
            let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut taken = TAKEN.lock().unwrap();
            if !taken.contains(&port) {
                taken.push(port);
                break port;
            }
        };
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run {program:?} ({e}): install it with `pip install 'moto[server]'` (.ci/run does) or set MOTO_SERVER")
            });
        let mut moto = Moto(child);
        let started = Instant::now();
        loop {
            if moto.0.try_wait().unwrap().is_some() {
                break; // the port was taken: try another
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                // Listening, and it is ours if it is still running.
                std::thread::sleep(Duration::from_millis(100));
                if moto.0.try_wait().unwrap().is_none() {
                    return (moto, format!("http://127.0.0.1:{port}"));
                }
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "moto_server did not start listening");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("moto_server could not get a free port in 5 tries");
}

#[tokio::test]
async fn tasks_reach_their_queue_as_versioned_json() {
    let (_moto, endpoint) = start_moto();
    let creds = aws_credential_types::Credentials::new("test", "test", None, None, "test");
    let client = SqsPublisher::client("us-east-1", Some(&endpoint), Some(creds)).await;
    let audio = client.create_queue().queue_name("audio").send().await.unwrap().queue_url.unwrap();
    let network = client.create_queue().queue_name("network").send().await.unwrap().queue_url.unwrap();
    let publisher = SqsPublisher::new(client.clone(), audio.clone(), network.clone());

    let process = Task::ProcessConversationChunk { chunk_id: "chunk-1".into(), use_pii_redaction: false };
    let finish = Task::FinishConversationHook { conversation_id: "conv-1".into() };
    publisher.publish(process.clone(), Duration::ZERO).await.unwrap();
    publisher.publish(finish.clone(), Duration::from_secs(2)).await.unwrap();

    let received = client.receive_message().queue_url(&audio).message_attribute_names("All").send().await.unwrap();
    let messages = received.messages.unwrap_or_default();
    assert_eq!(messages.len(), 1);
    let msg = TaskMessage::parse(messages[0].body.as_deref().unwrap()).unwrap();
    assert_eq!(msg.task, process);
    assert_eq!(msg.version, 1);
    let attrs = messages[0].message_attributes.as_ref().unwrap();
    assert_eq!(attrs["task"].string_value.as_deref(), Some("task_process_conversation_chunk"));

    // The delayed one is invisible first, then arrives on the network queue.
    let early = client.receive_message().queue_url(&network).send().await.unwrap();
    assert!(early.messages.unwrap_or_default().is_empty(), "a delayed task must not be visible at once");
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let late = client.receive_message().queue_url(&network).wait_time_seconds(2).send().await.unwrap();
    let late = late.messages.unwrap_or_default();
    assert_eq!(late.len(), 1);
    assert_eq!(TaskMessage::parse(late[0].body.as_deref().unwrap()).unwrap().task, finish);
}

#[tokio::test]
async fn secrets_come_from_ssm_when_the_environment_lacks_them() {
    let (_moto, endpoint) = start_moto();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_ssm::config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new("test", "test", None, None, "test"))
        .endpoint_url(&endpoint)
        .load()
        .await;
    let ssm = aws_sdk_ssm::Client::new(&shared);
    for (name, value) in
        [("/echo/directus-token", "static-admin-token"), ("/echo/directus-secret", "jwt-secret"), ("/echo/runpod-webhook", "hook-secret")]
    {
        ssm.put_parameter().name(name).value(value).r#type(aws_sdk_ssm::types::ParameterType::SecureString).send().await.unwrap();
    }
    for (name, value) in [("/echo/assemblyai-api-key", "aai-key"), ("/echo/medium-llm-api-key", "sk-medium")] {
        ssm.put_parameter().name(name).value(value).r#type(aws_sdk_ssm::types::ParameterType::SecureString).send().await.unwrap();
    }
    let lookup =
        |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
    let env = |pairs: &'static [(&'static str, &'static str)]| common::config::Settings::from_lookup(lookup(pairs)).unwrap();
    let resolved = |pairs: &'static [(&'static str, &'static str)]| common::secrets::settings_with(&ssm, lookup(pairs));

    let unresolved = env(&[("ECHO_STORE", "directus"), ("DIRECTUS_TOKEN_SSM_PARAMETER", "/echo/directus-token")]);
    assert!(unresolved.require(&["DIRECTUS_TOKEN"]).is_err());
    // Seven names, one batch; API keys come the same way as the Directus token and secret.
    let settings = resolved(&[
        ("ECHO_STORE", "directus"),
        ("DIRECTUS_TOKEN_SSM_PARAMETER", "/echo/directus-token"),
        ("DIRECTUS_SECRET_SSM_PARAMETER", "/echo/directus-secret"),
        ("RUNPOD_WEBHOOK_SECRET_SSM_PARAMETER", "/echo/runpod-webhook"),
        ("TRANSCRIPTION_PROVIDER", "AssemblyAI"),
        ("ASSEMBLYAI_API_KEY_SSM_PARAMETER", "/echo/assemblyai-api-key"),
        ("MEDIUM_LITELLM_API_KEY_SSM_PARAMETER", "/echo/medium-llm-api-key"),
        // Two settings may share one parameter.
        ("SUMMARY_LITELLM_API_KEY_SSM_PARAMETER", "/echo/medium-llm-api-key"),
    ])
    .await
    .unwrap();
    settings.require(&["DIRECTUS_TOKEN", "DIRECTUS_SECRET", "TRANSCRIPTION_PROVIDER"]).unwrap();
    assert!(matches!(&settings.store, common::config::StoreSettings::Directus { token: Some(t), .. } if t == "static-admin-token"));
    assert_eq!(settings.auth.directus_secret.as_deref(), Some("jwt-secret"));
    assert_eq!(settings.api.runpod_webhook_secret.as_deref(), Some("hook-secret"));
    assert_eq!(settings.transcription.assemblyai_api_key.as_deref(), Some("aai-key"));
    assert_eq!(settings.llm.medium.api_key.as_deref(), Some("sk-medium"));
    assert_eq!(settings.llm.summary.api_key.as_deref(), Some("sk-medium"));

    // A value in the environment wins; a missing parameter is a start-up error naming it.
    let direct = resolved(&[("ASSEMBLYAI_API_KEY", "from-env"), ("ASSEMBLYAI_API_KEY_SSM_PARAMETER", "/echo/nope")]).await.unwrap();
    assert_eq!(direct.transcription.assemblyai_api_key.as_deref(), Some("from-env"));
    let err =
        resolved(&[("DIRECTUS_SECRET_SSM_PARAMETER", "/echo/directus-secret"), ("RUNPOD_WHISPER_API_KEY_SSM_PARAMETER", "/echo/nope")])
            .await
            .unwrap_err();
    assert!(err.to_string().contains("/echo/nope"), "{err}");
}

/// Succeeds for finish hooks, fails transiently for everything else, counting attempts.
struct FlakyRunner {
    attempts: std::sync::Mutex<Vec<(String, u32)>>,
    given_up: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl common::queue::worker::TaskRunner for FlakyRunner {
    fn queue(&self) -> common::queue::Queue {
        common::queue::Queue::Network
    }

    async fn run(
        &self,
        task: &Task,
        delivery: &common::queue::worker::Delivery,
    ) -> Result<common::queue::worker::Done, common::queue::worker::TaskError> {
        self.attempts.lock().unwrap().push((task.name().to_string(), delivery.receive_count));
        match task {
            Task::FinishConversationHook { .. } => Ok(common::queue::worker::Done::Completed),
            _ => Err(common::queue::worker::TaskError::transient("the store is unreachable")),
        }
    }

    async fn give_up(&self, task: &Task, reason: &str) {
        self.given_up.lock().unwrap().push(format!("{}: {reason}", task.name()));
    }
}

/// Retries at once instead of after SQS's backoff, so the test takes seconds.
struct ImmediateRetry(common::queue::sqs::SqsQueueOps);

#[async_trait::async_trait]
impl common::queue::worker::QueueOps for ImmediateRetry {
    async fn dead_letter(&self, body: &str, task: &str, error: &str) -> Result<(), String> {
        self.0.dead_letter(body, task, error).await
    }
    async fn retry_after(&self, receipt_handle: &str, _delay: Duration) -> Result<(), String> {
        self.0.retry_after(receipt_handle, Duration::ZERO).await
    }
}

#[tokio::test]
async fn a_worker_retries_failed_records_and_dead_letters_them_after_the_last_attempt() {
    use common::queue::worker::TaskRunner;
    let (_moto, endpoint) = start_moto();
    let creds = aws_credential_types::Credentials::new("test", "test", None, None, "test");
    let client = SqsPublisher::client("us-east-1", Some(&endpoint), Some(creds)).await;
    let dlq = client.create_queue().queue_name("network-dlq").send().await.unwrap().queue_url.unwrap();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let max_attempts = 3;
    let queue = client
        .create_queue()
        .queue_name("network")
        .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "30")
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_attempts}).to_string(),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    let publisher = SqsPublisher::new(client.clone(), queue.clone(), queue.clone());
    publisher.publish(Task::FinishConversationHook { conversation_id: "c-ok".into() }, Duration::ZERO).await.unwrap();
    publisher.publish(Task::SummarizeConversation { conversation_id: "c-flaky".into() }, Duration::ZERO).await.unwrap();
    // A message that is not a task at all.
    client.send_message().queue_url(&queue).message_body("{not json").send().await.unwrap();

    let runner = FlakyRunner { attempts: Default::default(), given_up: Default::default() };
    let ops = ImmediateRetry(common::queue::sqs::SqsQueueOps { client: client.clone(), queue_url: queue.clone(), dlq_url: dlq.clone() });
    let started = Instant::now();
    // The receive loop: what Lambda's event source mapping does with the worker's answers.
    loop {
        assert!(started.elapsed() < Duration::from_secs(30), "the queue did not drain: {:?}", runner.attempts.lock().unwrap());
        let received = common::queue::sqs::poll_sqs_once(&runner, &ops, &client, &queue, max_attempts, Duration::ZERO).await.unwrap();
        if received == 0 && runner.attempts.lock().unwrap().len() > max_attempts as usize {
            break;
        }
    }
    assert_eq!(runner.queue(), common::queue::Queue::Network);
    let attempts = runner.attempts.lock().unwrap().clone();
    assert_eq!(attempts.iter().filter(|(t, _)| t == "task_finish_conversation_hook").count(), 1, "a success runs once: {attempts:?}");
    let flaky: Vec<u32> = attempts.iter().filter(|(t, _)| t == "task_summarize_conversation").map(|(_, n)| *n).collect();
    assert_eq!(flaky, vec![1, 2, 3], "retried until the last attempt");
    assert_eq!(runner.given_up.lock().unwrap().clone(), vec!["task_summarize_conversation: the store is unreachable".to_string()]);

    // The DLQ holds the flaky task and the unparseable message, each with its reason.
    let parked = client.receive_message().queue_url(&dlq).max_number_of_messages(10).message_attribute_names("All").send().await.unwrap();
    let parked = parked.messages.unwrap_or_default();
    let mut reasons: Vec<(String, String)> = parked
        .iter()
        .map(|m| {
            let attrs = m.message_attributes.clone().unwrap();
            (attrs["task"].string_value.clone().unwrap(), attrs["error"].string_value.clone().unwrap())
        })
        .collect();
    reasons.sort();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, "task_summarize_conversation");
    assert_eq!(reasons[0].1, "the store is unreachable");
    assert_eq!(reasons[1].0, "unparseable");
    assert!(client.receive_message().queue_url(&queue).send().await.unwrap().messages.unwrap_or_default().is_empty());
}

/// The log lines written while a test runs, as JSON (the functions' Lambda format).
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Records the trace header each task runs under.
#[derive(Default)]
struct TraceRecorder(std::sync::Mutex<Vec<Option<String>>>);

#[async_trait::async_trait]
impl common::queue::worker::TaskRunner for TraceRecorder {
    fn queue(&self) -> common::queue::Queue {
        common::queue::Queue::Network
    }
    async fn run(
        &self,
        _: &Task,
        _: &common::queue::worker::Delivery,
    ) -> Result<common::queue::worker::Done, common::queue::worker::TaskError> {
        self.0.lock().unwrap().push(common::telemetry::current_trace_header());
        Ok(common::queue::worker::Done::Completed)
    }
    async fn give_up(&self, _: &Task, _: &str) {}
}

#[tokio::test]
async fn a_request_s_trace_reaches_the_worker_through_aws_trace_header() {
    use tower::ServiceExt;
    const TRACE: &str = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let (_moto, endpoint) = start_moto();
    let creds = aws_credential_types::Credentials::new("test", "test", None, None, "test");
    let client = SqsPublisher::client("us-east-1", Some(&endpoint), Some(creds)).await;
    let queue = client.create_queue().queue_name("network").send().await.unwrap().queue_url.unwrap();
    let publisher = std::sync::Arc::new(SqsPublisher::new(client.clone(), queue.clone(), queue.clone()));
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber =
        tracing_subscriber::fmt().json().with_current_span(true).with_span_list(false).with_writer(move || writer.clone()).finish();
    let _logging = tracing::subscriber::set_default(subscriber);

    // An API handler behind the shared layers publishes, as lambda_http hands it Lambda's header.
    let handler = move || async move {
        let task = Task::FinishConversationHook { conversation_id: "c-traced".into() };
        publisher.publish(task, Duration::ZERO).await.map(|()| "queued").map_err(|e| e.to_string())
    };
    let settings = common::config::Settings::from_lookup(|_| None).unwrap();
    let app = common::web::http::api_app(axum::Router::new().route("/api/participant/publish", axum::routing::post(handler)), &settings);
    let request = axum::http::Request::post("/api/participant/publish")
        .header("x-amzn-trace-id", TRACE)
        .header("x-request-id", "req-traced")
        .body(axum::body::Body::empty())
        .unwrap();
    assert_eq!(app.oneshot(request).await.unwrap().status(), 200);

    // The message carries the header as its system attribute (looked at, then left visible).
    let seen = client
        .receive_message()
        .queue_url(&queue)
        .visibility_timeout(0)
        .wait_time_seconds(5)
        .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::AwsTraceHeader)
        .send()
        .await
        .unwrap();
    let message = &seen.messages.unwrap()[0];
    let attributes = message.attributes.clone().unwrap();
    assert_eq!(attributes[&aws_sdk_sqs::types::MessageSystemAttributeName::AwsTraceHeader], TRACE);

    // The worker runs the task under that trace and its log lines say so, next to the message id.
    let runner = TraceRecorder::default();
    let ops = common::queue::sqs::SqsQueueOps { client: client.clone(), queue_url: queue.clone(), dlq_url: queue.clone() };
    // Long polls, as moto may not show a message made visible again within the same instant.
    let received = common::queue::sqs::poll_sqs_once(&runner, &ops, &client, &queue, 5, Duration::from_secs(5)).await.unwrap();
    assert_eq!(received, 1);
    assert_eq!(runner.0.lock().unwrap().clone(), vec![Some(TRACE.to_string())], "what the task publishes continues the trace");
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let line = |message: &str| {
        let found = lines.iter().find(|l| l["fields"]["message"] == message);
        found.unwrap_or_else(|| panic!("no {message:?} line in:\n{text}")).clone()
    };
    let request_done = line("request done");
    assert_eq!(request_done["span"]["request_id"], "req-traced", "the request id stays");
    assert_eq!(request_done["span"]["trace_header"], TRACE);
    let completed = line("task completed");
    assert_eq!(completed["span"]["trace_header"], TRACE);
    assert_eq!(completed["span"]["message_id"].as_str(), message.message_id.as_deref());
}
