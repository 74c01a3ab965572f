// A facilitator's GET /supported answer (x402 v2 specification 7.3,
// SupportedResponse in @x402/core src/types/facilitator.ts):
//   {"kinds":[{"x402Version":2,"scheme":"exact","network":"eip155:84532",
//              "extra":{...}}],
//    "extensions":["bazaar"],
//    "signers":{"eip155:*":["0x…"]}}
// kinds is required; extensions and signers are required by the spec but
// older (v1-era) facilitators answer without them, so absent is accepted
// and present must be well-typed. Unknown members are ignored (the spec
// grows). A kind is looked up as the official resource server does
// (x402ResourceServer.getSupportedKind): exact equality of version, scheme
// and network.
//
// Bounds, because the answer comes from the network and is kept in shared
// memory: the body as every facilitator answer (X402_MAX_FACILITATOR_LEN,
// X402_MAX_JSON_DEPTH); at most 256 kinds; scheme 1..64 and network 1..128
// printable ASCII; x402Version 1..255; each extra object at most 4096 bytes
// of compact JSON; at most 64 extensions of 1..64 bytes; at most 64 signer
// patterns of at most 64 addresses, each string 1..128 bytes. Anything
// outside them refuses the whole answer, with the reason naming the member.
#ifndef X402_SUPPORTED_HPP
#define X402_SUPPORTED_HPP

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace x402 {

constexpr size_t supported_max_kinds = 256;
constexpr size_t supported_max_extra = 4096;
constexpr size_t supported_max_list = 64;

struct SupportedKind {
    int version = 0;
    std::string scheme, network;
    std::string extra;  // compact JSON object, "" when absent
};

struct SupportedSigners {
    std::string pattern;  // "eip155:*"
    std::vector<std::string> addresses;
};

struct Supported {
    std::vector<SupportedKind> kinds;
    std::vector<std::string> extensions;
    std::vector<SupportedSigners> signers;

    const SupportedKind *find(int version, std::string_view scheme,
                              std::string_view network) const noexcept;
    bool has_extension(std::string_view name) const noexcept;
};

// False with `error` set when the answer is not a usable SupportedResponse
// (status other than 200, malformed, out of bounds).
bool supported_parse(int status, std::string_view body, Supported &out,
                     std::string &error);

}  // namespace x402

#endif
