//! nes-api's `validate` (with `apply_order` and `diff`) on structured configurations: the
//! generator in `src/lib.rs` reaches cycles, duplicates, unknown interfaces and bad names far
//! more often than JSON bytes do.
#![no_main]

use kubecrew_fuzz::{FuzzConfig, check_config, check_json_round_trip, host_links};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: FuzzConfig| {
    check_config(&input.0, &host_links());
    check_json_round_trip(&input.0);
});
