//! nes-controller: puts the nes-agent sidecar into the pods of StatefulSets labelled
//! `network-config/runtime-ip: "true"`.
//!
//! [`inject`] holds the sidecar and the pure add/remove decisions; [`template`] is the
//! template-mode reconciler; [`operator`] wires it onto operator-core.

pub mod inject;
pub mod operator;
pub mod template;
