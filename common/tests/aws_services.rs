//! The AWS clients against moto's SQS and SSM servers, started here on 127.0.0.1: the task
//! publisher, and secrets read from SSM at start-up.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::tasks::{SqsPublisher, Task, TaskMessage, TaskPublisher};

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `moto_server` from PATH (or `MOTO_SERVER`); a missing one fails with what to install.
fn start_moto() -> (Moto, String) {
    let program = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = Command::new(&program)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run {program:?} ({e}): install it with `pip install 'moto[server]'` (.ci/run does) or set MOTO_SERVER")
        });
    let moto = Moto(child);
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "moto_server did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    (moto, format!("http://127.0.0.1:{port}"))
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
    for (name, value) in [("/echo/directus-token", "static-admin-token"), ("/echo/directus-secret", "jwt-secret")] {
        ssm.put_parameter().name(name).value(value).r#type(aws_sdk_ssm::types::ParameterType::SecureString).send().await.unwrap();
    }
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        common::config::Settings::from_lookup(move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())).unwrap()
    };
    let mut settings = env(&[
        ("ECHO_STORE", "directus"),
        ("DIRECTUS_TOKEN_SSM_PARAMETER", "/echo/directus-token"),
        ("DIRECTUS_SECRET_SSM_PARAMETER", "/echo/directus-secret"),
    ]);
    assert!(settings.require(&["DIRECTUS_TOKEN"]).is_err());
    common::secrets::resolve_with(&ssm, &mut settings).await.unwrap();
    settings.require(&["DIRECTUS_TOKEN", "DIRECTUS_SECRET"]).unwrap();
    assert!(matches!(&settings.store, common::config::StoreSettings::Directus { token: Some(t), .. } if t == "static-admin-token"));
    assert_eq!(settings.auth.directus_secret.as_deref(), Some("jwt-secret"));

    // A value in the environment wins; a missing parameter is a start-up error naming it.
    let mut direct = env(&[("DIRECTUS_SECRET", "from-env"), ("DIRECTUS_SECRET_SSM_PARAMETER", "/echo/directus-secret")]);
    common::secrets::resolve_with(&ssm, &mut direct).await.unwrap();
    assert_eq!(direct.auth.directus_secret.as_deref(), Some("from-env"));
    let mut missing = env(&[("DIRECTUS_SECRET_SSM_PARAMETER", "/echo/nope")]);
    let err = common::secrets::resolve_with(&ssm, &mut missing).await.unwrap_err();
    assert!(err.to_string().contains("/echo/nope"), "{err}");
}
