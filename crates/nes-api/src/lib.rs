//! nes-api: the shared API of nes (network configuration at runtime).
//!
//! An application changes its pod's network configuration (VLANs, addresses, routes) by sending a
//! [`DesiredConfig`] to the nes-agent in the pod; the agent answers with an [`ApplyResponse`] and
//! reports a [`Status`]. This crate holds only the wire types and pure functions (no I/O), so the
//! agent, the manager and the CLI agree on one definition.
//!
//! - [`config`]: the desired configuration (the agent's input).
//! - [`generation`]: the configuration generation rule the agent enforces and nes-manager
//!   follows ([`generation::next`], [`generation::check`]).
//! - [`items`]: item identity ([`ItemKey`]) and per-item results.
//! - [`status`]: the observed status, the apply response, the boot id and the error body.
//! - [`validate`](mod@validate): [`validate()`] and [`ValidationError`].
//! - [`plan`]: [`apply_order`] and [`diff`].
//! - [`request`]: a pod's configuration requests and [`merge()`] into its one configuration.
//! - [`report`]: what nes-manager delivers to a `NetworkCare` callback.
//! - [`cli`]: the application-facing REST API (nes-cliserver, nescli) and [`ItemKey`]'s textual
//!   forms.
//!
//! See `docs/nes-api.md` for JSON examples and the validation rules.

pub mod cli;
pub mod config;
#[cfg(feature = "crd")]
pub mod crd;
pub mod generation;
pub mod items;
pub mod plan;
pub mod report;
pub mod request;
pub mod status;
pub mod validate;

pub use config::{Address, DesiredConfig, MAIN_TABLE, MAX_ITEMS_PER_KIND, Route, VlanLink};
pub use generation::GenerationError;
pub use items::{ItemKey, ItemResult, ItemState};
pub use plan::{Diff, apply_order, diff};
pub use request::{ConfigureRequest, Items, merge};
pub use status::{AddressStatus, ApiError, ApplyResponse, BootId, LinkStatus, RouteStatus, Status};
pub use validate::{ValidationError, validate};
