#include "facilitator.hpp"

#include <simdjson.h>

#include <cstring>
#include <optional>
#include <string>

#include "address.hpp"
#include "json_dom.hpp"
#include "json_writer.hpp"
#include "offer.hpp"
#include "payment.hpp"

namespace x402 {

namespace {

constexpr size_t max_reason = 256;
constexpr size_t max_message = 1024;
constexpr size_t max_transaction = 256;
constexpr size_t max_network = 128;

using Json = simdjson::dom::element;

constexpr std::string_view version_key = "{\"x402Version\":";
constexpr std::string_view payload_key = ",\"paymentPayload\":";
constexpr std::string_view requirements_key = ",\"paymentRequirements\":";

char *put(char *out, std::string_view s) noexcept
{
    if (!s.empty()) {
        std::memcpy(out, s.data(), s.size());
    }
    return out + s.size();
}

// Bounded copy with control characters replaced by spaces, cut on a UTF-8
// character boundary (simdjson hands us valid UTF-8).
std::string clean(std::string_view s, size_t max)
{
    if (s.size() > max) {
        size_t n = max;
        while (n > 0 && (uint8_t(s[n]) & 0xc0) == 0x80) {
            n--;
        }
        s = s.substr(0, n);
    }
    std::string out(s);
    for (char &c : out) {
        if (uint8_t(c) < 0x20 || c == 0x7f) {
            c = ' ';
        }
    }
    return out;
}

bool printable_ascii(std::string_view s, size_t max) noexcept
{
    if (s.size() > max) {
        return false;
    }
    for (char c : s) {
        if (c < 0x21 || c > 0x7e) {
            return false;
        }
    }
    return true;
}

// Parses a body already checked by out_of_bounds into a JSON object;
// nullopt if not one. simdjson (Debian's libsimdjson) in a tenth of
// jansson's instructions, held by json_walk to what jansson's strict mode
// refused (a key twice, NUL). The element lives until the thread's next
// parse: callers copy what they keep before parsing again.
std::optional<Json> parse_object(std::string_view body)
{
    // sized for the largest answer, allocated as answers need it
    thread_local simdjson::dom::parser parser(X402_MAX_FACILITATOR_LEN);
    // simdjson reads SIMDJSON_PADDING bytes past the text
    thread_local std::string padded;
    padded.assign(body);
    padded.append(simdjson::SIMDJSON_PADDING, '\0');
    Json root;
    if (parser.parse(padded.data(), body.size(), false).get(root)
            != simdjson::SUCCESS
        || !root.is_object() || json_walk(root, 1) != Walk::ok) {
        return std::nullopt;
    }
    return root;
}

using Obj = std::optional<Json>;

// The member key of an object; false when absent or not a string.
bool get_string(const Obj &obj, const char *key, std::string_view &out)
{
    Json v;
    if (!obj || simdjson::dom::object(*obj).at_key(key).get(v)
                    != simdjson::SUCCESS
        || !v.is_string()) {
        return false;
    }
    out = std::string_view(v);
    return true;
}

// The member key of an object if it is a boolean.
std::optional<bool> get_bool(const Obj &obj, const char *key)
{
    Json v;
    bool b = false;
    if (!obj || simdjson::dom::object(*obj).at_key(key).get(v)
                    != simdjson::SUCCESS
        || v.get_bool().get(b) != simdjson::SUCCESS) {
        return std::nullopt;
    }
    return b;
}

std::string payer_of(const Obj &obj)
{
    std::string_view p;
    if (!get_string(obj, "payer", p)) {
        return {};
    }
    auto c = checksum_address(p);
    return c ? *c : std::string();
}

std::string status_text(const char *what, int status)
{
    return std::string(what) + " answered HTTP " + std::to_string(status);
}

bool is_reason_token(std::string_view s) noexcept
{
    if (s.empty() || s.size() > max_reason || !(s[0] >= 'a' && s[0] <= 'z')) {
        return false;
    }
    for (char c : s) {
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) {
            return false;
        }
    }
    return true;
}

// Go facilitators: 500 {"error":"<reason>: <message>"} (coinbase/x402
// e2e/facilitators/go/main.go).
bool go_style_refusal(int status, const Obj &obj, FacilitatorAnswer &a)
{
    std::string_view e;
    if (status != 500 || !get_string(obj, "error", e)) {
        return false;
    }
    size_t colon = e.find(": ");
    std::string_view reason = e.substr(0, colon);
    if (!is_reason_token(reason)) {
        return false;
    }
    a.outcome = X402_FAC_REFUSED;
    a.reason.assign(reason);
    if (colon != std::string_view::npos) {
        a.message = clean(e.substr(colon + 2), max_message);
    }
    return true;
}

void broken(FacilitatorAnswer &a, std::string why)
{
    a = FacilitatorAnswer{};
    a.outcome = X402_FAC_BROKEN;
    a.reason = std::move(why);
}

}  // namespace

