// A decoded payment header (coinbase/x402 specs/x402-specification-v2.md
// 5.2, v1: specs/x402-specification-v1.md; the payload of
// specs/schemes/exact/scheme_exact_evm.md section 1): the opaque
// x402_payment_t of the C API.
#ifndef X402_PAYMENT_HPP
#define X402_PAYMENT_HPP

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "eip712.hpp"
#include "x402/x402.h"

// Reason strings (invalidReason names of the x402 spec, section 9, and of
// the Python reference facilitator, coinbase/x402
// python/x402/mechanisms/evm/exact/facilitator.py).
namespace x402::reason {
inline constexpr const char *invalid_payload = "invalid_payload";
inline constexpr const char *invalid_x402_version = "invalid_x402_version";
inline constexpr const char *unsupported_scheme = "unsupported_scheme";
inline constexpr const char *invalid_scheme = "invalid_scheme";
inline constexpr const char *invalid_network = "invalid_network";
inline constexpr const char *invalid_payment_requirements =
    "invalid_payment_requirements";
inline constexpr const char *recipient_mismatch =
    "invalid_exact_evm_payload_recipient_mismatch";
inline constexpr const char *value_mismatch =
    "invalid_exact_evm_payload_authorization_value_mismatch";
inline constexpr const char *valid_before =
    "invalid_exact_evm_payload_authorization_valid_before";
inline constexpr const char *valid_after =
    "invalid_exact_evm_payload_authorization_valid_after";
inline constexpr const char *signature = "invalid_exact_evm_payload_signature";
}  // namespace x402::reason

struct x402_payment_s {
    // x402Version of the payload (1 or 2) and the decoded JSON exactly as
    // received: the facilitator body embeds these bytes verbatim.
    int version = 0;
    std::string json;

    // v1: top-level scheme/network; v2: accepted.scheme/network.
    std::string scheme;
    std::string network;

    // v2 only: the rest of `accepted`.
    std::string amount;
    std::string asset;
    std::string pay_to;
    uint64_t max_timeout = 0;
    std::string extra_name;
    std::string extra_version;
    bool has_extra_name = false;
    bool has_extra_version = false;

    // payload.authorization, as sent and as integers.
    std::string from;
    std::string to;
    std::string value;
    std::string nonce;  // "0x" + 64 lower-case hex digits
    x402::TransferAuthorization auth{};
    uint64_t valid_after = 0;   // saturated at UINT64_MAX
    uint64_t valid_before = 0;  // saturated at UINT64_MAX

    // payload.signature, decoded (any even length: longer ones are smart
    // wallet signatures the facilitator checks).
    std::vector<uint8_t> signature;

    // Checksummed forms the verdict points at ("0x" + 40, NUL-terminated).
    char payer_cs[43] = {};
    char pay_to_cs[43] = {};
    char asset_cs[43] = {};
};

namespace x402 {

// Decodes header into p. On failure returns false with *reason and
// *message set to static strings. Throws only std::bad_alloc.
bool payment_decode(std::string_view header, int version_hint,
                    x402_payment_s &p, const char **reason,
                    const char **message);

// Fills the verdict fields that only depend on the decoded payment.
void payment_fill_verdict(const x402_payment_s &p, x402_verdict_t *v) noexcept;

// The offered requirement the payment is for (v->requirement set), or
// nullptr with v->reason/message set. No allocation.
const x402_requirement_t *payment_match(const x402_payment_s &p,
                                        const x402_offer_t *offer,
                                        x402_verdict_t *v);

// Match and local checks (x402_payment_verify). Throws only std::bad_alloc.
bool payment_verify(x402_payment_s &p, const x402_offer_t *offer, int64_t now,
                    x402_verdict_t *v);

}  // namespace x402

#endif
