//! A remote machine reached with the system `ssh` and `scp`: its address as the user wrote it
//! (`host`, `user@host`, `user@host:port`, `[v6]:port`, or an alias from `~/.ssh/config`) and the
//! command lines that reach it. quench never asks for a password: every connection runs with
//! `BatchMode=yes`, so a host needs key authentication (or an agent) set up beforehand.

use std::fmt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::remote::RemoteError;

/// Options every connection gets after the user's own `-o` options (ssh keeps the first value
/// it reads for an option, so the user's win).
const DEFAULT_OPTIONS: &[&str] = &[
    "BatchMode=yes",
    "ConnectTimeout=10",
    "ControlMaster=no",
    "ControlPath=none",
    "ServerAliveInterval=5",
    "ServerAliveCountMax=3",
];

/// Exit status with which `ssh` and `scp` report a connection that failed or dropped.
pub const SSH_CONNECTION_LOST: i32 = 255;

/// Where a host is, as parsed from the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// Login name, when given (`user@`); otherwise ssh's default.
    pub user: Option<String>,
    /// Host name, address or `~/.ssh/config` alias (IPv6 without brackets).
    pub name: String,
    /// TCP port, when given; otherwise ssh's default.
    pub port: Option<u16>,
}

impl Host {
    /// Parses `host`, `user@host`, `host:port`, `user@host:port`, `[v6]` or `[v6]:port`. A bare
    /// IPv6 address (several colons, no brackets) has no port.
    pub fn parse(text: &str) -> Result<Host, RemoteError> {
        let bad = |why: &str| RemoteError::BadHost {
            host: text.to_string(),
            reason: why.to_string(),
        };
        let (user, rest) = match text.rsplit_once('@') {
            Some(("", _)) => return Err(bad("empty user name before '@'")),
            Some((u, r)) => (Some(u.to_string()), r),
            None => (None, text),
        };
        let (name, port) = if let Some(inner) = rest.strip_prefix('[') {
            let (addr, after) = inner
                .split_once(']')
                .ok_or_else(|| bad("'[' without a closing ']'"))?;
            match after {
                "" => (addr, None),
                _ => match after.strip_prefix(':') {
                    Some(p) => (addr, Some(p)),
                    None => return Err(bad("only ':PORT' may follow ']'")),
                },
            }
        } else if rest.matches(':').count() == 1 {
            let (n, p) = rest.split_once(':').ok_or_else(|| bad("bad port"))?;
            (n, Some(p))
        } else {
            (rest, None)
        };
        if name.is_empty() {
            return Err(bad("empty host name"));
        }
        if name.starts_with('-') || name.chars().any(|c| c.is_whitespace() || c == '/') {
            return Err(bad(
                "a host name cannot start with '-' or hold spaces or '/'",
            ));
        }
        let port = match port {
            None => None,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(bad(&format!("port `{p}` is not a number in 1..=65535"))),
            },
        };
        Ok(Host {
            user,
            name: name.to_string(),
            port,
        })
    }

    /// A file-name-safe label for this host's local output folder: the name, plus `_PORT` when
    /// a port was given (`127.0.0.1_2222`).
    pub fn label(&self) -> String {
        let mut label: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if let Some(port) = self.port {
            label.push_str(&format!("_{port}"));
        }
        label
    }

    /// `[user@]name` as ssh takes it (no port).
    fn destination(&self) -> String {
        match &self.user {
            Some(u) => format!("{u}@{}", self.name),
            None => self.name.clone(),
        }
    }

    /// `[user@]name` or `[user@][v6]` as scp takes it before `:path`.
    fn scp_destination(&self) -> String {
        let name = if self.name.contains(':') {
            format!("[{}]", self.name)
        } else {
            self.name.clone()
        };
        match &self.user {
            Some(u) => format!("{u}@{name}"),
            None => name,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        match (self.name.contains(':'), self.port) {
            (true, Some(p)) => write!(f, "[{}]:{p}", self.name),
            (false, Some(p)) => write!(f, "{}:{p}", self.name),
            (_, None) => write!(f, "{}", self.name),
        }
    }
}

/// How to reach one host: its address and the user's extra `-o` options for `ssh` and `scp`.
#[derive(Debug, Clone)]
pub struct Ssh {
    /// The host.
    pub host: Host,
    /// `-o` options passed to both `ssh` and `scp` before quench's defaults (e.g.
    /// `IdentityFile=~/.ssh/board`, `StrictHostKeyChecking=accept-new`).
    pub options: Vec<String>,
}

/// What a finished `ssh` or `scp` printed and how it exited.
#[derive(Debug)]
pub struct Finished {
    /// Exit status (`None` when killed by a signal).
    pub code: Option<i32>,
    /// Standard output, lossily decoded.
    pub stdout: String,
    /// Standard error, lossily decoded.
    pub stderr: String,
}

