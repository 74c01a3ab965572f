// Lower-case hex encoding and strict hex decoding.
#ifndef X402_HEX_HPP
#define X402_HEX_HPP

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace x402 {

// -1 if c is not a hex digit (either case).
constexpr int hex_value(char c) noexcept
{
    return (c >= '0' && c <= '9')   ? c - '0'
           : (c >= 'a' && c <= 'f') ? c - 'a' + 10
           : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                    : -1;
}

// Writes 2 * len lower-case hex digits to out (no terminator).
inline void hex_encode_to(const uint8_t *in, size_t len, char *out) noexcept
{
    static constexpr char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 0x0f];
    }
}

inline std::string hex_encode(const uint8_t *in, size_t len)
{
    std::string s(2 * len, '\0');
    hex_encode_to(in, len, s.data());
    return s;
}

template <typename Bytes>
std::string hex_encode(const Bytes &b)
{
    return hex_encode(reinterpret_cast<const uint8_t *>(b.data()), b.size());
}

// Decodes exactly 2 * len hex digits into out; false on any non-hex digit
// or a length mismatch. No "0x" prefix is accepted here.
inline bool hex_decode_to(std::string_view in, uint8_t *out,
                          size_t len) noexcept
{
    if (in.size() != 2 * len) {
        return false;
    }
    for (size_t i = 0; i < len; i++) {
        int hi = hex_value(in[2 * i]);
        int lo = hex_value(in[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            return false;
        }
        out[i] = uint8_t(hi << 4 | lo);
    }
    return true;
}

// Any even number of hex digits; nullopt otherwise.
inline std::optional<std::vector<uint8_t>> hex_decode(std::string_view in)
{
    if (in.size() % 2 != 0) {
        return std::nullopt;
    }
    std::vector<uint8_t> out(in.size() / 2);
    if (!hex_decode_to(in, out.data(), out.size())) {
        return std::nullopt;
    }
    return out;
}

// Strips a leading "0x" (lower-case x only, as every x402 client emits);
// nullopt when absent.
inline std::optional<std::string_view> strip_0x(std::string_view s) noexcept
{
    if (s.size() < 2 || s[0] != '0' || s[1] != 'x') {
        return std::nullopt;
    }
    return s.substr(2);
}

}  // namespace x402

#endif
