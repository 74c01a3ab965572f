#include "payment.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "address.hpp"
#include "base64.hpp"
#include "hex.hpp"
#include "json_dom.hpp"

namespace x402 {

namespace {

using Json = simdjson::dom::element;

// simdjson (Debian's libsimdjson) parses a payload in about a tenth of
// jansson's instructions; jansson's lexer alone was 0.28 of a signature
// recovery. One DOM parser per thread, sized once for the largest header,
// so a decode allocates nothing; it is made on the first decode (nginx
// workers, never the master) and lives as long as the thread.
simdjson::dom::parser &json_parser()
{
    thread_local simdjson::dom::parser parser = [] {
        simdjson::dom::parser p(X402_MAX_HEADER_LEN);
        // the largest decoded header; a failure leaves parse() to
        // allocate (and report CAPACITY or MEMALLOC: a refused payment)
        simdjson::error_code e = p.allocate(X402_MAX_HEADER_LEN / 4 * 3);
        (void) e;
        return p;
    }();
    return parser;
}

// Thrown inside the decoder only, caught in payment_decode: a shape error
// with its static reason and message.
struct Invalid {
    const char *reason;
    const char *message;
};

[[noreturn]] void fail(const char *message,
                       const char *reason = reason::invalid_payload)
{
    throw Invalid{reason, message};
}

// The member of an object, nullopt if absent.
std::optional<Json> member(Json obj, std::string_view key)
{
    Json v;
    if (simdjson::dom::object(obj).at_key(key).get(v) != simdjson::SUCCESS) {
        return std::nullopt;
    }
    return v;
}

bool is_object(const std::optional<Json> &j)
{
    return j && j->is_object();
}

bool is_string(const std::optional<Json> &j)
{
    return j && j->is_string();
}

std::string_view string_of(Json j)
{
    return std::string_view(j);
}

Json object_at(Json obj, const char *key, const char *missing)
{
    auto j = member(obj, key);
    if (!is_object(j)) {
        fail(missing);
    }
    return *j;
}

std::string_view string_at(Json obj, const char *key, const char *missing)
{
    auto j = member(obj, key);
    if (!is_string(j)) {
        fail(missing);
    }
    return string_of(*j);
}

// A decimal-string uint256 of the authorization (coinbase/x402
// specs/schemes/exact/scheme_exact_evm.md, Phase 1: the SDKs
// send strings; Go's decoder rejects numbers, and so do we).
U256 decimal_at(Json obj, const char *key, const char *bad,
                std::string *copy)
{
    std::string_view s = string_at(obj, key, bad);
    auto v = u256_from_decimal(s);
    if (!v) {
        fail(bad);
    }
    if (copy != nullptr) {
        copy->assign(s);
    }
    return *v;
}

uint64_t saturate(const U256 &v)
{
    auto u = u256_to_u64(v);
    return u ? *u : UINT64_MAX;
}

void parse_address_at(Json obj, const char *key, const char *bad,
                      std::string &copy, Address &bytes)
{
    std::string_view s = string_at(obj, key, bad);
    auto a = address_from_hex(s);
    if (!a) {
        fail(bad);
    }
    copy.assign(s);
    bytes = *a;
}

void parse_exact_evm_payload(Json root, x402_payment_s &p)
{
    auto payload_m = member(root, "payload");
    if (!is_object(payload_m)) {
        fail("payload must be an object");
    }
    Json payload = *payload_m;
    auto auth_m = member(payload, "authorization");
    // The payload goes to the facilitator as sent, and facilitators settle
    // permit2Authorization whenever it is present (@x402/evm
    // isPermit2Payload), while the replay key comes from authorization:
    // both in one payload would let one Permit2 payment pass as many.
    if (member(payload, "permit2Authorization")) {
        fail("Permit2 payloads are not accepted here: EIP-3009 only");
    }
    if (!is_object(auth_m)) {
        fail("payload.authorization must be an object");
    }
    Json auth = *auth_m;

    parse_address_at(auth, "from", "payload.authorization.from must be "
                     "0x + 40 hex digits", p.from, p.auth.from);
    parse_address_at(auth, "to", "payload.authorization.to must be "
                     "0x + 40 hex digits", p.to, p.auth.to);
    p.auth.value = decimal_at(auth, "value", "payload.authorization.value "
                              "must be a decimal string below 2^256",
                              &p.value);
    p.auth.valid_after = decimal_at(auth, "validAfter",
                                    "payload.authorization.validAfter must "
                                    "be a decimal string below 2^256",
                                    nullptr);
    p.auth.valid_before = decimal_at(auth, "validBefore",
                                     "payload.authorization.validBefore must "
                                     "be a decimal string below 2^256",
                                     nullptr);
    p.valid_after = saturate(p.auth.valid_after);
    p.valid_before = saturate(p.auth.valid_before);

    const char *bad_nonce = "payload.authorization.nonce must be 0x + 64 "
                            "hex digits (32 bytes)";
    std::string_view nonce = string_at(auth, "nonce", bad_nonce);
    auto nonce_digits = strip_0x(nonce);
    if (!nonce_digits ||
        !hex_to_bytes(*nonce_digits, p.auth.nonce.data(), 32)) {
        fail(bad_nonce);
    }
    p.nonce.resize(66);
    p.nonce[0] = '0';
    p.nonce[1] = 'x';
    hex_encode_to(p.auth.nonce.data(), 32, p.nonce.data() + 2);

    // 65 bytes for an EOA; longer (ERC-1271, ERC-6492) is kept for the
    // facilitator. The header cap bounds the length.
    const char *bad_sig = "payload.signature must be 0x + an even number of "
                          "hex digits";
    std::string_view sig = string_at(payload, "signature", bad_sig);
    auto sig_digits = strip_0x(sig);
    if (!sig_digits || sig_digits->empty() || sig_digits->size() % 2 != 0) {
        fail(bad_sig);
    }
    p.signature.resize(sig_digits->size() / 2);
    if (!hex_to_bytes(*sig_digits, p.signature.data(), p.signature.size())) {
        fail(bad_sig);
    }

    // payTo's checksum waits for the match (usually a copy of the offer's).
    p.payer_cs[0] = '0';
    p.payer_cs[1] = 'x';
    checksum_hex40(std::string_view(p.from).substr(2), p.payer_cs + 2);
}

void parse_v1(Json root, x402_payment_s &p)
{
    p.scheme.assign(string_at(root, "scheme", "scheme must be a string"));
    p.network.assign(string_at(root, "network", "network must be a string"));
    parse_exact_evm_payload(root, p);
}

void parse_v2(Json root, x402_payment_s &p)
{
    Json acc = object_at(root, "accepted",
                                  "accepted must be an object (the chosen "
                                  "requirement)");
    p.scheme.assign(string_at(acc, "scheme",
                              "accepted.scheme must be a string"));
    p.network.assign(string_at(acc, "network",
                               "accepted.network must be a string"));
    p.amount.assign(string_at(acc, "amount",
                              "accepted.amount must be a string"));
    p.asset.assign(string_at(acc, "asset", "accepted.asset must be a string"));
    p.pay_to.assign(string_at(acc, "payTo",
                              "accepted.payTo must be a string"));
    // An integer as jansson read one: int64 (larger ones failed its parse).
    int64_t mt = 0;
    auto mt_m = member(acc, "maxTimeoutSeconds");
    if (!mt_m || mt_m->type() != simdjson::dom::element_type::INT64 ||
        mt_m->get_int64().get(mt) != simdjson::SUCCESS || mt < 0) {
        fail("accepted.maxTimeoutSeconds must be a non-negative integer");
    }
    p.max_timeout = static_cast<uint64_t>(mt);

    auto extra_m = member(acc, "extra");
    if (extra_m) {
        if (!extra_m->is_object()) {
            fail("accepted.extra must be an object");
        }
        auto name = member(*extra_m, "name");
        auto version = member(*extra_m, "version");
        if (name) {
            if (!name->is_string()) {
                fail("accepted.extra.name must be a string");
            }
            p.extra_name.assign(string_of(*name));
            p.has_extra_name = true;
        }
        if (version) {
            if (!version->is_string()) {
                fail("accepted.extra.version must be a string");
            }
            p.extra_version.assign(string_of(*version));
            p.has_extra_version = true;
        }
        // Absent or "eip3009" is the EIP-3009 variant (coinbase/x402
        // specs/schemes/exact/scheme_exact_evm.md, section 1).
        auto method = member(*extra_m, "assetTransferMethod");
        if (method && !(method->is_string() &&
                        string_of(*method) == "eip3009")) {
            fail("accepted.extra.assetTransferMethod is not eip3009");
        }
    }

    // Optional members: when present they must have their spec'd type.
    auto res = member(root, "resource");
    if (res && !res->is_object()) {
        fail("resource must be an object");
    }
    auto ext = member(root, "extensions");
    if (ext && !ext->is_object()) {
        fail("extensions must be an object");
    }
    parse_exact_evm_payload(root, p);
}

}  // namespace

bool payment_decode(std::string_view header, int version_hint,
                    x402_payment_s &p, const char **reason,
                    const char **message)
{
    *reason = reason::invalid_payload;
    if (header.empty()) {
        *message = "payment header is empty";
        return false;
    }
    if (header.size() > X402_MAX_HEADER_LEN) {
        *message = "payment header exceeds 16384 bytes";
        return false;
    }
    auto decoded = base64_decode(header);
    if (!decoded) {
        *message = "payment header is not standard padded base64";
        return false;
    }
    p.json = std::move(*decoded);

    // simdjson reads up to SIMDJSON_PADDING bytes past the end: give it
    // them (zeros), then take them off again.
    size_t len = p.json.size();
    p.json.resize(len + simdjson::SIMDJSON_PADDING);
    Json root;
    auto error = json_parser().parse(p.json.data(), len, false).get(root);
    p.json.resize(len);
    if (error != simdjson::SUCCESS) {
        *message = error == simdjson::DEPTH_ERROR
                       ? "payment header JSON nests deeper than 16 levels"
                       : "payment header is not valid JSON";
        return false;
    }
    if (!root.is_object()) {
        *message = "payment header JSON is not an object";
        return false;
    }
    switch (json_walk(root, 1)) {
    case Walk::ok:
        break;
    case Walk::too_deep:
        *message = "payment header JSON nests deeper than 16 levels";
        return false;
    case Walk::bad:
        *message = "payment header JSON repeats a key or holds a NUL";
        return false;
    }

    auto ver = member(root, "x402Version");
    int64_t version = 0;
    if (!ver || ver->type() != simdjson::dom::element_type::INT64 ||
        ver->get_int64().get(version) != simdjson::SUCCESS) {
        *reason = reason::invalid_x402_version;
        *message = "x402Version must be an integer";
        return false;
    }
    if (version != 1 && version != 2) {
        *reason = reason::invalid_x402_version;
        *message = "x402Version must be 1 or 2";
        return false;
    }
    if (version_hint != 0 && version != version_hint) {
        *reason = reason::invalid_x402_version;
        *message = version_hint == 2
                       ? "PAYMENT-SIGNATURE must carry an x402Version 2 "
                         "payload"
                       : "X-PAYMENT must carry an x402Version 1 payload";
        return false;
    }
    p.version = static_cast<int>(version);

    try {
        if (p.version == 1) {
            parse_v1(root, p);
        } else {
            parse_v2(root, p);
        }
    } catch (const Invalid &e) {
        *reason = e.reason;
        *message = e.message;
        return false;
    }
    return true;
}

void payment_fill_verdict(const x402_payment_s &p, x402_verdict_t *v) noexcept
{
    v->version = p.version;
    v->scheme = {p.scheme.data(), p.scheme.size()};
    v->network = {p.network.data(), p.network.size()};
    v->payer = {p.payer_cs, 42};
    if (p.pay_to_cs[0] != '\0') {
        v->pay_to = {p.pay_to_cs, 42};
    }
    v->value = {p.value.data(), p.value.size()};
    v->nonce = {p.nonce.data(), p.nonce.size()};
    v->valid_after = p.valid_after;
    v->valid_before = p.valid_before;
}

}  // namespace x402
