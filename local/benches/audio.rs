//! `cargo bench --bench audio`: the merge routine and chunk conversion on ECHO's recordings
//! against the bare ffmpeg commands doing the same work, and peak memory while merging, and while
//! converting and splitting, a generated 200 MB input. Numbers go to docs/benchmarks.md.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use common::store::{NewChunk, NewConversation};
use local::{DEMO_PROJECT_ID, Local, LocalOptions};

const FIXTURES: &[&str] = &["wav.wav", "mp3.mp3", "m4a.m4a", "aac.aac", "webm.webm"];
const RUNS: usize = 5;

fn shared_audio() -> PathBuf {
    let dir = std::env::var_os("ECHO_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"))
        .join("audio");
    assert!(dir.is_dir(), "the fixtures are missing: expected ../shared/data/audio beside the repository (or ECHO_SHARED_DATA)");
    dir
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// A conversation whose chunks are the given files, uploaded to storage.
async fn conversation_with(app: &Local, files: &[PathBuf]) -> String {
    let cid = uuid::Uuid::new_v4().to_string();
    app.store
        .create_conversation(NewConversation { id: cid.clone(), project_id: DEMO_PROJECT_ID.into(), ..Default::default() })
        .await
        .unwrap();
    for (i, file) in files.iter().enumerate() {
        let name = file.file_name().unwrap().to_string_lossy();
        let key = format!("conversation/{cid}/chunks/{i}-{name}");
        app.state.blob.upload_file(&key, file, "application/octet-stream").await.unwrap();
        app.store
            .create_chunk(NewChunk {
                created_at: None,
                id: uuid::Uuid::new_v4().to_string(),
                conversation_id: cid.clone(),
                timestamp: Utc::now() + chrono::Duration::seconds(i as i64),
                path: Some(app.state.blob.url_for_key(&key)),
                source: None,
                transcript: None,
            })
            .await
            .unwrap();
    }
    cid
}

/// What the merge does, as one ffmpeg command on local files.
fn bare_ffmpeg(inputs: &[PathBuf], output: &Path) -> Duration {
    let mut cmd = std::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    for input in inputs {
        cmd.arg("-i").arg(input);
    }
    let streams: String = (0..inputs.len()).map(|i| format!("[{i}:a:0]")).collect();
    cmd.args(["-filter_complex", &format!("{streams}concat=n={}:v=0:a=1[out]", inputs.len()), "-map", "[out]"]);
    cmd.args(["-vn", "-f", "mp3", "-acodec", "libmp3lame", "-q:a", "5", "-y"]).arg(output);
    let t = Instant::now();
    let status = cmd.status().expect("ffmpeg is needed: apt-get install ffmpeg");
    assert!(status.success());
    t.elapsed()
}

/// The chunk conversion as one ffmpeg command on a local file.
fn bare_convert(input: &Path, output: &Path) -> Duration {
    let t = Instant::now();
    let status = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-i"])
        .arg(input)
        .args(["-vn", "-f", "mp3", "-acodec", "libmp3lame", "-q:a", "5", "-y"])
        .arg(output)
        .status()
        .expect("ffmpeg is needed: apt-get install ffmpeg");
    assert!(status.success());
    t.elapsed()
}

async fn process_chunk(app: &Local, chunk_id: &str) -> Duration {
    use common::queue::worker::{Delivery, Done, TaskRunner};
    let task = common::queue::Task::ProcessConversationChunk { chunk_id: chunk_id.into(), use_pii_redaction: false };
    let delivery = Delivery { message_id: "bench".into(), receive_count: 1, max_attempts: 5, deadline: None };
    let t = Instant::now();
    assert_eq!(app.audio_worker.run(&task, &delivery).await, Ok(Done::Completed));
    t.elapsed()
}

