#include "chain.hpp"

#include <jansson.h>

#include <memory>

#include "facilitator.hpp"
#include "hex.hpp"
#include "keccak.hpp"
#include "networks.hpp"

namespace x402 {

namespace {

struct JsonDeleter {
    void operator()(json_t *j) const noexcept { json_decref(j); }
};
using JsonPtr = std::unique_ptr<json_t, JsonDeleter>;

constexpr size_t max_body = 65536;
constexpr size_t max_depth = 16;

std::optional<std::string_view> string_at(const json_t *obj,
                                          std::initializer_list<const char *>
                                              path)
{
    const json_t *v = obj;
    for (const char *k : path) {
        if (!json_is_object(v)) {
            return std::nullopt;
        }
        v = json_object_get(v, k);
    }
    if (v == nullptr || !json_is_string(v)) {
        return std::nullopt;
    }
    return std::string_view(json_string_value(v), json_string_length(v));
}

// "0x" + exactly n hex digits, any case
bool is_hex(std::string_view s, size_t n) noexcept
{
    if (s.size() != n + 2 || s[0] != '0' || (s[1] != 'x' && s[1] != 'X')) {
        return false;
    }
    for (size_t i = 2; i < s.size(); i++) {
        if (hex_value(s[i]) < 0) {
            return false;
        }
    }
    return true;
}

void lower_hex(std::string &out, std::string_view digits)
{
    for (char c : digits) {
        out += (c >= 'A' && c <= 'F') ? char(c - 'A' + 'a') : c;
    }
}

}  // namespace

std::array<uint8_t, 4> authorization_state_selector() noexcept
{
    static constexpr std::string_view sig =
        "authorizationState(address,bytes32)";
    Hash32 h = keccak256(sig.data(), sig.size());
    return {h[0], h[1], h[2], h[3]};
}

std::optional<std::string> authorization_state_calldata(
    std::string_view authorizer, std::string_view nonce)
{
    if (!is_hex(authorizer, 40) || !is_hex(nonce, 64)) {
        return std::nullopt;
    }
    auto sel = authorization_state_selector();
    std::string data = "0x" + hex_encode(sel.data(), sel.size());
    data.append(24, '0');
    lower_hex(data, authorizer.substr(2));
    lower_hex(data, nonce.substr(2));
    return data;
}

std::optional<AuthorizationStateCall> authorization_state_request(
    std::string_view settle_body)
{
    if (settle_body.size() > max_body
        || !json_depth_within(settle_body, max_depth)) {
        return std::nullopt;
    }
    json_error_t err;
    JsonPtr root(json_loadb(settle_body.data(), settle_body.size(),
                            JSON_REJECT_DUPLICATES, &err));
    if (!root || !json_is_object(root.get())) {
        return std::nullopt;
    }
    auto from = string_at(root.get(), {"paymentPayload", "payload",
                                       "authorization", "from"});
    auto nonce = string_at(root.get(), {"paymentPayload", "payload",
                                        "authorization", "nonce"});
    auto asset = string_at(root.get(), {"paymentRequirements", "asset"});
    auto network = string_at(root.get(), {"paymentRequirements", "network"});
    if (!from || !nonce || !asset || !network || !is_hex(*asset, 40)) {
        return std::nullopt;
    }
    const x402_network_t *n = network_find(*network);
    if (n == nullptr) {
        return std::nullopt;
    }
    auto data = authorization_state_calldata(*from, *nonce);
    if (!data) {
        return std::nullopt;
    }
    AuthorizationStateCall call;
    call.network = n->caip2;
    call.request = R"({"jsonrpc":"2.0","id":1,"method":"eth_call","params":)"
                   R"([{"to":")";
    call.request += "0x";
    lower_hex(call.request, asset->substr(2));
    call.request += R"(","data":")" + *data + R"("},"latest"]})";
    return call;
}

AuthorizationState authorization_state_parse(int status,
                                             std::string_view body,
                                             std::string *why)
{
    auto fail = [why](std::string w) {
        if (why) {
            *why = std::move(w);
        }
        return AuthorizationState::error;
    };
    if (status != 200) {
        return fail("JSON-RPC answered HTTP " + std::to_string(status));
    }
    if (body.size() > max_body || !json_depth_within(body, max_depth)) {
        return fail("JSON-RPC answer too large or too deep");
    }
    json_error_t err;
    JsonPtr root(json_loadb(body.data(), body.size(), JSON_REJECT_DUPLICATES,
                            &err));
    if (!root || !json_is_object(root.get())) {
        return fail("JSON-RPC answer is not a JSON object");
    }
    if (json_object_get(root.get(), "error") != nullptr) {
        auto msg = string_at(root.get(), {"error", "message"});
        std::string m(msg ? msg->substr(0, 200) : std::string_view("?"));
        for (char &c : m) {
            if (c < 0x20 || c > 0x7e) {
                c = '?';
            }
        }
        return fail("JSON-RPC error: " + m);
    }
    auto result = string_at(root.get(), {"result"});
    if (!result || !is_hex(*result, 64)) {
        return fail("JSON-RPC result is not a 32-byte word");
    }
    std::string_view d = result->substr(2);
    for (size_t i = 0; i < 63; i++) {
        if (d[i] != '0') {
            return fail("JSON-RPC result is not a bool");
        }
    }
    if (d[63] == '0') {
        return AuthorizationState::unused;
    }
    if (d[63] == '1') {
        return AuthorizationState::used;
    }
    return fail("JSON-RPC result is not a bool");
}

}  // namespace x402
