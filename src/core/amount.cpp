#include "amount.hpp"

#include <array>
#include <cstdio>

namespace x402 {

namespace {

bool all_digits(std::string_view s) noexcept
{
    for (char c : s) {
        if (c < '0' || c > '9') {
            return false;
        }
    }
    return true;
}

std::string_view strip_zeros(std::string_view s) noexcept
{
    size_t i = 0;
    while (i < s.size() && s[i] == '0') {
        i++;
    }
    return s.substr(i);
}

bool is_space(char c) noexcept
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v'
           || c == '\f';
}

// "more than N fractional digits (the asset has N decimals)", one static
// string per N so that *err can stay a static message.
const char *too_many_fraction_digits(unsigned decimals)
{
    static const auto msgs = [] {
        std::array<std::array<char, 96>, max_decimals + 1> m{};
        for (unsigned d = 0; d <= max_decimals; d++) {
            if (d == 0) {
                std::snprintf(m[d].data(), m[d].size(),
                              "a fraction is not allowed: the asset has 0 "
                              "decimals");
            } else {
                std::snprintf(m[d].data(), m[d].size(),
                              "more than %u fractional digits: the asset has "
                              "%u decimals",
                              d, d);
            }
        }
        return m;
    }();
    return msgs[decimals].data();
}

}  // namespace

bool is_uint256_decimal(std::string_view s) noexcept
{
    if (s.empty() || !all_digits(s)) {
        return false;
    }
    std::string_view v = strip_zeros(s);
    if (v.size() != uint256_max.size()) {
        return v.size() < uint256_max.size();
    }
    return v <= uint256_max;  // same length: lexicographic == numeric
}

bool amount_equal(std::string_view a, std::string_view b) noexcept
{
    if (a.empty() || b.empty() || !all_digits(a) || !all_digits(b)) {
        return false;
    }
    return strip_zeros(a) == strip_zeros(b);
}

int parse_amount(std::string_view in, unsigned decimals, bool atomic,
                 std::string &out, const char **err)
{
    out = "0";
    if (in.empty()) {
        return 0;
    }
    if (decimals > max_decimals) {
        *err = "asset decimals above 77 are not supported (uint256)";
        return -1;
    }
    if (in.size() > max_amount_input) {
        *err = "price is longer than 160 characters";
        return -1;
    }
    for (char c : in) {
        if (is_space(c)) {
            *err = "price must not contain whitespace";
            return -1;
        }
    }
    std::string_view s = in;
    if (s[0] == '$') {
        if (atomic) {
            *err = "atomic units are an integer without \"$\"";
            return -1;
        }
        s.remove_prefix(1);
        if (s.empty()) {
            *err = "no digits after \"$\"";
            return -1;
        }
    }
    if (s[0] == '-') {
        *err = "price must not be negative";
        return -1;
    }
    if (s[0] == '+') {
        *err = "price must not carry a sign";
        return -1;
    }
    if (s.size() >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        *err = "price must be decimal, not hex";
        return -1;
    }
    if (s.find_first_of("eE") != std::string_view::npos) {
        *err = "price must not use scientific notation";
        return -1;
    }
    size_t dot = s.find('.');
    std::string_view int_part = s.substr(0, dot);
    std::string_view frac;
    if (dot != std::string_view::npos) {
        if (atomic) {
            *err = "atomic units must be an integer (no \".\")";
            return -1;
        }
        frac = s.substr(dot + 1);
        if (frac.find('.') != std::string_view::npos) {
            *err = "price has more than one \".\"";
            return -1;
        }
        if (int_part.empty()) {
            *err = "price needs a digit before \".\" (write 0.5, not .5)";
            return -1;
        }
        if (frac.empty()) {
            *err = "price needs a digit after \".\" (write 5 or 5.0, not 5.)";
            return -1;
        }
    }
    if (!all_digits(int_part) || !all_digits(frac)) {
        *err = atomic ? "atomic units must be digits only"
                      : "price may contain only digits, one \".\" and a "
                        "leading \"$\"";
        return -1;
    }
    unsigned scale = atomic ? 0 : decimals;
    if (frac.size() > scale) {
        *err = too_many_fraction_digits(decimals);
        return -1;
    }

    // value = int_part * 10^scale + frac * 10^(scale - |frac|)
    std::string_view int_sig = strip_zeros(int_part);
    std::string digits;
    digits.reserve(int_sig.size() + scale);
    digits.append(int_sig);
    digits.append(frac);
    digits.append(scale - frac.size(), '0');
    std::string_view v = strip_zeros(digits);
    if (v.empty()) {
        return 0;
    }
    if (v.size() > uint256_max.size()) {
        *err = "price in atomic units has more than 78 digits (uint256)";
        return -1;
    }
    if (v.size() == uint256_max.size() && v > uint256_max) {
        *err = "price in atomic units exceeds 2^256-1 (uint256)";
        return -1;
    }
    out.assign(v);
    return 1;
}

}  // namespace x402
