#include "base64.hpp"

#include <array>
#include <cstdint>

namespace x402 {

namespace {

constexpr char alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int8_t, 256> make_table()
{
    std::array<int8_t, 256> t{};
    for (auto &v : t) {
        v = -1;
    }
    for (int i = 0; i < 64; i++) {
        t[static_cast<uint8_t>(alphabet[i])] = static_cast<int8_t>(i);
    }
    return t;
}

constexpr std::array<int8_t, 256> table = make_table();

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

    std::string out;
    out.reserve(body.size() / 4 * 3 + 2);
    uint32_t acc = 0;
    int bits = 0;
    for (char c : body) {
        int8_t v = table[static_cast<uint8_t>(c)];
        if (v < 0) {
            return std::nullopt;
        }
        acc = (acc << 6) | uint32_t(v);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xff));
        }
    }
    // Leftover bits must be zero (canonical encoding).
    if ((acc & ((1u << bits) - 1)) != 0) {
        return std::nullopt;
    }
    return out;
}

}  // namespace x402
