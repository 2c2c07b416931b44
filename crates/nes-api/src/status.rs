//! What the agent answers: the apply response, the observed status, the error body.
//!
//! These are outputs of the agent. Unlike the config types they accept unknown fields, so a
//! manager or CLI built against this version can still read an answer from a newer agent.

use std::fmt;
use std::net::IpAddr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::items::ItemResult;
use crate::validate::ValidationError;

/// Identifies one run of the agent, generated at its start. A changed boot id tells the manager
/// the agent restarted, so the applied generation it remembered may no longer hold.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(transparent)]
pub struct BootId(String);

impl BootId {
    /// A boot id from an existing string (e.g. one read back from JSON or a header).
    pub fn new(id: impl Into<String>) -> Self {
        BootId(id.into())
    }

    /// A boot id from 128 random bits, written as 32 lowercase hex digits.
    pub fn from_u128(bits: u128) -> Self {
        BootId(format!("{bits:032x}"))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The answer to applying a [`DesiredConfig`](crate::DesiredConfig).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplyResponse {
    /// The generation of the config this answers.
    pub generation: u64,
    /// The agent run that applied it.
    pub boot_id: BootId,
    /// One result per item, in apply order.
    pub results: Vec<ItemResult>,
}

/// The pod's network as the agent observes it, plus the results of the last apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// The agent run reporting.
    pub boot_id: BootId,
    /// The generation last applied by this agent run; absent before the first apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// All links in the namespace.
    pub links: Vec<LinkStatus>,
    /// All addresses.
    pub addresses: Vec<AddressStatus>,
    /// All routes.
    pub routes: Vec<RouteStatus>,
    /// The per-item results of the last apply.
    pub results: Vec<ItemResult>,
}

/// One observed link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LinkStatus {
    /// The link name.
    pub name: String,
    /// The kernel's interface index.
    pub index: u32,
    /// The operational state as the kernel names it, lowercase: `up`, `down`, `unknown`, ...
    pub operstate: String,
    /// The link MTU.
    pub mtu: u32,
    /// The hardware address, `aa:bb:cc:dd:ee:ff`; absent for links without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// The VLAN id, for VLAN links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<u16>,
    /// The parent link's name, for VLAN links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
}

/// One observed address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddressStatus {
    /// The interface name.
    pub interface: String,
    /// Address and prefix length.
    pub cidr: String,
}

/// One observed route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// The destination network, `default` spelled as `0.0.0.0/0` or `::/0`.
    pub destination: String,
    /// The next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// The output interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// The route priority.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
    /// The routing table.
    pub table: u32,
    /// Who installed it, as the kernel names it: `kernel`, `boot`, `static`, ...
    pub protocol: String,
}

/// The body of every 4xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    /// A stable, machine-readable code, e.g. `invalidCidr`.
    pub code: String,
    /// The human-readable message.
    pub message: String,
    /// The offending field's path, e.g. `addresses[2].cidr`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl From<&ValidationError> for ApiError {
    fn from(error: &ValidationError) -> Self {
        ApiError {
            code: error.code().to_owned(),
            message: error.to_string(),
            field: Some(error.field().to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::items::{ItemKey, ItemState};

    fn sample_status() -> Status {
        Status {
            boot_id: BootId::from_u128(0xabc),
            generation: Some(3),
            links: vec![LinkStatus {
                name: "eth0.100".into(),
                index: 4,
                operstate: "up".into(),
                mtu: 1500,
                mac: Some("0a:58:0a:f4:00:05".into()),
                vlan_id: Some(100),
                parent: Some("eth0".into()),
            }],
            addresses: vec![AddressStatus {
                interface: "eth0.100".into(),
                cidr: "10.1.2.3/24".into(),
            }],
            routes: vec![RouteStatus {
                destination: "0.0.0.0/0".into(),
                gateway: Some("10.1.2.1".parse().unwrap()),
                interface: Some("eth0.100".into()),
                metric: None,
                table: 254,
                protocol: "static".into(),
            }],
            results: vec![ItemResult {
                item: ItemKey::Vlan {
                    name: "eth0.100".into(),
                },
                state: ItemState::Applied,
                message: None,
            }],
        }
    }

    #[test]
    fn boot_id_is_32_hex_digits() {
        let id = BootId::from_u128(0xabc);
        assert_eq!(id.to_string(), format!("{:0>32}", "abc"));
        assert_eq!(
            serde_json::to_value(&id).unwrap(),
            serde_json::json!(id.as_str())
        );
        assert_eq!(BootId::new("x").as_str(), "x");
    }

    #[test]
    fn status_and_response_round_trip() {
        let status = sample_status();
        let json = serde_json::to_string(&status).unwrap();
        assert!(
            json.contains(r#""bootId":"0000"#) && json.contains(r#""vlanId":100"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<Status>(&json).unwrap(), status);

        let response = ApplyResponse {
            generation: 3,
            boot_id: status.boot_id.clone(),
            results: status.results.clone(),
        };
        let json = serde_json::to_string(&response).unwrap();
        assert_eq!(
            serde_json::from_str::<ApplyResponse>(&json).unwrap(),
            response
        );
    }

    #[test]
    fn outputs_tolerate_fields_from_newer_agents() {
        let mut json = serde_json::to_value(sample_status()).unwrap();
        json["uptimeSeconds"] = 5.into();
        assert_eq!(
            serde_json::from_value::<Status>(json).unwrap(),
            sample_status()
        );
    }

    #[test]
    fn api_error_from_validation_error() {
        let error = ValidationError::InvalidCidr {
            field: "addresses[2].cidr".into(),
            value: "10.0.0.300/24".into(),
        };
        let body = ApiError::from(&error);
        assert_eq!(
            serde_json::to_value(&body).unwrap(),
            serde_json::json!({
                "code": "invalidCidr",
                "message": "addresses[2].cidr: \"10.0.0.300/24\" is not a valid CIDR",
                "field": "addresses[2].cidr"
            })
        );
    }
}
