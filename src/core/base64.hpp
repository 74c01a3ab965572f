// Standard (RFC 4648 section 4) base64, as every x402 header uses it
// (coinbase/x402 specs/transports-v2/http.md "Header Summary"): padded on
// output; on input the standard alphabet only
// (no '-', '_' or whitespace), missing padding tolerated, bad padding
// rejected.
#ifndef X402_BASE64_HPP
#define X402_BASE64_HPP

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace x402 {

constexpr size_t base64_encoded_len(size_t n) noexcept
{
    return (n + 2) / 3 * 4;
}

// Writes base64_encoded_len(in.size()) bytes to out (no terminator).
void base64_encode_to(std::string_view in, char *out) noexcept;

std::string base64_encode(std::string_view in);

// nullopt on any character outside the standard alphabet, a misplaced or
// excess '=', a dangling single character, or non-zero trailing bits.
std::optional<std::string> base64_decode(std::string_view in);

}  // namespace x402

#endif
