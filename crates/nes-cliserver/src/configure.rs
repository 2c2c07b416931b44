//! A pod's configuration request against its `NetworkConfiguration` (pure): what the spec
//! becomes, whether it is valid, and the answer.
//!
//! Validation runs twice, so errors point at what the client sent when they can: first the
//! request's `add` items alone (paths `add.addresses[0].cidr`), then the merged configuration
//! (paths `spec.vlans[1].parent`, e.g. a VLAN cycle through items of earlier requests).
//!
//! The server cannot see the pod's links (only its agent can), so an interface that is not a
//! VLAN of the configuration is taken as a host link here; the agent reports an interface that
//! does not exist as a failed item in the status.

use std::collections::BTreeSet;

use nes_api::cli::ConfigurationResponse;
use nes_api::crd::{NetworkConfiguration, NetworkConfigurationSpec};
use nes_api::{ApiError, ConfigureRequest, DesiredConfig, Items, ValidationError, merge, validate};

/// The items of a configuration (none when it does not exist).
pub fn current_items(current: Option<&NetworkConfiguration>) -> Items {
    current.map_or_else(Items::default, |cr| Items {
        vlans: cr.spec.vlans.clone(),
        addresses: cr.spec.addresses.clone(),
        routes: cr.spec.routes.clone(),
    })
}

/// The spec after `request`, or every validation error, paths prefixed as the module says.
pub fn next_spec(
    pod: &str,
    current: Option<&NetworkConfiguration>,
    request: &ConfigureRequest,
) -> Result<NetworkConfigurationSpec, Vec<ApiError>> {
    check(&request.add, "add.")?;
    let items = merge(&current_items(current), request);
    check(&items, "spec.")?;
    Ok(NetworkConfigurationSpec {
        pod: pod.to_owned(),
        vlans: items.vlans,
        addresses: items.addresses,
        routes: items.routes,
    })
}

fn check(items: &Items, prefix: &str) -> Result<(), Vec<ApiError>> {
    validate_items(items).map_err(|errors| {
        errors
            .iter()
            .map(|error| {
                let api = ApiError::from(error);
                ApiError {
                    message: format!("{prefix}{}", api.message),
                    field: api.field.map(|f| format!("{prefix}{f}")),
                    code: api.code,
                }
            })
            .collect()
    })
}

/// Validates items with every non-VLAN interface taken as a host link.
pub fn validate_items(items: &Items) -> Result<(), Vec<ValidationError>> {
    let vlans: BTreeSet<&str> = items.vlans.iter().map(|v| v.name.as_str()).collect();
    let host_links: BTreeSet<String> = items
        .vlans
        .iter()
        .map(|v| v.parent.as_str())
        .chain(items.addresses.iter().map(|a| a.interface.as_str()))
        .chain(items.routes.iter().filter_map(|r| r.interface.as_deref()))
        .filter(|name| !vlans.contains(name))
        .map(str::to_owned)
        .collect();
    let config = DesiredConfig {
        generation: 0,
        vlans: items.vlans.clone(),
        addresses: items.addresses.clone(),
        routes: items.routes.clone(),
    };
    validate(&config, &host_links)
}

/// The answer for a stored configuration.
pub fn response(namespace: &str, cr: &NetworkConfiguration) -> ConfigurationResponse {
    ConfigurationResponse {
        namespace: namespace.to_owned(),
        pod: cr.spec.pod.clone(),
        generation: cr.metadata.generation.unwrap_or_default(),
        vlans: cr.spec.vlans.clone(),
        addresses: cr.spec.addresses.clone(),
        routes: cr.spec.routes.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nes_api::{Address, ItemKey, Route, VlanLink};

    fn address(interface: &str, cidr: &str) -> Address {
        Address {
            interface: interface.into(),
            cidr: cidr.into(),
        }
    }

    fn stored(spec: NetworkConfigurationSpec) -> NetworkConfiguration {
        NetworkConfiguration::new("x-0", spec)
    }

    fn add(items: Items) -> ConfigureRequest {
        ConfigureRequest {
            add: items,
            ..Default::default()
        }
    }

    #[test]
    fn requests_merge_into_the_stored_spec() {
        let current = stored(NetworkConfigurationSpec {
            pod: "x-0".into(),
            addresses: vec![address("eth0", "10.1.0.5/24")],
            ..Default::default()
        });
        let request = ConfigureRequest {
            add: Items {
                addresses: vec![address("eth0", "10.1.0.6/24")],
                ..Default::default()
            },
            remove: vec![ItemKey::Address {
                interface: "eth0".into(),
                cidr: "10.1.0.5/24".into(),
            }],
            replace: false,
        };
        let spec = next_spec("x-0", Some(&current), &request).unwrap();
        assert_eq!(spec.pod, "x-0");
        assert_eq!(spec.addresses, [address("eth0", "10.1.0.6/24")]);
    }

    #[test]
    fn errors_in_the_request_name_the_request_field() {
        let request = add(Items {
            addresses: vec![
                address("eth0", "10.1.0.5/24"),
                address("eth0", "10.0.0.300/24"),
            ],
            ..Default::default()
        });
        let errors = next_spec("x-0", None, &request).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code, "invalidCidr");
        assert_eq!(errors[0].field.as_deref(), Some("add.addresses[1].cidr"));
        assert!(errors[0].message.starts_with("add.addresses[1].cidr: "));
    }

    #[test]
    fn errors_across_requests_name_the_spec_field() {
        let vlan = |name: &str, parent: &str| VlanLink {
            name: name.into(),
            parent: parent.into(),
            vlan_id: 7,
            mtu: None,
        };
        let current = stored(NetworkConfigurationSpec {
            pod: "x-0".into(),
            vlans: vec![vlan("a", "b")],
            ..Default::default()
        });
        let errors = next_spec(
            "x-0",
            Some(&current),
            &add(Items {
                vlans: vec![vlan("b", "a")],
                ..Default::default()
            }),
        )
        .unwrap_err();
        assert!(
            errors
                .iter()
                .all(|e| e.code == "vlanCycle" && e.field.as_deref().unwrap().starts_with("spec.")),
            "{errors:?}"
        );
    }

    #[test]
    fn any_interface_may_be_a_host_link_but_names_are_checked() {
        let route = Route {
            destination: "10.2.0.0/16".into(),
            gateway: Some("10.1.0.1".parse().unwrap()),
            interface: Some("net1".into()),
            metric: None,
            table: None,
        };
        let ok = Items {
            addresses: vec![address("eth7", "10.1.0.5/24")],
            routes: vec![route],
            ..Default::default()
        };
        assert_eq!(validate_items(&ok), Ok(()));
        let bad = Items {
            addresses: vec![address("has space", "10.1.0.5/24")],
            ..Default::default()
        };
        assert_eq!(validate_items(&bad).unwrap_err()[0].code(), "invalidName");
    }

    #[test]
    fn response_carries_generation_and_items() {
        let mut cr = stored(NetworkConfigurationSpec {
            pod: "x-0".into(),
            addresses: vec![address("eth0", "10.1.0.5/24")],
            ..Default::default()
        });
        cr.metadata.generation = Some(3);
        let answer = response("team", &cr);
        assert_eq!(answer.generation, 3);
        assert_eq!(answer.namespace, "team");
        assert_eq!(answer.items().addresses, cr.spec.addresses);
    }
}