bool json_depth_within(std::string_view text, size_t max_depth) noexcept
{
    size_t depth = 0;
    bool in_string = false, escaped = false;
    for (char c : text) {
        if (in_string) {
            if (escaped) {
                escaped = false;
            } else if (c == '\\') {
                escaped = true;
            } else if (c == '"') {
                in_string = false;
            }
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) {
                return false;
            }
        } else if ((c == ']' || c == '}') && depth > 0) {
            depth--;
        }
    }
    return true;
}

namespace {

// The size and nesting bounds of an answer, checked before it is parsed;
// true (and a broken) when the answer breaks one.
bool out_of_bounds(std::string_view body, const std::string &what,
                   FacilitatorAnswer &a)
{
    if (body.size() > X402_MAX_FACILITATOR_LEN) {
        broken(a, what + " answer is larger than 65536 bytes");
        return true;
    }
    if (!json_depth_within(body, X402_MAX_JSON_DEPTH)) {
        broken(a, what + " answer nests deeper than 16 levels");
        return true;
    }
    return false;
}

}  // namespace

FacilitatorAnswer facilitator_parse_verify(int status, std::string_view body)
{
    FacilitatorAnswer a;
    if (out_of_bounds(body, "facilitator /verify", a)) {
        return a;
    }
    Obj obj = parse_object(body);
    std::optional<bool> valid = get_bool(obj, "isValid");
    if (valid) {
        a.payer = payer_of(obj);
        if (*valid) {
            if (status != 200) {
                broken(a, status_text("facilitator /verify", status)
                              + " with isValid true");
                return a;
            }
            a.outcome = X402_FAC_OK;
            return a;
        }
        a.outcome = X402_FAC_REFUSED;
        std::string_view s;
        a.reason = get_string(obj, "invalidReason", s) && !s.empty()
                       ? clean(s, max_reason)
                       : "invalid_payment";
        if (get_string(obj, "invalidMessage", s)) {
            a.message = clean(s, max_message);
        }
        return a;
    }
    if (go_style_refusal(status, obj, a)) {
        return a;
    }
    if (status == 200) {
        broken(a, obj ? "facilitator /verify answered 200 without a boolean "
                        "isValid"
                      : "facilitator /verify answered 200 with a body that "
                        "is not a JSON object");
    } else {
        broken(a, status_text("facilitator /verify", status));
    }
    return a;
}

