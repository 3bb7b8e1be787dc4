//! The real `flows-bridge` binary as a child process, shared by the
//! integration and chaos test crates (`#[path]`-included by each): a clean
//! environment, JSON logs on stderr kept in memory, the addresses it bound
//! read from its "listening" line, SIGTERM, and a kill when dropped.

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::Value as Json;

pub const BIN: &str = env!("CARGO_BIN_EXE_flows-bridge");

/// How long a start may take (a debug build on a loaded machine).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `flows-bridge serve` with a clean environment: both ports on loopback
/// (port 0), JSON logs, `upstream`, `secret`, then `env` (later wins; an
/// empty value unsets nothing but is passed as empty).
pub fn serve_command(upstream: &str, secret: &str, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .env_clear()
        .env("FLOWS_BRIDGE_LISTEN", "127.0.0.1:0")
        .env("FLOWS_BRIDGE_ADMIN_LISTEN", "127.0.0.1:0")
        .env("FLOWS_BRIDGE_UPSTREAM", upstream)
        .env("FLOWS_BRIDGE_SECRET", secret)
        .env("FLOWS_BRIDGE_LOG_FORMAT", "json")
        // The manifests' setting: one thread (tokio's current-thread runtime).
        .env("FLOWS_BRIDGE_WORKER_THREADS", "1")
        .envs(env.iter().copied());
    command
}

/// A running bridge.
pub struct BridgeProcess {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
}

impl BridgeProcess {
    /// Spawns `command` (from [`serve_command`]) and waits for its
    /// "listening" line; panics with the logs if it does not come.
    pub fn spawn(mut command: Command) -> BridgeProcess {
        let mut child = command
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (addrs_tx, addrs_rx) = std::sync::mpsc::channel();
        {
            let logs = logs.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    if let Ok(json) = serde_json::from_str::<Json>(&line)
                        && json["message"] == "listening"
                    {
                        let parse = |key: &str| json[key].as_str()?.parse::<SocketAddr>().ok();
                        if let (Some(addr), Some(admin)) = (parse("addr"), parse("admin_addr")) {
                            let _ = addrs_tx.send((addr, admin));
                        }
                    }
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let Ok((addr, admin)) = addrs_rx.recv_timeout(START_TIMEOUT) else {
            let _ = child.kill();
            panic!("bridge did not start; logs: {:?}", logs.lock().unwrap());
        };
        BridgeProcess {
            addr,
            admin,
            child,
            logs,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Every stderr line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The stderr lines that are JSON, parsed (a panic message is not).
    pub fn log_json(&self) -> Vec<Json> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<Json>(l).ok())
            .collect()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Sends SIGTERM (through kill(1): the tests forbid unsafe code).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for BridgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
