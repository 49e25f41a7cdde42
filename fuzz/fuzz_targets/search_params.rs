//! Search parameters as the server reads them: `Type?query` on the first line, a resource
//! (JSON) after it. The query goes through `server::query::type_search` (leniently and
//! strictly); each parsed filter, the sort key and the cursor are then used on the resource.

#![no_main]

use std::cmp::Ordering;

use concord::fhir::search;
use concord::server::query;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const BASE: &str = "https://concord.example/fhir";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (request, body) = text.split_once('\n').unwrap_or((text, ""));
    let (type_name, raw_query) = request.split_once('?').unwrap_or((request, ""));
    let Some(def) = search::type_def(type_name) else {
        return;
    };
    let resource: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    // As the gateway sorts them: a shared resource, its clinical date worked out once.
    let shared = concord::fhir::resource::Resource::shared(resource.clone());
    for strict in [false, true] {
        let Ok(pairs) = query::pairs(Some(raw_query)) else {
            return;
        };
        let Ok(parsed) = query::type_search(def, pairs, strict, BASE, (20, 100)) else {
            continue;
        };
        for filter in &parsed.filters {
            filter.matches(&resource);
        }
        let key = parsed.sort.key(&shared);
        let descending = parsed.sort.descending();
        assert_eq!(
            search::compare_keys(&key, &key, &descending),
            Ordering::Equal
        );
        if let Some(cursor) = &parsed.cursor {
            search::compare_keys(&key, cursor, &descending);
            // A decoded cursor encodes to one that decodes to the same key.
            let again = search::decode_cursor(&search::encode_cursor(cursor));
            assert_eq!(again.as_ref(), Some(cursor));
        }
        query::link(BASE, def.name, &parsed.used.pairs);
        parsed.used.ignored_notice();
    }
    query::SortSpec::everything().key(&shared);
    search::patient_id_of(&resource, Some(BASE));
});
