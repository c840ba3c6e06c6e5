//! ffmpeg and ffprobe as child processes (tokio's async process API: the wait never blocks a
//! worker), always reading and writing files, never whole recordings in memory.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Deserialize;
use tokio::process::Command;

/// ECHO's extensions: used as a forced input format when auto-detection fails.
const KNOWN_EXTENSIONS: &[&str] = &["aac", "wav", "mp3", "ogg", "flac", "webm", "opus", "m4a", "mp4", "mpeg"];

/// mp3 everywhere: VBR quality 5 (about 130 kbps), as ECHO.
const MP3_ARGS: &[&str] = &["-vn", "-f", "mp3", "-acodec", "libmp3lame", "-q:a", "5"];

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{0} is not installed or not on PATH (install ffmpeg, e.g. `apt-get install ffmpeg`)")]
    ToolMissing(&'static str),
    #[error("unsupported or corrupt audio: {0}")]
    Undecodable(String),
    #[error("ffmpeg failed: {0}")]
    Ffmpeg(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// What ffprobe says about a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub format_name: String,
    pub duration: Option<f64>,
    pub audio_codec: Option<String>,
}

impl Probe {
    pub fn is_mp3(&self) -> bool {
        self.format_name.split(',').any(|f| f == "mp3") && self.audio_codec.as_deref() == Some("mp3")
    }
}

#[derive(Deserialize)]
struct ProbeJson {
    #[serde(default)]
    format: Option<ProbeFormat>,
    #[serde(default)]
    streams: Vec<ProbeStream>,
}

#[derive(Deserialize)]
struct ProbeFormat {
    format_name: Option<String>,
    duration: Option<String>,
}

#[derive(Deserialize)]
struct ProbeStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
}

fn tool(name: &'static str) -> Command {
    let mut cmd = Command::new(name);
    cmd.stdin(Stdio::null()).kill_on_drop(true);
    cmd
}

async fn run(mut cmd: Command, name: &'static str) -> Result<std::process::Output, AudioError> {
    cmd.output().await.map_err(|e| if e.kind() == std::io::ErrorKind::NotFound { AudioError::ToolMissing(name) } else { AudioError::Io(e) })
}

/// Runs ffmpeg; a non-zero exit is an error carrying the end of its stderr.
async fn ffmpeg(cmd: Command) -> Result<(), AudioError> {
    let out = run(cmd, "ffmpeg").await?;
    if out.status.success() { Ok(()) } else { Err(AudioError::Ffmpeg(tail(&out.stderr))) }
}

/// The end of a tool's stderr, for error messages.
fn tail(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    let start = text.char_indices().rev().nth(500).map_or(0, |(i, _)| i);
    text[start..].to_string()
}

fn forced_format(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    KNOWN_EXTENSIONS.iter().find(|k| **k == ext).map(|k| if *k == "m4a" || *k == "mp4" { "mov" } else { *k })
}

/// Probes a file: auto-detection first, then once more forcing the format its extension names.
pub async fn probe(path: &Path) -> Result<Probe, AudioError> {
    match probe_with(path, None).await {
        Ok(p) => Ok(p),
        Err(AudioError::Undecodable(reason)) => match forced_format(path) {
            Some(format) => probe_with(path, Some(format)).await.map_err(|_| AudioError::Undecodable(reason)),
            None => Err(AudioError::Undecodable(reason)),
        },
        Err(other) => Err(other),
    }
}

