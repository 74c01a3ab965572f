// Compact JSON building: strings are escaped so that the output is valid
// UTF-8 JSON that is also safe to embed in HTML (<script>) and JavaScript
// source: '<', '>', '&', U+2028 and U+2029 become \u escapes (as Go's
// json.Marshal does, see the encoding/json package documentation). Valid
// non-ASCII UTF-8 passes through unchanged; bytes that are not valid UTF-8 (a
// raw $request_uri may carry them) become \ufffd, because JSON cannot carry
// them and every reader would otherwise substitute or reject.
//
// Two passes are offered, json_escaped_len() then json_escape_to(), so the
// per-request 402 can write straight into one caller-allocated buffer.
#ifndef X402_JSON_WRITER_HPP
#define X402_JSON_WRITER_HPP

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace x402 {

namespace json_detail {

// Length of the valid UTF-8 sequence at s[i] (2..4), or 0 if invalid:
// overlongs, surrogates and code points above U+10FFFF are invalid.
inline size_t utf8_seq_len(std::string_view s, size_t i) noexcept
{
    auto b = [&](size_t k) { return uint8_t(s[i + k]); };
    auto cont = [&](size_t k) { return i + k < s.size() && (b(k) & 0xc0) == 0x80; };
    uint8_t c = b(0);
    if (c >= 0xc2 && c <= 0xdf) {
        return cont(1) ? 2 : 0;
    }
    if (c >= 0xe0 && c <= 0xef) {
        if (!cont(1) || !cont(2)) {
            return 0;
        }
        if (c == 0xe0 && b(1) < 0xa0) {
            return 0;  // overlong
        }
        if (c == 0xed && b(1) >= 0xa0) {
            return 0;  // UTF-16 surrogate
        }
        return 3;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (!cont(1) || !cont(2) || !cont(3)) {
            return 0;
        }
        if (c == 0xf0 && b(1) < 0x90) {
            return 0;
        }
        if (c == 0xf4 && b(1) >= 0x90) {
            return 0;  // above U+10FFFF
        }
        return 4;
    }
    return 0;
}

// 1: printable ASCII that JSON and HTML both take verbatim.
struct VerbatimTable {
    bool v[256] = {};
    constexpr VerbatimTable()
    {
        for (int c = 0x20; c < 0x7f; c++) {
            v[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&';
        }
    }
};
inline constexpr VerbatimTable verbatim{};

// Calls put(const char *p, size_t n) for the escaped form of s (no quotes).
template <typename Put>
inline void escape(std::string_view s, Put &&put)
{
    static constexpr char hexd[] = "0123456789abcdef";
    size_t i = 0, run = 0;  // run: start of pending verbatim bytes
    auto flush = [&] {
        if (i > run) {
            put(s.data() + run, i - run);
        }
    };
    const size_t n = s.size();
    while (i < n) {
        while (i < n && verbatim.v[uint8_t(s[i])]) {
            i++;  // the common case: a run of plain ASCII
        }
        if (i == n) {
            break;
        }
        uint8_t c = uint8_t(s[i]);
        const char *rep = nullptr;
        char u[6] = {'\\', 'u', '0', '0', 0, 0};
        size_t rep_len = 0, adv = 1;
        if (c >= 0x80) {
            size_t n = utf8_seq_len(s, i);
            if (n == 3 && c == 0xe2 && uint8_t(s[i + 1]) == 0x80
                && (uint8_t(s[i + 2]) == 0xa8 || uint8_t(s[i + 2]) == 0xa9)) {
                rep = uint8_t(s[i + 2]) == 0xa8 ? "\\u2028" : "\\u2029";
                rep_len = 6;
                adv = 3;
            } else if (n == 0) {
                rep = "\\ufffd";
                rep_len = 6;
            } else {
                i += n;
                continue;
            }
        } else if (c == '"') {
            rep = "\\\"", rep_len = 2;
        } else if (c == '\\') {
            rep = "\\\\", rep_len = 2;
        } else if (c == '\n') {
            rep = "\\n", rep_len = 2;
        } else if (c == '\r') {
            rep = "\\r", rep_len = 2;
        } else if (c == '\t') {
            rep = "\\t", rep_len = 2;
        } else if (c < 0x20 || c == '<' || c == '>' || c == '&' || c == 0x7f) {
            u[4] = hexd[c >> 4];
            u[5] = hexd[c & 0xf];
            rep = u, rep_len = 6;
        } else {
            i++;
            continue;
        }
        flush();
        put(rep, rep_len);
        i += adv;
        run = i;
    }
    flush();
}

}  // namespace json_detail

// Bytes json_escape_to() writes for s (no quotes).
inline size_t json_escaped_len(std::string_view s) noexcept
{
    size_t n = 0;
    json_detail::escape(s, [&](const char *, size_t k) { n += k; });
    return n;
}

// Writes the escaped form of s (no quotes) to out; returns the end.
inline char *json_escape_to(std::string_view s, char *out) noexcept
{
    json_detail::escape(s, [&](const char *p, size_t k) {
        std::memcpy(out, p, k);
        out += k;
    });
    return out;
}

// Appends "s" (quoted, escaped).
inline void json_append_string(std::string &out, std::string_view s)
{
    out += '"';
    json_detail::escape(s, [&](const char *p, size_t k) { out.append(p, k); });
    out += '"';
}

// Appends "key": (the key is a trusted ASCII literal).
inline void json_append_key(std::string &out, std::string_view key)
{
    out += '"';
    out += key;
    out += "\":";
}

inline void json_append_uint(std::string &out, uint64_t v)
{
    char buf[20];
    size_t n = 0;
    do {
        buf[n++] = char('0' + v % 10);
        v /= 10;
    } while (v != 0);
    while (n > 0) {
        out += buf[--n];
    }
}

// Appends ,"key":"value" or "key":"value" when first.
inline void json_append_member(std::string &out, std::string_view key,
                               std::string_view value, bool first = false)
{
    if (!first) {
        out += ',';
    }
    json_append_key(out, key);
    json_append_string(out, value);
}

}  // namespace x402

#endif
