//! The `EdgeApplication` custom resource: where an edge application server runs now (spec) and
//! what consumers were last told (status, the outbox record).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the kafkanotify resources.
pub const GROUP: &str = "kafkanotify.kubecrew.io";

/// Where an edge application server runs, as the service orchestrator records it.
#[derive(CustomResource, Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[kube(
    group = "kafkanotify.kubecrew.io",
    version = "v1alpha1",
    kind = "EdgeApplication",
    namespaced,
    status = "EdgeApplicationStatus",
    shortname = "edgeapp",
    printcolumn = r#"{"name":"App","type":"string","jsonPath":".spec.appId"}"#,
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.edgeNodeId"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".spec.endpoint.host"}"#,
    printcolumn = r#"{"name":"Notified","type":"string","description":"The edge node consumers were last told about","jsonPath":".status.notified.edgeNodeId"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct EdgeApplicationSpec {
    /// Identity of the application clients follow; defaults to `metadata.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub app_id: Option<String>,
    /// The edge node currently hosting the application server.
    #[schemars(length(min = 1, max = 253))]
    pub edge_node_id: String,
    /// Where clients reach the application server.
    pub endpoint: Endpoint,
    /// Kafka topic for this application's notifications; defaults to the operator's `--topic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 249), regex(pattern = r"^[a-zA-Z0-9._-]+$"))]
    pub topic: Option<String>,
}

/// A network endpoint of an application server.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Host name or IP address.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// Port number.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Transport protocol.
    #[serde(default)]
    pub protocol: Protocol,
}

/// Transport protocol of an endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
pub enum Protocol {
    /// TCP (the default).
    #[default]
    #[serde(rename = "TCP")]
    Tcp,
    /// UDP.
    #[serde(rename = "UDP")]
    Udp,
}

/// What the operator last published and had acknowledged, and its conditions.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EdgeApplicationStatus {
    /// The location consumers know, with the record that told them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified: Option<Notified>,
    /// The event being published: recorded before producing, cleared with the broker's
    /// acknowledgement. While it is here consumers may or may not have it, so deletion
    /// retracts it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Pending>,
    /// Locations announced (or maybe announced) on topics the resource no longer uses; each
    /// gets a `removed` there, then leaves this list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<Retired>,
    /// Ready and Degraded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A published and acknowledged location.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notified {
    /// The edge node announced.
    pub edge_node_id: String,
    /// The endpoint announced.
    pub endpoint: Endpoint,
    /// The resource generation the announcement was made for.
    pub generation: i64,
    /// The CloudEvents id of the record.
    pub event_id: String,
    /// The topic it went to.
    pub topic: String,
    /// The partition it went to.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
    /// When the broker acknowledged it (RFC 3339).
    pub time: String,
}

/// An event recorded before it is produced (the outbox entry).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pending {
    /// Its CloudEvents id (a re-publication uses the same).
    pub event_id: String,
    /// `placed`, `migrated`, `endpoint-changed` or `removed`.
    pub kind: crate::event::EventKind,
    /// The topic it goes to.
    pub topic: String,
    /// The location it announces; none for `removed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// What consumers of that topic were told before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Location>,
    /// The resource generation it describes.
    pub generation: i64,
}

/// A location announced on a topic the resource no longer publishes to.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retired {
    /// The topic.
    pub topic: String,
    /// What its consumers were (maybe) told.
    pub location: Location,
}

impl EdgeApplication {
    /// The application identity: `spec.appId`, else the resource name.
    pub fn app_id(&self) -> String {
        self.spec
            .app_id
            .clone()
            .or_else(|| self.metadata.name.clone())
            .unwrap_or_default()
    }

    /// The location the spec asks consumers to know.
    pub fn location(&self) -> Location {
        Location {
            edge_node_id: self.spec.edge_node_id.clone(),
            endpoint: self.spec.endpoint.clone(),
        }
    }
}

/// An edge node and endpoint: what a notification announces.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Location {
    /// The edge node.
    pub edge_node_id: String,
    /// The endpoint on it.
    pub endpoint: Endpoint,
}

impl Notified {
    /// The location this record announced.
    pub fn location(&self) -> Location {
        Location {
            edge_node_id: self.edge_node_id.clone(),
            endpoint: self.endpoint.clone(),
        }
    }
}

impl operator_core::status::ConditionedStatus for EdgeApplicationStatus {
    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }

    fn set_observed_generation(&mut self, generation: Option<i64>) {
        self.observed_generation = generation;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;
    use serde_json::json;

    #[test]
    fn the_crd_validates_ports_and_protocols() {
        let crd = serde_json::to_value(EdgeApplication::crd()).unwrap();
        let version = &crd["spec"]["versions"][0];
        assert_eq!(crd["spec"]["names"]["shortNames"], json!(["edgeapp"]));
        assert_eq!(version["subresources"]["status"], json!({}));
        let endpoint = &version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["endpoint"]
            ["properties"];
        assert_eq!(endpoint["port"]["minimum"].as_f64(), Some(1.0));
        assert_eq!(endpoint["port"]["maximum"].as_f64(), Some(65535.0));
        assert_eq!(endpoint["protocol"]["enum"], json!(["TCP", "UDP"]));
        let columns: Vec<&str> = version["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(columns, ["App", "Node", "Endpoint", "Notified", "Age"]);
    }

    #[test]
    fn app_id_defaults_to_the_name() {
        let mut app: EdgeApplication = serde_json::from_value(json!({
            "apiVersion": "kafkanotify.kubecrew.io/v1alpha1",
            "kind": "EdgeApplication",
            "metadata": {"name": "carla", "namespace": "edge"},
            "spec": {"edgeNodeId": "node-1", "endpoint": {"host": "10.0.0.1", "port": 2000}}
        }))
        .unwrap();
        assert_eq!(app.app_id(), "carla");
        assert_eq!(app.spec.endpoint.protocol, Protocol::Tcp);
        app.spec.app_id = Some("carla-server".into());
        assert_eq!(app.app_id(), "carla-server");
    }
}
