//! nes-cliserver's `PUT .../subscription` body: the server's decoder and the JSON round trip of
//! what it decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nes_api::cli::SubscriptionRequest;

fuzz_target!(|body: &[u8]| {
    let Ok(request) = nes_cliserver::api::decode_json::<SubscriptionRequest>(body) else {
        return;
    };
    kubecrew_fuzz::check_json_round_trip(&request);
});
