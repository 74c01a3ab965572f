// EVM addresses: EIP-55 checksums and case-insensitive comparison
// (EIP-55).
#ifndef X402_ADDRESS_HPP
#define X402_ADDRESS_HPP

#include <optional>
#include <string>
#include <string_view>

namespace x402 {

// "0x" + the EIP-55 checksummed form of 40 hex digits given with or without
// a "0x" prefix, in any case; nullopt if not exactly 40 hex digits. Does not
// check the input's own checksum (see parse_address).
std::optional<std::string> checksum_address(std::string_view s);

// Writes the 40 checksummed hex digits of 40 hex digits (any case) to out.
// in must hold 40 hex digits.
void checksum_hex40(std::string_view in, char out[40]) noexcept;

// Configuration-grade parse: "0x" + 40 hex digits; all-lower or all-upper
// accepted as is, mixed case must be a valid EIP-55 checksum. Returns the
// checksummed "0x..." or nullopt with *err naming the rule (static text).
std::optional<std::string> parse_address(std::string_view s,
                                         const char **err);

// Both valid addresses (40 hex digits, "0x" optional) denoting the same 20
// bytes; false if either is malformed.
bool address_equal(std::string_view a, std::string_view b) noexcept;

}  // namespace x402

#endif
