#include "payment.hpp"

#include <jansson.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>

#if defined(__SANITIZE_ADDRESS__)
#define X402_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define X402_ASAN 1
#endif
#endif
#ifdef X402_ASAN
#include <sanitizer/asan_interface.h>
#endif

#include "address.hpp"
#include "base64.hpp"
#include "hex.hpp"

namespace x402 {

namespace {

struct JsonFree {
    void operator()(json_t *j) const noexcept { json_decref(j); }
};
using JsonPtr = std::unique_ptr<json_t, JsonFree>;

// jansson allocates every value, key, string and hash table of a parse
// separately: under malloc and free that was 7% of a decode. While a
// decode parses, its allocations come from this bump arena on the
// decoder's stack instead, and nothing is freed one by one; every jansson
// value dies before the decode returns (the payment copies what it keeps).
// jansson's allocator hooks are process-wide, so outside an open arena
// (facilitator answers, the glue) they are plain malloc and free, and free
// skips pointers into the arena open on its thread. Arenas do not nest: an
// arena opened while another is open on the thread passes through to
// malloc.
class JsonArena {
public:
    JsonArena() noexcept
    {
        // Installed once, before the first arena opens; a parse already
        // running elsewhere frees its malloc'd values through release(),
        // which passes them to free().
        static const bool installed = [] {
            json_set_alloc_funcs(alloc, release);
            return true;
        }();
        (void) installed;
        if (open_ == nullptr) {
            open_ = this;
#ifdef X402_ASAN
            // Unallocated arena bytes stay poisoned: ASan still sees an
            // overflow out of a jansson allocation.
            ASAN_POISON_MEMORY_REGION(buf_, sizeof(buf_));
#endif
        }
    }

    ~JsonArena()
    {
        if (open_ == this) {
            open_ = nullptr;
#ifdef X402_ASAN
            ASAN_UNPOISON_MEMORY_REGION(buf_, sizeof(buf_));
#endif
        }
    }

    JsonArena(const JsonArena &) = delete;
    JsonArena &operator=(const JsonArena &) = delete;

private:
    // A typical payload (about 800 bytes of JSON) takes about 100
    // allocations and 5 KiB; larger ones overflow to malloc.
    static constexpr size_t capacity = 16384;
    static constexpr size_t align = 16;

#ifdef X402_ASAN
    // Under ASan each block is preceded by its size, so that a free
    // poisons it and a use after jansson's free is caught.
    static constexpr size_t header = align;
#else
    static constexpr size_t header = 0;
#endif

    static void *alloc(size_t n) noexcept
    {
        JsonArena *a = open_;
        size_t room = a != nullptr ? capacity - a->used_ : 0;
        if (room >= header && n <= room - header) {
            unsigned char *p = a->buf_ + a->used_ + header;
            size_t rounded = (header + n + align - 1) & ~(align - 1);
            a->used_ += rounded < room ? rounded : room;
#ifdef X402_ASAN
            ASAN_UNPOISON_MEMORY_REGION(p - header, header + n);
            std::memcpy(p - header, &n, sizeof(n));
            ASAN_POISON_MEMORY_REGION(p - header, header);
#endif
            return p;
        }
        return std::malloc(n);
    }

    static void release(void *p) noexcept
    {
        JsonArena *a = open_;
        if (a != nullptr &&
            reinterpret_cast<uintptr_t>(p) -
                    reinterpret_cast<uintptr_t>(a->buf_) <
                capacity) {
#ifdef X402_ASAN
            auto *b = static_cast<unsigned char *>(p);
            size_t n;
            ASAN_UNPOISON_MEMORY_REGION(b - header, header);
            std::memcpy(&n, b - header, sizeof(n));
            ASAN_POISON_MEMORY_REGION(b - header, header + n);
#endif
            return;  // the whole arena goes when the decode ends
        }
        std::free(p);
    }

    // Trivially destructible: the module's TLS needs no destructors.
    static thread_local JsonArena *open_;

