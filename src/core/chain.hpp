// Asking the chain what became of an authorization (issue 14): when a
// /settle answer is lost, an eth_call of the token's EIP-3009
// authorizationState(address authorizer, bytes32 nonce) says whether the
// authorization was used (settled) or not (retry).
#ifndef X402_CHAIN_HPP
#define X402_CHAIN_HPP

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace x402 {

// keccak256("authorizationState(address,bytes32)")[0:4]
std::array<uint8_t, 4> authorization_state_selector() noexcept;

// The eth_call data: "0x" + selector + the authorizer left-padded to 32
// bytes + the 32-byte nonce. authorizer: "0x" + 40 hex digits, nonce:
// "0x" + 64 hex digits (any case); nullopt if either is malformed.
std::optional<std::string> authorization_state_calldata(
    std::string_view authorizer, std::string_view nonce);

struct AuthorizationStateCall {
    std::string network;   // CAIP-2 ("eip155:84532"): where to ask
    std::string request;   // the JSON-RPC request body
};

// From a /settle body (x402Version, paymentPayload with
// payload.authorization {from, nonce}, paymentRequirements {network,
// asset}): the JSON-RPC eth_call of the asset's authorizationState at
// "latest". nullopt if the body lacks any of these or they are malformed.
std::optional<AuthorizationStateCall> authorization_state_request(
    std::string_view settle_body);

enum class AuthorizationState { unused, used, error };

// A JSON-RPC answer to that call: 200 with "result" a 32-byte word 0 or 1.
// Anything else (an "error" member, another status, garbage, a longer or
// other value) is error, with *why saying what.
AuthorizationState authorization_state_parse(int status,
                                             std::string_view body,
                                             std::string *why);

}  // namespace x402

#endif
