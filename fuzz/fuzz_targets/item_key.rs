//! The item keys a person types (`nescli configure --remove address:eth0/10.1.0.5/24`, or the
//! form `nescli status` shows): `ItemKey::from_str`, and that both printed forms of a parsed key
//! parse back to it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nes_api::ItemKey;
use nes_api::cli::Compact;

fuzz_target!(|text: &str| {
    let Ok(key) = text.parse::<ItemKey>() else {
        return;
    };
    assert_eq!(
        key.to_string().parse::<ItemKey>(),
        Ok(key.clone()),
        "display form"
    );
    assert_eq!(
        Compact(&key).to_string().parse::<ItemKey>(),
        Ok(key),
        "compact form"
    );
});
