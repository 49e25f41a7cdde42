//! A posted Consent's bytes as `POST /fhir/Consent` reads them: strict JSON
//! (`fhir::json::parse_strict`, which refuses duplicate elements), modifiers refused
//! (`fhir::json::refuse_modifiers`), then `policy::consent::parse`.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(body) = concord::fhir::json::parse_strict(data) else {
        return;
    };
    if concord::fhir::json::refuse_modifiers(&body).is_err() {
        return;
    }
    let _ = concord::policy::consent::parse(&body);
});
