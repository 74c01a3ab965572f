// EIP-712 hashing of EIP-3009 TransferWithAuthorization under the token's
// domain (EIP-712 "Definition of domainSeparator", EIP-3009
// "transferWithAuthorization"), and the fixed-width integers it needs.
#ifndef X402_EIP712_HPP
#define X402_EIP712_HPP

#include <array>
#include <cstdint>
#include <optional>
#include <string_view>

#include "keccak.hpp"

namespace x402 {

using Address = std::array<uint8_t, 20>;
using U256 = std::array<uint8_t, 32>;  // big-endian

// A non-empty run of ASCII digits (at most X402_MAX_AMOUNT_DIGITS) into 32
// big-endian bytes; nullopt on any other character or a value >= 2^256.
// Leading zeros are accepted, as BigInt() accepts them.
std::optional<U256> u256_from_decimal(std::string_view s) noexcept;

// The value if it fits in 64 bits, else nullopt.
std::optional<uint64_t> u256_to_u64(const U256 &v) noexcept;

U256 u256_from_u64(uint64_t v) noexcept;

// Exactly 2 * len hex digits (either case, no "0x") into out; false on any
// other character or length. out is written even on failure.
bool hex_to_bytes(std::string_view digits, uint8_t *out, size_t len) noexcept;

// "0x" + 40 hex digits, any case (checksums are not this function's
// business: hashing uses the 20 bytes, EIP-712 "Definition of encodeData").
std::optional<Address> address_from_hex(std::string_view s) noexcept;

// address_equal (address.hpp) with one table load a digit instead of
// three range tests: both 40 hex digits, "0x" optional, same 20 bytes.
bool address_text_equal(std::string_view a, std::string_view b) noexcept;

// keccak256 of the EIP712Domain and TransferWithAuthorization type strings;
// constants (checked against keccak of the strings in the tests).
extern const Hash32 domain_typehash;
extern const Hash32 transfer_with_authorization_typehash;

Hash32 domain_separator(std::string_view name, std::string_view version,
                        uint64_t chain_id, const Address &verifying_contract)
    noexcept;

struct TransferAuthorization {
    Address from;
    Address to;
    U256 value;
    U256 valid_after;
    U256 valid_before;
    Hash32 nonce;
};

Hash32 struct_hash(const TransferAuthorization &a) noexcept;

// keccak256(0x19 0x01 || domainSeparator || structHash)
Hash32 typed_data_digest(const Hash32 &domain_sep, const Hash32 &struct_hash)
    noexcept;

}  // namespace x402

#endif