async fn first_chunk(app: &Local, cid: &str) -> String {
    app.store.list_chunks(cid, common::store::ChunkOrder::OldestFirst).await.unwrap()[0].id.clone()
}

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn children_max_rss_kib() -> u64 {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage fills the struct it is given.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    usage.ru_maxrss as u64
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let app = local::start(LocalOptions::for_tests(dir.path().join("local"))).await.unwrap();
        let fixtures: Vec<PathBuf> = FIXTURES.iter().map(|f| shared_audio().join(f)).collect();

        // 1. The fixture set: the routine (download, probe, concat + encode, upload, probe,
        //    record) against the bare command.
        let mut routine = Vec::new();
        let mut bare = Vec::new();
        for _ in 0..RUNS {
            let cid = conversation_with(&app, &fixtures).await;
            let t = Instant::now();
            let merged = common::flows::merge::merge_conversation(&app.state.services, &cid).await.unwrap();
            routine.push(t.elapsed());
            assert!(merged.duration > 0.0);
            bare.push(bare_ffmpeg(&fixtures, &dir.path().join("bare.mp3")));
        }
        let (r, b) = (median(routine), median(bare));
        println!("merge of the 5 fixture recordings (median of {RUNS})");
        println!("  merge routine  {:.0} ms", r.as_secs_f64() * 1e3);
        println!("  bare ffmpeg    {:.0} ms", b.as_secs_f64() * 1e3);
        println!("  ratio          {:.2}", r.as_secs_f64() / b.as_secs_f64());

        // 2. A 200 MB input: memory stays bounded because audio only moves through files.
        let big = dir.path().join("big.wav");
        common::audio::generate_tone(&big, 1190.0, 440, &["-ac", "2", "-ar", "44100", "-c:a", "pcm_s16le"]).await.unwrap();
        let size = std::fs::metadata(&big).unwrap().len();
        let cid = conversation_with(&app, std::slice::from_ref(&big)).await;
        // Reset this process's peak so only the merge counts (Linux: clear_refs 5).
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let before = status_kib("VmRSS:");
        let t = Instant::now();
        let merged = common::flows::merge::merge_conversation(&app.state.services, &cid).await.unwrap();
        let took = t.elapsed();
        let peak = status_kib("VmHWM:");
        println!("merge of one {:.0} MB input ({:.0} s of audio) in {:.1} s", size as f64 / 1e6, merged.duration, took.as_secs_f64());
        println!(
            "  echo-lambda process: RSS before {:.1} MB, peak during the merge {:.1} MB",
            before as f64 / 1024.0,
            peak as f64 / 1024.0
        );
        println!("  largest child (ffmpeg/ffprobe) peak RSS {:.1} MB", children_max_rss_kib() as f64 / 1024.0);

        // 3. Chunk conversion (the portal's webm recording): the task against the bare command.
        let webm = shared_audio().join("webm.webm");
        let mut task_times = Vec::new();
        let mut bare_times = Vec::new();
        for _ in 0..RUNS {
            let cid = conversation_with(&app, std::slice::from_ref(&webm)).await;
            let chunk = first_chunk(&app, &cid).await;
            task_times.push(process_chunk(&app, &chunk).await);
            bare_times.push(bare_convert(&webm, &dir.path().join("bare-convert.mp3")));
        }
        let (t, b) = (median(task_times), median(bare_times));
        println!("conversion of the webm fixture (median of {RUNS})");
        println!("  process-chunk task  {:.0} ms", t.as_secs_f64() * 1e3);
        println!("  bare ffmpeg         {:.0} ms", b.as_secs_f64() * 1e3);
        println!("  ratio               {:.2}", t.as_secs_f64() / b.as_secs_f64());

        // 4. Converting and splitting a 200 MB input: 3.6 h of 8 kHz noise, whose mp3 is over 15 MiB.
        let noisy = dir.path().join("noisy.wav");
        let status = std::process::Command::new("ffmpeg")
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-nostdin",
                "-f",
                "lavfi",
                "-i",
                "anoisesrc=duration=13000:color=white:amplitude=1.0",
            ])
            .args(["-ac", "1", "-ar", "8000", "-c:a", "pcm_s16le", "-y"])
            .arg(&noisy)
            .status()
            .unwrap();
        assert!(status.success());
        let size = std::fs::metadata(&noisy).unwrap().len();
        let cid = conversation_with(&app, std::slice::from_ref(&noisy)).await;
        let chunk = first_chunk(&app, &cid).await;
        std::fs::write("/proc/self/clear_refs", "5").unwrap();
        let took = process_chunk(&app, &chunk).await;
        let peak = status_kib("VmHWM:");
        let pieces = app.store.list_chunks(&cid, common::store::ChunkOrder::OldestFirst).await.unwrap().len();
        println!("conversion and split of the {:.0} MB input into {pieces} pieces in {:.1} s", size as f64 / 1e6, took.as_secs_f64());
        println!("  echo-lambda process peak RSS {:.1} MB", peak as f64 / 1024.0);
        println!("  largest child (ffmpeg/ffprobe) peak RSS so far {:.1} MB", children_max_rss_kib() as f64 / 1024.0);
    });
}
