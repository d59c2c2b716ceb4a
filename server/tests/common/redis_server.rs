//! A `redis-server` of one test's own, on a Unix socket in a directory of its own: no TCP port that
//! another test could take, and a socket no other server can be listening on. The smoke tests
//! include this file by path, as they do `in_process.rs`.
#![allow(dead_code)] // each test binary uses its own subset

use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long redis-server may take to accept on its socket.
const STARTUP: Duration = Duration::from_secs(10);

/// A `redis-server` without persistence, killed and its directory removed when dropped.
pub struct Redis {
    child: Option<Child>,
    dir: PathBuf,
    args: Vec<String>,
}

impl Redis {
    /// A server on its Unix socket only.
    pub fn start() -> Redis {
        Redis::start_with(&[]).expect("redis-server exited before accepting on its socket")
    }

    /// A server with `args` besides its Unix socket (e.g. a TLS port), or `None` if it exited
    /// before accepting on the socket (a TCP port of `args` taken, say). Redis opens its socket
    /// after its TCP ports, so once the socket accepts, those ports are this server's.
    pub fn start_with(args: &[&str]) -> Option<Redis> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "test-redis-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = Redis {
            child: None,
            dir,
            args: args.iter().map(|&arg| arg.to_owned()).collect(),
        };
        redis.restart().then_some(redis)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    /// The URL for `REDIS_URL`.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.socket().display())
    }

    /// Stops the server (an outage); `restart` brings it back on the same socket.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again, empty, on the same socket; whether it accepts there.
    pub fn restart(&mut self) -> bool {
        self.stop();
        let log = self.dir.join("redis.log");
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .arg("--unixsocket")
            .arg(self.socket())
            .args(["--unixsocketperm", "700"])
            .args(&self.args)
            .stdout(Stdio::null())
            .spawn()
            .expect(
                "redis-server must be installed (Debian package redis-server; .ci/run installs it)",
            );
        let deadline = Instant::now() + STARTUP;
        // A socket file left by the previous server refuses connections until this one listens.
        while UnixStream::connect(self.socket()).is_err() {
            if child.try_wait().unwrap().is_some() {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                eprintln!("redis-server exited before accepting on its socket: {log}");
                return false;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
        true
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
