#include "address.hpp"

#include <cstring>

#include "hex.hpp"
#include "keccak.hpp"

namespace x402 {

namespace {

std::string_view strip_optional_0x(std::string_view s) noexcept
{
    if (s.size() >= 2 && s[0] == '0' && s[1] == 'x') {
        s.remove_prefix(2);
    }
    return s;
}

bool is_hex40(std::string_view s) noexcept
{
    if (s.size() != 40) {
        return false;
    }
    for (char c : s) {
        if (hex_value(c) < 0) {
            return false;
        }
    }
    return true;
}

char lower(char c) noexcept
{
    return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c;
}

}  // namespace

void checksum_hex40(std::string_view in, char out[40]) noexcept
{
    // The last addresses checksummed, by their low bits: a paid request
    // checksums its payer twice (the payment, then the /settle answer),
    // and payers come back. A Keccak is 5k instructions, a hit 0.2k.
    struct Entry {
        char lo[40];
        char cs[40];
        bool used;
    };
    thread_local Entry recent[64];

    char lo[40];
    for (size_t i = 0; i < 40; i++) {
        lo[i] = lower(in[i]);
    }
    unsigned slot = (uint8_t(lo[38]) * 31u + uint8_t(lo[39])) % 64;
    Entry &e = recent[slot];
    if (e.used && std::memcmp(e.lo, lo, 40) == 0) {
        std::memcpy(out, e.cs, 40);
        return;
    }
    // EIP-55: hash the lower-case ASCII hex; nibble i >= 8 upper-cases
    // letter i.
    Hash32 h = keccak256(lo, sizeof(lo));
    for (size_t i = 0; i < 40; i++) {
        unsigned nib = (i % 2 == 0) ? h[i / 2] >> 4 : h[i / 2] & 0x0f;
        char c = lo[i];
        out[i] = (c >= 'a' && c <= 'f' && nib >= 8) ? char(c - 'a' + 'A') : c;
    }
    std::memcpy(e.lo, lo, 40);
    std::memcpy(e.cs, out, 40);
    e.used = true;
}

std::optional<std::string> checksum_address(std::string_view s)
{
    s = strip_optional_0x(s);
    if (!is_hex40(s)) {
        return std::nullopt;
    }
    std::string out(42, '\0');
    out[0] = '0';
    out[1] = 'x';
    checksum_hex40(s, &out[2]);
    return out;
}

std::optional<std::string> parse_address(std::string_view s, const char **err)
{
    if (s.size() < 2 || s[0] != '0' || s[1] != 'x') {
        *err = "an address must start with \"0x\"";
        return std::nullopt;
    }
    std::string_view hex = s.substr(2);
    if (hex.size() != 40) {
        *err = "an address must have exactly 40 hex digits after \"0x\"";
        return std::nullopt;
    }
    if (!is_hex40(hex)) {
        *err = "an address must contain only hex digits after \"0x\"";
        return std::nullopt;
    }
    bool has_lower = false, has_upper = false;
    for (char c : hex) {
        has_lower |= (c >= 'a' && c <= 'f');
        has_upper |= (c >= 'A' && c <= 'F');
    }
    std::string out(42, '\0');
    out[0] = '0';
    out[1] = 'x';
    checksum_hex40(hex, &out[2]);
    if (has_lower && has_upper && hex != std::string_view(out).substr(2)) {
        *err = "mixed-case address with an invalid EIP-55 checksum "
               "(a typo? write it all lower case to skip the check)";
        return std::nullopt;
    }
    return out;
}

bool address_equal(std::string_view a, std::string_view b) noexcept
{
    a = strip_optional_0x(a);
    b = strip_optional_0x(b);
    if (!is_hex40(a) || !is_hex40(b)) {
        return false;
    }
    for (size_t i = 0; i < 40; i++) {
        if (lower(a[i]) != lower(b[i])) {
            return false;
        }
    }
    return true;
}

}  // namespace x402
