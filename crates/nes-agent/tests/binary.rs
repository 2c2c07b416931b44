//! The `nes-agent` binary as it runs in a pod: started in a namespace with `ip netns exec`,
//! configured by flags, refusing bad input without changing anything, and resuming from its
//! state directory after a restart with a new boot id.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::{Netns, TOKEN, can_run, token_file};
use nes_agent::client::{AgentClient, ClientError};
use nes_api::{Address, DesiredConfig, ItemState};

struct Running {
    child: Child,
    base: String,
}

impl Running {
    fn start(ns: &Netns, token_file: &Path, state_dir: &Path) -> Running {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns.name(), env!("CARGO_BIN_EXE_nes-agent")])
            .args(["--listen", "127.0.0.1:0", "--resync-interval", "1h"])
            .arg("--token-file")
            .arg(token_file)
            .arg("--state-dir")
            .arg(state_dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start nes-agent");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("ready line");
        let address = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        Running {
            child,
            base: format!("http://{address}"),
        }
    }

    /// SIGTERM, then wait: the agent must exit cleanly.
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
        let status = self.child.wait().expect("wait");
        assert!(status.success(), "nes-agent exited with {status}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn desired(generation: u64, cidrs: &[&str]) -> DesiredConfig {
    DesiredConfig {
        generation,
        addresses: cidrs
            .iter()
            .map(|cidr| Address {
                interface: "v0".into(),
                cidr: (*cidr).into(),
            })
            .collect(),
        ..Default::default()
    }
}

fn api_error(error: ClientError) -> (u16, String) {
    match error {
        ClientError::Api { status, errors } => (
            status,
            errors
                .iter()
                .map(|e| e.message.clone())
                .collect::<Vec<_>>()
                .join("; "),
        ),
        other => panic!("expected an API error, got {other}"),
    }
}

#[test]
fn bad_input_is_refused_precisely_and_changes_nothing() {
    if !can_run() {
        return;
    }
    let ns = Netns::with_veth();
    let (dir, token_file) = token_file();
    let agent = Running::start(&ns, &token_file, &dir.path().join("state"));
    let base = agent.base.clone();
    let witness = ns.clone();
    ns.run(move || async move {
        let client = AgentClient::new(base.clone(), Some(TOKEN.into())).unwrap();
        client.apply(&desired(1, &["10.1.0.2/24"])).await.expect("apply");
        let kernel = witness.addresses("v0");

        let (status, message) =
            api_error(client.apply(&desired(2, &["10.0.0.300/24"])).await.unwrap_err());
        assert_eq!(status, 422);
        assert_eq!(
            message,
            "addresses[0].cidr: \"10.0.0.300/24\" is not a valid CIDR"
        );

        let mut long = desired(2, &[]);
        long.addresses.push(Address {
            interface: "a-very-long-interface-name".into(),
            cidr: "10.1.0.3/24".into(),
        });
        let (status, message) = api_error(client.apply(&long).await.unwrap_err());
        assert_eq!(status, 422);
        assert!(message.starts_with("addresses[0].interface: \"a-very-long-interface-name\""), "{message}");

        let raw = reqwest::Client::new();
        let unknown = raw
            .put(format!("{base}/v1/config"))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(r#"{"generation": 2, "addresses": [{"interface": "v0", "cidr": "10.1.0.3/24", "label": "x"}]}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(unknown.status(), 400);
        let body = unknown.text().await.unwrap();
        assert!(body.contains("unknown field `label`"), "{body}");

        let wrong = AgentClient::new(base.clone(), Some("not-the-token".into())).unwrap();
        let (status, message) = api_error(wrong.apply(&desired(2, &["10.1.0.3/24"])).await.unwrap_err());
        assert_eq!(status, 403);
        assert!(!message.contains("not-the-token"), "{message}");

        let (status, _) = api_error(client.apply(&desired(0, &[])).await.unwrap_err());
        assert_eq!(status, 409, "an older generation is a conflict");

        // A forged jump to u64::MAX (issue 20): refused, so it cannot park the sequence where
        // no later writer could pass it.
        let (status, message) =
            api_error(client.apply(&desired(u64::MAX, &["10.1.0.9/24"])).await.unwrap_err());
        assert_eq!(status, 409);
        assert_eq!(
            message,
            "generation 18446744073709551615 is not the next generation: the agent holds generation 1 and accepts 1 again (same content) or 2"
        );

        // Nothing changed: neither the desired configuration nor the kernel.
        assert_eq!(client.config().await.unwrap(), Some(desired(1, &["10.1.0.2/24"])));
        assert_eq!(witness.addresses("v0"), kernel);

        // Nobody is locked out: the next generation, as nes-manager issues it, is applied.
        let next = nes_api::generation::next(Some(1));
        let response = client.apply(&desired(next, &["10.1.0.3/24"])).await.expect("apply 2");
        assert_eq!(response.generation, 2);
        assert!(witness.addresses("v0").contains(&"10.1.0.3/24".to_owned()));
    });
    agent.stop();
}

#[test]
fn a_restarted_agent_resumes_with_a_new_boot_id_and_its_ledger() {
    if !can_run() {
        return;
    }
    let ns = Netns::with_veth();
    let (dir, token_file) = token_file();
    let state = dir.path().join("state");

    let first = Running::start(&ns, &token_file, &state);
    let base = first.base.clone();
    let boot = ns.run(move || async move {
        let client = AgentClient::new(base, Some(TOKEN.into())).unwrap();
        let response = client.apply(&desired(1, &["10.1.0.2/24"])).await.unwrap();
        assert!(
            response
                .results
                .iter()
                .all(|r| r.state == ItemState::Applied)
        );
        response.boot_id
    });
    first.stop();

    let second = Running::start(&ns, &token_file, &state);
    let base = second.base.clone();
    let witness = ns.clone();
    ns.run(move || async move {
        let client = AgentClient::new(base, Some(TOKEN.into())).unwrap();
        let status = client.status().await.unwrap();
        assert_ne!(status.boot_id, boot, "a new process has a new boot id");
        assert_eq!(
            status.generation,
            Some(1),
            "the configuration survived the restart"
        );
        assert_eq!(
            client.config().await.unwrap(),
            Some(desired(1, &["10.1.0.2/24"]))
        );
        // The ledger survived too: the restarted agent still removes what it created (the
        // answer comes after the pass, so the kernel already reflects it).
        client.apply(&desired(2, &[])).await.unwrap();
        assert!(
            !witness.addresses("v0").contains(&"10.1.0.2/24".to_owned()),
            "the address was not removed"
        );
    });
    second.stop();
}
