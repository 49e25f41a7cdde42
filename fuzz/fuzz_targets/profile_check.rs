//! The profile checker: the repository's `fhir-profiles/` loaded once, then any JSON
//! resource checked against it.

#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use concord::profiles::Profiles;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

static PROFILES: LazyLock<Profiles> = LazyLock::new(|| {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fhir-profiles");
    match Profiles::load(&dir) {
        Ok(profiles) => profiles,
        Err(e) => panic!("the repository's fhir-profiles/ do not load: {e}"),
    }
});

fuzz_target!(|data: &[u8]| {
    let Ok(resource) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let problems = PROFILES.check(&resource);
    for problem in &problems {
        let _ = problem.to_string();
    }
});
