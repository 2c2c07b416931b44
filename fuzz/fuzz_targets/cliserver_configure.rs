//! nes-cliserver's `POST .../configuration` body: the server's decoder, then the merge into a
//! stored configuration and both validations (`configure::next_spec`), against no configuration
//! and against one with a VLAN, an address and a route.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nes_api::ConfigureRequest;
use nes_api::crd::{NetworkConfiguration, NetworkConfigurationSpec};
use nes_cliserver::configure;

fn stored() -> NetworkConfiguration {
    let spec: NetworkConfigurationSpec = serde_json::from_value(serde_json::json!({
        "pod": "x-0",
        "vlans": [{"name": "eth0.100", "parent": "eth0", "vlanId": 100}],
        "addresses": [{"interface": "eth0.100", "cidr": "10.1.0.5/24"}],
        "routes": [{"destination": "10.2.0.0/16", "gateway": "10.1.0.1"}]
    }))
    .expect("the stored spec decodes");
    NetworkConfiguration::new("x-0", spec)
}

fuzz_target!(|body: &[u8]| {
    let Ok(request) = nes_cliserver::api::decode_json::<ConfigureRequest>(body) else {
        return;
    };
    kubecrew_fuzz::check_json_round_trip(&request);
    for current in [None, Some(stored())] {
        if let Ok(spec) = configure::next_spec("x-0", current.as_ref(), &request) {
            let items = nes_api::Items {
                vlans: spec.vlans,
                addresses: spec.addresses,
                routes: spec.routes,
            };
            assert!(
                configure::validate_items(&items).is_ok(),
                "an accepted request stores an invalid configuration"
            );
        }
    }
});
