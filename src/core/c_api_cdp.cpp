// extern "C" shims for CDP authentication: every entry point catches
// everything, so no exception unwinds into nginx.
#include <cstring>
#include <memory>
#include <new>
#include <string_view>

#include "cdp_jwt.hpp"
#include "x402/x402.h"

struct x402_cdp_key_s {
    x402::CdpKey key;
};

namespace {

std::string_view view(x402_str_t s) noexcept
{
    return std::string_view(s.data ? s.data : "", s.data ? s.len : 0);
}

}  // namespace

extern "C" {

x402_cdp_key_t *x402_cdp_key_load(x402_str_t key_id, x402_str_t secret,
                                  const char **err)
{
    try {
        const char *e = nullptr;
        auto k = x402::cdp_key_load(view(key_id), view(secret), &e);
        if (!k) {
            *err = e;
            return nullptr;
        }
        return new x402_cdp_key_s{std::move(*k)};
    } catch (...) {
        *err = "out of memory";
        return nullptr;
    }
}

void x402_cdp_key_free(x402_cdp_key_t *key)
{
    delete key;
}

const char *x402_cdp_key_alg(const x402_cdp_key_t *key)
{
    return key->key.alg == x402::CdpAlg::es256 ? "ES256" : "EdDSA";
}

int x402_cdp_authorization(const x402_cdp_key_t *key, x402_str_t method,
                           x402_str_t host, x402_str_t path, int64_t now,
                           int64_t lifetime, const x402_allocator_t *a,
                           x402_str_t *out, const char **err)
{
    try {
        const char *e = nullptr;
        auto jwt = x402::cdp_jwt(key->key, view(method), view(host),
                                 view(path), now, lifetime, &e);
        if (!jwt) {
            *err = e;
            return -1;
        }
        constexpr std::string_view bearer = "Bearer ";
        size_t n = bearer.size() + jwt->size();
        auto *p = static_cast<char *>(a->alloc(a->ctx, n));
        if (p == nullptr) {
            *err = "out of memory";
            return -1;
        }
        std::memcpy(p, bearer.data(), bearer.size());
        std::memcpy(p + bearer.size(), jwt->data(), jwt->size());
        out->data = p;
        out->len = n;
        return 0;
    } catch (...) {
        *err = "out of memory";
        return -1;
    }
}

}  // extern "C"
