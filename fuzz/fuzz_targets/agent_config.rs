//! nes-agent's `PUT /v1/config` body: the agent's own decoder, then everything it computes from
//! a decoded configuration before touching the kernel (validation, apply order, diff), and the
//! JSON round trip of its state file.
#![no_main]

use kubecrew_fuzz::{check_config, check_json_round_trip, host_links};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|body: &[u8]| {
    let Ok(config) = nes_agent::api::decode_config(body) else {
        return;
    };
    check_json_round_trip(&config);
    check_config(&config, &host_links());
});
