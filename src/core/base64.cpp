#include "base64.hpp"

#include <array>
#include <cstdint>

namespace x402 {

namespace {

constexpr char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// 6-bit value of each character, or `invalid` (a bit no value has).
constexpr uint8_t invalid = 0x80;

constexpr std::array<uint8_t, 256> make_table()
{
    std::array<uint8_t, 256> t{};
    for (auto &v : t) {
        v = invalid;
    }
    for (int i = 0; i < 64; i++) {
        t[static_cast<uint8_t>(alphabet[i])] = static_cast<uint8_t>(i);
    }
    return t;
}

constexpr std::array<uint8_t, 256> table = make_table();

// The same values pre-shifted to their place in a quantum's 24 bits, one
// table per position, so that a quantum is four loads and three ors; an
// invalid character sets bit 24, outside every value.
constexpr uint32_t invalid_bit = 1u << 24;

constexpr std::array<uint32_t, 256> make_shifted(unsigned shift)
{
    std::array<uint32_t, 256> t{};
    for (size_t i = 0; i < t.size(); i++) {
        t[i] = table[i] & invalid ? invalid_bit : uint32_t(table[i]) << shift;
    }
    return t;
}

constexpr std::array<uint32_t, 256> shifted[4] = {
    make_shifted(18), make_shifted(12), make_shifted(6), make_shifted(0)};

}  // namespace

void base64_encode_to(std::string_view in, char *out) noexcept
{
    auto p = reinterpret_cast<const uint8_t *>(in.data());
    size_t n = in.size();
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = uint32_t(p[i]) << 16 | uint32_t(p[i + 1]) << 8 | p[i + 2];
        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = alphabet[(v >> 6) & 63];
        *out++ = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = uint32_t(p[i]) << 16;
        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = '=';
        *out++ = '=';
    } else if (n - i == 2) {
        uint32_t v = uint32_t(p[i]) << 16 | uint32_t(p[i + 1]) << 8;
        *out++ = alphabet[v >> 18];
        *out++ = alphabet[(v >> 12) & 63];
        *out++ = alphabet[(v >> 6) & 63];
        *out++ = '=';
    }
}

std::string base64_encode(std::string_view in)
{
    std::string out(base64_encoded_len(in.size()), '\0');
    base64_encode_to(in, out.data());
    return out;
}

std::optional<std::string> base64_decode(std::string_view in)
{
    // Padding: at most two '=' and only at the very end; when present the
    // total length must be a multiple of 4.
    size_t pad = 0;
    while (pad < in.size() && in[in.size() - 1 - pad] == '=') {
        pad++;
    }
    if (pad > 2 || (pad > 0 && in.size() % 4 != 0)) {
        return std::nullopt;
    }
    std::string_view body = in.substr(0, in.size() - pad);
    size_t rem = body.size() % 4;
    if (rem == 1) {
        return std::nullopt;
    }
    // Padded input must pad exactly the missing characters.
    if (pad > 0 && rem + pad != 4) {
        return std::nullopt;
    }

    // Whole quanta first, four characters to three bytes, then the 2 or 3
    // characters of a final partial quantum.
    size_t full = body.size() / 4;
    std::string out(full * 3 + (rem == 0 ? 0 : rem - 1), '\0');
    auto p = reinterpret_cast<const uint8_t *>(body.data());
    char *o = out.data();
    // Invalid characters are collected and checked once at the end: a
    // header is rejected whole anyway.
    uint32_t bad = 0;
    for (size_t q = 0; q < full; q++, p += 4, o += 3) {
        uint32_t v = shifted[0][p[0]] | shifted[1][p[1]] | shifted[2][p[2]] |
                     shifted[3][p[3]];
        bad |= v;
        o[0] = static_cast<char>(v >> 16);
        o[1] = static_cast<char>(v >> 8);
        o[2] = static_cast<char>(v);
    }
    if (bad & invalid_bit) {
        return std::nullopt;
    }
    if (rem != 0) {
        uint32_t v = 0;
        for (size_t i = 0; i < rem; i++) {
            uint32_t c = table[p[i]];
            if (c & invalid) {
                return std::nullopt;
            }
            v = v << 6 | c;
        }
        // rem 2: 12 bits, one byte and 4 bits that must be zero;
        // rem 3: 18 bits, two bytes and 2 bits that must be zero.
        if (rem == 2) {
            if (v & 0x0f) {
                return std::nullopt;
            }
            o[0] = static_cast<char>(v >> 4);
        } else {
            if (v & 0x03) {
                return std::nullopt;
            }
            o[0] = static_cast<char>(v >> 10);
            o[1] = static_cast<char>(v >> 2);
        }
    }
    return out;
}

}  // namespace x402
