//! The systemd unit of docs/DEPLOY.md, reloaded as systemd would reload it: its
//! `ExecStart=` and `ExecReload=` command lines are read from the document (so the
//! document and this test cannot drift apart), the binary, config file and upgrade
//! socket paths replaced by the test's, split into words as systemd splits them and
//! run without a shell of the test's own (`ExecReload=` runs `/bin/sh -c …` itself),
//! with `NOTIFY_SOCKET` naming a datagram socket the test listens on. systemd itself
//! is not run: the machine's PID 1 is not systemd.

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{PATIENCE, Running, without_inherited_settings};
use crate::traffic::{client, socket_path, traffic, until};

/// The paths the unit names, which the test replaces.
const UNIT_BINARY: &str = "/usr/local/bin/heartwire";
const UNIT_CONFIG: &str = "/etc/heartwire/heartwire.toml";
const UNIT_SOCKET: &str = "/run/heartwire/upgrade.sock";

/// The value of `key=` in the unit file of docs/DEPLOY.md, its continuation lines
/// (ending in `\`) joined as systemd joins them: the backslash becomes a space.
fn unit_setting(key: &str) -> String {
    let deploy = heartwire_testkit::peer::repo_root().join("docs/DEPLOY.md");
    let text = std::fs::read_to_string(&deploy).unwrap();
    let unit = text
        .split("```ini\n# /etc/systemd/system/heartwire.service\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/DEPLOY.md shows the unit file in an ini block");
    let mut joined = Vec::new();
    let mut pending = String::new();
    for line in unit.lines() {
        match line.strip_suffix('\\') {
            Some(continued) => {
                pending.push_str(continued);
                pending.push(' ');
            }
            None => {
                pending.push_str(line);
                joined.push(std::mem::take(&mut pending));
            }
        }
    }
    let prefix = format!("{key}=");
    let found: Vec<&String> = joined
        .iter()
        .filter(|line| line.starts_with(&prefix))
        .collect();
    assert_eq!(found.len(), 1, "the unit sets {key} once: {found:?}");
    found[0][prefix.len()..].to_owned()
}

/// `setting` with the unit's paths replaced by these, split into words as systemd
/// splits a command line (quotes group words, and are removed).
fn command_line(setting: &str, binary: &Path, config: &Path, socket: &Path) -> Vec<String> {
    for path in [UNIT_BINARY, UNIT_CONFIG, UNIT_SOCKET] {
        assert!(setting.contains(path), "{setting:?} no longer names {path}");
    }
    let setting = setting
        .replace(UNIT_BINARY, binary.to_str().unwrap())
        .replace(UNIT_CONFIG, config.to_str().unwrap())
        .replace(UNIT_SOCKET, socket.to_str().unwrap());
    shlex::split(&setting).unwrap_or_else(|| panic!("cannot split {setting:?}"))
}

/// `words` as a command with `NOTIFY_SOCKET`, as systemd runs the unit's commands
/// (`NotifyAccess=all`), and none of heartwire's settings from the test's environment.
fn unit_command(words: &[String], notify: &Path) -> Command {
    let mut command = Command::new(&words[0]);
    without_inherited_settings(&mut command)
        .args(&words[1..])
        .env("NOTIFY_SOCKET", notify);
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_units_exec_reload_upgrades_live_and_names_the_new_main_pid_first() {
    let (dir, socket) = socket_path("upgrade-systemd");
    let config = dir.path().join("heartwire.toml");
    std::fs::write(
        &config,
        "listen = \"127.0.0.1:0\"\nping-interval = \"1s\"\nping-timeout = \"2s\"\n",
    )
    .unwrap();
    let notify_path = dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    let binary = Path::new(env!("CARGO_BIN_EXE_heartwire"));

    let start = command_line(&unit_setting("ExecStart"), binary, &config, &socket);
    assert_eq!(
        start[0],
        binary.to_str().unwrap(),
        "ExecStart runs heartwire"
    );
    let mut old = Running::start(unit_command(&start, &notify_path));
    let old_pid = old.child.id();
    let traffic = traffic(&old.addr, 3).await;

    let reload = command_line(&unit_setting("ExecReload"), binary, &config, &socket);
    assert_eq!(
        reload[..2],
        ["/bin/sh", "-c"],
        "ExecReload runs its command through /bin/sh"
    );
    // The new process is the shell's child in the background: its first line comes
    // through the pipe it inherits, which outlives the shell.
    let mut reloading = Running::start(unit_command(&reload, &notify_path));
    let new = MainProcess::taking_over(&socket);
    assert_eq!(
        reloading.addr, old.addr,
        "the new process serves the same listening socket"
    );
    assert!(
        reloading.wait().success(),
        "ExecReload returns (systemd waits for it)"
    );
    assert!(
        old.wait().success(),
        "the old process ends once it has handed over"
    );

    // The old process ended after its commit, which followed the new process's
    // MAINPID= (sent before it confirmed): the datagram waits in the queue now.
    notify.set_nonblocking(true).unwrap();
    let mut datagram = [0; 256];
    let length = notify
        .recv(&mut datagram)
        .expect("MAINPID= was sent before the old process exited");
    let message = std::str::from_utf8(&datagram[..length]).unwrap();
    assert_eq!(
        message,
        format!("MAINPID={}\n", new.0),
        "the heartwire serve --take-over process names itself (not the shell {}, not the old process {old_pid})",
        reloading.child.id()
    );
    assert!(
        notify.recv(&mut datagram).is_err(),
        "one notification, from the new process"
    );

    traffic.twenty_more("messages after the reload").await;
    let (_late, late) = client(&reloading.addr, true);
    until("a client of the new process", || {
        late.lock().unwrap().opens == 1
    })
    .await;
    traffic.check().await;
    new.stop();
}

/// The main process after the reload: not the test's child (the shell that started it
/// has exited), so it is found and stopped by its pid, and killed if the test fails.
struct MainProcess(u32);

impl MainProcess {
    /// The one process whose command line has `--take-over` and `socket`.
    fn taking_over(socket: &Path) -> Self {
        let socket = socket.to_str().unwrap().as_bytes();
        let found: Vec<u32> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .filter(|pid| {
                let Ok(command_line) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                    return false;
                };
                let words: Vec<&[u8]> = command_line.split(|byte| *byte == 0).collect();
                words.contains(&b"--take-over".as_slice()) && words.contains(&socket)
            })
            .collect();
        assert_eq!(found.len(), 1, "one process takes over: {found:?}");
        Self(found[0])
    }

    /// Sends SIGTERM, as systemd's `KillSignal=SIGTERM`, and waits (bounded) until the
    /// process is gone.
    fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.0.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + PATIENCE;
        while is_running(self.0) {
            assert!(Instant::now() < deadline, "the new process did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.0 = 0;
    }
}

impl Drop for MainProcess {
    fn drop(&mut self) {
        if self.0 != 0 {
            let _ = Command::new("kill")
                .args(["-KILL", &self.0.to_string()])
                .status();
        }
    }
}

/// Whether `pid` is a process that has not exited (a zombie has exited).
fn is_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| !rest.starts_with(" Z"))
    })
}