impl Ssh {
    /// The `-o` options of every call: the user's, then quench's defaults.
    fn option_args(&self) -> Vec<String> {
        self.options
            .iter()
            .map(String::as_str)
            .chain(DEFAULT_OPTIONS.iter().copied())
            .flat_map(|o| ["-o".to_string(), o.to_string()])
            .collect()
    }

    /// An `ssh` command running `script` with `sh` on the host (whatever the login shell),
    /// stdin closed, stdout and stderr not yet redirected.
    pub fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.option_args());
        if let Some(port) = self.host.port {
            cmd.arg("-p").arg(port.to_string());
        }
        cmd.arg("-T")
            .arg(self.host.destination())
            .arg("--")
            .arg(format!("sh -c {}", quote(script)))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `script` on the host and returns what it printed; a non-zero exit is an error that
    /// names `what` and quotes the host's stderr.
    pub fn run(&self, what: &str, script: &str) -> Result<String, RemoteError> {
        let done = self.finish(what, self.command(script))?;
        Ok(done.stdout)
    }

    /// Copies local `files` into the folder `remote_dir` (relative to the remote home), keeping
    /// file times (`scp -p`).
    pub fn upload(&self, files: &[&Path], remote_dir: &str) -> Result<(), RemoteError> {
        let mut cmd = self.scp();
        cmd.args(files);
        cmd.arg(format!("{}:{remote_dir}/", self.host.scp_destination()));
        self.finish(&format!("copying files into {remote_dir}"), cmd)
            .map(drop)
    }

    /// Copies the remote file `remote_path` (relative to the remote home) to `local`.
    pub fn download(&self, remote_path: &str, local: &Path) -> Result<(), RemoteError> {
        let mut cmd = self.scp();
        cmd.arg(format!("{}:{remote_path}", self.host.scp_destination()));
        cmd.arg(local);
        self.finish(&format!("fetching {remote_path}"), cmd)
            .map(drop)
    }

    /// An `scp` command with the options and port set.
    fn scp(&self) -> Command {
        let mut cmd = Command::new("scp");
        cmd.arg("-q").arg("-p").args(self.option_args());
        if let Some(port) = self.host.port {
            cmd.arg("-P").arg(port.to_string());
        }
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs `cmd` to the end; a non-zero exit becomes [`RemoteError::Command`].
    fn finish(&self, what: &str, mut cmd: Command) -> Result<Finished, RemoteError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let out = cmd.output().map_err(|source| RemoteError::Spawn {
            program: program.clone(),
            source,
        })?;
        let done = Finished {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        if out.status.success() {
            Ok(done)
        } else {
            Err(RemoteError::Command {
                host: self.host.to_string(),
                what: what.to_string(),
                code: done.code,
                stderr: done.stderr.trim().to_string(),
            })
        }
    }
}

/// `text` as one single-quoted POSIX shell word.
pub fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_address_form() {
        let h = Host::parse("pi@board.local:2222").unwrap();
        assert_eq!(
            h,
            Host {
                user: Some("pi".into()),
                name: "board.local".into(),
                port: Some(2222)
            }
        );
        assert_eq!(h.to_string(), "pi@board.local:2222");
        assert_eq!(h.label(), "board.local_2222");
        let h = Host::parse("board").unwrap();
        assert_eq!((h.user, h.port, h.name.as_str()), (None, None, "board"));
        let h = Host::parse("root@[::1]:22").unwrap();
        assert_eq!((h.name.as_str(), h.port), ("::1", Some(22)));
        assert_eq!(h.to_string(), "root@[::1]:22");
        assert_eq!(h.scp_destination(), "root@[::1]");
        let h = Host::parse("fe80::1").unwrap();
        assert_eq!((h.name.as_str(), h.port), ("fe80::1", None));
        assert_eq!(h.label(), "fe80__1");
    }

    #[test]
    fn refuses_bad_addresses_with_the_reason() {
        for (text, why) in [
            ("", "empty host name"),
            ("@board", "empty user"),
            ("board:0", "port `0`"),
            ("board:ssh", "port `ssh`"),
            ("board:70000", "port `70000`"),
            ("[::1", "closing"),
            ("[::1]x", "':PORT'"),
            ("-oProxyCommand=x", "start with '-'"),
            ("a b", "spaces"),
        ] {
            let err = Host::parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn user_options_come_before_the_defaults() {
        let ssh = Ssh {
            host: Host::parse("u@h:2200").unwrap(),
            options: vec!["ConnectTimeout=3".into()],
        };
        let cmd = ssh.command("echo 'hi'");
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let first = args.iter().position(|a| a == "ConnectTimeout=3").unwrap();
        let default = args.iter().position(|a| a == "ConnectTimeout=10").unwrap();
        assert!(first < default);
        assert!(args.windows(2).any(|w| w[0] == "-p" && w[1] == "2200"));
        assert_eq!(args.last().unwrap(), r"sh -c 'echo '\''hi'\'''");
    }

    #[test]
    fn quoting_survives_a_real_shell() {
        let nasty = "a'b \"c\" $HOME `x` \\ ;";
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", quote(nasty)))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), nasty);
    }
}