    size_t used_ = 0;
    alignas(align) unsigned char buf_[capacity];
};

thread_local JsonArena *JsonArena::open_ = nullptr;

// Thrown inside the decoder only, caught in payment_decode: a shape error
// with its static reason and message.
struct Invalid {
    const char *reason;
    const char *message;
};

[[noreturn]] void fail(const char *message,
                       const char *reason = reason::invalid_payload)
{
    throw Invalid{reason, message};
}

// Depth of nested containers, with the top-level object at depth 1;
// stops descending once over the limit so the walk stays bounded.
bool depth_within(const json_t *j, int depth, int limit)
{
    if (!json_is_object(j) && !json_is_array(j)) {
        return true;
    }
    if (depth > limit) {
        return false;
    }
    if (json_is_object(j)) {
        const char *key;
        json_t *val;
        json_object_foreach(const_cast<json_t *>(j), key, val) {
            if (!depth_within(val, depth + 1, limit)) {
                return false;
            }
        }
    } else {
        size_t i;
        json_t *val;
        json_array_foreach(j, i, val) {
            if (!depth_within(val, depth + 1, limit)) {
                return false;
            }
        }
    }
    return true;
}

const json_t *object_at(const json_t *obj, const char *key,
                        const char *missing)
{
    const json_t *j = json_object_get(obj, key);
    if (!json_is_object(j)) {
        fail(missing);
    }
    return j;
}

std::string_view string_at(const json_t *obj, const char *key,
                           const char *missing)
{
    const json_t *j = json_object_get(obj, key);
    if (!json_is_string(j)) {
        fail(missing);
    }
    return {json_string_value(j), json_string_length(j)};
}

// A decimal-string uint256 of the authorization (x402-notes 1.5: the SDKs
// send strings; Go's decoder rejects numbers, and so do we).
U256 decimal_at(const json_t *obj, const char *key, const char *bad,
                std::string *copy)
{
    std::string_view s = string_at(obj, key, bad);
    auto v = u256_from_decimal(s);
    if (!v) {
        fail(bad);
    }
    if (copy != nullptr) {
        copy->assign(s);
    }
    return *v;
}

uint64_t saturate(const U256 &v)
{
    auto u = u256_to_u64(v);
    return u ? *u : UINT64_MAX;
}

void parse_address_at(const json_t *obj, const char *key, const char *bad,
                      std::string &copy, Address &bytes)
{
    std::string_view s = string_at(obj, key, bad);
    auto a = address_from_hex(s);
    if (!a) {
        fail(bad);
    }
    copy.assign(s);
    bytes = *a;
}

void parse_exact_evm_payload(const json_t *root, x402_payment_s &p)
{
    const json_t *payload = json_object_get(root, "payload");
    if (!json_is_object(payload)) {
        fail("payload must be an object");
    }
    const json_t *auth = json_object_get(payload, "authorization");
    if (auth == nullptr && json_object_get(payload, "permit2Authorization")) {
        fail("Permit2 payloads are not accepted here: EIP-3009 only");
    }
    if (!json_is_object(auth)) {
        fail("payload.authorization must be an object");
    }

    parse_address_at(auth, "from", "payload.authorization.from must be "
                     "0x + 40 hex digits", p.from, p.auth.from);
    parse_address_at(auth, "to", "payload.authorization.to must be "
                     "0x + 40 hex digits", p.to, p.auth.to);
    p.auth.value = decimal_at(auth, "value", "payload.authorization.value "
                              "must be a decimal string below 2^256",
                              &p.value);
    p.auth.valid_after = decimal_at(auth, "validAfter",
                                    "payload.authorization.validAfter must "
                                    "be a decimal string below 2^256",
                                    nullptr);
    p.auth.valid_before = decimal_at(auth, "validBefore",
                                     "payload.authorization.validBefore must "
                                     "be a decimal string below 2^256",
                                     nullptr);
    p.valid_after = saturate(p.auth.valid_after);
    p.valid_before = saturate(p.auth.valid_before);

    const char *bad_nonce = "payload.authorization.nonce must be 0x + 64 "
                            "hex digits (32 bytes)";
    std::string_view nonce = string_at(auth, "nonce", bad_nonce);
    auto nonce_digits = strip_0x(nonce);
    if (!nonce_digits ||
        !hex_to_bytes(*nonce_digits, p.auth.nonce.data(), 32)) {
        fail(bad_nonce);
    }
    p.nonce.resize(66);
    p.nonce[0] = '0';
    p.nonce[1] = 'x';
    hex_encode_to(p.auth.nonce.data(), 32, p.nonce.data() + 2);

    // 65 bytes for an EOA; longer (ERC-1271, ERC-6492) is kept for the
    // facilitator. The header cap bounds the length.
    const char *bad_sig = "payload.signature must be 0x + an even number of "
                          "hex digits";
    std::string_view sig = string_at(payload, "signature", bad_sig);
    auto sig_digits = strip_0x(sig);
    if (!sig_digits || sig_digits->empty() || sig_digits->size() % 2 != 0) {
        fail(bad_sig);
    }
    p.signature.resize(sig_digits->size() / 2);
    if (!hex_to_bytes(*sig_digits, p.signature.data(), p.signature.size())) {
        fail(bad_sig);
    }

    // payTo's checksum waits for the match (usually a copy of the offer's).
    p.payer_cs[0] = '0';
    p.payer_cs[1] = 'x';
    checksum_hex40(std::string_view(p.from).substr(2), p.payer_cs + 2);
}

void parse_v1(const json_t *root, x402_payment_s &p)
{
    p.scheme.assign(string_at(root, "scheme", "scheme must be a string"));
    p.network.assign(string_at(root, "network", "network must be a string"));
    parse_exact_evm_payload(root, p);
}

void parse_v2(const json_t *root, x402_payment_s &p)
{
    const json_t *acc = object_at(root, "accepted",
                                  "accepted must be an object (the chosen "
                                  "requirement)");
    p.scheme.assign(string_at(acc, "scheme",
                              "accepted.scheme must be a string"));
    p.network.assign(string_at(acc, "network",
                               "accepted.network must be a string"));
    p.amount.assign(string_at(acc, "amount",
                              "accepted.amount must be a string"));
    p.asset.assign(string_at(acc, "asset", "accepted.asset must be a string"));
    p.pay_to.assign(string_at(acc, "payTo",
                              "accepted.payTo must be a string"));
    const json_t *mt = json_object_get(acc, "maxTimeoutSeconds");
    if (!json_is_integer(mt) || json_integer_value(mt) < 0) {
        fail("accepted.maxTimeoutSeconds must be a non-negative integer");
    }
    p.max_timeout = static_cast<uint64_t>(json_integer_value(mt));

    const json_t *extra = json_object_get(acc, "extra");
    if (extra != nullptr) {
        if (!json_is_object(extra)) {
            fail("accepted.extra must be an object");
        }
        const json_t *name = json_object_get(extra, "name");
        const json_t *version = json_object_get(extra, "version");
        if (name != nullptr) {
            if (!json_is_string(name)) {
                fail("accepted.extra.name must be a string");
            }
            p.extra_name.assign(json_string_value(name),
                                json_string_length(name));
            p.has_extra_name = true;
        }
        if (version != nullptr) {
            if (!json_is_string(version)) {
                fail("accepted.extra.version must be a string");
            }
            p.extra_version.assign(json_string_value(version),
                                   json_string_length(version));
            p.has_extra_version = true;
        }
        // x402-notes 2.1: absent or "eip3009" is the EIP-3009 variant.
        const json_t *method = json_object_get(extra, "assetTransferMethod");
        if (method != nullptr &&
            !(json_is_string(method) &&
              std::strcmp(json_string_value(method), "eip3009") == 0)) {
            fail("accepted.extra.assetTransferMethod is not eip3009");
        }
    }

    // Optional members: when present they must have their spec'd type.
    const json_t *res = json_object_get(root, "resource");
    if (res != nullptr && !json_is_object(res)) {
        fail("resource must be an object");
    }
    const json_t *ext = json_object_get(root, "extensions");
    if (ext != nullptr && !json_is_object(ext)) {
        fail("extensions must be an object");
    }
    parse_exact_evm_payload(root, p);
}

}  // namespace

bool payment_decode(std::string_view header, int version_hint,
                    x402_payment_s &p, const char **reason,
                    const char **message)
{
    *reason = reason::invalid_payload;
    if (header.empty()) {
        *message = "payment header is empty";
        return false;
    }
    if (header.size() > X402_MAX_HEADER_LEN) {
        *message = "payment header exceeds 16384 bytes";
        return false;
    }
    auto decoded = base64_decode(header);
    if (!decoded) {
        *message = "payment header is not standard padded base64";
        return false;
    }
    p.json = std::move(*decoded);

    // Declared before root: the arena closes after every value is freed.
    JsonArena arena;
    json_error_t err;
    JsonPtr root(json_loadb(p.json.data(), p.json.size(),
                            JSON_REJECT_DUPLICATES, &err));
    if (!root) {
        *message = "payment header is not valid JSON (or repeats a key)";
        return false;
    }
    if (!json_is_object(root.get())) {
        *message = "payment header JSON is not an object";
        return false;
    }
    if (!depth_within(root.get(), 1, X402_MAX_JSON_DEPTH)) {
        *message = "payment header JSON nests deeper than 16 levels";
        return false;
    }

    const json_t *ver = json_object_get(root.get(), "x402Version");
    if (!json_is_integer(ver)) {
        *reason = reason::invalid_x402_version;
        *message = "x402Version must be an integer";
        return false;
    }
    json_int_t version = json_integer_value(ver);
    if (version != 1 && version != 2) {
        *reason = reason::invalid_x402_version;
        *message = "x402Version must be 1 or 2";
        return false;
    }
    if (version_hint != 0 && version != version_hint) {
        *reason = reason::invalid_x402_version;
        *message = version_hint == 2
                       ? "PAYMENT-SIGNATURE must carry an x402Version 2 "
                         "payload"
                       : "X-PAYMENT must carry an x402Version 1 payload";
        return false;
    }
    p.version = static_cast<int>(version);

    try {
        if (p.version == 1) {
            parse_v1(root.get(), p);
        } else {
            parse_v2(root.get(), p);
        }
    } catch (const Invalid &e) {
        *reason = e.reason;
        *message = e.message;
        return false;
    }
    return true;
}

void payment_fill_verdict(const x402_payment_s &p, x402_verdict_t *v) noexcept
{
    v->version = p.version;
    v->scheme = {p.scheme.data(), p.scheme.size()};
    v->network = {p.network.data(), p.network.size()};
    v->payer = {p.payer_cs, 42};
    if (p.pay_to_cs[0] != '\0') {
        v->pay_to = {p.pay_to_cs, 42};
    }
    v->value = {p.value.data(), p.value.size()};
    v->nonce = {p.nonce.data(), p.nonce.size()};
    v->valid_after = p.valid_after;
    v->valid_before = p.valid_before;
}

}  // namespace x402
