// simdjson's DOM with jansson's strictness (shared by the payment decoder
// and the facilitator answers' parser).
#pragma once

#include <simdjson.h>

namespace x402 {

// What jansson's strict mode checked and simdjson's DOM does not: no key
// twice in an object (RFC 8259 section 4: a payload must mean one thing)
// and no NUL in a string or key. Also the nesting bound (X402_MAX_JSON_DEPTH), with the
// top-level value at depth 1; the walk stops descending once over it, so it
// stays bounded.
enum class Walk { ok, too_deep, bad };

Walk json_walk(simdjson::dom::element j, int depth);

}  // namespace x402
