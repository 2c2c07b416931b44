//! nes-agent: the nes data plane. It runs in each pod (a sidecar in the pod's network namespace),
//! applies the desired network configuration (VLAN links, addresses, routes) over netlink, keeps
//! it applied, watches the kernel's network state and reports it over HTTP.
//!
//! Layout: [`agent`] is the contract between the HTTP layer and the reconciler; [`api`] serves it
//! over HTTP ([`auth`] guards writes); [`client`] is the Rust client of that API.
//! [`observed`] models the kernel state and [`plan`] decides what to change (both pure);
//! [`netlink`] talks to the kernel; [`reconciler`] is the level-driven loop tying them together;
//! [`store`] persists the desired configuration and what the agent created.

pub mod agent;
pub mod api;
pub mod auth;
pub mod cli;
pub mod client;
pub mod metrics;
pub mod netlink;
pub mod observed;
pub mod plan;
pub mod reconciler;
pub mod store;
