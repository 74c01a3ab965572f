#include "supported.hpp"

#include <jansson.h>

#include <cstdlib>
#include <memory>

#include "facilitator.hpp"
#include "x402/x402.h"

namespace x402 {

namespace {

struct JsonDeleter {
    void operator()(json_t *j) const noexcept { json_decref(j); }
};
using JsonPtr = std::unique_ptr<json_t, JsonDeleter>;
struct FreeDeleter {
    void operator()(char *p) const noexcept { std::free(p); }
};

bool printable(std::string_view s, size_t max) noexcept
{
    if (s.empty() || s.size() > max) {
        return false;
    }
    for (char c : s) {
        if (c < 0x21 || c > 0x7e) {
            return false;
        }
    }
    return true;
}

// A bounded printable string member value; false if not one.
bool bounded_string(const json_t *v, size_t max, std::string &out)
{
    if (!json_is_string(v)) {
        return false;
    }
    std::string_view s(json_string_value(v), json_string_length(v));
    if (!printable(s, max)) {
        return false;
    }
    out.assign(s);
    return true;
}

bool fail(std::string &error, std::string what)
{
    error = "facilitator /supported: " + std::move(what);
    return false;
}

bool parse_kind(const json_t *k, size_t i, SupportedKind &out,
                std::string &error)
{
    std::string at = "kinds[" + std::to_string(i) + "]";
    if (!json_is_object(k)) {
        return fail(error, at + " is not an object");
    }
    const json_t *v = json_object_get(k, "x402Version");
    if (!json_is_integer(v) || json_integer_value(v) < 1
        || json_integer_value(v) > 255) {
        return fail(error, at + ".x402Version is not an integer 1..255");
    }
    out.version = int(json_integer_value(v));
    if (!bounded_string(json_object_get(k, "scheme"), 64, out.scheme)) {
        return fail(error, at + ".scheme is not 1..64 printable characters");
    }
    if (!bounded_string(json_object_get(k, "network"), 128, out.network)) {
        return fail(error,
                    at + ".network is not 1..128 printable characters");
    }
    const json_t *extra = json_object_get(k, "extra");
    if (extra != nullptr && !json_is_null(extra)) {
        if (!json_is_object(extra)) {
            return fail(error, at + ".extra is not an object");
        }
        std::unique_ptr<char, FreeDeleter> text(
            json_dumps(extra, JSON_COMPACT | JSON_PRESERVE_ORDER));
        if (!text) {
            throw std::bad_alloc();
        }
        out.extra = text.get();
        if (out.extra.size() > supported_max_extra) {
            return fail(error, at + ".extra is over 4096 bytes");
        }
    }
    return true;
}

}  // namespace

const SupportedKind *Supported::find(int version, std::string_view scheme,
                                     std::string_view network) const noexcept
{
    for (const auto &k : kinds) {
        if (k.version == version && k.scheme == scheme
            && k.network == network) {
            return &k;
        }
    }
    return nullptr;
}

bool Supported::has_extension(std::string_view name) const noexcept
{
    for (const auto &e : extensions) {
        if (e == name) {
            return true;
        }
    }
    return false;
}

bool supported_parse(int status, std::string_view body, Supported &out,
                     std::string &error)
{
    out = Supported{};
    if (status != 200) {
        return fail(error, "answered HTTP " + std::to_string(status));
    }
    if (body.size() > X402_MAX_FACILITATOR_LEN) {
        return fail(error, "answer is over " + std::to_string(
                               X402_MAX_FACILITATOR_LEN) + " bytes");
    }
    if (!json_depth_within(body, X402_MAX_JSON_DEPTH)) {
        return fail(error, "answer nests deeper than "
                               + std::to_string(X402_MAX_JSON_DEPTH));
    }
    json_error_t jerr;
    JsonPtr j(json_loadb(body.data(), body.size(), JSON_REJECT_DUPLICATES,
                         &jerr));
    if (!j || !json_is_object(j.get())) {
        return fail(error, "answer is not a JSON object");
    }

    const json_t *kinds = json_object_get(j.get(), "kinds");
    if (!json_is_array(kinds)) {
        return fail(error, "kinds is missing or not an array");
    }
    if (json_array_size(kinds) > supported_max_kinds) {
        return fail(error, "more than 256 kinds");
    }
    for (size_t i = 0; i < json_array_size(kinds); i++) {
        SupportedKind k;
        if (!parse_kind(json_array_get(kinds, i), i, k, error)) {
            return false;
        }
        out.kinds.push_back(std::move(k));
    }

    const json_t *ext = json_object_get(j.get(), "extensions");
    if (ext != nullptr && !json_is_null(ext)) {
        if (!json_is_array(ext) || json_array_size(ext) > supported_max_list) {
            return fail(error, "extensions is not an array of at most 64");
        }
        for (size_t i = 0; i < json_array_size(ext); i++) {
            std::string e;
            if (!bounded_string(json_array_get(ext, i), 64, e)) {
                return fail(error, "extensions[" + std::to_string(i)
                                       + "] is not 1..64 printable "
                                         "characters");
            }
            out.extensions.push_back(std::move(e));
        }
    }

    const json_t *signers = json_object_get(j.get(), "signers");
    if (signers != nullptr && !json_is_null(signers)) {
        if (!json_is_object(signers)
            || json_object_size(signers) > supported_max_list) {
            return fail(error, "signers is not an object of at most 64 "
                               "patterns");
        }
        const char *pattern;
        json_t *list;
        json_object_foreach(const_cast<json_t *>(signers), pattern, list)
        {
            SupportedSigners s;
            s.pattern = pattern;
            if (!printable(s.pattern, 128)) {
                return fail(error, "a signers pattern is not 1..128 "
                                   "printable characters");
            }
            if (!json_is_array(list)
                || json_array_size(list) > supported_max_list) {
                return fail(error, "signers[\"" + s.pattern
                                       + "\"] is not a list of at most 64");
            }
            for (size_t i = 0; i < json_array_size(list); i++) {
                std::string a;
                if (!bounded_string(json_array_get(list, i), 128, a)) {
                    return fail(error, "signers[\"" + s.pattern + "\"]["
                                           + std::to_string(i)
                                           + "] is not 1..128 printable "
                                             "characters");
                }
                s.addresses.push_back(std::move(a));
            }
            out.signers.push_back(std::move(s));
        }
    }
    return true;
}

}  // namespace x402
