//! Network namespaces for tests that need a Linux network of their own: created with iproute2,
//! removed when the last handle drops, and [`Netns::run`] to run async code whose sockets must
//! be opened inside the namespace (netlink, listeners, clients).
//!
//! Needs root and iproute2; [`can_run`] says loudly when a test has to skip.

use std::future::Future;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;

/// The host's address as seen from a [`Netns::with_host_link`] namespace (a link-local address
/// every host end shares, as Calico does, so no subnet on the host is taken).
pub const HOST_GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

/// False (with a loud message naming `what`) where a test cannot create network namespaces:
/// it needs root and iproute2, which CI has (`cargo xtask test` installs iproute2).
pub fn can_run(what: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    let ip = Command::new("ip").arg("-V").output().is_ok();
    if !(root && ip) {
        eprintln!("\n*** SKIPPED: {what} needs root and iproute2 (root: {root}, ip: {ip}) ***\n");
    }
    root && ip
}

/// A network namespace, deleted when the last clone is dropped.
#[derive(Clone)]
pub struct Netns {
    inner: Arc<Named>,
}

struct Named(String);

impl Drop for Named {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

impl Netns {
    /// A fresh namespace with loopback up.
    #[allow(clippy::new_without_default)] // creating a namespace is an action, not a default
    pub fn new() -> Self {
        let name = format!(
            "kc-t{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        run_ip(&["netns", "add", &name]);
        let netns = Netns {
            inner: Arc::new(Named(name)),
        };
        netns.ip(&["link", "set", "lo", "up"]);
        netns
    }

    /// A fresh namespace with a veth pair `v0`/`v1`, both up.
    pub fn with_veth() -> Self {
        let netns = Netns::new();
        netns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
        netns.ip(&["link", "set", "v0", "up"]);
        netns.ip(&["link", "set", "v1", "up"]);
        netns
    }

    /// A fresh namespace joined to the host's by a veth, the way a CNI plugin wires a pod:
    /// `eth0` inside holds `ip/32` with a default route via [`HOST_GATEWAY`], which the host end
    /// owns, and the host routes `ip/32` to its end. So the host reaches the namespace at `ip`
    /// and the namespace reaches the host's listeners at [`HOST_GATEWAY`]. Deleting the
    /// namespace deletes the pair and the host route with it.
    pub fn with_host_link(ip: Ipv4Addr) -> Self {
        let netns = Netns::new();
        let host_end = format!(
            "kcv{}x{}",
            std::process::id() % 100_000,
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let gateway = HOST_GATEWAY.to_string();
        let ip = ip.to_string();
        let ns = netns.name().to_owned();
        run_ip(&[
            "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        run_ip(&["addr", "add", &format!("{gateway}/32"), "dev", &host_end]);
        run_ip(&["link", "set", &host_end, "up"]);
        run_ip(&["route", "add", &format!("{ip}/32"), "dev", &host_end]);
        netns.ip(&["addr", "add", &format!("{ip}/32"), "dev", "eth0"]);
        netns.ip(&["link", "set", "eth0", "up"]);
        netns.ip(&["route", "add", &gateway, "dev", "eth0", "scope", "link"]);
        netns.ip(&["route", "add", "default", "via", &gateway, "dev", "eth0"]);
        netns
    }

    /// Its name under /run/netns.
    pub fn name(&self) -> &str {
        &self.inner.0
    }

    /// Runs `ip -n NAME args...`, panicking with its stderr on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.name()];
        all.extend_from_slice(args);
        run_ip(&all)
    }

    /// Runs `ip -n NAME args...` and returns whether it succeeded and its stderr.
    pub fn try_ip(&self, args: &[&str]) -> Result<String, String> {
        let output = Command::new("ip")
            .args(["-n", self.name()])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    /// `ip -j -n NAME args...` parsed.
    pub fn ip_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-j"];
        all.extend_from_slice(args);
        let text = self.ip(&all);
        if text.trim().is_empty() {
            return Value::Array(vec![]);
        }
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("ip -j {args:?}: {e}: {text}"))
    }

    /// The `local/prefixlen` addresses of `dev`, as `ip -j addr` reports them.
    pub fn addresses(&self, dev: &str) -> Vec<String> {
        let json = self.ip_json(&["addr", "show", "dev", dev]);
        let mut out = Vec::new();
        for link in json.as_array().into_iter().flatten() {
            for info in link["addr_info"].as_array().into_iter().flatten() {
                out.push(format!(
                    "{}/{}",
                    info["local"].as_str().unwrap_or("?"),
                    info["prefixlen"]
                ));
            }
        }
        out
    }

    /// The destinations of the routes with protocol `proto` in `table` (`ip -j route`).
    pub fn routes(&self, family: &str, table: &str, proto: &str) -> Vec<Value> {
        let json = self.ip_json(&[family, "route", "show", "table", table, "proto", proto]);
        json.as_array().cloned().unwrap_or_default()
    }

    /// Runs `body` on a thread inside this namespace, on a single-threaded runtime.
    pub fn run<F, Fut, T>(&self, body: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let path = format!("/run/netns/{}", self.name());
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open the namespace");
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .expect("enter the namespace");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(body())
        })
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

fn run_ip(args: &[&str]) -> String {
    let output = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        output.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_linked_namespace_and_the_host_reach_each_other() {
        if !can_run("the host-link test") {
            return;
        }
        let ip = Ipv4Addr::new(10, 251, 0, 7);
        let netns = Netns::with_host_link(ip);
        let listener = std::net::TcpListener::bind((HOST_GATEWAY, 0)).expect("bind on the host");
        let port = listener.local_addr().expect("addr").port();
        // The namespace connects to the host's listener over the veth ...
        let from = netns.run(move || async move {
            let stream = tokio::net::TcpStream::connect((HOST_GATEWAY, port))
                .await
                .expect("the namespace reaches the host");
            stream.local_addr().expect("local addr").ip()
        });
        assert_eq!(
            from, ip,
            "the connection comes from the namespace's address"
        );
        // ... and the host reaches a listener inside the namespace at its address.
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let server_ns = netns.clone();
        let server = std::thread::spawn(move || {
            server_ns.run(move || async move {
                let listener = tokio::net::TcpListener::bind("0.0.0.0:0")
                    .await
                    .expect("bind");
                port_tx
                    .send(listener.local_addr().expect("addr").port())
                    .expect("send port");
                listener.accept().await.expect("accept").1.ip()
            })
        });
        let port = port_rx.recv().expect("the server's port");
        std::net::TcpStream::connect((ip, port)).expect("the host reaches the namespace");
        server.join().expect("server thread");
        drop(listener);
    }
}
