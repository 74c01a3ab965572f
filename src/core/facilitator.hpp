// Facilitator messages (coinbase/x402 specs/x402-specification-v2.md 7.1,
// 7.2): the /verify and /settle request body,
// and the classification of their answers.
//
// Outcomes (as e2e/facilitators/typescript/index.ts and the Go e2e
// facilitator in coinbase/x402 answer; statuses are not normative, spec
// v2 section 9):
//   200 + isValid/success true              -> X402_FAC_OK
//   200 + isValid/success false             -> X402_FAC_REFUSED (TS style)
//   non-200 + JSON with isValid/success false -> X402_FAC_REFUSED
//   500 + {"error":"<reason>[: <message>]"}, reason a snake_case token
//                                           -> X402_FAC_REFUSED (Go style)
//   anything else (other statuses, garbage, a 200 without the required
//   fields, isValid/success true on a non-200, a settle success without a
//   transaction, oversize or too deeply nested bodies) -> X402_FAC_BROKEN,
//   with `reason` saying why (for the log and a 502).
// Nothing but a 200 with a literal true is ever OK.
//
// Strings taken from the answer are bounded and stripped of control
// characters (reason 256 bytes, message 1024, transaction 256, network
// 128), because they reach logs, variables and headers. payer is kept only
// if it is an EVM address, and then checksummed.
#ifndef X402_FACILITATOR_HPP
#define X402_FACILITATOR_HPP

#include <cstddef>
#include <string>
#include <string_view>

#include "x402/x402.h"

struct x402_offer_s;
struct x402_payment_s;

namespace x402 {

// The /verify and /settle body: {"x402Version":V,"paymentPayload":<the
// payload JSON verbatim>,"paymentRequirements":<requirement i of the offer
// in the payload's version shape; v1 with resource = url>}. The caller
// checks version (1 or 2) and i < offer.count().
size_t facilitator_request_len(const x402_payment_s &p,
                               const x402_offer_s &offer, size_t i,
                               std::string_view url) noexcept;
char *facilitator_request_to(const x402_payment_s &p,
                             const x402_offer_s &offer, size_t i,
                             std::string_view url, char *out) noexcept;
std::string facilitator_request(const x402_payment_s &p,
                                const x402_offer_s &offer, size_t i,
                                std::string_view url);

struct FacilitatorAnswer {
    int outcome = X402_FAC_BROKEN;
    std::string reason, message, payer, transaction, network;
    // settle: compact settle JSON for PAYMENT-RESPONSE (before base64);
    // empty when the answer carried no settle object (Go-style error,
    // broken): the glue then builds one with x402_settle_failure_header.
    std::string response_json;
};

FacilitatorAnswer facilitator_parse_verify(int status, std::string_view body);
FacilitatorAnswer facilitator_parse_settle(int status, std::string_view body);

// {"success":false,"errorReason":reason,"transaction":"","network":network,
//  "payer":payer}; payer omitted when empty.
std::string settle_failure_json(std::string_view reason,
                                std::string_view network,
                                std::string_view payer);

// What metrics label a settlement with, from the /settle request body
// facilitator_request built: paymentRequirements' network (as CAIP-2),
// asset, payTo and amount (v1: maxAmountRequired); empty when absent.
struct SettleLabels {
    std::string network, asset, pay_to, amount;
};

SettleLabels settle_labels(std::string_view settle_body);

// True if the JSON text nests arrays/objects at most max_depth deep
// (strings are skipped, so brackets inside them do not count).
bool json_depth_within(std::string_view text, size_t max_depth) noexcept;

}  // namespace x402

#endif
