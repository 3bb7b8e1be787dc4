//! The processes under test: spawning, readiness, and what /proc says about
//! them (CPU time from utime+stime, peak RSS from VmHWM, reset between runs).

use std::{
    fs,
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A child process, killed when dropped.
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Proc {
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<Proc, String> {
        let out = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        command
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails if the process has exited.
    pub fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!("{} exited: {status}", self.name)),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    pub fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn cpu(&self) -> Cpu {
        Cpu::of(self.pid())
    }

    pub fn reset_peak_rss(&self) {
        reset_peak_rss(self.pid());
    }

    /// VmHWM, KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        status_kib(self.pid(), "VmHWM:")
    }

    /// RssAnon now, KiB: the process's own memory, without the binary's and
    /// libraries' pages (which every process of the same image shares).
    pub fn anon_rss_kib(&self) -> u64 {
        status_kib(self.pid(), "RssAnon:")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second for /proc/PID/stat (`getconf CLK_TCK`, 100 on Linux).
pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime + stime of a process (all its threads), in seconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cpu(pub f64);

impl Cpu {
    pub fn of(pid: u32) -> Cpu {
        Cpu(ticks(&format!("/proc/{pid}/stat")) / clock_ticks_cached())
    }

    pub fn of_self() -> Cpu {
        Cpu(ticks("/proc/self/stat") / clock_ticks_cached())
    }

    pub fn since(self, before: Cpu) -> f64 {
        (self.0 - before.0).max(0.0)
    }
}

fn clock_ticks_cached() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(clock_ticks)
}

fn ticks(path: &str) -> f64 {
    let Ok(stat) = fs::read_to_string(path) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) in parentheses.
    let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let field = |n: usize| {
        fields
            .get(n - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    field(14) + field(15)
}

fn status_kib(pid: u32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(key)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .unwrap_or(0)
}

/// Writing 5 to clear_refs resets VmHWM to the current RSS (Linux 4.0+).
pub fn reset_peak_rss(pid: u32) {
    let _ = fs::write(format!("/proc/{pid}/clear_refs"), "5");
}

/// A loopback port nothing listens on right now, never the same twice in a
/// run (the kernel may hand a just-released port out again).
pub fn free_port() -> Result<SocketAddr, String> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().map_err(|e| e.to_string())?;
    // Holding every candidate until one is new keeps the kernel from repeating.
    let mut held = Vec::new();
    for _ in 0..64 {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        if !given.contains(&addr.port()) {
            given.push(addr.port());
            return Ok(addr);
        }
        held.push(listener);
    }
    Err("no free loopback port".into())
}

/// Waits until `addr` accepts a TCP connection.
pub fn wait_tcp(addr: SocketAddr, timeout: Duration) -> Result<Duration, String> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(format!("{addr} did not accept connections in {timeout:?}"))
}

/// A minimal HTTP/1.1 GET on loopback; the status code.
pub fn http_get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).ok()?;
    let mut head = [0u8; 16];
    let mut read = 0;
    while read < 12 {
        let n = stream.read(&mut head[read..]).ok()?;
        if n == 0 {
            return None;
        }
        read += n;
    }
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Polls `GET path` until it answers 200; the time it took.
pub fn wait_http_ok(
    addr: SocketAddr,
    path: &str,
    since: Instant,
    timeout: Duration,
) -> Result<Duration, String> {
    while since.elapsed() < timeout {
        if http_get_status(addr, path) == Some(200) {
            return Ok(since.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Err(format!("http://{addr}{path} not 200 within {timeout:?}"))
}

/// Size of a file in bytes, 0 if missing.
pub fn file_size(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Size after `strip`, if `strip` is installed.
pub fn stripped_size(path: &Path, work: &Path) -> Option<u64> {
    let out: PathBuf = work.join(format!("{}.stripped", path.file_name()?.to_string_lossy()));
    let ok = Command::new("strip")
        .arg("-o")
        .arg(&out)
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?
        .success();
    let size = ok.then(|| file_size(&out));
    let _ = fs::remove_file(&out);
    size
}

/// The 1-, 5- and 15-minute load averages.
pub fn loadavg() -> [f64; 3] {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut parts = text.split_whitespace().map(|v| v.parse().unwrap_or(0.0));
    [
        parts.next().unwrap_or(0.0),
        parts.next().unwrap_or(0.0),
        parts.next().unwrap_or(0.0),
    ]
}

/// First line of a command's output, for versions.
pub fn command_line(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default()
}
