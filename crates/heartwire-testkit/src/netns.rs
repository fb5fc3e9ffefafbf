//! Two fresh network namespaces joined by a veth pair, for half-open tests: a server in
//! one, clients in the other, and the path between them dropped silently in either
//! direction by nftables rules, as a dead router or a pulled cable would.
//!
//! Everything lives inside the two namespaces this module creates: the veth pair is made
//! in them (`10.77.0.1/30` on the server's side, `10.77.0.2/30` on the clients'), the
//! host's interfaces and rules are never touched, and dropping the [`Namespaces`]
//! deletes both namespaces, with the pair and the rules, whether the test passed or
//! panicked. Their names carry the test's tag and the process id, so tests running at
//! the same time never share one.
//!
//! A drop is an `input` rule in the receiving namespace: the sender's kernel sends as
//! usual and never learns that the packets vanished, so neither end gets an error, a
//! reset or an ICMP message: only silence.
//!
//! Creating a namespace needs root (CAP_NET_ADMIN); without it [`Namespaces::create`]
//! fails the test with a sentence saying so, never skips it.

use std::process::{Command, Stdio};

/// The server's address, on its side of the veth pair.
pub const SERVER_IP: &str = "10.77.0.1";
/// The clients' address, on their side of the veth pair.
pub const CLIENT_IP: &str = "10.77.0.2";

/// The name of the veth end inside each namespace.
const VETH: &str = "hw0";
/// The nftables table each namespace gets, with one `input` chain.
const TABLE: &str = "heartwire";

/// Which way packets stop going.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the clients to the server.
    Up,
    /// From the server to the clients.
    Down,
    /// Both ways.
    Both,
}

impl Direction {
    /// How the tests name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Up => "client→server",
            Self::Down => "server→client",
            Self::Both => "both ways",
        }
    }
}

/// A server namespace and a client namespace joined by a veth pair; both are deleted
/// when this is dropped.
#[derive(Debug)]
pub struct Namespaces {
    server: String,
    client: String,
}

impl Namespaces {
    /// Creates the pair of namespaces for the test `tag`, with loopback up in each, the
    /// veth pair addressed, and an empty nftables `input` chain in each. Fails the test
    /// with a sentence when namespaces cannot be created here.
    pub fn create(tag: &str) -> Self {
        require_nft();
        let pid = std::process::id();
        let namespaces = Self {
            server: format!("hw-{tag}-{pid}-srv"),
            client: format!("hw-{tag}-{pid}-cli"),
        };
        if let Err(err) = try_ip(&["netns", "add", &namespaces.server]) {
            panic!(
                "cannot create a network namespace ({err}): the half-open tests need root \
                 or CAP_NET_ADMIN to make their own namespaces; scripts/test runs them as root"
            );
        }
        // From here on, a failure is cleaned up by Drop.
        ip(&["netns", "add", &namespaces.client]);
        let (server, client) = (&namespaces.server, &namespaces.client);
        ip(&[
            "-n", server, "link", "add", VETH, "type", "veth", "peer", "name", VETH, "netns",
            client,
        ]);
        for (namespace, address) in [(server, SERVER_IP), (client, CLIENT_IP)] {
            ip(&["-n", namespace, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                namespace,
                "addr",
                "add",
                &format!("{address}/30"),
                "dev",
                VETH,
            ]);
            ip(&["-n", namespace, "link", "set", VETH, "up"]);
            nft(
                namespace,
                &format!(
                    "add table inet {TABLE}\n\
                     add chain inet {TABLE} input {{ type filter hook input priority 0; policy accept; }}\n"
                ),
            );
        }
        namespaces
    }

    /// `program` run inside the server's namespace (`ip netns exec`, which execs it:
    /// the child's pid is the program's).
    pub fn in_server(&self, program: &str) -> Command {
        exec_in(&self.server, program)
    }

    /// `program` run inside the clients' namespace.
    pub fn in_client(&self, program: &str) -> Command {
        exec_in(&self.client, program)
    }

    /// Drops every packet going `direction` from now on, silently.
    pub fn drop_path(&self, direction: Direction) {
        for namespace in self.receivers(direction) {
            nft(
                namespace,
                &format!("add rule inet {TABLE} input iifname \"{VETH}\" drop\n"),
            );
        }
    }

    /// The namespaces whose input drops packets going `direction`.
    fn receivers(&self, direction: Direction) -> Vec<&str> {
        match direction {
            Direction::Up => vec![&self.server],
            Direction::Down => vec![&self.client],
            Direction::Both => vec![&self.server, &self.client],
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth pair, which takes the other
        // end with it, and its rules.
        for namespace in [&self.server, &self.client] {
            let _ = try_ip(&["netns", "del", namespace]);
        }
    }
}

fn exec_in(namespace: &str, program: &str) -> Command {
    let mut command = Command::new("ip");
    command.args(["netns", "exec", namespace, program]);
    command
}

/// Fails the test, with what to do, when `nft` is not installed.
fn require_nft() {
    let found = Command::new("nft")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "nft is missing: the half-open tests drop packets with nftables; \
         run scripts/test install, which installs the Debian package nftables"
    );
}

/// Runs `ip args…`; the error is its stderr.
fn try_ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|err| format!("cannot run ip: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

fn ip(args: &[&str]) {
    try_ip(args).unwrap_or_else(|err| panic!("{err}"));
}

/// Feeds `script` to `nft -f -` inside `namespace`.
fn nft(namespace: &str, script: &str) {
    use std::io::Write;
    let mut child = exec_in(namespace, "nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nft");
    child
        .stdin
        .take()
        .expect("nft's stdin")
        .write_all(script.as_bytes())
        .expect("write to nft");
    let output = child.wait_with_output().expect("nft ends");
    assert!(
        output.status.success(),
        "nft in {namespace} refused {script:?}: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
}
