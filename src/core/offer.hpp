// An offer: the payment requirements of one location, owned and
// pre-rendered (coinbase/x402 specs/x402-specification-v2.md 5.1,
// specs/transports-v2/http.md "Payment Required Signaling", and the v1
// body of specs/transports-v1/http.md).
//
// The 402 is rendered per request by splicing only the JSON-escaped URL and
// error string into bytes prepared at creation:
//
// PAYMENT-REQUIRED is base64 of the compact v2 PaymentRequired with `resource`
// and then `error` as the last keys (key order means nothing to any reader,
// RFC 8259 section 4):
//   {"x402Version":2,"accepts":[...],"resource":{"description":D,
//    "mimeType":M,"url":"<URL>"},"error":"<ERR>"}
// Everything before <URL> is constant, so the base64 of its longest prefix
// whose length is a multiple of 3 is computed once; a request encodes only
// the 0-2 leftover bytes, the URL, the error and the closing bytes.
//
// The v1 body is constant segments with the error and, per requirement, the
// URL spliced in. It lists only the requirements whose network the legacy
// `x402` package knows (network_is_legacy_v1): legacy clients validate every
// accepts[] entry with a zod enum and give up on the first unknown network.
// It may therefore have fewer entries than the offer (even none).
//
// v2 resource.description/mimeType come from requirement 0 (v2 has one
// resource per 402; v1 repeats them per requirement).
//
// PaymentRequired.extensions (e.g. bazaar discovery, bazaar.hpp), when the
// offer has any, is part of the constant prefix, after accepts:
//   {"x402Version":2,"accepts":[...],"extensions":{...},"resource":...
// v1 has no extensions member.
#ifndef X402_OFFER_HPP
#define X402_OFFER_HPP

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "x402/x402.h"

namespace x402 {

constexpr size_t max_offer_requirements = 16;
constexpr size_t max_description_len = 4096;
constexpr size_t max_mime_type_len = 256;
constexpr size_t max_asset_name_len = 128;
constexpr size_t max_asset_version_len = 32;
constexpr size_t max_scheme_len = 32;
constexpr size_t max_extensions_len = 8192;
constexpr uint64_t max_timeout_seconds = 2147483647;

constexpr std::string_view default_error_v2 = "Payment required";
constexpr std::string_view default_error_v1 = "X-PAYMENT header is required";

struct OfferError {
    const char *message;  // static
};

}  // namespace x402

struct x402_offer_s {
    struct Requirement {
        std::string scheme, amount, asset, pay_to, asset_name, asset_version,
            description, mime_type;
        x402_requirement_t view{};  // points into the strings above
        std::string v2_json;        // {"scheme":...,"extra":{...}}
        std::string v1_head;        // {"scheme":...,"resource":"
        std::string v1_tail;        // ","description":...}
    };

    // Validates and copies; throws x402::OfferError (a static message
    // naming the rule) or std::bad_alloc. extensions: the JSON object that
    // becomes PaymentRequired.extensions in the v2 402 ("" for none).
    x402_offer_s(const x402_requirement_t *reqs, size_t n,
                 std::string_view extensions = {});
    x402_offer_s(const x402_offer_s &) = delete;
    x402_offer_s &operator=(const x402_offer_s &) = delete;

    size_t count() const noexcept { return reqs_.size(); }
    const x402_requirement_t &requirement(size_t i) const noexcept
    {
        return reqs_[i]->view;
    }

    // Requirement i in the v2 shape (compact JSON object), as in accepts[].
    std::string_view v2_json(size_t i) const noexcept
    {
        return reqs_[i]->v2_json;
    }

    // Requirement i in the v1 shape with `resource` = url (compact JSON).
    size_t v1_json_len(size_t i, std::string_view url) const noexcept;
    char *v1_json_to(size_t i, std::string_view url, char *out) const noexcept;
    std::string v1_json(size_t i, std::string_view url) const;

    // Bytes of the header and body that render() writes.
    struct Sizes {
        size_t header, body, scratch;
    };
    Sizes render_sizes(std::string_view url, std::string_view error_v2,
                       std::string_view error_v1) const noexcept;

    // Writes the header (base64) and the body into the buffers sized by
    // render_sizes(); scratch is working space of sizes.scratch bytes.
    void render_to(std::string_view url, std::string_view error_v2,
                   std::string_view error_v1, char *header, char *body,
                   char *scratch) const noexcept;

    // Convenience (tests, non-hot paths): header and body as strings. An
    // empty error selects the defaults, as x402_offer_render does.
    void render(std::string_view url, std::string_view error,
                std::string &header, std::string &body) const;

private:
    std::vector<std::unique_ptr<Requirement>> reqs_;

    std::string v2_prefix_;      // JSON through `"url":"`
    std::string v2_prefix_b64_;  // base64 of v2_prefix_[0, 3k)
    std::string v2_prefix_rem_;  // v2_prefix_[3k, end): 0-2 bytes

    // v1 body: segs_[0] <error> segs_[1] <url> segs_[2] <url> ... segs_[m]
    std::vector<std::string> v1_segs_;
    size_t v1_const_len_ = 0;
};

#endif
