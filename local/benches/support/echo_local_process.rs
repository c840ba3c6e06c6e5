//! echo-local's own binary in a process of its own (embedded defaults, a fresh data directory,
//! free ports), so its memory can be read. Shared by benches and tests (`#[path]`).

use std::io::BufRead;

pub struct EchoLocalProcess {
    pub child: std::process::Child,
    /// `http://127.0.0.1:<port>`, as echo-local prints it.
    pub api: String,
    _dir: tempfile::TempDir,
}

impl EchoLocalProcess {
    /// `ECHO_LOCAL_BIN` runs another build (a release one, or an older one to see a guard missing).
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let bin = std::env::var_os("ECHO_LOCAL_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_echo-local").into());
        let mut child = std::process::Command::new(bin)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ECHO_LOCAL_ADDR", "127.0.0.1:0")
            .env("ECHO_LOCAL_S3_ADDR", "127.0.0.1:0")
            .env("ECHO_LOCAL_DATA_DIR", dir.path())
            .env("RUST_LOG", "error")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("echo-local starts");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let api = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| line.trim().strip_prefix("API").map(|rest| rest.split_whitespace().next().unwrap().to_string()))
            .expect("echo-local prints its API address");
        // Keep reading: a closed pipe would fail echo-local's next print.
        std::thread::spawn(move || lines.for_each(drop));
        EchoLocalProcess { child, api, _dir: dir }
    }

    /// Its resident set now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("echo-local is running");
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("echo-local is running");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for EchoLocalProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