FacilitatorAnswer facilitator_parse_settle(int status, std::string_view body)
{
    FacilitatorAnswer a;
    if (out_of_bounds(body, "facilitator /settle", a)) {
        return a;
    }
    Obj obj = parse_object(body);
    std::optional<bool> success = get_bool(obj, "success");
    if (!success) {
        if (go_style_refusal(status, obj, a)) {
            return a;
        }
        if (status != 200) {
            broken(a, status_text("facilitator /settle", status));
        } else {
            broken(a, obj ? "facilitator /settle answered 200 without a "
                            "boolean success"
                          : "facilitator /settle answered 200 with a body "
                            "that is not a JSON object");
        }
        return a;
    }

    const Obj &o = obj;
    bool ok = *success;
    std::string_view tx, net, s;
    bool has_tx = get_string(o, "transaction", tx);
    bool has_net = get_string(o, "network", net);
    a.payer = payer_of(o);
    if (ok) {
        if (status != 200) {
            // Money may have moved: keep the transaction for the log.
            std::string keep = printable_ascii(tx, max_transaction)
                                   ? std::string(tx) : std::string();
            broken(a, status_text("facilitator /settle", status)
                          + " with success true");
            a.transaction = std::move(keep);
            return a;
        }
        if (!has_tx || tx.empty() || !printable_ascii(tx, max_transaction)) {
            broken(a, "facilitator /settle reported success without a valid "
                      "transaction");
            return a;
        }
        if (!has_net || net.empty() || !printable_ascii(net, max_network)) {
            broken(a, "facilitator /settle reported success without a valid "
                      "network");
            return a;
        }
        a.outcome = X402_FAC_OK;
        a.transaction.assign(tx);
        a.network.assign(net);
    } else {
        a.outcome = X402_FAC_REFUSED;
        a.reason = get_string(o, "errorReason", s) && !s.empty()
                       ? clean(s, max_reason)
                       : "unexpected_settle_error";
        if (get_string(o, "errorMessage", s) && !s.empty()) {
            a.message = clean(s, max_message);
        }
        a.transaction = has_tx ? clean(tx, max_transaction) : std::string();
        a.network = has_net ? clean(net, max_network) : std::string();
    }

    // PAYMENT-RESPONSE: the facilitator's settle result re-serialized
    // compactly in the TS key order (coinbase/x402
    // specs/x402-specification-v2.md 5.3, SettleResponse in
    // typescript/packages/core/src/types/facilitator.ts).
    std::string &j = a.response_json;
    j = ok ? "{\"success\":true" : "{\"success\":false";
    if (!ok) {
        json_append_member(j, "errorReason", a.reason);
        if (!a.message.empty()) {
            json_append_member(j, "errorMessage", a.message);
        }
    }
    if (!a.payer.empty()) {
        json_append_member(j, "payer", a.payer);
    }
    json_append_member(j, "transaction", a.transaction);
    json_append_member(j, "network", a.network);
    j += '}';
    return a;
}

std::string settle_failure_json(std::string_view reason,
                                std::string_view network,
                                std::string_view payer)
{
    std::string j = "{\"success\":false";
    json_append_member(j, "errorReason", reason);
    json_append_member(j, "transaction", "");
    json_append_member(j, "network", network);
    if (!payer.empty()) {
        json_append_member(j, "payer", payer);
    }
    j += '}';
    return j;
}

size_t facilitator_request_len(const x402_payment_s &p,
                               const x402_offer_s &offer, size_t i,
                               std::string_view url) noexcept
{
    size_t req = p.version == 1 ? offer.v1_json_len(i, url)
                                : offer.v2_json(i).size();
    return version_key.size() + 1 + payload_key.size() + p.json.size()
           + requirements_key.size() + req + 1;
}

char *facilitator_request_to(const x402_payment_s &p,
                             const x402_offer_s &offer, size_t i,
                             std::string_view url, char *out) noexcept
{
    out = put(out, version_key);
    *out++ = p.version == 1 ? '1' : '2';
    out = put(out, payload_key);
    out = put(out, p.json);
    out = put(out, requirements_key);
    out = p.version == 1 ? offer.v1_json_to(i, url, out)
                         : put(out, offer.v2_json(i));
    *out++ = '}';
    return out;
}

std::string facilitator_request(const x402_payment_s &p,
                                const x402_offer_s &offer, size_t i,
                                std::string_view url)
{
    std::string s(facilitator_request_len(p, offer, i, url), '\0');
    facilitator_request_to(p, offer, i, url, s.data());
    return s;
}

SettleLabels settle_labels(std::string_view settle_body)
{
    SettleLabels l;
    if (settle_body.empty() || settle_body.size() > X402_MAX_FACILITATOR_LEN) {
        return l;
    }
    Obj root = parse_object(settle_body);
    Json r;
    if (!root
        || simdjson::dom::object(*root).at_key("paymentRequirements").get(r)
               != simdjson::SUCCESS
        || !r.is_object()) {
        return l;
    }
    Obj req = r;
    std::string_view v;
    if (get_string(req, "network", v)) {
        // v1 names the network ("base-sepolia"); the label is CAIP-2
        const x402_network_t *net =
            x402_network_find(x402_str_t{v.data(), v.size()});
        if (net != nullptr) {
            l.network = net->caip2;
        }
    }
    if (get_string(req, "asset", v)) {
        l.asset = v;
    }
    if (get_string(req, "payTo", v)) {
        l.pay_to = v;
    }
    if (get_string(req, "amount", v)
        || get_string(req, "maxAmountRequired", v)) {
        l.amount = v;
    }
    return l;
}

}  // namespace x402
