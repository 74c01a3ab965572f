// The `bazaar` discovery extension of a 402 (coinbase/x402
// specs/extensions/bazaar.md): PaymentRequired.extensions.bazaar =
// {info, schema}, where info describes how to call the resource (input:
// HTTP method with query parameters, or with a body type and body) and what
// it answers (output: type and example), and schema is the JSON Schema
// (draft 2020-12) of info.
//
// The object is built member for member as the official TypeScript server
// builds it, so a facilitator sees the same thing from nginx as from
// @x402/express: @x402/extensions 2.27.0 declareDiscoveryExtension
// (src/bazaar/http/resourceService.ts createQueryDiscoveryExtension,
// createBodyDiscoveryExtension) followed by bazaarResourceServerExtension.
// enrichDeclaration (src/bazaar/server.ts) for the request's method, which
// sets info.input.method and narrows the schema's method enum to it:
//   query (GET, HEAD, DELETE):
//     info.input  = {type:"http", method, queryParams: <example, {} default>}
//     schema input properties: type const "http", method enum [method],
//       queryParams {type:"object", ...<input schema, {properties:{}}
//       default>}; required [type, method]; additionalProperties false
//   body (POST, PUT, PATCH):
//     info.input  = {type:"http", method, bodyType, body: <example, {}>}
//     schema input properties: type, method, bodyType enum [json,
//       form-data, text], body: <input schema, {properties:{}} default>;
//       required [type, method, bodyType, body]; additionalProperties false
//   output, only when an example is given:
//     info.output = {type:"json", example}
//     schema output = {type:"object", properties:{type:{type:"string"},
//       example:{type:"object", ...<output schema>}}, required:["type"]}
// MCP tools and dynamic route templates are not offered (nginx locations
// have no route parameters of that kind).
#ifndef X402_BAZAAR_HPP
#define X402_BAZAAR_HPP

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace x402 {

// Clients echo PaymentRequired.extensions into their PaymentPayload
// (@x402/core client), and the core decodes that payload within
// X402_MAX_HEADER_LEN (16384 bytes of base64, about 12 KB of JSON) and
// X402_MAX_JSON_DEPTH (16). The extension therefore stays within 8192
// bytes of JSON in all, and each operator JSON within 8 levels: the deepest
// place one lands is 7 levels down in the payload (extensions, bazaar,
// schema, properties, input, properties, queryParams), so 15 at most.
constexpr size_t bazaar_max_json = 8192;  // each JSON input, and the whole
constexpr size_t bazaar_max_depth = 8;

struct BazaarInput {
    std::string_view method;          // GET HEAD DELETE POST PUT PATCH
    std::string_view query_params;    // JSON object (query methods), "" = {}
    std::string_view body_type;       // json form-data text (body methods)
    std::string_view body;            // JSON object or string, "" = {}
    std::string_view input_schema;    // JSON object, "" = {"properties":{}}
    std::string_view output_example;  // JSON object, "" = no output
    std::string_view output_schema;   // JSON object merged into example's
};

// The compact JSON of {"bazaar":{"info":...,"schema":...}} (the value of
// PaymentRequired.extensions); nullopt with *err naming the rule broken.
std::optional<std::string> bazaar_extensions(const BazaarInput &in,
                                             const char **err);

}  // namespace x402

#endif
