// Prices: exact decimal conversion of display units to atomic units, no
// floating point (unlike the legacy SDK's float multiply; as coinbase/x402
// typescript/packages/mechanisms/evm/src/exact/server/scheme.ts converts),
// and exact comparison of uint256 decimal strings.
#ifndef X402_AMOUNT_HPP
#define X402_AMOUNT_HPP

#include <string>
#include <string_view>

namespace x402 {

constexpr size_t max_amount_input = 160;  // bytes of a price string
constexpr unsigned max_decimals = 77;     // 10^77 < 2^256 < 10^78

// 2^256 - 1, the largest uint256, in decimal (78 digits).
constexpr std::string_view uint256_max =
    "115792089237316195423570985008687907853269984665640564039457584007913129639935";

// As x402_amount_parse: atomic == false takes display units ("0.001",
// "$0.001", "1", "1.50"), at most `decimals` fractional digits;
// atomic == true takes an integer of atomic units. Returns 1 priced (out =
// canonical decimal, no leading zeros), 0 free (out = "0"), -1 error (*err
// set to a static message naming the rule).
int parse_amount(std::string_view in, unsigned decimals, bool atomic,
                 std::string &out, const char **err);

// Digits only, 1..78 of them after leading zeros, value <= 2^256 - 1.
bool is_uint256_decimal(std::string_view s) noexcept;

// Exact equality of two decimal integers, ignoring leading zeros ("0010" ==
// "10", "0" == "000"); false if either is empty or has a non-digit.
bool amount_equal(std::string_view a, std::string_view b) noexcept;

}  // namespace x402

#endif
