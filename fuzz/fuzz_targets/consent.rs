//! A posted Consent (JSON) through `policy::consent::parse`. A thin wrapper on purpose: the
//! parser's checks and signature are still changing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let _ = concord::policy::consent::parse(&body);
});
