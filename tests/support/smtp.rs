//! A real SMTP server for the email tests: Debian's aiosmtpd behind `smtp_sink.py`.

use super::{SMTP_PASSWORD, SMTP_USER};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

/// A real SMTP server (Debian's python3-aiosmtpd) with STARTTLS and AUTH; messages land as files.
pub struct SmtpSink {
    child: Child,
    /// Closing it tells the server to exit.
    _stdin: ChildStdin,
    pub port: u16,
    /// The CA that signed the server's certificate (none in plain mode).
    pub ca_file: Option<PathBuf>,
    pub dir: PathBuf,
    pub tls_mode: String,
}

impl SmtpSink {
    pub fn start(dir: &Path, tls_mode: &str) -> SmtpSink {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut child = Command::new("/usr/bin/python3")
            .arg(script)
            .arg("--dir")
            .arg(dir)
            .args(["--tls-mode", tls_mode, "--user", SMTP_USER, "--password", SMTP_PASSWORD])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start smtp_sink.py (apt-get install python3-aiosmtpd)");
        let stdin = child.stdin.take().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("smtp sink banner");
        let banner: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("smtp sink said {line:?}: {e}"));
        SmtpSink {
            child,
            _stdin: stdin,
            port: banner["port"].as_u64().unwrap() as u16,
            ca_file: banner["cert"].as_str().map(PathBuf::from),
            dir: dir.to_path_buf(),
            tls_mode: tls_mode.to_string(),
        }
    }

    /// Raw messages received so far, in order.
    pub fn messages(&self) -> Vec<Vec<u8>> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        names.retain(|p| p.extension().is_some_and(|e| e == "eml"));
        names.sort();
        names.iter().map(|p| std::fs::read(p).unwrap()).collect()
    }

    /// Holds back every reply to DATA by `delay` after the message is stored (zero: none).
    pub fn set_delay(&self, delay: Duration) {
        std::fs::write(self.dir.join("delay-ms"), delay.as_millis().to_string()).expect("write delay-ms");
    }

    /// Stops the server (to simulate an outage).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.stop();
    }
}
