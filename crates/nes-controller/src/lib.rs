//! nes-controller: puts the nes-agent sidecar into the pods of StatefulSets labelled
//! `network-config/runtime-ip: "true"`, and gives their namespaces the agent's token Secret.
//!
//! [`inject`] holds the sidecar and the pure add/remove decisions, shared by both modes.
//! Webhook mode (the default): [`admission`] decides about each Pod CREATE (pure),
//! [`webhook`] serves it over HTTPS with certificates from [`tls`], and [`webhook_config`]
//! keeps the `MutatingWebhookConfiguration` registered. [`template`] is the StatefulSet
//! reconciler of both modes (template patching in template mode, the token Secret from
//! [`token`] in both); [`operator`] wires it onto operator-core. [`pod_security`] says when a
//! namespace's Pod Security level refuses the sidecar.

pub mod admission;
pub mod inject;
pub mod operator;
pub mod pod_security;
pub mod template;
pub mod tls;
pub mod token;
pub mod webhook;
pub mod webhook_config;

pub use template::Mode;