async fn probe_with(path: &Path, format: Option<&str>) -> Result<Probe, AudioError> {
    let mut cmd = tool("ffprobe");
    cmd.args(["-v", "error", "-print_format", "json", "-show_format", "-show_streams"]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    cmd.arg(path);
    let out = run(cmd, "ffprobe").await?;
    if !out.status.success() {
        return Err(AudioError::Undecodable(tail(&out.stderr)));
    }
    let parsed: ProbeJson = serde_json::from_slice(&out.stdout).map_err(|e| AudioError::Undecodable(format!("ffprobe output: {e}")))?;
    let audio = parsed.streams.iter().find(|s| s.codec_type.as_deref() == Some("audio"));
    let Some(audio) = audio else {
        return Err(AudioError::Undecodable("no audio stream".into()));
    };
    let format = parsed.format.unwrap_or(ProbeFormat { format_name: None, duration: None });
    Ok(Probe {
        format_name: format.format_name.unwrap_or_default(),
        duration: format.duration.and_then(|d| d.parse().ok()),
        audio_codec: audio.codec_name.clone(),
    })
}

/// Duration in seconds, or None when the file cannot be probed.
pub async fn duration(path: &Path) -> Option<f64> {
    probe(path).await.ok().and_then(|p| p.duration)
}

/// Re-encodes any decodable input to mp3.
pub async fn convert_to_mp3(input: &Path, output: &Path) -> Result<(), AudioError> {
    concat_to_mp3(&[input.to_path_buf()], output).await
}

/// Concatenates the inputs in order and encodes the result once to mp3. The concat filter
/// (rather than the concat demuxer) lets inputs differ in container, codec and sample rate.
pub async fn concat_to_mp3(inputs: &[PathBuf], output: &Path) -> Result<(), AudioError> {
    if inputs.is_empty() {
        return Err(AudioError::Undecodable("no input".into()));
    }
    let mut cmd = tool("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    for input in inputs {
        cmd.arg("-i").arg(input);
    }
    if inputs.len() > 1 {
        let streams: String = (0..inputs.len()).map(|i| format!("[{i}:a:0]")).collect();
        cmd.args(["-filter_complex", &format!("{streams}concat=n={}:v=0:a=1[out]", inputs.len()), "-map", "[out]"]);
    } else {
        cmd.args(["-map", "0:a:0"]);
    }
    cmd.args(MP3_ARGS).arg("-y").arg(output);
    ffmpeg(cmd).await?;
    let size = tokio::fs::metadata(output).await?.len();
    if size == 0 {
        return Err(AudioError::Ffmpeg("conversion produced no audio".into()));
    }
    Ok(())
}

/// Cuts `[start, start + length)` seconds of `input` into a new mp3.
pub async fn cut_mp3(input: &Path, start: f64, length: f64, output: &Path) -> Result<(), AudioError> {
    let mut cmd = tool("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-ss", &format!("{start:.3}"), "-t", &format!("{length:.3}"), "-i"])
        .arg(input)
        .args(["-map", "0:a:0"])
        .args(MP3_ARGS)
        .arg("-y")
        .arg(output);
    ffmpeg(cmd).await
}

/// Makes a test tone with ffmpeg's own generator (tests and benchmarks bring no fixtures).
pub async fn generate_tone(output: &Path, seconds: f64, frequency: u32, codec_args: &[&str]) -> Result<(), AudioError> {
    let mut cmd = tool("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin", "-f", "lavfi", "-i"])
        .arg(format!("sine=frequency={frequency}:duration={seconds}"))
        .args(codec_args)
        .arg("-y")
        .arg(output);
    ffmpeg(cmd).await
}

/// A uniquely named directory under the system temp dir, created and removed off the tokio
/// workers.
pub struct TempDir(Option<tempfile::TempDir>);

impl TempDir {
    pub async fn new() -> std::io::Result<Self> {
        let dir = crate::offload(tempfile::tempdir).await.map_err(std::io::Error::other)??;
        Ok(TempDir(Some(dir)))
    }

    pub fn path(&self) -> &std::path::Path {
        self.0.as_ref().expect("present until removed").path()
    }

    pub async fn remove(mut self) {
        if let Some(dir) = self.0.take() {
            let _ = crate::offload(move || dir.close()).await;
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // An early return skipped `remove`: clean up without blocking this thread.
        if let Some(dir) = self.0.take() {
            tokio::task::spawn_blocking(move || drop(dir));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn probes_converts_and_concatenates() {
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("a.wav");
        let ogg = dir.path().join("b.ogg");
        generate_tone(&wav, 1.5, 440, &["-ar", "16000"]).await.expect("ffmpeg is needed: apt-get install ffmpeg");
        generate_tone(&ogg, 2.0, 660, &["-ar", "48000", "-c:a", "libvorbis"]).await.unwrap();
        let p = probe(&wav).await.unwrap();
        assert!(!p.is_mp3());
        assert!((p.duration.unwrap() - 1.5).abs() < 0.05, "{p:?}");

        let merged = dir.path().join("m.mp3");
        concat_to_mp3(&[wav.clone(), ogg.clone()], &merged).await.unwrap();
        let m = probe(&merged).await.unwrap();
        assert!(m.is_mp3(), "{m:?}");
        assert!((m.duration.unwrap() - 3.5).abs() < 0.2, "{m:?}");

        let single = dir.path().join("s.mp3");
        convert_to_mp3(&ogg, &single).await.unwrap();
        assert!((duration(&single).await.unwrap() - 2.0).abs() < 0.15);
    }

    #[tokio::test]
    async fn garbage_is_undecodable() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.webm");
        tokio::fs::write(&junk, vec![0x42u8; 4096]).await.unwrap();
        assert!(matches!(probe(&junk).await, Err(AudioError::Undecodable(_))));
        assert!(matches!(convert_to_mp3(&junk, &dir.path().join("o.mp3")).await, Err(AudioError::Ffmpeg(_))));
    }
}
